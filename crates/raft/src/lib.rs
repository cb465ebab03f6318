//! Replication of the raftq queue with Raft (openraft 0.9).
//!
//! ```text
//!  RaftNode::write(Command) ──> openraft ──AppendEntries (tonic)──> peers
//!                                  │                                  │
//!                         LogStore (sled, flushed before ack)   same on each peer
//!                                  │ committed on a majority
//!                                  v
//!              StateMachineStore::apply ──> QueueState::apply (pure)
//!                     │                          │
//!           snapshot every N entries      WakeupAdvanced events
//!           (<data_dir>/snapshots)               v
//!                                          WakeupHub (watch per pool)
//! ```
//!
//! - [`types`]: the openraft type configuration and [`NodeInfo`].
//! - [`log_store`]: the log, vote, committed id and purge marker in sled.
//! - [`state_machine`] and [`snapshot_file`]: the applied queue state and
//!   its snapshots.
//! - [`wakeup`]: per-pool wakeup channels fed by applied entries.
//! - [`network`]: the `RaftPeer` gRPC service and openraft's network client.
//! - [`RaftNode`]: the API the server uses (write, reads, wakeups,
//!   membership, metrics). [`RaftNode::start`] serves and dials peers over
//!   the tonic network, while [`RaftNode::start_with_network`] takes any
//!   openraft `RaftNetworkFactory` instead, as an in-process simulation does.

// openraft's `StorageError` and tonic's `Status` are large, but their traits
// fix them as the error types.
#![allow(clippy::result_large_err)]

mod codec;
pub mod config;
pub mod error;
pub mod log_store;
pub mod network;
mod node;
pub mod snapshot_file;
pub mod state_machine;
pub mod types;
pub mod wakeup;

pub use codec::CodecError;
pub use config::NodeConfig;
pub use error::{MembershipError, ReadError, ShutdownError, StartError, WriteError};
pub use node::{InitOutcome, RaftNode};
pub use types::{EntryResponse, NodeInfo, RaftMetrics, TypeConfig};
