//! JSON rendering of queue responses, with the contract's field names.
//!
//! `target` and `data` are printed as JSON values, not as the text they travel
//! in, and timestamps as RFC 3339 in UTC with microseconds. The shapes follow
//! Prefect's models: a reservation is the message's fields plus its own
//! (`CleanupQueueReservation` extends `CleanupQueueMessage`), and a dead letter
//! nests the message under `message` (`CleanupQueueDeadLetter`).

use chrono::{DateTime, SecondsFormat};
use raftq_client::proto::{CleanupMessage, DeadLetter, OperationResult, Reservation};
use serde_json::{json, Map, Value};

/// Formats a protobuf timestamp as RFC 3339 with microseconds, or `null`.
pub fn timestamp(timestamp: Option<&prost_types::Timestamp>) -> Value {
    match timestamp {
        Some(timestamp) => Value::String(rfc3339(timestamp)),
        None => Value::Null,
    }
}

/// Formats a protobuf timestamp as RFC 3339 with microseconds. A value out of
/// chrono's range is printed as its raw seconds and nanoseconds instead.
pub fn rfc3339(timestamp: &prost_types::Timestamp) -> String {
    let nanos = u32::try_from(timestamp.nanos).unwrap_or(0);
    match DateTime::from_timestamp(timestamp.seconds, nanos) {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => format!("{}s+{}ns", timestamp.seconds, timestamp.nanos),
    }
}

/// Parses the JSON text of `target` or `data` into a value. Text that is not
/// JSON, which the server never returns, is kept as a string.
fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn message_fields(message: &CleanupMessage) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("message_id".into(), json!(message.message_id));
    fields.insert("idempotency_key".into(), json!(message.idempotency_key));
    fields.insert("work_pool_id".into(), json!(message.work_pool_id));
    fields.insert("work_queue_id".into(), json!(message.work_queue_id));
    fields.insert("kind".into(), json!(message.kind));
    fields.insert("target".into(), json_text(&message.target));
    fields.insert("data".into(), json_text(&message.data));
    fields.insert("created_at".into(), timestamp(message.created_at.as_ref()));
    fields.insert("updated_at".into(), timestamp(message.updated_at.as_ref()));
    fields.insert("delivery_count".into(), json!(message.delivery_count));
    fields
}

pub fn message(message: &CleanupMessage) -> Value {
    Value::Object(message_fields(message))
}

pub fn optional_message(message_value: Option<&CleanupMessage>) -> Value {
    message_value.map(message).unwrap_or(Value::Null)
}

pub fn reservation(reservation: &Reservation) -> Value {
    let mut fields = reservation.message.as_ref().map(message_fields).unwrap_or_default();
    fields.insert("reservation_token".into(), json!(reservation.reservation_token));
    fields.insert("lease_expires_at".into(), timestamp(reservation.lease_expires_at.as_ref()));
    Value::Object(fields)
}

pub fn dead_letter(dead_letter: &DeadLetter) -> Value {
    let mut fields = Map::new();
    fields.insert("message".into(), optional_message(dead_letter.message.as_ref()));
    fields.insert("reason".into(), json!(dead_letter.reason));
    fields.insert("final_delivery_count".into(), json!(dead_letter.final_delivery_count));
    fields.insert("moved_at".into(), timestamp(dead_letter.moved_at.as_ref()));
    fields.insert("reservation_token".into(), json!(dead_letter.reservation_token));
    fields.insert("lease_expires_at".into(), timestamp(dead_letter.lease_expires_at.as_ref()));
    fields.insert("release_reason".into(), json!(dead_letter.release_reason));
    Value::Object(fields)
}

pub fn operation_result(result: &OperationResult) -> Value {
    json!({
        "message_id": result.message_id,
        "operation": result.operation,
        "status": result.status,
        "reason": result.reason,
        "lease_expires_at": timestamp(result.lease_expires_at.as_ref()),
        "dead_letter": result.dead_letter.as_ref().map(dead_letter),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_message() -> CleanupMessage {
        CleanupMessage {
            message_id: "6f1c1d4e-8a7b-4c55-9d3e-1f2a3b4c5d6e".into(),
            idempotency_key: "flow-run-1".into(),
            work_pool_id: "0b7e7c1a-2f43-4f0e-8a57-3c1d2e4f5a6b".into(),
            work_queue_id: None,
            kind: "pending_claim_teardown.v1".into(),
            target: r#"{"flow_run_id":"abc","attempt":3}"#.into(),
            data: "{}".into(),
            created_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_456_000 }),
            updated_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            delivery_count: 0,
        }
    }

    #[test]
    fn timestamp_has_microseconds() {
        let time = prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_456_000 };
        assert_eq!(rfc3339(&time), "2023-11-14T22:13:20.123456Z");
    }

    #[test]
    fn whole_second_keeps_six_digits() {
        let time = prost_types::Timestamp { seconds: 0, nanos: 0 };
        assert_eq!(rfc3339(&time), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn message_target_is_json_value() {
        let value = message(&sample_message());
        assert_eq!(value["target"]["attempt"], json!(3));
        assert!(value["target"]["attempt"].is_i64());
        assert_eq!(value["data"], json!({}));
        assert_eq!(value["work_queue_id"], Value::Null);
        assert_eq!(value["created_at"], json!("2023-11-14T22:13:20.123456Z"));
    }

    #[test]
    fn reservation_flattens_message_fields() {
        let value = reservation(&Reservation {
            message: Some(sample_message()),
            reservation_token: "token".into(),
            lease_expires_at: Some(prost_types::Timestamp { seconds: 1_700_000_030, nanos: 0 }),
        });
        assert_eq!(value["message_id"], json!("6f1c1d4e-8a7b-4c55-9d3e-1f2a3b4c5d6e"));
        assert_eq!(value["reservation_token"], json!("token"));
        assert_eq!(value["lease_expires_at"], json!("2023-11-14T22:13:50.000000Z"));
    }

    #[test]
    fn dead_letter_nests_message() {
        let value = dead_letter(&DeadLetter {
            message: Some(sample_message()),
            reason: "max_delivery_attempts_reached".into(),
            final_delivery_count: 3,
            moved_at: Some(prost_types::Timestamp { seconds: 1_700_000_040, nanos: 0 }),
            reservation_token: None,
            lease_expires_at: None,
            release_reason: Some("failed".into()),
        });
        assert_eq!(value["message"]["message_id"], json!("6f1c1d4e-8a7b-4c55-9d3e-1f2a3b4c5d6e"));
        assert_eq!(value["final_delivery_count"], json!(3));
        assert_eq!(value["reservation_token"], Value::Null);
        assert_eq!(value["release_reason"], json!("failed"));
        assert!(value.get("message_id").is_none());
    }
}
