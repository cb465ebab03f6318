//! The context every service handler shares: the Raft node, command stamping,
//! leader routing and the served-by header.
//!
//! A call that needs the leader (a write, a linearizable read, a membership
//! change) goes through [`Core::on_leader`]:
//!
//! ```text
//! call ──> forwarded already? ──no──> another node leads? ──yes──> forward to it
//!                │                          │no
//!                └──────yes─────────────────┴──> serve here ──NotLeader──> forward once,
//!                                                     │                    or UNAVAILABLE
//!                                                     └──> respond with x-raftq-served-by
//! ```

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use raftq_proto::v1::WriteOptions;
use raftq_raft::{NodeInfo, RaftNode};
use raftq_state_machine::validation::validate_command;
use raftq_state_machine::{Command, CommandError, CommandOutput, Event, Operation, QueueState, Response};
use tokio::sync::watch;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::convert::timestamp_from_proto;
use crate::error::{Failure, LeaderHint, ServiceError, SERVED_BY_HEADER};
use crate::forward::{is_forwarded, Forwarder, Upstream};
use crate::metrics::Metrics;
use crate::policy::PolicyConfig;
use crate::stamp::Stamper;

/// The settings the handlers need at run time.
pub struct CoreSettings {
    pub policy: PolicyConfig,
    pub accept_caller_clock: bool,
    pub clock_skew_ms: i64,
    pub request_timeout: Duration,
    pub max_grpc_message_bytes: usize,
    pub forward_connect_timeout: Duration,
}

pub struct Core {
    pub node: RaftNode,
    pub node_id: u64,
    /// The addresses this node reports in `GetNodeInfo`.
    pub advertise: NodeInfo,
    pub metrics: Arc<Metrics>,
    pub request_timeout: Duration,
    stamper: Stamper,
    policy: PolicyConfig,
    accept_caller_clock: bool,
    forwarder: Forwarder,
    /// Held while a write is stamped and handed to openraft.
    proposal_order: tokio::sync::Mutex<()>,
    /// Turns true when the node starts shutting down, so that long waits end.
    stopping: watch::Receiver<bool>,
}

impl Core {
    pub fn new(
        node: RaftNode,
        advertise: NodeInfo,
        metrics: Arc<Metrics>,
        settings: CoreSettings,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let node_id = node.node_id();
        Core {
            node_id,
            advertise,
            metrics,
            request_timeout: settings.request_timeout,
            stamper: Stamper::system(settings.clock_skew_ms),
            policy: settings.policy,
            accept_caller_clock: settings.accept_caller_clock,
            forwarder: Forwarder::new(
                node_id,
                settings.max_grpc_message_bytes,
                settings.forward_connect_timeout,
            ),
            node,
            proposal_order: tokio::sync::Mutex::new(()),
            stopping,
        }
    }

    /// Returns a receiver that turns true when the node starts shutting down.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.clone()
    }

    /// Returns true while openraft reports this node as the leader.
    pub fn is_leader(&self) -> bool {
        let metrics = self.node.metrics();
        let metrics = metrics.borrow();
        metrics.current_leader == Some(self.node_id) && metrics.state.is_leader()
    }

    /// Returns the current time of the command clock without stamping it.
    pub fn peek_time(&self) -> raftq_state_machine::Timestamp {
        self.stamper.peek(self.node.read_local(QueueState::latest_time))
    }

    /// Returns the client address of a leader other than this node, if any.
    fn remote_leader_addr(&self) -> Option<String> {
        match self.node.current_leader() {
            Some((leader_id, Some(leader))) if leader_id != self.node_id => Some(leader.client_addr),
            _ => None,
        }
    }

    /// Builds the command of a write: validates the options and the
    /// operation, merges the policy and stamps the time.
    fn command(&self, options: Option<&WriteOptions>, operation: Operation) -> Result<Command, ServiceError> {
        let caller_now = options.and_then(|options| options.now.as_ref());
        if caller_now.is_some() && !self.accept_caller_clock {
            return Err(ServiceError::CallerClockRejected);
        }

        let request_id = options
            .map(|options| options.request_id.clone())
            .filter(|request_id| !request_id.is_empty());
        let policy = self.policy.merge(options.and_then(|options| options.policy.as_ref()))?;

        let now = match caller_now {
            Some(caller_now) => {
                let now = timestamp_from_proto("options.now", caller_now)?;
                self.stamper.observe_caller_time(now);
                now
            }
            None => self.stamper.stamp(self.node.read_local(QueueState::latest_time)),
        };

        let command = Command {
            now,
            request_id,
            policy,
            operation,
        };
        validate_command(&command)?;
        Ok(command)
    }

    /// Stamps, proposes and applies one operation on this node, which must be
    /// the leader, and records the outcome in the metrics and logs.
    pub async fn propose(&self, options: Option<&WriteOptions>, operation: Operation) -> Result<CommandOutput, Failure> {
        let operation_name = operation.name();
        let work_pool_id = operation.work_pool_id();

        // Stamping and handing the entry to openraft happen under one lock,
        // so entries reach the log in the order of their times. The first
        // poll of a write sends the entry into openraft's unbounded channel
        // (openraft 0.9.25 `client_write_ff`), which is the log order.
        // NOTE: if a later openraft defers that send, the order is no longer
        // guaranteed and `now` may step back by microseconds between entries.
        let (write, first_poll) = {
            let _order = self.proposal_order.lock().await;
            let command = self.command(options, operation)?;
            let mut write = Box::pin(self.node.write(command));
            let first_poll = futures::poll!(write.as_mut());
            (write, first_poll)
        };
        let output = match first_poll {
            Poll::Ready(result) => result?,
            Poll::Pending => write.await?,
        };
        tracing::debug!(
            node_id = self.node_id,
            operation = operation_name,
            work_pool_id = ?work_pool_id,
            replayed = output.replayed,
            "write applied"
        );
        self.observe(&output);

        if let Response::Rejected(error) = &output.response {
            return Err(ServiceError::Rejected(error.clone()).into());
        }
        Ok(output)
    }

    /// Counts the output in the metrics and logs every dead-letter move.
    fn observe(&self, output: &CommandOutput) {
        self.metrics
            .record_output(&output.response, &output.events, output.replayed);
        if output.replayed {
            return;
        }
        for event in &output.events {
            if let Event::DeadLettered { dead_letter, source } = event {
                // The dead letter contains the reservation token. It is left
                // out on purpose, since anyone reading logs could use it.
                tracing::warn!(
                    node_id = self.node_id,
                    message_id = %dead_letter.message.message_id,
                    kind = %dead_letter.message.kind,
                    work_pool_id = %dead_letter.message.work_pool_id,
                    final_delivery_count = dead_letter.final_delivery_count,
                    reason = %dead_letter.reason,
                    release_reason = ?dead_letter.release_reason,
                    lease_expires_at_us = ?dead_letter.lease_expires_at.map(|at| at.as_micros()),
                    source = source.as_str(),
                    "cleanup message moved to the dead-letter queue"
                );
            }
        }
    }

    /// Serves a call that must run on the leader: here when this node leads
    /// (or the call was forwarded to it already), else on the leader.
    ///
    /// `local` serves the call on this node; `forward` sends it to the leader.
    /// `limit` bounds the whole call, forwarding included.
    pub async fn on_leader<Req, Resp, Local, LocalFuture, Forward, ForwardFuture>(
        &self,
        request: Request<Req>,
        limit: Option<Duration>,
        local: Local,
        forward: Forward,
    ) -> Result<tonic::Response<Resp>, Status>
    where
        Req: Clone,
        Local: FnOnce(Arc<Req>) -> LocalFuture,
        LocalFuture: Future<Output = Result<Resp, Failure>>,
        Forward: FnOnce(Upstream, Request<Req>) -> ForwardFuture,
        ForwardFuture: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let call = async {
            let forwarded = is_forwarded(request.metadata());
            if !forwarded {
                if let Some(leader_addr) = self.remote_leader_addr() {
                    return self.forwarder.forward(&leader_addr, request, forward).await;
                }
            }

            let (metadata, extensions, message) = request.into_parts();
            let message = Arc::new(message);
            match local(Arc::clone(&message)).await {
                Ok(response) => Ok(tonic::Response::new(response)),
                Err(Failure::NotLeader(LeaderHint {
                    leader_id,
                    client_addr: Some(leader_addr),
                })) if !forwarded && leader_id != Some(self.node_id) => {
                    // `local` has finished, so this is the last reference.
                    let message = Arc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
                    let request = Request::from_parts(metadata, extensions, message);
                    self.forwarder.forward(&leader_addr, request, forward).await
                }
                Err(failure) => Err(failure.into_service_error().into_status()),
            }
        };

        let result = match limit {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    let timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
                    tracing::warn!(node_id = self.node_id, timeout_ms, "request timed out");
                    Err(ServiceError::Timeout { timeout_ms }.into_status())
                }
            },
            None => call.await,
        };
        self.served_by(result)
    }

    /// Serves a write: builds the operation from the request, proposes it and
    /// converts the applied output.
    pub async fn write<Req, Resp, Forward, ForwardFuture>(
        &self,
        request: Request<Req>,
        prepare: impl FnOnce(&Req) -> Result<(Option<WriteOptions>, Operation), CommandError>,
        respond: impl FnOnce(CommandOutput) -> Result<Resp, ServiceError>,
        forward: Forward,
    ) -> Result<tonic::Response<Resp>, Status>
    where
        Req: Clone,
        Forward: FnOnce(Upstream, Request<Req>) -> ForwardFuture,
        ForwardFuture: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let local = |message: Arc<Req>| async move {
            let (options, operation) = prepare(&message)?;
            drop(message);
            let output = self.propose(options.as_ref(), operation).await?;
            Ok(respond(output)?)
        };
        self.on_leader(request, Some(self.request_timeout), local, forward).await
    }

    /// Serves a read: from this node's applied state when `local_read`, else
    /// linearizably through the leader.
    pub async fn read<Req, Resp, Forward, ForwardFuture>(
        &self,
        request: Request<Req>,
        local_read: bool,
        query: impl FnOnce(&QueueState) -> Resp,
        forward: Forward,
    ) -> Result<tonic::Response<Resp>, Status>
    where
        Req: Clone,
        Forward: FnOnce(Upstream, Request<Req>) -> ForwardFuture,
        ForwardFuture: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        if local_read {
            let response = tonic::Response::new(self.node.read_local(query));
            return self.served_by(Ok(response));
        }
        let local = |_message: Arc<Req>| async move {
            self.node.read_linearizable(query).await.map_err(Failure::from)
        };
        self.on_leader(request, Some(self.request_timeout), local, forward).await
    }

    /// Builds the status of an error found before any routing, with the
    /// served-by header.
    pub fn reject(&self, error: impl Into<ServiceError>) -> Status {
        match self.served_by::<()>(Err(error.into().into_status())) {
            Err(status) => status,
            Ok(_) => unreachable!("served_by keeps an error an error"),
        }
    }

    /// Adds `x-raftq-served-by` naming this node, unless a forwarded response
    /// already names the leader.
    pub fn served_by<Resp>(
        &self,
        result: Result<tonic::Response<Resp>, Status>,
    ) -> Result<tonic::Response<Resp>, Status> {
        let value = MetadataValue::from(self.node_id);
        match result {
            Ok(mut response) => {
                if !response.metadata().contains_key(SERVED_BY_HEADER) {
                    response.metadata_mut().insert(SERVED_BY_HEADER, value);
                }
                Ok(response)
            }
            Err(mut status) => {
                if !status.metadata().contains_key(SERVED_BY_HEADER) {
                    status.metadata_mut().insert(SERVED_BY_HEADER, value);
                }
                Err(status)
            }
        }
    }
}
