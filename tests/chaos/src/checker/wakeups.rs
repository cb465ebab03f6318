//! Rules about a pool's wakeup sequence: observers never see it go back,
//! every visible-making commit reaches every observer within a bound, and
//! linearizable reads of it are never stale.

use std::collections::BTreeMap;

use super::{describe, CheckReport, CheckSettings, Rule, Violation};
use crate::history::{Call, Op, Reply};

pub(super) fn check_wakeups(history: &[Op], settings: &CheckSettings, report: &mut CheckReport) {
    let known = KnownSequence::build(history);
    check_observers(history, report);
    check_sequence_reads(history, &known, report);
    check_wake_dispatchers(history, report);
    check_wakeup_delay(history, &known, settings, report);
}

fn violation(rule: Rule, ops: &[&Op], detail: String) -> Violation {
    let calls: Vec<String> = ops.iter().map(|op| describe(op)).collect();
    Violation {
        rule,
        message_id: None,
        ops: ops.iter().map(|op| op.index).collect(),
        detail: format!("{detail}; calls: {}", calls.join(" | ")),
    }
}

/// Returns the sequence a call observed, if it observed one. Every such
/// value was committed, because nodes publish only applied sequences.
fn observed_sequence(op: &Op) -> Option<u64> {
    match (&op.call, op.reply()) {
        (Call::WakeDispatchers | Call::ReadWakeupSequence, Some(Reply::Sequence { sequence })) => Some(*sequence),
        (Call::WaitForWakeup { .. }, Some(Reply::Wakeup { sequence, .. })) => Some(*sequence),
        _ => None,
    }
}

/// The highest sequence known to be committed at each moment: the maximum
/// over every observation that ended before it.
struct KnownSequence {
    /// (end time, running maximum up to and including that end), by end time.
    by_end: Vec<(u64, u64)>,
}

impl KnownSequence {
    fn build(history: &[Op]) -> KnownSequence {
        let mut ends: Vec<(u64, u64)> =
            history.iter().filter_map(|op| Some((op.end_us, observed_sequence(op)?))).collect();
        ends.sort_unstable();
        let mut highest = 0;
        let by_end = ends
            .into_iter()
            .map(|(end, sequence)| {
                highest = highest.max(sequence);
                (end, highest)
            })
            .collect();
        KnownSequence { by_end }
    }

    /// Returns the highest sequence observed by calls that ended strictly
    /// before `time_us`, and the call's end time.
    fn before(&self, time_us: u64) -> u64 {
        let position = self.by_end.partition_point(|(end, _)| *end < time_us);
        if position == 0 {
            0
        } else {
            self.by_end[position - 1].1
        }
    }
}

fn observer_calls(history: &[Op]) -> BTreeMap<&str, Vec<&Op>> {
    let mut observers: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        if matches!(op.call, Call::WaitForWakeup { .. }) {
            observers.entry(op.process.as_str()).or_default().push(op);
        }
    }
    for calls in observers.values_mut() {
        calls.sort_by_key(|op| (op.start_us, op.index));
    }
    observers
}

/// A woken wait returns a sequence above its cursor, and one observer's
/// wakeups never go backwards.
fn check_observers(history: &[Op], report: &mut CheckReport) {
    for calls in observer_calls(history).values() {
        let mut previous: Option<(&Op, u64)> = None;
        for op in calls {
            let (Call::WaitForWakeup { after }, Some(Reply::Wakeup { woken: true, sequence })) = (&op.call, op.reply())
            else {
                continue;
            };
            if sequence <= after {
                report.violations.push(violation(
                    Rule::WakeupWentBackwards,
                    &[op],
                    format!("a wait after {after} was woken with sequence {sequence}"),
                ));
            }
            if let Some((previous_op, previous_sequence)) = previous {
                if *sequence < previous_sequence {
                    report.violations.push(violation(
                        Rule::WakeupWentBackwards,
                        &[previous_op, op],
                        format!("the observer saw sequence {previous_sequence}, then {sequence}"),
                    ));
                }
            }
            previous = Some((op, *sequence));
        }
    }
}

/// Checks that a linearizable read of the sequence is at least every
/// sequence observed before the read started.
fn check_sequence_reads(history: &[Op], known: &KnownSequence, report: &mut CheckReport) {
    for op in history {
        let (Call::ReadWakeupSequence, Some(Reply::Sequence { sequence })) = (&op.call, op.reply()) else {
            continue;
        };
        let floor = known.before(op.start_us);
        if *sequence < floor {
            let earlier = history
                .iter()
                .filter(|other| other.end_us < op.start_us && observed_sequence(other) == Some(floor))
                .max_by_key(|other| other.end_us);
            let mut calls: Vec<&Op> = earlier.into_iter().collect();
            calls.push(op);
            report.violations.push(violation(
                Rule::StaleRead,
                &calls,
                format!("a linearizable read returned sequence {sequence}, but {floor} was observed before the read started"),
            ));
        }
    }
}

/// Each wake_dispatchers advances the sequence by one, so no two return
/// the same value.
fn check_wake_dispatchers(history: &[Op], report: &mut CheckReport) {
    let mut returned: BTreeMap<u64, &Op> = BTreeMap::new();
    for op in history {
        let (Call::WakeDispatchers, Some(Reply::Sequence { sequence })) = (&op.call, op.reply()) else {
            continue;
        };
        if let Some(first) = returned.insert(*sequence, op) {
            report.violations.push(violation(
                Rule::WakeupWentBackwards,
                &[first, op],
                format!("two wake_dispatchers calls both returned sequence {sequence}"),
            ));
        }
    }
}

/// True for a call whose commit makes work visible and so advances the
/// sequence: a new enqueue, an accepted release, an ack, release or renew
/// that found its lease expired, and wake_dispatchers.
fn makes_work_visible(op: &Op) -> bool {
    match (&op.call, op.reply()) {
        (Call::Enqueue { .. }, Some(Reply::Enqueued { duplicate: false, .. })) => op.process != super::FINAL_PROCESS,
        (Call::Release { .. }, Some(Reply::Operation { status, .. })) => status == "accepted" || status == "expired",
        (Call::Ack { .. } | Call::Renew { .. }, Some(Reply::Operation { status, .. })) => status == "expired",
        (Call::WakeDispatchers, Some(Reply::Sequence { .. })) => true,
        _ => false,
    }
}

/// One observer's calls, indexed for the delay check.
struct Timeline<'h> {
    process: &'h str,
    last_end_us: u64,
    /// Calls without a result, which mean the observer was not watching.
    failures: Vec<&'h Op>,
    /// (end time, highest woken sequence up to that end, call), by end time.
    woken_by_end: Vec<(u64, u64, &'h Op)>,
}

impl<'h> Timeline<'h> {
    fn build(process: &'h str, calls: &[&'h Op]) -> Timeline<'h> {
        let mut woken: Vec<(u64, u64, &Op)> = calls
            .iter()
            .filter_map(|op| match op.reply() {
                Some(Reply::Wakeup { woken: true, sequence }) => Some((op.end_us, *sequence, *op)),
                _ => None,
            })
            .collect();
        woken.sort_by_key(|(end, _, op)| (*end, op.index));
        let mut highest = 0;
        for entry in &mut woken {
            highest = highest.max(entry.1);
            entry.1 = highest;
        }
        Timeline {
            process,
            last_end_us: calls.iter().map(|op| op.end_us).max().unwrap_or(0),
            failures: calls.iter().copied().filter(|op| op.reply().is_none()).collect(),
            woken_by_end: woken,
        }
    }

    /// True when the observer had a call in progress or done after
    /// `until_us` and no failed call overlapped `[from_us, until_us]`.
    fn watched(&self, from_us: u64, until_us: u64) -> bool {
        self.last_end_us > until_us
            && !self.failures.iter().any(|op| op.end_us >= from_us && op.start_us <= until_us)
    }

    /// Returns the highest woken sequence of calls that ended by `time_us`,
    /// and the last such call.
    fn highest_by(&self, time_us: u64) -> (u64, Option<&'h Op>) {
        let position = self.woken_by_end.partition_point(|(end, _, _)| *end <= time_us);
        match position {
            0 => (0, None),
            _ => (self.woken_by_end[position - 1].1, Some(self.woken_by_end[position - 1].2)),
        }
    }
}

/// Checks that every observer watching a healthy node observes a sequence above
/// what was known before a visible-making commit, within the bound after
/// the commit was acknowledged.
fn check_wakeup_delay(history: &[Op], known: &KnownSequence, settings: &CheckSettings, report: &mut CheckReport) {
    let observers = observer_calls(history);
    let timelines: Vec<Timeline<'_>> =
        observers.iter().map(|(process, calls)| Timeline::build(process, calls)).collect();
    let Some(history_end) = history.iter().map(|op| op.end_us).max() else {
        return;
    };
    for commit in history.iter().filter(|op| makes_work_visible(op)) {
        let deadline = commit.end_us + settings.wakeup_bound_us;
        if deadline > history_end {
            continue;
        }
        let faulted = settings
            .fault_windows
            .iter()
            .any(|(start, end)| *start <= deadline && commit.start_us <= *end);
        if faulted {
            continue;
        }
        let floor = known.before(commit.start_us);
        for timeline in &timelines {
            if !timeline.watched(commit.start_us, deadline) {
                continue;
            }
            report.wakeups_judged += 1;
            let (highest, last) = timeline.highest_by(deadline);
            if highest <= floor {
                let mut calls_shown: Vec<&Op> = vec![commit];
                calls_shown.extend(last);
                report.violations.push(violation(
                    Rule::WakeupMissed,
                    &calls_shown,
                    format!(
                        "{} saw no sequence above {floor} within {} ms after a visible-making commit",
                        timeline.process,
                        settings.wakeup_bound_us / 1000
                    ),
                ));
            }
        }
    }
}
