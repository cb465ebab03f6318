//! `raftq serve`: runs one node until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result};
use clap::builder::FalseyValueParser;
use clap::{Args, ValueEnum};
use raftq_raft::NodeConfig;
use raftq_server::policy::seconds_to_micros;
use raftq_server::{PolicyConfig, ServerConfig};
use raftq_state_machine::Policy;
use tracing_subscriber::EnvFilter;

/// Every option can also be set with the environment variable named in its
/// help, `RAFTQ_<OPTION>` in upper snake case.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Node id: a positive integer, unique in the cluster. Reuse the id of a
    /// removed node only after `raftq remove` of the old one has completed.
    #[arg(long, env = "RAFTQ_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,

    /// Directory of the node's Raft log (`raft/`) and snapshots (`snapshots/`);
    /// created if missing.
    #[arg(long, env = "RAFTQ_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Address of the client gRPC services (Queue, Admin and health).
    #[arg(long, env = "RAFTQ_LISTEN", default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,

    /// Address of the internal Raft peer service, reached by the other nodes.
    #[arg(long, env = "RAFTQ_PEER_LISTEN", default_value = "127.0.0.1:7001")]
    pub peer_listen: SocketAddr,

    /// Address of the Prometheus endpoint (HTTP, `GET /metrics`).
    #[arg(long, env = "RAFTQ_METRICS_LISTEN", default_value = "127.0.0.1:9100")]
    pub metrics_listen: SocketAddr,

    /// HOST:PORT that clients and other nodes use to reach --listen. Default:
    /// the listen address, with this host's name when it listens on 0.0.0.0.
    #[arg(long, env = "RAFTQ_ADVERTISE_CLIENT", value_name = "HOST:PORT")]
    pub advertise_client: Option<String>,

    /// HOST:PORT that other nodes use to reach --peer-listen. Default as for
    /// --advertise-client.
    #[arg(long, env = "RAFTQ_ADVERTISE_PEER", value_name = "HOST:PORT")]
    pub advertise_peer: Option<String>,

    /// How often the leader looks for expired leases, in milliseconds; 0
    /// turns the lease sweeper off.
    #[arg(long, env = "RAFTQ_SWEEP_INTERVAL_MS", default_value_t = ServerConfig::DEFAULT_SWEEP_INTERVAL_MS, value_name = "MS")]
    pub sweep_interval_ms: u64,

    /// Leases expired per sweeper proposal (at least 1).
    #[arg(long, env = "RAFTQ_SWEEP_BATCH", default_value_t = ServerConfig::DEFAULT_SWEEP_BATCH, value_name = "N")]
    pub sweep_batch: u32,

    /// Default lease length of a reservation, in seconds (fractions allowed).
    #[arg(long, env = "RAFTQ_LEASE_SECONDS", default_value_t = 30.0, value_name = "S")]
    pub lease_seconds: f64,

    /// Maximum lease a caller may request, in seconds.
    #[arg(long, env = "RAFTQ_MAX_LEASE_SECONDS", default_value_t = 3600.0, value_name = "S")]
    pub max_lease_seconds: f64,

    /// Default number of committed reservations before a message moves to the
    /// dead-letter queue (1 to 1000).
    #[arg(long, env = "RAFTQ_MAX_DELIVERY_ATTEMPTS", default_value_t = Policy::DEFAULT_MAX_DELIVERY_ATTEMPTS, value_name = "N")]
    pub max_delivery_attempts: u32,

    /// How long an acked message keeps its message id and idempotency key
    /// taken, in seconds, or `keep` for as long as the cluster lives.
    #[arg(long, env = "RAFTQ_COMPLETED_RETENTION_SECONDS", default_value = "604800", value_name = "S|keep")]
    pub completed_retention_seconds: Retention,

    /// Largest kind + idempotency key + target + data of one message, in bytes.
    #[arg(long, env = "RAFTQ_MAX_MESSAGE_BYTES", default_value_t = Policy::DEFAULT_MAX_MESSAGE_BYTES, value_name = "N")]
    pub max_message_bytes: u32,

    /// How long the outcome of a write with a request id is kept for retries,
    /// in seconds.
    #[arg(long, env = "RAFTQ_REQUEST_RETENTION_SECONDS", default_value_t = 600.0, value_name = "S")]
    pub request_retention_seconds: f64,

    /// Applied log entries between two snapshots; the log before a snapshot
    /// is purged.
    #[arg(long, env = "RAFTQ_SNAPSHOT_EVERY_ENTRIES", default_value_t = NodeConfig::DEFAULT_SNAPSHOT_EVERY_ENTRIES, value_name = "N")]
    pub snapshot_every_entries: u64,

    /// Accept the caller's clock (`WriteOptions.now`) as the time of a write.
    /// Use with --sweep-interval-ms 0, since the sweeper runs on this node's
    /// clock.
    #[arg(long, env = "RAFTQ_ACCEPT_CALLER_CLOCK", value_parser = FalseyValueParser::new(), default_value_t = false)]
    pub accept_caller_clock: bool,

    /// Largest gRPC message received or sent, in bytes.
    #[arg(long, env = "RAFTQ_MAX_GRPC_MESSAGE_BYTES", default_value_t = ServerConfig::DEFAULT_MAX_GRPC_MESSAGE_BYTES, value_name = "N")]
    pub max_grpc_message_bytes: usize,

    /// Requests served at once on one client connection.
    #[arg(long, env = "RAFTQ_CONCURRENCY_LIMIT_PER_CONNECTION", default_value_t = ServerConfig::DEFAULT_CONCURRENCY_LIMIT_PER_CONNECTION, value_name = "N")]
    pub concurrency_limit_per_connection: usize,

    /// Time limit of a unary call, forwarding to the leader included, in
    /// milliseconds. WaitForWakeup and membership changes have their own.
    #[arg(long, env = "RAFTQ_REQUEST_TIMEOUT_MS", default_value_t = ServerConfig::DEFAULT_REQUEST_TIMEOUT_MS, value_name = "MS")]
    pub request_timeout_ms: u64,

    /// Interval of the leader's heartbeats, in milliseconds.
    #[arg(long, env = "RAFTQ_HEARTBEAT_INTERVAL_MS", default_value_t = NodeConfig::DEFAULT_HEARTBEAT_INTERVAL_MS, value_name = "MS")]
    pub heartbeat_interval_ms: u64,

    /// Lower bound of the randomized election timeout, in milliseconds.
    #[arg(long, env = "RAFTQ_ELECTION_TIMEOUT_MIN_MS", default_value_t = NodeConfig::DEFAULT_ELECTION_TIMEOUT_MIN_MS, value_name = "MS")]
    pub election_timeout_min_ms: u64,

    /// Upper bound of the randomized election timeout, in milliseconds.
    #[arg(long, env = "RAFTQ_ELECTION_TIMEOUT_MAX_MS", default_value_t = NodeConfig::DEFAULT_ELECTION_TIMEOUT_MAX_MS, value_name = "MS")]
    pub election_timeout_max_ms: u64,

    /// How long a shutdown waits for in-flight calls, in milliseconds.
    #[arg(long, env = "RAFTQ_SHUTDOWN_GRACE_MS", default_value_t = ServerConfig::DEFAULT_SHUTDOWN_GRACE_MS, value_name = "MS")]
    pub shutdown_grace_ms: u64,

    /// Log line format on stderr. The level comes from RUST_LOG (default info).
    #[arg(long, env = "RAFTQ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Testing only: milliseconds added to this node's clock when it stamps
    /// commands, to simulate clock skew between nodes.
    #[arg(long, env = "RAFTQ_CLOCK_SKEW_MS", default_value_t = 0, hide = true, allow_negative_numbers = true)]
    pub clock_skew_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--completed-retention-seconds`: a number of seconds, or `keep`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Retention {
    Keep,
    Seconds(f64),
}

impl FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("keep") {
            return Ok(Retention::Keep);
        }
        let seconds: f64 = text
            .parse()
            .map_err(|_| format!("expected a number of seconds or `keep`, got {text:?}"))?;
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(format!("expected 0 or more seconds, got {text:?}"));
        }
        Ok(Retention::Seconds(seconds))
    }
}

/// Installs the tracing subscriber for a long-running command.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colors only on a terminal, so that log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // A second subscriber (in tests that run commands in one process) is not
    // an error worth stopping for, so the result is ignored.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

impl ServeArgs {
    /// Builds the server's configuration, checking the option values.
    pub fn to_config(&self) -> Result<ServerConfig> {
        let micros = |option: &str, seconds: f64| {
            seconds_to_micros(option, seconds).map_err(|error| anyhow::anyhow!("{error}"))
        };
        let defaults = Policy {
            lease_us: micros("--lease-seconds", self.lease_seconds)?,
            max_delivery_attempts: self.max_delivery_attempts,
            completed_retention_us: match self.completed_retention_seconds {
                Retention::Keep => None,
                Retention::Seconds(seconds) => Some(micros("--completed-retention-seconds", seconds)?),
            },
            max_message_bytes: self.max_message_bytes,
            request_retention_us: micros("--request-retention-seconds", self.request_retention_seconds)?,
        };
        let policy = PolicyConfig {
            defaults,
            max_lease_us: micros("--max-lease-seconds", self.max_lease_seconds)?,
        };

        let mut config = ServerConfig::new(self.id, self.data_dir.clone());
        config.listen = self.listen;
        config.peer_listen = self.peer_listen;
        config.metrics_listen = Some(self.metrics_listen);
        config.advertise_client = self.advertise_client.clone();
        config.advertise_peer = self.advertise_peer.clone();
        config.policy = policy;
        config.accept_caller_clock = self.accept_caller_clock;
        config.clock_skew_ms = self.clock_skew_ms;
        config.sweep_interval_ms = self.sweep_interval_ms;
        config.sweep_batch = self.sweep_batch;
        config.snapshot_every_entries = self.snapshot_every_entries;
        config.max_grpc_message_bytes = self.max_grpc_message_bytes;
        config.concurrency_limit_per_connection = self.concurrency_limit_per_connection;
        config.request_timeout_ms = self.request_timeout_ms;
        config.heartbeat_interval_ms = self.heartbeat_interval_ms;
        config.election_timeout_min_ms = self.election_timeout_min_ms;
        config.election_timeout_max_ms = self.election_timeout_max_ms;
        config.shutdown_grace_ms = self.shutdown_grace_ms;
        config.validate().map_err(|error| anyhow::anyhow!("invalid option: {error}"))?;
        Ok(config)
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    init_logging(args.log_format);
    let config = args.to_config()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create the data directory {}", config.data_dir.display()))?;

    let node_id = config.node_id;
    let shutdown = shutdown_signal().context("failed to install the SIGTERM and SIGINT handlers")?;
    raftq_server::run(config, shutdown)
        .await
        .with_context(|| format!("node {node_id} failed"))
}

/// Returns a future that completes on the first SIGTERM or SIGINT.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["raftq", "--id", "1", "--data-dir", "/tmp/x"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn retention_parses_keep_and_seconds() {
        assert_eq!("keep".parse::<Retention>().unwrap(), Retention::Keep);
        assert_eq!("1.5".parse::<Retention>().unwrap(), Retention::Seconds(1.5));
        assert!("-1".parse::<Retention>().is_err());
        assert!("soon".parse::<Retention>().is_err());
    }

    #[test]
    fn defaults_build_a_valid_config() {
        let config = parse(&[]).to_config().unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.peer_listen.port(), 7001);
        assert_eq!(config.metrics_listen.map(|addr| addr.port()), Some(9100));
        assert_eq!(config.policy.defaults, Policy::default());
        assert_eq!(config.policy.max_lease_us, 3_600_000_000);
        assert!(!config.accept_caller_clock);
    }

    #[test]
    fn policy_options_reach_the_config() {
        let config = parse(&[
            "--lease-seconds",
            "2.5",
            "--max-delivery-attempts",
            "5",
            "--completed-retention-seconds",
            "keep",
            "--accept-caller-clock",
        ])
        .to_config()
        .unwrap();
        assert_eq!(config.policy.defaults.lease_us, 2_500_000);
        assert_eq!(config.policy.defaults.max_delivery_attempts, 5);
        assert_eq!(config.policy.defaults.completed_retention_us, None);
        assert!(config.accept_caller_clock);
    }

    #[test]
    fn out_of_bounds_defaults_are_rejected() {
        assert!(parse(&["--max-delivery-attempts", "1001"]).to_config().is_err());
        assert!(parse(&["--lease-seconds", "4000"]).to_config().is_err());
        assert!(parse(&["--sweep-batch", "0"]).to_config().is_err());
    }
}
