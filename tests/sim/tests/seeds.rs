//! Runs the simulation over many seeds.
//!
//! - `RAFTQ_SIM_SEED=N` runs seed N only, to replay a failure.
//! - `RAFTQ_SIM_SEEDS=K` runs K seeds (default 12).
//! - `RAFTQ_SIM_FIRST_SEED=N` starts the K seeds at N; without it the first
//!   seed is drawn from the system time, so each run explores new seeds.
//!
//! Each seed's line goes straight to stderr, past the test harness's output
//! capture, so the seeds show in every CI log.

// `RunError` carries openraft's large start errors, and a test returns it once.
#![allow(clippy::result_large_err)]

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftq_sim::invariants::{acknowledged_writes, committed_log};
use raftq_sim::schedule::{Fault, Step};
use raftq_sim::{run_seed, RunError, RunOptions};

const DEFAULT_SEED_COUNT: u64 = 12;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_test_writer()
        .try_init();
}

/// Writes a line to stderr without the harness's capture.
fn announce(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(number) => Some(number),
        Err(error) => {
            panic!("{name}={value:?} is invalid ({error}); set it to an unsigned integer")
        }
    }
}

fn seeds_to_run() -> Vec<u64> {
    if let Some(seed) = env_u64("RAFTQ_SIM_SEED") {
        return vec![seed];
    }
    let count = env_u64("RAFTQ_SIM_SEEDS").unwrap_or(DEFAULT_SEED_COUNT);
    let first = env_u64("RAFTQ_SIM_FIRST_SEED").unwrap_or_else(|| {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Seeds of a few digits are easier to copy from a CI log.
        since_epoch.as_secs() % 1_000_000 * 100
    });
    (first..first.saturating_add(count)).collect()
}

/// Runs one seed on its own runtime, so that no task of one run outlives it
/// into the next.
fn run_one(seed: u64, options: &RunOptions) -> Result<raftq_sim::RunReport, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    let result = runtime.block_on(run_seed(seed, options));
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

#[test]
fn seeded_runs_hold_every_invariant() {
    init_tracing();
    let seeds = seeds_to_run();
    announce(&format!(
        "raftq-sim: running {} seeds: {seeds:?}",
        seeds.len()
    ));

    let mut failures = Vec::new();
    for seed in seeds {
        announce(&format!("raftq-sim: seed {seed} starting"));
        match run_one(seed, &RunOptions::default()) {
            Ok(report) => announce(&format!("raftq-sim: passed {report}")),
            Err(error) => {
                let failure = format!(
                    "seed {seed} failed; replay with `RAFTQ_SIM_SEED={seed} cargo test -p raftq-sim --test seeds`: {error}"
                );
                announce(&format!("raftq-sim: {failure}"));
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A network that acknowledges with `Success` the appends of the first leader
/// without delivering them lets that leader acknowledge writes that only it
/// holds. The followers elect a new leader without them, and once the liar
/// is crashed and kept down, the checks must report the lost writes.
#[test]
fn lying_network_loses_acknowledged_writes() {
    init_tracing();
    let options = RunOptions {
        // Before the followers' first election timeout (300 ms at least),
        // so the liar is still the leader and the crash hits it.
        schedule: Some(vec![Step {
            wait_ms: 250,
            fault: Fault::CrashLeader,
        }]),
        lie_about_appends: true,
        restart_stopped_at_end: false,
        recovery_ms: 1_500,
        ..RunOptions::default()
    };

    match run_one(1, &options) {
        Err(RunError::Violations(violations)) => {
            let caught = RunError::Violations(violations.clone());
            announce(&format!(
                "raftq-sim: the lying network was caught: {caught}"
            ));
            let names: Vec<&str> = violations
                .iter()
                .map(|violation| violation.invariant)
                .collect();
            assert!(
                names.contains(&acknowledged_writes::NAME),
                "lost writes went unreported; violations were {names:?}"
            );
            assert!(
                names.contains(&committed_log::NAME),
                "replaced committed entries went unreported; violations were {names:?}"
            );
        }
        Ok(report) => panic!("the lying network passed every check: {report}"),
        Err(error) => panic!("the lying network failed without a violation: {error}"),
    }
}
