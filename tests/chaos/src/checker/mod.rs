//! The checker: reads a history and reports every broken promise.
//!
//! Calls whose outcome is unknown ([`Outcome::Info`]) may or may not have
//! happened, so they only ever excuse an observation, never cause a
//! violation. Real-time order comes from the recorder's monotonic clock, in
//! which a call that ended before another started precedes it. Server times
//! are compared only with other server times, which the leaders keep
//! monotonic across elections.
//!
//! Rules, one per [`Rule`]:
//! - an acknowledged enqueue is never lost: at the end each is active,
//!   dead-lettered or an acked tombstone (with an ack attempted);
//! - no two reservations of a message overlap unless the first was released
//!   or acked first, and a token is never accepted after a later
//!   reservation was granted;
//! - delivery_count rises by exactly one per committed reservation;
//! - an acked message never comes back;
//! - a dead-letter move happens once and is final;
//! - wakeup sequences never go backwards per observer, and each observer
//!   observes every visible-making commit within a bound;
//! - reads are linearizable: a read reflects every write acknowledged before it
//!   started.

mod messages;
mod wakeups;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::history::{Call, DeadLetterView, Op, Outcome, Reply, ReservationView};

/// Process name of the calls made by the final verification.
pub const FINAL_PROCESS: &str = "final";

/// A promise of the contract that a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    AcknowledgedEnqueueLost,
    DoubleReservation,
    DeliveryCount,
    AckedMessageReturned,
    DeadLetterMovedTwice,
    WakeupWentBackwards,
    WakeupMissed,
    StaleRead,
}

/// One broken promise, with the calls that show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub message_id: Option<Uuid>,
    /// Indexes of the calls in the history.
    pub ops: Vec<usize>,
    pub detail: String,
}

/// What the checker needs besides the history.
#[derive(Clone, Debug)]
pub struct CheckSettings {
    /// The max delivery attempts every write asked for.
    pub max_delivery_attempts: u32,
    /// Time within which an observer must see a visible-making commit.
    pub wakeup_bound_us: u64,
    /// Monotonic intervals (microseconds) during which a fault was active or
    /// the cluster was still recovering; no wakeup delay is judged in them.
    pub fault_windows: Vec<(u64, u64)>,
}

/// The checker's findings and counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub violations: Vec<Violation>,
    /// Messages whose enqueue was acknowledged.
    pub acknowledged_messages: usize,
    /// Of those, how the final verification found them.
    pub final_active: usize,
    pub final_dead_lettered: usize,
    pub final_acked: usize,
    /// Acknowledged messages the final verification could not read.
    pub final_unverified: usize,
    /// Visible-making commits whose wakeup delay was judged, per observer.
    pub wakeups_judged: usize,
}

/// How the final verification found a message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FinalState {
    Active { delivery_count: u32 },
    DeadLettered(DeadLetterView),
    /// Not active and not a dead letter, but the pool still has the id: an
    /// acked tombstone, with its delivery count.
    Tombstone { delivery_count: u32 },
    /// The pool did not know the id any more.
    Missing,
    /// The final verification got no result.
    Unverified,
}

/// The calls of the history that concern one message.
#[derive(Default)]
pub(crate) struct MessageOps<'h> {
    /// Enqueues of this id that returned a result, outside the final phase.
    pub acknowledged_enqueues: Vec<&'h Op>,
    pub reservations: Vec<(&'h Op, &'h ReservationView)>,
    /// Acks, releases and renews, in history order.
    pub token_ops: Vec<&'h Op>,
    pub reads: Vec<(&'h Op, Option<u32>)>,
    /// Every dead letter of this message seen in a reply.
    pub dead_letters: Vec<(&'h Op, &'h DeadLetterView)>,
    pub final_state: Option<FinalState>,
}

/// The history grouped by message, plus what the rules share.
pub(crate) struct Index<'h> {
    pub messages: BTreeMap<Uuid, MessageOps<'h>>,
    /// Reserve calls with an unknown outcome, by start time.
    pub indeterminate_reserve_starts: Vec<u64>,
}

impl<'h> Index<'h> {
    fn build(ops: &'h [Op]) -> Index<'h> {
        let mut messages: BTreeMap<Uuid, MessageOps<'h>> = BTreeMap::new();
        let mut indeterminate_reserve_starts = Vec::new();
        let mut finals: BTreeMap<Uuid, FinalParts> = BTreeMap::new();

        for op in ops {
            let is_final = op.process == FINAL_PROCESS;
            if let (Call::Reserve, Outcome::Info { .. }) = (&op.call, &op.outcome) {
                indeterminate_reserve_starts.push(op.start_us);
            }
            for dead_letter in dead_letters_in(op) {
                messages.entry(dead_letter.message_id).or_default().dead_letters.push((op, dead_letter));
            }
            let Some(message_id) = op.message_id() else {
                continue;
            };
            let entry = messages.entry(message_id).or_default();
            match (&op.call, op.reply()) {
                (Call::Enqueue { .. }, Some(Reply::Enqueued { duplicate, delivery_count, .. })) => {
                    if is_final {
                        finals.entry(message_id).or_default().probe = Some((*duplicate, *delivery_count));
                    } else {
                        entry.acknowledged_enqueues.push(op);
                    }
                }
                (Call::Reserve, Some(Reply::Reserved { reservation: Some(view), .. })) => {
                    entry.reservations.push((op, view));
                }
                (Call::Ack { .. } | Call::Release { .. } | Call::Renew { .. }, _) => entry.token_ops.push(op),
                (Call::ReadMessage { .. }, Some(Reply::Message { message })) => {
                    let count = message.as_ref().map(|message| message.delivery_count);
                    entry.reads.push((op, count));
                    if is_final {
                        finals.entry(message_id).or_default().active = Some(count);
                    }
                }
                (Call::ReadDeadLetter { .. }, Some(Reply::DeadLetter { dead_letter })) if is_final => {
                    finals.entry(message_id).or_default().dead_letter = Some(dead_letter.clone());
                }
                _ => {}
            }
        }

        for (message_id, parts) in finals {
            messages.entry(message_id).or_default().final_state = Some(parts.state());
        }
        indeterminate_reserve_starts.sort_unstable();
        Index {
            messages,
            indeterminate_reserve_starts,
        }
    }

    /// Counts reserve calls with an unknown outcome that started before `time_us`.
    pub fn indeterminate_reserves_before(&self, time_us: u64) -> usize {
        self.indeterminate_reserve_starts.partition_point(|start| *start < time_us)
    }
}

/// What the final verification read of one message.
#[derive(Default)]
struct FinalParts {
    active: Option<Option<u32>>,
    dead_letter: Option<Option<DeadLetterView>>,
    probe: Option<(bool, u32)>,
}

impl FinalParts {
    fn state(&self) -> FinalState {
        if let Some(Some(delivery_count)) = self.active {
            return FinalState::Active { delivery_count };
        }
        if let Some(Some(dead_letter)) = &self.dead_letter {
            return FinalState::DeadLettered(dead_letter.clone());
        }
        match self.probe {
            Some((true, delivery_count)) => FinalState::Tombstone { delivery_count },
            Some((false, _)) => FinalState::Missing,
            None => FinalState::Unverified,
        }
    }
}

/// Returns every dead letter a reply carries.
fn dead_letters_in(op: &Op) -> Vec<&DeadLetterView> {
    match op.reply() {
        Some(Reply::Reserved { dead_lettered, .. }) => dead_lettered.iter().collect(),
        Some(Reply::Operation {
            dead_letter: Some(dead_letter),
            ..
        }) => vec![dead_letter],
        Some(Reply::DeadLetter {
            dead_letter: Some(dead_letter),
        }) => vec![dead_letter],
        _ => Vec::new(),
    }
}

/// Checks every rule over `history` and returns the findings.
pub fn check(history: &[Op], settings: &CheckSettings) -> CheckReport {
    let index = Index::build(history);
    let mut report = CheckReport::default();
    messages::check_messages(&index, settings, &mut report);
    wakeups::check_wakeups(history, settings, &mut report);
    report.violations.sort_by(|a, b| (a.rule, a.ops.first()).cmp(&(b.rule, b.ops.first())));
    report
}

/// Formats a call for a violation's detail: index, process, node and times.
pub(crate) fn describe(op: &Op) -> String {
    let node = op.node.map(|node| format!(" on n{node}")).unwrap_or_default();
    let outcome = match &op.outcome {
        Outcome::Ok { reply } => format!("{reply:?}"),
        Outcome::Fail { error } => format!("failed: {error}"),
        Outcome::Info { error } => format!("unknown: {error}"),
    };
    format!(
        "#{} {} {}{} [{:.3}s..{:.3}s] -> {}",
        op.index,
        op.process,
        op.call.name(),
        node,
        op.start_us as f64 / 1e6,
        op.end_us as f64 / 1e6,
        outcome
    )
}
