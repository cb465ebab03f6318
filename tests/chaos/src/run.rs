//! One chaos run from start to verdict: network and cluster, workload,
//! nemesis schedule, final verification after healing, checker and summary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use raftq_client::proto::{ExpireLeasesRequest, ReadDeadLetterRequest, ReadMessageRequest, ReadOptions};
use raftq_client::{Client, RetryConfig};
use uuid::Uuid;

use crate::checker::{check, CheckSettings, FINAL_PROCESS};
use crate::cluster::{ChaosCluster, ClusterSettings};
use crate::history::{dead_letter_view, message_view, outcome_of_error, Call, Outcome, Recorder, Reply};
use crate::nemesis::{plan_round, FaultKind, FaultRecord, Nemesis, NemesisSettings};
use crate::summary::{Machine, Summary};
use crate::workload::{enqueue_with, Workload, WorkloadSettings};

/// Environment variable that fixes the seed of a run, to replay a schedule.
pub const SEED_VARIABLE: &str = "RAFTQ_CHAOS_SEED";
/// Environment variable naming the file the JSON summary is written to.
pub const SUMMARY_VARIABLE: &str = "RAFTQ_CHAOS_SUMMARY";
/// Environment variable naming the file the JSON history is written to.
pub const HISTORY_VARIABLE: &str = "RAFTQ_CHAOS_HISTORY";
/// Environment variable that, when set, keeps the node logs of every run,
/// not only of failed ones.
pub const KEEP_LOGS_VARIABLE: &str = "RAFTQ_CHAOS_KEEP_LOGS";
/// Environment variable restricting the fault kinds, comma-separated in
/// snake case, such as `kill_leader,power_loss`.
pub const KINDS_VARIABLE: &str = "RAFTQ_CHAOS_KINDS";

/// How long the schedule runs.
#[derive(Clone, Debug)]
pub enum Budget {
    /// This many rounds, each with every fault kind once.
    Rounds(usize),
    /// Rounds until this much time has passed (the round in progress ends).
    Duration(Duration),
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct ChaosSettings {
    pub seed: u64,
    pub budget: Budget,
    pub kinds: Vec<FaultKind>,
    pub workload: WorkloadSettings,
    pub nemesis: NemesisSettings,
    /// Workload time before the first fault.
    pub warmup: Duration,
    /// Workload time after the last fault healed.
    pub cooldown: Duration,
    pub wakeup_bound: Duration,
    pub summary_path: Option<PathBuf>,
    pub history_path: Option<PathBuf>,
}

impl ChaosSettings {
    /// Returns the settings of the bounded run for CI: every fault kind
    /// `rounds` times, with short holds.
    pub fn bounded(rounds: usize) -> ChaosSettings {
        ChaosSettings {
            seed: rand::random(),
            budget: Budget::Rounds(rounds),
            kinds: FaultKind::ALL.to_vec(),
            workload: WorkloadSettings {
                workers: 6,
                lease_seconds: 3.0,
                max_delivery_attempts: 3,
                write_timeout: Duration::from_secs(8),
                read_timeout: Duration::from_secs(3),
                max_think_time: Duration::from_millis(30),
                observer_wait: Duration::from_secs(1),
            },
            nemesis: NemesisSettings {
                hold_min: Duration::from_secs(3),
                hold_max: Duration::from_secs(5),
                quiet: Duration::from_secs(4),
                recovery_timeout: Duration::from_secs(30),
                max_clock_skew_ms: 2_000,
                snapshot_every_entries: 100,
            },
            warmup: Duration::from_secs(3),
            cooldown: Duration::from_secs(5),
            wakeup_bound: Duration::from_secs(2),
            summary_path: None,
            history_path: None,
        }
    }

    /// Returns the settings of a long run: rounds until `duration`, longer
    /// fault durations and more workers.
    pub fn long(duration: Duration) -> ChaosSettings {
        let mut settings = ChaosSettings::bounded(1);
        settings.budget = Budget::Duration(duration);
        settings.workload.workers = 8;
        settings.nemesis.hold_min = Duration::from_secs(4);
        settings.nemesis.hold_max = Duration::from_secs(12);
        settings.nemesis.quiet = Duration::from_secs(5);
        settings
    }

    /// Applies the seed, summary and history paths set in the environment.
    pub fn with_environment(mut self) -> Result<ChaosSettings> {
        if let Ok(text) = std::env::var(SEED_VARIABLE) {
            self.seed = text
                .trim()
                .parse()
                .with_context(|| format!("{SEED_VARIABLE}={text:?} is not an unsigned 64-bit integer"))?;
        }
        if let Ok(text) = std::env::var(KINDS_VARIABLE) {
            self.kinds = text
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    serde_json::from_value(serde_json::Value::String(name.to_string()))
                        .with_context(|| format!("{KINDS_VARIABLE} names an unknown fault kind {name:?}"))
                })
                .collect::<Result<_>>()?;
        }
        self.summary_path = std::env::var_os(SUMMARY_VARIABLE).map(PathBuf::from);
        self.history_path = std::env::var_os(HISTORY_VARIABLE).map(PathBuf::from);
        Ok(self)
    }

    fn describe(&self) -> BTreeMap<String, String> {
        let workload = &self.workload;
        let nemesis = &self.nemesis;
        BTreeMap::from([
            ("budget".to_string(), format!("{:?}", self.budget)),
            ("workers".to_string(), workload.workers.to_string()),
            ("lease_seconds".to_string(), workload.lease_seconds.to_string()),
            ("max_delivery_attempts".to_string(), workload.max_delivery_attempts.to_string()),
            ("write_timeout_ms".to_string(), workload.write_timeout.as_millis().to_string()),
            ("hold_ms".to_string(), format!("{}..={}", nemesis.hold_min.as_millis(), nemesis.hold_max.as_millis())),
            ("quiet_ms".to_string(), nemesis.quiet.as_millis().to_string()),
            ("max_clock_skew_ms".to_string(), nemesis.max_clock_skew_ms.to_string()),
            ("snapshot_every_entries".to_string(), nemesis.snapshot_every_entries.to_string()),
            ("wakeup_bound_ms".to_string(), self.wakeup_bound.as_millis().to_string()),
        ])
    }

    fn serve_args(&self) -> Vec<String> {
        [
            "--snapshot-every-entries",
            &self.nemesis.snapshot_every_entries.to_string(),
            "--heartbeat-interval-ms",
            "100",
            "--election-timeout-min-ms",
            "600",
            "--election-timeout-max-ms",
            "1200",
            "--sweep-interval-ms",
            "500",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect()
    }
}

/// Runs the suite and returns its summary, leaving it to the caller to
/// decide what a violation means. Errors are failures of the run itself (no network, a
/// cluster that never recovered), not violations.
pub async fn run(settings: ChaosSettings) -> Result<Summary> {
    eprintln!("raftq chaos: seed {} (replay with {SEED_VARIABLE}={})", settings.seed, settings.seed);
    tracing::info!(seed = settings.seed, "chaos run starting");
    let started = Instant::now();
    let mut cluster = ChaosCluster::start(ClusterSettings {
        nodes: 3,
        serve_args: settings.serve_args(),
        ready_timeout: Duration::from_secs(30),
    })
    .await?;
    let run_id = cluster.topology().run_id().to_string();

    let recorder = Recorder::new();
    let pool = Uuid::new_v4();
    let workload = Workload::start(&cluster, recorder.clone(), pool, settings.workload.clone(), settings.seed)?;
    tokio::time::sleep(settings.warmup).await;

    let faults = run_schedule(&mut cluster, &recorder, &settings, started).await;
    if faults.is_ok() {
        tokio::time::sleep(settings.cooldown).await;
    }
    workload.stop().await;
    let faults = match faults {
        Ok(faults) => faults,
        Err(error) => {
            keep_logs(&cluster, &run_id);
            return Err(error.context(format!("the chaos run failed (seed {})", settings.seed)));
        }
    };

    settle(&cluster, &pool, &settings).await?;
    verify_final_state(&cluster, &recorder, &pool).await?;

    let history = recorder.snapshot();
    if let Some(path) = &settings.history_path {
        let text = serde_json::to_string(&history).context("failed to encode the history")?;
        std::fs::write(path, text).with_context(|| format!("failed to write the history to {}", path.display()))?;
    }
    let check_settings = CheckSettings {
        max_delivery_attempts: settings.workload.max_delivery_attempts,
        wakeup_bound_us: settings.wakeup_bound.as_micros() as u64,
        fault_windows: faults.iter().map(|fault| (fault.injected_us, fault.recovered_us + 1_000_000)).collect(),
    };
    let report = check(&history, &check_settings);
    let summary = Summary::build(
        settings.seed,
        run_id.clone(),
        started.elapsed().as_secs_f64(),
        machine(),
        settings.describe(),
        &history,
        faults,
        report,
    );
    if summary.violation_count > 0 || std::env::var_os(KEEP_LOGS_VARIABLE).is_some() {
        keep_logs(&cluster, &run_id);
    }
    println!("{}", summary.to_text());
    if let Some(path) = &settings.summary_path {
        summary.write_json(path)?;
    }
    Ok(summary)
}

async fn run_schedule(
    cluster: &mut ChaosCluster,
    recorder: &Recorder,
    settings: &ChaosSettings,
    started: Instant,
) -> Result<Vec<FaultRecord>> {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut nemesis = Nemesis::new(cluster, recorder.clone(), settings.nemesis.clone())?;
    let mut records = Vec::new();
    let mut round = 0;
    loop {
        let more = match settings.budget {
            Budget::Rounds(rounds) => round < rounds,
            Budget::Duration(duration) => started.elapsed() < duration,
        };
        if !more {
            break;
        }
        for fault in plan_round(&mut rng, &settings.kinds, &settings.nemesis) {
            tracing::info!(round, kind = ?fault.kind, hold_ms = fault.hold_ms, "next fault");
            let record = nemesis
                .run_fault(&fault)
                .await
                .with_context(|| format!("fault {:?} of round {round} failed", fault.kind))?;
            records.push(record);
        }
        round += 1;
    }
    Ok(records)
}

/// Lets every lease end and be expired, so that the final reads see a state
/// that no longer changes.
async fn settle(cluster: &ChaosCluster, pool: &Uuid, settings: &ChaosSettings) -> Result<()> {
    let client = long_client(cluster)?;
    tokio::time::sleep(Duration::from_secs_f64(settings.workload.lease_seconds) + Duration::from_millis(500)).await;
    loop {
        let request = ExpireLeasesRequest {
            options: None,
            limit: Some(100),
            work_pool_id: Some(pool.to_string()),
        };
        let expired = client.expire_leases(request).await.context("failed to expire the last leases")?;
        if expired.redelivered.is_empty() && expired.dead_lettered.is_empty() {
            return Ok(());
        }
    }
}

fn long_client(cluster: &ChaosCluster) -> Result<Client> {
    cluster.client(RetryConfig {
        total_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    })
}

/// Concurrent tasks of the final verification.
const VERIFIERS: usize = 6;

/// Reads every message the workload tried to enqueue, as an active message
/// and as a dead letter. A message that is neither is enqueued again with its
/// id and key: a duplicate result shows an acked tombstone, and a fresh
/// enqueue shows that the pool had forgotten the message.
async fn verify_final_state(cluster: &ChaosCluster, recorder: &Recorder, pool: &Uuid) -> Result<()> {
    let ids: BTreeSet<Uuid> = recorder
        .snapshot()
        .iter()
        .filter_map(|op| match op.call {
            Call::Enqueue { message_id } => Some(message_id),
            _ => None,
        })
        .collect();
    let ids: Vec<Uuid> = ids.into_iter().collect();
    tracing::info!(messages = ids.len(), "verifying the final state");
    let client = long_client(cluster)?;
    let chunk_size = ids.len().div_ceil(VERIFIERS).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in ids.chunks(chunk_size) {
        let chunk = chunk.to_vec();
        let client = client.clone();
        let recorder = recorder.clone();
        let pool = pool.to_string();
        tasks.spawn(async move {
            for message_id in chunk {
                verify_message(&client, &recorder, &pool, message_id).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("a verification task panicked")??;
    }
    Ok(())
}

async fn verify_message(client: &Client, recorder: &Recorder, pool: &str, message_id: Uuid) -> Result<()> {
    let read = ReadMessageRequest {
        read: Some(ReadOptions { local: false }),
        work_pool_id: pool.to_string(),
        message_id: message_id.to_string(),
    };
    let outcome = recorder
        .record(FINAL_PROCESS, None, Call::ReadMessage { message_id }, async {
            match client.read_message(read).await {
                Ok(message) => Outcome::Ok {
                    reply: Reply::Message {
                        message: message.as_ref().and_then(message_view),
                    },
                },
                Err(error) => outcome_of_error(&error),
            }
        })
        .await;
    match outcome {
        Outcome::Ok {
            reply: Reply::Message { message: Some(_) },
        } => return Ok(()),
        Outcome::Ok { .. } => {}
        Outcome::Fail { error } | Outcome::Info { error } => {
            anyhow::bail!("the final read of message {message_id} failed: {error}")
        }
    }

    let read = ReadDeadLetterRequest {
        read: Some(ReadOptions { local: false }),
        work_pool_id: pool.to_string(),
        message_id: message_id.to_string(),
    };
    let outcome = recorder
        .record(FINAL_PROCESS, None, Call::ReadDeadLetter { message_id }, async {
            match client.read_dead_letter(read).await {
                Ok(dead_letter) => Outcome::Ok {
                    reply: Reply::DeadLetter {
                        dead_letter: dead_letter.as_ref().and_then(dead_letter_view),
                    },
                },
                Err(error) => outcome_of_error(&error),
            }
        })
        .await;
    match outcome {
        Outcome::Ok {
            reply: Reply::DeadLetter { dead_letter: Some(_) },
        } => return Ok(()),
        Outcome::Ok { .. } => {}
        Outcome::Fail { error } | Outcome::Info { error } => {
            anyhow::bail!("the final dead-letter read of message {message_id} failed: {error}")
        }
    }

    match enqueue_with(recorder, client, FINAL_PROCESS, pool, message_id, None).await {
        Outcome::Ok { .. } => Ok(()),
        Outcome::Fail { error } | Outcome::Info { error } => {
            anyhow::bail!("the final enqueue probe of message {message_id} failed: {error}")
        }
    }
}

fn machine() -> Machine {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    Machine {
        cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        kernel,
        raftq_binary: raftq_integration_tests::raftq_binary()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
    }
}

/// Copies the node logs out of the run's temporary directory, which is
/// deleted with the cluster, so that they can be read after the run.
fn keep_logs(cluster: &ChaosCluster, run_id: &str) {
    let directory = std::env::temp_dir().join(format!("raftq-chaos-logs-{run_id}"));
    match cluster.copy_logs(&directory) {
        Ok(()) => eprintln!("node logs kept in {}", directory.display()),
        Err(error) => tracing::error!(%error, directory = %directory.display(), "failed to keep the node logs"),
    }
}
