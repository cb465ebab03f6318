//! Errors of the state machine crate.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// The reason a command was rejected without changing the state.
///
/// These are replicated outcomes: every node computes the same rejection, so
/// they are values inside [`crate::Response::Rejected`] as well as errors for
/// callers that validate before proposing.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum CommandError {
    /// A field breaks a rule of the contract: `field` names it and `rule`
    /// states the rule.
    #[error("invalid {field}: {rule}")]
    InvalidInput { field: String, rule: String },

    /// The message id is already used in this pool by a message with another
    /// idempotency key.
    #[error("message_id {message_id} is already associated with a different cleanup message in this work pool")]
    MessageIdTaken { message_id: Uuid },

    /// A request id was reused for a different operation.
    #[error("request_id {request_id:?} was already used for a different request ({first_operation})")]
    RequestIdReused {
        request_id: String,
        first_operation: String,
    },
}

impl CommandError {
    pub(crate) fn invalid(field: &str, rule: impl Into<String>) -> Self {
        CommandError::InvalidInput {
            field: field.to_string(),
            rule: rule.into(),
        }
    }
}

/// Failure to decode a command or a snapshot.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("empty input, expected a format version byte")]
    Empty,

    #[error("unsupported format version {version}, this build reads version {supported}")]
    UnsupportedVersion { version: u8, supported: u8 },

    #[error("malformed bincode body: {0}")]
    Bincode(#[from] bincode::Error),
}
