//! The connection side of the client: one channel per endpoint, the choice of
//! endpoint for each attempt, and the retry loop around every call.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use backon::Retryable;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::{debug, warn};

use crate::endpoint::{parse_endpoint, parse_endpoints};
use crate::error::ClientError;
use crate::retry::{is_local_transport_failure, is_retryable, CallSafety, RetryConfig};

/// Response metadata key in which a follower names the leader's client address.
pub const LEADER_HINT_HEADER: &str = "x-raftq-leader";

/// Shortest attempt worth starting before the total timeout passes.
const MIN_FINAL_ATTEMPT: Duration = Duration::from_millis(20);

/// Upper bound on the endpoints learned from leader hints, on top of the
/// configured ones, so that a misbehaving server cannot grow the list forever.
const MAX_LEARNED_ENDPOINTS: usize = 16;

/// A client of a raftq cluster.
///
/// Cloning is cheap and clones share the channels, so one client can serve
/// many concurrent tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: RwLock<Vec<Node>>,
    configured_count: usize,
    /// Index into `nodes` of the endpoint the next attempt goes to: the last
    /// one that served, or the leader a hint named.
    current: AtomicUsize,
    retry: RetryConfig,
}

struct Node {
    uri: String,
    channel: Channel,
}

/// A failed attempt, kept until the retry loop decides what to do with it.
pub(crate) struct AttemptError {
    status: Status,
    endpoint: String,
    attempt: u32,
    retryable: bool,
    local_transport_failure: bool,
}

impl Client {
    /// Creates a client for a comma-separated endpoint list, such as
    /// `http://127.0.0.1:7000,127.0.0.1:7001`, with the default retry timing.
    /// Channels connect lazily, so this must run inside a Tokio runtime but
    /// does not contact any server.
    pub fn from_list(list: &str) -> Result<Client, ClientError> {
        Client::with_config(parse_endpoints(list)?, RetryConfig::default())
    }

    /// Creates a client for the given endpoints with the default retry timing.
    pub fn new<I, S>(endpoints: I) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::with_config(endpoints, RetryConfig::default())
    }

    /// Creates a client for the given endpoints with the given retry timing.
    pub fn with_config<I, S>(endpoints: I, retry: RetryConfig) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nodes: Vec<Node> = Vec::new();
        for endpoint in endpoints {
            let uri = parse_endpoint(endpoint.as_ref())?;
            if nodes.iter().any(|node| node.uri == uri) {
                continue;
            }
            let channel = connect_lazy(&uri, &retry)?;
            nodes.push(Node { uri, channel });
        }
        if nodes.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                rule: "at least one endpoint is required".to_string(),
            });
        }
        Ok(Client {
            inner: Arc::new(Inner {
                configured_count: nodes.len(),
                nodes: RwLock::new(nodes),
                current: AtomicUsize::new(0),
                retry,
            }),
        })
    }

    /// Returns the endpoints of this client, configured ones first, then those
    /// learned from leader hints.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes().iter().map(|node| node.uri.clone()).collect()
    }

    /// Returns the retry timing of this client.
    pub fn retry_config(&self) -> &RetryConfig {
        &self.inner.retry
    }

    fn nodes(&self) -> std::sync::RwLockReadGuard<'_, Vec<Node>> {
        // A poisoned lock only means another thread panicked while pushing a
        // learned endpoint; the vector itself is still whole.
        self.inner.nodes.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pick_node(&self) -> (usize, String, Channel) {
        let nodes = self.nodes();
        let index = self.inner.current.load(Ordering::Relaxed) % nodes.len();
        (index, nodes[index].uri.clone(), nodes[index].channel.clone())
    }

    /// Moves the next attempt to the leader named by a hint, or else to the
    /// endpoint after the one that failed.
    fn route_after_failure(&self, failed_index: usize, status: &Status) {
        if let Some(hinted) = self.leader_hint_index(status) {
            if hinted != failed_index {
                debug!(endpoint = %self.nodes()[hinted].uri, "following leader hint");
                self.inner.current.store(hinted, Ordering::Relaxed);
                return;
            }
        }
        let count = self.nodes().len();
        // Only the first of several concurrent failures on one endpoint moves
        // the cursor, so that they do not skip over healthy endpoints.
        let _ = self.inner.current.compare_exchange(
            failed_index,
            (failed_index + 1) % count,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Finds, or learns, the endpoint a leader hint names.
    fn leader_hint_index(&self, status: &Status) -> Option<usize> {
        let hint = status.metadata().get(LEADER_HINT_HEADER)?.to_str().ok()?;
        let uri = match parse_endpoint(hint) {
            Ok(uri) => uri,
            Err(error) => {
                debug!(hint, %error, "ignoring unusable leader hint");
                return None;
            }
        };
        if let Some(index) = self.nodes().iter().position(|node| node.uri == uri) {
            return Some(index);
        }

        let mut nodes = self.inner.nodes.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if nodes.len() >= self.inner.configured_count + MAX_LEARNED_ENDPOINTS {
            return None;
        }
        let channel = connect_lazy(&uri, &self.inner.retry).ok()?;
        debug!(endpoint = %uri, "learned endpoint from leader hint");
        nodes.push(Node { uri, channel });
        Some(nodes.len() - 1)
    }

    /// Runs one logical call: attempts on the current endpoint, retries
    /// retryable failures with exponential backoff and jitter until the total
    /// timeout, and maps the last failure to a [`ClientError`]. `send` must
    /// build the same request for every attempt (same request id).
    /// `extra_attempt_time` lengthens each attempt for calls that wait on the
    /// server side, such as `WaitForWakeup`.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        safety: CallSafety,
        extra_attempt_time: Duration,
        send: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let total_timeout = self.inner.retry.total_timeout;

        let result = (|| self.attempt(safety, extra_attempt_time, &send, started, &attempts))
            .retry(self.inner.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|error: &AttemptError| error.retryable && started.elapsed() < total_timeout)
            // A sleep is cut short so that the next attempt still starts
            // MIN_FINAL_ATTEMPT before the total timeout; with less left, the
            // call gives up.
            .adjust(|_, delay| {
                let remaining = total_timeout.checked_sub(started.elapsed())?;
                if remaining < MIN_FINAL_ATTEMPT {
                    return None;
                }
                delay.map(|delay| delay.min(remaining - MIN_FINAL_ATTEMPT))
            })
            .notify(|error: &AttemptError, delay: Duration| {
                warn!(
                    operation,
                    attempt = error.attempt,
                    endpoint = %error.endpoint,
                    code = ?error.status.code(),
                    message = error.status.message(),
                    delay_ms = delay.as_millis() as u64,
                    "retrying failed attempt"
                );
            })
            .await;

        result.map_err(|error| {
            into_client_error(error, attempts.load(Ordering::Relaxed), started.elapsed())
        })
    }

    async fn attempt<T, F, Fut>(
        &self,
        safety: CallSafety,
        extra_attempt_time: Duration,
        send: &F,
        started: Instant,
        attempts: &AtomicU32,
    ) -> Result<T, AttemptError>
    where
        F: Fn(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let (index, endpoint, channel) = self.pick_node();
        let remaining = self.inner.retry.total_timeout.saturating_sub(started.elapsed());
        let timeout = self.inner.retry.attempt_timeout.min(remaining) + extra_attempt_time;

        let status = match tokio::time::timeout(timeout, send(channel, timeout)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded(format!(
                "attempt timed out after {} ms",
                timeout.as_millis()
            )),
        };

        let local_transport_failure = is_local_transport_failure(&status);
        let retryable = is_retryable(status.code(), local_transport_failure, safety);
        if retryable {
            self.route_after_failure(index, &status);
        }
        Err(AttemptError {
            status,
            endpoint,
            attempt,
            retryable,
            local_transport_failure,
        })
    }
}

/// Wraps a message in a request whose `grpc-timeout` header carries the
/// attempt's deadline to the server.
pub(crate) fn request_with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

fn connect_lazy(uri: &str, retry: &RetryConfig) -> Result<Channel, ClientError> {
    let endpoint = Endpoint::from_shared(uri.to_string()).map_err(|error| ClientError::InvalidEndpoint {
        endpoint: uri.to_string(),
        rule: error.to_string(),
    })?;
    Ok(endpoint
        .connect_timeout(retry.attempt_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

fn into_client_error(error: AttemptError, attempts: u32, elapsed: Duration) -> ClientError {
    let message = error.status.message().to_string();
    match error.status.code() {
        Code::InvalidArgument => ClientError::InvalidArgument { message },
        Code::AlreadyExists => ClientError::AlreadyExists { message },
        Code::FailedPrecondition => ClientError::FailedPrecondition { message },
        code if error.retryable && error.local_transport_failure => ClientError::Transport {
            attempts,
            elapsed,
            endpoint: error.endpoint,
            message: format!("{code:?}: {message}"),
        },
        code if error.retryable => ClientError::Unavailable {
            attempts,
            elapsed,
            endpoint: error.endpoint,
            code,
            message,
        },
        code => ClientError::Server { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ReadWakeupSequenceRequest;

    /// Returns a loopback address on which nothing listens: the port was
    /// free a moment ago and is closed again.
    fn closed_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        address.to_string()
    }

    #[tokio::test]
    async fn refused_connection_retries_until_total_timeout() {
        let retry = RetryConfig {
            total_timeout: Duration::from_millis(400),
            attempt_timeout: Duration::from_millis(200),
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        let client = Client::with_config([closed_endpoint()], retry).unwrap();
        let started = Instant::now();

        let error = client
            .read_wakeup_sequence(ReadWakeupSequenceRequest::default())
            .await
            .unwrap_err();

        match error {
            ClientError::Transport { attempts, .. } => assert!(attempts >= 2, "{attempts} attempts"),
            other => panic!("expected a transport error, got {other:?}"),
        }
        // Retries stop once less than MIN_FINAL_ATTEMPT of the total is left.
        assert!(started.elapsed() >= Duration::from_millis(400) - MIN_FINAL_ATTEMPT);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn failed_endpoint_moves_to_next() {
        let client = Client::new([closed_endpoint(), closed_endpoint()]).unwrap();
        let status = Status::unavailable("no leader");

        client.route_after_failure(0, &status);

        assert_eq!(client.inner.current.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn leader_hint_moves_to_named_endpoint() {
        let endpoints = [closed_endpoint(), closed_endpoint(), closed_endpoint()];
        let client = Client::new(&endpoints).unwrap();
        let mut status = Status::unavailable("not the leader");
        status
            .metadata_mut()
            .insert(LEADER_HINT_HEADER, endpoints[2].parse().unwrap());

        client.route_after_failure(0, &status);

        assert_eq!(client.inner.current.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn leader_hint_to_unknown_endpoint_is_learned() {
        let client = Client::new([closed_endpoint()]).unwrap();
        let learned = closed_endpoint();
        let mut status = Status::unavailable("not the leader");
        status
            .metadata_mut()
            .insert(LEADER_HINT_HEADER, learned.parse().unwrap());

        client.route_after_failure(0, &status);

        assert_eq!(client.endpoints().len(), 2);
        assert_eq!(client.endpoints()[1], format!("http://{learned}"));
        assert_eq!(client.inner.current.load(Ordering::Relaxed), 1);
    }
}
