//! The Raft log and vote on sled.
//!
//! One `sled::Db` per node, under `<data_dir>/raft`, contains four trees:
//!
//! | tree              | key                          | value                                   |
//! |-------------------|------------------------------|-----------------------------------------|
//! | `raft_log`        | log index, `u64` big-endian  | [`LOG_FORMAT_VERSION`] + bincode `Entry` |
//! | `raft_vote`       | `b"vote"`                    | [`LOG_FORMAT_VERSION`] + bincode `Vote`  |
//! | `raft_committed`  | `b"committed"`               | [`LOG_FORMAT_VERSION`] + bincode `LogId` |
//! | `raft_purged`     | `b"last_purged"`             | [`LOG_FORMAT_VERSION`] + bincode `LogId` |
//!
//! Big-endian keys make sled's byte order the index order, so a range scan
//! reads entries in log order.
//!
//! Durability: `append` calls openraft's flush callback only after
//! `flush_async` returned, and `save_vote` flushes before it returns. A flush
//! covers the whole `Db`, so it also persists any earlier truncate, purge or
//! committed id. The committed id is written without its own flush: losing it
//! only makes a restarted node wait for the leader before re-applying.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Layout version of every value in the log trees. Version 1 is bincode 1.3
/// of openraft 0.9 types.
pub const LOG_FORMAT_VERSION: u8 = 1;

const ENTRIES_TREE: &str = "raft_log";
const VOTE_TREE: &str = "raft_vote";
const COMMITTED_TREE: &str = "raft_committed";
const PURGED_TREE: &str = "raft_purged";

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

/// Openraft's log storage on sled. Clones share the same trees, which is how
/// the replication tasks get their log readers.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Trees>,
}

struct Trees {
    db: sled::Db,
    entries: sled::Tree,
    vote: sled::Tree,
    committed: sled::Tree,
    purged: sled::Tree,
}

impl LogStore {
    /// Opens (or creates) the log trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(LogStore {
            inner: Arc::new(Trees {
                db: db.clone(),
                entries: db.open_tree(ENTRIES_TREE)?,
                vote: db.open_tree(VOTE_TREE)?,
                committed: db.open_tree(COMMITTED_TREE)?,
                purged: db.open_tree(PURGED_TREE)?,
            }),
        })
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        read_value(&self.inner.purged, LAST_PURGED_KEY, "last purged log id")
            .map_err(|error| StorageIOError::read_logs(error).into())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let Some((_, bytes)) = self
            .inner
            .entries
            .last()
            .map_err(|error| read_logs_error(&error))?
        else {
            return Ok(None);
        };
        let entry: Entry = decode_value(&bytes, "log entry").map_err(read_logs_error)?;
        Ok(Some(entry.log_id))
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        self.inner.db.flush_async().await.map(|_bytes_flushed| ())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(index) => Bound::Included(index_key(*index)),
            Bound::Excluded(index) => Bound::Excluded(index_key(*index)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(index) => Bound::Included(index_key(*index)),
            Bound::Excluded(index) => Bound::Excluded(index_key(*index)),
            Bound::Unbounded => Bound::Unbounded,
        };

        let mut entries = Vec::new();
        for item in self.inner.entries.range::<[u8; 8], _>((start, end)) {
            let (_, bytes) = item.map_err(|error| read_logs_error(&error))?;
            entries.push(decode_value(&bytes, "log entry").map_err(read_logs_error)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        // With every entry purged, the last log id is the last purged one.
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode_value(vote, "vote").map_err(StorageIOError::write_vote)?;
        self.inner
            .vote
            .insert(VOTE_KEY, bytes)
            .map_err(|error| StorageIOError::write_vote(&error))?;
        self.flush()
            .await
            .map_err(|error| StorageIOError::write_vote(&error))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        read_value(&self.inner.vote, VOTE_KEY, "vote")
            .map_err(|error| StorageIOError::read_vote(error).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let result = match committed {
            Some(log_id) => {
                let bytes =
                    encode_value(&log_id, "committed log id").map_err(StorageIOError::write)?;
                self.inner
                    .committed
                    .insert(COMMITTED_KEY, bytes)
                    .map(|_| ())
            }
            None => self.inner.committed.remove(COMMITTED_KEY).map(|_| ()),
        };
        result.map_err(|error| StorageIOError::write(&error))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        read_value(&self.inner.committed, COMMITTED_KEY, "committed log id")
            .map_err(|error| StorageIOError::read(error).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode_value(&entry, "log entry")
                .map_err(|error| StorageIOError::write_log_entry(entry.log_id, error))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.inner
            .entries
            .apply_batch(batch)
            .map_err(|error| write_logs_error(&error))?;

        // The entries are readable now. They are durable only once the flush
        // returns, and only then may openraft count this node's copy.
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let io_error = std::io::Error::other(error.to_string());
                callback.log_io_completed(Err(io_error));
                Err(write_logs_error(&error))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(since = %log_id, "truncating the raft log");
        let mut batch = sled::Batch::default();
        for item in self.inner.entries.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(|error| write_logs_error(&error))?;
            batch.remove(key);
        }
        self.inner
            .entries
            .apply_batch(batch)
            .map_err(|error| write_logs_error(&error))?;
        self.flush()
            .await
            .map_err(|error| write_logs_error(&error))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(upto = %log_id, "purging the raft log");

        // The marker goes first: if the node stops between the two steps, the
        // log state still reports no entry at or below the marker as present.
        let bytes =
            encode_value(&log_id, "last purged log id").map_err(StorageIOError::write_logs)?;
        self.inner
            .purged
            .insert(LAST_PURGED_KEY, bytes)
            .map_err(|error| write_logs_error(&error))?;

        let mut batch = sled::Batch::default();
        for item in self.inner.entries.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(|error| write_logs_error(&error))?;
            batch.remove(key);
        }
        self.inner
            .entries
            .apply_batch(batch)
            .map_err(|error| write_logs_error(&error))?;
        Ok(())
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn encode_value<T: Serialize>(value: &T, value_name: &'static str) -> Result<Vec<u8>, AnyError> {
    codec::encode(value_name, LOG_FORMAT_VERSION, value).map_err(|error| AnyError::new(&error))
}

fn decode_value<T: DeserializeOwned>(
    bytes: &[u8],
    value_name: &'static str,
) -> Result<T, AnyError> {
    codec::decode(value_name, LOG_FORMAT_VERSION, bytes).map_err(|error| AnyError::new(&error))
}

fn read_value<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    value_name: &'static str,
) -> Result<Option<T>, AnyError> {
    match tree.get(key).map_err(|error| AnyError::new(&error))? {
        Some(bytes) => decode_value(&bytes, value_name).map(Some),
        None => Ok(None),
    }
}

fn read_logs_error(error: impl Into<AnyError>) -> StorageError {
    StorageIOError::read_logs(error).into()
}

fn write_logs_error(error: impl Into<AnyError>) -> StorageError {
    StorageIOError::write_logs(error).into()
}
