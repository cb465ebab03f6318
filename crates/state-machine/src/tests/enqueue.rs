use uuid::Uuid;

use super::{wakeup_events, Harness};
use crate::{CommandError, Operation, Response};

#[test]
fn enqueue_stores_new_message_with_zero_deliveries() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();

    let message = queue.enqueue(pool, "key");

    assert_eq!(message.delivery_count, 0);
    assert_eq!(message.created_at, queue.now());
    assert_eq!(message.updated_at, queue.now());
    assert_eq!(message.data_json, "{}");
    assert_eq!(queue.state.read_message(pool, message.message_id), Some(message));
}

#[test]
fn enqueue_keeps_integers_and_key_order() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let mut request = Harness::enqueue_request(pool, Uuid::new_v4(), "key");
    request.target_json = r#"{ "z": 1, "a": 2.0, "m": [1, -3, 18446744073709551615] }"#.to_string();

    let message = queue.enqueue_with(request);

    assert_eq!(message.target_json, r#"{"z":1,"a":2.0,"m":[1,-3,18446744073709551615]}"#);
}

#[test]
fn enqueue_repeat_by_message_id_returns_stored_message() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let request = Harness::enqueue_request(pool, Uuid::new_v4(), "key");
    let first = queue.enqueue_with(request.clone());
    queue.advance_seconds(3);

    let output = queue.run(Operation::Enqueue(request));

    match output.response {
        Response::Enqueued { message, duplicate } => {
            assert!(duplicate);
            assert_eq!(message, first);
        }
        other => panic!("expected Enqueued, got {other:?}"),
    }
}

#[test]
fn enqueue_rejects_message_id_taken_by_another_key() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message_id = Uuid::new_v4();
    queue.enqueue_with(Harness::enqueue_request(pool, message_id, "first-key"));
    let before = queue.state.clone();

    let output = queue.run(Operation::Enqueue(Harness::enqueue_request(pool, message_id, "second-key")));

    assert_eq!(
        output.response,
        Response::Rejected(CommandError::MessageIdTaken { message_id })
    );
    assert_eq!(queue.state, before);
}

#[test]
fn enqueue_scopes_message_id_by_pool() {
    let mut queue = Harness::new();
    let message_id = Uuid::new_v4();
    let first_pool = Uuid::new_v4();
    let second_pool = Uuid::new_v4();

    queue.enqueue_with(Harness::enqueue_request(first_pool, message_id, "key-a"));
    let second = queue.enqueue_with(Harness::enqueue_request(second_pool, message_id, "key-b"));

    assert_eq!(second.work_pool_id, second_pool);
    assert_eq!(second.idempotency_key, "key-b");
    assert!(queue.state.read_message(first_pool, message_id).is_some());
    assert!(queue.state.read_message(second_pool, message_id).is_some());
}

#[test]
fn enqueue_repeat_of_visible_message_wakes_again() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "key");

    let output = queue.run(Operation::Enqueue(Harness::enqueue_request(pool, Uuid::new_v4(), "key")));

    assert_eq!(wakeup_events(&output), vec![2]);
}

#[test]
fn enqueue_repeat_of_reserved_message_does_not_wake() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "key");
    queue.reserve(pool).unwrap();

    let output = queue.run(Operation::Enqueue(Harness::enqueue_request(pool, Uuid::new_v4(), "key")));

    assert!(wakeup_events(&output).is_empty());
    assert_eq!(queue.wakeup_sequence(pool), 1);
}

#[test]
fn enqueue_repeat_of_dead_letter_skips_wakeup() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    queue.policy.max_delivery_attempts = 1;
    let reservation = queue.reserve(pool).unwrap();
    queue.release(pool, message.message_id, &reservation.reservation_token, "failed");
    let sequence = queue.wakeup_sequence(pool);

    let duplicate = queue.enqueue(pool, "key");

    assert_eq!(duplicate.message_id, message.message_id);
    assert_eq!(duplicate.delivery_count, 1);
    assert_eq!(queue.wakeup_sequence(pool), sequence);
    assert_eq!(queue.reserve(pool), None);
}

#[test]
fn enqueue_prunes_tombstones_past_retention_only() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.policy.completed_retention_us = Some(60_000_000);
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.ack(pool, message.message_id, &reservation.reservation_token);

    queue.advance_seconds(59);
    let before_retention = queue.enqueue(pool, "key");
    assert_eq!(before_retention.message_id, message.message_id);
    assert_eq!(queue.state.pool_stats(pool).tombstones, 1);

    queue.advance_seconds(1);
    let after_retention = queue.enqueue(pool, "key");
    assert_ne!(after_retention.message_id, message.message_id);
    assert_eq!(queue.state.pool_stats(pool).tombstones, 0);
}

#[test]
fn enqueue_without_retention_keeps_tombstones() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.policy.completed_retention_us = None;
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.ack(pool, message.message_id, &reservation.reservation_token);

    queue.advance_seconds(365 * 24 * 3600);
    let duplicate = queue.enqueue(pool, "key");

    assert_eq!(duplicate.message_id, message.message_id);
}

#[test]
fn enqueue_after_tombstone_pruned_reuses_message_id() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.policy.completed_retention_us = Some(0);
    let message_id = Uuid::new_v4();
    queue.enqueue_with(Harness::enqueue_request(pool, message_id, "old-key"));
    let reservation = queue.reserve(pool).unwrap();
    queue.ack(pool, message_id, &reservation.reservation_token);

    let reused = queue.enqueue_with(Harness::enqueue_request(pool, message_id, "new-key"));

    assert_eq!(reused.message_id, message_id);
    assert_eq!(reused.idempotency_key, "new-key");
    assert_eq!(reused.delivery_count, 0);
}
