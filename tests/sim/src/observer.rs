//! What the simulation saw of each node's log and state, kept for the
//! invariant checks.
//!
//! Every observation is a digest with the node and the source that produced
//! it, grouped by log index, so a check only has to look for an index with
//! two different digests.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::sync::Mutex;

use raftq_raft::types::{Entry, LogId};
use serde::Serialize;

/// Where an observation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// AppendEntries requests of a leader: an entry it sent in its term is
    /// committed once a later request of that term has a `leader_commit` at
    /// or above the entry's index.
    LeaderAppend,
    /// The node's sled log or snapshot read back after a stop, replayed from
    /// the snapshot up to the node's committed index.
    DurableLog,
    /// The node's applied state in memory at the end of a run.
    LiveState,
}

/// One node's view, with the source that produced it.
pub type Witness = (u64, Source);

/// Witnesses grouped by the value they saw.
pub type SeenValues<K> = BTreeMap<K, BTreeSet<Witness>>;

/// Everything observed during one run. Each map goes from a log index (or a
/// log id) to the values seen there and who saw them.
#[derive(Debug, Default)]
pub struct Observations {
    /// Committed entries: index to (log id, payload digest).
    pub committed: BTreeMap<u64, SeenValues<(LogId, u64)>>,
    /// Every entry seen anywhere, committed or not: log id to payload digest.
    pub entries: BTreeMap<LogId, SeenValues<u64>>,
    /// Applied states: index to the digest of `QueueState::to_snapshot()`.
    pub states: BTreeMap<u64, SeenValues<u64>>,
    /// Apply outputs of normal entries: index to the digest of the output.
    pub responses: BTreeMap<u64, SeenValues<u64>>,
}

impl Observations {
    pub fn record_committed(&mut self, witness: Witness, log_id: LogId, payload_digest: u64) {
        insert(
            self.committed.entry(log_id.index).or_default(),
            (log_id, payload_digest),
            witness,
        );
    }

    pub fn record_entry(&mut self, witness: Witness, log_id: LogId, payload_digest: u64) {
        insert(
            self.entries.entry(log_id).or_default(),
            payload_digest,
            witness,
        );
    }

    pub fn record_state(&mut self, witness: Witness, index: u64, state_digest: u64) {
        insert(self.states.entry(index).or_default(), state_digest, witness);
    }

    pub fn record_response(&mut self, witness: Witness, index: u64, response_digest: u64) {
        insert(
            self.responses.entry(index).or_default(),
            response_digest,
            witness,
        );
    }
}

/// Keeps at most this many witnesses per value. One is enough to name a side
/// of a disagreement, and the cap bounds memory on long runs.
const MAX_WITNESSES: usize = 4;

fn insert<K: Ord>(values: &mut SeenValues<K>, value: K, witness: Witness) {
    let witnesses = values.entry(value).or_default();
    if witnesses.len() < MAX_WITNESSES {
        witnesses.insert(witness);
    }
}

/// Entries one leader sent in one term and has not yet reported committed:
/// index to (log id, payload digest). The map holding these is keyed by
/// leader id and term.
type SentEntries = BTreeMap<u64, (LogId, u64)>;

/// Observations shared by the network, the cluster and the final checks.
#[derive(Debug, Default)]
pub struct Observer {
    observations: Mutex<Observations>,
    uncommitted: Mutex<BTreeMap<(u64, u64), SentEntries>>,
}

impl Observer {
    /// Runs `record` on the observations under the lock.
    pub fn with<T>(&self, record: impl FnOnce(&mut Observations) -> T) -> T {
        let mut observations = self
            .observations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        record(&mut observations)
    }

    /// Records the entries of an AppendEntries request that `leader_id` sent
    /// in `term`, and marks committed every entry it sent in that term up to
    /// `leader_commit`.
    ///
    /// A leader never rewrites its own log during its term, so an entry it
    /// sent earlier in the term is still its entry at that index when a
    /// later request reports the index committed.
    pub fn record_append(
        &self,
        leader_id: u64,
        term: u64,
        entries: &[Entry],
        leader_commit: Option<LogId>,
    ) {
        let witness = (leader_id, Source::LeaderAppend);
        let newly_committed = {
            let mut uncommitted = self
                .uncommitted
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let sent = uncommitted.entry((leader_id, term)).or_default();
            for entry in entries {
                sent.insert(entry.log_id.index, (entry.log_id, payload_digest(entry)));
            }
            match leader_commit {
                Some(committed) => {
                    let still_uncommitted = sent.split_off(&(committed.index + 1));
                    std::mem::replace(sent, still_uncommitted)
                }
                None => BTreeMap::new(),
            }
        };

        self.with(|observations| {
            for entry in entries {
                observations.record_entry(witness, entry.log_id, payload_digest(entry));
            }
            for (log_id, payload_digest) in newly_committed.into_values() {
                observations.record_committed(witness, log_id, payload_digest);
            }
        });
    }
}

/// Returns a digest of an entry's payload. Two nodes with the same entry
/// compute the same digest within one process.
pub fn payload_digest(entry: &Entry) -> u64 {
    value_digest(&entry.payload)
}

/// Returns a digest of the bincode encoding of `value`.
pub fn value_digest<T: Serialize>(value: &T) -> u64 {
    match bincode::serialize(value) {
        Ok(bytes) => digest(&bytes),
        // Entries and outputs are plain serde types that bincode always
        // encodes, so this arm only guards against a future type change.
        Err(error) => {
            tracing::error!(%error, "failed to encode a value for its digest");
            0
        }
    }
}

/// Returns a 64-bit digest of `bytes` (SipHash with fixed keys, so stable
/// within one build).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}
