//! A three-node cluster over real tonic on 127.0.0.1: election, replication,
//! reads, wakeups, leader failover and a restart from disk.

mod common;

use std::time::Duration;

use common::*;
use raftq_raft::{InitOutcome, RaftNode, ReadError, WriteError};
use raftq_state_machine::{QueueState, Response};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_fail_over_and_restart() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let pool = Uuid::from_u128(0xbeef);

    let mut nodes = Vec::new();
    for node_id in 1..=3 {
        let config = test_config(node_id, &data_dir(root.path(), node_id), any_local_port());
        nodes.push(RaftNode::start(config).await.unwrap());
    }
    let membership = members(&nodes.iter().collect::<Vec<_>>());

    // Forming the cluster twice is harmless.
    assert_eq!(
        nodes[0].initialize(membership.clone()).await.unwrap(),
        InitOutcome::Initialized
    );
    assert_eq!(
        nodes[0].initialize(membership.clone()).await.unwrap(),
        InitOutcome::AlreadyInitialized
    );

    let leader_id = wait_for_leader(&nodes[0], None).await;
    for node in &nodes {
        assert_eq!(
            wait_for_leader(node, None).await,
            leader_id,
            "node {} sees another leader",
            node.node_id()
        );
    }
    let leader = nodes
        .iter()
        .find(|node| node.node_id() == leader_id)
        .unwrap()
        .clone();
    let follower = nodes
        .iter()
        .find(|node| node.node_id() != leader_id)
        .unwrap()
        .clone();

    // A node that joined through replication is initialized too.
    assert_eq!(
        follower.initialize(membership.clone()).await.unwrap(),
        InitOutcome::AlreadyInitialized
    );

    // Subscribed before any wakeup: the follower's receiver starts at 0.
    let mut early_wakeups = follower.subscribe_wakeups(pool);
    assert_eq!(*early_wakeups.borrow(), 0);

    // The leader's outputs are those of the pure state machine.
    let mut expected_state = QueueState::new();
    for number in 0..20 {
        let command = enqueue(pool, number);
        let output = leader.write(command.clone()).await.unwrap();
        assert_eq!(
            output,
            expected_state.apply(&command),
            "output of enqueue {number}"
        );
        assert!(matches!(
            output.response,
            Response::Enqueued {
                duplicate: false,
                ..
            }
        ));
    }
    let wake_output = leader.write(wake(pool, 20)).await.unwrap();
    assert_eq!(wake_output, expected_state.apply(&wake(pool, 20)));

    // A follower sends writers and linearizable readers to the leader.
    match follower.write(enqueue(pool, 99)).await {
        Err(WriteError::ForwardToLeader {
            leader_id: Some(id),
            leader: Some(info),
        }) => {
            assert_eq!(id, leader_id);
            assert_eq!(info.client_addr, client_addr(leader_id));
        }
        other => panic!("expected ForwardToLeader from a follower, got {other:?}"),
    }
    match follower
        .read_linearizable(|state| state.pool_stats(pool))
        .await
    {
        Err(ReadError::ForwardToLeader {
            leader_id: Some(id),
            ..
        }) => assert_eq!(id, leader_id),
        other => panic!("expected ForwardToLeader from a follower, got {other:?}"),
    }
    assert_eq!(follower.current_leader().map(|(id, _)| id), Some(leader_id));

    let stats = leader
        .read_linearizable(|state| state.pool_stats(pool))
        .await
        .unwrap();
    assert_eq!(stats.active, 20);
    assert_eq!(stats.wakeup_sequence, expected_state.wakeup_sequence(pool));

    // Every node applies the same log to the same state.
    let applied = last_log_index(&leader);
    for node in &nodes {
        wait_applied(node, applied).await;
        assert_same_state(node, &expected_state);
    }

    // The early subscriber saw the wakeup, and a late one starts at it.
    let sequence = expected_state.wakeup_sequence(pool);
    assert!(sequence > 0);
    tokio::time::timeout(WAIT, early_wakeups.wait_for(|seen| *seen >= sequence))
        .await
        .expect("the follower's wakeup receiver timed out")
        .unwrap();
    assert_eq!(*follower.subscribe_wakeups(pool).borrow(), sequence);

    // The leader stops, and the other two elect a new one and keep writing.
    let old_leader_dir = data_dir(root.path(), leader_id);
    let old_leader_peer = leader.peer_addr();
    nodes.retain(|node| node.node_id() != leader_id);
    drop(follower);
    leader.shutdown().await.unwrap();

    let new_leader_id = wait_for_leader(&nodes[0], Some(leader_id)).await;
    assert_ne!(new_leader_id, leader_id);
    let survivors: Vec<&RaftNode> = nodes.iter().collect();
    for number in 100..110 {
        let command = enqueue(pool, number);
        let output = write_to_leader(&survivors, command.clone()).await;
        assert_eq!(
            output,
            expected_state.apply(&command),
            "output of enqueue {number} after failover"
        );
    }

    // The old leader restarts from its data directory and catches up.
    let config = test_config(leader_id, &old_leader_dir, old_leader_peer);
    let restarted = start_with_retry(config).await;
    let target = nodes.iter().map(last_log_index).max().unwrap();
    wait_applied(&restarted, target).await;
    nodes.push(restarted);

    for node in &nodes {
        wait_applied(node, target).await;
        assert_same_state(node, &expected_state);
    }

    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// Starts a node, retrying while the previous instance in this process still
/// holds the sled lock or the peer port (its background tasks end shortly
/// after `shutdown`).
async fn start_with_retry(config: raftq_raft::NodeConfig) -> RaftNode {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match RaftNode::start(config.clone()).await {
            Ok(node) => return node,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "retrying a node start");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("node {} did not restart: {error}", config.node_id),
        }
    }
}
