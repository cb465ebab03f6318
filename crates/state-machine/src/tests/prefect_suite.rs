//! The cases of Prefect's `WorkerCleanupQueueStandardTestSuite` (Prefect
//! 3.9.1, `prefect/testing/standard_test_suites/worker_cleanup_queue.py`),
//! restated against the state machine. Prefect's policy settings become the
//! harness policy; its clock becomes `advance_seconds`.

use uuid::Uuid;

use super::{Harness, CLAIM};
use crate::{OperationStatus, Policy};

#[test]
fn enqueue_is_idempotent_for_stable_cleanup_keys() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();

    let first = queue.enqueue_with(Harness::enqueue_request(pool, Uuid::new_v4(), "flow-run-cleanup"));
    let second_id = Uuid::new_v4();
    let second = queue.enqueue_with(Harness::enqueue_request(pool, second_id, "flow-run-cleanup"));

    assert_eq!(second.message_id, first.message_id);
    assert_ne!(second.message_id, second_id);
}

#[test]
fn enqueue_stores_payload_as_sent() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let mut request = Harness::enqueue_request(pool, Uuid::new_v4(), "flow-run-cleanup");
    request.target_json = r#"{"flow_run": {"id": "a", "attempt": 3}}"#.to_string();
    request.data_json = Some(r#"{"resources": [{"id": "b", "size": 1.5}]}"#.to_string());

    let message = queue.enqueue_with(request.clone());
    let read = queue.state.read_message(pool, message.message_id).unwrap();

    assert_eq!(read.target_json, r#"{"flow_run":{"id":"a","attempt":3}}"#);
    assert_eq!(read.data_json, r#"{"resources":[{"id":"b","size":1.5}]}"#);
}

#[test]
fn reserve_commits_delivery_count_and_single_active_reservation() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");

    let reservation = queue.reserve(pool).unwrap();

    assert_eq!(reservation.message.message_id, message.message_id);
    assert_eq!(reservation.message.delivery_count, 1);
    assert_eq!(reservation.lease_expires_at, queue.now().saturating_add_micros(30_000_000));
    assert!(reservation.reservation_token.len() > 32);
    assert_eq!(queue.reserve(pool), None);
}

#[test]
fn reservation_operations_require_current_token() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");
    let reservation = queue.reserve(pool).unwrap();

    let rejected = queue.ack(pool, message.message_id, "not-the-current-token");
    assert_eq!(rejected.status, OperationStatus::InvalidToken);
    assert!(queue.state.read_message(pool, message.message_id).is_some());

    let accepted = queue.ack(pool, message.message_id, &reservation.reservation_token);
    assert_eq!(accepted.status, OperationStatus::Accepted);
    assert!(queue.state.read_message(pool, message.message_id).is_none());
}

#[test]
fn reservation_operations_require_matching_work_pool_scope() {
    for operation in ["ack", "release", "renew"] {
        let mut queue = Harness::new();
        let pool = Uuid::new_v4();
        let other_pool = Uuid::new_v4();
        let message = queue.enqueue(pool, "cleanup-key");
        let reservation = queue.reserve(pool).unwrap();
        let token = reservation.reservation_token.as_str();

        let rejected = match operation {
            "ack" => queue.ack(other_pool, message.message_id, token),
            "release" => queue.release(other_pool, message.message_id, token, "wrong_pool"),
            _ => queue.renew(other_pool, message.message_id, token),
        };

        assert_eq!(rejected.status, OperationStatus::NotFound, "{operation}");
        assert_eq!(rejected.reason.as_deref(), Some("message_not_found"), "{operation}");
        assert!(queue.state.read_message(pool, message.message_id).is_some());
        assert_eq!(queue.ack(pool, message.message_id, token).status, OperationStatus::Accepted);
    }
}

#[test]
fn read_helpers_require_matching_work_pool_scope() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let other_pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");

    assert!(queue.state.read_message(pool, message.message_id).is_some());
    assert!(queue.state.read_message(other_pool, message.message_id).is_none());

    queue.policy.max_delivery_attempts = 1;
    let reservation = queue.reserve(pool).unwrap();
    let result = queue.release(pool, message.message_id, &reservation.reservation_token, "unsupported_cleanup_kind");

    assert_eq!(result.status, OperationStatus::DeadLettered);
    assert!(queue.state.read_dead_letter(pool, message.message_id).is_some());
    assert!(queue.state.read_dead_letter(other_pool, message.message_id).is_none());
}

#[test]
fn reserve_prefers_matching_work_queue_but_falls_back_to_pool() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let preferred_queue = Uuid::new_v4();
    let fallback_queue = Uuid::new_v4();
    let mut fallback_request = Harness::enqueue_request(pool, Uuid::new_v4(), "fallback-cleanup");
    fallback_request.work_queue_id = Some(fallback_queue);
    let fallback_message = queue.enqueue_with(fallback_request);
    let mut preferred_request = Harness::enqueue_request(pool, Uuid::new_v4(), "preferred-cleanup");
    preferred_request.work_queue_id = Some(preferred_queue);
    let preferred_message = queue.enqueue_with(preferred_request);

    let preferred = queue
        .reserve_filtered(pool, None, Some(vec![preferred_queue]), true)
        .unwrap();
    assert_eq!(preferred.message.message_id, preferred_message.message_id);
    let accepted = queue.ack(pool, preferred_message.message_id, &preferred.reservation_token);
    assert_eq!(accepted.status, OperationStatus::Accepted);

    let fallback = queue
        .reserve_filtered(pool, None, Some(vec![preferred_queue]), true)
        .unwrap();
    assert_eq!(fallback.message.message_id, fallback_message.message_id);
}

#[test]
fn enqueue_after_ack_keeps_idempotency_key_completed() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let first = queue.enqueue(pool, "flow-run-cleanup");
    let reservation = queue.reserve(pool).unwrap();
    let accepted = queue.ack(pool, first.message_id, &reservation.reservation_token);
    let sequence = queue.wakeup_sequence(pool);

    let duplicate = queue.enqueue(pool, "flow-run-cleanup");

    assert_eq!(accepted.status, OperationStatus::Accepted);
    assert_eq!(duplicate.message_id, first.message_id);
    assert!(queue.state.read_message(pool, first.message_id).is_none());
    assert_eq!(queue.reserve(pool), None);
    assert_eq!(queue.wakeup_sequence(pool), sequence);
}

#[test]
fn completed_idempotency_retention_can_expire_tombstones() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.policy.completed_retention_us = Some(0);
    let first = queue.enqueue(pool, "flow-run-cleanup");
    let reservation = queue.reserve(pool).unwrap();
    assert_eq!(
        queue.ack(pool, first.message_id, &reservation.reservation_token).status,
        OperationStatus::Accepted
    );

    let new_id = Uuid::new_v4();
    let after_retention = queue.enqueue_with(Harness::enqueue_request(pool, new_id, "flow-run-cleanup"));

    assert_eq!(after_retention.message_id, new_id);
    queue.policy = Policy::default();
    assert_eq!(queue.reserve(pool).unwrap().message.message_id, new_id);
}

#[test]
fn release_makes_message_eligible_for_redelivery() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");
    let first = queue.reserve(pool).unwrap();

    let released = queue.release(pool, message.message_id, &first.reservation_token, "cannot_act");
    let second = queue.reserve(pool).unwrap();

    assert_eq!(released.status, OperationStatus::Accepted);
    assert_eq!(second.message.message_id, message.message_id);
    assert_eq!(second.message.delivery_count, 2);
    assert_ne!(second.reservation_token, first.reservation_token);
}

#[test]
fn release_moves_message_to_dlq_after_retry_limit() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");
    queue.policy.max_delivery_attempts = 1;
    let reservation = queue.reserve(pool).unwrap();

    let result = queue.release(pool, message.message_id, &reservation.reservation_token, "unsupported_cleanup_kind");
    let dead_letter = queue.state.read_dead_letter(pool, message.message_id).unwrap();

    assert_eq!(result.status, OperationStatus::DeadLettered);
    assert_eq!(result.reason.as_deref(), Some("max_delivery_attempts_reached"));
    assert_eq!(result.dead_letter.as_ref(), Some(&dead_letter));
    assert_eq!(dead_letter.final_delivery_count, 1);
    assert_eq!(dead_letter.release_reason.as_deref(), Some("unsupported_cleanup_kind"));
    assert!(queue.state.read_message(pool, message.message_id).is_none());
}

#[test]
fn expired_leases_redeliver_then_dlq_at_retry_limit() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");
    queue.policy.lease_us = 10_000_000;
    queue.policy.max_delivery_attempts = 2;

    queue.reserve(pool).unwrap();
    queue.advance_seconds(11);
    let first_expiry = queue.expire_leases(100, None);
    let second = queue.reserve(pool).unwrap();
    queue.advance_seconds(11);
    let second_expiry = queue.expire_leases(100, None);
    let dead_letter = queue.state.read_dead_letter(pool, message.message_id).unwrap();

    let redelivered: Vec<Uuid> = first_expiry.redelivered.iter().map(|m| m.message_id).collect();
    assert_eq!(redelivered, vec![message.message_id]);
    assert!(first_expiry.dead_lettered.is_empty());
    assert_eq!(second.message.delivery_count, 2);
    assert!(second_expiry.redelivered.is_empty());
    assert_eq!(second_expiry.dead_lettered.len(), 1);
    assert_eq!(dead_letter.final_delivery_count, 2);
    assert_eq!(queue.reserve(pool), None);
}

#[test]
fn reserve_wakes_dispatchers_after_expiring_leases() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");
    queue.policy.lease_us = 10_000_000;
    queue.reserve(pool).unwrap();
    let sequence = queue.wakeup_sequence(pool);

    queue.advance_seconds(11);
    let unmatched = queue.reserve_filtered(pool, Some(vec![CLAIM]), None, true);

    assert_eq!(unmatched, None);
    assert_eq!(queue.wakeup_sequence(pool), sequence + 1);
    queue.policy = Policy::default();
    assert_eq!(queue.reserve(pool).unwrap().message.message_id, message.message_id);
}

#[test]
fn expire_leases_respects_limit_and_work_pool_scope() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let other_pool = Uuid::new_v4();
    let first = queue.enqueue(pool, "first-cleanup");
    let second = queue.enqueue(pool, "second-cleanup");
    let other = queue.enqueue(other_pool, "other-cleanup");
    queue.policy.lease_us = 10_000_000;
    queue.reserve(pool).unwrap();
    queue.reserve(pool).unwrap();
    queue.reserve(other_pool).unwrap();

    queue.advance_seconds(11);
    let first_expiry = queue.expire_leases(1, Some(pool));
    let second_expiry = queue.expire_leases(10, Some(pool));
    let other_expiry = queue.expire_leases(10, Some(other_pool));

    assert_eq!(first_expiry.redelivered.len(), 1);
    assert_eq!(second_expiry.redelivered.len(), 1);
    let mut expired = vec![first_expiry.redelivered[0].message_id, second_expiry.redelivered[0].message_id];
    expired.sort();
    let mut expected = vec![first.message_id, second.message_id];
    expected.sort();
    assert_eq!(expired, expected);
    let other_ids: Vec<Uuid> = other_expiry.redelivered.iter().map(|m| m.message_id).collect();
    assert_eq!(other_ids, vec![other.message_id]);
}

#[test]
fn renew_extends_current_reservation() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");
    let reservation = queue.reserve(pool).unwrap();

    queue.advance_seconds(5);
    let result = queue.renew(pool, message.message_id, &reservation.reservation_token);

    assert_eq!(result.status, OperationStatus::Accepted);
    assert_eq!(result.lease_expires_at, Some(queue.now().saturating_add_micros(30_000_000)));
}

#[test]
fn operation_on_expired_lease_wakes_dispatchers() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "cleanup-key");
    queue.policy.lease_us = 10_000_000;
    let reservation = queue.reserve(pool).unwrap();
    let sequence = queue.wakeup_sequence(pool);

    queue.advance_seconds(11);
    let result = queue.renew(pool, message.message_id, &reservation.reservation_token);

    assert_eq!(result.status, OperationStatus::Expired);
    assert_eq!(queue.wakeup_sequence(pool), sequence + 1);
}

#[test]
fn enqueue_wakes_local_dispatchers() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let sequence = queue.wakeup_sequence(pool);

    queue.enqueue(pool, "cleanup-key");

    assert_eq!(queue.wakeup_sequence(pool), sequence + 1);
}
