//! The node's latest snapshot on disk, under `<data_dir>/snapshots`.
//!
//! The directory contains one file, `snapshot.bin`:
//! [`SNAPSHOT_FILE_FORMAT_VERSION`] followed by bincode 1.3 of the snapshot
//! meta (last log id, last membership, snapshot id) and the bytes of
//! `QueueState::to_snapshot()`, which carry their own format version.
//!
//! A save writes `snapshot.bin.tmp`, fsyncs it, renames it over
//! `snapshot.bin` and fsyncs the directory, so a crash leaves either the old
//! snapshot or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::types::{LogId, SnapshotMeta};

/// Layout version of `snapshot.bin`. Version 1 is bincode 1.3 of
/// [`SnapshotMeta`] of openraft 0.9 and the state bytes.
pub const SNAPSHOT_FILE_FORMAT_VERSION: u8 = 1;

const SNAPSHOT_FILE: &str = "snapshot.bin";
const TEMPORARY_FILE: &str = "snapshot.bin.tmp";

/// Failure to read or write the snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("snapshot file {path}: {source}")]
    Codec {
        path: PathBuf,
        #[source]
        source: CodecError,
    },
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    state: Vec<u8>,
}

/// The snapshot directory of one node.
pub struct SnapshotDir {
    dir: PathBuf,
    /// Serializes saves and stores the last log id of the file on disk, so a
    /// slow build never replaces a newer snapshot that was installed meanwhile.
    saved_last_log_id: Mutex<Option<LogId>>,
}

impl SnapshotDir {
    /// Creates the directory if needed and removes a temporary file left by a
    /// save that did not finish.
    pub fn open(dir: PathBuf) -> Result<Self, SnapshotFileError> {
        fs::create_dir_all(&dir).map_err(|source| io_error(&dir, source))?;
        let temporary = dir.join(TEMPORARY_FILE);
        match fs::remove_file(&temporary) {
            Ok(()) => {
                tracing::info!(path = %temporary.display(), "removed an unfinished snapshot file")
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error(&temporary, source)),
        }

        let snapshot_dir = SnapshotDir {
            dir,
            saved_last_log_id: Mutex::new(None),
        };
        let saved = snapshot_dir.load()?.and_then(|(meta, _)| meta.last_log_id);
        *lock(&snapshot_dir.saved_last_log_id) = saved;
        Ok(snapshot_dir)
    }

    /// Writes the snapshot atomically, unless the file on disk is already at
    /// a later log id. Returns whether the file was written.
    pub fn save(&self, meta: &SnapshotMeta, state: &[u8]) -> Result<bool, SnapshotFileError> {
        let mut saved_last_log_id = lock(&self.saved_last_log_id);
        if *saved_last_log_id > meta.last_log_id {
            return Ok(false);
        }

        let path = self.dir.join(SNAPSHOT_FILE);
        let temporary = self.dir.join(TEMPORARY_FILE);
        let file = SnapshotFile {
            meta: meta.clone(),
            state: state.to_vec(),
        };
        let bytes = codec::encode("snapshot file", SNAPSHOT_FILE_FORMAT_VERSION, &file)
            .map_err(|source| codec_error(&path, source))?;

        write_and_sync(&temporary, &bytes).map_err(|source| io_error(&temporary, source))?;
        fs::rename(&temporary, &path).map_err(|source| io_error(&path, source))?;
        // The rename is durable only once the directory entry is synced.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| io_error(&self.dir, source))?;

        *saved_last_log_id = meta.last_log_id;
        Ok(true)
    }

    /// Reads the saved snapshot: its meta and the state bytes.
    pub fn load(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, SnapshotFileError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error(&path, source)),
        };
        let file: SnapshotFile =
            codec::decode("snapshot file", SNAPSHOT_FILE_FORMAT_VERSION, &bytes)
                .map_err(|source| codec_error(&path, source))?;
        Ok(Some((file.meta, file.state)))
    }
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn io_error(path: &Path, source: io::Error) -> SnapshotFileError {
    SnapshotFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn codec_error(path: &Path, source: CodecError) -> SnapshotFileError {
    SnapshotFileError::Codec {
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded value is a plain log id, valid even after a panic.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, StoredMembership};

    use super::*;

    fn meta_at(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("test-{index}"),
        }
    }

    #[test]
    fn load_returns_saved_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().join("snapshots")).unwrap();

        assert!(snapshots.save(&meta_at(5), b"state five").unwrap());

        let reopened = SnapshotDir::open(dir.path().join("snapshots")).unwrap();
        let (meta, state) = reopened.load().unwrap().unwrap();
        assert_eq!(meta, meta_at(5));
        assert_eq!(state, b"state five");
    }

    #[test]
    fn load_of_empty_dir_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().to_path_buf()).unwrap();

        assert!(snapshots.load().unwrap().is_none());
    }

    #[test]
    fn save_keeps_newer_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().to_path_buf()).unwrap();
        snapshots.save(&meta_at(9), b"nine").unwrap();

        assert!(!snapshots.save(&meta_at(4), b"four").unwrap());

        let (meta, state) = snapshots.load().unwrap().unwrap();
        assert_eq!(meta, meta_at(9));
        assert_eq!(state, b"nine");
    }

    #[test]
    fn open_removes_unfinished_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(TEMPORARY_FILE), b"half written").unwrap();

        SnapshotDir::open(dir.path().to_path_buf()).unwrap();

        assert!(!dir.path().join(TEMPORARY_FILE).exists());
    }

    #[test]
    fn load_rejects_unknown_format_version() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SNAPSHOT_FILE), [99_u8, 0, 0]).unwrap();

        let error = SnapshotDir::open(dir.path().to_path_buf()).err().unwrap();

        assert!(matches!(
            error,
            SnapshotFileError::Codec {
                source: CodecError::UnsupportedVersion { found: 99, .. },
                ..
            }
        ));
    }
}
