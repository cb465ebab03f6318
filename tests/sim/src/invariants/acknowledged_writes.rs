//! No acknowledged write is lost: after healing, every node's state still
//! contains the response of every acknowledged request id, so a repeat of
//! the acknowledged command replays that response instead of applying again.
//!
//! The repeat runs on a copy of the node's final state. Commands that
//! `validate_command` rejects are skipped, since the state machine records
//! no response for them.

use raftq_state_machine::validation::validate_command;

use crate::cluster::FinalState;
use crate::history::History;
use crate::invariants::{push_capped, Violation};

pub const NAME: &str = "acknowledged_writes";

pub fn check(history: &History, finals: &[FinalState]) -> Vec<Violation> {
    let mut found = Vec::new();
    for node in finals {
        let mut state = node.state.clone();
        for (write, command, acknowledged) in history.acknowledged() {
            if validate_command(command).is_err() {
                continue;
            }
            let repeat = state.apply(command);
            if !repeat.replayed {
                found.push(format!(
                    "node {}: acknowledged {} {} is missing, because a repeat applied it again",
                    node.node_id,
                    command.operation.name(),
                    write.request_id
                ));
            } else if repeat.response != acknowledged.response {
                found.push(format!(
                    "node {}: acknowledged {} {} replays another response: {:?}, but the client got {:?}",
                    node.node_id,
                    command.operation.name(),
                    write.request_id,
                    repeat.response,
                    acknowledged.response
                ));
            }
        }
    }
    let mut violations = Vec::new();
    push_capped(&mut violations, NAME, found);
    violations
}

#[cfg(test)]
mod tests {
    use raftq_state_machine::{Command, Operation, Policy, QueueState, Timestamp};
    use uuid::Uuid;

    use super::*;
    use crate::history::WriteRecord;

    fn wake(request_id: &str, micros: i64) -> Command {
        Command {
            now: Timestamp::from_micros(micros),
            request_id: Some(request_id.to_string()),
            policy: Policy {
                request_retention_us: 3_600_000_000,
                ..Policy::default()
            },
            operation: Operation::WakeDispatchers {
                work_pool_id: Uuid::from_u128(7),
            },
        }
    }

    fn acknowledged(command: &Command, state: &mut QueueState) -> WriteRecord {
        let output = state.apply(command);
        WriteRecord {
            request_id: command.request_id.clone().unwrap_or_default(),
            attempts: vec![command.clone()],
            acknowledged: Some((command.clone(), output)),
        }
    }

    #[test]
    fn state_with_every_write_passes() {
        let mut state = QueueState::new();
        let history = History {
            writes: vec![
                acknowledged(&wake("a", 1_000), &mut state),
                acknowledged(&wake("b", 2_000), &mut state),
            ],
        };
        let finals = [FinalState {
            node_id: 1,
            last_applied: None,
            state,
        }];

        assert!(check(&history, &finals).is_empty());
    }

    #[test]
    fn state_missing_a_write_fails() {
        let mut leader_state = QueueState::new();
        let mut lagging_state = QueueState::new();
        let first = wake("a", 1_000);
        lagging_state.apply(&first);
        let history = History {
            writes: vec![
                acknowledged(&first, &mut leader_state),
                acknowledged(&wake("b", 2_000), &mut leader_state),
            ],
        };
        let finals = [
            FinalState {
                node_id: 1,
                last_applied: None,
                state: leader_state,
            },
            FinalState {
                node_id: 2,
                last_applied: None,
                state: lagging_state,
            },
        ];

        let violations = check(&history, &finals);

        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].detail.starts_with("node 2"),
            "{}",
            violations[0]
        );
        assert!(violations[0].detail.contains(" b "), "{}", violations[0]);
    }

    #[test]
    fn write_with_another_response_fails() {
        let mut state = QueueState::new();
        let mut record = acknowledged(&wake("a", 1_000), &mut state);
        let other = QueueState::new().apply(&wake("z", 1_000));
        let mut other_response = other.response;
        if let raftq_state_machine::Response::Woken(wakeup) = &mut other_response {
            wakeup.sequence = 99;
        }
        if let Some((_, output)) = &mut record.acknowledged {
            output.response = other_response;
        }
        let history = History {
            writes: vec![record],
        };
        let finals = [FinalState {
            node_id: 3,
            last_applied: None,
            state,
        }];

        let violations = check(&history, &finals);

        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].detail.contains("replays another response"),
            "{}",
            violations[0]
        );
    }
}
