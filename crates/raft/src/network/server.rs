//! The server side of the peer network: the `RaftPeer` gRPC service.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::proto::raft_peer_server::{RaftPeer, RaftPeerServer};
use super::proto::PeerMessage;
use super::{wire, MAX_PEER_MESSAGE_BYTES};
use crate::types::Raft;

/// Serves the peer RPCs into the local Raft.
pub struct PeerService {
    node_id: u64,
    raft: Raft,
}

impl PeerService {
    /// Wraps the service in tonic's server type with raftq's message limits.
    pub fn into_server(node_id: u64, raft: Raft) -> RaftPeerServer<PeerService> {
        RaftPeerServer::new(PeerService { node_id, raft })
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }

    fn decode_request<T: DeserializeOwned>(
        &self,
        rpc: &str,
        request: &Request<PeerMessage>,
    ) -> Result<T, Status> {
        wire::decode(request.get_ref()).map_err(|error| {
            tracing::warn!(node_id = self.node_id, rpc, %error, "rejected a malformed peer request");
            match error {
                wire::WireError::UnsupportedVersion { .. } => Status::failed_precondition(error.to_string()),
                wire::WireError::Bincode(_) => Status::invalid_argument(error.to_string()),
            }
        })
    }
}

/// Encodes the Raft result, an error included, as the response body.
fn encode_response<T: Serialize>(rpc: &str, result: &T) -> Result<Response<PeerMessage>, Status> {
    wire::encode(result).map(Response::new).map_err(|error| {
        tracing::error!(rpc, %error, "failed to encode a peer response");
        Status::internal(error.to_string())
    })
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let rpc = self.decode_request("append_entries", &request)?;
        let result = self.raft.append_entries(rpc).await;
        encode_response("append_entries", &result)
    }

    async fn vote(&self, request: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let rpc = self.decode_request("vote", &request)?;
        let result = self.raft.vote(rpc).await;
        encode_response("vote", &result)
    }

    async fn install_snapshot(
        &self,
        request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let rpc = self.decode_request("install_snapshot", &request)?;
        let result = self.raft.install_snapshot(rpc).await;
        encode_response("install_snapshot", &result)
    }
}
