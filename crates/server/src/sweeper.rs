//! The lease sweeper: the leader's background task that expires due leases.

use std::sync::Arc;
use std::time::Duration;

use raftq_state_machine::{Operation, QueueState, Response};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::core::Core;
use crate::error::Failure;

/// Proposes `ExpireLeases` on the leader whenever its applied state holds a
/// due lease, so abandoned reservations come back without a client call.
///
/// Each tick expires batches of `batch` leases until none is due. Followers
/// only tick: the check runs again when this node becomes the leader.
pub async fn run_lease_sweeper(core: Arc<Core>, interval: Duration, batch: i64, mut stopping: watch::Receiver<bool>) {
    tracing::info!(node_id = core.node_id, interval_ms = interval.as_millis() as u64, batch, "lease sweeper started");
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => break,
        }
        while core.is_leader() && lease_due(&core) {
            match sweep_once(&core, batch).await {
                Ok(expired) if expired >= batch => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(node_id = core.node_id, %error, "lease sweep failed; retrying at the next tick");
                    break;
                }
            }
        }
    }
    tracing::info!(node_id = core.node_id, "lease sweeper stopped");
}

fn lease_due(core: &Core) -> bool {
    let next_expiry = core.node.read_local(QueueState::next_lease_expiry);
    match next_expiry {
        Some(lease_expires_at) => lease_expires_at <= core.peek_time(),
        None => false,
    }
}

/// Proposes one `ExpireLeases` over every pool; returns how many leases it
/// expired.
async fn sweep_once(core: &Core, batch: i64) -> Result<i64, String> {
    let operation = Operation::ExpireLeases {
        limit: batch,
        work_pool_id: None,
    };
    let output = core.propose(None, operation).await.map_err(|failure| match failure {
        Failure::NotLeader(_) => "this node lost leadership".to_string(),
        Failure::Other(error) => error.to_string(),
    })?;
    let Response::LeasesExpired(result) = output.response else {
        return Err(format!("expire_leases applied with an unexpected response: {:?}", output.response));
    };
    let redelivered = result.redelivered.len();
    let dead_lettered = result.dead_lettered.len();
    tracing::debug!(node_id = core.node_id, redelivered, dead_lettered, "lease sweep expired leases");
    Ok(i64::try_from(redelivered + dead_lettered).unwrap_or(i64::MAX))
}
