//! The summary of a run: operations by type and result, faults, recovery
//! times, the checker's findings and the seed, printed and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::checker::CheckReport;
use crate::history::{Call, Op, Outcome, Reply};
use crate::nemesis::FaultRecord;

/// Minimum, median and maximum of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    pub count: usize,
    pub min_ms: Option<u64>,
    pub median_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

impl Spread {
    fn of(mut values: Vec<u64>) -> Spread {
        values.sort_unstable();
        Spread {
            count: values.len(),
            min_ms: values.first().copied(),
            median_ms: values.get(values.len() / 2).copied(),
            max_ms: values.last().copied(),
        }
    }
}

/// Recovery times of the faults of one kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recovery {
    /// Injection to a leader of a higher term, for faults that led to one.
    pub new_leader: Spread,
    /// Heal to the first successful write.
    pub full_service: Spread,
    /// Heal until every member applied the leader's commit index.
    pub caught_up: Spread,
}

/// The machine a run used.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub raftq_binary: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub run_id: String,
    pub duration_s: f64,
    pub machine: Machine,
    /// Workers, lease, rounds and the other settings, as text.
    pub settings: BTreeMap<String, String>,
    /// Operation name to result label to count.
    pub operations: BTreeMap<String, BTreeMap<String, u64>>,
    pub faults: Vec<FaultRecord>,
    pub faults_by_kind: BTreeMap<String, usize>,
    pub recovery_by_kind: BTreeMap<String, Recovery>,
    pub check: CheckReport,
    pub violation_count: usize,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        seed: u64,
        run_id: String,
        duration_s: f64,
        machine: Machine,
        settings: BTreeMap<String, String>,
        history: &[Op],
        faults: Vec<FaultRecord>,
        check: CheckReport,
    ) -> Summary {
        let mut operations: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for op in history {
            *operations
                .entry(op.call.name().to_string())
                .or_default()
                .entry(result_label(op))
                .or_default() += 1;
        }

        let mut faults_by_kind = BTreeMap::new();
        let mut leader_times: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut service_times: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut catch_up_times: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for fault in &faults {
            let kind = kind_name(fault);
            *faults_by_kind.entry(kind.clone()).or_insert(0) += 1;
            leader_times.entry(kind.clone()).or_default().extend(fault.new_leader_ms);
            service_times.entry(kind.clone()).or_default().push(fault.full_service_ms);
            catch_up_times.entry(kind).or_default().extend(fault.caught_up_ms);
        }
        let recovery_by_kind = faults_by_kind
            .keys()
            .map(|kind| {
                let recovery = Recovery {
                    new_leader: Spread::of(leader_times.remove(kind).unwrap_or_default()),
                    full_service: Spread::of(service_times.remove(kind).unwrap_or_default()),
                    caught_up: Spread::of(catch_up_times.remove(kind).unwrap_or_default()),
                };
                (kind.clone(), recovery)
            })
            .collect();

        Summary {
            seed,
            run_id,
            duration_s,
            machine,
            settings,
            operations,
            faults,
            faults_by_kind,
            recovery_by_kind,
            violation_count: check.violations.len(),
            check,
        }
    }

    /// Writes the summary as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("failed to encode the summary")?;
        std::fs::write(path, text).with_context(|| format!("failed to write the summary to {}", path.display()))
    }

    /// Formats the summary for a terminal.
    pub fn to_text(&self) -> String {
        let mut lines = vec![
            format!("raftq chaos run {} (seed {})", self.run_id, self.seed),
            format!(
                "duration {:.1} s on {} CPUs, kernel {}",
                self.duration_s, self.machine.cpus, self.machine.kernel
            ),
            format!("replay with RAFTQ_CHAOS_SEED={}", self.seed),
            "operations:".to_string(),
        ];
        for (name, results) in &self.operations {
            let parts: Vec<String> = results.iter().map(|(label, count)| format!("{label} {count}")).collect();
            lines.push(format!("  {name:<22} {}", parts.join(", ")));
        }
        lines.push(format!("faults ({}):", self.faults.len()));
        for (kind, recovery) in &self.recovery_by_kind {
            lines.push(format!(
                "  {kind:<18} x{:<3} ms min/median/max: new leader {}, full service {}, all caught up {}",
                self.faults_by_kind.get(kind).copied().unwrap_or(0),
                spread_text(&recovery.new_leader),
                spread_text(&recovery.full_service),
                spread_text(&recovery.caught_up),
            ));
        }
        for fault in self.faults.iter().filter(|fault| !fault.detail.is_empty()) {
            lines.push(format!("  {}: {}", kind_name(fault), fault.detail));
        }
        lines.push(format!(
            "messages: {} acknowledged; at the end {} active, {} dead-lettered, {} acked, {} unverified",
            self.check.acknowledged_messages,
            self.check.final_active,
            self.check.final_dead_lettered,
            self.check.final_acked,
            self.check.final_unverified
        ));
        lines.push(format!("wakeup delays judged: {}", self.check.wakeups_judged));
        lines.push(format!("violations: {}", self.violation_count));
        for violation in self.check.violations.iter().take(20) {
            lines.push(format!("  {:?} {:?}: {}", violation.rule, violation.message_id, violation.detail));
        }
        if self.violation_count > 20 {
            lines.push(format!("  ... and {} more in the JSON summary", self.violation_count - 20));
        }
        lines.join("\n")
    }
}

fn kind_name(fault: &FaultRecord) -> String {
    serde_json::to_value(fault.kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", fault.kind))
}

fn spread_text(spread: &Spread) -> String {
    match (spread.min_ms, spread.median_ms, spread.max_ms) {
        (Some(min), Some(median), Some(max)) => format!("{min}/{median}/{max}"),
        _ => "-".to_string(),
    }
}

/// Returns the label of a call's result for the operation counts.
fn result_label(op: &Op) -> String {
    match &op.outcome {
        Outcome::Fail { .. } => "failed".into(),
        Outcome::Info { .. } => "unknown".into(),
        Outcome::Ok { reply } => match (&op.call, reply) {
            (_, Reply::Enqueued { duplicate: true, .. }) => "duplicate".into(),
            (_, Reply::Enqueued { .. }) => "accepted".into(),
            (_, Reply::Reserved { reservation: Some(_), .. }) => "reserved".into(),
            (_, Reply::Reserved { .. }) => "empty".into(),
            (_, Reply::Operation { status, .. }) => status.clone(),
            (_, Reply::Message { message: Some(_) }) | (_, Reply::DeadLetter { dead_letter: Some(_) }) => "found".into(),
            (_, Reply::Message { .. }) | (_, Reply::DeadLetter { .. }) => "none".into(),
            (Call::WaitForWakeup { .. }, Reply::Wakeup { woken: true, .. }) => "woken".into(),
            (_, Reply::Wakeup { .. }) => "timed_out".into(),
            (_, Reply::Sequence { .. }) => "ok".into(),
        },
    }
}
