//! Ack, release and renew of a reservation, and lease expiry.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::pool::RecordState;
use super::QueueState;
use crate::command::{DeadLetterSource, Event, Policy, ReservationRef};
use crate::model::{
    reason, DeadLetter, LeaseExpiryResult, Message, OperationResult, OperationStatus,
    ReservationOperation,
};
use crate::time::Timestamp;

/// The outcome of a lease that ran out.
enum LeaseOutcome {
    Redelivered(Message),
    DeadLettered(DeadLetter),
}

impl QueueState {
    pub(super) fn ack(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        reservation: &ReservationRef,
        events: &mut Vec<Event>,
    ) -> OperationResult {
        let operation = ReservationOperation::Ack;
        if let Some(rejected) = self.check_reservation(now, policy, operation, reservation, events) {
            return rejected;
        }

        let work_pool_id = reservation.work_pool_id;
        let message_id = reservation.message_id;
        self.take_lease(work_pool_id, message_id);
        let pool = self.pool_mut(work_pool_id);
        let record = pool
            .records
            .get_mut(&message_id)
            .expect("check_reservation found the record");
        record.message.updated_at = now;
        record.state = RecordState::Acked { completed_at: now };
        pool.active_count -= 1;
        pool.tombstone_count += 1;
        self.tombstones.insert((now, work_pool_id, message_id));

        OperationResult::accepted(operation, message_id)
    }

    pub(super) fn release(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        reservation: &ReservationRef,
        release_reason: &str,
        events: &mut Vec<Event>,
    ) -> OperationResult {
        let operation = ReservationOperation::Release;
        if let Some(rejected) = self.check_reservation(now, policy, operation, reservation, events) {
            return rejected;
        }

        let work_pool_id = reservation.work_pool_id;
        let message_id = reservation.message_id;
        let delivery_count = self.pools[&work_pool_id].records[&message_id]
            .message
            .delivery_count;

        if delivery_count >= policy.max_delivery_attempts {
            let dead_letter = self.move_to_dead_letter(
                now,
                work_pool_id,
                message_id,
                Some(release_reason),
                DeadLetterSource::Release,
                events,
            );
            return dead_lettered_result(operation, message_id, dead_letter);
        }

        self.take_lease(work_pool_id, message_id);
        let pool = self.pool_mut(work_pool_id);
        pool.records
            .get_mut(&message_id)
            .expect("check_reservation found the record")
            .message
            .updated_at = now;
        self.make_visible(work_pool_id, message_id);
        self.advance_wakeup(work_pool_id, events);

        OperationResult::accepted(operation, message_id)
    }

    pub(super) fn renew(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        reservation: &ReservationRef,
        events: &mut Vec<Event>,
    ) -> OperationResult {
        let operation = ReservationOperation::Renew;
        if let Some(rejected) = self.check_reservation(now, policy, operation, reservation, events) {
            return rejected;
        }

        let work_pool_id = reservation.work_pool_id;
        let message_id = reservation.message_id;
        let mut lease = self
            .take_lease(work_pool_id, message_id)
            .expect("check_reservation found a live lease");
        lease.lease_expires_at = now.saturating_add_micros(policy.lease_us);
        let lease_expires_at = lease.lease_expires_at;

        let pool = self.pool_mut(work_pool_id);
        let record = pool
            .records
            .get_mut(&message_id)
            .expect("check_reservation found the record");
        record.message.updated_at = now;
        record.state = RecordState::Active { lease: Some(lease) };
        pool.leases.insert((lease_expires_at, message_id));
        self.leases.insert((lease_expires_at, work_pool_id, message_id));

        OperationResult {
            lease_expires_at: Some(lease_expires_at),
            ..OperationResult::accepted(operation, message_id)
        }
    }

    /// Checks a reservation in the contract's order: found in this pool, a
    /// live reservation, the same token, a lease not yet over. Returns the
    /// rejection, or `None` when the operation may proceed. A lease found over
    /// is expired here, as `expire_leases` would.
    fn check_reservation(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        operation: ReservationOperation,
        reservation: &ReservationRef,
        events: &mut Vec<Event>,
    ) -> Option<OperationResult> {
        let message_id = reservation.message_id;
        let work_pool_id = reservation.work_pool_id;

        // Records are scoped by pool, so another pool's message is simply
        // not found here, and nothing about it can leak.
        let record = self
            .pools
            .get(&work_pool_id)
            .and_then(|pool| pool.records.get(&message_id))
            .filter(|record| record.is_active());
        let Some(record) = record else {
            return Some(OperationResult::rejected(
                operation,
                message_id,
                OperationStatus::NotFound,
                reason::MESSAGE_NOT_FOUND,
            ));
        };

        let Some(lease) = record.lease() else {
            return Some(OperationResult::rejected(
                operation,
                message_id,
                OperationStatus::NotCurrent,
                reason::NO_ACTIVE_RESERVATION,
            ));
        };

        if lease.reservation_token != reservation.reservation_token {
            return Some(OperationResult::rejected(
                operation,
                message_id,
                OperationStatus::InvalidToken,
                reason::RESERVATION_TOKEN_MISMATCH,
            ));
        }

        if lease.lease_expires_at > now {
            return None;
        }
        let result = match self.expire_lease(now, policy, work_pool_id, message_id, events) {
            LeaseOutcome::DeadLettered(dead_letter) => {
                dead_lettered_result(operation, message_id, dead_letter)
            }
            LeaseOutcome::Redelivered(_) => {
                self.advance_wakeup(work_pool_id, events);
                OperationResult::rejected(
                    operation,
                    message_id,
                    OperationStatus::Expired,
                    reason::LEASE_EXPIRED,
                )
            }
        };
        Some(result)
    }

    /// Expires up to `limit` leases due at `now`, earliest expiry first, then
    /// by pool and message id. Advances the wakeup sequence once for each pool
    /// with a redelivered message.
    pub(super) fn expire_leases(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        limit: usize,
        work_pool_id: Option<Uuid>,
        events: &mut Vec<Event>,
    ) -> LeaseExpiryResult {
        let due: Vec<(Uuid, Uuid)> = match work_pool_id {
            Some(work_pool_id) => match self.pools.get(&work_pool_id) {
                None => Vec::new(),
                Some(pool) => pool
                    .leases
                    .iter()
                    .take_while(|(lease_expires_at, _)| *lease_expires_at <= now)
                    .take(limit)
                    .map(|(_, message_id)| (work_pool_id, *message_id))
                    .collect(),
            },
            None => self
                .leases
                .iter()
                .take_while(|(lease_expires_at, _, _)| *lease_expires_at <= now)
                .take(limit)
                .map(|(_, work_pool_id, message_id)| (*work_pool_id, *message_id))
                .collect(),
        };

        let mut result = LeaseExpiryResult::default();
        let mut pools_to_wake = BTreeSet::new();
        for (work_pool_id, message_id) in due {
            match self.expire_lease(now, policy, work_pool_id, message_id, events) {
                LeaseOutcome::Redelivered(message) => {
                    pools_to_wake.insert(work_pool_id);
                    result.redelivered.push(message);
                }
                LeaseOutcome::DeadLettered(dead_letter) => result.dead_lettered.push(dead_letter),
            }
        }
        for work_pool_id in pools_to_wake {
            self.advance_wakeup(work_pool_id, events);
        }
        result
    }

    /// Ends one live lease: dead-letters the message at the maximum delivery
    /// attempts, otherwise makes it visible again. The caller advances the
    /// wakeup sequence.
    fn expire_lease(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        work_pool_id: Uuid,
        message_id: Uuid,
        events: &mut Vec<Event>,
    ) -> LeaseOutcome {
        let delivery_count = self.pools[&work_pool_id].records[&message_id]
            .message
            .delivery_count;

        if delivery_count >= policy.max_delivery_attempts {
            events.push(Event::LeaseExpiredDeadLettered {
                work_pool_id,
                message_id,
            });
            let dead_letter = self.move_to_dead_letter(
                now,
                work_pool_id,
                message_id,
                None,
                DeadLetterSource::LeaseExpiry,
                events,
            );
            return LeaseOutcome::DeadLettered(dead_letter);
        }

        self.take_lease(work_pool_id, message_id)
            .expect("only a live lease is expired");
        let pool = self.pool_mut(work_pool_id);
        let record = pool
            .records
            .get_mut(&message_id)
            .expect("a leased message has a record");
        record.message.updated_at = now;
        let message = record.message.clone();
        self.make_visible(work_pool_id, message_id);
        events.push(Event::LeaseExpiredRedelivered {
            message: message.clone(),
        });
        LeaseOutcome::Redelivered(message)
    }
}

fn dead_lettered_result(
    operation: ReservationOperation,
    message_id: Uuid,
    dead_letter: DeadLetter,
) -> OperationResult {
    OperationResult {
        dead_letter: Some(dead_letter),
        ..OperationResult::rejected(
            operation,
            message_id,
            OperationStatus::DeadLettered,
            reason::MAX_DELIVERY_ATTEMPTS_REACHED,
        )
    }
}
