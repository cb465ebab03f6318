//! The queue state and `apply`.
//!
//! ```text
//!   Command { now, request_id, policy, operation }
//!        |
//!        v
//!   validate input ──invalid──> Rejected (state unchanged)
//!        | ok
//!        v
//!   prune request ids ──> repeat? ──yes──> stored response (no events)
//!        | no
//!        v
//!   operation (enqueue, reserve, ...) ──> Response + Events
//! ```
//!
//! Every map is ordered, so iteration, serialization and therefore snapshots
//! are identical on every node.

mod dead_letters;
mod enqueue;
mod invariants;
mod pool;
mod requests;
mod reservations;
mod reserve;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{Command, CommandOutput, DeadLetterSource, Event, Operation, Policy, Response};
use crate::error::DecodeError;
use crate::model::{DeadLetter, DeadLetterPage, Message, PoolStats};
use crate::time::Timestamp;
use crate::validation;

use pool::{DeadLetterState, Pool, Record, RecordState};
use requests::RequestLog;

/// Format version of a snapshot written by [`QueueState::to_snapshot`].
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;

/// Above this many records, debug builds skip the full invariant check after
/// each apply, which costs a scan of the whole state.
#[cfg(debug_assertions)]
const DEBUG_VALIDATE_MAX_RECORDS: usize = 10_000;

/// The whole replicated queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pools: BTreeMap<Uuid, Pool>,
    /// Every live lease by expiry, pool and message id: the deterministic
    /// order of an unscoped `expire_leases`.
    leases: BTreeSet<(Timestamp, Uuid, Uuid)>,
    /// Every acked tombstone by completion time, pool and message id, so that
    /// pruning reads only the tombstones that are due.
    tombstones: BTreeSet<(Timestamp, Uuid, Uuid)>,
    next_enqueue_sequence: u64,
    next_move_sequence: u64,
    requests: RequestLog,
    /// The latest `now` of any applied command. A new leader stamps no time
    /// earlier than this.
    latest_time: Timestamp,
}

impl QueueState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command and returns the response and the events.
    ///
    /// Pure: the output depends only on `self` and `command`.
    pub fn apply(&mut self, command: &Command) -> CommandOutput {
        // Input rules do not depend on the state, so an invalid command is
        // rejected before anything, the request log included, changes.
        if let Err(error) = validation::validate_command(command) {
            return CommandOutput {
                response: Response::Rejected(error),
                events: Vec::new(),
                replayed: false,
            };
        }

        let now = command.now;
        self.latest_time = self.latest_time.max(now);
        self.requests.prune(now, command.policy.request_retention_us);

        if let Some(request_id) = &command.request_id {
            match self.requests.lookup(request_id, &command.operation) {
                Ok(Some(response)) => {
                    return CommandOutput {
                        response: response.clone(),
                        events: Vec::new(),
                        replayed: true,
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    return CommandOutput {
                        response: Response::Rejected(error),
                        events: Vec::new(),
                        replayed: false,
                    }
                }
            }
        }

        let mut events = Vec::new();
        let response = self.apply_operation(now, &command.policy, &command.operation, &mut events);
        if let Some(request_id) = &command.request_id {
            self.requests
                .record(request_id, now, &command.operation, response.clone());
        }

        #[cfg(debug_assertions)]
        if self.record_count() <= DEBUG_VALIDATE_MAX_RECORDS {
            if let Err(violation) = self.validate() {
                panic!("state invariant broken after {}: {violation}", command.operation.name());
            }
        }

        CommandOutput {
            response,
            events,
            replayed: false,
        }
    }

    fn apply_operation(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        operation: &Operation,
        events: &mut Vec<Event>,
    ) -> Response {
        match operation {
            Operation::Enqueue(enqueue) => self.enqueue(now, policy, enqueue, events),
            Operation::Reserve(reserve) => {
                Response::Reserved(self.reserve(now, policy, reserve, events))
            }
            Operation::Ack(reservation) => {
                Response::Operation(self.ack(now, policy, reservation, events))
            }
            Operation::Release {
                reservation,
                reason,
            } => Response::Operation(self.release(now, policy, reservation, reason, events)),
            Operation::Renew(reservation) => {
                Response::Operation(self.renew(now, policy, reservation, events))
            }
            Operation::ExpireLeases {
                limit,
                work_pool_id,
            } => {
                let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
                Response::LeasesExpired(self.expire_leases(now, policy, limit, *work_pool_id, events))
            }
            Operation::WakeDispatchers { work_pool_id } => {
                Response::Woken(self.advance_wakeup(*work_pool_id, events))
            }
            Operation::RedriveDeadLetters {
                work_pool_id,
                message_id,
            } => Response::Redriven {
                messages: self.redrive_dead_letters(now, *work_pool_id, *message_id, events),
            },
            Operation::PurgeDeadLetters {
                work_pool_id,
                message_id,
            } => Response::Purged {
                count: self.purge_dead_letters(*work_pool_id, *message_id),
            },
        }
    }

    /// Returns an active message (not acked, not dead-lettered) of the pool.
    pub fn read_message(&self, work_pool_id: Uuid, message_id: Uuid) -> Option<Message> {
        let record = self.pools.get(&work_pool_id)?.records.get(&message_id)?;
        record.is_active().then(|| record.message.clone())
    }

    /// Returns a dead letter of the pool.
    pub fn read_dead_letter(&self, work_pool_id: Uuid, message_id: Uuid) -> Option<DeadLetter> {
        self.pools
            .get(&work_pool_id)?
            .records
            .get(&message_id)?
            .dead_letter()
    }

    /// Returns the pool's wakeup sequence, 0 for a pool never woken.
    pub fn wakeup_sequence(&self, work_pool_id: Uuid) -> u64 {
        self.pools
            .get(&work_pool_id)
            .map_or(0, |pool| pool.wakeup_sequence)
    }

    /// Lists every pool's wakeup sequence, for publishing after a restore.
    pub fn wakeup_sequences(&self) -> impl Iterator<Item = (Uuid, u64)> + '_ {
        self.pools
            .iter()
            .map(|(work_pool_id, pool)| (*work_pool_id, pool.wakeup_sequence))
    }

    pub fn pool_stats(&self, work_pool_id: Uuid) -> PoolStats {
        let Some(pool) = self.pools.get(&work_pool_id) else {
            return PoolStats::default();
        };
        PoolStats {
            active: pool.active_count,
            reserved: pool.leases.len() as u64,
            dead_lettered: pool.dead_letters.len() as u64,
            tombstones: pool.tombstone_count,
            wakeup_sequence: pool.wakeup_sequence,
        }
    }

    /// Lists the ids of every pool in the state.
    pub fn work_pool_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.pools.keys().copied()
    }

    /// Returns one page of the pool's dead letters in move order, starting
    /// after the cursor of the previous page.
    pub fn list_dead_letters(&self, work_pool_id: Uuid, after: Option<u64>, limit: usize) -> DeadLetterPage {
        let Some(pool) = self.pools.get(&work_pool_id) else {
            return DeadLetterPage::default();
        };
        let start = after.map_or(0, |cursor| cursor.saturating_add(1));
        let mut page = pool.dead_letters.range(start..);
        let dead_letters: Vec<DeadLetter> = page
            .by_ref()
            .take(limit)
            .filter_map(|(_, message_id)| pool.records.get(message_id)?.dead_letter())
            .collect();
        let next_cursor = match page.next() {
            Some(_) if limit > 0 => pool
                .dead_letters
                .range(start..)
                .nth(limit - 1)
                .map(|(sequence, _)| *sequence),
            _ => None,
        };
        DeadLetterPage {
            dead_letters,
            next_cursor,
        }
    }

    /// Returns the earliest lease deadline of any pool, for the leader's
    /// sweeper to know when a lease is due.
    pub fn next_lease_expiry(&self) -> Option<Timestamp> {
        self.leases.first().map(|(lease_expires_at, _, _)| *lease_expires_at)
    }

    /// Returns the latest `now` applied; a leader never stamps an earlier time.
    pub fn latest_time(&self) -> Timestamp {
        self.latest_time
    }

    #[cfg(debug_assertions)]
    fn record_count(&self) -> usize {
        self.pools.values().map(|pool| pool.records.len()).sum()
    }

    /// Encodes the whole state with bincode behind [`SNAPSHOT_FORMAT_VERSION`].
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut bytes = vec![SNAPSHOT_FORMAT_VERSION];
        bincode::serialize_into(&mut bytes, self)
            .expect("the queue state contains no type that bincode cannot encode");
        bytes
    }

    /// Decodes a snapshot written by [`QueueState::to_snapshot`] and checks
    /// its invariants.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((&SNAPSHOT_FORMAT_VERSION, body)) => Ok(bincode::deserialize(body)?),
            Some((&version, _)) => Err(DecodeError::UnsupportedVersion {
                version,
                supported: SNAPSHOT_FORMAT_VERSION,
            }),
            None => Err(DecodeError::Empty),
        }
    }

    // Helpers shared by the operations.

    fn pool_mut(&mut self, work_pool_id: Uuid) -> &mut Pool {
        self.pools.entry(work_pool_id).or_default()
    }

    /// Advances the pool's wakeup sequence by one.
    fn advance_wakeup(&mut self, work_pool_id: Uuid, events: &mut Vec<Event>) -> crate::model::Wakeup {
        let pool = self.pool_mut(work_pool_id);
        pool.wakeup_sequence += 1;
        let sequence = pool.wakeup_sequence;
        events.push(Event::WakeupAdvanced {
            work_pool_id,
            sequence,
        });
        crate::model::Wakeup {
            work_pool_id,
            sequence,
        }
    }

    /// Takes a live lease off an active record, leaving it unreserved but not
    /// yet visible. Returns the lease that was live.
    fn take_lease(&mut self, work_pool_id: Uuid, message_id: Uuid) -> Option<pool::Lease> {
        let pool = self.pools.get_mut(&work_pool_id)?;
        let record = pool.records.get_mut(&message_id)?;
        let RecordState::Active { lease } = &mut record.state else {
            return None;
        };
        let lease = lease.take()?;
        pool.leases.remove(&(lease.lease_expires_at, message_id));
        self.leases
            .remove(&(lease.lease_expires_at, work_pool_id, message_id));
        Some(lease)
    }

    /// Moves an active message to the dead-letter queue, with the lease that
    /// was live at the move if any.
    fn move_to_dead_letter(
        &mut self,
        now: Timestamp,
        work_pool_id: Uuid,
        message_id: Uuid,
        release_reason: Option<&str>,
        source: DeadLetterSource,
        events: &mut Vec<Event>,
    ) -> DeadLetter {
        let lease = self.take_lease(work_pool_id, message_id);
        let move_sequence = self.next_move_sequence;
        self.next_move_sequence += 1;

        let pool = self.pool_mut(work_pool_id);
        let record = pool
            .records
            .get_mut(&message_id)
            .expect("only a stored message is moved to the dead-letter queue");
        assert!(record.is_active(), "message {message_id} is not active");
        if lease.is_none() {
            pool.visible.remove(record.enqueue_sequence, &record.message);
        }

        record.state = RecordState::DeadLettered(DeadLetterState {
            reason: crate::model::reason::MAX_DELIVERY_ATTEMPTS_REACHED.to_string(),
            final_delivery_count: record.message.delivery_count,
            moved_at: now,
            reservation_token: lease.as_ref().map(|lease| lease.reservation_token.clone()),
            lease_expires_at: lease.as_ref().map(|lease| lease.lease_expires_at),
            release_reason: release_reason.map(str::to_string),
            move_sequence,
        });
        pool.active_count -= 1;
        pool.dead_letters.insert(move_sequence, message_id);

        let dead_letter = record
            .dead_letter()
            .expect("the record was just dead-lettered");
        events.push(Event::DeadLettered {
            dead_letter: dead_letter.clone(),
            source,
        });
        dead_letter
    }

    /// Makes an active, unreserved message visible to reserve.
    fn make_visible(&mut self, work_pool_id: Uuid, message_id: Uuid) {
        let pool = self.pool_mut(work_pool_id);
        let record: &Record = &pool.records[&message_id];
        assert!(record.lease().is_none(), "a reserved message cannot be visible");
        pool.visible.insert(record.enqueue_sequence, &record.message);
    }
}
