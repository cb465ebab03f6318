//! Errors of the node API, each telling the caller what to do next.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use openraft::error::{ClientWriteError, Fatal, ForwardToLeader};

use crate::state_machine::StateMachineOpenError;
use crate::types::NodeInfo;

/// Failure of [`crate::RaftNode::write`].
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader. Forward the request to the
    /// `client_addr` of `leader`, which is `None` when this node has no
    /// address for the leader.
    #[error(
        "node is not the leader, forward to leader {leader_id:?} ({})",
        describe_leader(leader)
    )]
    ForwardToLeader {
        leader_id: Option<u64>,
        leader: Option<NodeInfo>,
    },

    /// No quorum acknowledged in time, or the node is shutting down. Retry,
    /// with the same request id, here or on another node. The write may
    /// still commit later.
    #[error("cluster unavailable ({reason}), retry with the same request id")]
    Unavailable { reason: String },

    /// The log or snapshot storage failed, and the node stopped.
    #[error("raft storage failed: {0}")]
    Storage(String),

    /// Raft stopped on an unexpected fault.
    #[error("raft failed: {0}")]
    Fatal(String),
}

/// Failure of [`crate::RaftNode::read_linearizable`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// This node is not the leader. Read from the leader, or read locally.
    #[error(
        "node is not the leader, forward to leader {leader_id:?} ({})",
        describe_leader(leader)
    )]
    ForwardToLeader {
        leader_id: Option<u64>,
        leader: Option<NodeInfo>,
    },

    /// Leadership could not be confirmed with a quorum in time, or the node
    /// is shutting down. Retry.
    #[error("cluster unavailable ({reason}), retry")]
    Unavailable { reason: String },

    #[error("raft storage failed: {0}")]
    Storage(String),

    #[error("raft failed: {0}")]
    Fatal(String),
}

/// Failure of a membership operation.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Membership changes run on the leader, so send the request there.
    #[error(
        "node is not the leader, forward to leader {leader_id:?} ({})",
        describe_leader(leader)
    )]
    ForwardToLeader {
        leader_id: Option<u64>,
        leader: Option<NodeInfo>,
    },

    /// Another change is in progress, no quorum acknowledged, or the timeout
    /// passed. Retry, knowing that a change that timed out may still
    /// complete.
    #[error("membership change unavailable ({reason}), retry")]
    Unavailable { reason: String },

    /// The requested membership is not allowed, for example an empty voter
    /// set or a voter that is not a learner yet.
    #[error("invalid membership change: {reason}")]
    Invalid { reason: String },

    #[error("raft storage failed: {0}")]
    Storage(String),

    #[error("raft failed: {0}")]
    Fatal(String),
}

/// Failure to start a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),

    #[error("failed to open the raft log at {path}: {source}")]
    OpenLog {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error("failed to load the state machine: {0}")]
    StateMachine(#[from] StateMachineOpenError),

    #[error("failed to bind the peer service to {addr}: {source}")]
    BindPeer {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("failed to start raft: {0}")]
    Raft(#[from] Fatal<u64>),
}

/// Failure to stop a node cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("raft task failed while stopping: {0}")]
    Raft(String),

    #[error("peer service failed while stopping: {0}")]
    PeerServer(String),

    #[error("failed to flush the raft log: {0}")]
    Flush(#[from] sled::Error),
}

fn describe_leader(leader: &Option<NodeInfo>) -> String {
    match leader {
        Some(node) => node.to_string(),
        None => "address unknown".to_string(),
    }
}

/// The three ways a stopped Raft reports itself, as the node's errors name them.
pub(crate) enum Stopped {
    Unavailable(String),
    Storage(String),
    Fatal(String),
}

impl From<&Fatal<u64>> for Stopped {
    fn from(fatal: &Fatal<u64>) -> Self {
        match fatal {
            Fatal::Stopped => Stopped::Unavailable("raft is shutting down".to_string()),
            Fatal::StorageError(error) => Stopped::Storage(error.to_string()),
            Fatal::Panicked => Stopped::Fatal("raft task panicked".to_string()),
        }
    }
}

impl From<Stopped> for WriteError {
    fn from(stopped: Stopped) -> Self {
        match stopped {
            Stopped::Unavailable(reason) => WriteError::Unavailable { reason },
            Stopped::Storage(reason) => WriteError::Storage(reason),
            Stopped::Fatal(reason) => WriteError::Fatal(reason),
        }
    }
}

impl From<Stopped> for ReadError {
    fn from(stopped: Stopped) -> Self {
        match stopped {
            Stopped::Unavailable(reason) => ReadError::Unavailable { reason },
            Stopped::Storage(reason) => ReadError::Storage(reason),
            Stopped::Fatal(reason) => ReadError::Fatal(reason),
        }
    }
}

impl From<Stopped> for MembershipError {
    fn from(stopped: Stopped) -> Self {
        match stopped {
            Stopped::Unavailable(reason) => MembershipError::Unavailable { reason },
            Stopped::Storage(reason) => MembershipError::Storage(reason),
            Stopped::Fatal(reason) => MembershipError::Fatal(reason),
        }
    }
}

impl From<ForwardToLeader<u64, NodeInfo>> for WriteError {
    fn from(forward: ForwardToLeader<u64, NodeInfo>) -> Self {
        WriteError::ForwardToLeader {
            leader_id: forward.leader_id,
            leader: forward.leader_node,
        }
    }
}

impl From<ForwardToLeader<u64, NodeInfo>> for ReadError {
    fn from(forward: ForwardToLeader<u64, NodeInfo>) -> Self {
        ReadError::ForwardToLeader {
            leader_id: forward.leader_id,
            leader: forward.leader_node,
        }
    }
}

impl From<ClientWriteError<u64, NodeInfo>> for MembershipError {
    fn from(error: ClientWriteError<u64, NodeInfo>) -> Self {
        use openraft::error::ChangeMembershipError;
        match error {
            ClientWriteError::ForwardToLeader(forward) => MembershipError::ForwardToLeader {
                leader_id: forward.leader_id,
                leader: forward.leader_node,
            },
            ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(
                in_progress,
            )) => MembershipError::Unavailable {
                reason: in_progress.to_string(),
            },
            ClientWriteError::ChangeMembershipError(other) => MembershipError::Invalid {
                reason: other.to_string(),
            },
        }
    }
}
