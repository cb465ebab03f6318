//! The invariants of the state, checked after every apply in debug builds
//! and by the tests.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::pool::{Pool, RecordState};
use super::QueueState;
use crate::time::Timestamp;

impl QueueState {
    /// Checks that every index agrees with the records. Returns the first
    /// violation found. Cost: a scan of the whole state.
    pub fn validate(&self) -> Result<(), String> {
        let mut expected_leases = BTreeSet::new();
        let mut expected_tombstones = BTreeSet::new();

        for (work_pool_id, pool) in &self.pools {
            validate_pool(*work_pool_id, pool, self.next_enqueue_sequence, self.next_move_sequence)?;
            for (message_id, record) in &pool.records {
                match &record.state {
                    RecordState::Active { lease: Some(lease) } => {
                        expected_leases.insert((lease.lease_expires_at, *work_pool_id, *message_id));
                    }
                    RecordState::Acked { completed_at } => {
                        expected_tombstones.insert((*completed_at, *work_pool_id, *message_id));
                    }
                    _ => {}
                }
            }
        }

        if expected_leases != self.leases {
            return Err("the global lease index differs from the leased records".into());
        }
        if expected_tombstones != self.tombstones {
            return Err("the global tombstone index differs from the acked records".into());
        }
        if self.requests.len() != self.requests.time_index_len() {
            return Err("the request log and its time index differ in size".into());
        }
        Ok(())
    }
}

fn validate_pool(work_pool_id: Uuid, pool: &Pool, next_enqueue_sequence: u64, next_move_sequence: u64) -> Result<(), String> {
    let mut visible = BTreeMap::new();
    let mut leases: BTreeSet<(Timestamp, Uuid)> = BTreeSet::new();
    let mut dead_letters = BTreeMap::new();
    let mut active_count = 0;
    let mut tombstone_count = 0;

    for (message_id, record) in &pool.records {
        let message = &record.message;
        if message.message_id != *message_id || message.work_pool_id != work_pool_id {
            return Err(format!("record {message_id} is filed under the wrong id or pool"));
        }
        if record.enqueue_sequence >= next_enqueue_sequence {
            return Err(format!("record {message_id} has an enqueue sequence not yet issued"));
        }
        if pool.idempotency_keys.get(&message.idempotency_key) != Some(message_id) {
            return Err(format!("the idempotency key of {message_id} does not map to it"));
        }

        match &record.state {
            RecordState::Active { lease: None } => {
                active_count += 1;
                visible.insert(record.enqueue_sequence, *message_id);
            }
            RecordState::Active { lease: Some(lease) } => {
                active_count += 1;
                if message.delivery_count == 0 {
                    return Err(format!("reserved message {message_id} has delivery_count 0"));
                }
                leases.insert((lease.lease_expires_at, *message_id));
            }
            RecordState::Acked { .. } => tombstone_count += 1,
            RecordState::DeadLettered(state) => {
                if state.move_sequence >= next_move_sequence {
                    return Err(format!("dead letter {message_id} has a move sequence not yet issued"));
                }
                dead_letters.insert(state.move_sequence, *message_id);
            }
        }
    }

    if pool.idempotency_keys.len() != pool.records.len() {
        return Err(format!("pool {work_pool_id} maps an idempotency key to a missing record"));
    }
    if visible != pool.visible.all {
        return Err(format!("pool {work_pool_id}: the visible index differs from the unreserved records"));
    }
    for (index, sequence) in pool.visible.secondary_entries() {
        if !visible.contains_key(&sequence) {
            return Err(format!("pool {work_pool_id}: {index} lists sequence {sequence}, which is not visible"));
        }
    }
    if leases != pool.leases {
        return Err(format!("pool {work_pool_id}: the lease index differs from the leased records"));
    }
    if dead_letters != pool.dead_letters {
        return Err(format!("pool {work_pool_id}: the dead-letter index differs from the records"));
    }
    if active_count != pool.active_count || tombstone_count != pool.tombstone_count {
        return Err(format!("pool {work_pool_id}: the counters differ from the records"));
    }
    Ok(())
}
