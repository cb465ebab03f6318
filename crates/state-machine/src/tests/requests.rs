use uuid::Uuid;

use super::Harness;
use crate::{CommandError, Operation, Reserve, Response};

fn reserve_command(queue: &mut Harness, pool: Uuid, request_id: &str) -> crate::Command {
    let reservation_token = queue.next_token();
    let mut command = queue.command(Operation::Reserve(Reserve {
        work_pool_id: pool,
        cleanup_kinds: None,
        preferred_work_queue_ids: None,
        allow_fallback_to_any_queue: true,
        reservation_token,
    }));
    command.request_id = Some(request_id.to_string());
    command
}

#[test]
fn repeated_reserve_returns_same_reservation() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "a");
    queue.enqueue(pool, "b");

    let command = reserve_command(&mut queue, pool, "request-1");

    let first = queue.apply(&command);
    // The retry arrives with a new token, as a new leader would draw one.
    let command = reserve_command(&mut queue, pool, "request-1");
    let retry = queue.apply(&command);

    assert_eq!(retry.response, first.response);
    assert!(retry.replayed);
    assert!(retry.events.is_empty());
    assert_eq!(queue.state.pool_stats(pool).reserved, 1);
}

#[test]
fn request_id_expires_after_retention() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "a");
    queue.enqueue(pool, "b");
    queue.policy.request_retention_us = 10_000_000;

    let command = reserve_command(&mut queue, pool, "request-1");

    let first = queue.apply(&command);
    queue.advance_seconds(10);
    let command = reserve_command(&mut queue, pool, "request-1");
    let later = queue.apply(&command);

    assert!(!later.replayed);
    assert_ne!(later.response, first.response);
    assert_eq!(queue.state.pool_stats(pool).reserved, 2);
}

#[test]
fn request_id_reused_for_other_operation_is_rejected() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    queue.enqueue(pool, "a");
    let command = reserve_command(&mut queue, pool, "request-1");
    queue.apply(&command);
    let before = queue.state.clone();

    let mut wake = queue.command(Operation::WakeDispatchers { work_pool_id: pool });
    wake.request_id = Some("request-1".to_string());
    let output = queue.apply(&wake);

    assert!(matches!(
        output.response,
        Response::Rejected(CommandError::RequestIdReused { .. })
    ));
    assert_eq!(queue.state, before);
}

#[test]
fn repeated_enqueue_wakes_once() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let mut command = queue.command(Operation::Enqueue(Harness::enqueue_request(pool, Uuid::new_v4(), "a")));
    command.request_id = Some("enqueue-1".to_string());

    queue.apply(&command);
    queue.apply(&command);

    assert_eq!(queue.wakeup_sequence(pool), 1);
}
