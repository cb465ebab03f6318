//! Startup and graceful shutdown of a node.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raftq_proto::v1::admin_server::AdminServer;
use raftq_proto::v1::queue_server::QueueServer;
use raftq_raft::{NodeConfig, NodeInfo, RaftNode};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::admin_service::AdminService;
use crate::config::ServerConfig;
use crate::core::{Core, CoreSettings};
use crate::metrics::{bind_metrics_server, Metrics, MetricsError};
use crate::queue_service::QueueService;
use crate::readiness::report_queue_readiness;
use crate::sweeper::run_lease_sweeper;

/// How long a forwarding follower waits for a TCP connection to the leader.
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Failure to start or stop a node.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("failed to bind {what} to {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Metrics(#[from] MetricsError),

    #[error("failed to start the raft node: {0}")]
    RaftStart(#[from] raftq_raft::StartError),

    #[error("the gRPC server failed: {0}")]
    Grpc(String),

    #[error("failed to stop the raft node: {0}")]
    RaftShutdown(#[from] raftq_raft::ShutdownError),
}

/// A started node. Stop it with [`RunningServer::stop`].
pub struct RunningServer {
    node_id: u64,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    advertise: NodeInfo,
    node: RaftNode,
    health: HealthReporter,
    stopping: watch::Sender<bool>,
    grpc_stop: Option<oneshot::Sender<()>>,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics_stop: Option<oneshot::Sender<()>>,
    metrics_task: Option<JoinHandle<std::io::Result<()>>>,
    background: Vec<JoinHandle<()>>,
    shutdown_grace: Duration,
}

/// Starts a node: binds the client listener, starts Raft and the peer
/// service, then serves gRPC and metrics. Health reports SERVING when this
/// returns.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    config.validate().map_err(ServerError::Config)?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| bind_error("the client gRPC service", config.listen, source))?;
    let client_addr = listener
        .local_addr()
        .map_err(|source| bind_error("the client gRPC service", config.listen, source))?;
    let advertise_client = config
        .advertise_client
        .clone()
        .unwrap_or_else(|| advertised_address(client_addr));

    let node_config = node_config(&config, advertise_client.clone());
    let node = RaftNode::start(node_config).await?;
    let peer_addr = node.peer_addr();
    let advertise = NodeInfo {
        client_addr: advertise_client,
        peer_addr: config
            .advertise_peer
            .clone()
            .unwrap_or_else(|| advertised_address(peer_addr)),
    };
    if config.accept_caller_clock && config.sweep_interval_ms > 0 {
        tracing::warn!(
            node_id = config.node_id,
            "the lease sweeper runs on the node's clock while callers may send their own; \
             start with --sweep-interval-ms 0 when callers own the clock"
        );
    }

    let metrics = Arc::new(Metrics::new()?);
    let (stopping, stopping_receiver) = watch::channel(false);
    let core = Arc::new(Core::new(
        node.clone(),
        advertise.clone(),
        Arc::clone(&metrics),
        CoreSettings {
            policy: config.policy.clone(),
            accept_caller_clock: config.accept_caller_clock,
            clock_skew_ms: config.clock_skew_ms,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_grpc_message_bytes: config.max_grpc_message_bytes,
            forward_connect_timeout: FORWARD_CONNECT_TIMEOUT,
        },
        stopping_receiver.clone(),
    ));

    let (mut health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::NotServing).await;
    let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
    let grpc_task = tokio::spawn(serve_grpc(
        GrpcLimits {
            max_message_bytes: config.max_grpc_message_bytes,
            concurrency_per_connection: config.concurrency_limit_per_connection,
        },
        Arc::clone(&core),
        listener,
        health_service,
        grpc_stopped,
    ));

    let (metrics_stop, metrics_task, metrics_addr) = match config.metrics_listen {
        Some(metrics_listen) => {
            let (stop, stopped) = oneshot::channel::<()>();
            let (bound, server) = bind_metrics_server(metrics_listen, metrics, node.metrics(), async {
                // A dropped sender stops the server too.
                let _ = stopped.await;
            })
            .await
            .map_err(|source| bind_error("the metrics endpoint", metrics_listen, source))?;
            (Some(stop), Some(tokio::spawn(server)), Some(bound))
        }
        None => (None, None, None),
    };

    let mut background = Vec::new();
    if config.sweep_interval_ms > 0 {
        background.push(tokio::spawn(run_lease_sweeper(
            Arc::clone(&core),
            Duration::from_millis(config.sweep_interval_ms),
            i64::from(config.sweep_batch),
            stopping_receiver,
        )));
    }

    health.set_not_serving::<QueueServer<QueueService>>().await;
    background.push(tokio::spawn(report_queue_readiness(
        config.node_id,
        health.clone(),
        node.metrics(),
        stopping.subscribe(),
    )));
    health.set_serving::<AdminServer<AdminService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    tracing::info!(
        node_id = config.node_id,
        %client_addr,
        %peer_addr,
        metrics_addr = ?metrics_addr,
        advertise_client = %advertise.client_addr,
        advertise_peer = %advertise.peer_addr,
        data_dir = %config.data_dir.display(),
        "raftq node started"
    );

    Ok(RunningServer {
        node_id: config.node_id,
        client_addr,
        peer_addr,
        metrics_addr,
        advertise,
        node,
        health,
        stopping,
        grpc_stop: Some(grpc_stop),
        grpc_task,
        metrics_stop,
        metrics_task,
        background,
        shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
    })
}

/// Starts a node, serves until `shutdown` completes or the gRPC server
/// fails, then stops gracefully.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let mut server = start(config).await?;
    let failure = tokio::select! {
        () = shutdown => None,
        result = &mut server.grpc_task => Some(match result {
            Ok(Ok(())) => "the gRPC server stopped unexpectedly".to_string(),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        }),
    };
    match failure {
        None => server.stop().await,
        Some(reason) => {
            tracing::error!(node_id = server.node_id, error = %reason, "gRPC server failed; stopping the node");
            // The gRPC task is finished; stop the rest and report the failure.
            server.stop_after_grpc_failure().await?;
            Err(ServerError::Grpc(reason))
        }
    }
}

impl RunningServer {
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Returns the bound address of the client gRPC services.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Returns the bound address of the Raft peer service.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Returns the addresses this node reports to `raftq init` and `raftq join`.
    pub fn advertise(&self) -> &NodeInfo {
        &self.advertise
    }

    pub fn raft_node(&self) -> &RaftNode {
        &self.node
    }

    /// Stops the node: health turns NOT_SERVING, new calls are refused,
    /// in-flight calls finish (up to the grace period), waits end, then Raft
    /// stops and the log is flushed.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        tracing::info!(node_id = self.node_id, "stopping raftq node");
        self.begin_stop().await;

        if let Some(stop) = self.grpc_stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(self.shutdown_grace, &mut self.grpc_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::error!(node_id = self.node_id, %error, "gRPC server failed while stopping"),
            Ok(Err(error)) => tracing::error!(node_id = self.node_id, %error, "gRPC server task failed while stopping"),
            Err(_elapsed) => {
                tracing::warn!(
                    node_id = self.node_id,
                    grace_ms = self.shutdown_grace.as_millis() as u64,
                    "in-flight calls did not finish within the grace period; dropping them"
                );
                self.grpc_task.abort();
            }
        }
        self.finish_stop().await
    }

    async fn stop_after_grpc_failure(mut self) -> Result<(), ServerError> {
        self.begin_stop().await;
        self.finish_stop().await
    }

    async fn begin_stop(&mut self) {
        // Ends waits and background tasks first, so the readiness task cannot
        // report SERVING again after the statuses below.
        let _ = self.stopping.send(true);
        self.health.set_service_status("", ServingStatus::NotServing).await;
        self.health.set_not_serving::<QueueServer<QueueService>>().await;
        self.health.set_not_serving::<AdminServer<AdminService>>().await;
    }

    async fn finish_stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.metrics_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.metrics_task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(node_id = self.node_id, %error, "metrics endpoint failed while stopping"),
                Err(error) => tracing::error!(node_id = self.node_id, %error, "metrics task failed while stopping"),
            }
        }
        for task in self.background.drain(..) {
            if let Err(error) = task.await {
                tracing::error!(node_id = self.node_id, %error, "background task failed while stopping");
            }
        }
        self.node.shutdown().await?;
        tracing::info!(node_id = self.node_id, "raftq node stopped");
        Ok(())
    }
}

fn bind_error(what: &'static str, addr: SocketAddr, source: std::io::Error) -> ServerError {
    ServerError::Bind { what, addr, source }
}

fn node_config(config: &ServerConfig, advertise_client: String) -> NodeConfig {
    let advertise = NodeInfo {
        client_addr: advertise_client,
        peer_addr: config
            .advertise_peer
            .clone()
            .unwrap_or_else(|| advertised_address(config.peer_listen)),
    };
    let mut node_config = NodeConfig::new(config.node_id, config.data_dir.clone(), config.peer_listen, advertise);
    node_config.snapshot_every_entries = config.snapshot_every_entries;
    node_config.heartbeat_interval_ms = config.heartbeat_interval_ms;
    node_config.election_timeout_min_ms = config.election_timeout_min_ms;
    node_config.election_timeout_max_ms = config.election_timeout_max_ms;
    node_config.request_timeout_ms = config.request_timeout_ms;
    node_config
}

struct GrpcLimits {
    max_message_bytes: usize,
    concurrency_per_connection: usize,
}

async fn serve_grpc(
    limits: GrpcLimits,
    core: Arc<Core>,
    listener: TcpListener,
    health_service: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    stopped: oneshot::Receiver<()>,
) -> Result<(), tonic::transport::Error> {
    let max_bytes = limits.max_message_bytes;
    let queue = QueueServer::new(QueueService::new(Arc::clone(&core)))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
    let admin = AdminServer::new(AdminService::new(core))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);

    // Small unary calls suffer from Nagle's algorithm, so it is off.
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    });
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .add_service(health_service)
        .add_service(queue)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        })
        .await
}

/// Returns `host:port` for others to reach a bound address: the address
/// itself, or this host's name when it is bound to every interface.
fn advertised_address(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        format!("{}:{}", host_name(), bound.port())
    } else {
        bound.to_string()
    }
}

fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname
    // writes at most that many bytes.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|byte| *byte == 0).unwrap_or(buffer.len());
    match (result, std::str::from_utf8(&buffer[..end])) {
        (0, Ok(name)) if !name.is_empty() => name.to_string(),
        _ => {
            tracing::warn!("failed to read this host's name; advertising localhost, set --advertise-client and --advertise-peer");
            "localhost".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_address_keeps_a_specific_ip() {
        let bound: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(advertised_address(bound), "127.0.0.1:7000");
    }

    #[test]
    fn advertised_address_names_the_host_for_any_ip() {
        let bound: SocketAddr = "0.0.0.0:7000".parse().unwrap();
        let advertised = advertised_address(bound);
        assert!(advertised.ends_with(":7000"), "{advertised}");
        assert!(!advertised.starts_with("0.0.0.0"), "{advertised}");
    }
}
