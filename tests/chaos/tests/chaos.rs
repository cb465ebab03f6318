//! The chaos suite over real processes: a bounded run for CI and a long run
//! that is ignored unless asked for.

use std::time::Duration;

use raftq_chaos::run::{run, ChaosSettings};

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTQ_CHAOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("raftq_chaos=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Reads an unsigned number from the environment, or returns `default`.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not an unsigned integer")),
        Err(_) => default,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_run_finds_no_violation() {
    init_logging();
    let rounds = env_number("RAFTQ_CHAOS_ROUNDS", 2) as usize;
    let settings = ChaosSettings::bounded(rounds)
        .with_environment()
        .expect("invalid RAFTQ_CHAOS_* variable");

    let expected_faults = rounds * settings.kinds.len();

    let summary = run(settings).await.unwrap_or_else(|error| panic!("{error:#}"));

    assert_eq!(summary.violation_count, 0, "violations found; see the summary above (seed {})", summary.seed);
    assert_eq!(summary.faults.len(), expected_faults, "not every planned fault ran");
    assert_eq!(summary.check.final_unverified, 0, "some acknowledged messages were not verified");
}

/// Runs fault rounds for `RAFTQ_CHAOS_DURATION_SECONDS` (default 900):
/// `RAFTQ_CHAOS_DURATION_SECONDS=900 cargo test -p raftq-chaos --test chaos
/// -- --ignored long_run --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs for many minutes; start it with --ignored long_run"]
async fn long_run() {
    init_logging();
    let seconds = env_number("RAFTQ_CHAOS_DURATION_SECONDS", 900);
    let settings = ChaosSettings::long(Duration::from_secs(seconds))
        .with_environment()
        .expect("invalid RAFTQ_CHAOS_* variable");

    let summary = run(settings).await.unwrap_or_else(|error| panic!("{error:#}"));

    assert_eq!(summary.violation_count, 0, "violations found; see the summary above (seed {})", summary.seed);
    assert_eq!(summary.check.final_unverified, 0, "some acknowledged messages were not verified");
}
