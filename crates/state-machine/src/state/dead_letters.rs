//! Dead-letter administration: redrive and purge.

use uuid::Uuid;

use super::pool::RecordState;
use super::QueueState;
use crate::command::Event;
use crate::model::Message;
use crate::time::Timestamp;

impl QueueState {
    /// Moves one dead letter, or all of the pool's, back to active delivery
    /// with `delivery_count = 0`. A redriven message keeps its enqueue order.
    /// Advances the wakeup sequence once when anything was redriven.
    pub(super) fn redrive_dead_letters(
        &mut self,
        now: Timestamp,
        work_pool_id: Uuid,
        message_id: Option<Uuid>,
        events: &mut Vec<Event>,
    ) -> Vec<Message> {
        let targets = self.dead_letter_targets(work_pool_id, message_id);
        let mut redriven = Vec::with_capacity(targets.len());

        for (move_sequence, message_id) in targets {
            let pool = self.pool_mut(work_pool_id);
            pool.dead_letters.remove(&move_sequence);
            let record = pool
                .records
                .get_mut(&message_id)
                .expect("every dead-letter index entry has a record");
            record.message.delivery_count = 0;
            record.message.updated_at = now;
            record.state = RecordState::Active { lease: None };
            pool.active_count += 1;
            redriven.push(record.message.clone());
            self.make_visible(work_pool_id, message_id);
        }

        if !redriven.is_empty() {
            self.advance_wakeup(work_pool_id, events);
        }
        redriven
    }

    /// Deletes one dead letter, or all of the pool's, freeing their message
    /// ids and idempotency keys. Returns how many were deleted.
    pub(super) fn purge_dead_letters(&mut self, work_pool_id: Uuid, message_id: Option<Uuid>) -> u64 {
        let targets = self.dead_letter_targets(work_pool_id, message_id);
        let count = targets.len() as u64;

        for (move_sequence, message_id) in targets {
            let pool = self.pool_mut(work_pool_id);
            pool.dead_letters.remove(&move_sequence);
            let record = pool
                .records
                .remove(&message_id)
                .expect("every dead-letter index entry has a record");
            if pool.idempotency_keys.get(&record.message.idempotency_key) == Some(&message_id) {
                pool.idempotency_keys.remove(&record.message.idempotency_key);
            }
        }
        count
    }

    /// Lists the (move sequence, message id) pairs that a redrive or purge
    /// acts on, in move order.
    fn dead_letter_targets(&self, work_pool_id: Uuid, message_id: Option<Uuid>) -> Vec<(u64, Uuid)> {
        let Some(pool) = self.pools.get(&work_pool_id) else {
            return Vec::new();
        };
        match message_id {
            None => pool
                .dead_letters
                .iter()
                .map(|(sequence, message_id)| (*sequence, *message_id))
                .collect(),
            Some(message_id) => match pool.records.get(&message_id).map(|record| &record.state) {
                Some(RecordState::DeadLettered(state)) => vec![(state.move_sequence, message_id)],
                _ => Vec::new(),
            },
        }
    }
}
