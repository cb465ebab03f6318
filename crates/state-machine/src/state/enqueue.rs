//! Idempotent enqueue and the pruning of acked tombstones.

use uuid::Uuid;

use super::pool::{Record, RecordState};
use super::QueueState;
use crate::command::{Enqueue, Event, Policy, Response};
use crate::error::CommandError;
use crate::model::Message;
use crate::time::Timestamp;
use crate::validation::canonical_json_object;

impl QueueState {
    pub(super) fn enqueue(
        &mut self,
        now: Timestamp,
        policy: &Policy,
        enqueue: &Enqueue,
        events: &mut Vec<Event>,
    ) -> Response {
        if let Some(retention_us) = policy.completed_retention_us {
            self.prune_tombstones(now, retention_us);
        }

        match self.find_existing(enqueue) {
            Err(error) => return Response::Rejected(error),
            Ok(Some(existing_id)) => {
                let pool = &self.pools[&enqueue.work_pool_id];
                let record = &pool.records[&existing_id];
                let message = record.message.clone();

                // A visible duplicate may be a retry after a missed wakeup, so
                // it wakes dispatchers again. Reserved, acked and dead messages
                // are not work anyone can take, so they do not.
                let visible = record.is_active() && record.lease().is_none();
                if visible {
                    self.advance_wakeup(enqueue.work_pool_id, events);
                }
                return Response::Enqueued {
                    message,
                    duplicate: true,
                };
            }
            Ok(None) => {}
        }

        // Validation already proved both documents are objects.
        let target_json = canonical_json_object(&enqueue.target_json)
            .expect("target_json was validated before apply");
        let data_json = match &enqueue.data_json {
            Some(data_json) => {
                canonical_json_object(data_json).expect("data_json was validated before apply")
            }
            None => "{}".to_string(),
        };
        let message = Message {
            message_id: enqueue.message_id,
            idempotency_key: enqueue.idempotency_key.clone(),
            work_pool_id: enqueue.work_pool_id,
            work_queue_id: enqueue.work_queue_id,
            kind: enqueue.kind.clone(),
            target_json,
            data_json,
            created_at: now,
            updated_at: now,
            delivery_count: 0,
        };

        let enqueue_sequence = self.next_enqueue_sequence;
        self.next_enqueue_sequence += 1;
        let pool = self.pool_mut(enqueue.work_pool_id);
        pool.idempotency_keys
            .insert(enqueue.idempotency_key.clone(), enqueue.message_id);
        pool.records.insert(
            enqueue.message_id,
            Record {
                message: message.clone(),
                enqueue_sequence,
                state: RecordState::Active { lease: None },
            },
        );
        pool.active_count += 1;
        self.make_visible(enqueue.work_pool_id, enqueue.message_id);
        self.advance_wakeup(enqueue.work_pool_id, events);

        Response::Enqueued {
            message,
            duplicate: false,
        }
    }

    /// Finds the message an enqueue repeats: first by message id, then by
    /// idempotency key. Rejects a message id held by another key.
    fn find_existing(&self, enqueue: &Enqueue) -> Result<Option<Uuid>, CommandError> {
        let Some(pool) = self.pools.get(&enqueue.work_pool_id) else {
            return Ok(None);
        };

        if let Some(record) = pool.records.get(&enqueue.message_id) {
            if record.message.idempotency_key != enqueue.idempotency_key {
                return Err(CommandError::MessageIdTaken {
                    message_id: enqueue.message_id,
                });
            }
            return Ok(Some(enqueue.message_id));
        }

        Ok(pool.idempotency_keys.get(&enqueue.idempotency_key).copied())
    }

    /// Deletes the tombstones acked at or before `now - retention_us`, which
    /// frees their message ids and idempotency keys.
    pub(super) fn prune_tombstones(&mut self, now: Timestamp, retention_us: i64) {
        while let Some(&(completed_at, work_pool_id, message_id)) = self.tombstones.first() {
            if completed_at.saturating_add_micros(retention_us) > now {
                break;
            }
            self.tombstones.pop_first();

            let pool = self.pool_mut(work_pool_id);
            let record = pool
                .records
                .remove(&message_id)
                .expect("every tombstone index entry has a record");
            assert!(
                matches!(record.state, RecordState::Acked { .. }),
                "tombstone index entry {message_id} is not acked"
            );
            pool.tombstone_count -= 1;
            if pool.idempotency_keys.get(&record.message.idempotency_key) == Some(&message_id) {
                pool.idempotency_keys.remove(&record.message.idempotency_key);
            }
        }
    }
}
