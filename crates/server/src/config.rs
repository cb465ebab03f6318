//! The settings of one node.

use std::net::SocketAddr;
use std::path::PathBuf;

use raftq_raft::NodeConfig;

use crate::policy::PolicyConfig;

/// Everything `raftq serve` sets. [`ServerConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub node_id: u64,
    /// Holds `raft/` (the sled log) and `snapshots/`.
    pub data_dir: PathBuf,
    /// Address of the Queue, Admin and health gRPC services; port 0 picks one.
    pub listen: SocketAddr,
    /// Address of the internal Raft peer service; port 0 picks one.
    pub peer_listen: SocketAddr,
    /// Address of the Prometheus endpoint (`GET /metrics`); `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// `host:port` that clients and other nodes use for the client services.
    /// Unset: the bound listen address, with this host's name in place of an
    /// unspecified IP such as 0.0.0.0.
    pub advertise_client: Option<String>,
    /// `host:port` that other nodes use for the peer service; unset as above.
    pub advertise_peer: Option<String>,
    pub policy: PolicyConfig,
    /// Accept `WriteOptions.now` from callers as the time of a write.
    pub accept_caller_clock: bool,
    /// Added to the wall clock when stamping, in milliseconds. Tests use it to
    /// simulate a node whose clock is off.
    pub clock_skew_ms: i64,
    /// Period of the lease sweeper in milliseconds; 0 disables it.
    pub sweep_interval_ms: u64,
    /// Leases expired per sweeper proposal.
    pub sweep_batch: u32,
    pub snapshot_every_entries: u64,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_grpc_message_bytes: usize,
    /// Concurrent requests served per client connection.
    pub concurrency_limit_per_connection: usize,
    /// Bound on a unary call, forwarding included, in milliseconds.
    /// `WaitForWakeup` and membership changes are exempt.
    pub request_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How long a shutdown waits for in-flight calls, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl ServerConfig {
    pub const DEFAULT_CLIENT_PORT: u16 = 7000;
    pub const DEFAULT_PEER_PORT: u16 = 7001;
    pub const DEFAULT_METRICS_PORT: u16 = 9100;
    pub const DEFAULT_SWEEP_INTERVAL_MS: u64 = 1_000;
    pub const DEFAULT_SWEEP_BATCH: u32 = 100;
    pub const DEFAULT_MAX_GRPC_MESSAGE_BYTES: usize = 1024 * 1024;
    pub const DEFAULT_CONCURRENCY_LIMIT_PER_CONNECTION: usize = 256;
    pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
    pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 15_000;

    /// Returns the defaults, listening on the default ports of 127.0.0.1.
    pub fn new(node_id: u64, data_dir: PathBuf) -> Self {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        ServerConfig {
            node_id,
            data_dir,
            listen: loopback(Self::DEFAULT_CLIENT_PORT),
            peer_listen: loopback(Self::DEFAULT_PEER_PORT),
            metrics_listen: Some(loopback(Self::DEFAULT_METRICS_PORT)),
            advertise_client: None,
            advertise_peer: None,
            policy: PolicyConfig::default(),
            accept_caller_clock: false,
            clock_skew_ms: 0,
            sweep_interval_ms: Self::DEFAULT_SWEEP_INTERVAL_MS,
            sweep_batch: Self::DEFAULT_SWEEP_BATCH,
            snapshot_every_entries: NodeConfig::DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            max_grpc_message_bytes: Self::DEFAULT_MAX_GRPC_MESSAGE_BYTES,
            concurrency_limit_per_connection: Self::DEFAULT_CONCURRENCY_LIMIT_PER_CONNECTION,
            request_timeout_ms: Self::DEFAULT_REQUEST_TIMEOUT_MS,
            heartbeat_interval_ms: NodeConfig::DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: NodeConfig::DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: NodeConfig::DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            shutdown_grace_ms: Self::DEFAULT_SHUTDOWN_GRACE_MS,
        }
    }

    /// Checks the settings that no later step checks.
    pub fn validate(&self) -> Result<(), String> {
        self.policy.validate()?;
        if self.sweep_batch == 0 {
            return Err("the sweep batch must be at least 1".into());
        }
        if self.max_grpc_message_bytes < 1024 {
            return Err("the maximum gRPC message size must be at least 1024 bytes".into());
        }
        if self.concurrency_limit_per_connection == 0 {
            return Err("the concurrency limit per connection must be at least 1".into());
        }
        if self.request_timeout_ms == 0 {
            return Err("the request timeout must be at least 1 ms".into());
        }
        if self.snapshot_every_entries == 0 {
            return Err("snapshot-every-entries must be at least 1".into());
        }
        Ok(())
    }
}
