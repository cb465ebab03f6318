//! Reserve: the oldest visible message that matches the filters.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::pool::{Lease, RecordState};
use super::QueueState;
use crate::command::{DeadLetterSource, Event, Policy, Reserve};
use crate::model::Reservation;
use crate::time::Timestamp;

/// Leases a reserve expires in its pool before choosing, as the reference
/// backends do.
pub(crate) const RESERVE_EXPIRY_BATCH: usize = 100;

impl QueueState {
    pub(super) fn reserve(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        reserve: &Reserve,
        events: &mut Vec<Event>,
    ) -> Option<Reservation> {
        let work_pool_id = reserve.work_pool_id;
        self.expire_leases(now, policy, RESERVE_EXPIRY_BATCH, Some(work_pool_id), events);

        let kinds: Option<BTreeSet<String>> = reserve
            .cleanup_kinds
            .as_ref()
            .map(|kinds| kinds.iter().cloned().collect());
        let preferred: Option<BTreeSet<Uuid>> = reserve
            .preferred_work_queue_ids
            .as_ref()
            .map(|queues| queues.iter().copied().collect());

        // Queue affinity is advisory: the preferred queues first, then the
        // whole pool when fallback is allowed.
        let mut passes = vec![preferred.as_ref()];
        if preferred.is_some() && reserve.allow_fallback_to_any_queue {
            passes.push(None);
        }

        for queues in passes {
            if let Some(message_id) = self.take_oldest_deliverable(now, policy, work_pool_id, kinds.as_ref(), queues, events) {
                return Some(self.grant_reservation(now, policy, work_pool_id, message_id, &reserve.reservation_token));
            }
        }
        None
    }

    /// Returns the oldest visible message that matches and is under the
    /// maximum delivery attempts, dead-lettering the ones at the maximum on
    /// the way.
    fn take_oldest_deliverable(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        work_pool_id: Uuid,
        kinds: Option<&BTreeSet<String>>,
        queues: Option<&BTreeSet<Uuid>>,
        events: &mut Vec<Event>,
    ) -> Option<Uuid> {
        loop {
            let pool = self.pools.get(&work_pool_id)?;
            let sequence = pool.visible.oldest(kinds, queues)?;
            let message_id = pool.visible.all[&sequence];
            let delivery_count = pool.records[&message_id].message.delivery_count;

            if delivery_count < policy.max_delivery_attempts {
                return Some(message_id);
            }
            self.move_to_dead_letter(now, work_pool_id, message_id, None, DeadLetterSource::Reserve, events);
        }
    }

    fn grant_reservation(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        work_pool_id: Uuid,
        message_id: Uuid,
        reservation_token: &str,
    ) -> Reservation {
        let lease_expires_at = now.saturating_add_micros(policy.lease_us);
        let pool = self.pool_mut(work_pool_id);
        let record = pool
            .records
            .get_mut(&message_id)
            .expect("a visible message has a record");
        pool.visible.remove(record.enqueue_sequence, &record.message);

        record.message.delivery_count += 1;
        record.message.updated_at = now;
        record.state = RecordState::Active {
            lease: Some(Lease {
                reservation_token: reservation_token.to_string(),
                lease_expires_at,
            }),
        };
        pool.leases.insert((lease_expires_at, message_id));
        let message = record.message.clone();
        self.leases.insert((lease_expires_at, work_pool_id, message_id));

        Reservation {
            message,
            reservation_token: reservation_token.to_string(),
            lease_expires_at,
        }
    }
}
