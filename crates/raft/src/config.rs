//! The settings of one node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use openraft::SnapshotPolicy;

use crate::types::NodeInfo;

/// The settings of one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    /// Holds `raft/` (the sled log) and `snapshots/`.
    pub data_dir: PathBuf,
    /// Listen address of the peer gRPC service. Port 0 picks a free port,
    /// which [`crate::RaftNode::peer_addr`] then returns.
    pub peer_listen: SocketAddr,
    /// The addresses that other nodes and clients use for this node.
    pub advertise: NodeInfo,
    /// Applied entries between two snapshots.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so that a follower that
    /// lags by less catches up from the log instead of a snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Timeout of one snapshot chunk sent to a follower, install included.
    pub install_snapshot_timeout_ms: u64,
    /// Timeout of a TCP connect to a peer.
    pub peer_connect_timeout_ms: u64,
    /// How long `write` and `read_linearizable` wait for a quorum before
    /// returning `Unavailable`.
    pub request_timeout_ms: u64,
    /// How long a membership change, including a learner's catch-up, may take.
    pub membership_timeout_ms: u64,
}

impl NodeConfig {
    pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 10_000;
    pub const DEFAULT_MAX_IN_SNAPSHOT_LOG_TO_KEEP: u64 = 1_000;
    pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
    pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 1_000;
    pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 2_000;
    pub const DEFAULT_INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;
    pub const DEFAULT_PEER_CONNECT_TIMEOUT_MS: u64 = 1_000;
    pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
    pub const DEFAULT_MEMBERSHIP_TIMEOUT_MS: u64 = 60_000;

    /// Returns a configuration with the default timings.
    pub fn new(
        node_id: u64,
        data_dir: PathBuf,
        peer_listen: SocketAddr,
        advertise: NodeInfo,
    ) -> Self {
        NodeConfig {
            node_id,
            data_dir,
            peer_listen,
            advertise,
            snapshot_every_entries: Self::DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            max_in_snapshot_log_to_keep: Self::DEFAULT_MAX_IN_SNAPSHOT_LOG_TO_KEEP,
            heartbeat_interval_ms: Self::DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: Self::DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: Self::DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            install_snapshot_timeout_ms: Self::DEFAULT_INSTALL_SNAPSHOT_TIMEOUT_MS,
            peer_connect_timeout_ms: Self::DEFAULT_PEER_CONNECT_TIMEOUT_MS,
            request_timeout_ms: Self::DEFAULT_REQUEST_TIMEOUT_MS,
            membership_timeout_ms: Self::DEFAULT_MEMBERSHIP_TIMEOUT_MS,
        }
    }

    pub(crate) fn raft_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }

    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn membership_timeout(&self) -> Duration {
        Duration::from_millis(self.membership_timeout_ms)
    }

    /// Builds and validates openraft's configuration.
    pub(crate) fn openraft_config(&self) -> Result<openraft::Config, openraft::ConfigError> {
        let config = openraft::Config {
            cluster_name: "raftq".to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            ..openraft::Config::default()
        };
        config.validate()
    }
}
