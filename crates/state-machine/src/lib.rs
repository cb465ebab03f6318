//! The raftq delivery queue as a pure, deterministic state machine.
//!
//! [`QueueState::apply`] takes a [`Command`] (an operation plus the time,
//! reservation token and policy fixed by the Raft leader) and returns a
//! [`CommandOutput`]. It reads no clock, draws no random number and does no
//! IO, so every node that applies the same log computes the same state and the
//! same responses. Reads are plain queries on [`QueueState`].
//!
//! The rules are those of Prefect's `WorkerCleanupQueue` storage interface:
//! idempotent enqueue, single-holder reservations fenced by a token, lease
//! expiry with redelivery, dead-lettering at the maximum delivery attempts,
//! and a wakeup sequence per work pool.

mod command;
mod error;
mod model;
mod state;
mod time;
pub mod validation;

pub use command::{
    Command, CommandOutput, DeadLetterSource, Enqueue, Event, Operation, Policy, ReservationRef,
    Reserve, Response, COMMAND_FORMAT_VERSION,
};
pub use error::{CommandError, DecodeError};
pub use model::{
    reason, DeadLetter, DeadLetterPage, LeaseExpiryResult, Message, OperationResult,
    OperationStatus, PoolStats, Reservation, ReservationOperation, Wakeup,
};
pub use state::{QueueState, SNAPSHOT_FORMAT_VERSION};
pub use time::Timestamp;

#[cfg(test)]
mod tests;
