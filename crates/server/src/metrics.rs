//! Prometheus metrics of one node and the HTTP endpoint that serves them.
//!
//! Queue counters keep the names of Prefect's reference backends, so that the
//! dashboards built for those work unchanged. They count what this node served
//! as leader, so the cluster's total is the sum over nodes. Raft gauges are
//! refreshed from openraft's metrics at every scrape.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use raftq_raft::{NodeInfo, RaftMetrics};
use raftq_state_machine::{Event, Response};
use tokio::net::TcpListener;

/// The counters and gauges of one node, in their own registry.
pub struct Metrics {
    registry: Registry,
    operations: IntCounterVec,
    dead_letters: IntCounterVec,
    lease_expirations: IntCounterVec,
    raft_term: IntGauge,
    raft_leader_id: IntGauge,
    raft_last_log_index: IntGauge,
    raft_commit_index: IntGauge,
    raft_applied_index: IntGauge,
    raft_replication_lag: IntGaugeVec,
    raft_is_leader: IntGauge,
}

/// Failure to set up or render the metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to register a metric: {0}")]
    Register(#[from] prometheus::Error),

    #[error("failed to render metrics as text: {0}")]
    Encode(String),
}

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let metrics = Metrics {
            operations: IntCounterVec::new(
                Opts::new(
                    "prefect_worker_cleanup_queue_operations_total",
                    "Cleanup queue operations served by this node, by operation and result status",
                ),
                &["operation", "status"],
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "prefect_worker_cleanup_queue_dead_letters_total",
                    "Cleanup messages moved to the dead-letter queue, by kind and reason",
                ),
                &["kind", "reason"],
            )?,
            lease_expirations: IntCounterVec::new(
                Opts::new(
                    "prefect_worker_cleanup_queue_lease_expirations_total",
                    "Expired reservation leases, by result (redelivered or dead_lettered)",
                ),
                &["result"],
            )?,
            raft_term: IntGauge::new("raftq_raft_term", "Current Raft term of this node")?,
            raft_leader_id: IntGauge::new(
                "raftq_raft_leader_id",
                "Node id of the leader this node knows, -1 when it knows none",
            )?,
            raft_last_log_index: IntGauge::new(
                "raftq_raft_last_log_index",
                "Index of the last entry in this node's log, -1 when the log is empty",
            )?,
            raft_commit_index: IntGauge::new(
                "raftq_raft_commit_index",
                "Highest log index known committed: the majority-replicated index on the leader, \
                 the applied index elsewhere; -1 when none",
            )?,
            raft_applied_index: IntGauge::new(
                "raftq_raft_applied_index",
                "Index of the last entry applied to this node's state machine, -1 when none",
            )?,
            raft_replication_lag: IntGaugeVec::new(
                Opts::new(
                    "raftq_raft_replication_lag_entries",
                    "Entries a peer is behind the leader's last log index (reported by the leader only)",
                ),
                &["peer"],
            )?,
            raft_is_leader: IntGauge::new("raftq_raft_is_leader", "1 when this node is the leader, else 0")?,
            registry,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        self.registry.register(Box::new(self.operations.clone()))?;
        self.registry.register(Box::new(self.dead_letters.clone()))?;
        self.registry.register(Box::new(self.lease_expirations.clone()))?;
        self.registry.register(Box::new(self.raft_term.clone()))?;
        self.registry.register(Box::new(self.raft_leader_id.clone()))?;
        self.registry.register(Box::new(self.raft_last_log_index.clone()))?;
        self.registry.register(Box::new(self.raft_commit_index.clone()))?;
        self.registry.register(Box::new(self.raft_applied_index.clone()))?;
        self.registry.register(Box::new(self.raft_replication_lag.clone()))?;
        self.registry.register(Box::new(self.raft_is_leader.clone()))?;
        Ok(())
    }

    /// Counts the outcome of one command this node proposed and applied.
    ///
    /// A replayed output (a retry with a known request id) counts nothing:
    /// the first attempt already counted it.
    pub fn record_output(&self, response: &Response, events: &[Event], replayed: bool) {
        if replayed {
            return;
        }

        match response {
            Response::Enqueued { duplicate, .. } => {
                let status = if *duplicate { "duplicate" } else { "accepted" };
                self.operations.with_label_values(&["enqueue", status]).inc();
            }
            Response::Reserved(Some(_)) => {
                self.operations.with_label_values(&["reserve", "accepted"]).inc();
            }
            Response::Operation(result) => {
                self.operations
                    .with_label_values(&[result.operation.as_str(), result.status.as_str()])
                    .inc();
            }
            _ => {}
        }

        for event in events {
            match event {
                Event::DeadLettered { dead_letter, .. } => {
                    self.dead_letters
                        .with_label_values(&[&dead_letter.message.kind, &dead_letter.reason])
                        .inc();
                }
                Event::LeaseExpiredRedelivered { .. } => {
                    self.lease_expirations.with_label_values(&["redelivered"]).inc();
                }
                Event::LeaseExpiredDeadLettered { .. } => {
                    self.lease_expirations.with_label_values(&["dead_lettered"]).inc();
                }
                Event::WakeupAdvanced { .. } => {}
            }
        }
    }

    /// Copies openraft's view of this node into the Raft gauges.
    pub fn update_raft(&self, raft: &RaftMetrics) {
        let index_or_unknown = |index: Option<u64>| index.map_or(-1, saturating_i64);

        self.raft_term.set(saturating_i64(raft.current_term));
        self.raft_leader_id.set(index_or_unknown(raft.current_leader));
        self.raft_last_log_index.set(index_or_unknown(raft.last_log_index));
        let applied_index = raft.last_applied.map(|log_id| log_id.index);
        self.raft_applied_index.set(index_or_unknown(applied_index));
        let is_leader = raft.current_leader == Some(raft.id) && raft.replication.is_some();
        self.raft_is_leader.set(i64::from(is_leader));

        let commit_index = if is_leader {
            leader_commit_index(raft).or(applied_index)
        } else {
            applied_index
        };
        self.raft_commit_index.set(index_or_unknown(commit_index));

        self.raft_replication_lag.reset();
        if let Some(replication) = &raft.replication {
            let last_log_index = raft.last_log_index.unwrap_or(0);
            for (peer, matched) in replication {
                if *peer == raft.id {
                    continue;
                }
                let matched_index = matched.map_or(0, |log_id| log_id.index);
                self.raft_replication_lag
                    .with_label_values(&[&peer.to_string()])
                    .set(saturating_i64(last_log_index.saturating_sub(matched_index)));
            }
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .map_err(|error| MetricsError::Encode(error.to_string()))?;
        String::from_utf8(buffer).map_err(|error| MetricsError::Encode(error.to_string()))
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Returns the highest index that a majority of the voters hold, from the
/// leader's replication progress (its own entry included).
pub fn leader_commit_index(raft: &RaftMetrics) -> Option<u64> {
    let replication = raft.replication.as_ref()?;
    let voters: BTreeSet<u64> = raft.membership_config.voter_ids().collect();
    if voters.is_empty() {
        return None;
    }
    let mut matched: Vec<u64> = voters
        .iter()
        .map(|voter| {
            if *voter == raft.id {
                raft.last_log_index.unwrap_or(0)
            } else {
                replication
                    .get(voter)
                    .and_then(|log_id| log_id.map(|log_id| log_id.index))
                    .unwrap_or(0)
            }
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    // With the indexes sorted high to low, a majority of the voters has
    // at least the index at position floor(n / 2).
    matched.get(voters.len() / 2).copied()
}

/// State of the metrics endpoint.
#[derive(Clone)]
struct MetricsEndpoint {
    metrics: Arc<Metrics>,
    raft_metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, NodeInfo>>,
}

async fn serve_metrics(State(endpoint): State<MetricsEndpoint>) -> axum::response::Response {
    endpoint.metrics.update_raft(&endpoint.raft_metrics.borrow());
    match endpoint.metrics.render() {
        Ok(text) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "failed to render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}

/// Binds the metrics endpoint; returns the bound address and the server
/// future, which ends when `shutdown` completes.
pub async fn bind_metrics_server(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    raft_metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, NodeInfo>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(listen).await?;
    let local_addr = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(MetricsEndpoint {
            metrics,
            raft_metrics,
        });
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown);
    Ok((local_addr, async move { server.await }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftq_state_machine::{
        DeadLetter, DeadLetterSource, Message, OperationResult, OperationStatus, ReservationOperation,
        Timestamp,
    };
    use uuid::Uuid;

    fn message(kind: &str) -> Message {
        Message {
            message_id: Uuid::new_v4(),
            idempotency_key: "key".into(),
            work_pool_id: Uuid::new_v4(),
            work_queue_id: None,
            kind: kind.into(),
            target_json: "{}".into(),
            data_json: "{}".into(),
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
            delivery_count: 3,
        }
    }

    fn sample_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|line| line.starts_with(prefix))
    }

    #[test]
    fn enqueue_counts_accepted_and_duplicate() {
        let metrics = Metrics::new().unwrap();
        let accepted = Response::Enqueued {
            message: message("k"),
            duplicate: false,
        };
        let duplicate = Response::Enqueued {
            message: message("k"),
            duplicate: true,
        };
        metrics.record_output(&accepted, &[], false);
        metrics.record_output(&duplicate, &[], false);
        metrics.record_output(&duplicate, &[], false);
        let text = metrics.render().unwrap();
        assert_eq!(
            sample_line(&text, r#"prefect_worker_cleanup_queue_operations_total{operation="enqueue",status="accepted"}"#),
            Some(r#"prefect_worker_cleanup_queue_operations_total{operation="enqueue",status="accepted"} 1"#)
        );
        assert_eq!(
            sample_line(&text, r#"prefect_worker_cleanup_queue_operations_total{operation="enqueue",status="duplicate"}"#),
            Some(r#"prefect_worker_cleanup_queue_operations_total{operation="enqueue",status="duplicate"} 2"#)
        );
    }

    #[test]
    fn replayed_output_counts_nothing() {
        let metrics = Metrics::new().unwrap();
        let response = Response::Enqueued {
            message: message("k"),
            duplicate: false,
        };
        metrics.record_output(&response, &[], true);
        let text = metrics.render().unwrap();
        assert!(!text.contains("operation=\"enqueue\""), "{text}");
    }

    #[test]
    fn dead_letter_and_expiry_events_are_counted() {
        let metrics = Metrics::new().unwrap();
        let dead_letter = DeadLetter {
            message: message("teardown.v1"),
            reason: "max_delivery_attempts_reached".into(),
            final_delivery_count: 3,
            moved_at: Timestamp::EPOCH,
            reservation_token: Some("secret".into()),
            lease_expires_at: None,
            release_reason: None,
        };
        let pool = Uuid::new_v4();
        let events = vec![
            Event::DeadLettered {
                dead_letter,
                source: DeadLetterSource::LeaseExpiry,
            },
            Event::LeaseExpiredDeadLettered {
                work_pool_id: pool,
                message_id: Uuid::new_v4(),
            },
            Event::LeaseExpiredRedelivered {
                message: message("teardown.v1"),
            },
        ];
        let result = OperationResult {
            message_id: Uuid::new_v4(),
            operation: ReservationOperation::Ack,
            status: OperationStatus::Expired,
            lease_expires_at: None,
            reason: Some("lease_expired".into()),
            dead_letter: None,
        };
        metrics.record_output(&Response::Operation(result), &events, false);
        let text = metrics.render().unwrap();
        assert!(text.contains(
            r#"prefect_worker_cleanup_queue_dead_letters_total{kind="teardown.v1",reason="max_delivery_attempts_reached"} 1"#
        ));
        assert!(text.contains(r#"prefect_worker_cleanup_queue_lease_expirations_total{result="dead_lettered"} 1"#));
        assert!(text.contains(r#"prefect_worker_cleanup_queue_lease_expirations_total{result="redelivered"} 1"#));
        assert!(text.contains(r#"prefect_worker_cleanup_queue_operations_total{operation="ack",status="expired"} 1"#));
        assert!(!text.contains("secret"));
    }
}
