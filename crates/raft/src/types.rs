//! The openraft type configuration of raftq.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use raftq_state_machine::{Command, CommandOutput};

/// The addresses of one node, stored in the replicated membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Where clients reach the node's queue API (`host:port`).
    pub client_addr: String,
    /// Where other nodes reach the node's peer service (`host:port`).
    pub peer_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "client={} peer={}",
            self.client_addr, self.peer_addr
        )
    }
}

/// What applying one log entry returns.
///
/// Openraft asks for a response for every entry, but only a normal entry
/// carries a [`Command`]: blank entries (a new leader's first entry) and
/// membership entries return `None`.
pub type EntryResponse = Option<CommandOutput>;

openraft::declare_raft_types!(
    /// The openraft types of raftq: commands of the queue state machine,
    /// `u64` node ids and snapshots held in memory.
    pub TypeConfig:
        D = Command,
        R = EntryResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<u64>;
pub type RaftMetrics = openraft::RaftMetrics<u64, NodeInfo>;
