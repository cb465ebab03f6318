//! The client side of the peer network: openraft's `RaftNetworkFactory`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::proto::raft_peer_client::RaftPeerClient;
use super::{wire, MAX_PEER_MESSAGE_BYTES};
use crate::types::{NodeInfo, TypeConfig};

/// Creates openraft's per-peer clients, reusing one lazily connected channel
/// per peer across them.
#[derive(Clone)]
pub struct PeerNetwork {
    node_id: u64,
    connect_timeout: Duration,
    /// Channels by peer id, with the address each was built for. A peer that
    /// moved to another address gets a new channel.
    channels: Arc<Mutex<HashMap<u64, (String, Channel)>>>,
}

impl PeerNetwork {
    pub fn new(node_id: u64, connect_timeout: Duration) -> Self {
        PeerNetwork {
            node_id,
            connect_timeout,
            channels: Arc::default(),
        }
    }

    fn channel_for(&self, target: u64, peer_addr: &str) -> Result<Channel, String> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_addr, channel)) = channels.get(&target) {
            if cached_addr == peer_addr {
                return Ok(channel.clone());
            }
        }

        let endpoint = Endpoint::from_shared(format!("http://{peer_addr}"))
            .map_err(|error| {
                format!("invalid peer address {peer_addr:?} of node {target}: {error}")
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(target, (peer_addr.to_string(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> PeerClient {
        let channel = self.channel_for(target, &node.peer_addr);
        if let Err(error) = &channel {
            tracing::error!(node_id = self.node_id, target, %error, "cannot build a channel to the peer");
        }
        PeerClient {
            node_id: self.node_id,
            target,
            target_node: node.clone(),
            channel,
        }
    }
}

/// Openraft's connection to one peer.
pub struct PeerClient {
    node_id: u64,
    target: u64,
    target_node: NodeInfo,
    /// The error when the peer's address cannot form a URI, in which case
    /// every call fails as unreachable.
    channel: Result<Channel, String>,
}

type RpcResult<Reply, E> = Result<Reply, RPCError<u64, NodeInfo, RaftError<u64, E>>>;

impl PeerClient {
    /// Sends one request and decodes the remote `Result`, turning a remote
    /// Raft error into openraft's `RemoteError`.
    async fn call<Request, Reply, E>(
        &self,
        kind: RPCTypes,
        request: &Request,
        option: &RPCOption,
    ) -> RpcResult<Reply, E>
    where
        Request: Serialize,
        Reply: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = match &self.channel {
            Ok(channel) => channel.clone(),
            Err(error) => {
                return Err(RPCError::Unreachable(Unreachable::new(&AddressError(
                    error.clone(),
                ))))
            }
        };
        let message =
            wire::encode(request).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;

        let mut client = RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        let timeout = option.hard_ttl();
        let sent = async {
            match kind {
                RPCTypes::AppendEntries => client.append_entries(message).await,
                RPCTypes::Vote => client.vote(message).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
            }
        };

        let response = match tokio::time::timeout(timeout, sent).await {
            Err(_elapsed) => return Err(self.timeout_error(kind, timeout)),
            Ok(Err(status)) => return Err(self.status_error(kind, timeout, status)),
            Ok(Ok(response)) => response.into_inner(),
        };

        let result: Result<Reply, RaftError<u64, E>> = wire::decode(&response)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        result.map_err(|error| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.target_node.clone(),
                error,
            ))
        })
    }

    fn timeout_error<E: std::error::Error>(
        &self,
        kind: RPCTypes,
        timeout: Duration,
    ) -> RPCError<u64, NodeInfo, E> {
        RPCError::Timeout(Timeout {
            action: kind,
            id: self.node_id,
            target: self.target,
            timeout,
        })
    }

    /// Maps a gRPC status: a failed connection is `Unreachable`, so that
    /// openraft backs off before retrying the peer.
    fn status_error<E: std::error::Error>(
        &self,
        kind: RPCTypes,
        timeout: Duration,
        status: tonic::Status,
    ) -> RPCError<u64, NodeInfo, E> {
        tracing::debug!(node_id = self.node_id, target = self.target, rpc = %kind, %status, "peer rpc failed");
        match status.code() {
            Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            Code::DeadlineExceeded => self.timeout_error(kind, timeout),
            _ => RPCError::Network(NetworkError::new(&status)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AddressError(String);

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}
