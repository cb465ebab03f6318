//! Membership changes online, with joiners that catch up from a snapshot
//! because the log they missed was purged.

mod common;

use std::collections::BTreeSet;

use common::*;
use raftq_raft::{InitOutcome, MembershipError, NodeConfig, RaftNode};
use raftq_state_machine::QueueState;
use uuid::Uuid;

fn compacting_config(node_id: u64, root: &std::path::Path) -> NodeConfig {
    let mut config = test_config(node_id, &data_dir(root, node_id), any_local_port());
    config.snapshot_every_entries = 5;
    config.max_in_snapshot_log_to_keep = 0;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joiners_catch_up_from_snapshot_after_purge() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let pool = Uuid::from_u128(0xfeed);
    let mut expected_state = QueueState::new();

    // A one-node cluster writes enough to snapshot and purge its log.
    let first = RaftNode::start(compacting_config(1, root.path()))
        .await
        .unwrap();
    let outcome = first.initialize(members(&[&first])).await.unwrap();
    assert_eq!(outcome, InitOutcome::Initialized);
    wait_for_leader(&first, None).await;

    for number in 0..30 {
        let command = if number % 10 == 9 {
            wake(pool, number)
        } else {
            enqueue(pool, number)
        };
        let output = first.write(command.clone()).await.unwrap();
        assert_eq!(
            output,
            expected_state.apply(&command),
            "output of command {number}"
        );
    }
    let purged = first
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |metrics| metrics.purged.is_some_and(|purged| purged.index >= 20),
            "log purged behind a snapshot",
        )
        .await
        .expect("the leader did not purge its log")
        .purged
        .expect("the wait condition checked the purge");

    // Two nodes join as learners. The first entries are gone from the log,
    // so each must receive a snapshot.
    let second = RaftNode::start(compacting_config(2, root.path()))
        .await
        .unwrap();
    let third = RaftNode::start(compacting_config(3, root.path()))
        .await
        .unwrap();
    let mut joiner_wakeups = second.subscribe_wakeups(pool);
    assert_eq!(*joiner_wakeups.borrow(), 0);

    let before_join = last_log_index(&first);
    first.add_learner(2, node_info(&second)).await.unwrap();
    // add_learner returns only once the learner's log contains the leader's.
    let matched = first
        .metrics()
        .borrow()
        .replication
        .as_ref()
        .and_then(|replication| replication.get(&2).cloned().flatten())
        .map(|log_id| log_id.index);
    assert!(matched >= Some(before_join), "learner 2 matched {matched:?}, leader had {before_join}");
    first.add_learner(3, node_info(&third)).await.unwrap();

    let applied = last_log_index(&first);
    for joiner in [&second, &third] {
        wait_applied(joiner, applied).await;
        let snapshot = joiner.metrics().borrow().snapshot;
        assert!(
            snapshot.is_some_and(|snapshot| snapshot.index >= purged.index),
            "node {} has no snapshot covering the purged log: {snapshot:?}",
            joiner.node_id()
        );
        assert_same_state(joiner, &expected_state);
    }

    // The snapshot install published the pool's wakeup sequence.
    let sequence = expected_state.wakeup_sequence(pool);
    tokio::time::timeout(WAIT, joiner_wakeups.wait_for(|seen| *seen >= sequence))
        .await
        .expect("the joiner's wakeup receiver timed out")
        .unwrap();
    assert_eq!(*joiner_wakeups.borrow(), sequence);

    // A voter must be a learner first.
    let error = first
        .change_voters(BTreeSet::from([1, 2, 4]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, MembershipError::Invalid { .. }),
        "unexpected error {error:?}"
    );

    first
        .change_voters(BTreeSet::from([1, 2, 3]))
        .await
        .unwrap();
    let voters: BTreeSet<u64> = first
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 3]));

    let nodes = [&first, &second, &third];
    for number in 30..40 {
        let command = enqueue(pool, number);
        let output = write_to_leader(&nodes, command.clone()).await;
        assert_eq!(
            output,
            expected_state.apply(&command),
            "output of command {number}"
        );
    }

    // A voter leaves, and the other two keep the quorum.
    let leader = nodes
        .iter()
        .find(|node| node.current_leader().map(|(id, _)| id) == Some(node.node_id()));
    let leader = leader.expect("a node leads after the voter change");
    leader.remove_node(3).await.unwrap();
    let membership = leader.metrics().borrow().membership_config.clone();
    assert_eq!(
        membership.membership().voter_ids().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );
    assert!(
        membership.membership().get_node(&3).is_none(),
        "node 3 is still a learner"
    );

    // Removing it again changes nothing and succeeds.
    leader.remove_node(3).await.unwrap();

    let command = enqueue(pool, 40);
    let output = write_to_leader(&[&first, &second], command.clone()).await;
    assert_eq!(output, expected_state.apply(&command));

    let applied = last_log_index(&first).max(last_log_index(&second));
    for node in [&first, &second] {
        wait_applied(node, applied).await;
        assert_same_state(node, &expected_state);
    }

    for node in [first, second, third] {
        node.shutdown().await.unwrap();
    }
}
