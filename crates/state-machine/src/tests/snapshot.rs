use uuid::Uuid;

use super::Harness;
use crate::{DecodeError, QueueState, SNAPSHOT_FORMAT_VERSION};

#[test]
fn snapshot_round_trip_keeps_every_index() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let acked = queue.enqueue(pool, "a");
    let reservation = queue.reserve(pool).unwrap();
    queue.ack(pool, acked.message_id, &reservation.reservation_token);
    queue.enqueue(pool, "b");
    queue.reserve(pool).unwrap();
    queue.enqueue(pool, "c");

    let bytes = queue.state.to_snapshot();
    let restored = QueueState::from_snapshot(&bytes).unwrap();

    assert_eq!(bytes[0], SNAPSHOT_FORMAT_VERSION);
    assert_eq!(restored, queue.state);
    restored.validate().unwrap();
}

#[test]
fn snapshot_with_unknown_version_is_rejected() {
    let mut bytes = QueueState::new().to_snapshot();
    bytes[0] = SNAPSHOT_FORMAT_VERSION + 1;

    let error = QueueState::from_snapshot(&bytes).unwrap_err();

    assert!(matches!(error, DecodeError::UnsupportedVersion { .. }));
}

#[test]
fn empty_snapshot_is_rejected() {
    assert!(matches!(QueueState::from_snapshot(&[]), Err(DecodeError::Empty)));
}

#[test]
fn command_encoding_round_trips() {
    let mut queue = Harness::new();
    let command = queue.command(crate::Operation::Enqueue(Harness::enqueue_request(
        Uuid::new_v4(),
        Uuid::new_v4(),
        "a",
    )));
    queue.advance_seconds(1);

    let decoded = crate::Command::decode(&command.encode()).unwrap();

    assert_eq!(decoded, command);
}
