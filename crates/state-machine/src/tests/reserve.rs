use uuid::Uuid;

use super::{Harness, CLAIM, TEARDOWN};
use crate::{OperationStatus, Policy};

fn enqueue_in(queue: &mut Harness, pool: Uuid, key: &str, kind: &str, work_queue: Option<Uuid>) -> Uuid {
    let mut request = Harness::enqueue_request(pool, Uuid::new_v4(), key);
    request.kind = kind.to_string();
    request.work_queue_id = work_queue;
    queue.enqueue_with(request).message_id
}

#[test]
fn reserve_takes_oldest_first() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let first = queue.enqueue(pool, "a").message_id;
    let second = queue.enqueue(pool, "b").message_id;
    let third = queue.enqueue(pool, "c").message_id;

    let order: Vec<Uuid> = (0..3).map(|_| queue.reserve(pool).unwrap().message.message_id).collect();

    assert_eq!(order, vec![first, second, third]);
}

#[test]
fn reserve_keeps_enqueue_order_for_released_message() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let first = queue.enqueue(pool, "a").message_id;
    let second = queue.enqueue(pool, "b").message_id;
    let reservation = queue.reserve(pool).unwrap();
    queue.release(pool, first, &reservation.reservation_token, "busy");

    assert_eq!(queue.reserve(pool).unwrap().message.message_id, first);
    assert_eq!(queue.reserve(pool).unwrap().message.message_id, second);
}

#[test]
fn reserve_filters_by_kind() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    enqueue_in(&mut queue, pool, "a", TEARDOWN, None);
    let claim = enqueue_in(&mut queue, pool, "b", CLAIM, None);

    let reservation = queue.reserve_filtered(pool, Some(vec![CLAIM]), None, true).unwrap();

    assert_eq!(reservation.message.message_id, claim);
    assert_eq!(queue.reserve_filtered(pool, Some(vec![CLAIM]), None, true), None);
}

#[test]
fn reserve_with_empty_kind_list_matches_nothing() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "a");

    assert_eq!(queue.reserve_filtered(pool, Some(vec![]), None, true), None);
}

#[test]
fn reserve_without_fallback_stays_in_preferred_queues() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let preferred = Uuid::new_v4();
    enqueue_in(&mut queue, pool, "a", TEARDOWN, Some(Uuid::new_v4()));
    enqueue_in(&mut queue, pool, "b", TEARDOWN, None);

    assert_eq!(queue.reserve_filtered(pool, None, Some(vec![preferred]), false), None);
    assert!(queue.reserve_filtered(pool, None, Some(vec![preferred]), true).is_some());
}

#[test]
fn reserve_prefers_queue_over_older_message() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let preferred = Uuid::new_v4();
    enqueue_in(&mut queue, pool, "old", TEARDOWN, None);
    let newer = enqueue_in(&mut queue, pool, "new", TEARDOWN, Some(preferred));

    let reservation = queue.reserve_filtered(pool, None, Some(vec![preferred]), true).unwrap();

    assert_eq!(reservation.message.message_id, newer);
}

#[test]
fn reserve_combines_kind_and_queue_filters() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let first_queue = Uuid::new_v4();
    let second_queue = Uuid::new_v4();
    enqueue_in(&mut queue, pool, "a", TEARDOWN, Some(first_queue));
    let wanted = enqueue_in(&mut queue, pool, "b", CLAIM, Some(second_queue));
    enqueue_in(&mut queue, pool, "c", CLAIM, None);

    let reservation = queue
        .reserve_filtered(pool, Some(vec![CLAIM]), Some(vec![first_queue, second_queue]), false)
        .unwrap();

    assert_eq!(reservation.message.message_id, wanted);
}

#[test]
fn reserve_skips_dead_lettered_message() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let first = queue.enqueue(pool, "a").message_id;
    let second = queue.enqueue(pool, "b").message_id;
    let reservation = queue.reserve(pool).unwrap();
    queue.release(pool, first, &reservation.reservation_token, "busy");

    // A caller lowers the maximum: the first message already used its one
    // attempt, so reserve dead-letters it and hands out the second.
    queue.policy.max_delivery_attempts = 1;
    let next = queue.reserve(pool).unwrap();

    assert_eq!(next.message.message_id, second);
    let dead_letter = queue.state.read_dead_letter(pool, first).unwrap();
    assert_eq!(dead_letter.reason, "max_delivery_attempts_reached");
    assert_eq!(dead_letter.reservation_token, None);
    assert_eq!(dead_letter.final_delivery_count, 1);
}

#[test]
fn reserve_ignores_other_pools() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(Uuid::new_v4(), "a");

    assert_eq!(queue.reserve(pool), None);
}

#[test]
fn reserve_expires_due_lease_before_choosing() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "a").message_id;
    queue.policy.lease_us = 1_000_000;
    let first = queue.reserve(pool).unwrap();

    queue.advance_seconds(1);
    let second = queue.reserve(pool).unwrap();

    assert_eq!(second.message.message_id, message);
    assert_eq!(second.message.delivery_count, 2);
    let stale = queue.ack(pool, message, &first.reservation_token);
    assert_eq!(stale.status, OperationStatus::InvalidToken);
}

#[test]
fn reserve_lease_is_exact_to_the_microsecond() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "a");
    queue.now_us += 7;
    queue.policy = Policy {
        lease_us: 2_500_001,
        ..queue.policy
    };

    let reservation = queue.reserve(pool).unwrap();

    assert_eq!(reservation.lease_expires_at.as_micros(), queue.now_us + 2_500_001);
    assert_eq!(reservation.message.updated_at, queue.now());
}
