#!/usr/bin/env bash
# Run the Python client's tests: unit tests, Prefect's standard suite for
# cleanup-queue storage on real raftq clusters, and a Prefect server using
# the cluster.
#
# Steps: create a virtual environment in clients/python/.venv, install the
# package with its test extras from PyPI, build the raftq binary with cargo
# unless RAFTQ_BIN names one, and run pytest with this script's arguments.
# PYTHON sets the interpreter of the environment (default python3), and
# RAFTQ_PYTHON_VENV sets another directory for it.
set -euo pipefail

client_dir="$(cd "$(dirname "$0")/.." && pwd)"
repository_dir="$(cd "$client_dir/../.." && pwd)"
python="${PYTHON:-python3}"
venv_dir="${RAFTQ_PYTHON_VENV:-$client_dir/.venv}"

if [[ ! -x "$venv_dir/bin/python" ]]; then
    echo "creating virtual environment in $venv_dir"
    "$python" -m venv "$venv_dir"
fi
venv_python="$venv_dir/bin/python"

"$venv_python" -m pip install --quiet --upgrade pip
# A regular (not editable) install, so the run also checks that the build
# generates the gRPC stubs.
"$venv_python" -m pip install --quiet "$client_dir[test]"

if [[ -z "${RAFTQ_BIN:-}" ]]; then
    echo "building the raftq binary"
    (cd "$repository_dir" && cargo build -p raftq-cli)
    target_dir="${CARGO_TARGET_DIR:-target}"
    [[ "$target_dir" == /* ]] || target_dir="$repository_dir/$target_dir"
    export RAFTQ_BIN="$target_dir/debug/raftq"
fi

cd "$client_dir"
exec "$venv_python" -m pytest "$@"
