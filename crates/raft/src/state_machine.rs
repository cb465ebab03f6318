//! Openraft's state machine storage: the queue state in memory, rebuilt from
//! the latest snapshot plus the log.
//!
//! Apply does not persist anything. Durability comes from the log (every
//! committed entry is in a majority's flushed log) and from the snapshot file,
//! which openraft builds every `snapshot_every_entries` applied entries before
//! it purges the log behind it. On start the node loads the snapshot and
//! openraft re-applies the log from the snapshot's last log id.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use raftq_state_machine::{Event, QueueState};
use uuid::Uuid;

use crate::snapshot_file::{SnapshotDir, SnapshotFileError};
use crate::types::{
    Entry, EntryResponse, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::wakeup::WakeupHub;

/// The applied state of one node.
#[derive(Default)]
pub struct AppliedState {
    pub queue: QueueState,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

/// The state shared by the state machine storage and the node's readers.
pub(crate) struct SharedState {
    applied: RwLock<AppliedState>,
    wakeups: WakeupHub,
    snapshots: SnapshotDir,
    /// Counts snapshot builds in this process, to keep snapshot ids unique.
    builds: AtomicU64,
}

impl SharedState {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // A panic inside `QueueState::apply` is a bug that openraft reports as
        // fatal. Readers may still look at the last state.
        self.applied
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.applied
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns a receiver of the pool's applied wakeup sequence. See
    /// [`WakeupHub`] for why it never misses one.
    pub(crate) fn subscribe_wakeups(
        &self,
        work_pool_id: Uuid,
    ) -> tokio::sync::watch::Receiver<u64> {
        self.wakeups.subscribe(work_pool_id, || {
            self.read().queue.wakeup_sequence(work_pool_id)
        })
    }

    fn publish_all_wakeups(&self) {
        let sequences: Vec<(Uuid, u64)> = self.read().queue.wakeup_sequences().collect();
        self.wakeups.publish_all(sequences);
    }
}

/// Openraft's state machine storage. Clones share one state.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<SharedState>,
}

impl StateMachineStore {
    /// Opens the snapshot directory and loads the latest snapshot, if any.
    pub fn open(snapshots: SnapshotDir) -> Result<Self, StateMachineOpenError> {
        let mut applied = AppliedState::default();
        if let Some((meta, state)) = snapshots.load()? {
            applied.queue = decode_state(&state).map_err(StateMachineOpenError::InvalidSnapshot)?;
            applied.last_applied = meta.last_log_id;
            applied.last_membership = meta.last_membership;
            tracing::info!(
                last_log_id = ?applied.last_applied,
                snapshot_id = %meta.snapshot_id,
                "loaded the state machine snapshot"
            );
        }

        let shared = Arc::new(SharedState {
            applied: RwLock::new(applied),
            wakeups: WakeupHub::default(),
            snapshots,
            builds: AtomicU64::new(0),
        });
        Ok(StateMachineStore { shared })
    }

    pub(crate) fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }
}

/// Failure to load the state machine on start.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineOpenError {
    #[error(transparent)]
    SnapshotFile(#[from] SnapshotFileError),

    #[error("invalid queue state in the snapshot file: {0}")]
    InvalidSnapshot(String),
}

fn decode_state(bytes: &[u8]) -> Result<QueueState, String> {
    let queue = QueueState::from_snapshot(bytes).map_err(|error| error.to_string())?;
    queue.validate()?;
    Ok(queue)
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<EntryResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut wakeups: HashMap<Uuid, u64> = HashMap::new();

        {
            let mut applied = self.shared.write();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Membership(membership) => {
                        applied.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        None
                    }
                    EntryPayload::Normal(command) => {
                        let output = applied.queue.apply(&command);
                        record_events(entry.log_id, &output.events, &mut wakeups);
                        Some(output)
                    }
                };
                responses.push(response);
            }
        }

        // Published only after the write lock is released: a subscriber reads
        // the state under the hub lock, so holding both here could deadlock.
        for (work_pool_id, sequence) in wakeups {
            self.shared.wakeups.publish(work_pool_id, sequence);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let state_bytes = snapshot.into_inner();
        let queue = decode_state(&state_bytes).map_err(|error| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(error))
        })?;

        save_snapshot(&self.shared, meta.clone(), state_bytes).await?;
        {
            let mut applied = self.shared.write();
            applied.queue = queue;
            applied.last_applied = meta.last_log_id;
            applied.last_membership = meta.last_membership.clone();
        }
        self.shared.publish_all_wakeups();

        tracing::info!(
            last_log_id = ?meta.last_log_id,
            snapshot_id = %meta.snapshot_id,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let shared = self.shared.clone();
        let loaded = tokio::task::spawn_blocking(move || shared.snapshots.load())
            .await
            .map_err(|error| StorageIOError::read_snapshot(None, &error))?
            .map_err(|error| StorageIOError::read_snapshot(None, &error))?;
        Ok(loaded.map(|(meta, state)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(state)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // NOTE: encoding runs under the read lock, so applies wait for it. It
        // costs one pass over the state per `snapshot_every_entries` entries.
        let (meta, state_bytes) = {
            let applied = self.shared.read();
            let build = self.shared.builds.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match applied.last_applied {
                Some(log_id) => format!(
                    "{}-{}-{}-{build}",
                    log_id.leader_id.term, log_id.leader_id.node_id, log_id.index
                ),
                None => format!("empty-{build}"),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.last_membership.clone(),
                snapshot_id,
            };
            (meta, applied.queue.to_snapshot())
        };

        save_snapshot(&self.shared, meta.clone(), state_bytes.clone()).await?;
        tracing::info!(last_log_id = ?meta.last_log_id, snapshot_id = %meta.snapshot_id, "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(state_bytes)),
        })
    }
}

async fn save_snapshot(
    shared: &Arc<SharedState>,
    meta: SnapshotMeta,
    state_bytes: Vec<u8>,
) -> Result<(), StorageError> {
    let shared = shared.clone();
    let signature = meta.signature();
    let written = tokio::task::spawn_blocking(move || shared.snapshots.save(&meta, &state_bytes))
        .await
        .map_err(|error| StorageIOError::write_snapshot(Some(signature.clone()), &error))?
        .map_err(|error| StorageIOError::write_snapshot(Some(signature.clone()), &error))?;
    if !written {
        tracing::debug!(snapshot = ?signature, "kept the newer snapshot already on disk");
    }
    Ok(())
}

/// Collects the latest wakeup sequence per pool and logs dead-letter moves.
fn record_events(log_id: LogId, events: &[Event], wakeups: &mut HashMap<Uuid, u64>) {
    for event in events {
        match event {
            Event::WakeupAdvanced {
                work_pool_id,
                sequence,
            } => {
                let latest = wakeups.entry(*work_pool_id).or_default();
                *latest = (*latest).max(*sequence);
            }
            Event::DeadLettered {
                dead_letter,
                source,
            } => {
                // The node that served the write logs the full warning. Every
                // node, and every replay after a restart, applies the entry,
                // so the line here stays at debug.
                tracing::debug!(
                    log_index = log_id.index,
                    pool = %dead_letter.message.work_pool_id,
                    message_id = %dead_letter.message.message_id,
                    source = source.as_str(),
                    "message moved to the dead-letter queue"
                );
            }
            Event::LeaseExpiredRedelivered { .. } | Event::LeaseExpiredDeadLettered { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::{CommittedLeaderId, Membership};
    use raftq_state_machine::{Command, Operation, Policy, Timestamp};

    use super::*;

    fn open_store(dir: &std::path::Path) -> StateMachineStore {
        StateMachineStore::open(SnapshotDir::open(dir.to_path_buf()).unwrap()).unwrap()
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn wake_entry(index: u64, work_pool_id: Uuid) -> Entry {
        let command = Command {
            now: Timestamp::from_micros(index as i64),
            request_id: None,
            policy: Policy::default(),
            operation: Operation::WakeDispatchers { work_pool_id },
        };
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(command),
        }
    }

    #[tokio::test]
    async fn apply_returns_output_only_for_commands() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_store(dir.path());
        let pool = Uuid::new_v4();
        let membership = Membership::new(vec![BTreeSet::from([1])], None);

        let responses = store
            .apply([
                Entry {
                    log_id: log_id(1),
                    payload: EntryPayload::Blank,
                },
                Entry {
                    log_id: log_id(2),
                    payload: EntryPayload::Membership(membership.clone()),
                },
                wake_entry(3, pool),
            ])
            .await
            .unwrap();

        assert_eq!(responses.len(), 3);
        assert!(responses[0].is_none());
        assert!(responses[1].is_none());
        assert_eq!(responses[2].as_ref().unwrap().events.len(), 1);
        let (last_applied, stored_membership) = store.applied_state().await.unwrap();
        assert_eq!(last_applied, Some(log_id(3)));
        assert_eq!(stored_membership.membership(), &membership);
    }

    #[tokio::test]
    async fn snapshot_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Uuid::new_v4();
        let mut store = open_store(dir.path());
        store
            .apply([wake_entry(1, pool), wake_entry(2, pool)])
            .await
            .unwrap();

        let snapshot = store.build_snapshot().await.unwrap();
        drop(store);
        let mut reopened = open_store(dir.path());

        let (last_applied, _) = reopened.applied_state().await.unwrap();
        assert_eq!(last_applied, Some(log_id(2)));
        assert_eq!(reopened.shared.read().queue.wakeup_sequence(pool), 2);
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
    }

    #[tokio::test]
    async fn install_snapshot_publishes_wakeups() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Uuid::new_v4();
        let mut leader = open_store(&dir.path().join("leader"));
        leader
            .apply((1..=4).map(|index| wake_entry(index, pool)))
            .await
            .unwrap();
        let snapshot = leader.build_snapshot().await.unwrap();

        let mut follower = open_store(&dir.path().join("follower"));
        let receiver = follower.shared.subscribe_wakeups(pool);
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();

        assert_eq!(*receiver.borrow(), 4);
        let (last_applied, _) = follower.applied_state().await.unwrap();
        assert_eq!(last_applied, Some(log_id(4)));
    }

    #[tokio::test]
    async fn install_snapshot_rejects_corrupt_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_store(dir.path());
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(9)),
            last_membership: StoredMembership::default(),
            snapshot_id: "corrupt".to_string(),
        };

        let result = store
            .install_snapshot(&meta, Box::new(Cursor::new(vec![1, 2, 3])))
            .await;

        assert!(result.is_err());
        let (last_applied, _) = store.applied_state().await.unwrap();
        assert_eq!(last_applied, None);
    }

    /// A subscription made while the pool's only wakeup is being applied
    /// still ends at that wakeup: either the state it reads contains it or the
    /// publish reaches its channel. One subscriber per pool, so no channel
    /// made by another subscriber can hide a missed publish.
    #[test]
    fn racing_subscribers_miss_no_wakeup() {
        const POOLS: usize = 2_000;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pools: Vec<Uuid> = (0..POOLS).map(|_| Uuid::new_v4()).collect();
        let mut store = open_store(dir.path());
        let shared = store.shared();

        let receivers = runtime.block_on(async move {
            let applied_pools = pools.clone();
            let applier = tokio::spawn(async move {
                for (index, pool) in applied_pools.iter().enumerate() {
                    store
                        .apply([wake_entry(index as u64 + 1, *pool)])
                        .await
                        .unwrap();
                }
            });

            let subscriber = tokio::spawn(async move {
                pools
                    .into_iter()
                    .map(|pool| (pool, shared.subscribe_wakeups(pool)))
                    .collect::<Vec<_>>()
            });

            applier.await.unwrap();
            subscriber.await.unwrap()
        });

        let missed: Vec<Uuid> = receivers
            .iter()
            .filter(|(_, receiver)| *receiver.borrow() != 1)
            .map(|(pool, _)| *pool)
            .collect();
        assert!(
            missed.is_empty(),
            "{} of {POOLS} subscribers missed their wakeup",
            missed.len()
        );
    }
}
