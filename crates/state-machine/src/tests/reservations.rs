use uuid::Uuid;

use super::{wakeup_events, Harness};
use crate::{Event, Operation, OperationStatus};

#[test]
fn ack_on_unknown_message_is_not_found() {
    let mut queue = Harness::new();

    let result = queue.ack(Uuid::new_v4(), Uuid::new_v4(), "token");

    assert_eq!(result.status, OperationStatus::NotFound);
    assert_eq!(result.reason.as_deref(), Some("message_not_found"));
}

#[test]
fn ack_on_unreserved_message_is_not_current() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");

    let result = queue.ack(pool, message.message_id, "token");

    assert_eq!(result.status, OperationStatus::NotCurrent);
    assert_eq!(result.reason.as_deref(), Some("no_active_reservation"));
}

#[test]
fn ack_twice_is_not_found_the_second_time() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.ack(pool, message.message_id, &reservation.reservation_token);

    let again = queue.ack(pool, message.message_id, &reservation.reservation_token);

    assert_eq!(again.status, OperationStatus::NotFound);
}

#[test]
fn ack_does_not_wake_dispatchers() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();

    let output = queue.run(Operation::Ack(super::reference(pool, message.message_id, &reservation.reservation_token)));

    assert!(wakeup_events(&output).is_empty());
    assert_eq!(queue.state.pool_stats(pool).tombstones, 1);
    assert_eq!(queue.state.pool_stats(pool).active, 0);
}

#[test]
fn token_check_precedes_expiry_check() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    queue.policy.lease_us = 1_000_000;
    queue.reserve(pool).unwrap();
    queue.advance_seconds(5);

    let result = queue.renew(pool, message.message_id, "wrong-token");

    assert_eq!(result.status, OperationStatus::InvalidToken);
    assert_eq!(queue.state.pool_stats(pool).reserved, 1);
}

#[test]
fn ack_at_lease_deadline_is_expired() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.now_us = reservation.lease_expires_at.as_micros();

    let result = queue.ack(pool, message.message_id, &reservation.reservation_token);

    assert_eq!(result.status, OperationStatus::Expired);
    assert_eq!(result.reason.as_deref(), Some("lease_expired"));
    assert!(queue.state.read_message(pool, message.message_id).is_some());
    assert_eq!(queue.reserve(pool).unwrap().message.delivery_count, 2);
}

#[test]
fn ack_one_microsecond_before_deadline_is_accepted() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.now_us = reservation.lease_expires_at.as_micros() - 1;

    let result = queue.ack(pool, message.message_id, &reservation.reservation_token);

    assert_eq!(result.status, OperationStatus::Accepted);
}

#[test]
fn release_after_expired_lease_at_max_dead_letters() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    queue.policy.max_delivery_attempts = 1;
    let reservation = queue.reserve(pool).unwrap();
    queue.advance_seconds(31);

    let result = queue.release(pool, message.message_id, &reservation.reservation_token, "gave up");

    assert_eq!(result.status, OperationStatus::DeadLettered);
    assert_eq!(result.reason.as_deref(), Some("max_delivery_attempts_reached"));
    let dead_letter = result.dead_letter.unwrap();
    assert_eq!(dead_letter.reservation_token.as_deref(), Some(reservation.reservation_token.as_str()));
    assert_eq!(dead_letter.lease_expires_at, Some(reservation.lease_expires_at));
    // The lease ran out before the release took effect, so no release
    // reason is recorded.
    assert_eq!(dead_letter.release_reason, None);
}

#[test]
fn release_wakes_dispatchers_and_sets_updated_at() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.advance_seconds(2);

    let output = queue.run(Operation::Release {
        reservation: super::reference(pool, message.message_id, &reservation.reservation_token),
        reason: "busy".to_string(),
    });

    assert_eq!(wakeup_events(&output), vec![2]);
    let stored = queue.state.read_message(pool, message.message_id).unwrap();
    assert_eq!(stored.updated_at, queue.now());
    assert_eq!(stored.delivery_count, 1);
}

#[test]
fn release_at_max_keeps_lease_and_reason() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    queue.policy.max_delivery_attempts = 1;
    let reservation = queue.reserve(pool).unwrap();

    let output = queue.run(Operation::Release {
        reservation: super::reference(pool, message.message_id, &reservation.reservation_token),
        reason: "unsupported".to_string(),
    });

    assert!(wakeup_events(&output).is_empty());
    let dead_letter = queue.state.read_dead_letter(pool, message.message_id).unwrap();
    assert_eq!(dead_letter.reservation_token, Some(reservation.reservation_token));
    assert_eq!(dead_letter.release_reason.as_deref(), Some("unsupported"));
    assert!(output.events.iter().any(|event| matches!(event, Event::DeadLettered { .. })));
}

#[test]
fn renew_keeps_token_and_delivery_count() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.advance_seconds(20);

    let renewed = queue.renew(pool, message.message_id, &reservation.reservation_token);
    queue.advance_seconds(20);
    let acked = queue.ack(pool, message.message_id, &reservation.reservation_token);

    assert_eq!(renewed.status, OperationStatus::Accepted);
    assert_eq!(acked.status, OperationStatus::Accepted);
}

#[test]
fn renew_updates_message_time_only() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();
    queue.advance_seconds(4);

    queue.renew(pool, message.message_id, &reservation.reservation_token);

    let stored = queue.state.read_message(pool, message.message_id).unwrap();
    assert_eq!(stored.updated_at, queue.now());
    assert_eq!(stored.delivery_count, 1);
    assert_eq!(queue.state.next_lease_expiry(), Some(queue.now().saturating_add_micros(30_000_000)));
}

#[test]
fn expire_leases_orders_by_expiry_then_id() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let first = queue.enqueue(pool, "a").message_id;
    let second = queue.enqueue(pool, "b").message_id;
    queue.reserve(pool).unwrap();
    queue.advance_seconds(1);
    queue.reserve(pool).unwrap();
    queue.advance_seconds(60);

    let first_batch = queue.expire_leases(1, None);
    let second_batch = queue.expire_leases(1, None);

    assert_eq!(first_batch.redelivered[0].message_id, first);
    assert_eq!(second_batch.redelivered[0].message_id, second);
}

#[test]
fn expire_leases_leaves_live_leases() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "a");
    queue.reserve(pool).unwrap();
    queue.advance_seconds(29);

    let result = queue.expire_leases(100, None);

    assert!(result.redelivered.is_empty());
    assert!(result.dead_lettered.is_empty());
    assert_eq!(queue.state.pool_stats(pool).reserved, 1);
}

#[test]
fn expire_leases_wakes_each_pool_once() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let other_pool = Uuid::new_v4();
    queue.enqueue(pool, "a");
    queue.enqueue(pool, "b");
    queue.enqueue(other_pool, "c");
    queue.reserve(pool).unwrap();
    queue.reserve(pool).unwrap();
    queue.reserve(other_pool).unwrap();
    queue.advance_seconds(31);

    let output = queue.run(Operation::ExpireLeases {
        limit: 100,
        work_pool_id: None,
    });

    assert_eq!(queue.wakeup_sequence(pool), 3);
    assert_eq!(queue.wakeup_sequence(other_pool), 2);
    assert_eq!(wakeup_events(&output).len(), 2);
}

#[test]
fn expire_leases_dead_letter_keeps_token_and_lease() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "a");
    queue.policy.max_delivery_attempts = 1;
    let reservation = queue.reserve(pool).unwrap();
    let sequence = queue.wakeup_sequence(pool);
    queue.advance_seconds(31);

    let result = queue.expire_leases(100, None);

    let dead_letter = &result.dead_lettered[0];
    assert_eq!(dead_letter.message.message_id, message.message_id);
    assert_eq!(dead_letter.reservation_token.as_deref(), Some(reservation.reservation_token.as_str()));
    assert_eq!(dead_letter.lease_expires_at, Some(reservation.lease_expires_at));
    assert_eq!(dead_letter.moved_at, queue.now());
    assert_eq!(queue.wakeup_sequence(pool), sequence);
}
