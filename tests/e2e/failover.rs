//! Leader failure in the middle of a stream of writes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use raftq_client::proto::{EnqueueRequest, ReadMessageRequest, ReadOptions};
use raftq_client::{Client, ClientError, RetryConfig};
use raftq_integration_tests::{wait_until, Cluster, ClusterOptions};
use uuid::Uuid;

/// Enqueues acknowledged before the leader is killed, and in total.
const ACKED_BEFORE_KILL: usize = 40;
const TOTAL_ENQUEUES: usize = 150;
/// Concurrent producers, so that several writes are in flight at the kill.
const PRODUCERS: usize = 4;

/// Runs one producer until the shared count of attempted enqueues reaches
/// `TOTAL_ENQUEUES`, and returns the ids of its acknowledged enqueues and
/// the errors it saw.
async fn produce(
    client: Client,
    pool: String,
    attempted: Arc<AtomicUsize>,
    acknowledged: Arc<AtomicUsize>,
) -> (Vec<String>, Vec<ClientError>) {
    let mut acked_ids = Vec::new();
    let mut errors = Vec::new();
    while attempted.fetch_add(1, Ordering::SeqCst) < TOTAL_ENQUEUES {
        let message_id = Uuid::new_v4().to_string();
        let request = EnqueueRequest {
            message_id: message_id.clone(),
            idempotency_key: format!("key-{message_id}"),
            work_pool_id: pool.clone(),
            kind: "pending_claim_teardown.v1".into(),
            target: format!(r#"{{"message":"{message_id}"}}"#),
            ..EnqueueRequest::default()
        };
        match client.enqueue(request).await {
            Ok(_) => {
                acked_ids.push(message_id);
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => errors.push(error),
        }
    }
    (acked_ids, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_loses_no_acknowledged_enqueue() -> Result<()> {
    let mut cluster = Cluster::start(ClusterOptions::default()).await?;
    let old_leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let retry = RetryConfig {
        total_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    };
    let client = Client::with_config(cluster.endpoints(), retry)?;
    let pool = Uuid::new_v4().to_string();
    let attempted = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            tokio::spawn(produce(
                client.clone(),
                pool.clone(),
                Arc::clone(&attempted),
                Arc::clone(&acknowledged),
            ))
        })
        .collect();
    wait_until("enqueues to be acknowledged before the kill", Duration::from_secs(30), || {
        let count = acknowledged.load(Ordering::SeqCst);
        async move {
            if count >= ACKED_BEFORE_KILL {
                Ok(())
            } else {
                Err(format!("{count} acknowledged"))
            }
        }
    })
    .await?;
    cluster.kill(old_leader)?;

    let mut acked_ids = Vec::new();
    let mut errors = Vec::new();
    for producer in producers {
        let (ids, producer_errors) = producer.await?;
        acked_ids.extend(ids);
        errors.extend(producer_errors);
    }
    let new_leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;

    assert_ne!(new_leader, old_leader);
    assert!(errors.is_empty(), "the client's retries should ride out the election: {errors:?}");
    assert_eq!(acked_ids.len(), TOTAL_ENQUEUES);
    let survivor = cluster.ids().into_iter().find(|id| *id != old_leader).context("no survivor")?;
    let reader = cluster.node_client(survivor)?;
    for message_id in &acked_ids {
        let request = ReadMessageRequest {
            read: None,
            work_pool_id: pool.clone(),
            message_id: message_id.clone(),
        };
        let message = reader.read_message(request).await?;
        assert!(message.is_some(), "acknowledged enqueue {message_id} is missing after the failover");
    }

    // The old leader catches up from the new one after a restart.
    cluster.restart(old_leader).await?;
    let restarted = cluster.node_client(old_leader)?;
    let last_id = acked_ids.last().cloned().context("no enqueue acknowledged")?;
    wait_until("the restarted node to apply every enqueue", Duration::from_secs(30), || {
        let restarted = restarted.clone();
        let pool = pool.clone();
        let last_id = last_id.clone();
        async move {
            let request = raftq_client::proto::PoolStatsRequest {
                read: Some(ReadOptions { local: true }),
                work_pool_id: pool,
            };
            let stats = restarted.pool_stats(request).await.map_err(|error| error.to_string())?;
            if stats.active as usize == TOTAL_ENQUEUES {
                Ok(())
            } else {
                Err(format!("{} of {TOTAL_ENQUEUES} active, last id {last_id}", stats.active))
            }
        }
    })
    .await?;
    Ok(())
}
