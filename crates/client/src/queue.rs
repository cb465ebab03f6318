//! The `Queue` service operations.

use std::time::Duration;

use raftq_proto::v1::queue_client::QueueClient;
use raftq_proto::v1::{
    CleanupMessage, DeadLetter, EnqueueRequest, EnqueueResponse, ExpireLeasesRequest,
    ExpireLeasesResponse, OperationResponse, OperationResult, ReadDeadLetterRequest,
    ReadMessageRequest, ReadWakeupSequenceRequest, ReleaseRequest, ReservationRequest,
    ReserveRequest, ReserveResponse, WaitForWakeupRequest, WaitForWakeupResponse,
    WakeDispatchersRequest, WriteOptions,
};

use crate::client::{request_with_timeout, Client};
use crate::error::ClientError;
use crate::retry::CallSafety;

/// Gives a write a fresh request id unless the caller set one, so that every
/// retry of this logical call carries the same id.
pub(crate) fn ensure_request_id(options: &mut Option<WriteOptions>) -> CallSafety {
    let options = options.get_or_insert_with(WriteOptions::default);
    if options.request_id.is_empty() {
        options.request_id = uuid::Uuid::new_v4().to_string();
    }
    CallSafety::WriteWithRequestId
}

fn operation_result(
    operation: &'static str,
    response: OperationResponse,
) -> Result<OperationResult, ClientError> {
    response.result.ok_or(ClientError::MalformedResponse {
        operation,
        detail: "missing result".to_string(),
    })
}

impl Client {
    /// Enqueues a message, or returns the stored one when the message id or
    /// idempotency key is already known (`duplicate` is then true).
    pub async fn enqueue(&self, mut request: EnqueueRequest) -> Result<EnqueueResponse, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        self.call("enqueue", safety, Duration::ZERO, |channel, timeout| {
            let request = request.clone();
            async move { QueueClient::new(channel).enqueue(request_with_timeout(request, timeout)).await }
        })
        .await
    }

    /// Reserves the oldest matching message; `reservation` is unset when none
    /// is reservable. A retry after a lost response returns the same
    /// reservation, because the request id stays the same.
    pub async fn reserve(&self, mut request: ReserveRequest) -> Result<ReserveResponse, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        self.call("reserve", safety, Duration::ZERO, |channel, timeout| {
            let request = request.clone();
            async move { QueueClient::new(channel).reserve(request_with_timeout(request, timeout)).await }
        })
        .await
    }

    /// Acknowledges a reservation.
    pub async fn ack(&self, mut request: ReservationRequest) -> Result<OperationResult, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        let response = self
            .call("ack", safety, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move { QueueClient::new(channel).ack(request_with_timeout(request, timeout)).await }
            })
            .await?;
        operation_result("ack", response)
    }

    /// Releases a reservation so that the message can be delivered again.
    pub async fn release(&self, mut request: ReleaseRequest) -> Result<OperationResult, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        let response = self
            .call("release", safety, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move { QueueClient::new(channel).release(request_with_timeout(request, timeout)).await }
            })
            .await?;
        operation_result("release", response)
    }

    /// Extends a reservation's lease from now by the lease duration.
    pub async fn renew(&self, mut request: ReservationRequest) -> Result<OperationResult, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        let response = self
            .call("renew", safety, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move { QueueClient::new(channel).renew(request_with_timeout(request, timeout)).await }
            })
            .await?;
        operation_result("renew", response)
    }

    /// Expires due leases: redelivers their messages or dead-letters those at
    /// the maximum delivery attempts.
    pub async fn expire_leases(
        &self,
        mut request: ExpireLeasesRequest,
    ) -> Result<ExpireLeasesResponse, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        self.call("expire_leases", safety, Duration::ZERO, |channel, timeout| {
            let request = request.clone();
            async move {
                QueueClient::new(channel)
                    .expire_leases(request_with_timeout(request, timeout))
                    .await
            }
        })
        .await
    }

    /// Reads an active message of a pool; `None` when the pool has no active
    /// message with that id.
    pub async fn read_message(
        &self,
        request: ReadMessageRequest,
    ) -> Result<Option<CleanupMessage>, ClientError> {
        let response = self
            .call("read_message", CallSafety::Read, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move {
                    QueueClient::new(channel)
                        .read_message(request_with_timeout(request, timeout))
                        .await
                }
            })
            .await?;
        Ok(response.message)
    }

    /// Reads a dead letter of a pool; `None` when there is none with that id.
    pub async fn read_dead_letter(
        &self,
        request: ReadDeadLetterRequest,
    ) -> Result<Option<DeadLetter>, ClientError> {
        let response = self
            .call("read_dead_letter", CallSafety::Read, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move {
                    QueueClient::new(channel)
                        .read_dead_letter(request_with_timeout(request, timeout))
                        .await
                }
            })
            .await?;
        Ok(response.dead_letter)
    }

    /// Advances a pool's wakeup sequence by one and returns the new sequence.
    pub async fn wake_dispatchers(
        &self,
        mut request: WakeDispatchersRequest,
    ) -> Result<u64, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        let response = self
            .call("wake_dispatchers", safety, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move {
                    QueueClient::new(channel)
                        .wake_dispatchers(request_with_timeout(request, timeout))
                        .await
                }
            })
            .await?;
        Ok(response.sequence)
    }

    /// Reads a pool's committed wakeup sequence, 0 for a pool never woken.
    pub async fn read_wakeup_sequence(
        &self,
        request: ReadWakeupSequenceRequest,
    ) -> Result<u64, ClientError> {
        let response = self
            .call("read_wakeup_sequence", CallSafety::Read, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move {
                    QueueClient::new(channel)
                        .read_wakeup_sequence(request_with_timeout(request, timeout))
                        .await
                }
            })
            .await?;
        Ok(response.sequence)
    }

    /// Waits until a pool's sequence is greater than `after`. The node called
    /// serves it from its own applied state, so a follower can serve it. `woken` is false when the
    /// request's timeout passed first. Without a timeout the wait lasts at
    /// most the client's total timeout.
    pub async fn wait_for_wakeup(
        &self,
        request: WaitForWakeupRequest,
    ) -> Result<WaitForWakeupResponse, ClientError> {
        let wait = request
            .timeout_seconds
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .unwrap_or(self.retry_config().total_timeout);
        self.call("wait_for_wakeup", CallSafety::Read, wait, |channel, timeout| {
            let request = request.clone();
            async move {
                QueueClient::new(channel)
                    .wait_for_wakeup(request_with_timeout(request, timeout))
                    .await
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_added_when_missing() {
        let mut options = None;
        ensure_request_id(&mut options);
        let request_id = options.unwrap().request_id;
        assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    }

    #[test]
    fn caller_request_id_is_kept() {
        let mut options = Some(WriteOptions {
            request_id: "retry-me".to_string(),
            ..Default::default()
        });
        ensure_request_id(&mut options);
        assert_eq!(options.unwrap().request_id, "retry-me");
    }

    #[test]
    fn request_ids_differ_between_calls() {
        let mut first = None;
        let mut second = None;
        ensure_request_id(&mut first);
        ensure_request_id(&mut second);
        assert_ne!(first.unwrap().request_id, second.unwrap().request_id);
    }
}
