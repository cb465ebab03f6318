//! The invariants checked after every run, one module each.
//!
//! Each check is a pure function of what the run recorded, so the unit
//! tests beside it feed it a hand-made violation and expect a report.

pub mod acknowledged_writes;
pub mod committed_log;
pub mod single_holder;
pub mod state_agreement;
pub mod state_validity;

use std::fmt;

use crate::observer::{SeenValues, Source};

/// One broken invariant, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The name of the check, which is also its module's name.
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "[{}] {}", self.invariant, self.detail)
    }
}

/// Describes the values seen at one place and who saw each, e.g.
/// `17 seen by node 1 (durable log); 42 seen by node 3 (leader append)`.
pub(crate) fn describe_disagreement<K: fmt::Debug>(values: &SeenValues<K>) -> String {
    values
        .iter()
        .map(|(value, witnesses)| {
            let seen_by: Vec<String> = witnesses
                .iter()
                .map(|(node_id, source)| format!("node {node_id} ({})", describe_source(*source)))
                .collect();
            format!("{value:?} seen by {}", seen_by.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_source(source: Source) -> &'static str {
    match source {
        Source::LeaderAppend => "leader append",
        Source::DurableLog => "durable log",
        Source::LiveState => "live state",
    }
}

/// Keeps at most this many violations of one kind in a report; the count of
/// the rest is reported instead.
pub(crate) const MAX_REPORTED: usize = 5;

/// Appends `found` to `violations`, cut to [`MAX_REPORTED`] with a summary
/// of the rest.
pub(crate) fn push_capped(
    violations: &mut Vec<Violation>,
    invariant: &'static str,
    found: Vec<String>,
) {
    let total = found.len();
    for detail in found.into_iter().take(MAX_REPORTED) {
        violations.push(Violation { invariant, detail });
    }
    if total > MAX_REPORTED {
        violations.push(Violation {
            invariant,
            detail: format!("and {} more like these", total - MAX_REPORTED),
        });
    }
}
