#!/usr/bin/env bash
# Builds the container image of raftq from the local source tree without
# pulling any base image: the image is FROM scratch plus the release binary,
# its shared libraries (as ldd lists them), the dynamic loader and a non-root
# user.
#
# Usage: deploy/build-image.sh [IMAGE_TAG]     (default tag: raftq:dev)
# Environment: CARGO (default: cargo), DOCKER (default: docker).
set -euo pipefail

image_tag="${1:-raftq:dev}"
cargo_command="${CARGO:-cargo}"
docker_command="${DOCKER:-docker}"

# The uid and gid of the user that runs the server inside the image. They are
# above the range that distributions give to local users, so a bind-mounted
# data directory does not accidentally belong to someone on the host. The
# Dockerfile repeats these numbers in its COPY --chown and USER lines.
readonly RAFTQ_UID=10001
readonly RAFTQ_GID=10001

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repository_root"

echo "build-image: building the release binary (cargo build --release -p raftq-cli)"
"$cargo_command" build --release --locked -p raftq-cli

target_directory="$("$cargo_command" metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
binary="$target_directory/release/raftq"
if [[ ! -x "$binary" ]]; then
    echo "build-image: $binary is missing after the build; check the cargo output above" >&2
    exit 1
fi

context="$(mktemp -d "${TMPDIR:-/tmp}/raftq-image.XXXXXX")"
trap 'rm -rf -- "$context"' EXIT

rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$context/data"

# Debug sections are dropped to keep the image small. The symbol table stays,
# so a panic backtrace still names the functions.
objcopy --strip-debug "$binary" "$rootfs/usr/local/bin/raftq"
chmod 0755 "$rootfs/usr/local/bin/raftq"

# Copy every library that ldd resolves, and the loader, to the same absolute
# path inside the image. `cp -L` copies the file a symlink points to, because
# the target of a host symlink (/lib64/ld-linux-x86-64.so.2 points into
# /lib/x86_64-linux-gnu on Debian) is not in the image.
copy_to_rootfs() {
    local source_path="$1"
    mkdir -p "$rootfs$(dirname "$source_path")"
    cp -L "$source_path" "$rootfs$source_path"
    echo "build-image: added $source_path"
}

ldd_output="$(ldd "$binary" 2>&1 || true)"
if grep -q "not a dynamic executable\|statically linked" <<<"$ldd_output"; then
    echo "build-image: $binary is statically linked, no libraries to copy"
else
    while read -r line; do
        case "$line" in
            *"not found"*)
                echo "build-image: ldd cannot resolve a library of $binary: $line" >&2
                exit 1
                ;;
            *"=> /"*)
                # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
                copy_to_rootfs "$(awk '{print $3}' <<<"$line")"
                ;;
            /*)
                # The loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
                copy_to_rootfs "$(awk '{print $1}' <<<"$line")"
                ;;
            *)
                # linux-vdso.so.1 is mapped by the kernel and has no file.
                ;;
        esac
    done <<<"$ldd_output"
fi

cat >"$rootfs/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
raftq:x:$RAFTQ_UID:$RAFTQ_GID:raftq:/var/lib/raftq:/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<GROUP
root:x:0:
raftq:x:$RAFTQ_GID:
GROUP
# glibc resolves host names through NSS, and this is the order a Debian host
# uses. The files and dns modules are built into libc since glibc 2.34.
cat >"$rootfs/etc/nsswitch.conf" <<'NSS'
hosts: files dns
NSS

cp deploy/Dockerfile "$context/Dockerfile"

echo "build-image: building $image_tag"
"$docker_command" build --tag "$image_tag" "$context"
"$docker_command" image ls "$image_tag"
