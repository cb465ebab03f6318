//! State-machine agreement: nodes that applied the same log index have the
//! same `QueueState` there, compared by a digest of `to_snapshot()`.
//!
//! The states come from each node's snapshot file, from replaying each
//! stopped node's durable log entry by entry, and from each node's live
//! state at the end of the run.
//!
//! NOTE: only indexes that two nodes' samples share are compared. Replays
//! start at each node's latest snapshot, so the overlap can be a few
//! indexes in a run; the run report prints how many were compared.

use crate::invariants::{describe_disagreement, push_capped, Violation};
use crate::observer::Observations;

pub const NAME: &str = "state_agreement";

pub fn check(observations: &Observations) -> Vec<Violation> {
    let found = observations
        .states
        .iter()
        .filter(|(_, states)| states.len() > 1)
        .map(|(index, states)| {
            format!(
                "nodes disagree on the state after index {index}: {}",
                describe_disagreement(states)
            )
        })
        .collect();
    let mut violations = Vec::new();
    push_capped(&mut violations, NAME, found);
    violations
}

/// Returns how many indexes had a state seen by two or more nodes, which is
/// how many comparisons the check could make.
pub fn compared_indexes(observations: &Observations) -> usize {
    observations
        .states
        .values()
        .filter(|states| {
            let mut nodes: Vec<u64> = states
                .values()
                .flatten()
                .map(|(node_id, _)| *node_id)
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            nodes.len() > 1
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::Source;

    #[test]
    fn equal_states_pass() {
        let mut observations = Observations::default();
        observations.record_state((1, Source::DurableLog), 7, 100);
        observations.record_state((2, Source::LiveState), 7, 100);

        assert!(check(&observations).is_empty());
        assert_eq!(compared_indexes(&observations), 1);
    }

    #[test]
    fn different_states_at_one_index_fail() {
        let mut observations = Observations::default();
        observations.record_state((1, Source::DurableLog), 7, 100);
        observations.record_state((2, Source::DurableLog), 7, 101);
        observations.record_state((2, Source::DurableLog), 8, 102);

        let violations = check(&observations);

        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].invariant, NAME);
        assert!(
            violations[0].detail.contains("index 7"),
            "{}",
            violations[0]
        );
    }
}
