//! The workload: one client that drives real queue commands through the
//! leader, retrying with request ids, and records every attempt.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftq_raft::WriteError;
use raftq_state_machine::{
    Command, CommandOutput, Enqueue, Operation, OperationStatus, Policy, ReservationOperation,
    ReservationRef, Reserve, Response, Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::cluster::SimCluster;
use crate::history::{History, WriteRecord};

/// The simulated clock the proposer stamps commands with. It never goes
/// back, and it moves only when a command is stamped or the schedule jumps.
#[derive(Debug)]
pub struct SimClock {
    micros: AtomicI64,
}

impl SimClock {
    /// 2023-11-14T22:13:20Z, an arbitrary fixed start.
    pub const START_MICROS: i64 = 1_700_000_000_000_000;

    pub fn new() -> Self {
        SimClock {
            micros: AtomicI64::new(Self::START_MICROS),
        }
    }

    /// Moves the clock forward and returns the new time.
    pub fn advance_micros(&self, micros: i64) -> Timestamp {
        Timestamp::from_micros(self.micros.fetch_add(micros, Ordering::SeqCst) + micros)
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Returns the policy of every command. Leases last 2 s so that they run
/// out during a run, and request ids are kept far longer than any run, so
/// that every acknowledged request id can still be replayed at the end.
pub fn workload_policy() -> Policy {
    Policy {
        lease_us: 2_000_000,
        request_retention_us: 24 * 3_600 * 1_000_000,
        ..Policy::default()
    }
}

/// A write still being retried is abandoned after this long.
const WRITE_GIVE_UP: Duration = Duration::from_secs(10);

/// The cleanup kinds the workload enqueues and filters on.
const KINDS: [&str; 2] = [
    "cancelling_timeout_teardown.v1",
    "pending_claim_teardown.v1",
];

/// Failure of the workload that is not a fault the simulation injected.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("write {request_id} on node {node_id} failed while the node kept running: {error}")]
    Unexpected {
        request_id: String,
        node_id: u64,
        error: WriteError,
    },
}

/// Counts for the run report.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkloadCounters {
    pub attempts: u64,
    pub acknowledged: u64,
    pub abandoned: u64,
    pub forwarded: u64,
    pub unavailable: u64,
}

/// A write before the leader fixes its time and token.
#[derive(Clone, Debug)]
enum Planned {
    Enqueue(Enqueue),
    Reserve {
        pool: Uuid,
        kinds: Option<Vec<String>>,
    },
    Ack(ReservationRef),
    Release(ReservationRef),
    Renew(ReservationRef),
    ExpireLeases {
        limit: i64,
        pool: Option<Uuid>,
    },
    Wake(Uuid),
    Redrive(Uuid),
}

pub struct Workload {
    rng: StdRng,
    clock: Arc<SimClock>,
    policy: Policy,
    pools: [Uuid; 2],
    /// Reservations the client holds and may ack, release or renew.
    live_reservations: Vec<ReservationRef>,
    /// Reservations that ended, used to send stale tokens.
    finished: Vec<ReservationRef>,
    /// Idempotency keys enqueued so far, reused to test duplicate enqueues.
    keys: Vec<(Uuid, String)>,
    next_request: u64,
    max_writes: u64,
    pub history: History,
    pub counters: WorkloadCounters,
}

impl Workload {
    pub fn new(workload_seed: u64, clock: Arc<SimClock>, max_writes: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(workload_seed);
        let pools = [Uuid::from_u128(rng.gen()), Uuid::from_u128(rng.gen())];
        Workload {
            rng,
            clock,
            policy: workload_policy(),
            pools,
            live_reservations: Vec::new(),
            finished: Vec::new(),
            keys: Vec::new(),
            next_request: 0,
            max_writes,
            history: History::default(),
            counters: WorkloadCounters::default(),
        }
    }

    /// Writes until `stop` is set or `max_writes` writes were made.
    pub async fn run(
        &mut self,
        cluster: &SimCluster,
        stop: &AtomicBool,
    ) -> Result<(), WorkloadError> {
        while !stop.load(Ordering::SeqCst) && self.next_request < self.max_writes {
            let planned = self.plan();
            self.submit(cluster, planned).await?;
            let pause = Duration::from_millis(self.rng.gen_range(0..=4));
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Writes one wakeup and returns whether it was acknowledged.
    pub async fn write_final(&mut self, cluster: &SimCluster) -> Result<bool, WorkloadError> {
        let planned = Planned::Wake(self.pools[0]);
        Ok(self.submit(cluster, planned).await?.is_some())
    }

    fn pick_pool(&mut self) -> Uuid {
        self.pools[self.rng.gen_range(0..self.pools.len())]
    }

    fn plan(&mut self) -> Planned {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=29 => Planned::Enqueue(self.plan_enqueue()),
            55..=84 if !self.live_reservations.is_empty() => {
                let reservation = self.live_reservations
                    [self.rng.gen_range(0..self.live_reservations.len())]
                .clone();
                match self.rng.gen_range(0..100) {
                    0..=39 => Planned::Ack(reservation),
                    40..=64 => Planned::Release(reservation),
                    _ => Planned::Renew(reservation),
                }
            }
            85..=89 if !self.finished.is_empty() => {
                let stale = self.finished[self.rng.gen_range(0..self.finished.len())].clone();
                if self.rng.gen_bool(0.5) {
                    Planned::Ack(stale)
                } else {
                    Planned::Renew(stale)
                }
            }
            90..=95 => Planned::ExpireLeases {
                limit: self.rng.gen_range(1..=10),
                pool: self.rng.gen_bool(0.5).then(|| self.pick_pool()),
            },
            96..=97 => Planned::Wake(self.pick_pool()),
            98..=99 => Planned::Redrive(self.pick_pool()),
            // 30..=54, and the rolls above whose guard failed.
            _ => {
                let pool = self.pick_pool();
                let kinds = self
                    .rng
                    .gen_bool(0.2)
                    .then(|| vec![KINDS[self.rng.gen_range(0..KINDS.len())].to_string()]);
                Planned::Reserve { pool, kinds }
            }
        }
    }

    fn plan_enqueue(&mut self) -> Enqueue {
        let number = self.next_request;
        let (work_pool_id, idempotency_key) = if !self.keys.is_empty() && self.rng.gen_bool(0.15) {
            self.keys[self.rng.gen_range(0..self.keys.len())].clone()
        } else {
            (self.pick_pool(), format!("key-{number}"))
        };
        Enqueue {
            message_id: Uuid::from_u128(self.rng.gen()),
            idempotency_key,
            work_pool_id,
            work_queue_id: None,
            kind: KINDS[self.rng.gen_range(0..KINDS.len())].to_string(),
            target_json: format!("{{\"flow_run\":{number}}}"),
            data_json: None,
        }
    }

    /// Fixes what the leader fixes on each attempt: a fresh token for a
    /// reserve (32 random bytes, hex-encoded).
    fn operation(&mut self, planned: &Planned) -> Operation {
        match planned.clone() {
            Planned::Enqueue(enqueue) => Operation::Enqueue(enqueue),
            Planned::Reserve { pool, kinds } => {
                let token_bytes: [u8; 32] = self.rng.gen();
                let reservation_token = token_bytes
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                Operation::Reserve(Reserve {
                    work_pool_id: pool,
                    cleanup_kinds: kinds,
                    preferred_work_queue_ids: None,
                    allow_fallback_to_any_queue: true,
                    reservation_token,
                })
            }
            Planned::Ack(reservation) => Operation::Ack(reservation),
            Planned::Release(reservation) => Operation::Release {
                reservation,
                reason: "worker gave up".to_string(),
            },
            Planned::Renew(reservation) => Operation::Renew(reservation),
            Planned::ExpireLeases { limit, pool } => Operation::ExpireLeases {
                limit,
                work_pool_id: pool,
            },
            Planned::Wake(pool) => Operation::WakeDispatchers { work_pool_id: pool },
            Planned::Redrive(pool) => Operation::RedriveDeadLetters {
                work_pool_id: pool,
                message_id: None,
            },
        }
    }

    /// Sends one write through the leader until it is acknowledged or
    /// [`WRITE_GIVE_UP`] passed, and records every attempt.
    async fn submit(
        &mut self,
        cluster: &SimCluster,
        planned: Planned,
    ) -> Result<Option<CommandOutput>, WorkloadError> {
        let request_id = format!("request-{}", self.next_request);
        self.next_request += 1;
        let mut record = WriteRecord {
            request_id: request_id.clone(),
            attempts: Vec::new(),
            acknowledged: None,
        };
        let give_up_at = tokio::time::Instant::now() + WRITE_GIVE_UP;
        let mut target = cluster.leader_hint();

        while tokio::time::Instant::now() < give_up_at {
            let chosen = target
                .and_then(|node_id| cluster.node(node_id))
                .or_else(|| {
                    let running = cluster.running_nodes();
                    (!running.is_empty()).then(|| {
                        let node = running[self.rng.gen_range(0..running.len())].clone();
                        let incarnation = cluster
                            .node(node.node_id())
                            .map_or(0, |(_, incarnation)| incarnation);
                        (node, incarnation)
                    })
                });
            let Some((node, incarnation)) = chosen else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                target = cluster.leader_hint();
                continue;
            };

            let operation = self.operation(&planned);
            let step_micros = self.rng.gen_range(1_000..=150_000);
            let command = Command {
                now: self.clock.advance_micros(step_micros),
                request_id: Some(request_id.clone()),
                policy: self.policy,
                operation,
            };
            record.attempts.push(command.clone());
            self.counters.attempts += 1;

            match node.write(command.clone()).await {
                Ok(output) => {
                    self.counters.acknowledged += 1;
                    self.track(&planned, &output);
                    record.acknowledged = Some((command, output.clone()));
                    self.history.writes.push(record);
                    return Ok(Some(output));
                }
                Err(WriteError::ForwardToLeader { leader_id, .. }) => {
                    self.counters.forwarded += 1;
                    target = leader_id
                        .filter(|leader_id| *leader_id != node.node_id())
                        .or_else(|| cluster.leader_hint());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(WriteError::Unavailable { reason }) => {
                    self.counters.unavailable += 1;
                    tracing::debug!(node_id = node.node_id(), %request_id, %reason, "write unavailable, retrying");
                    target = cluster.leader_hint();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    // A node crashed by the schedule may fail a write in
                    // flight with any error; a running node may not.
                    let restarted = cluster.node(node.node_id()).map(|(_, current)| current)
                        != Some(incarnation);
                    if !restarted {
                        self.history.writes.push(record);
                        return Err(WorkloadError::Unexpected {
                            request_id,
                            node_id: node.node_id(),
                            error,
                        });
                    }
                    tracing::debug!(node_id = node.node_id(), %request_id, %error, "write failed on a crashed node, retrying");
                    target = cluster.leader_hint();
                }
            }
        }

        tracing::info!(%request_id, attempts = record.attempts.len(), "abandoned a write");
        self.counters.abandoned += 1;
        self.history.writes.push(record);
        Ok(None)
    }

    /// Updates the reservations the client holds from an acknowledged output.
    fn track(&mut self, planned: &Planned, output: &CommandOutput) {
        match (&output.response, planned) {
            (Response::Enqueued { message, .. }, _) => {
                self.keys
                    .push((message.work_pool_id, message.idempotency_key.clone()));
            }
            (Response::Reserved(Some(reservation)), _) => {
                self.live_reservations.push(ReservationRef {
                    work_pool_id: reservation.message.work_pool_id,
                    message_id: reservation.message.message_id,
                    reservation_token: reservation.reservation_token.clone(),
                });
            }
            (
                Response::Operation(result),
                Planned::Ack(reference) | Planned::Release(reference) | Planned::Renew(reference),
            ) => {
                let still_held = result.operation == ReservationOperation::Renew
                    && result.status == OperationStatus::Accepted;
                if !still_held {
                    if let Some(position) = self
                        .live_reservations
                        .iter()
                        .position(|live| live == reference)
                    {
                        let ended = self.live_reservations.swap_remove(position);
                        self.finished.push(ended);
                    }
                }
            }
            _ => {}
        }
    }
}
