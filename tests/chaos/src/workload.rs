//! The workload: workers that run the full delivery cycle against the
//! cluster, and one wakeup observer per node, all recording into a
//! [`Recorder`].
//!
//! A worker loops over enqueue, reserve (then renew, ack, release or
//! abandon the reservation), linearizable reads of messages and of the
//! wakeup sequence on one node, and wake_dispatchers. Writes go through a
//! client of every node, with request ids and retries. Reads go to one node
//! picked at random, so a stale read from a deposed leader would show. Leases
//! are a few seconds long and some reservations are held past their lease
//! or abandoned, so leases expire and messages are delivered again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use raftq_client::proto::{
    EnqueueRequest, PolicyOverrides, ReadMessageRequest, ReadOptions, ReadWakeupSequenceRequest, ReleaseRequest,
    ReservationRequest, ReserveRequest, WaitForWakeupRequest, WakeDispatchersRequest, WriteOptions,
};
use raftq_client::{Client, RetryConfig};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cluster::ChaosCluster;
use crate::history::{
    dead_letter_view, message_view, outcome_of_error, reservation_view, timestamp_us, Call, Outcome, Recorder, Reply,
    TokenId,
};

/// Kind of every message the workload enqueues.
pub const MESSAGE_KIND: &str = "pending_claim_teardown.v1";

/// Settings of the workload.
#[derive(Clone, Debug)]
pub struct WorkloadSettings {
    pub workers: usize,
    /// Lease of every reservation, sent as a policy override.
    pub lease_seconds: f64,
    /// Max delivery attempts, sent as a policy override.
    pub max_delivery_attempts: u32,
    /// Total time a write keeps retrying before its outcome is unknown.
    pub write_timeout: Duration,
    /// Total time a read on one node keeps retrying.
    pub read_timeout: Duration,
    /// Upper bound of the random pause between two calls of a worker.
    pub max_think_time: Duration,
    /// How long an observer's wait_for_wakeup call waits on the server.
    pub observer_wait: Duration,
}

/// Running workers and observers.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What every worker shares.
#[derive(Clone)]
struct Shared {
    recorder: Recorder,
    pool: String,
    settings: WorkloadSettings,
    writer: Client,
    /// One client per node, for reads pinned to that node.
    readers: Vec<(u8, Client)>,
    /// Recently enqueued message ids, for reads.
    known: Arc<Mutex<VecDeque<Uuid>>>,
    stop: Arc<AtomicBool>,
}

/// Number of recent message ids that reads pick from.
const KNOWN_IDS_KEPT: usize = 256;

impl Workload {
    /// Starts `settings.workers` workers and one observer per node, on
    /// `pool`, with worker RNGs derived from `seed`.
    pub fn start(
        cluster: &ChaosCluster,
        recorder: Recorder,
        pool: Uuid,
        settings: WorkloadSettings,
        seed: u64,
    ) -> Result<Workload> {
        let retry = RetryConfig {
            total_timeout: settings.write_timeout,
            ..RetryConfig::default()
        };
        let readers = cluster
            .ids()
            .into_iter()
            .map(|id| Ok((id, cluster.node_client(id, settings.read_timeout)?)))
            .collect::<Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            recorder,
            pool: pool.to_string(),
            settings: settings.clone(),
            writer: cluster.client(retry)?,
            readers,
            known: Arc::new(Mutex::new(VecDeque::new())),
            stop: Arc::clone(&stop),
        };

        let mut tasks = Vec::new();
        for worker in 0..settings.workers {
            let rng = StdRng::seed_from_u64(seed.wrapping_add(1 + worker as u64));
            tasks.push(tokio::spawn(run_worker(shared.clone(), format!("worker-{worker}"), rng)));
        }
        for id in cluster.ids() {
            let client = cluster.node_client(id, settings.read_timeout)?;
            tasks.push(tokio::spawn(run_observer(shared.clone(), id, client)));
        }
        tracing::info!(workers = settings.workers, pool = %pool, "workload started");
        Ok(Workload { stop, tasks })
    }

    /// Asks every task to stop after its current call and waits for them.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a workload task panicked");
            }
        }
        tracing::info!("workload stopped");
    }
}

fn write_options(settings: &WorkloadSettings) -> Option<WriteOptions> {
    Some(WriteOptions {
        policy: Some(PolicyOverrides {
            lease_seconds: Some(settings.lease_seconds),
            max_delivery_attempts: Some(settings.max_delivery_attempts),
            completed_idempotency_retention: None,
        }),
        ..WriteOptions::default()
    })
}

async fn run_worker(shared: Shared, process: String, mut rng: StdRng) {
    while !shared.stop.load(Ordering::SeqCst) {
        let choice = rng.gen_range(0..100);
        match choice {
            0..=29 => {
                enqueue(&shared, &process, Uuid::new_v4()).await;
            }
            30..=64 => reserve_and_work(&shared, &process, &mut rng).await,
            65..=79 => read_message(&shared, &process, &mut rng).await,
            80..=87 => wake_dispatchers(&shared, &process).await,
            _ => read_wakeup_sequence(&shared, &process, &mut rng).await,
        }
        let think = rng.gen_range(0..=shared.settings.max_think_time.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

/// Enqueues a message and returns the outcome.
pub async fn enqueue_with(
    recorder: &Recorder,
    client: &Client,
    process: &str,
    pool: &str,
    message_id: Uuid,
    options: Option<WriteOptions>,
) -> Outcome {
    let request = EnqueueRequest {
        options,
        message_id: message_id.to_string(),
        idempotency_key: format!("key-{message_id}"),
        work_pool_id: pool.to_string(),
        kind: MESSAGE_KIND.to_string(),
        target: format!(r#"{{"claim_id":"{message_id}","attempt":1}}"#),
        data: Some(r#"{"source":"raftq-chaos"}"#.to_string()),
        ..EnqueueRequest::default()
    };
    let call = Call::Enqueue { message_id };
    recorder
        .record(process, None, call, async {
            match client.enqueue(request).await {
                Ok(response) => match response.message.as_ref().and_then(message_view) {
                    Some(message) => Outcome::Ok {
                        reply: Reply::Enqueued {
                            message_id: message.message_id,
                            duplicate: response.duplicate,
                            delivery_count: message.delivery_count,
                        },
                    },
                    None => Outcome::Info {
                        error: "enqueue response without a readable message".into(),
                    },
                },
                Err(error) => outcome_of_error(&error),
            }
        })
        .await
}

async fn enqueue(shared: &Shared, process: &str, message_id: Uuid) {
    {
        let mut known = shared.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        known.push_back(message_id);
        if known.len() > KNOWN_IDS_KEPT {
            known.pop_front();
        }
    }
    enqueue_with(
        &shared.recorder,
        &shared.writer,
        process,
        &shared.pool,
        message_id,
        write_options(&shared.settings),
    )
    .await;
}

/// A reservation a worker has: the real token stays here and only its
/// [`TokenId`] goes into the history.
struct HeldReservation {
    message_id: Uuid,
    token: String,
}

async fn reserve_and_work(shared: &Shared, process: &str, rng: &mut StdRng) {
    let Some(held) = reserve(shared, process).await else {
        return;
    };
    let lease_ms = (shared.settings.lease_seconds * 1000.0) as u64;
    let mut renews = 0;
    loop {
        // Most steps come well within the lease; some come after it ended,
        // so the server must return `expired` (or redeliver first).
        let pause_ms = if rng.gen_bool(0.12) {
            lease_ms + lease_ms / 5
        } else {
            rng.gen_range(0..=lease_ms / 4)
        };
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let roll = rng.gen_range(0..100);
        let action = match roll {
            0..=24 if renews < 2 => Action::Renew,
            0..=69 => Action::Ack,
            70..=89 => Action::Release,
            // Abandoned: the lease sweeper or a later reserve expires it.
            _ => return,
        };
        if action == Action::Renew {
            renews += 1;
        }
        let status = operation(shared, process, &held, action).await;
        // Only an accepted renew keeps the reservation for another step.
        if action != Action::Renew || status.as_deref() != Some("accepted") {
            return;
        }
    }
}

async fn reserve(shared: &Shared, process: &str) -> Option<HeldReservation> {
    let request = ReserveRequest {
        options: write_options(&shared.settings),
        work_pool_id: shared.pool.clone(),
        ..ReserveRequest::default()
    };
    let held = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&held);
    shared
        .recorder
        .record(process, None, Call::Reserve, async move {
            match shared.writer.reserve(request).await {
                Ok(response) => {
                    let dead_lettered = response.dead_lettered.iter().filter_map(dead_letter_view).collect();
                    let reservation = match &response.reservation {
                        Some(reservation) => match reservation_view(reservation) {
                            Some(view) => {
                                *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(HeldReservation {
                                    message_id: view.message_id,
                                    token: reservation.reservation_token.clone(),
                                });
                                Some(view)
                            }
                            None => {
                                return Outcome::Info {
                                    error: "reservation without a readable message or lease".into(),
                                }
                            }
                        },
                        None => None,
                    };
                    Outcome::Ok {
                        reply: Reply::Reserved {
                            reservation,
                            dead_lettered,
                        },
                    }
                }
                Err(error) => outcome_of_error(&error),
            }
        })
        .await;
    let reservation = held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    reservation
}

/// What a worker does with a reservation it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Ack,
    Release,
    Renew,
}

/// Runs an ack, release or renew and returns its status, if any.
async fn operation(shared: &Shared, process: &str, held: &HeldReservation, action: Action) -> Option<String> {
    let token = TokenId::of(&held.token);
    let message_id = held.message_id;
    let reservation = ReservationRequest {
        options: write_options(&shared.settings),
        work_pool_id: shared.pool.clone(),
        message_id: message_id.to_string(),
        reservation_token: held.token.clone(),
    };
    let call = match action {
        Action::Ack => Call::Ack { message_id, token },
        Action::Release => Call::Release { message_id, token },
        Action::Renew => Call::Renew { message_id, token },
    };
    let outcome = shared
        .recorder
        .record(process, None, call, async {
            let response = match action {
                Action::Ack => shared.writer.ack(reservation).await,
                Action::Renew => shared.writer.renew(reservation).await,
                Action::Release => {
                    let release = ReleaseRequest {
                        options: reservation.options,
                        work_pool_id: reservation.work_pool_id,
                        message_id: reservation.message_id,
                        reservation_token: reservation.reservation_token,
                        reason: "worker gave the job back".to_string(),
                    };
                    shared.writer.release(release).await
                }
            };
            match response {
                Ok(result) => Outcome::Ok {
                    reply: Reply::Operation {
                        status: result.status.clone(),
                        lease_expires_at_us: timestamp_us(result.lease_expires_at.as_ref()),
                        dead_letter: result.dead_letter.as_ref().and_then(dead_letter_view),
                    },
                },
                Err(error) => outcome_of_error(&error),
            }
        })
        .await;
    match outcome {
        Outcome::Ok {
            reply: Reply::Operation { status, .. },
        } => Some(status),
        _ => None,
    }
}

fn pick_reader<'a>(shared: &'a Shared, rng: &mut StdRng) -> &'a (u8, Client) {
    &shared.readers[rng.gen_range(0..shared.readers.len())]
}

async fn read_message(shared: &Shared, process: &str, rng: &mut StdRng) {
    let message_id = {
        let known = shared.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.is_empty() {
            return;
        }
        known[rng.gen_range(0..known.len())]
    };
    let (node, client) = pick_reader(shared, rng);
    let request = ReadMessageRequest {
        read: Some(ReadOptions { local: false }),
        work_pool_id: shared.pool.clone(),
        message_id: message_id.to_string(),
    };
    shared
        .recorder
        .record(process, Some(*node), Call::ReadMessage { message_id }, async {
            match client.read_message(request).await {
                Ok(message) => Outcome::Ok {
                    reply: Reply::Message {
                        message: message.as_ref().and_then(message_view),
                    },
                },
                Err(error) => outcome_of_error(&error),
            }
        })
        .await;
}

async fn wake_dispatchers(shared: &Shared, process: &str) {
    let request = WakeDispatchersRequest {
        options: None,
        work_pool_id: shared.pool.clone(),
    };
    shared
        .recorder
        .record(process, None, Call::WakeDispatchers, async {
            match shared.writer.wake_dispatchers(request).await {
                Ok(sequence) => Outcome::Ok {
                    reply: Reply::Sequence { sequence },
                },
                Err(error) => outcome_of_error(&error),
            }
        })
        .await;
}

async fn read_wakeup_sequence(shared: &Shared, process: &str, rng: &mut StdRng) {
    let (node, client) = pick_reader(shared, rng);
    let request = ReadWakeupSequenceRequest {
        read: Some(ReadOptions { local: false }),
        work_pool_id: shared.pool.clone(),
    };
    shared
        .recorder
        .record(process, Some(*node), Call::ReadWakeupSequence, async {
            match client.read_wakeup_sequence(request).await {
                Ok(sequence) => Outcome::Ok {
                    reply: Reply::Sequence { sequence },
                },
                Err(error) => outcome_of_error(&error),
            }
        })
        .await;
}

/// Waits for wakeups on one node with the `after` cursor, as a dispatcher
/// does, until the workload stops.
async fn run_observer(shared: Shared, node: u8, client: Client) {
    let process = format!("observer-n{node}");
    let mut cursor = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let request = WaitForWakeupRequest {
            work_pool_id: shared.pool.clone(),
            after: cursor,
            timeout_seconds: Some(shared.settings.observer_wait.as_secs_f64()),
        };
        let outcome = shared
            .recorder
            .record(&process, Some(node), Call::WaitForWakeup { after: cursor }, async {
                match client.wait_for_wakeup(request).await {
                    Ok(response) => Outcome::Ok {
                        reply: Reply::Wakeup {
                            woken: response.woken,
                            sequence: response.sequence,
                        },
                    },
                    Err(error) => outcome_of_error(&error),
                }
            })
            .await;
        match outcome {
            Outcome::Ok {
                reply: Reply::Wakeup { woken: true, sequence },
            } => cursor = cursor.max(sequence),
            Outcome::Ok { .. } => {}
            Outcome::Fail { .. } | Outcome::Info { .. } => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
