//! Committed log entries never change: every observation of a committed
//! index names the same log id and payload, a log id always carries the
//! same payload, and applying the entry at an index returns the same output
//! on every node.
//!
//! Observations come from the AppendEntries requests of each leader (an
//! entry it sent, once its commit index passed it) and from each stopped
//! node's durable log up to its committed index. So an entry read back after
//! a crash is compared with what the leader had committed before.

use crate::invariants::{describe_disagreement, push_capped, Violation};
use crate::observer::Observations;

pub const NAME: &str = "committed_log";

pub fn check(observations: &Observations) -> Vec<Violation> {
    let mut found = Vec::new();
    for (index, entries) in &observations.committed {
        if entries.len() > 1 {
            found.push(format!(
                "committed index {index} holds different entries (log id, payload digest): {}",
                describe_disagreement(entries)
            ));
        }
    }
    for (log_id, payloads) in &observations.entries {
        if payloads.len() > 1 {
            found.push(format!(
                "log id {log_id} carries different payloads: {}",
                describe_disagreement(payloads)
            ));
        }
    }
    for (index, responses) in &observations.responses {
        if responses.len() > 1 {
            found.push(format!(
                "applying index {index} returned different outputs: {}",
                describe_disagreement(responses)
            ));
        }
    }
    let mut violations = Vec::new();
    push_capped(&mut violations, NAME, found);
    violations
}

/// Returns how many committed indexes were seen by two or more nodes.
pub fn compared_indexes(observations: &Observations) -> usize {
    observations
        .committed
        .values()
        .filter(|entries| {
            let mut nodes: Vec<u64> = entries
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
    use openraft::CommittedLeaderId;
    use raftq_raft::types::LogId;

    use super::*;
    use crate::observer::Source;

    fn log_id(term: u64, leader: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    #[test]
    fn same_committed_entry_passes() {
        let mut observations = Observations::default();
        observations.record_committed((1, Source::LeaderAppend), log_id(2, 1, 5), 9);
        observations.record_committed((3, Source::DurableLog), log_id(2, 1, 5), 9);
        observations.record_response((1, Source::DurableLog), 5, 4);
        observations.record_response((3, Source::DurableLog), 5, 4);

        assert!(check(&observations).is_empty());
        assert_eq!(compared_indexes(&observations), 1);
    }

    #[test]
    fn committed_entry_replaced_by_another_term_fails() {
        let mut observations = Observations::default();
        observations.record_committed((1, Source::LeaderAppend), log_id(2, 1, 5), 9);
        observations.record_committed((2, Source::DurableLog), log_id(3, 2, 5), 10);

        let violations = check(&observations);

        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].detail.contains("committed index 5"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn log_id_with_two_payloads_fails() {
        let mut observations = Observations::default();
        observations.record_entry((1, Source::LeaderAppend), log_id(2, 1, 5), 9);
        observations.record_entry((2, Source::DurableLog), log_id(2, 1, 5), 10);

        let violations = check(&observations);

        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].detail.contains("carries different payloads"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn different_outputs_at_one_index_fail() {
        let mut observations = Observations::default();
        observations.record_response((1, Source::DurableLog), 5, 4);
        observations.record_response((2, Source::DurableLog), 5, 8);

        let violations = check(&observations);

        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].detail.contains("applying index 5"),
            "{}",
            violations[0]
        );
    }
}
