//! `QueueState::validate()` passes on every node at the end of a run.

use crate::cluster::FinalState;
use crate::invariants::{push_capped, Violation};

pub const NAME: &str = "state_validity";

pub fn check(finals: &[FinalState]) -> Vec<Violation> {
    let found = finals
        .iter()
        .filter_map(|node| {
            node.state
                .validate()
                .err()
                .map(|reason| format!("node {} has an invalid state: {reason}", node.node_id))
        })
        .collect();
    let mut violations = Vec::new();
    push_capped(&mut violations, NAME, found);
    violations
}

#[cfg(test)]
mod tests {
    use raftq_state_machine::{Command, Enqueue, Operation, Policy, QueueState, Timestamp};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn empty_state_passes() {
        let finals = [FinalState {
            node_id: 1,
            last_applied: None,
            state: QueueState::new(),
        }];

        assert!(check(&finals).is_empty());
    }

    #[test]
    fn corrupt_state_fails() {
        let finals = [FinalState {
            node_id: 2,
            last_applied: None,
            state: state_with_unissued_sequence(),
        }];

        let violations = check(&finals);

        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.contains("node 2"), "{}", violations[0]);
    }

    /// Returns a state whose one message has an enqueue sequence that the
    /// state never issued. `apply` cannot produce it, so the snapshot bytes
    /// are edited: with no request ids recorded, the encoding ends with
    /// `next_enqueue_sequence`, `next_move_sequence`, the two empty request
    /// maps and `latest_time`, each 8 bytes in bincode 1.3.
    fn state_with_unissued_sequence() -> QueueState {
        let mut state = QueueState::new();
        let command = Command {
            now: Timestamp::from_micros(1_000),
            request_id: None,
            policy: Policy::default(),
            operation: Operation::Enqueue(Enqueue {
                message_id: Uuid::from_u128(1),
                idempotency_key: "key".to_string(),
                work_pool_id: Uuid::from_u128(2),
                work_queue_id: None,
                kind: "cleanup".to_string(),
                target_json: "{}".to_string(),
                data_json: None,
            }),
        };
        state.apply(&command);
        assert!(state.validate().is_ok());

        let mut bytes = state.to_snapshot();
        let next_enqueue_sequence = bytes.len() - 40..bytes.len() - 32;
        bytes[next_enqueue_sequence].fill(0);
        QueueState::from_snapshot(&bytes).expect("the edited snapshot still decodes")
    }
}
