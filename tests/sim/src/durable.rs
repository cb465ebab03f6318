//! What a stopped node made durable: its sled log and its snapshot file,
//! read back and replayed through the state machine.
//!
//! The paths follow `NodeConfig::data_dir`: the sled log is in `raft/` and
//! the snapshot in `snapshots/`.

use std::path::Path;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::{EntryPayload, RaftLogReader};
use raftq_raft::log_store::LogStore;
use raftq_raft::snapshot_file::SnapshotDir;
use raftq_raft::types::{Entry, LogId};
use raftq_state_machine::QueueState;

use crate::observer::{digest, payload_digest, value_digest, Observations, Source};

/// A stopped node's log and snapshot.
#[derive(Debug)]
pub struct DurableLog {
    pub node_id: u64,
    /// The last log id and the state bytes of the snapshot file.
    pub snapshot: Option<(Option<LogId>, Vec<u8>)>,
    /// The committed log id the node stored.
    pub committed: Option<LogId>,
    /// Every entry in the log, purged ones excluded, in index order.
    pub entries: Vec<Entry>,
}

/// Failure to read or replay a stopped node's storage.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error(
        "node {node_id}: failed to open the sled log at {path} within {waited_ms} ms: {source}"
    )]
    Open {
        node_id: u64,
        path: String,
        waited_ms: u128,
        source: sled::Error,
    },

    #[error("node {node_id}: failed to read the log: {reason}")]
    Read { node_id: u64, reason: String },

    #[error("node {node_id}: the log has no entry {index}, which the replay from the snapshot at {snapshot_index:?} needs")]
    Gap {
        node_id: u64,
        index: u64,
        snapshot_index: Option<u64>,
    },

    #[error("node {node_id}: invalid queue state in the snapshot at {log_id:?}: {reason}")]
    InvalidSnapshot {
        node_id: u64,
        log_id: Option<LogId>,
        reason: String,
    },
}

impl DurableLog {
    /// Reads the log and the snapshot of a stopped node. The previous
    /// instance's background tasks may hold the sled lock for a moment after
    /// `shutdown`, so the open is retried until `wait` has passed.
    pub async fn read(node_id: u64, data_dir: &Path, wait: Duration) -> Result<Self, DurableError> {
        let raft_dir = data_dir.join("raft");
        let started = tokio::time::Instant::now();
        let db = loop {
            match sled::Config::new().path(&raft_dir).open() {
                Ok(db) => break db,
                Err(source) if started.elapsed() >= wait => {
                    return Err(DurableError::Open {
                        node_id,
                        path: raft_dir.display().to_string(),
                        waited_ms: started.elapsed().as_millis(),
                        source,
                    })
                }
                Err(_locked) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };

        let read_error = |reason: String| DurableError::Read { node_id, reason };
        let mut log_store = LogStore::open(&db).map_err(|error| read_error(error.to_string()))?;
        let log_state = log_store
            .get_log_state()
            .await
            .map_err(|error| read_error(error.to_string()))?;
        let committed = log_store
            .read_committed()
            .await
            .map_err(|error| read_error(error.to_string()))?;
        let first = log_state
            .last_purged_log_id
            .map_or(0, |log_id| log_id.index + 1);
        let entries = match log_state.last_log_id {
            Some(last) if last.index >= first => log_store
                .try_get_log_entries(first..=last.index)
                .await
                .map_err(|error| read_error(error.to_string()))?,
            _ => Vec::new(),
        };
        drop(log_store);
        drop(db);

        // NOTE: `SnapshotDir::open` deletes an unfinished `snapshot.bin.tmp`.
        // A snapshot save of the stopped node that outlived `shutdown` would
        // then fail, which the node logs; the file on disk stays whole.
        let snapshots = SnapshotDir::open(data_dir.join("snapshots"))
            .map_err(|error| read_error(error.to_string()))?;
        let snapshot = snapshots
            .load()
            .map_err(|error| read_error(error.to_string()))?
            .map(|(meta, state)| (meta.last_log_id, state));

        Ok(DurableLog {
            node_id,
            snapshot,
            committed,
            entries,
        })
    }

    /// Replays the snapshot and the log up to the node's committed index, or
    /// up to `applied_hint` when that is later, since an index the node
    /// reported as applied is committed too. Records every committed entry,
    /// every state and every apply output in `observations`, and returns the
    /// state at the last replayed index.
    pub fn replay(
        &self,
        applied_hint: Option<LogId>,
        observations: &mut Observations,
    ) -> Result<(Option<LogId>, QueueState), DurableError> {
        let node_id = self.node_id;
        let witness = (node_id, Source::DurableLog);
        let snapshot_log_id = self.snapshot.as_ref().and_then(|(log_id, _)| *log_id);
        let upto = [self.committed, applied_hint, snapshot_log_id]
            .into_iter()
            .max()
            .flatten()
            .map(|log_id| log_id.index);

        for entry in &self.entries {
            observations.record_entry(witness, entry.log_id, payload_digest(entry));
        }

        let (mut state, mut applied) = match &self.snapshot {
            Some((log_id, bytes)) => {
                let state = QueueState::from_snapshot(bytes).map_err(|error| {
                    DurableError::InvalidSnapshot {
                        node_id,
                        log_id: *log_id,
                        reason: error.to_string(),
                    }
                })?;
                if let Some(log_id) = log_id {
                    observations.record_state(witness, log_id.index, digest(bytes));
                }
                (state, *log_id)
            }
            None => (QueueState::new(), None),
        };

        let Some(upto) = upto else {
            return Ok((applied, state));
        };
        let next = applied.map_or(0, |log_id| log_id.index + 1);
        let first_in_log = self.entries.first().map_or(0, |entry| entry.log_id.index);
        for index in next..=upto {
            // The log is contiguous from its first entry, so the position
            // follows from the index; the check below catches a hole.
            let entry = index
                .checked_sub(first_in_log)
                .and_then(|offset| self.entries.get(offset as usize))
                .filter(|entry| entry.log_id.index == index)
                .ok_or(DurableError::Gap {
                    node_id,
                    index,
                    snapshot_index: snapshot_log_id.map(|log_id| log_id.index),
                })?;
            observations.record_committed(witness, entry.log_id, payload_digest(entry));
            if let EntryPayload::Normal(command) = &entry.payload {
                let output = state.apply(command);
                observations.record_response(witness, index, value_digest(&output));
            }
            observations.record_state(witness, index, digest(&state.to_snapshot()));
            applied = Some(entry.log_id);
        }
        Ok((applied, state))
    }
}
