//! Readiness in the gRPC health service.
//!
//! The empty service name reports the process: SERVING from the end of
//! startup until a graceful stop begins, for liveness checks. The
//! `raftq.v1.Queue` name reports whether this node can serve queue calls now:
//! SERVING only while a leader is known, so a readiness probe keeps clients
//! away from a node that is cut off from the majority or not yet in a cluster.

use raftq_proto::v1::queue_server::QueueServer;
use raftq_raft::RaftMetrics;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;

use crate::queue_service::QueueService;

/// Follows the node's Raft metrics and sets the queue service's health to
/// SERVING while a leader is known, NOT_SERVING otherwise. Returns when the
/// node begins to stop or its metrics channel closes.
pub async fn report_queue_readiness(
    node_id: u64,
    mut health: HealthReporter,
    mut metrics: watch::Receiver<RaftMetrics>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut reported: Option<bool> = None;
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        let ready = leader.is_some();
        // A stop in progress owns the health status from here on.
        if *stopping.borrow() {
            return;
        }
        if reported != Some(ready) {
            if ready {
                health.set_serving::<QueueServer<QueueService>>().await;
            } else {
                health.set_not_serving::<QueueServer<QueueService>>().await;
            }
            tracing::info!(node_id, ready, leader_id = ?leader, "queue readiness changed");
            reported = Some(ready);
        }

        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stopping.changed() => return,
        }
    }
}
