#!/usr/bin/env bash
# The test command of the README. Runs, in order:
#   1. every Rust test of the workspace: the state machine's scenario and
#      property tests, Raft storage conformance and cluster tests, the server,
#      client and CLI tests, the end-to-end suites on real `raftq serve`
#      processes, the seeded cluster simulation and the bounded chaos run;
#   2. the Python client and Prefect storage module against real clusters,
#      Prefect's own standard suite included;
#   3. the deployment files: Kubernetes manifests validated offline, then a
#      docker compose cluster built from the repository and driven end to end.
# Set RAFTQ_TEST_SKIP_PYTHON=1 or RAFTQ_TEST_SKIP_DEPLOY=1 to leave out a part,
# for example on a machine without Docker.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end suites run the raftq binary, so it must match the sources.
cargo build --locked -p raftq-cli
cargo test --workspace --locked

if [[ "${RAFTQ_TEST_SKIP_PYTHON:-0}" != 1 ]]; then
    ./clients/python/scripts/test.sh -q
fi

if [[ "${RAFTQ_TEST_SKIP_DEPLOY:-0}" != 1 ]]; then
    ./tests/kubernetes/validate.sh
    ./tests/compose/run.sh
fi
