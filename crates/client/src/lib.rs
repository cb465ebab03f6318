//! Rust client of a raftq cluster.
//!
//! A [`Client`] is given the client endpoints of several nodes. It keeps one
//! lazily connected channel per endpoint and sends each attempt to the current
//! one: the last that served, or the leader named by the `x-raftq-leader`
//! hint of a follower's UNAVAILABLE status. Retryable failures (UNAVAILABLE,
//! broken connections, and timeouts of calls that are safe to repeat) are
//! retried on the next endpoint with exponential backoff and jitter until a
//! total timeout ([`RetryConfig`]).
//!
//! Every write carries a request id, a fresh UUID per logical call unless the
//! caller sets one, and the same id on each retry, so the server returns the
//! first outcome to a repeat instead of applying it twice.
//!
//! Requests and responses are the generated types of `raftq.v1`, re-exported
//! as [`proto`].

mod admin;
mod client;
mod endpoint;
mod error;
mod queue;
mod retry;

pub use raftq_proto::v1 as proto;

pub use client::{Client, LEADER_HINT_HEADER};
pub use endpoint::{parse_endpoint, parse_endpoints};
pub use error::ClientError;
pub use retry::{is_local_transport_failure, is_retryable, CallSafety, RetryConfig};
