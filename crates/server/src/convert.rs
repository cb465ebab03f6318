//! Conversions between the wire types of `raftq.v1` and the state machine's
//! types, kept in one place so that the handlers only assemble responses.
//!
//! Input errors are [`CommandError::InvalidInput`] values naming the field as
//! it is spelled on the wire, so that a client sees which field to fix.

use prost_types::Timestamp as ProtoTimestamp;
use raftq_proto::v1 as proto;
use raftq_state_machine::{
    CommandError, DeadLetter, Enqueue, LeaseExpiryResult, Message, Operation, OperationResult,
    Reservation, ReservationRef, Reserve, Timestamp, Wakeup,
};
use uuid::Uuid;

/// Default `limit` of an `ExpireLeases` request that leaves it unset.
pub const DEFAULT_EXPIRE_LIMIT: i64 = 100;

const MICROS_PER_SECOND: i64 = 1_000_000;
const NANOS_PER_MICRO: i32 = 1_000;

fn invalid(field: &str, rule: impl Into<String>) -> CommandError {
    CommandError::InvalidInput {
        field: field.to_string(),
        rule: rule.into(),
    }
}

/// Parses a UUID field.
pub fn parse_uuid(field: &str, text: &str) -> Result<Uuid, CommandError> {
    Uuid::parse_str(text).map_err(|_| invalid(field, "must be a UUID"))
}

fn parse_optional_uuid(field: &str, text: Option<&str>) -> Result<Option<Uuid>, CommandError> {
    text.map(|text| parse_uuid(field, text)).transpose()
}

/// Converts a state timestamp to the wire.
pub fn timestamp_to_proto(timestamp: Timestamp) -> ProtoTimestamp {
    let micros = timestamp.as_micros();
    ProtoTimestamp {
        seconds: micros.div_euclid(MICROS_PER_SECOND),
        // The remainder is below 10^6, so the product fits an i32.
        nanos: (micros.rem_euclid(MICROS_PER_SECOND) as i32) * NANOS_PER_MICRO,
    }
}

/// Converts a wire timestamp to microseconds since the epoch.
///
/// Sub-microsecond digits are dropped (rounded toward the past), because the
/// state keeps microseconds; a timestamp built from a microsecond value
/// converts back exactly.
pub fn timestamp_from_proto(field: &str, timestamp: &ProtoTimestamp) -> Result<Timestamp, CommandError> {
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(invalid(field, "nanos must be between 0 and 999999999"));
    }
    let micros = timestamp
        .seconds
        .checked_mul(MICROS_PER_SECOND)
        .and_then(|micros| micros.checked_add(i64::from(timestamp.nanos / NANOS_PER_MICRO)))
        .ok_or_else(|| invalid(field, "must be within the range of microseconds in an i64"))?;
    Ok(Timestamp::from_micros(micros))
}

pub fn message_to_proto(message: Message) -> proto::CleanupMessage {
    proto::CleanupMessage {
        message_id: message.message_id.to_string(),
        idempotency_key: message.idempotency_key,
        work_pool_id: message.work_pool_id.to_string(),
        work_queue_id: message.work_queue_id.map(|id| id.to_string()),
        kind: message.kind,
        target: message.target_json,
        data: message.data_json,
        created_at: Some(timestamp_to_proto(message.created_at)),
        updated_at: Some(timestamp_to_proto(message.updated_at)),
        delivery_count: message.delivery_count,
    }
}

pub fn reservation_to_proto(reservation: Reservation) -> proto::Reservation {
    proto::Reservation {
        message: Some(message_to_proto(reservation.message)),
        reservation_token: reservation.reservation_token,
        lease_expires_at: Some(timestamp_to_proto(reservation.lease_expires_at)),
    }
}

pub fn dead_letter_to_proto(dead_letter: DeadLetter) -> proto::DeadLetter {
    proto::DeadLetter {
        message: Some(message_to_proto(dead_letter.message)),
        reason: dead_letter.reason,
        final_delivery_count: dead_letter.final_delivery_count,
        moved_at: Some(timestamp_to_proto(dead_letter.moved_at)),
        reservation_token: dead_letter.reservation_token,
        lease_expires_at: dead_letter.lease_expires_at.map(timestamp_to_proto),
        release_reason: dead_letter.release_reason,
    }
}

pub fn operation_result_to_proto(result: OperationResult) -> proto::OperationResult {
    proto::OperationResult {
        message_id: result.message_id.to_string(),
        operation: result.operation.as_str().to_string(),
        status: result.status.as_str().to_string(),
        lease_expires_at: result.lease_expires_at.map(timestamp_to_proto),
        reason: result.reason,
        dead_letter: result.dead_letter.map(dead_letter_to_proto),
    }
}

pub fn lease_expiry_to_proto(result: LeaseExpiryResult) -> proto::ExpireLeasesResponse {
    proto::ExpireLeasesResponse {
        redelivered: result.redelivered.into_iter().map(message_to_proto).collect(),
        dead_lettered: result.dead_lettered.into_iter().map(dead_letter_to_proto).collect(),
    }
}

pub fn wakeup_to_proto(wakeup: Wakeup) -> proto::WakeupResponse {
    proto::WakeupResponse {
        work_pool_id: wakeup.work_pool_id.to_string(),
        sequence: wakeup.sequence,
    }
}

pub fn enqueue_operation(request: &proto::EnqueueRequest) -> Result<Operation, CommandError> {
    Ok(Operation::Enqueue(Enqueue {
        message_id: parse_uuid("message_id", &request.message_id)?,
        idempotency_key: request.idempotency_key.clone(),
        work_pool_id: parse_uuid("work_pool_id", &request.work_pool_id)?,
        work_queue_id: parse_optional_uuid("work_queue_id", request.work_queue_id.as_deref())?,
        kind: request.kind.clone(),
        target_json: request.target.clone(),
        data_json: request.data.clone(),
    }))
}

/// Builds a reserve with the token the leader drew for it.
pub fn reserve_operation(
    request: &proto::ReserveRequest,
    reservation_token: String,
) -> Result<Operation, CommandError> {
    let preferred_work_queue_ids = match &request.preferred_work_queue_ids {
        None => None,
        Some(filter) => Some(
            filter
                .work_queue_ids
                .iter()
                .map(|id| parse_uuid("preferred_work_queue_ids", id))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Operation::Reserve(Reserve {
        work_pool_id: parse_uuid("work_pool_id", &request.work_pool_id)?,
        cleanup_kinds: request.cleanup_kinds.as_ref().map(|filter| filter.kinds.clone()),
        preferred_work_queue_ids,
        allow_fallback_to_any_queue: request.allow_fallback_to_any_queue.unwrap_or(true),
        reservation_token,
    }))
}

fn reservation_ref(
    work_pool_id: &str,
    message_id: &str,
    reservation_token: &str,
) -> Result<ReservationRef, CommandError> {
    Ok(ReservationRef {
        work_pool_id: parse_uuid("work_pool_id", work_pool_id)?,
        message_id: parse_uuid("message_id", message_id)?,
        reservation_token: reservation_token.to_string(),
    })
}

pub fn ack_operation(request: &proto::ReservationRequest) -> Result<Operation, CommandError> {
    let reservation = reservation_ref(
        &request.work_pool_id,
        &request.message_id,
        &request.reservation_token,
    )?;
    Ok(Operation::Ack(reservation))
}

pub fn renew_operation(request: &proto::ReservationRequest) -> Result<Operation, CommandError> {
    let reservation = reservation_ref(
        &request.work_pool_id,
        &request.message_id,
        &request.reservation_token,
    )?;
    Ok(Operation::Renew(reservation))
}

pub fn release_operation(request: &proto::ReleaseRequest) -> Result<Operation, CommandError> {
    let reservation = reservation_ref(
        &request.work_pool_id,
        &request.message_id,
        &request.reservation_token,
    )?;
    Ok(Operation::Release {
        reservation,
        reason: request.reason.clone(),
    })
}

pub fn expire_leases_operation(request: &proto::ExpireLeasesRequest) -> Result<Operation, CommandError> {
    Ok(Operation::ExpireLeases {
        limit: request.limit.unwrap_or(DEFAULT_EXPIRE_LIMIT),
        work_pool_id: parse_optional_uuid("work_pool_id", request.work_pool_id.as_deref())?,
    })
}

pub fn wake_dispatchers_operation(request: &proto::WakeDispatchersRequest) -> Result<Operation, CommandError> {
    Ok(Operation::WakeDispatchers {
        work_pool_id: parse_uuid("work_pool_id", &request.work_pool_id)?,
    })
}

pub fn redrive_operation(request: &proto::RedriveDeadLettersRequest) -> Result<Operation, CommandError> {
    Ok(Operation::RedriveDeadLetters {
        work_pool_id: parse_uuid("work_pool_id", &request.work_pool_id)?,
        message_id: parse_optional_uuid("message_id", request.message_id.as_deref())?,
    })
}

pub fn purge_operation(request: &proto::PurgeDeadLettersRequest) -> Result<Operation, CommandError> {
    Ok(Operation::PurgeDeadLetters {
        work_pool_id: parse_uuid("work_pool_id", &request.work_pool_id)?,
        message_id: parse_optional_uuid("message_id", request.message_id.as_deref())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftq_state_machine::{OperationStatus, ReservationOperation};

    fn field_of(error: CommandError) -> String {
        match error {
            CommandError::InvalidInput { field, .. } => field,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn timestamp_round_trips_to_the_microsecond() {
        for micros in [0, 1, 999_999, 1_000_000, 1_733_340_000_123_456, -1, -1_000_001] {
            let timestamp = Timestamp::from_micros(micros);
            let wire = timestamp_to_proto(timestamp);
            assert!((0..1_000_000_000).contains(&wire.nanos), "nanos out of range for {micros}");
            assert_eq!(timestamp_from_proto("t", &wire).unwrap(), timestamp);
        }
    }

    #[test]
    fn timestamp_drops_sub_microsecond_digits() {
        let wire = ProtoTimestamp {
            seconds: 10,
            nanos: 1_999,
        };
        assert_eq!(
            timestamp_from_proto("t", &wire).unwrap(),
            Timestamp::from_micros(10_000_001)
        );
    }

    #[test]
    fn timestamp_rejects_bad_nanos_and_overflow() {
        let negative_nanos = ProtoTimestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(field_of(timestamp_from_proto("options.now", &negative_nanos).unwrap_err()), "options.now");

        let huge = ProtoTimestamp {
            seconds: i64::MAX / 10,
            nanos: 0,
        };
        let error = timestamp_from_proto("options.now", &huge).unwrap_err();
        assert!(error.to_string().contains("options.now"), "{error}");
    }

    #[test]
    fn uuid_error_names_the_field() {
        let error = parse_uuid("work_pool_id", "not-a-uuid").unwrap_err();
        assert_eq!(error.to_string(), "invalid work_pool_id: must be a UUID");
    }

    #[test]
    fn enqueue_request_converts_every_field() {
        let message_id = Uuid::new_v4();
        let pool = Uuid::new_v4();
        let queue = Uuid::new_v4();
        let request = proto::EnqueueRequest {
            options: None,
            message_id: message_id.to_string(),
            idempotency_key: "key".into(),
            work_pool_id: pool.to_string(),
            work_queue_id: Some(queue.to_string()),
            kind: "kind.v1".into(),
            target: r#"{"a":1}"#.into(),
            data: None,
        };
        let Operation::Enqueue(enqueue) = enqueue_operation(&request).unwrap() else {
            panic!("expected an enqueue");
        };
        assert_eq!(enqueue.message_id, message_id);
        assert_eq!(enqueue.work_pool_id, pool);
        assert_eq!(enqueue.work_queue_id, Some(queue));
        assert_eq!(enqueue.target_json, r#"{"a":1}"#);
        assert_eq!(enqueue.data_json, None);
    }

    #[test]
    fn enqueue_request_with_bad_uuids_names_each_field() {
        let valid = proto::EnqueueRequest {
            message_id: Uuid::new_v4().to_string(),
            work_pool_id: Uuid::new_v4().to_string(),
            ..Default::default()
        };

        let bad_message = proto::EnqueueRequest {
            message_id: "x".into(),
            ..valid.clone()
        };
        assert_eq!(field_of(enqueue_operation(&bad_message).unwrap_err()), "message_id");

        let bad_pool = proto::EnqueueRequest {
            work_pool_id: "".into(),
            ..valid.clone()
        };
        assert_eq!(field_of(enqueue_operation(&bad_pool).unwrap_err()), "work_pool_id");

        let bad_queue = proto::EnqueueRequest {
            work_queue_id: Some("".into()),
            ..valid
        };
        assert_eq!(field_of(enqueue_operation(&bad_queue).unwrap_err()), "work_queue_id");
    }

    #[test]
    fn reserve_fallback_defaults_to_true() {
        let request = proto::ReserveRequest {
            work_pool_id: Uuid::new_v4().to_string(),
            ..Default::default()
        };
        let Operation::Reserve(reserve) = reserve_operation(&request, "token".into()).unwrap() else {
            panic!("expected a reserve");
        };
        assert!(reserve.allow_fallback_to_any_queue);
        assert_eq!(reserve.cleanup_kinds, None);
        assert_eq!(reserve.preferred_work_queue_ids, None);
        assert_eq!(reserve.reservation_token, "token");
    }

    #[test]
    fn reserve_keeps_an_empty_filter_apart_from_none() {
        let request = proto::ReserveRequest {
            work_pool_id: Uuid::new_v4().to_string(),
            cleanup_kinds: Some(proto::KindFilter { kinds: vec![] }),
            preferred_work_queue_ids: Some(proto::WorkQueueFilter {
                work_queue_ids: vec!["nope".into()],
            }),
            allow_fallback_to_any_queue: Some(false),
            ..Default::default()
        };
        assert_eq!(
            field_of(reserve_operation(&request, "t".into()).unwrap_err()),
            "preferred_work_queue_ids"
        );

        let request = proto::ReserveRequest {
            preferred_work_queue_ids: None,
            ..request
        };
        let Operation::Reserve(reserve) = reserve_operation(&request, "t".into()).unwrap() else {
            panic!("expected a reserve");
        };
        assert_eq!(reserve.cleanup_kinds, Some(vec![]));
        assert!(!reserve.allow_fallback_to_any_queue);
    }

    #[test]
    fn expire_leases_limit_defaults_to_100() {
        let operation = expire_leases_operation(&proto::ExpireLeasesRequest::default()).unwrap();
        assert_eq!(
            operation,
            Operation::ExpireLeases {
                limit: 100,
                work_pool_id: None
            }
        );
    }

    #[test]
    fn operation_result_uses_wire_names() {
        let message_id = Uuid::new_v4();
        let result = OperationResult {
            message_id,
            operation: ReservationOperation::Release,
            status: OperationStatus::InvalidToken,
            lease_expires_at: None,
            reason: Some("reservation_token_mismatch".into()),
            dead_letter: None,
        };
        let wire = operation_result_to_proto(result);
        assert_eq!(wire.message_id, message_id.to_string());
        assert_eq!(wire.operation, "release");
        assert_eq!(wire.status, "invalid_token");
        assert_eq!(wire.reason.as_deref(), Some("reservation_token_mismatch"));
        assert!(wire.lease_expires_at.is_none());
    }
}
