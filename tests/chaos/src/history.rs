//! The history of a run: every call a worker, observer or the final check
//! made, with its monotonic start and end times and its outcome.
//!
//! Times are microseconds since the start of the run on this process's
//! monotonic clock. Server times (`reserved_at_us`, `lease_expires_at_us`,
//! `moved_at_us`) are microseconds since the Unix epoch as the leader stamped
//! them; the two clocks are never compared with each other.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use raftq_client::proto::{CleanupMessage, DeadLetter, Reservation};
use raftq_client::ClientError;
use serde::Serialize;
use uuid::Uuid;

/// A call as it was made.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Call {
    Enqueue { message_id: Uuid },
    Reserve,
    Ack { message_id: Uuid, token: TokenId },
    Release { message_id: Uuid, token: TokenId },
    Renew { message_id: Uuid, token: TokenId },
    ReadMessage { message_id: Uuid },
    ReadDeadLetter { message_id: Uuid },
    WakeDispatchers,
    ReadWakeupSequence,
    WaitForWakeup { after: u64 },
}

impl Call {
    /// Returns the operation's name, as the contract spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Enqueue { .. } => "enqueue",
            Call::Reserve => "reserve",
            Call::Ack { .. } => "ack",
            Call::Release { .. } => "release",
            Call::Renew { .. } => "renew",
            Call::ReadMessage { .. } => "read_message",
            Call::ReadDeadLetter { .. } => "read_dead_letter",
            Call::WakeDispatchers => "wake_dispatchers",
            Call::ReadWakeupSequence => "read_wakeup_sequence",
            Call::WaitForWakeup { .. } => "wait_for_wakeup",
        }
    }
}

/// A stand-in for a reservation token in the history: a hash of it, so that
/// the history and the reports can name a reservation without containing
/// the token itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TokenId(pub u64);

impl TokenId {
    pub fn of(token: &str) -> TokenId {
        let mut hasher = DefaultHasher::new();
        token.hash(&mut hasher);
        TokenId(hasher.finish())
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "t{:016x}", self.0)
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The server returned a result.
    Ok { reply: Reply },
    /// The call definitely had no effect (the server rejected the input).
    Fail { error: String },
    /// The outcome is unknown: the write may or may not have happened
    /// (timeouts, unavailable after retries, a broken connection).
    Info { error: String },
}

/// A successful result, reduced to what the checker reads.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Enqueued {
        message_id: Uuid,
        duplicate: bool,
        delivery_count: u32,
    },
    Reserved {
        reservation: Option<ReservationView>,
        dead_lettered: Vec<DeadLetterView>,
    },
    /// Result of an ack, release or renew.
    Operation {
        status: String,
        lease_expires_at_us: Option<i64>,
        dead_letter: Option<DeadLetterView>,
    },
    Message { message: Option<MessageView> },
    DeadLetter { dead_letter: Option<DeadLetterView> },
    Sequence { sequence: u64 },
    Wakeup { woken: bool, sequence: u64 },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReservationView {
    pub message_id: Uuid,
    pub token: TokenId,
    pub delivery_count: u32,
    /// Time of the reserve command: the message's `updated_at`.
    pub reserved_at_us: i64,
    pub lease_expires_at_us: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageView {
    pub message_id: Uuid,
    pub delivery_count: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetterView {
    pub message_id: Uuid,
    pub reason: String,
    pub final_delivery_count: u32,
    pub moved_at_us: i64,
}

/// One call of the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Op {
    pub index: usize,
    /// The worker, observer or phase that made the call, such as `worker-2`,
    /// `observer-n3` or `final`.
    pub process: String,
    /// The node that served, when the call was pinned to one node.
    pub node: Option<u8>,
    pub start_us: u64,
    pub end_us: u64,
    pub call: Call,
    pub outcome: Outcome,
}

impl Op {
    pub fn reply(&self) -> Option<&Reply> {
        match &self.outcome {
            Outcome::Ok { reply } => Some(reply),
            _ => None,
        }
    }

    pub fn is_indeterminate(&self) -> bool {
        matches!(self.outcome, Outcome::Info { .. })
    }

    /// Returns the status of an ack, release or renew that returned one.
    pub fn operation_status(&self) -> Option<&str> {
        match self.reply() {
            Some(Reply::Operation { status, .. }) => Some(status),
            _ => None,
        }
    }

    pub fn message_id(&self) -> Option<Uuid> {
        match &self.call {
            Call::Enqueue { message_id }
            | Call::Ack { message_id, .. }
            | Call::Release { message_id, .. }
            | Call::Renew { message_id, .. }
            | Call::ReadMessage { message_id }
            | Call::ReadDeadLetter { message_id } => Some(*message_id),
            Call::Reserve => match self.reply() {
                Some(Reply::Reserved {
                    reservation: Some(reservation),
                    ..
                }) => Some(reservation.message_id),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn token(&self) -> Option<TokenId> {
        match &self.call {
            Call::Ack { token, .. } | Call::Release { token, .. } | Call::Renew { token, .. } => Some(*token),
            _ => None,
        }
    }
}

/// Shared, append-only recorder of a history.
#[derive(Clone)]
pub struct Recorder {
    origin: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Returns microseconds since the recorder was created.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Times `future` and records it as one call.
    pub async fn record<F>(&self, process: &str, node: Option<u8>, call: Call, future: F) -> Outcome
    where
        F: std::future::Future<Output = Outcome>,
    {
        let start_us = self.now_us();
        let outcome = future.await;
        let end_us = self.now_us();
        self.push(process, node, start_us, end_us, call, outcome.clone());
        outcome
    }

    pub fn push(&self, process: &str, node: Option<u8>, start_us: u64, end_us: u64, call: Call, outcome: Outcome) {
        let mut ops = self.ops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = ops.len();
        ops.push(Op {
            index,
            process: process.to_string(),
            node,
            start_us,
            end_us,
            call,
            outcome,
        });
    }

    /// Returns a copy of the history so far.
    pub fn snapshot(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Sorts a client error into a definite failure or an unknown outcome. Only
/// input errors prove that nothing was written, since an UNAVAILABLE after
/// retries may follow an attempt that timed out after it committed.
pub fn outcome_of_error(error: &ClientError) -> Outcome {
    match error {
        ClientError::InvalidArgument { .. }
        | ClientError::AlreadyExists { .. }
        | ClientError::FailedPrecondition { .. }
        | ClientError::InvalidEndpoint { .. } => Outcome::Fail {
            error: error.to_string(),
        },
        ClientError::Unavailable { .. }
        | ClientError::Transport { .. }
        | ClientError::Server { .. }
        | ClientError::MalformedResponse { .. } => Outcome::Info {
            error: error.to_string(),
        },
    }
}

/// Converts a protobuf timestamp to microseconds since the Unix epoch.
pub fn timestamp_us(timestamp: Option<&prost_types::Timestamp>) -> Option<i64> {
    timestamp.map(|timestamp| timestamp.seconds * 1_000_000 + i64::from(timestamp.nanos) / 1_000)
}

pub fn message_view(message: &CleanupMessage) -> Option<MessageView> {
    Some(MessageView {
        message_id: Uuid::parse_str(&message.message_id).ok()?,
        delivery_count: message.delivery_count,
    })
}

pub fn reservation_view(reservation: &Reservation) -> Option<ReservationView> {
    let message = reservation.message.as_ref()?;
    Some(ReservationView {
        message_id: Uuid::parse_str(&message.message_id).ok()?,
        token: TokenId::of(&reservation.reservation_token),
        delivery_count: message.delivery_count,
        reserved_at_us: timestamp_us(message.updated_at.as_ref())?,
        lease_expires_at_us: timestamp_us(reservation.lease_expires_at.as_ref())?,
    })
}

pub fn dead_letter_view(dead_letter: &DeadLetter) -> Option<DeadLetterView> {
    let message = dead_letter.message.as_ref()?;
    Some(DeadLetterView {
        message_id: Uuid::parse_str(&message.message_id).ok()?,
        reason: dead_letter.reason.clone(),
        final_delivery_count: dead_letter.final_delivery_count,
        moved_at_us: timestamp_us(dead_letter.moved_at.as_ref())?,
    })
}
