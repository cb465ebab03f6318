//! Helpers shared by the cluster tests: nodes on 127.0.0.1, commands of the
//! queue and waits on metrics with deadlines.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftq_raft::{NodeConfig, NodeInfo, RaftNode, WriteError};
use raftq_state_machine::{
    Command, CommandOutput, Enqueue, Operation, Policy, QueueState, Timestamp,
};
use uuid::Uuid;

/// Deadline of every wait on the cluster. Generous because the two cores of
/// a test machine may be busy with other builds.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Returns a test configuration: heartbeat 50 ms, elections after 300 to
/// 600 ms, the peer service on `peer_listen`.
pub fn test_config(node_id: u64, data_dir: &Path, peer_listen: SocketAddr) -> NodeConfig {
    let advertise = NodeInfo {
        client_addr: client_addr(node_id),
        peer_addr: peer_listen.to_string(),
    };
    let mut config = NodeConfig::new(node_id, data_dir.to_path_buf(), peer_listen, advertise);
    config.heartbeat_interval_ms = 50;
    config.election_timeout_min_ms = 300;
    config.election_timeout_max_ms = 600;
    config.request_timeout_ms = 5_000;
    config.membership_timeout_ms = 20_000;
    config
}

/// Returns a client address for the membership. Nothing dials it in these
/// tests, because it only has to come back in `ForwardToLeader`.
pub fn client_addr(node_id: u64) -> String {
    format!("127.0.0.1:{}", 17_000 + node_id)
}

pub fn any_local_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Returns the membership entry of a started node, with its bound address.
pub fn node_info(node: &RaftNode) -> NodeInfo {
    NodeInfo {
        client_addr: client_addr(node.node_id()),
        peer_addr: node.peer_addr().to_string(),
    }
}

pub fn members(nodes: &[&RaftNode]) -> BTreeMap<u64, NodeInfo> {
    nodes
        .iter()
        .map(|node| (node.node_id(), node_info(node)))
        .collect()
}

pub fn data_dir(root: &Path, node_id: u64) -> PathBuf {
    root.join(format!("node-{node_id}"))
}

/// Builds an enqueue of message number `number` into `pool`, at a time that
/// grows with `number`.
pub fn enqueue(pool: Uuid, number: u64) -> Command {
    Command {
        now: Timestamp::from_micros(1_700_000_000_000_000 + number as i64 * 1_000),
        request_id: Some(format!("enqueue-{number}")),
        policy: Policy::default(),
        operation: Operation::Enqueue(Enqueue {
            message_id: Uuid::from_u128(number as u128 + 1),
            idempotency_key: format!("key-{number}"),
            work_pool_id: pool,
            work_queue_id: None,
            kind: "cleanup".to_string(),
            target_json: format!("{{\"flow_run\":{number}}}"),
            data_json: None,
        }),
    }
}

pub fn wake(pool: Uuid, number: u64) -> Command {
    Command {
        now: Timestamp::from_micros(1_700_000_000_000_000 + number as i64 * 1_000),
        request_id: None,
        policy: Policy::default(),
        operation: Operation::WakeDispatchers { work_pool_id: pool },
    }
}

/// Waits until `node` reports a leader other than `excluded`, and returns it.
pub async fn wait_for_leader(node: &RaftNode, excluded: Option<u64>) -> u64 {
    let metrics = node
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |metrics| metrics.current_leader.is_some() && metrics.current_leader != excluded,
            "a leader is known",
        )
        .await
        .unwrap_or_else(|error| panic!("node {} saw no leader: {error}", node.node_id()));
    metrics
        .current_leader
        .expect("the wait condition checked the leader")
}

/// Waits until `node` applied at least up to `index`.
pub async fn wait_applied(node: &RaftNode, index: u64) {
    node.raft()
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), "applied the expected entries")
        .await
        .unwrap_or_else(|error| {
            panic!(
                "node {} did not apply up to {index}: {error}",
                node.node_id()
            )
        });
}

/// Returns the node's last log index. On a leader it covers every write
/// that returned, unlike `last_applied`, which the metrics may report only
/// after the write's response was sent.
pub fn last_log_index(node: &RaftNode) -> u64 {
    node.metrics().borrow().last_log_index.unwrap_or(0)
}

/// Writes through whichever of `nodes` leads, retrying while leadership
/// settles, until the deadline.
pub async fn write_to_leader(nodes: &[&RaftNode], command: Command) -> CommandOutput {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = nodes
            .iter()
            .find(|node| node.metrics().borrow().current_leader == Some(node.node_id()));
        let error = match leader {
            Some(leader) => match leader.write(command.clone()).await {
                Ok(output) => return output,
                Err(
                    error @ (WriteError::ForwardToLeader { .. } | WriteError::Unavailable { .. }),
                ) => error.to_string(),
                Err(error) => panic!("write through node {} failed: {error}", leader.node_id()),
            },
            None => "no node leads".to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write succeeded before the deadline: {error}"
        );
        tracing::info!(%error, "retrying a write");
        // A pause between attempts while an election runs (300 to 600 ms).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that the node's applied state equals `expected`, comparing the
/// snapshot encodings and showing the first differing field on failure.
pub fn assert_same_state(node: &RaftNode, expected: &QueueState) {
    let actual = node.read_local(|state| state.to_snapshot());
    if actual != expected.to_snapshot() {
        let actual = node.read_local(|state| format!("{state:#?}"));
        let expected = format!("{expected:#?}");
        let (line, (actual_line, expected_line)) = actual
            .lines()
            .zip(expected.lines())
            .enumerate()
            .find(|(_, (actual_line, expected_line))| actual_line != expected_line)
            .unwrap_or((0, ("(a prefix of the other)", "")));
        panic!(
            "state of node {} differs at line {line} of its debug output: {actual_line:?} != expected {expected_line:?}",
            node.node_id()
        );
    }
}
