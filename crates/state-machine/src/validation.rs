//! Input rules, checked by the leader before it proposes a command and again
//! in `apply`, so that a command that reaches the log invalid changes nothing
//! on any node.

use crate::command::{Command, Operation, Policy};
use crate::error::CommandError;

/// Upper bound on a request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// Upper bound on the kinds or preferred work queues of one reserve.
pub const MAX_RESERVE_FILTER_ENTRIES: usize = 256;

/// Checks every field of a command against the contract's rules.
pub fn validate_command(command: &Command) -> Result<(), CommandError> {
    if let Some(request_id) = &command.request_id {
        if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID_BYTES {
            return Err(CommandError::invalid(
                "request_id",
                format!("must be 1 to {MAX_REQUEST_ID_BYTES} bytes long"),
            ));
        }
    }
    validate_policy(&command.policy)?;
    validate_operation(&command.operation, &command.policy)
}

/// Checks the policy values a command carries.
pub fn validate_policy(policy: &Policy) -> Result<(), CommandError> {
    if policy.lease_us <= 0 {
        return Err(CommandError::invalid("lease_seconds", "must be greater than 0"));
    }
    if policy.max_delivery_attempts < 1 {
        return Err(CommandError::invalid("max_delivery_attempts", "must be at least 1"));
    }
    if matches!(policy.completed_retention_us, Some(retention_us) if retention_us < 0) {
        return Err(CommandError::invalid(
            "completed_idempotency_retention_seconds",
            "must be 0 or greater",
        ));
    }
    if policy.request_retention_us < 0 {
        return Err(CommandError::invalid("request_retention", "must be 0 or greater"));
    }
    Ok(())
}

/// Checks the fields of one operation.
pub fn validate_operation(operation: &Operation, policy: &Policy) -> Result<(), CommandError> {
    match operation {
        Operation::Enqueue(enqueue) => {
            if enqueue.idempotency_key.is_empty() {
                return Err(CommandError::invalid("idempotency_key", "must be non-empty"));
            }
            if enqueue.kind.is_empty() {
                return Err(CommandError::invalid("kind", "must be non-empty"));
            }
            let target_json = canonical_json_object(&enqueue.target_json)
                .map_err(|rule| CommandError::invalid("target", rule))?;
            let data_json = match &enqueue.data_json {
                Some(data_json) => canonical_json_object(data_json)
                    .map_err(|rule| CommandError::invalid("data", rule))?,
                None => String::new(),
            };
            let size = enqueue.kind.len()
                + enqueue.idempotency_key.len()
                + target_json.len()
                + data_json.len();
            if size > policy.max_message_bytes as usize {
                return Err(CommandError::invalid(
                    "message",
                    format!(
                        "kind, idempotency_key, target and data total {size} bytes, over the limit of {} bytes",
                        policy.max_message_bytes
                    ),
                ));
            }
            Ok(())
        }
        Operation::Reserve(reserve) => {
            if reserve.reservation_token.is_empty() {
                return Err(CommandError::invalid("reservation_token", "must be non-empty"));
            }
            if let Some(kinds) = &reserve.cleanup_kinds {
                if kinds.len() > MAX_RESERVE_FILTER_ENTRIES {
                    return Err(CommandError::invalid(
                        "cleanup_kinds",
                        format!("must list at most {MAX_RESERVE_FILTER_ENTRIES} kinds"),
                    ));
                }
            }
            if let Some(queues) = &reserve.preferred_work_queue_ids {
                if queues.len() > MAX_RESERVE_FILTER_ENTRIES {
                    return Err(CommandError::invalid(
                        "preferred_work_queue_ids",
                        format!("must list at most {MAX_RESERVE_FILTER_ENTRIES} work queues"),
                    ));
                }
            }
            Ok(())
        }
        Operation::Release { reason, .. } => {
            if reason.is_empty() {
                return Err(CommandError::invalid("reason", "must be non-empty"));
            }
            Ok(())
        }
        Operation::ExpireLeases { limit, .. } => {
            if *limit < 1 {
                return Err(CommandError::invalid("limit", "must be at least 1"));
            }
            Ok(())
        }
        Operation::Ack(_)
        | Operation::Renew(_)
        | Operation::WakeDispatchers { .. }
        | Operation::RedriveDeadLetters { .. }
        | Operation::PurgeDeadLetters { .. } => Ok(()),
    }
}

/// Parses JSON text that must be an object and returns it as compact text,
/// keys in their original order and numbers as written (an integer stays an
/// integer). Returns the broken rule otherwise.
pub fn canonical_json_object(text: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("must be valid JSON text: {error}"))?;
    if !value.is_object() {
        return Err("must be a JSON object".to_string());
    }
    Ok(value.to_string())
}
