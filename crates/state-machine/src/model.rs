//! The objects of the queue contract, as the state machine returns them.
//!
//! Field names follow Prefect's `WorkerCleanupQueue` models so that the wire
//! format and the Python adapter can map them one to one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::time::Timestamp;

/// An active cleanup message, or the snapshot of one kept in a tombstone or a
/// dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: Uuid,
    pub idempotency_key: String,
    pub work_pool_id: Uuid,
    pub work_queue_id: Option<Uuid>,
    pub kind: String,
    /// A JSON object as compact text. Text rather than a parsed value because
    /// bincode cannot decode self-describing types, and because the text is
    /// what the caller gets back byte for byte.
    pub target_json: String,
    /// A JSON object as compact text, `{}` when the producer sent none.
    pub data_json: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Committed reservations so far.
    pub delivery_count: u32,
}

/// A message handed to one holder, with the token that fences its follow-up
/// operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub message: Message,
    pub reservation_token: String,
    pub lease_expires_at: Timestamp,
}

/// A message that left active delivery for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub message: Message,
    pub reason: String,
    pub final_delivery_count: u32,
    pub moved_at: Timestamp,
    /// The token of the reservation that was live at the move, if any.
    pub reservation_token: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    /// The holder's reason when a release caused the move.
    pub release_reason: Option<String>,
}

/// The follow-up operations on a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReservationOperation {
    Ack,
    Release,
    Renew,
}

impl ReservationOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationOperation::Ack => "ack",
            ReservationOperation::Release => "release",
            ReservationOperation::Renew => "renew",
        }
    }
}

/// Outcome of `ack`, `release` and `renew`.
///
/// The variants after `Accepted` are listed in the order the contract checks
/// them. They are expected outcomes, not faults, so they are values and not
/// errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationStatus {
    Accepted,
    NotFound,
    Unauthorized,
    NotCurrent,
    InvalidToken,
    Expired,
    DeadLettered,
    Error,
}

impl OperationStatus {
    /// Returns the contract's wire name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Accepted => "accepted",
            OperationStatus::NotFound => "not_found",
            OperationStatus::Unauthorized => "unauthorized",
            OperationStatus::NotCurrent => "not_current",
            OperationStatus::InvalidToken => "invalid_token",
            OperationStatus::Expired => "expired",
            OperationStatus::DeadLettered => "dead_lettered",
            OperationStatus::Error => "error",
        }
    }
}

/// Reasons with fixed wire names.
pub mod reason {
    pub const MESSAGE_NOT_FOUND: &str = "message_not_found";
    pub const NO_ACTIVE_RESERVATION: &str = "no_active_reservation";
    pub const RESERVATION_TOKEN_MISMATCH: &str = "reservation_token_mismatch";
    pub const LEASE_EXPIRED: &str = "lease_expired";
    pub const MAX_DELIVERY_ATTEMPTS_REACHED: &str = "max_delivery_attempts_reached";
}

/// Result of `ack`, `release` or `renew`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationResult {
    pub message_id: Uuid,
    pub operation: ReservationOperation,
    pub status: OperationStatus,
    /// Set only on an accepted renew.
    pub lease_expires_at: Option<Timestamp>,
    /// Set whenever the status is not `Accepted`.
    pub reason: Option<String>,
    /// Set when the status is `DeadLettered`.
    pub dead_letter: Option<DeadLetter>,
}

impl OperationResult {
    pub(crate) fn rejected(
        operation: ReservationOperation,
        message_id: Uuid,
        status: OperationStatus,
        reason: &str,
    ) -> Self {
        OperationResult {
            message_id,
            operation,
            status,
            lease_expires_at: None,
            reason: Some(reason.to_string()),
            dead_letter: None,
        }
    }

    pub(crate) fn accepted(operation: ReservationOperation, message_id: Uuid) -> Self {
        OperationResult {
            message_id,
            operation,
            status: OperationStatus::Accepted,
            lease_expires_at: None,
            reason: None,
            dead_letter: None,
        }
    }
}

/// Result of `expire_leases`: the messages made visible again and the ones
/// that reached the maximum delivery attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseExpiryResult {
    pub redelivered: Vec<Message>,
    pub dead_lettered: Vec<DeadLetter>,
}

/// A pool's wakeup sequence after an advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wakeup {
    pub work_pool_id: Uuid,
    pub sequence: u64,
}

/// Counts of one pool's messages by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Active messages, reserved or not.
    pub active: u64,
    /// Active messages with a live reservation.
    pub reserved: u64,
    pub dead_lettered: u64,
    /// Acked messages whose tombstone still keeps their keys taken.
    pub tombstones: u64,
    pub wakeup_sequence: u64,
}

/// One page of a pool's dead letters, in the order they were moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `after` to read the next page; `None` on the last page.
    pub next_cursor: Option<u64>,
}
