//! Commands, the values the leader fixes in them, and what applying one returns.
//!
//! A command is everything `apply` needs: the operation as the caller sent it
//! plus the time, the reservation token and the policy chosen by the leader.
//! Two nodes applying the same command to the same state compute the same
//! state and the same output.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::CommandError;
use crate::model::{
    DeadLetter, LeaseExpiryResult, Message, OperationResult, Reservation, Wakeup,
};
use crate::time::Timestamp;

/// Format version of an encoded [`Command`]. Bump it, and keep a decoder for
/// the previous value, whenever the layout of a command changes, so that a node
/// running the new release can still apply a log written by the old one.
pub const COMMAND_FORMAT_VERSION: u8 = 1;

/// One replicated write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The time of the operation, stamped by the leader.
    pub now: Timestamp,
    /// A caller's id for retry safety: a repeat within the policy's request
    /// retention returns the first output instead of applying again.
    pub request_id: Option<String>,
    pub policy: Policy,
    pub operation: Operation,
}

/// The policy in force for one command: server defaults merged with the
/// overrides of a trusted caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Lease length on reserve and renew, in microseconds; must be > 0.
    pub lease_us: i64,
    /// Committed reservations allowed before a message dead-letters; >= 1.
    pub max_delivery_attempts: u32,
    /// How long an acked message's tombstone keeps its message id and
    /// idempotency key taken, in microseconds; `None` keeps it forever.
    pub completed_retention_us: Option<i64>,
    /// Upper bound on kind + idempotency key + target + data, in bytes.
    pub max_message_bytes: u32,
    /// How long the output of a command with a request id is kept for
    /// repeats, in microseconds; >= 0.
    pub request_retention_us: i64,
}

impl Policy {
    /// 30 s, the lease of Prefect's reference backends.
    pub const DEFAULT_LEASE_US: i64 = 30_000_000;
    pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 3;
    /// 7 days. The reference memory backend keeps tombstones for the life of
    /// the process. A durable store would grow without bound with that, so
    /// the default is finite, and a caller can still request to keep them.
    pub const DEFAULT_COMPLETED_RETENTION_US: i64 = 7 * 24 * 3600 * 1_000_000;
    pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 64 * 1024;
    /// 10 minutes: far longer than any client's retry loop.
    pub const DEFAULT_REQUEST_RETENTION_US: i64 = 600 * 1_000_000;
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            lease_us: Self::DEFAULT_LEASE_US,
            max_delivery_attempts: Self::DEFAULT_MAX_DELIVERY_ATTEMPTS,
            completed_retention_us: Some(Self::DEFAULT_COMPLETED_RETENTION_US),
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            request_retention_us: Self::DEFAULT_REQUEST_RETENTION_US,
        }
    }
}

/// The write operations of the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Enqueue(Enqueue),
    Reserve(Reserve),
    Ack(ReservationRef),
    Release {
        reservation: ReservationRef,
        reason: String,
    },
    Renew(ReservationRef),
    ExpireLeases {
        /// Maximum leases expired by this command; must be >= 1.
        limit: i64,
        /// Only this pool's leases when set, else every pool's.
        work_pool_id: Option<Uuid>,
    },
    WakeDispatchers {
        work_pool_id: Uuid,
    },
    /// Moves dead letters back to active delivery with `delivery_count = 0`.
    RedriveDeadLetters {
        work_pool_id: Uuid,
        /// One dead letter, or all of the pool's when `None`.
        message_id: Option<Uuid>,
    },
    /// Deletes dead letters, which frees their message ids and keys.
    PurgeDeadLetters {
        work_pool_id: Uuid,
        /// One dead letter, or all of the pool's when `None`.
        message_id: Option<Uuid>,
    },
}

impl Operation {
    /// Returns the operation's name, as used in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Enqueue(_) => "enqueue",
            Operation::Reserve(_) => "reserve",
            Operation::Ack(_) => "ack",
            Operation::Release { .. } => "release",
            Operation::Renew(_) => "renew",
            Operation::ExpireLeases { .. } => "expire_leases",
            Operation::WakeDispatchers { .. } => "wake_dispatchers",
            Operation::RedriveDeadLetters { .. } => "redrive_dead_letters",
            Operation::PurgeDeadLetters { .. } => "purge_dead_letters",
        }
    }

    /// Returns the pool the operation is scoped to, if it is scoped to one.
    pub fn work_pool_id(&self) -> Option<Uuid> {
        match self {
            Operation::Enqueue(enqueue) => Some(enqueue.work_pool_id),
            Operation::Reserve(reserve) => Some(reserve.work_pool_id),
            Operation::Ack(reservation) | Operation::Renew(reservation) => {
                Some(reservation.work_pool_id)
            }
            Operation::Release { reservation, .. } => Some(reservation.work_pool_id),
            Operation::ExpireLeases { work_pool_id, .. } => *work_pool_id,
            Operation::WakeDispatchers { work_pool_id }
            | Operation::RedriveDeadLetters { work_pool_id, .. }
            | Operation::PurgeDeadLetters { work_pool_id, .. } => Some(*work_pool_id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueue {
    pub message_id: Uuid,
    pub idempotency_key: String,
    pub work_pool_id: Uuid,
    pub work_queue_id: Option<Uuid>,
    pub kind: String,
    /// JSON text that must parse to an object.
    pub target_json: String,
    /// JSON text that must parse to an object; `None` stores `{}`.
    pub data_json: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    pub work_pool_id: Uuid,
    /// Only these kinds when set. An empty list matches nothing.
    pub cleanup_kinds: Option<Vec<String>>,
    /// Look at these work queues first when set. An empty list matches
    /// nothing, so only the fallback pass can reserve.
    pub preferred_work_queue_ids: Option<Vec<Uuid>>,
    pub allow_fallback_to_any_queue: bool,
    /// The token the reservation gets, drawn by the leader (32 random bytes
    /// in URL-safe base64 in the server).
    pub reservation_token: String,
}

/// The reservation that an ack, release or renew refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRef {
    pub work_pool_id: Uuid,
    pub message_id: Uuid,
    pub reservation_token: String,
}

/// The response of one applied command to its caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Enqueued {
        message: Message,
        /// True when an existing message was returned instead of a new one.
        duplicate: bool,
    },
    Reserved(Option<Reservation>),
    Operation(OperationResult),
    LeasesExpired(LeaseExpiryResult),
    Woken(Wakeup),
    Redriven {
        messages: Vec<Message>,
    },
    Purged {
        count: u64,
    },
    /// The command was invalid or conflicts with the state, and changed nothing.
    Rejected(CommandError),
}

/// The cause of a dead-letter move, with the names the observability
/// signals use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterSource {
    Reserve,
    Release,
    LeaseExpiry,
}

impl DeadLetterSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterSource::Reserve => "reserve",
            DeadLetterSource::Release => "release",
            DeadLetterSource::LeaseExpiry => "lease_expiry",
        }
    }
}

/// A side effect of one apply, reported so that the node can publish wakeups
/// and record metrics and logs without inspecting the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The pool's wakeup sequence advanced to `sequence`.
    WakeupAdvanced { work_pool_id: Uuid, sequence: u64 },
    /// A message moved to the dead-letter queue. The dead letter carries a
    /// reservation token: never log it whole.
    DeadLettered {
        dead_letter: DeadLetter,
        source: DeadLetterSource,
    },
    /// A lease ran out and the message, as it is now, became visible again.
    LeaseExpiredRedelivered { message: Message },
    /// A lease ran out on a message at the maximum delivery attempts.
    LeaseExpiredDeadLettered { work_pool_id: Uuid, message_id: Uuid },
}

/// The output of `apply`: the caller's response plus the events of this apply.
///
/// A repeated request id returns the stored response with no events, since
/// nothing happened the second time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    pub response: Response,
    pub events: Vec<Event>,
    /// True when the response was stored by an earlier command with the same
    /// request id.
    pub replayed: bool,
}

impl Command {
    /// Encodes the command with bincode behind [`COMMAND_FORMAT_VERSION`].
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![COMMAND_FORMAT_VERSION];
        bincode::serialize_into(&mut bytes, self)
            .expect("a command contains no type that bincode cannot encode");
        bytes
    }

    /// Decodes a command written by [`Command::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::error::DecodeError> {
        match bytes.split_first() {
            Some((&COMMAND_FORMAT_VERSION, body)) => Ok(bincode::deserialize(body)?),
            Some((&version, _)) => Err(crate::error::DecodeError::UnsupportedVersion {
                version,
                supported: COMMAND_FORMAT_VERSION,
            }),
            None => Err(crate::error::DecodeError::Empty),
        }
    }
}
