//! Errors of the raftq client.

use std::time::Duration;

use thiserror::Error;
use tonic::Code;

/// Failure of a client call.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server rejected the input. `message` is the server's, naming the
    /// field and the rule it breaks.
    #[error("invalid argument: {message}")]
    InvalidArgument { message: String },

    /// An enqueue reused a message id that the pool stores under another
    /// idempotency key.
    #[error("already exists: {message}")]
    AlreadyExists { message: String },

    /// The server cannot run the request in its current configuration, for
    /// example a caller clock sent to a node started without
    /// `--accept-caller-clock`.
    #[error("failed precondition: {message}")]
    FailedPrecondition { message: String },

    /// Every attempt until the deadline failed with a retryable status from a
    /// server (no leader, no quorum, a timed-out attempt).
    #[error("unavailable after {attempts} attempts in {elapsed:?}, last from {endpoint}: {code:?}: {message}")]
    Unavailable {
        attempts: u32,
        elapsed: Duration,
        endpoint: String,
        code: Code,
        message: String,
    },

    /// Every attempt until the deadline failed to reach a server at all
    /// (connection refused or reset), the last one on `endpoint`.
    #[error("transport error after {attempts} attempts in {elapsed:?}, last on {endpoint}: {message}")]
    Transport {
        attempts: u32,
        elapsed: Duration,
        endpoint: String,
        message: String,
    },

    /// A status this client does not retry and has no variant for.
    #[error("server returned {code:?}: {message}")]
    Server { code: Code, message: String },

    /// An endpoint given to the client cannot be used.
    #[error("invalid endpoint {endpoint:?}: {rule}")]
    InvalidEndpoint { endpoint: String, rule: String },

    /// A response lacks a field the API promises, or contains a value out of range.
    #[error("malformed response to {operation}: {detail}")]
    MalformedResponse {
        operation: &'static str,
        detail: String,
    },
}

impl ClientError {
    /// Returns the short name of the variant, for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::InvalidArgument { .. } => "invalid_argument",
            ClientError::AlreadyExists { .. } => "already_exists",
            ClientError::FailedPrecondition { .. } => "failed_precondition",
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::Transport { .. } => "transport",
            ClientError::Server { .. } => "server",
            ClientError::InvalidEndpoint { .. } => "invalid_endpoint",
            ClientError::MalformedResponse { .. } => "malformed_response",
        }
    }
}
