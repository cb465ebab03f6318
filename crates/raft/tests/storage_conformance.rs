//! Openraft's storage conformance suite against the sled log store and the
//! snapshot-backed state machine store.

use openraft::testing::{StoreBuilder, Suite};
use raftq_raft::log_store::LogStore;
use raftq_raft::snapshot_file::SnapshotDir;
use raftq_raft::state_machine::StateMachineStore;
use raftq_raft::types::StorageError;
use raftq_raft::TypeConfig;
use tempfile::TempDir;

/// Builds each store pair in a fresh temporary data directory, which lives as
/// long as the returned guard.
struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let data_dir = TempDir::new().expect("failed to create a temporary data directory");
        let db = sled::Config::new()
            .path(data_dir.path().join("raft"))
            .open()
            .expect("failed to open sled in the temporary directory");
        let log_store = LogStore::open(&db).expect("failed to open the log trees");
        let snapshots = SnapshotDir::open(data_dir.path().join("snapshots"))
            .expect("failed to open the snapshot directory");
        let state_machine =
            StateMachineStore::open(snapshots).expect("failed to open the state machine");
        Ok((data_dir, log_store, state_machine))
    }
}

#[test]
#[allow(clippy::result_large_err)] // The suite's own error type.
fn sled_storage_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(SledStoreBuilder)
}
