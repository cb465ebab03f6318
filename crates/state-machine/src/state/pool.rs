//! One work pool's records and the indexes that keep reserve and expiry cheap.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{DeadLetter, Message};
use crate::time::Timestamp;

/// The messages of one pool, each in one of three states.
///
/// Invariant: a message id appears in exactly one record, and the record's
/// state decides which indexes list it (see `QueueState::validate`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pool {
    pub wakeup_sequence: u64,
    pub records: BTreeMap<Uuid, Record>,
    /// Idempotency key to the message that owns it, for active,
    /// dead-lettered and tombstoned messages alike.
    pub idempotency_keys: BTreeMap<String, Uuid>,
    /// Active messages without a live reservation, by enqueue sequence.
    pub visible: VisibleIndex,
    /// Live reservations of this pool by expiry, then message id.
    pub leases: BTreeSet<(Timestamp, Uuid)>,
    /// Dead letters by move sequence, the order of the dead-letter list.
    pub dead_letters: BTreeMap<u64, Uuid>,
    pub active_count: u64,
    pub tombstone_count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub message: Message,
    /// Global enqueue order; a redriven dead letter keeps its place.
    pub enqueue_sequence: u64,
    pub state: RecordState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RecordState {
    Active { lease: Option<Lease> },
    /// Acked; the record is a tombstone holding its keys until
    /// `completed_at + retention`.
    Acked { completed_at: Timestamp },
    DeadLettered(DeadLetterState),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub reservation_token: String,
    pub lease_expires_at: Timestamp,
}

/// A dead letter without its message, which the record already stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeadLetterState {
    pub reason: String,
    pub final_delivery_count: u32,
    pub moved_at: Timestamp,
    pub reservation_token: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub release_reason: Option<String>,
    pub move_sequence: u64,
}

impl Record {
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            RecordState::Active { lease } => lease.as_ref(),
            _ => None,
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, RecordState::Active { .. })
    }

    pub fn dead_letter(&self) -> Option<DeadLetter> {
        match &self.state {
            RecordState::DeadLettered(state) => Some(DeadLetter {
                message: self.message.clone(),
                reason: state.reason.clone(),
                final_delivery_count: state.final_delivery_count,
                moved_at: state.moved_at,
                reservation_token: state.reservation_token.clone(),
                lease_expires_at: state.lease_expires_at,
                release_reason: state.release_reason.clone(),
            }),
            _ => None,
        }
    }
}

/// Visible messages by enqueue sequence, also split by kind, by work queue
/// and by both, so that a filtered reserve reads only the heads of the sets
/// that match instead of scanning the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VisibleIndex {
    pub all: BTreeMap<u64, Uuid>,
    by_kind: BTreeMap<String, BTreeSet<u64>>,
    by_queue: BTreeMap<Uuid, BTreeSet<u64>>,
    by_kind_and_queue: BTreeMap<(String, Uuid), BTreeSet<u64>>,
}

impl VisibleIndex {
    pub fn insert(&mut self, sequence: u64, message: &Message) {
        let previous = self.all.insert(sequence, message.message_id);
        assert!(previous.is_none(), "enqueue sequence {sequence} is visible twice");

        self.by_kind
            .entry(message.kind.clone())
            .or_default()
            .insert(sequence);
        if let Some(queue_id) = message.work_queue_id {
            self.by_queue.entry(queue_id).or_default().insert(sequence);
            self.by_kind_and_queue
                .entry((message.kind.clone(), queue_id))
                .or_default()
                .insert(sequence);
        }
    }

    pub fn remove(&mut self, sequence: u64, message: &Message) {
        let removed = self.all.remove(&sequence);
        assert!(removed.is_some(), "enqueue sequence {sequence} is not visible");

        remove_from_set(&mut self.by_kind, &message.kind, sequence);
        if let Some(queue_id) = message.work_queue_id {
            remove_from_set(&mut self.by_queue, &queue_id, sequence);
            remove_from_set(
                &mut self.by_kind_and_queue,
                &(message.kind.clone(), queue_id),
                sequence,
            );
        }
    }

    /// Returns the oldest visible sequence that matches both filters. A
    /// filter of `None` matches everything; an empty set matches nothing.
    ///
    /// Cost: one ordered-set lookup per (kind, queue) pair of the filters,
    /// whatever the number of messages.
    pub fn oldest(
        &self,
        kinds: Option<&BTreeSet<String>>,
        queues: Option<&BTreeSet<Uuid>>,
    ) -> Option<u64> {
        match (kinds, queues) {
            (None, None) => self.all.keys().next().copied(),
            (Some(kinds), None) => min_head(kinds.iter().filter_map(|kind| self.by_kind.get(kind))),
            (None, Some(queues)) => {
                min_head(queues.iter().filter_map(|queue| self.by_queue.get(queue)))
            }
            (Some(kinds), Some(queues)) => min_head(kinds.iter().flat_map(|kind| {
                queues
                    .iter()
                    .filter_map(move |queue| self.by_kind_and_queue.get(&(kind.clone(), *queue)))
            })),
        }
    }

    /// Lists every (sequence, id) pair of each secondary index, for the
    /// invariant check.
    pub fn secondary_entries(&self) -> Vec<(&'static str, u64)> {
        let mut entries = Vec::new();
        for sequences in self.by_kind.values() {
            entries.extend(sequences.iter().map(|sequence| ("by_kind", *sequence)));
        }
        for sequences in self.by_queue.values() {
            entries.extend(sequences.iter().map(|sequence| ("by_queue", *sequence)));
        }
        for sequences in self.by_kind_and_queue.values() {
            entries.extend(
                sequences
                    .iter()
                    .map(|sequence| ("by_kind_and_queue", *sequence)),
            );
        }
        entries
    }
}

fn min_head<'a>(sets: impl Iterator<Item = &'a BTreeSet<u64>>) -> Option<u64> {
    sets.filter_map(|set| set.first().copied()).min()
}

fn remove_from_set<K: Ord>(index: &mut BTreeMap<K, BTreeSet<u64>>, key: &K, sequence: u64) {
    let Some(set) = index.get_mut(key) else {
        panic!("secondary visible index lost sequence {sequence}");
    };
    set.remove(&sequence);
    if set.is_empty() {
        index.remove(key);
    }
}
