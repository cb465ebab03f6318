//! Property tests: random command sequences applied to the state machine and
//! to a small reference model that implements the contract by linear scans.
//! Every response must match the model's, and the invariants below must hold
//! after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raftq_state_machine::{
    reason, Command, CommandError, DeadLetter, Enqueue, LeaseExpiryResult, Message, Operation,
    OperationResult, OperationStatus, Policy, QueueState, Reservation, ReservationOperation,
    ReservationRef, Reserve, Response, Timestamp,
};
use uuid::Uuid;

const POOLS: [u128; 2] = [0xa1, 0xa2];
const MESSAGE_IDS: [u128; 4] = [0x1, 0x2, 0x3, 0x4];
const QUEUES: [u128; 2] = [0xb1, 0xb2];
const KEYS: [&str; 3] = ["key-a", "key-b", "key-c"];
const KINDS: [&str; 2] = ["teardown.v1", "claim.v1"];

fn uuid(value: u128) -> Uuid {
    Uuid::from_u128(value)
}

/// One step of a generated history. Indexes pick from the small universes
/// above so that collisions (same id, same key, same pool) are frequent.
#[derive(Clone, Debug)]
enum Step {
    Enqueue { pool: usize, message: usize, key: usize, kind: usize, queue: Option<usize> },
    Reserve { pool: usize, kinds: Option<Vec<usize>>, queues: Option<Vec<usize>>, fallback: bool },
    Ack { pool: usize, message: usize, token: usize },
    Release { pool: usize, message: usize, token: usize },
    Renew { pool: usize, message: usize, token: usize },
    ExpireLeases { limit: i64, pool: Option<usize> },
    Wake { pool: usize },
    Redrive { pool: usize, message: Option<usize> },
    Purge { pool: usize, message: Option<usize> },
    AdvanceSeconds(i64),
    SetPolicy { lease_seconds: i64, max_attempts: u32, retention_seconds: Option<i64> },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let pool = 0..POOLS.len();
    let message = 0..MESSAGE_IDS.len();
    prop_oneof![
        4 => (pool.clone(), message.clone(), 0..KEYS.len(), 0..KINDS.len(), proptest::option::of(0..QUEUES.len()))
            .prop_map(|(pool, message, key, kind, queue)| Step::Enqueue { pool, message, key, kind, queue }),
        4 => (pool.clone(), proptest::option::of(proptest::collection::vec(0..KINDS.len(), 0..3)),
              proptest::option::of(proptest::collection::vec(0..QUEUES.len(), 0..3)), any::<bool>())
            .prop_map(|(pool, kinds, queues, fallback)| Step::Reserve { pool, kinds, queues, fallback }),
        2 => (pool.clone(), message.clone(), 0..8usize).prop_map(|(pool, message, token)| Step::Ack { pool, message, token }),
        2 => (pool.clone(), message.clone(), 0..8usize).prop_map(|(pool, message, token)| Step::Release { pool, message, token }),
        1 => (pool.clone(), message.clone(), 0..8usize).prop_map(|(pool, message, token)| Step::Renew { pool, message, token }),
        1 => (0i64..4, proptest::option::of(pool.clone())).prop_map(|(limit, pool)| Step::ExpireLeases { limit, pool }),
        1 => pool.clone().prop_map(|pool| Step::Wake { pool }),
        1 => (pool.clone(), proptest::option::of(message.clone())).prop_map(|(pool, message)| Step::Redrive { pool, message }),
        1 => (pool.clone(), proptest::option::of(message.clone())).prop_map(|(pool, message)| Step::Purge { pool, message }),
        2 => (0i64..8).prop_map(Step::AdvanceSeconds),
        1 => (1i64..6, 1u32..4, proptest::option::of(0i64..10))
            .prop_map(|(lease_seconds, max_attempts, retention_seconds)| Step::SetPolicy { lease_seconds, max_attempts, retention_seconds }),
    ]
}

/// Turns steps into commands the way a leader would: its clock, its policy,
/// a fresh token per reserve. Tokens of ack/release/renew are picked from
/// every token issued so far (current, stale, or never issued).
struct Driver {
    now_us: i64,
    policy: Policy,
    tokens: Vec<String>,
}

impl Driver {
    fn new() -> Self {
        Driver {
            now_us: 1_000_000_000,
            policy: Policy { completed_retention_us: None, ..Policy::default() },
            tokens: Vec::new(),
        }
    }

    fn token(&self, index: usize) -> String {
        self.tokens
            .iter()
            .rev()
            .nth(index)
            .cloned()
            .unwrap_or_else(|| "never-issued-token".to_string())
    }

    fn reference(&self, pool: usize, message: usize, token: usize) -> ReservationRef {
        ReservationRef {
            work_pool_id: uuid(POOLS[pool]),
            message_id: uuid(MESSAGE_IDS[message]),
            reservation_token: self.token(token),
        }
    }

    /// Returns the command of a step, or `None` for steps that only move the
    /// leader's clock or policy.
    fn command(&mut self, step: &Step) -> Option<Command> {
        let operation = match step {
            Step::AdvanceSeconds(seconds) => {
                self.now_us += seconds * 1_000_000;
                return None;
            }
            Step::SetPolicy { lease_seconds, max_attempts, retention_seconds } => {
                self.policy.lease_us = lease_seconds * 1_000_000;
                self.policy.max_delivery_attempts = *max_attempts;
                self.policy.completed_retention_us = retention_seconds.map(|seconds| seconds * 1_000_000);
                return None;
            }
            Step::Enqueue { pool, message, key, kind, queue } => Operation::Enqueue(Enqueue {
                message_id: uuid(MESSAGE_IDS[*message]),
                idempotency_key: KEYS[*key].to_string(),
                work_pool_id: uuid(POOLS[*pool]),
                work_queue_id: queue.map(|queue| uuid(QUEUES[queue])),
                kind: KINDS[*kind].to_string(),
                target_json: format!(r#"{{"n":{message}}}"#),
                data_json: None,
            }),
            Step::Reserve { pool, kinds, queues, fallback } => {
                self.tokens.push(format!("token-{:0>40}", self.tokens.len()));
                Operation::Reserve(Reserve {
                    work_pool_id: uuid(POOLS[*pool]),
                    cleanup_kinds: kinds.as_ref().map(|kinds| kinds.iter().map(|kind| KINDS[*kind].to_string()).collect()),
                    preferred_work_queue_ids: queues.as_ref().map(|queues| queues.iter().map(|queue| uuid(QUEUES[*queue])).collect()),
                    allow_fallback_to_any_queue: *fallback,
                    reservation_token: self.tokens.last().unwrap().clone(),
                })
            }
            Step::Ack { pool, message, token } => Operation::Ack(self.reference(*pool, *message, *token)),
            Step::Release { pool, message, token } => Operation::Release {
                reservation: self.reference(*pool, *message, *token),
                reason: "released".to_string(),
            },
            Step::Renew { pool, message, token } => Operation::Renew(self.reference(*pool, *message, *token)),
            Step::ExpireLeases { limit, pool } => Operation::ExpireLeases {
                limit: *limit,
                work_pool_id: pool.map(|pool| uuid(POOLS[pool])),
            },
            Step::Wake { pool } => Operation::WakeDispatchers { work_pool_id: uuid(POOLS[*pool]) },
            Step::Redrive { pool, message } => Operation::RedriveDeadLetters {
                work_pool_id: uuid(POOLS[*pool]),
                message_id: message.map(|message| uuid(MESSAGE_IDS[message])),
            },
            Step::Purge { pool, message } => Operation::PurgeDeadLetters {
                work_pool_id: uuid(POOLS[*pool]),
                message_id: message.map(|message| uuid(MESSAGE_IDS[message])),
            },
        };
        Some(Command {
            now: Timestamp::from_micros(self.now_us),
            request_id: None,
            policy: self.policy,
            operation,
        })
    }
}

// The reference model: a flat list scanned in enqueue order.

#[derive(Clone, Debug)]
enum ModelState {
    Visible,
    Reserved { token: String, lease_expires_at: Timestamp },
    Acked { completed_at: Timestamp },
    Dead { moved: u64 },
}

#[derive(Clone, Debug)]
struct ModelEntry {
    message: Message,
    state: ModelState,
}

#[derive(Default)]
struct Model {
    /// In enqueue order; a purged or pruned entry is removed.
    entries: Vec<ModelEntry>,
    wakeups: BTreeMap<Uuid, u64>,
    moves: u64,
}

impl Model {
    fn wake(&mut self, pool: Uuid) {
        *self.wakeups.entry(pool).or_default() += 1;
    }

    fn find(&self, pool: Uuid, message_id: Uuid) -> Option<usize> {
        self.entries
            .iter()
            .position(|entry| entry.message.work_pool_id == pool && entry.message.message_id == message_id)
    }

    fn dead_letter(&mut self, index: usize, now: Timestamp, release_reason: Option<&str>) -> DeadLetter {
        let entry = &mut self.entries[index];
        let (reservation_token, lease_expires_at) = match &entry.state {
            ModelState::Reserved { token, lease_expires_at } => (Some(token.clone()), Some(*lease_expires_at)),
            _ => (None, None),
        };
        let dead_letter = DeadLetter {
            message: entry.message.clone(),
            reason: reason::MAX_DELIVERY_ATTEMPTS_REACHED.to_string(),
            final_delivery_count: entry.message.delivery_count,
            moved_at: now,
            reservation_token,
            lease_expires_at,
            release_reason: release_reason.map(str::to_string),
        };
        entry.state = ModelState::Dead { moved: self.moves };
        self.moves += 1;
        dead_letter
    }

    /// Ends the lease of entry `index`: dead letter at the max, else visible.
    fn expire(&mut self, index: usize, now: Timestamp, policy: &Policy) -> Result<Message, DeadLetter> {
        if self.entries[index].message.delivery_count >= policy.max_delivery_attempts {
            return Err(self.dead_letter(index, now, None));
        }
        let entry = &mut self.entries[index];
        entry.state = ModelState::Visible;
        entry.message.updated_at = now;
        Ok(entry.message.clone())
    }

    fn expire_leases(&mut self, now: Timestamp, policy: &Policy, limit: usize, pool: Option<Uuid>) -> LeaseExpiryResult {
        let mut due: Vec<(Timestamp, Uuid, Uuid, usize)> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry.state {
                ModelState::Reserved { lease_expires_at, .. }
                    if lease_expires_at <= now && pool.is_none_or(|pool| pool == entry.message.work_pool_id) =>
                {
                    Some((lease_expires_at, entry.message.work_pool_id, entry.message.message_id, index))
                }
                _ => None,
            })
            .collect();
        due.sort();
        let mut result = LeaseExpiryResult::default();
        let mut woken = std::collections::BTreeSet::new();
        for (_, pool, _, index) in due.into_iter().take(limit) {
            match self.expire(index, now, policy) {
                Ok(message) => {
                    woken.insert(pool);
                    result.redelivered.push(message);
                }
                Err(dead_letter) => result.dead_lettered.push(dead_letter),
            }
        }
        for pool in woken {
            self.wake(pool);
        }
        result
    }

    fn apply(&mut self, command: &Command) -> Response {
        let now = command.now;
        let policy = &command.policy;
        match &command.operation {
            Operation::Enqueue(enqueue) => self.enqueue(now, policy, enqueue),
            Operation::Reserve(reserve) => Response::Reserved(self.reserve(now, policy, reserve)),
            Operation::Ack(reference) => Response::Operation(self.reservation_op(now, policy, ReservationOperation::Ack, reference, None)),
            Operation::Release { reservation, reason } => {
                Response::Operation(self.reservation_op(now, policy, ReservationOperation::Release, reservation, Some(reason)))
            }
            Operation::Renew(reference) => Response::Operation(self.reservation_op(now, policy, ReservationOperation::Renew, reference, None)),
            Operation::ExpireLeases { limit, work_pool_id } => {
                if *limit < 1 {
                    return Response::Rejected(CommandError::InvalidInput {
                        field: "limit".to_string(),
                        rule: "must be at least 1".to_string(),
                    });
                }
                Response::LeasesExpired(self.expire_leases(now, policy, *limit as usize, *work_pool_id))
            }
            Operation::WakeDispatchers { work_pool_id } => {
                self.wake(*work_pool_id);
                Response::Woken(raftq_state_machine::Wakeup { work_pool_id: *work_pool_id, sequence: self.wakeups[work_pool_id] })
            }
            Operation::RedriveDeadLetters { work_pool_id, message_id } => {
                let mut targets = self.dead_targets(*work_pool_id, *message_id);
                targets.sort();
                let mut messages = Vec::new();
                for (_, index) in targets {
                    let entry = &mut self.entries[index];
                    entry.state = ModelState::Visible;
                    entry.message.delivery_count = 0;
                    entry.message.updated_at = now;
                    messages.push(entry.message.clone());
                }
                if !messages.is_empty() {
                    self.wake(*work_pool_id);
                }
                Response::Redriven { messages }
            }
            Operation::PurgeDeadLetters { work_pool_id, message_id } => {
                let targets = self.dead_targets(*work_pool_id, *message_id);
                let purged: Vec<usize> = targets.iter().map(|(_, index)| *index).collect();
                let mut index = 0;
                self.entries.retain(|_| {
                    index += 1;
                    !purged.contains(&(index - 1))
                });
                Response::Purged { count: purged.len() as u64 }
            }
        }
    }

    fn dead_targets(&self, pool: Uuid, message_id: Option<Uuid>) -> Vec<(u64, usize)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry.state {
                ModelState::Dead { moved, .. }
                    if entry.message.work_pool_id == pool && message_id.is_none_or(|id| id == entry.message.message_id) =>
                {
                    Some((moved, index))
                }
                _ => None,
            })
            .collect()
    }

    fn enqueue(&mut self, now: Timestamp, policy: &Policy, enqueue: &Enqueue) -> Response {
        if let Some(retention_us) = policy.completed_retention_us {
            self.entries.retain(|entry| match entry.state {
                ModelState::Acked { completed_at } => completed_at.saturating_add_micros(retention_us) > now,
                _ => true,
            });
        }
        let pool = enqueue.work_pool_id;
        let existing = match self.find(pool, enqueue.message_id) {
            Some(index) if self.entries[index].message.idempotency_key != enqueue.idempotency_key => {
                return Response::Rejected(CommandError::MessageIdTaken { message_id: enqueue.message_id });
            }
            Some(index) => Some(index),
            None => self
                .entries
                .iter()
                .position(|entry| entry.message.work_pool_id == pool && entry.message.idempotency_key == enqueue.idempotency_key),
        };
        if let Some(index) = existing {
            if matches!(self.entries[index].state, ModelState::Visible) {
                self.wake(pool);
            }
            return Response::Enqueued { message: self.entries[index].message.clone(), duplicate: true };
        }
        let message = Message {
            message_id: enqueue.message_id,
            idempotency_key: enqueue.idempotency_key.clone(),
            work_pool_id: pool,
            work_queue_id: enqueue.work_queue_id,
            kind: enqueue.kind.clone(),
            target_json: enqueue.target_json.clone(),
            data_json: "{}".to_string(),
            created_at: now,
            updated_at: now,
            delivery_count: 0,
        };
        self.entries.push(ModelEntry { message: message.clone(), state: ModelState::Visible });
        self.wake(pool);
        Response::Enqueued { message, duplicate: false }
    }

    fn reserve(&mut self, now: Timestamp, policy: &Policy, reserve: &Reserve) -> Option<Reservation> {
        let pool = reserve.work_pool_id;
        let expired = self.expire_leases(now, policy, 100, Some(pool));
        let _ = expired;
        let mut passes = vec![reserve.preferred_work_queue_ids.clone()];
        if reserve.preferred_work_queue_ids.is_some() && reserve.allow_fallback_to_any_queue {
            passes.push(None);
        }
        for queues in passes {
            loop {
                let candidate = self.entries.iter().position(|entry| {
                    matches!(entry.state, ModelState::Visible)
                        && entry.message.work_pool_id == pool
                        && reserve.cleanup_kinds.as_ref().is_none_or(|kinds| kinds.contains(&entry.message.kind))
                        && queues
                            .as_ref()
                            .is_none_or(|queues| entry.message.work_queue_id.is_some_and(|queue| queues.contains(&queue)))
                });
                let Some(index) = candidate else { break };
                if self.entries[index].message.delivery_count >= policy.max_delivery_attempts {
                    self.dead_letter(index, now, None);
                    continue;
                }
                let lease_expires_at = now.saturating_add_micros(policy.lease_us);
                let entry = &mut self.entries[index];
                entry.message.delivery_count += 1;
                entry.message.updated_at = now;
                entry.state = ModelState::Reserved { token: reserve.reservation_token.clone(), lease_expires_at };
                return Some(Reservation {
                    message: entry.message.clone(),
                    reservation_token: reserve.reservation_token.clone(),
                    lease_expires_at,
                });
            }
        }
        None
    }

    fn reservation_op(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        operation: ReservationOperation,
        reference: &ReservationRef,
        release_reason: Option<&str>,
    ) -> OperationResult {
        let rejected = |status, reason: &str| OperationResult {
            message_id: reference.message_id,
            operation,
            status,
            lease_expires_at: None,
            reason: Some(reason.to_string()),
            dead_letter: None,
        };
        let index = self.find(reference.work_pool_id, reference.message_id).filter(|index| {
            matches!(self.entries[*index].state, ModelState::Visible | ModelState::Reserved { .. })
        });
        let Some(index) = index else {
            return rejected(OperationStatus::NotFound, reason::MESSAGE_NOT_FOUND);
        };
        let ModelState::Reserved { token, lease_expires_at } = self.entries[index].state.clone() else {
            return rejected(OperationStatus::NotCurrent, reason::NO_ACTIVE_RESERVATION);
        };
        if token != reference.reservation_token {
            return rejected(OperationStatus::InvalidToken, reason::RESERVATION_TOKEN_MISMATCH);
        }
        if lease_expires_at <= now {
            return match self.expire(index, now, policy) {
                Ok(_) => {
                    self.wake(reference.work_pool_id);
                    rejected(OperationStatus::Expired, reason::LEASE_EXPIRED)
                }
                Err(dead_letter) => OperationResult {
                    dead_letter: Some(dead_letter),
                    ..rejected(OperationStatus::DeadLettered, reason::MAX_DELIVERY_ATTEMPTS_REACHED)
                },
            };
        }
        let accepted = OperationResult {
            message_id: reference.message_id,
            operation,
            status: OperationStatus::Accepted,
            lease_expires_at: None,
            reason: None,
            dead_letter: None,
        };
        match operation {
            ReservationOperation::Ack => {
                let entry = &mut self.entries[index];
                entry.message.updated_at = now;
                entry.state = ModelState::Acked { completed_at: now };
                accepted
            }
            ReservationOperation::Release => {
                if self.entries[index].message.delivery_count >= policy.max_delivery_attempts {
                    let dead_letter = self.dead_letter(index, now, release_reason);
                    return OperationResult {
                        dead_letter: Some(dead_letter),
                        ..rejected(OperationStatus::DeadLettered, reason::MAX_DELIVERY_ATTEMPTS_REACHED)
                    };
                }
                let entry = &mut self.entries[index];
                entry.state = ModelState::Visible;
                entry.message.updated_at = now;
                self.wake(reference.work_pool_id);
                accepted
            }
            ReservationOperation::Renew => {
                let lease_expires_at = now.saturating_add_micros(policy.lease_us);
                let entry = &mut self.entries[index];
                entry.message.updated_at = now;
                entry.state = ModelState::Reserved { token, lease_expires_at };
                OperationResult { lease_expires_at: Some(lease_expires_at), ..accepted }
            }
        }
    }
}

/// Runs the steps through the state machine and the model, checking
/// responses and invariants; returns the commands and outputs.
fn run_history(steps: &[Step]) -> (Vec<Command>, Vec<Response>, QueueState) {
    let mut driver = Driver::new();
    let mut state = QueueState::new();
    let mut model = Model::default();
    let mut commands = Vec::new();
    let mut responses = Vec::new();
    let mut delivery_counts: BTreeMap<(Uuid, Uuid), u32> = BTreeMap::new();
    let mut wakeups: BTreeMap<Uuid, u64> = BTreeMap::new();

    for step in steps {
        let Some(command) = driver.command(step) else { continue };
        let output = state.apply(&command);
        let expected = model.apply(&command);
        assert_eq!(output.response, expected, "state machine and model differ on {:?}", command.operation);
        state.validate().expect("state invariants hold");

        // delivery_count grows by exactly one per reservation, and only a
        // redrive (which resets it) may lower it.
        for pool in POOLS.map(uuid) {
            for message_id in MESSAGE_IDS.map(uuid) {
                let current = state
                    .read_message(pool, message_id)
                    .map(|message| message.delivery_count)
                    .or_else(|| state.read_dead_letter(pool, message_id).map(|dead| dead.message.delivery_count));
                let Some(current) = current else {
                    // Acked, purged or never enqueued: a later message with
                    // this id starts over.
                    delivery_counts.remove(&(pool, message_id));
                    continue;
                };
                let previous = delivery_counts.insert((pool, message_id), current).unwrap_or(0);
                let reserved_now = matches!(&output.response, Response::Reserved(Some(r)) if r.message.message_id == message_id && r.message.work_pool_id == pool);
                let redriven = matches!(&command.operation, Operation::RedriveDeadLetters { .. });
                if reserved_now {
                    assert_eq!(current, previous + 1, "a reservation adds exactly one delivery");
                } else if !redriven {
                    assert_eq!(current, previous, "delivery_count changed without a reservation");
                }
            }
            let sequence = state.wakeup_sequence(pool);
            let previous = wakeups.insert(pool, sequence).unwrap_or(0);
            assert!(sequence >= previous, "the wakeup sequence never decreases");
            assert_eq!(sequence, model.wakeups.get(&pool).copied().unwrap_or(0));
        }

        // Every message in the model is in exactly one place in the state.
        for entry in &model.entries {
            let pool = entry.message.work_pool_id;
            let id = entry.message.message_id;
            let active = state.read_message(pool, id).is_some();
            let dead = state.read_dead_letter(pool, id).is_some();
            match entry.state {
                ModelState::Visible | ModelState::Reserved { .. } => assert!(active && !dead),
                ModelState::Acked { .. } => assert!(!active && !dead),
                ModelState::Dead { .. } => assert!(!active && dead),
            }
        }

        commands.push(command);
        responses.push(output.response);
    }
    (commands, responses, state)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_model(steps in proptest::collection::vec(step_strategy(), 1..80)) {
        run_history(&steps);
    }

    #[test]
    fn replaying_log_gives_identical_state(steps in proptest::collection::vec(step_strategy(), 1..80)) {
        let (commands, responses, state) = run_history(&steps);

        let mut replayed = QueueState::new();
        let replayed_responses: Vec<Response> = commands.iter().map(|command| replayed.apply(command).response).collect();

        prop_assert_eq!(&replayed_responses, &responses);
        prop_assert_eq!(&replayed, &state);
    }

    #[test]
    fn snapshot_half_way_gives_identical_state(steps in proptest::collection::vec(step_strategy(), 1..80)) {
        let (commands, responses, state) = run_history(&steps);
        let half = commands.len() / 2;

        let mut first_half = QueueState::new();
        for command in &commands[..half] {
            first_half.apply(command);
        }
        let mut restored = QueueState::from_snapshot(&first_half.to_snapshot()).unwrap();
        let rest: Vec<Response> = commands[half..].iter().map(|command| restored.apply(command).response).collect();

        prop_assert_eq!(&rest[..], &responses[half..]);
        prop_assert_eq!(restored.to_snapshot(), state.to_snapshot());
    }
}
