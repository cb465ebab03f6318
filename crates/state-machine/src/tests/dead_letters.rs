use uuid::Uuid;

use super::{wakeup_events, Harness};
use crate::{Operation, Response};

/// Enqueues `count` messages and dead-letters each by one failed release.
fn dead_letter_messages(queue: &mut Harness, pool: Uuid, count: usize) -> Vec<Uuid> {
    queue.policy.max_delivery_attempts = 1;
    let mut ids = Vec::new();
    for index in 0..count {
        let message = queue.enqueue(pool, &format!("key-{index}"));
        let reservation = queue.reserve(pool).unwrap();
        queue.release(pool, message.message_id, &reservation.reservation_token, "failed");
        ids.push(message.message_id);
    }
    queue.policy.max_delivery_attempts = 3;
    ids
}

#[test]
fn list_dead_letters_pages_in_move_order() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let ids = dead_letter_messages(&mut queue, pool, 5);

    let first_page = queue.state.list_dead_letters(pool, None, 2);
    let second_page = queue.state.list_dead_letters(pool, first_page.next_cursor, 2);
    let last_page = queue.state.list_dead_letters(pool, second_page.next_cursor, 2);

    let listed: Vec<Uuid> = [&first_page, &second_page, &last_page]
        .iter()
        .flat_map(|page| page.dead_letters.iter().map(|dead_letter| dead_letter.message.message_id))
        .collect();
    assert_eq!(listed, ids);
    assert!(first_page.next_cursor.is_some());
    assert_eq!(last_page.next_cursor, None);
}

#[test]
fn full_last_page_has_no_cursor() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    dead_letter_messages(&mut queue, pool, 2);

    let page = queue.state.list_dead_letters(pool, None, 2);

    assert_eq!(page.dead_letters.len(), 2);
    assert_eq!(page.next_cursor, None);
}

#[test]
fn redrive_one_resets_delivery_count_and_wakes() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let ids = dead_letter_messages(&mut queue, pool, 2);
    let sequence = queue.wakeup_sequence(pool);

    let output = queue.run(Operation::RedriveDeadLetters {
        work_pool_id: pool,
        message_id: Some(ids[0]),
    });

    let Response::Redriven { messages } = output.response.clone() else {
        panic!("expected Redriven, got {:?}", output.response);
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].delivery_count, 0);
    assert_eq!(wakeup_events(&output), vec![sequence + 1]);
    assert!(queue.state.read_dead_letter(pool, ids[0]).is_none());
    assert!(queue.state.read_dead_letter(pool, ids[1]).is_some());
    let reservation = queue.reserve(pool).unwrap();
    assert_eq!(reservation.message.message_id, ids[0]);
    assert_eq!(reservation.message.delivery_count, 1);
}

#[test]
fn redrive_all_moves_every_dead_letter() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    dead_letter_messages(&mut queue, pool, 3);

    queue.run(Operation::RedriveDeadLetters {
        work_pool_id: pool,
        message_id: None,
    });

    let stats = queue.state.pool_stats(pool);
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.active, 3);
}

#[test]
fn redrive_of_unknown_message_changes_nothing() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    dead_letter_messages(&mut queue, pool, 1);
    let before = queue.state.clone();

    let output = queue.run(Operation::RedriveDeadLetters {
        work_pool_id: pool,
        message_id: Some(Uuid::new_v4()),
    });

    assert_eq!(output.response, Response::Redriven { messages: vec![] });
    assert_eq!(queue.state, before);
}

#[test]
fn purge_frees_message_id_and_key() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let ids = dead_letter_messages(&mut queue, pool, 2);

    let output = queue.run(Operation::PurgeDeadLetters {
        work_pool_id: pool,
        message_id: None,
    });

    assert_eq!(output.response, Response::Purged { count: 2 });
    assert!(queue.state.read_dead_letter(pool, ids[0]).is_none());
    let fresh = queue.enqueue(pool, "key-0");
    assert_ne!(fresh.message_id, ids[0]);
    assert_eq!(fresh.delivery_count, 0);
}

#[test]
fn pool_stats_count_each_state() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    dead_letter_messages(&mut queue, pool, 1);
    let acked = queue.enqueue(pool, "acked");
    let reservation = queue.reserve(pool).unwrap();
    queue.ack(pool, acked.message_id, &reservation.reservation_token);
    queue.enqueue(pool, "reserved");
    queue.reserve(pool).unwrap();
    queue.enqueue(pool, "visible");

    let stats = queue.state.pool_stats(pool);

    assert_eq!(stats.active, 2);
    assert_eq!(stats.reserved, 1);
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(stats.tombstones, 1);
    assert_eq!(stats.wakeup_sequence, queue.wakeup_sequence(pool));
}
