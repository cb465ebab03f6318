//! One simulated run: start the cluster, play the schedule against the
//! workload, heal, converge, stop every node and check the invariants.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{ClusterError, SimCluster};
use crate::invariants::{
    acknowledged_writes, committed_log, single_holder, state_agreement, state_validity, Violation,
};
use crate::network::{LinkFaults, NetworkCounters, Router};
use crate::observer::{digest, Observer, Source};
use crate::schedule::{self, Fault, Step};
use crate::workload::{SimClock, Workload, WorkloadCounters, WorkloadError};

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Length of the fault schedule drawn from the seed, in milliseconds.
    pub fault_duration_ms: u64,
    /// How long the workload keeps writing on a healed network after the
    /// schedule, in milliseconds.
    pub recovery_ms: u64,
    /// Upper bound on the workload's writes.
    pub max_writes: u64,
    /// Replaces the schedule drawn from the seed.
    pub schedule: Option<Vec<Step>>,
    /// Runs the deliberately broken network of [`Router::set_lying_leader`]
    /// for the first leader, from the cluster's formation to the end of the
    /// schedule, to prove the checks can fail.
    pub lie_about_appends: bool,
    /// Starts every stopped node after the schedule. Without it, nodes the
    /// schedule stopped stay down and the checks read the others.
    pub restart_stopped_at_end: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            fault_duration_ms: 4_000,
            recovery_ms: 1_000,
            max_writes: 600,
            schedule: None,
            lie_about_appends: false,
            restart_stopped_at_end: true,
        }
    }
}

/// How long the cluster may take to elect its first leader, and to
/// converge once the network healed.
const CLUSTER_WAIT: Duration = Duration::from_secs(30);

/// What a passing run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub steps: usize,
    pub workload: WorkloadCounters,
    pub network: NetworkCounters,
    /// Indexes whose state two or more nodes were seen to have.
    pub compared_state_indexes: usize,
    /// Committed indexes seen by two or more nodes.
    pub compared_committed_indexes: usize,
    pub final_index: u64,
    /// Node stops during the schedule, the final stop of every node excluded.
    pub crashes: u64,
    pub elapsed: Duration,
}

impl fmt::Display for RunReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let workload = &self.workload;
        let network = &self.network;
        write!(
            formatter,
            "seed {}: {} steps, {} crashes, {} writes acknowledged of {} attempts \
             ({} abandoned), final index {}, states compared at {} indexes, committed \
             entries at {}; network delivered {}, lost {} requests and {} responses, \
             duplicated {}, refused {}, {} snapshot chunks; {:.1} s",
            self.seed,
            self.steps,
            self.crashes,
            workload.acknowledged,
            workload.attempts,
            workload.abandoned,
            self.final_index,
            self.compared_state_indexes,
            self.compared_committed_indexes,
            network.delivered,
            network.dropped_requests,
            network.dropped_responses,
            network.duplicated,
            network.unreachable,
            network.snapshot_chunks,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Failure of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),

    #[error(transparent)]
    Workload(#[from] WorkloadError),

    /// The cluster did not recover after the network healed and every node
    /// restarted.
    #[error("no recovery after healing: {0}")]
    NoRecovery(String),

    #[error("{} invariant violations:\n{}", .0.len(), describe(.0))]
    Violations(Vec<Violation>),
}

fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|violation| format!("  {violation}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The independent random streams drawn from one seed.
struct Seeds {
    schedule: u64,
    workload: u64,
    network: u64,
}

impl Seeds {
    fn from_run_seed(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Seeds {
            schedule: rng.gen(),
            workload: rng.gen(),
            network: rng.gen(),
        }
    }
}

/// Runs one seed and checks every invariant.
pub async fn run_seed(seed: u64, options: &RunOptions) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let seeds = Seeds::from_run_seed(seed);
    let steps = options
        .schedule
        .clone()
        .unwrap_or_else(|| schedule::generate(seeds.schedule, options.fault_duration_ms));

    let observer = Arc::new(Observer::default());
    let router = Router::new(seeds.network, Arc::clone(&observer));
    let cluster = Arc::new(SimCluster::start(Arc::clone(&router), Arc::clone(&observer)).await?);
    cluster.initialize().await?;
    if cluster.wait_converged(CLUSTER_WAIT).await.is_none() {
        return Err(RunError::NoRecovery(
            "the new cluster elected no leader".to_string(),
        ));
    }
    if options.lie_about_appends {
        router.set_lying_leader(cluster.leader().map(|leader| leader.node_id()));
    }

    let clock = Arc::new(SimClock::new());
    let stop = Arc::new(AtomicBool::new(false));
    let workload_task = {
        let mut workload = Workload::new(seeds.workload, Arc::clone(&clock), options.max_writes);
        let cluster = Arc::clone(&cluster);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let result = workload.run(&cluster, &stop).await;
            (workload, result)
        })
    };

    let played = play(&steps, &cluster, &router, &clock).await;
    router.heal();
    router.set_faults(LinkFaults::NONE);
    router.set_lying_leader(None);
    let restarted = if options.restart_stopped_at_end {
        restart_all(&cluster).await
    } else {
        Ok(())
    };
    if played.is_ok() && restarted.is_ok() {
        tokio::time::sleep(Duration::from_millis(options.recovery_ms)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (mut workload, workload_result) = workload_task
        .await
        .map_err(|error| RunError::NoRecovery(format!("the workload task failed: {error}")))?;
    played?;
    restarted?;
    workload_result?;

    if !workload.write_final(&cluster).await? {
        return Err(RunError::NoRecovery(
            "no write was acknowledged on the healed cluster".to_string(),
        ));
    }
    let final_index = cluster.wait_converged(CLUSTER_WAIT).await.ok_or_else(|| {
        RunError::NoRecovery("the nodes did not apply the leader's log".to_string())
    })?;

    // No write is in flight and the cluster converged, so each node's state
    // is the one at its last applied index.
    let finals = cluster.final_states();
    observer.with(|observations| {
        for node in &finals {
            if let Some(log_id) = node.last_applied {
                let state_digest = digest(&node.state.to_snapshot());
                observations.record_state(
                    (node.node_id, Source::LiveState),
                    log_id.index,
                    state_digest,
                );
            }
        }
    });
    let crashes = cluster.crashes();
    cluster.stop_all().await?;

    let mut violations = Vec::new();
    observer.with(|observations| {
        violations.extend(state_agreement::check(observations));
        violations.extend(committed_log::check(observations));
    });
    violations.extend(acknowledged_writes::check(&workload.history, &finals));
    violations.extend(single_holder::check(&workload.history));
    violations.extend(state_validity::check(&finals));
    if !violations.is_empty() {
        return Err(RunError::Violations(violations));
    }

    let (compared_state_indexes, compared_committed_indexes) = observer.with(|observations| {
        (
            state_agreement::compared_indexes(observations),
            committed_log::compared_indexes(observations),
        )
    });
    Ok(RunReport {
        seed,
        steps: steps.len(),
        workload: workload.counters,
        network: router.counters(),
        compared_state_indexes,
        compared_committed_indexes,
        final_index,
        crashes,
        elapsed: started.elapsed(),
    })
}

/// Plays the schedule, sleeping before each step.
async fn play(
    steps: &[Step],
    cluster: &SimCluster,
    router: &Router,
    clock: &SimClock,
) -> Result<(), ClusterError> {
    for step in steps {
        tokio::time::sleep(Duration::from_millis(step.wait_ms)).await;
        tracing::info!(fault = ?step.fault, "schedule step");
        match &step.fault {
            Fault::Heal => router.heal(),
            Fault::Partition(groups) => router.partition(groups),
            Fault::Links(faults) => router.set_faults(*faults),
            Fault::Crash(node_id) => cluster.crash(*node_id).await?,
            Fault::CrashLeader => {
                if let Some(leader) = cluster.leader() {
                    cluster.crash(leader.node_id()).await?;
                }
            }
            Fault::RestartAll => restart_all(cluster).await?,
            Fault::ClockJump { millis } => {
                clock.advance_micros(millis * 1_000);
            }
        }
    }
    Ok(())
}

async fn restart_all(cluster: &SimCluster) -> Result<(), ClusterError> {
    for node_id in cluster.stopped_nodes() {
        cluster.restart(node_id).await?;
    }
    Ok(())
}
