#!/usr/bin/env bash
# End-to-end test of deploy/compose.yaml: a three-node cluster in containers,
# driven from the host with the raftq binary through the 127.0.0.1 ports.
#
#  1. builds raftq:dev and the host binary (deploy/build-image.sh),
#  2. brings the cluster up under a unique project name and waits for
#     `raftq init` and for one leader with three voters,
#  3. runs a worker cycle (enqueue, reserve, ack),
#  4. stops the leader's container, waits for a new leader, runs the cycle
#     again,
#  5. starts the old leader again and waits until its applied index reaches
#     the leader's,
#  6. removes containers, network and volumes (`down -v`), also on failure.
#
# Environment:
#   RAFTQ_IMAGE                image tag to build and run (default raftq:dev)
#   RAFTQ_TEST_SKIP_BUILD=1    use the existing image and target/release/raftq
#   RAFTQ_TEST_WAIT_S          deadline of each wait, in seconds (default 120)
set -euo pipefail

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repository_root"

compose_file="deploy/compose.yaml"
project="raftq-compose-test-$$-$(date +%s)"
wait_s="${RAFTQ_TEST_WAIT_S:-120}"
export RAFTQ_IMAGE="${RAFTQ_IMAGE:-raftq:dev}"
checks_passed=0

log() {
    echo "compose-test: $*"
}

fail() {
    echo "compose-test: FAILED: $*" >&2
    exit 1
}

pass() {
    checks_passed=$((checks_passed + 1))
    log "ok: $*"
}

# --- tools -------------------------------------------------------------------

# Debian ships docker-compose 1.x as a separate program, and Docker's own
# packages ship the `docker compose` plugin. Both read deploy/compose.yaml.
if docker compose version >/dev/null 2>&1; then
    compose_command=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_command=(docker-compose)
else
    fail "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)"
fi
for tool in jq python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (Debian: apt-get install $tool)"
done
log "using ${compose_command[*]} ($("${compose_command[@]}" version --short 2>/dev/null || echo "version unknown"))"

compose() {
    "${compose_command[@]}" --project-name "$project" --file "$compose_file" "$@"
}

# Prints a TCP port that is free on 127.0.0.1 now. Docker binds it a moment
# later, so another program could take it in between. That race is accepted
# because the alternative, random host ports, can change when a container
# restarts, and this test restarts one.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

declare -A client_port
for node in 1 2 3; do
    client_port[$node]="$(free_port)"
    export "RAFTQ_N${node}_CLIENT_PORT=${client_port[$node]}"
    export "RAFTQ_N${node}_METRICS_PORT=$(free_port)"
done

endpoint() {
    echo "http://127.0.0.1:${client_port[$1]}"
}
all_endpoints="$(endpoint 1),$(endpoint 2),$(endpoint 3)"

# --- teardown ------------------------------------------------------------------

cleanup() {
    local exit_code=$?
    trap - EXIT INT TERM
    if [[ $exit_code -ne 0 ]]; then
        log "state of project $project at the failure:"
        compose ps || true
        compose logs --no-color --tail=100 || true
    fi
    log "removing project $project (down -v)"
    compose down --volumes --remove-orphans --timeout 10 || log "down -v failed: remove the containers and volumes of project $project by hand"
    if [[ $exit_code -ne 0 ]]; then
        echo "compose: $checks_passed passed, 1 failed"
    fi
    exit "$exit_code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------

if [[ "${RAFTQ_TEST_SKIP_BUILD:-0}" != 1 ]]; then
    deploy/build-image.sh "$RAFTQ_IMAGE"
fi
target_directory="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)" \
    || fail "cargo metadata failed, so the target directory of target/release/raftq is unknown"
raftq="$target_directory/release/raftq"
[[ -x "$raftq" ]] || fail "$raftq is missing; run deploy/build-image.sh"
docker image inspect "$RAFTQ_IMAGE" >/dev/null 2>&1 || fail "image $RAFTQ_IMAGE is missing; run deploy/build-image.sh"

# Runs the host binary with a deadline, so that a hung call fails the test
# instead of stalling it.
raftq_cli() {
    timeout 30 "$raftq" "$@"
}

# --- waiting -----------------------------------------------------------------

# Runs CONDITION... once a second until it succeeds, or fails the test when
# wait_s seconds have passed. DESCRIPTION names the condition in messages.
wait_until() {
    local description="$1"
    shift
    local deadline=$((SECONDS + wait_s))
    log "waiting until $description (at most ${wait_s}s)"
    until "$@"; do
        if ((SECONDS >= deadline)); then
            fail "timed out after ${wait_s}s waiting until $description"
        fi
        sleep 1
    done
}

container_of() {
    compose ps --all --quiet "$1"
}

init_succeeded() {
    local container state
    container="$(container_of init)"
    [[ -n "$container" ]] || return 1
    state="$(docker inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$container")"
    [[ "$state" == "exited 0" ]]
}

container_healthy() {
    local container
    container="$(container_of "$1")"
    [[ -n "$container" ]] || return 1
    [[ "$(docker inspect --format '{{.State.Health.Status}}' "$container")" == healthy ]]
}

# Prints the cluster status reported by node $1, as JSON.
node_status() {
    raftq_cli status --endpoints "$(endpoint "$1")" --json 2>/dev/null
}

# Prints the leader id that node $1 reports, or nothing.
leader_seen_by() {
    node_status "$1" | jq -r '.leader_id // empty'
}

# Succeeds when every node in $@ reports the same leader and three voters.
nodes_agree_on_leader() {
    local node leader="" status seen voters
    for node in "$@"; do
        status="$(node_status "$node")" || return 1
        seen="$(jq -r '.leader_id // empty' <<<"$status")"
        voters="$(jq '[.members[]? | select(.voter)] | length' <<<"$status")"
        [[ -n "$seen" && "$voters" == 3 ]] || return 1
        if [[ -z "$leader" ]]; then
            leader="$seen"
        fi
        [[ "$seen" == "$leader" ]] || return 1
    done
}

# Succeeds when node $1 reports a leader other than $2.
new_leader_seen_by() {
    local seen
    seen="$(leader_seen_by "$1")" || return 1
    [[ -n "$seen" && "$seen" != "$2" ]]
}

# Succeeds when node $1 has applied at least as far as the leader has.
caught_up_with_leader() {
    local node="$1" leader node_applied leader_applied
    leader="$(leader_seen_by "$node")" || return 1
    [[ -n "$leader" && "$leader" != "$node" ]] || return 1
    node_applied="$(node_status "$node" | jq -r '.applied_index // empty')" || return 1
    leader_applied="$(node_status "$leader" | jq -r '.applied_index // empty')" || return 1
    [[ -n "$node_applied" && -n "$leader_applied" ]] || return 1
    log "node $node applied $node_applied, leader $leader applied $leader_applied"
    ((node_applied >= leader_applied))
}

# --- the worker cycle --------------------------------------------------------

# Prints the value of the jq filter $1 in the JSON document $2. Fails the test
# with the message $3 when the filter yields null or nothing.
json_field() {
    local filter="$1" document="$2" message="$3" value
    value="$(jq -r "$filter // empty" <<<"$document")" || fail "$message: output is not JSON: $document"
    [[ -n "$value" ]] || fail "$message: $filter is missing in: $document"
    echo "$value"
}

# Enqueues one message into a new pool, reserves it and acks it, then checks
# the pool's counts. Reservation tokens are never printed.
run_worker_cycle() {
    local label="$1"
    local pool enqueued message_id duplicate reservation reservation_shown reserved_id delivery_count token
    local ack ack_status stats
    pool="$(python3 -c 'import uuid; print(uuid.uuid4())')"

    enqueued="$(raftq_cli enqueue --endpoints "$all_endpoints" --json \
        --pool "$pool" --kind compose_test.v1 --key "compose-test-$label" \
        --target '{"container_id": "compose-test", "attempt": 1}')" \
        || fail "enqueue ($label) failed"
    message_id="$(json_field .message.message_id "$enqueued" "enqueue ($label)")"
    duplicate="$(jq -r .duplicate <<<"$enqueued")"
    [[ "$duplicate" == false ]] || fail "enqueue ($label) returned duplicate=$duplicate for a new key, expected false"
    pass "enqueue ($label) stored message $message_id in pool $pool"

    reservation="$(raftq_cli reserve --endpoints "$all_endpoints" --json --pool "$pool")" \
        || fail "reserve ($label) failed"
    # Drops the token before the document can appear in a message.
    reservation_shown="$(jq -c '.reservation | del(.reservation_token)' <<<"$reservation" 2>/dev/null || echo "(not JSON)")"
    reserved_id="$(jq -r '.reservation.message_id // empty' <<<"$reservation")"
    [[ -n "$reserved_id" ]] || fail "reserve ($label) returned no reservation: $reservation_shown"
    [[ "$reserved_id" == "$message_id" ]] \
        || fail "reserve ($label) returned message $reserved_id, expected $message_id"
    delivery_count="$(jq -r .reservation.delivery_count <<<"$reservation")"
    [[ "$delivery_count" == 1 ]] \
        || fail "reserve ($label) returned delivery_count $delivery_count, expected 1: $reservation_shown"
    token="$(jq -r '.reservation.reservation_token // empty' <<<"$reservation")"
    [[ -n "$token" ]] || fail "reserve ($label) returned no reservation_token: $reservation_shown"
    pass "reserve ($label) returned message $message_id with a token"

    ack="$(raftq_cli ack --endpoints "$all_endpoints" --json \
        --pool "$pool" --message-id "$message_id" --token "$token")" || fail "ack ($label) failed"
    ack_status="$(json_field .status "$ack" "ack ($label)")"
    [[ "$ack_status" == accepted ]] || fail "ack ($label) returned status $ack_status, expected accepted: $ack"
    pass "ack ($label) accepted"

    stats="$(raftq_cli stats --endpoints "$all_endpoints" --json --pool "$pool")" \
        || fail "stats ($label) failed"
    [[ "$(jq -c '[.active, .reserved, .dead_lettered, .tombstones]' <<<"$stats")" == "[0,0,0,1]" ]] \
        || fail "stats ($label) after the ack: $stats, expected active 0, reserved 0, dead_lettered 0, tombstones 1"
    pass "stats ($label) show one acked message and nothing active"
}

# --- the test ----------------------------------------------------------------

log "starting project $project (client ports ${client_port[1]}, ${client_port[2]}, ${client_port[3]})"
# Compose itself waits for the health checks before it starts `init`, and the
# outer timeout bounds that wait.
timeout $((wait_s * 2)) "${compose_command[@]}" --project-name "$project" --file "$compose_file" up -d \
    || fail "compose up failed or timed out"

wait_until "raftq init exited 0" init_succeeded
pass "raftq init formed the cluster"

wait_until "all three nodes report the same leader and three voters" nodes_agree_on_leader 1 2 3
pass "three voters agree on a leader"

run_worker_cycle "before-failover"

old_leader="$(leader_seen_by 1)"
[[ "$old_leader" =~ ^[123]$ ]] || fail "leader id '$old_leader' is not one of the compose nodes 1, 2, 3"
survivors=()
for node in 1 2 3; do
    [[ "$node" == "$old_leader" ]] || survivors+=("$node")
done

log "stopping the leader's container n$old_leader"
compose stop --timeout 30 "n$old_leader"
wait_until "node ${survivors[0]} reports a leader other than $old_leader" new_leader_seen_by "${survivors[0]}" "$old_leader"
wait_until "nodes ${survivors[*]} agree on the new leader" nodes_agree_on_leader "${survivors[@]}"
pass "a new leader, $(leader_seen_by "${survivors[0]}"), took over from $old_leader"

run_worker_cycle "after-failover"

log "starting the old leader's container n$old_leader again"
compose start "n$old_leader"
wait_until "container n$old_leader is healthy" container_healthy "n$old_leader"
wait_until "node $old_leader catches up with the leader" caught_up_with_leader "$old_leader"
pass "node $old_leader rejoined and caught up"

wait_until "all three nodes agree on the leader again" nodes_agree_on_leader 1 2 3
pass "three voters agree on a leader after the restart"

echo "compose: $checks_passed passed, 0 failed"
