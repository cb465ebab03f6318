//! The queue contract over gRPC, through `raftq-client`, against one
//! three-node cluster shared by every case. Each case works in its own fresh
//! pool, so cases run in parallel without seeing each other.
//!
//! The cluster runs with the lease sweeper off (`--sweep-interval-ms 0`) so
//! that expiry happens only through the calls a case makes.

mod support;

use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use raftq_client::proto::{
    CleanupMessage, EnqueueRequest, ExpireLeasesRequest, KindFilter,
    ListDeadLettersRequest, PolicyOverrides, PoolStatsRequest, PurgeDeadLettersRequest,
    ReadDeadLetterRequest, ReadMessageRequest, ReadWakeupSequenceRequest, RedriveDeadLettersRequest,
    ReleaseRequest, Reservation, ReservationRequest, ReserveRequest, WaitForWakeupRequest,
    WakeDispatchersRequest, WorkQueueFilter, WriteOptions,
};
use raftq_client::{Client, ClientError};
use raftq_integration_tests::{wait_until, Cluster};
use serde_json::json;
use support::{run_suite, Case};
use uuid::Uuid;

fn main() -> std::process::ExitCode {
    run_suite(&["--sweep-interval-ms", "0"], cases())
}

fn cases() -> Vec<Case> {
    support::cases![
        enqueue_stores_message_exactly,
        enqueue_same_message_id_is_duplicate,
        enqueue_same_key_returns_first_message,
        enqueue_taken_message_id_already_exists,
        message_id_scoped_by_pool,
        repeat_enqueue_wakes_only_visible_work,
        reserve_empty_pool_returns_none,
        reserve_takes_oldest_first,
        reserve_sets_token_and_exact_lease,
        kind_filter_selects_kinds,
        preferred_queue_then_fallback,
        ack_accepted_keeps_tombstone,
        operation_statuses_follow_contract,
        release_makes_message_visible,
        release_at_max_dead_letters,
        renew_extends_lease_same_token,
        ack_after_lease_end_is_expired,
        ack_after_lease_end_at_max_dead_letters,
        expire_leases_redelivers_due_lease,
        expire_leases_dead_letters_at_max,
        reserve_dead_letters_candidate_at_max,
        wakeups_advance_and_wake_waiters,
        waiter_on_follower_woken_by_enqueue_elsewhere,
        read_helpers_never_cross_pools,
        dead_letters_list_redrive_purge,
        pool_stats_count_each_state,
        reserve_retry_same_request_id_same_reservation,
        enqueue_retry_same_request_id_same_outcome,
        bad_input_rejected_and_cluster_serves,
        oversized_frame_rejected_and_node_serves,
        caller_clock_rejected_failed_precondition,
    ]
}

// ---- helpers -------------------------------------------------------------

fn new_pool() -> String {
    Uuid::new_v4().to_string()
}

fn enqueue_request(pool: &str, key: &str) -> EnqueueRequest {
    EnqueueRequest {
        message_id: Uuid::new_v4().to_string(),
        idempotency_key: key.to_string(),
        work_pool_id: pool.to_string(),
        kind: "pending_claim_teardown.v1".to_string(),
        target: r#"{"flow_run_id":"run-1","attempt":2}"#.to_string(),
        ..EnqueueRequest::default()
    }
}

async fn enqueue(client: &Client, pool: &str, key: &str) -> Result<CleanupMessage> {
    let response = client.enqueue(enqueue_request(pool, key)).await?;
    response.message.context("enqueue returned no message")
}

fn policy(lease_seconds: Option<f64>, max_delivery_attempts: Option<u32>) -> Option<WriteOptions> {
    Some(WriteOptions {
        policy: Some(PolicyOverrides {
            lease_seconds,
            max_delivery_attempts,
            completed_idempotency_retention: None,
        }),
        ..WriteOptions::default()
    })
}

async fn reserve_with(
    client: &Client,
    pool: &str,
    lease_seconds: Option<f64>,
    max_delivery_attempts: Option<u32>,
) -> Result<Option<Reservation>> {
    let request = ReserveRequest {
        options: policy(lease_seconds, max_delivery_attempts),
        work_pool_id: pool.to_string(),
        ..ReserveRequest::default()
    };
    Ok(client.reserve(request).await?.reservation)
}

async fn reserve(client: &Client, pool: &str) -> Result<Reservation> {
    reserve_with(client, pool, None, None).await?.context("reserve returned no reservation")
}

fn message_of(reservation: &Reservation) -> &CleanupMessage {
    reservation.message.as_ref().expect("a reservation carries its message")
}

fn reservation_request(pool: &str, reservation: &Reservation) -> ReservationRequest {
    ReservationRequest {
        options: None,
        work_pool_id: pool.to_string(),
        message_id: message_of(reservation).message_id.clone(),
        reservation_token: reservation.reservation_token.clone(),
    }
}

fn release_request(pool: &str, reservation: &Reservation, reason: &str) -> ReleaseRequest {
    ReleaseRequest {
        options: None,
        work_pool_id: pool.to_string(),
        message_id: message_of(reservation).message_id.clone(),
        reservation_token: reservation.reservation_token.clone(),
        reason: reason.to_string(),
    }
}

async fn wakeup_sequence(client: &Client, pool: &str) -> Result<u64> {
    let request = ReadWakeupSequenceRequest {
        read: None,
        work_pool_id: pool.to_string(),
    };
    Ok(client.read_wakeup_sequence(request).await?)
}

async fn read_message(client: &Client, pool: &str, message_id: &str) -> Result<Option<CleanupMessage>> {
    let request = ReadMessageRequest {
        read: None,
        work_pool_id: pool.to_string(),
        message_id: message_id.to_string(),
    };
    Ok(client.read_message(request).await?)
}

async fn pool_stats(client: &Client, pool: &str) -> Result<raftq_client::proto::PoolStatsResponse> {
    let request = PoolStatsRequest {
        read: None,
        work_pool_id: pool.to_string(),
    };
    Ok(client.pool_stats(request).await?)
}

fn micros(timestamp: &Option<prost_types::Timestamp>) -> i64 {
    let timestamp = timestamp.as_ref().expect("timestamp is set");
    timestamp.seconds * 1_000_000 + i64::from(timestamp.nanos) / 1_000
}

/// Waits until this machine's clock is past a lease's end. The nodes run on
/// the same machine, so their clocks agree with it.
async fn wait_past(lease_expires_at: &Option<prost_types::Timestamp>) -> Result<()> {
    let deadline_us = micros(lease_expires_at);
    wait_until("the lease to end", Duration::from_secs(10), || async move {
        let now_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_micros() as i64)
            .unwrap_or(0);
        if now_us > deadline_us {
            Ok(())
        } else {
            Err(format!("{} us left", deadline_us - now_us))
        }
    })
    .await?;
    Ok(())
}

fn assert_invalid_argument(result: Result<impl std::fmt::Debug, ClientError>, field: &str) {
    match result {
        Err(ClientError::InvalidArgument { message }) => {
            assert!(message.contains(field), "message {message:?} does not name {field}")
        }
        other => panic!("expected INVALID_ARGUMENT naming {field}, got {other:?}"),
    }
}

// ---- enqueue -------------------------------------------------------------

async fn enqueue_stores_message_exactly(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let queue = Uuid::new_v4().to_string();
    let request = EnqueueRequest {
        work_queue_id: Some(queue.clone()),
        target: r#"{"b":1,"a":{"x":2.5,"n":[1,2,3]},"big":9007199254740993}"#.to_string(),
        data: Some(r#"{"note":"é"}"#.to_string()),
        ..enqueue_request(&pool, "key-1")
    };

    let response = client.enqueue(request.clone()).await?;
    let message = response.message.context("no message")?;

    assert!(!response.duplicate);
    assert_eq!(message.message_id, request.message_id);
    assert_eq!(message.idempotency_key, "key-1");
    assert_eq!(message.work_pool_id, pool);
    assert_eq!(message.work_queue_id, Some(queue));
    assert_eq!(message.kind, "pending_claim_teardown.v1");
    let target: serde_json::Value = serde_json::from_str(&message.target)?;
    assert_eq!(target, json!({"b":1,"a":{"x":2.5,"n":[1,2,3]},"big":9007199254740993_u64}));
    assert!(target["b"].is_i64(), "an integer must stay an integer");
    let data: serde_json::Value = serde_json::from_str(&message.data)?;
    assert_eq!(data, json!({"note":"é"}));
    assert_eq!(message.delivery_count, 0);
    assert_eq!(message.created_at, message.updated_at);
    assert_eq!(message.created_at.as_ref().map(|time| time.nanos % 1_000), Some(0));

    let stored = read_message(&client, &pool, &message.message_id).await?;
    assert_eq!(stored, Some(message));
    Ok(())
}

async fn enqueue_same_message_id_is_duplicate(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let request = enqueue_request(&pool, "key-1");

    let first = client.enqueue(request.clone()).await?;
    let second = client.enqueue(request).await?;

    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.message, second.message);
    assert_eq!(pool_stats(&client, &pool).await?.active, 1);
    Ok(())
}

async fn enqueue_same_key_returns_first_message(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let first = enqueue(&client, &pool, "shared-key").await?;

    let second = client.enqueue(enqueue_request(&pool, "shared-key")).await?;

    assert!(second.duplicate);
    assert_eq!(second.message.context("no message")?.message_id, first.message_id);
    assert_eq!(pool_stats(&client, &pool).await?.active, 1);
    Ok(())
}

async fn enqueue_taken_message_id_already_exists(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let first = enqueue(&client, &pool, "key-a").await?;
    let request = EnqueueRequest {
        message_id: first.message_id.clone(),
        ..enqueue_request(&pool, "key-b")
    };

    let result = client.enqueue(request).await;

    assert!(matches!(result, Err(ClientError::AlreadyExists { .. })), "{result:?}");
    Ok(())
}

async fn message_id_scoped_by_pool(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let (pool_a, pool_b) = (new_pool(), new_pool());
    let request_a = enqueue_request(&pool_a, "key");
    let request_b = EnqueueRequest {
        work_pool_id: pool_b.clone(),
        ..request_a.clone()
    };

    let in_a = client.enqueue(request_a).await?;
    let in_b = client.enqueue(request_b).await?;

    assert!(!in_a.duplicate);
    assert!(!in_b.duplicate);
    assert_eq!(in_b.message.context("no message")?.work_pool_id, pool_b);
    Ok(())
}

async fn repeat_enqueue_wakes_only_visible_work(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let request = enqueue_request(&pool, "key");

    client.enqueue(request.clone()).await?;
    assert_eq!(wakeup_sequence(&client, &pool).await?, 1);
    client.enqueue(request.clone()).await?;
    assert_eq!(wakeup_sequence(&client, &pool).await?, 2, "a visible repeat wakes");

    reserve(&client, &pool).await?;
    client.enqueue(request).await?;
    assert_eq!(wakeup_sequence(&client, &pool).await?, 2, "a reserved repeat does not wake");
    Ok(())
}

// ---- reserve -------------------------------------------------------------

async fn reserve_empty_pool_returns_none(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;

    let reservation = reserve_with(&client, &new_pool(), None, None).await?;

    assert_eq!(reservation, None);
    Ok(())
}

async fn reserve_takes_oldest_first(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let mut ids = Vec::new();
    for key in ["first", "second", "third"] {
        ids.push(enqueue(&client, &pool, key).await?.message_id);
    }

    let mut reserved = Vec::new();
    for _ in 0..3 {
        reserved.push(message_of(&reserve(&client, &pool).await?).message_id.clone());
    }

    assert_eq!(reserved, ids);
    assert_eq!(reserve_with(&client, &pool, None, None).await?, None);
    Ok(())
}

async fn reserve_sets_token_and_exact_lease(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "key").await?;

    let reservation = reserve_with(&client, &pool, Some(12.5), None).await?.context("none")?;
    let message = message_of(&reservation);

    assert!(reservation.reservation_token.len() > 32, "token too short");
    assert_eq!(message.delivery_count, 1);
    assert_eq!(
        micros(&reservation.lease_expires_at) - micros(&message.updated_at),
        12_500_000,
        "lease_expires_at = now + lease, exact to the microsecond"
    );
    Ok(())
}

async fn kind_filter_selects_kinds(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "teardown").await?;
    let wanted = client
        .enqueue(EnqueueRequest {
            kind: "cancelling_timeout_teardown.v1".into(),
            ..enqueue_request(&pool, "cancel")
        })
        .await?
        .message
        .context("no message")?;
    let filtered = |kinds: Vec<&str>| ReserveRequest {
        work_pool_id: pool.clone(),
        cleanup_kinds: Some(KindFilter {
            kinds: kinds.into_iter().map(String::from).collect(),
        }),
        ..ReserveRequest::default()
    };

    let empty_filter = client.reserve(filtered(vec![])).await?.reservation;
    let matched = client.reserve(filtered(vec!["cancelling_timeout_teardown.v1"])).await?.reservation;
    let nothing_left = client.reserve(filtered(vec!["cancelling_timeout_teardown.v1"])).await?.reservation;

    assert_eq!(empty_filter, None, "a filter with no kinds matches nothing");
    assert_eq!(message_of(&matched.context("no match")?).message_id, wanted.message_id);
    assert_eq!(nothing_left, None);
    Ok(())
}

async fn preferred_queue_then_fallback(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let (queue_1, queue_2) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let in_queue = |key: &str, queue: &str| EnqueueRequest {
        work_queue_id: Some(queue.to_string()),
        ..enqueue_request(&pool, key)
    };
    let older = client.enqueue(in_queue("older", &queue_1)).await?.message.context("none")?;
    let newer = client.enqueue(in_queue("newer", &queue_2)).await?.message.context("none")?;
    let prefer = |fallback: Option<bool>| ReserveRequest {
        work_pool_id: pool.clone(),
        preferred_work_queue_ids: Some(WorkQueueFilter {
            work_queue_ids: vec![queue_2.clone()],
        }),
        allow_fallback_to_any_queue: fallback,
        ..ReserveRequest::default()
    };

    let preferred = client.reserve(prefer(None)).await?.reservation.context("none")?;
    let without_fallback = client.reserve(prefer(Some(false))).await?.reservation;
    let fallback = client.reserve(prefer(None)).await?.reservation.context("none")?;

    assert_eq!(message_of(&preferred).message_id, newer.message_id, "preferred queue first");
    assert_eq!(without_fallback, None, "no fallback when it is off");
    assert_eq!(message_of(&fallback).message_id, older.message_id, "fallback to the pool");
    Ok(())
}

// ---- ack, release, renew ------------------------------------------------

async fn ack_accepted_keeps_tombstone(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let message = enqueue(&client, &pool, "key").await?;
    let reservation = reserve(&client, &pool).await?;
    let sequence_before = wakeup_sequence(&client, &pool).await?;

    let result = client.ack(reservation_request(&pool, &reservation)).await?;

    assert_eq!(result.status, "accepted");
    assert_eq!(result.operation, "ack");
    assert_eq!(result.message_id, message.message_id);
    assert_eq!(read_message(&client, &pool, &message.message_id).await?, None);
    let stats = pool_stats(&client, &pool).await?;
    assert_eq!((stats.active, stats.reserved, stats.tombstones), (0, 0, 1));
    let repeat = client.enqueue(enqueue_request(&pool, "key")).await?;
    assert!(repeat.duplicate, "the tombstone keeps the key taken");
    assert_eq!(repeat.message.context("none")?.message_id, message.message_id);
    assert_eq!(wakeup_sequence(&client, &pool).await?, sequence_before, "no wakeup for ack or a repeat");
    Ok(())
}

async fn operation_statuses_follow_contract(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "key").await?;
    let reservation = reserve(&client, &pool).await?;

    let unknown = ReservationRequest {
        message_id: Uuid::new_v4().to_string(),
        ..reservation_request(&pool, &reservation)
    };
    let result = client.ack(unknown).await?;
    assert_eq!((result.status.as_str(), result.reason.as_deref()), ("not_found", Some("message_not_found")));

    let wrong_token = ReservationRequest {
        reservation_token: "not-the-token".into(),
        ..reservation_request(&pool, &reservation)
    };
    let result = client.renew(wrong_token).await?;
    assert_eq!(
        (result.status.as_str(), result.reason.as_deref()),
        ("invalid_token", Some("reservation_token_mismatch"))
    );

    let other_pool = ReservationRequest {
        work_pool_id: new_pool(),
        ..reservation_request(&pool, &reservation)
    };
    let result = client.ack(other_pool).await?;
    assert!(
        result.status == "not_found" || result.status == "unauthorized",
        "another pool's message: {result:?}"
    );
    assert!(result.dead_letter.is_none());

    let released = client.release(release_request(&pool, &reservation, "worker stopping")).await?;
    assert_eq!(released.status, "accepted");
    let result = client.ack(reservation_request(&pool, &reservation)).await?;
    assert_eq!(
        (result.status.as_str(), result.reason.as_deref()),
        ("not_current", Some("no_active_reservation"))
    );
    Ok(())
}

async fn release_makes_message_visible(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "key").await?;
    let reservation = reserve(&client, &pool).await?;
    let sequence_before = wakeup_sequence(&client, &pool).await?;

    let result = client.release(release_request(&pool, &reservation, "retry later")).await?;
    let again = reserve(&client, &pool).await?;

    assert_eq!(result.status, "accepted");
    assert_eq!(result.operation, "release");
    assert_eq!(wakeup_sequence(&client, &pool).await?, sequence_before + 1);
    assert_eq!(message_of(&again).delivery_count, 2);
    assert_ne!(again.reservation_token, reservation.reservation_token);
    Ok(())
}

async fn release_at_max_dead_letters(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let message = enqueue(&client, &pool, "key").await?;
    let reservation = reserve_with(&client, &pool, None, Some(1)).await?.context("none")?;
    let request = ReleaseRequest {
        options: policy(None, Some(1)),
        ..release_request(&pool, &reservation, "container gone")
    };

    let result = client.release(request).await?;

    assert_eq!(result.status, "dead_lettered");
    assert_eq!(result.reason.as_deref(), Some("max_delivery_attempts_reached"));
    let dead_letter = result.dead_letter.context("no dead letter in the result")?;
    assert_eq!(dead_letter.release_reason.as_deref(), Some("container gone"));
    assert_eq!(dead_letter.final_delivery_count, 1);
    let stored = client
        .read_dead_letter(ReadDeadLetterRequest {
            read: None,
            work_pool_id: pool.clone(),
            message_id: message.message_id.clone(),
        })
        .await?;
    assert_eq!(stored.map(|stored| stored.reason), Some("max_delivery_attempts_reached".to_string()));
    assert_eq!(read_message(&client, &pool, &message.message_id).await?, None);
    Ok(())
}

async fn renew_extends_lease_same_token(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "key").await?;
    let reservation = reserve_with(&client, &pool, Some(5.0), None).await?.context("none")?;
    let request = ReservationRequest {
        options: policy(Some(60.0), None),
        ..reservation_request(&pool, &reservation)
    };

    let renewed = client.renew(request).await?;
    let stored = read_message(&client, &pool, &message_of(&reservation).message_id).await?.context("gone")?;

    assert_eq!(renewed.status, "accepted");
    assert_eq!(renewed.operation, "renew");
    assert_eq!(micros(&renewed.lease_expires_at) - micros(&stored.updated_at), 60_000_000);
    assert!(micros(&renewed.lease_expires_at) > micros(&reservation.lease_expires_at));
    assert_eq!(stored.delivery_count, 1);
    let acked = client.ack(reservation_request(&pool, &reservation)).await?;
    assert_eq!(acked.status, "accepted", "the token is unchanged by a renew");
    Ok(())
}

async fn ack_after_lease_end_is_expired(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "key").await?;
    let reservation = reserve_with(&client, &pool, Some(0.2), None).await?.context("none")?;
    wait_past(&reservation.lease_expires_at).await?;
    let sequence_before = wakeup_sequence(&client, &pool).await?;

    let result = client.ack(reservation_request(&pool, &reservation)).await?;

    assert_eq!((result.status.as_str(), result.reason.as_deref()), ("expired", Some("lease_expired")));
    assert_eq!(wakeup_sequence(&client, &pool).await?, sequence_before + 1);
    let again = reserve(&client, &pool).await?;
    assert_eq!(message_of(&again).delivery_count, 2);
    Ok(())
}

async fn ack_after_lease_end_at_max_dead_letters(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "key").await?;
    let reservation = reserve_with(&client, &pool, Some(0.2), Some(1)).await?.context("none")?;
    wait_past(&reservation.lease_expires_at).await?;
    let request = ReservationRequest {
        options: policy(None, Some(1)),
        ..reservation_request(&pool, &reservation)
    };

    let result = client.ack(request).await?;

    assert_eq!(result.status, "dead_lettered");
    assert_eq!(result.reason.as_deref(), Some("max_delivery_attempts_reached"));
    assert!(result.dead_letter.is_some());
    assert_eq!(pool_stats(&client, &pool).await?.dead_lettered, 1);
    Ok(())
}

// ---- lease expiry ---------------------------------------------------------

async fn expire_leases_redelivers_due_lease(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let message = enqueue(&client, &pool, "key").await?;
    reserve_with(&client, &pool, Some(0.2), None).await?.context("none")?;
    let sequence_before = wakeup_sequence(&client, &pool).await?;

    let redelivered = wait_until("expire_leases to redeliver the message", Duration::from_secs(10), || {
        let client = client.clone();
        let pool = pool.clone();
        async move {
            let request = ExpireLeasesRequest {
                work_pool_id: Some(pool),
                ..ExpireLeasesRequest::default()
            };
            let response = client.expire_leases(request).await.map_err(|error| error.to_string())?;
            match response.redelivered.first() {
                Some(redelivered) => Ok(redelivered.clone()),
                None => Err("nothing redelivered yet".to_string()),
            }
        }
    })
    .await?;

    assert_eq!(redelivered.message_id, message.message_id);
    assert_eq!(wakeup_sequence(&client, &pool).await?, sequence_before + 1);
    assert_eq!(pool_stats(&client, &pool).await?.reserved, 0);
    Ok(())
}

async fn expire_leases_dead_letters_at_max(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let message = enqueue(&client, &pool, "key").await?;
    let reservation = reserve_with(&client, &pool, Some(0.2), Some(1)).await?.context("none")?;

    let dead_letter = wait_until("expire_leases to dead-letter the message", Duration::from_secs(10), || {
        let client = client.clone();
        let pool = pool.clone();
        async move {
            let request = ExpireLeasesRequest {
                options: policy(None, Some(1)),
                limit: Some(10),
                work_pool_id: Some(pool),
            };
            let response = client.expire_leases(request).await.map_err(|error| error.to_string())?;
            response.dead_lettered.first().cloned().ok_or_else(|| "nothing expired yet".to_string())
        }
    })
    .await?;

    assert_eq!(dead_letter.message.as_ref().map(|m| m.message_id.clone()), Some(message.message_id));
    assert_eq!(dead_letter.reservation_token.as_deref(), Some(reservation.reservation_token.as_str()));
    assert_eq!(dead_letter.lease_expires_at, reservation.lease_expires_at);
    assert_eq!(dead_letter.final_delivery_count, 1);
    Ok(())
}

async fn reserve_dead_letters_candidate_at_max(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let message = enqueue(&client, &pool, "key").await?;
    let reservation = reserve(&client, &pool).await?;
    client.release(release_request(&pool, &reservation, "try again")).await?;

    let request = ReserveRequest {
        options: policy(None, Some(1)),
        work_pool_id: pool.clone(),
        ..ReserveRequest::default()
    };
    let response = client.reserve(request).await?;

    assert_eq!(response.reservation, None);
    assert_eq!(response.dead_lettered.len(), 1);
    assert_eq!(response.dead_lettered[0].reason, "max_delivery_attempts_reached");
    assert_eq!(
        response.dead_lettered[0].message.as_ref().map(|m| m.message_id.clone()),
        Some(message.message_id)
    );
    Ok(())
}

// ---- wakeups ---------------------------------------------------------------

async fn wakeups_advance_and_wake_waiters(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    assert_eq!(wakeup_sequence(&client, &pool).await?, 0);

    let woken = client
        .wake_dispatchers(WakeDispatchersRequest {
            options: None,
            work_pool_id: pool.clone(),
        })
        .await?;
    assert_eq!(woken, 1);

    let wait = |after: u64, timeout_seconds: f64| WaitForWakeupRequest {
        work_pool_id: pool.clone(),
        after,
        timeout_seconds: Some(timeout_seconds),
    };
    let at_once = client.wait_for_wakeup(wait(0, 5.0)).await?;
    assert!(at_once.woken);
    assert_eq!(at_once.sequence, 1);

    let timed_out = client.wait_for_wakeup(wait(1, 0.2)).await?;
    assert!(!timed_out.woken);

    let waiter = {
        let client = client.clone();
        let request = wait(1, 10.0);
        tokio::spawn(async move { client.wait_for_wakeup(request).await })
    };
    enqueue(&client, &pool, "key").await?;
    let response = waiter.await??;
    assert!(response.woken);
    assert_eq!(response.sequence, 2);
    Ok(())
}

async fn waiter_on_follower_woken_by_enqueue_elsewhere(cluster: &Cluster) -> Result<()> {
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).context("no follower")?;
    let writer = cluster.ids().into_iter().find(|id| *id != follower).context("no writer")?;
    let follower_client = cluster.node_client(follower)?;
    let writer_client = cluster.node_client(writer)?;
    let pool = new_pool();
    let after = wakeup_sequence(&writer_client, &pool).await?;

    let request = WaitForWakeupRequest {
        work_pool_id: pool.clone(),
        after,
        timeout_seconds: Some(10.0),
    };
    let waiter = tokio::spawn(async move { follower_client.wait_for_wakeup(request).await });
    enqueue(&writer_client, &pool, "key").await?;
    let response = waiter.await??;

    assert!(response.woken, "the follower's waiter was not woken");
    assert!(response.sequence > after);
    Ok(())
}

// ---- reads, dead letters, stats -------------------------------------------

async fn read_helpers_never_cross_pools(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let message = enqueue(&client, &pool, "key").await?;
    let reservation = reserve_with(&client, &pool, None, Some(1)).await?.context("none")?;
    client
        .release(ReleaseRequest {
            options: policy(None, Some(1)),
            ..release_request(&pool, &reservation, "broken")
        })
        .await?;
    let other_pool = new_pool();
    let dead_letter_of = |pool: &str| ReadDeadLetterRequest {
        read: None,
        work_pool_id: pool.to_string(),
        message_id: message.message_id.clone(),
    };

    assert!(client.read_dead_letter(dead_letter_of(&pool)).await?.is_some());
    assert_eq!(client.read_dead_letter(dead_letter_of(&other_pool)).await?, None);
    assert_eq!(read_message(&client, &other_pool, &message.message_id).await?, None);
    assert_eq!(read_message(&client, &pool, &message.message_id).await?, None, "dead letters are not active");
    Ok(())
}

/// Enqueues `count` messages and dead-letters each by releasing it at a
/// maximum of one delivery attempt.
async fn make_dead_letters(client: &Client, pool: &str, count: usize) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for index in 0..count {
        ids.push(enqueue(client, pool, &format!("dead-{index}")).await?.message_id);
        let reservation = reserve_with(client, pool, None, Some(1)).await?.context("none")?;
        let result = client
            .release(ReleaseRequest {
                options: policy(None, Some(1)),
                ..release_request(pool, &reservation, "broken")
            })
            .await?;
        ensure!(result.status == "dead_lettered", "release returned {result:?}");
    }
    Ok(ids)
}

async fn dead_letters_list_redrive_purge(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let ids = make_dead_letters(&client, &pool, 3).await?;
    let list = |after: Option<u64>| ListDeadLettersRequest {
        read: None,
        work_pool_id: pool.clone(),
        after,
        limit: Some(2),
    };

    let first_page = client.list_dead_letters(list(None)).await?;
    assert_eq!(first_page.dead_letters.len(), 2);
    let cursor = first_page.next_cursor.context("a second page was expected")?;
    let second_page = client.list_dead_letters(list(Some(cursor))).await?;
    assert_eq!(second_page.dead_letters.len(), 1);
    assert_eq!(second_page.next_cursor, None);
    let listed: Vec<String> = first_page
        .dead_letters
        .iter()
        .chain(&second_page.dead_letters)
        .filter_map(|dead_letter| dead_letter.message.as_ref().map(|m| m.message_id.clone()))
        .collect();
    let mut expected = ids.clone();
    expected.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, expected);

    let redriven = client
        .redrive_dead_letters(RedriveDeadLettersRequest {
            options: None,
            work_pool_id: pool.clone(),
            message_id: Some(ids[0].clone()),
        })
        .await?;
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].delivery_count, 0);
    let active = read_message(&client, &pool, &ids[0]).await?.context("redriven message not active")?;
    assert_eq!(active.delivery_count, 0);

    let purged = client
        .purge_dead_letters(PurgeDeadLettersRequest {
            options: None,
            work_pool_id: pool.clone(),
            message_id: None,
        })
        .await?;
    assert_eq!(purged, 2);
    let stats = pool_stats(&client, &pool).await?;
    assert_eq!((stats.active, stats.dead_lettered), (1, 0));
    let after_purge = client.enqueue(enqueue_request(&pool, "dead-1")).await?;
    assert!(!after_purge.duplicate, "a purge frees the idempotency key");
    Ok(())
}

async fn pool_stats_count_each_state(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    make_dead_letters(&client, &pool, 1).await?;
    enqueue(&client, &pool, "acked").await?;
    let to_ack = reserve(&client, &pool).await?;
    client.ack(reservation_request(&pool, &to_ack)).await?;
    enqueue(&client, &pool, "reserved").await?;
    reserve(&client, &pool).await?;
    enqueue(&client, &pool, "visible").await?;

    let stats = pool_stats(&client, &pool).await?;

    assert_eq!(stats.active, 2, "visible and reserved messages are active");
    assert_eq!(stats.reserved, 1);
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(stats.tombstones, 1);
    assert_eq!(stats.wakeup_sequence, wakeup_sequence(&client, &pool).await?);
    Ok(())
}

// ---- retries with request ids ----------------------------------------------

async fn reserve_retry_same_request_id_same_reservation(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    enqueue(&client, &pool, "one").await?;
    enqueue(&client, &pool, "two").await?;
    let request = ReserveRequest {
        options: Some(WriteOptions {
            request_id: Uuid::new_v4().to_string(),
            ..WriteOptions::default()
        }),
        work_pool_id: pool.clone(),
        ..ReserveRequest::default()
    };

    let first = client.reserve(request.clone()).await?.reservation.context("none")?;
    let retried = client.reserve(request).await?.reservation.context("none")?;

    assert_eq!(retried, first, "a retry returns the first reservation");
    assert_eq!(message_of(&retried).delivery_count, 1);
    assert_eq!(pool_stats(&client, &pool).await?.reserved, 1, "the retry reserved nothing more");
    Ok(())
}

async fn enqueue_retry_same_request_id_same_outcome(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let request = EnqueueRequest {
        options: Some(WriteOptions {
            request_id: Uuid::new_v4().to_string(),
            ..WriteOptions::default()
        }),
        ..enqueue_request(&pool, "key")
    };

    let first = client.enqueue(request.clone()).await?;
    let retried = client.enqueue(request).await?;

    assert!(!retried.duplicate, "the retry returns the first outcome, not a duplicate");
    assert_eq!(retried.message, first.message);
    assert_eq!(wakeup_sequence(&client, &pool).await?, 1, "the retry did not apply again");
    Ok(())
}

// ---- bad input -------------------------------------------------------------

async fn bad_input_rejected_and_cluster_serves(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();

    let malformed_pool = EnqueueRequest {
        work_pool_id: "not-a-uuid".into(),
        ..enqueue_request(&pool, "key")
    };
    assert_invalid_argument(client.enqueue(malformed_pool).await, "work_pool_id");
    let malformed_id = EnqueueRequest {
        message_id: "1234".into(),
        ..enqueue_request(&pool, "key")
    };
    assert_invalid_argument(client.enqueue(malformed_id).await, "message_id");
    assert_invalid_argument(client.enqueue(enqueue_request(&pool, "")).await, "idempotency_key");
    let empty_kind = EnqueueRequest {
        kind: String::new(),
        ..enqueue_request(&pool, "key")
    };
    assert_invalid_argument(client.enqueue(empty_kind).await, "kind");
    let array_target = EnqueueRequest {
        target: "[1,2]".into(),
        ..enqueue_request(&pool, "key")
    };
    assert_invalid_argument(client.enqueue(array_target).await, "target");
    let text_data = EnqueueRequest {
        data: Some("\"text\"".into()),
        ..enqueue_request(&pool, "key")
    };
    assert_invalid_argument(client.enqueue(text_data).await, "data");
    let oversized = EnqueueRequest {
        target: json!({ "blob": "x".repeat(70 * 1024) }).to_string(),
        ..enqueue_request(&pool, "key")
    };
    assert_invalid_argument(client.enqueue(oversized).await, "message");
    let zero_limit = ExpireLeasesRequest {
        limit: Some(0),
        ..ExpireLeasesRequest::default()
    };
    assert_invalid_argument(client.expire_leases(zero_limit).await, "limit");
    let malformed_reserve = ReserveRequest {
        work_pool_id: "pool".into(),
        ..ReserveRequest::default()
    };
    assert_invalid_argument(client.reserve(malformed_reserve).await, "work_pool_id");

    enqueue(&client, &pool, "key").await?;
    let reservation = reserve(&client, &pool).await?;
    assert_invalid_argument(
        client.release(release_request(&pool, &reservation, "")).await,
        "reason",
    );

    assert_eq!(pool_stats(&client, &pool).await?.active, 1, "nothing else was stored");
    let result = client.ack(reservation_request(&pool, &reservation)).await?;
    assert_eq!(result.status, "accepted", "the cluster keeps serving");
    Ok(())
}

async fn oversized_frame_rejected_and_node_serves(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    // Over the server's default gRPC message limit of 1 MiB.
    let huge = EnqueueRequest {
        target: json!({ "blob": "x".repeat(2 * 1024 * 1024) }).to_string(),
        ..enqueue_request(&pool, "huge")
    };

    let result = client.enqueue(huge).await;

    assert!(result.is_err(), "a 2 MiB request was accepted: {result:?}");
    let message = enqueue(&client, &pool, "small").await?;
    assert_eq!(message.idempotency_key, "small", "the node keeps serving");
    Ok(())
}

async fn caller_clock_rejected_failed_precondition(cluster: &Cluster) -> Result<()> {
    let client = cluster.client()?;
    let pool = new_pool();
    let request = EnqueueRequest {
        options: Some(WriteOptions {
            now: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..WriteOptions::default()
        }),
        ..enqueue_request(&pool, "key")
    };

    let result = client.enqueue(request).await;

    match result {
        Err(ClientError::FailedPrecondition { message }) => {
            assert!(message.contains("now"), "message {message:?} does not name options.now")
        }
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
    assert_eq!(pool_stats(&client, &pool).await?.active, 0);
    let status = client.cluster_status().await?;
    assert!(status.initialized);
    Ok(())
}
