//! Errors of the gRPC services and their mapping to gRPC statuses.
//!
//! The codes follow queue.proto. INVALID_ARGUMENT is bad input, and its
//! message names the field and the rule. FAILED_PRECONDITION is a caller clock
//! that the node does not accept. ALREADY_EXISTS is a taken message id.
//! UNAVAILABLE is anything a retry may fix, and INTERNAL is a fault.

use raftq_raft::{MembershipError, ReadError, WriteError};
use raftq_state_machine::CommandError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Response header naming the node that served a call.
pub const SERVED_BY_HEADER: &str = "x-raftq-served-by";
/// Header of an UNAVAILABLE status naming the leader's client address.
pub const LEADER_HEADER: &str = "x-raftq-leader";
/// Request header set on a call that a follower forwarded to the leader,
/// holding the follower's node id. A node never forwards such a call again.
pub const FORWARDED_BY_HEADER: &str = "x-raftq-forwarded-by";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request breaks a rule of the contract, or conflicts with the state
    /// in a way the contract rejects.
    #[error(transparent)]
    Rejected(#[from] CommandError),

    #[error(
        "invalid options.now: this node does not accept a caller clock; \
         leave options.now unset or start every node with --accept-caller-clock"
    )]
    CallerClockRejected,

    /// No leader, no quorum, or the leader could not be reached. Retry.
    #[error("unavailable: {reason}")]
    Unavailable {
        reason: String,
        /// The leader's client address, when the membership lists it.
        leader_addr: Option<String>,
    },

    /// The request did not finish within the server's request timeout. A
    /// write may still commit; retry with the same request id.
    #[error("timed out after {timeout_ms} ms; retry with the same request id")]
    Timeout { timeout_ms: u64 },

    /// A membership change that can never succeed as asked.
    #[error("invalid membership change: {0}")]
    InvalidMembership(String),

    /// Storage or Raft faults.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn unavailable(reason: impl Into<String>, leader_addr: Option<String>) -> Self {
        ServiceError::Unavailable {
            reason: reason.into(),
            leader_addr,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            ServiceError::Rejected(CommandError::InvalidInput { .. }) => Code::InvalidArgument,
            ServiceError::Rejected(CommandError::MessageIdTaken { .. }) => Code::AlreadyExists,
            // A request id reused for another operation is a caller bug, not
            // a conflict a retry could resolve.
            ServiceError::Rejected(CommandError::RequestIdReused { .. }) => Code::InvalidArgument,
            ServiceError::CallerClockRejected => Code::FailedPrecondition,
            ServiceError::Unavailable { .. } => Code::Unavailable,
            ServiceError::Timeout { .. } => Code::DeadlineExceeded,
            ServiceError::InvalidMembership(_) => Code::FailedPrecondition,
            ServiceError::Internal(_) => Code::Internal,
        }
    }

    /// Builds the gRPC status, with the leader hint header where known.
    pub fn into_status(self) -> Status {
        let mut status = Status::new(self.code(), self.to_string());
        if let ServiceError::Unavailable {
            leader_addr: Some(leader_addr),
            ..
        } = &self
        {
            if let Ok(value) = MetadataValue::try_from(leader_addr.as_str()) {
                status.metadata_mut().insert(LEADER_HEADER, value);
            }
        }
        status
    }
}

/// The leader as Raft reported it to this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    pub leader_id: Option<u64>,
    pub client_addr: Option<String>,
}

/// Why a call could not be served here: this node is not the leader (so the
/// call may be forwarded), or any other error.
#[derive(Debug)]
pub enum Failure {
    NotLeader(LeaderHint),
    Other(ServiceError),
}

impl From<ServiceError> for Failure {
    fn from(error: ServiceError) -> Self {
        Failure::Other(error)
    }
}

impl From<CommandError> for Failure {
    fn from(error: CommandError) -> Self {
        Failure::Other(ServiceError::Rejected(error))
    }
}

fn not_leader(leader_id: Option<u64>, leader: Option<raftq_raft::NodeInfo>) -> Failure {
    Failure::NotLeader(LeaderHint {
        leader_id,
        client_addr: leader.map(|node| node.client_addr),
    })
}

impl From<WriteError> for Failure {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::ForwardToLeader { leader_id, leader } => not_leader(leader_id, leader),
            WriteError::Unavailable { reason } => {
                Failure::Other(ServiceError::unavailable(reason, None))
            }
            WriteError::Storage(reason) | WriteError::Fatal(reason) => {
                Failure::Other(ServiceError::Internal(reason))
            }
        }
    }
}

impl From<ReadError> for Failure {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::ForwardToLeader { leader_id, leader } => not_leader(leader_id, leader),
            ReadError::Unavailable { reason } => {
                Failure::Other(ServiceError::unavailable(reason, None))
            }
            ReadError::Storage(reason) | ReadError::Fatal(reason) => {
                Failure::Other(ServiceError::Internal(reason))
            }
        }
    }
}

impl From<MembershipError> for Failure {
    fn from(error: MembershipError) -> Self {
        match error {
            MembershipError::ForwardToLeader { leader_id, leader } => not_leader(leader_id, leader),
            MembershipError::Unavailable { reason } => {
                Failure::Other(ServiceError::unavailable(reason, None))
            }
            MembershipError::Invalid { reason } => {
                Failure::Other(ServiceError::InvalidMembership(reason))
            }
            MembershipError::Storage(reason) | MembershipError::Fatal(reason) => {
                Failure::Other(ServiceError::Internal(reason))
            }
        }
    }
}

impl Failure {
    /// The error to return when the request is not forwarded (or cannot be).
    pub fn into_service_error(self) -> ServiceError {
        match self {
            Failure::Other(error) => error,
            Failure::NotLeader(hint) => {
                let reason = match hint.leader_id {
                    Some(leader_id) => format!("this node is not the leader; the leader is node {leader_id}"),
                    None => "no leader is elected right now".to_string(),
                };
                ServiceError::unavailable(reason, hint.client_addr)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn invalid_input_maps_to_invalid_argument_with_field() {
        let error = ServiceError::Rejected(CommandError::InvalidInput {
            field: "kind".into(),
            rule: "must be non-empty".into(),
        });
        let status = error.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid kind: must be non-empty");
    }

    #[test]
    fn message_id_taken_maps_to_already_exists() {
        let error = ServiceError::Rejected(CommandError::MessageIdTaken {
            message_id: Uuid::nil(),
        });
        assert_eq!(error.into_status().code(), Code::AlreadyExists);
    }

    #[test]
    fn caller_clock_maps_to_failed_precondition() {
        let status = ServiceError::CallerClockRejected.into_status();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("options.now"));
    }

    #[test]
    fn write_errors_map_to_retryable_or_internal() {
        let unavailable = Failure::from(WriteError::Unavailable {
            reason: "no quorum".into(),
        });
        assert_eq!(unavailable.into_service_error().code(), Code::Unavailable);

        let storage = Failure::from(WriteError::Storage("disk".into()));
        assert_eq!(storage.into_service_error().code(), Code::Internal);

        let fatal = Failure::from(WriteError::Fatal("panic".into()));
        assert_eq!(fatal.into_service_error().code(), Code::Internal);
    }

    #[test]
    fn not_leader_carries_the_leader_hint() {
        let failure = Failure::from(WriteError::ForwardToLeader {
            leader_id: Some(2),
            leader: Some(raftq_raft::NodeInfo {
                client_addr: "127.0.0.1:7010".into(),
                peer_addr: "127.0.0.1:7011".into(),
            }),
        });
        let status = failure.into_service_error().into_status();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get(LEADER_HEADER).and_then(|value| value.to_str().ok()),
            Some("127.0.0.1:7010")
        );
    }

    #[test]
    fn no_leader_has_no_hint() {
        let failure = Failure::from(ReadError::ForwardToLeader {
            leader_id: None,
            leader: None,
        });
        let status = failure.into_service_error().into_status();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.metadata().get(LEADER_HEADER).is_none());
    }

    #[test]
    fn invalid_membership_maps_to_failed_precondition() {
        let failure = Failure::from(MembershipError::Invalid {
            reason: "empty voter set".into(),
        });
        assert_eq!(failure.into_service_error().code(), Code::FailedPrecondition);
    }
}
