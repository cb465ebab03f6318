//! The `raftq.v1.Queue` service: one handler per operation of the contract.

use std::sync::Arc;
use std::time::Duration;

use raftq_proto::v1 as proto;
use raftq_proto::v1::queue_server::Queue;
use raftq_state_machine::{CommandError, CommandOutput, DeadLetterSource, Event, Response as Applied};
use tonic::{Request, Response, Status};

use crate::convert::{self, parse_uuid};
use crate::core::Core;
use crate::error::ServiceError;
use crate::stamp::reservation_token;

pub struct QueueService {
    core: Arc<Core>,
}

impl QueueService {
    pub fn new(core: Arc<Core>) -> Self {
        QueueService { core }
    }
}

/// Builds the error for an applied response of the wrong kind, which would
/// mean that the state machine and the server disagree.
fn unexpected(operation: &str, response: &Applied) -> ServiceError {
    ServiceError::Internal(format!("{operation} applied with an unexpected response: {response:?}"))
}

fn is_local_read(read: &Option<proto::ReadOptions>) -> bool {
    read.as_ref().is_some_and(|read| read.local)
}

fn operation_response(operation: &str, response: Applied) -> Result<proto::OperationResponse, ServiceError> {
    match response {
        Applied::Operation(result) => Ok(proto::OperationResponse {
            result: Some(convert::operation_result_to_proto(result)),
        }),
        other => Err(unexpected(operation, &other)),
    }
}

/// Builds the reserve response, with the side effects of the lease expiry
/// and the dead-lettering that ran inside this reserve.
///
/// NOTE: a reserve replayed from its request id returns no side effects,
/// because the state machine keeps only the first response, not its events.
fn reserve_response(output: CommandOutput) -> Result<proto::ReserveResponse, ServiceError> {
    let reservation = match output.response {
        Applied::Reserved(reservation) => reservation,
        other => return Err(unexpected("reserve", &other)),
    };
    let mut dead_lettered = Vec::new();
    let mut lease_expiry_dead_lettered = Vec::new();
    let mut redelivered = Vec::new();
    for event in output.events {
        match event {
            Event::DeadLettered { dead_letter, source } => {
                let dead_letter = convert::dead_letter_to_proto(dead_letter);
                if source == DeadLetterSource::LeaseExpiry {
                    lease_expiry_dead_lettered.push(dead_letter.clone());
                }
                dead_lettered.push(dead_letter);
            }
            Event::LeaseExpiredRedelivered { message } => {
                redelivered.push(convert::message_to_proto(message));
            }
            Event::LeaseExpiredDeadLettered { .. } | Event::WakeupAdvanced { .. } => {}
        }
    }
    Ok(proto::ReserveResponse {
        reservation: reservation.map(convert::reservation_to_proto),
        dead_lettered,
        redelivered_count: u32::try_from(redelivered.len()).unwrap_or(u32::MAX),
        redelivered,
        lease_expiry_dead_lettered,
    })
}

/// Converts `timeout_seconds` of a wait; `None` waits without a bound.
fn wait_timeout(timeout_seconds: Option<f64>) -> Result<Option<Duration>, CommandError> {
    let Some(seconds) = timeout_seconds else {
        return Ok(None);
    };
    if seconds.is_nan() || seconds < 0.0 {
        return Err(CommandError::InvalidInput {
            field: "timeout_seconds".into(),
            rule: "must be 0 or greater".into(),
        });
    }
    // A timeout too large for a Duration is as good as none.
    Ok(Duration::try_from_secs_f64(seconds).ok())
}

#[tonic::async_trait]
impl Queue for QueueService {
    async fn enqueue(
        &self,
        request: Request<proto::EnqueueRequest>,
    ) -> Result<Response<proto::EnqueueResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::enqueue_operation(request)?)),
                |output| match output.response {
                    Applied::Enqueued { message, duplicate } => Ok(proto::EnqueueResponse {
                        message: Some(convert::message_to_proto(message)),
                        duplicate,
                    }),
                    other => Err(unexpected("enqueue", &other)),
                },
                |upstream, request| async move { upstream.queue().enqueue(request).await },
            )
            .await
    }

    async fn reserve(
        &self,
        request: Request<proto::ReserveRequest>,
    ) -> Result<Response<proto::ReserveResponse>, Status> {
        self.core
            .write(
                request,
                |request| {
                    let operation = convert::reserve_operation(request, reservation_token())?;
                    Ok((request.options.clone(), operation))
                },
                reserve_response,
                |upstream, request| async move { upstream.queue().reserve(request).await },
            )
            .await
    }

    async fn ack(
        &self,
        request: Request<proto::ReservationRequest>,
    ) -> Result<Response<proto::OperationResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::ack_operation(request)?)),
                |output| operation_response("ack", output.response),
                |upstream, request| async move { upstream.queue().ack(request).await },
            )
            .await
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::OperationResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::release_operation(request)?)),
                |output| operation_response("release", output.response),
                |upstream, request| async move { upstream.queue().release(request).await },
            )
            .await
    }

    async fn renew(
        &self,
        request: Request<proto::ReservationRequest>,
    ) -> Result<Response<proto::OperationResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::renew_operation(request)?)),
                |output| operation_response("renew", output.response),
                |upstream, request| async move { upstream.queue().renew(request).await },
            )
            .await
    }

    async fn expire_leases(
        &self,
        request: Request<proto::ExpireLeasesRequest>,
    ) -> Result<Response<proto::ExpireLeasesResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::expire_leases_operation(request)?)),
                |output| match output.response {
                    Applied::LeasesExpired(result) => Ok(convert::lease_expiry_to_proto(result)),
                    other => Err(unexpected("expire_leases", &other)),
                },
                |upstream, request| async move { upstream.queue().expire_leases(request).await },
            )
            .await
    }

    async fn read_message(
        &self,
        request: Request<proto::ReadMessageRequest>,
    ) -> Result<Response<proto::ReadMessageResponse>, Status> {
        let message = request.get_ref();
        let work_pool_id = parse_uuid("work_pool_id", &message.work_pool_id).map_err(|error| self.core.reject(error))?;
        let message_id = parse_uuid("message_id", &message.message_id).map_err(|error| self.core.reject(error))?;
        let local_read = is_local_read(&message.read);
        self.core
            .read(
                request,
                local_read,
                move |state| proto::ReadMessageResponse {
                    message: state
                        .read_message(work_pool_id, message_id)
                        .map(convert::message_to_proto),
                },
                |upstream, request| async move { upstream.queue().read_message(request).await },
            )
            .await
    }

    async fn read_dead_letter(
        &self,
        request: Request<proto::ReadDeadLetterRequest>,
    ) -> Result<Response<proto::ReadDeadLetterResponse>, Status> {
        let message = request.get_ref();
        let work_pool_id = parse_uuid("work_pool_id", &message.work_pool_id).map_err(|error| self.core.reject(error))?;
        let message_id = parse_uuid("message_id", &message.message_id).map_err(|error| self.core.reject(error))?;
        let local_read = is_local_read(&message.read);
        self.core
            .read(
                request,
                local_read,
                move |state| proto::ReadDeadLetterResponse {
                    dead_letter: state
                        .read_dead_letter(work_pool_id, message_id)
                        .map(convert::dead_letter_to_proto),
                },
                |upstream, request| async move { upstream.queue().read_dead_letter(request).await },
            )
            .await
    }

    async fn wake_dispatchers(
        &self,
        request: Request<proto::WakeDispatchersRequest>,
    ) -> Result<Response<proto::WakeupResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::wake_dispatchers_operation(request)?)),
                |output| match output.response {
                    Applied::Woken(wakeup) => Ok(convert::wakeup_to_proto(wakeup)),
                    other => Err(unexpected("wake_dispatchers", &other)),
                },
                |upstream, request| async move { upstream.queue().wake_dispatchers(request).await },
            )
            .await
    }

    async fn read_wakeup_sequence(
        &self,
        request: Request<proto::ReadWakeupSequenceRequest>,
    ) -> Result<Response<proto::ReadWakeupSequenceResponse>, Status> {
        let message = request.get_ref();
        let work_pool_id = parse_uuid("work_pool_id", &message.work_pool_id).map_err(|error| self.core.reject(error))?;
        let local_read = is_local_read(&message.read);
        self.core
            .read(
                request,
                local_read,
                move |state| proto::ReadWakeupSequenceResponse {
                    sequence: state.wakeup_sequence(work_pool_id),
                },
                |upstream, request| async move { upstream.queue().read_wakeup_sequence(request).await },
            )
            .await
    }

    /// Waits on this node's applied wakeup sequence, on leader and follower
    /// alike, so replication itself wakes the waiter.
    async fn wait_for_wakeup(
        &self,
        request: Request<proto::WaitForWakeupRequest>,
    ) -> Result<Response<proto::WaitForWakeupResponse>, Status> {
        let result = self.wait(request.into_inner()).await;
        self.core.served_by(result.map(Response::new).map_err(ServiceError::into_status))
    }
}

impl QueueService {
    async fn wait(&self, request: proto::WaitForWakeupRequest) -> Result<proto::WaitForWakeupResponse, ServiceError> {
        let work_pool_id = parse_uuid("work_pool_id", &request.work_pool_id)?;
        let timeout = wait_timeout(request.timeout_seconds)?;
        let after = request.after;

        // The receiver starts at the applied sequence, so a wakeup committed
        // before this line is seen by the first check of `wait_for`.
        let mut sequence = self.core.node.subscribe_wakeups(work_pool_id);
        let mut stopping = self.core.stopping();
        let woken = async {
            tokio::select! {
                changed = sequence.wait_for(|current| *current > after) => changed.is_ok(),
                _ = stopping.wait_for(|stopping| *stopping) => false,
            }
        };
        let timed_out = match timeout {
            Some(timeout) => tokio::time::timeout(timeout, woken).await.is_err(),
            None => {
                woken.await;
                false
            }
        };

        let current = *sequence.borrow();
        if current <= after && !timed_out {
            // The wait ended without a wakeup and before its timeout: the
            // node is stopping. The client should wait on another node.
            return Err(ServiceError::unavailable("the node is shutting down; wait on another node", None));
        }
        tracing::debug!(
            node_id = self.core.node_id,
            work_pool_id = %work_pool_id,
            after,
            sequence = current,
            "wait for wakeup returned"
        );
        Ok(proto::WaitForWakeupResponse {
            woken: current > after,
            work_pool_id: work_pool_id.to_string(),
            sequence: current,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeout_accepts_zero_and_unset() {
        assert_eq!(wait_timeout(None).unwrap(), None);
        assert_eq!(wait_timeout(Some(0.0)).unwrap(), Some(Duration::ZERO));
        assert_eq!(wait_timeout(Some(1.5)).unwrap(), Some(Duration::from_millis(1_500)));
    }

    #[test]
    fn wait_timeout_rejects_negative_and_nan() {
        for seconds in [-0.5, f64::NAN] {
            let error = wait_timeout(Some(seconds)).unwrap_err();
            assert_eq!(error.to_string(), "invalid timeout_seconds: must be 0 or greater");
        }
    }

    #[test]
    fn wait_timeout_treats_huge_values_as_unbounded() {
        assert_eq!(wait_timeout(Some(f64::INFINITY)).unwrap(), None);
        assert_eq!(wait_timeout(Some(1e300)).unwrap(), None);
    }
}
