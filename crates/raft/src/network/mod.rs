//! The peer network: openraft's RPCs over an internal gRPC service.
//!
//! The service, `raftq.raft.v1.RaftPeer`, carries openraft's own request and
//! response values encoded with bincode behind a format version
//! ([`wire`]). [`client`] implements openraft's `RaftNetworkFactory` with one
//! tonic channel per peer, and [`server`] serves the three RPCs into the
//! local `Raft`.

pub mod client;
pub mod server;
pub mod wire;

/// The generated gRPC code of `proto/raftq/v1/raft.proto`.
pub mod proto {
    tonic::include_proto!("raftq.raft.v1");
}

/// Upper bound on one peer message, in bytes. A message contains at most one
/// batch of entries (openraft's `max_payload_entries`, 300 by default) or one
/// snapshot chunk (3 MiB by default), so 64 MiB leaves room for 300 entries
/// of the queue's 64 KiB default message size plus their framing.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
