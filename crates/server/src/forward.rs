//! Forwarding of calls from a follower to the leader.
//!
//! A follower passes a write or a linearizable read to the leader's client
//! address over a cached channel and relays the response. The forwarded call
//! carries [`FORWARDED_BY_HEADER`], so the node that receives it serves it
//! itself or fails; it never forwards it a second time, which rules out loops
//! while leadership moves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use raftq_proto::v1::admin_client::AdminClient;
use raftq_proto::v1::queue_client::QueueClient;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::error::{FORWARDED_BY_HEADER, LEADER_HEADER, SERVED_BY_HEADER};

/// A connection to the leader, with the message size limits of this node.
#[derive(Clone)]
pub struct Upstream {
    channel: Channel,
    max_message_bytes: usize,
}

impl Upstream {
    pub fn queue(&self) -> QueueClient<Channel> {
        QueueClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }
}

/// Lazily connected channels to leaders, one per client address.
pub struct Forwarder {
    node_id: u64,
    max_message_bytes: usize,
    connect_timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
}

/// Returns true when a follower already forwarded this call.
pub fn is_forwarded(metadata: &MetadataMap) -> bool {
    metadata.contains_key(FORWARDED_BY_HEADER)
}

fn endpoint_uri(client_addr: &str) -> String {
    if client_addr.contains("://") {
        client_addr.to_string()
    } else {
        format!("http://{client_addr}")
    }
}

impl Forwarder {
    pub fn new(node_id: u64, max_message_bytes: usize, connect_timeout: Duration) -> Self {
        Forwarder {
            node_id,
            max_message_bytes,
            connect_timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn upstream(&self, client_addr: &str) -> Result<Upstream, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|poison| poison.into_inner());
        let channel = match channels.get(client_addr) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = Endpoint::from_shared(endpoint_uri(client_addr)).map_err(|error| {
                    Status::unavailable(format!(
                        "the leader's client address {client_addr:?} is not a valid URI: {error}"
                    ))
                })?;
                let channel = endpoint.connect_timeout(self.connect_timeout).connect_lazy();
                channels.insert(client_addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(Upstream {
            channel,
            max_message_bytes: self.max_message_bytes,
        })
    }

    /// Sends `request` to the leader at `leader_addr` through `call` and
    /// relays its response.
    ///
    /// The leader's `x-raftq-served-by` header is kept. A failure to reach
    /// the leader becomes UNAVAILABLE with the leader hint, so the client
    /// retries or goes to the leader itself.
    pub async fn forward<Req, Resp, F, Fut>(
        &self,
        leader_addr: &str,
        request: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(Upstream, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let upstream = self.upstream(leader_addr).map_err(|status| with_leader_hint(status, leader_addr))?;

        let (metadata, _extensions, message) = request.into_parts();
        let mut outgoing = Request::from_parts(metadata, Default::default(), message);
        outgoing
            .metadata_mut()
            .insert(FORWARDED_BY_HEADER, MetadataValue::from(self.node_id));

        tracing::debug!(node_id = self.node_id, leader = leader_addr, "forwarding call to the leader");
        match call(upstream, outgoing).await {
            Ok(response) => {
                let served_by = response.metadata().get(SERVED_BY_HEADER).cloned();
                let mut relayed = Response::new(response.into_inner());
                if let Some(served_by) = served_by {
                    relayed.metadata_mut().insert(SERVED_BY_HEADER, served_by);
                }
                Ok(relayed)
            }
            Err(status) => Err(self.relay_error(status, leader_addr)),
        }
    }

    fn relay_error(&self, status: Status, leader_addr: &str) -> Status {
        let served_by = status.metadata().get(SERVED_BY_HEADER).cloned();
        let leader_hint = status.metadata().get(LEADER_HEADER).cloned();

        // Without the leader's served-by header the status did not come from
        // a raftq handler: the connection failed or broke. The call may or
        // may not have been applied, so the client must retry it (with its
        // request id) rather than take the status as the outcome.
        let mut relayed = match served_by {
            Some(served_by) => {
                let mut relayed = Status::new(status.code(), status.message());
                relayed.metadata_mut().insert(SERVED_BY_HEADER, served_by);
                relayed
            }
            None if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) => {
                Status::new(status.code(), status.message())
            }
            None => {
                tracing::warn!(
                    node_id = self.node_id,
                    leader = leader_addr,
                    code = ?status.code(),
                    error = status.message(),
                    "forwarding to the leader failed"
                );
                Status::unavailable(format!(
                    "forwarding to the leader at {leader_addr} failed: {}",
                    status.message()
                ))
            }
        };

        match leader_hint {
            Some(hint) => {
                relayed.metadata_mut().insert(LEADER_HEADER, hint);
                relayed
            }
            None if relayed.code() == Code::Unavailable => with_leader_hint(relayed, leader_addr),
            None => relayed,
        }
    }
}

fn with_leader_hint(mut status: Status, leader_addr: &str) -> Status {
    if let Ok(value) = MetadataValue::try_from(leader_addr) {
        status.metadata_mut().insert(LEADER_HEADER, value);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_uri_adds_http_scheme_to_bare_address() {
        assert_eq!(endpoint_uri("127.0.0.1:7000"), "http://127.0.0.1:7000");
        assert_eq!(endpoint_uri("https://node:7000"), "https://node:7000");
    }

    #[test]
    fn transport_failure_becomes_unavailable_with_hint() {
        let forwarder = Forwarder::new(1, 1024, Duration::from_secs(1));
        let relayed = forwarder.relay_error(Status::unknown("h2 protocol error"), "127.0.0.1:9");
        assert_eq!(relayed.code(), Code::Unavailable);
        assert_eq!(
            relayed.metadata().get(LEADER_HEADER).and_then(|value| value.to_str().ok()),
            Some("127.0.0.1:9")
        );
    }

    #[test]
    fn leader_status_is_relayed_unchanged() {
        let forwarder = Forwarder::new(1, 1024, Duration::from_secs(1));
        let mut status = Status::invalid_argument("invalid kind: must be non-empty");
        status.metadata_mut().insert(SERVED_BY_HEADER, MetadataValue::from(2u64));
        let relayed = forwarder.relay_error(status, "127.0.0.1:9");
        assert_eq!(relayed.code(), Code::InvalidArgument);
        assert_eq!(relayed.message(), "invalid kind: must be non-empty");
        assert_eq!(
            relayed.metadata().get(SERVED_BY_HEADER).and_then(|value| value.to_str().ok()),
            Some("2")
        );
        assert!(relayed.metadata().get(LEADER_HEADER).is_none());
    }

    #[test]
    fn forwarded_header_is_detected() {
        let mut metadata = MetadataMap::new();
        assert!(!is_forwarded(&metadata));
        metadata.insert(FORWARDED_BY_HEADER, MetadataValue::from(3u64));
        assert!(is_forwarded(&metadata));
    }
}
