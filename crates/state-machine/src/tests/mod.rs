//! Scenario tests of the state machine. Each test reads as a transcript:
//! enqueue, advance the clock, expire, expect.

mod dead_letters;
mod enqueue;
mod prefect_suite;
mod requests;
mod reservations;
mod reserve;
mod snapshot;
mod validation;

use uuid::Uuid;

use crate::{
    Command, CommandOutput, Enqueue, Event, Message, Operation, OperationResult, Policy,
    QueueState, Reservation, ReservationRef, Reserve, Response, Timestamp,
};

pub(crate) const TEARDOWN: &str = "cancelling_timeout_teardown.v1";
pub(crate) const CLAIM: &str = "pending_claim_teardown.v1";

/// A state machine driven the way a leader drives it: a clock the test
/// advances, a policy, and a fresh token for every reserve.
pub(crate) struct Harness {
    pub state: QueueState,
    pub now_us: i64,
    pub policy: Policy,
    tokens_issued: u64,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            state: QueueState::new(),
            // 2023-11-14T22:13:20Z, an arbitrary fixed start.
            now_us: 1_700_000_000_000_000,
            policy: Policy {
                completed_retention_us: None,
                ..Policy::default()
            },
            tokens_issued: 0,
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.now_us)
    }

    pub fn advance_seconds(&mut self, seconds: i64) {
        self.now_us += seconds * 1_000_000;
    }

    pub fn command(&self, operation: Operation) -> Command {
        Command {
            now: self.now(),
            request_id: None,
            policy: self.policy,
            operation,
        }
    }

    pub fn run(&mut self, operation: Operation) -> CommandOutput {
        let command = self.command(operation);
        self.apply(&command)
    }

    pub fn apply(&mut self, command: &Command) -> CommandOutput {
        let output = self.state.apply(command);
        self.state.validate().expect("state invariants hold after apply");
        output
    }

    pub fn next_token(&mut self) -> String {
        self.tokens_issued += 1;
        format!("token-{:0>40}", self.tokens_issued)
    }

    pub fn enqueue_request(pool: Uuid, message_id: Uuid, key: &str) -> Enqueue {
        Enqueue {
            message_id,
            idempotency_key: key.to_string(),
            work_pool_id: pool,
            work_queue_id: None,
            kind: TEARDOWN.to_string(),
            target_json: format!(r#"{{"flow_run_id":"{}"}}"#, Uuid::new_v4()),
            data_json: None,
        }
    }

    /// Enqueues a teardown message and returns the stored message.
    pub fn enqueue(&mut self, pool: Uuid, key: &str) -> Message {
        self.enqueue_with(Self::enqueue_request(pool, Uuid::new_v4(), key))
    }

    pub fn enqueue_with(&mut self, enqueue: Enqueue) -> Message {
        match self.run(Operation::Enqueue(enqueue)).response {
            Response::Enqueued { message, .. } => message,
            other => panic!("expected Enqueued, got {other:?}"),
        }
    }

    pub fn reserve(&mut self, pool: Uuid) -> Option<Reservation> {
        self.reserve_filtered(pool, None, None, true)
    }

    pub fn reserve_filtered(
        &mut self,
        pool: Uuid,
        kinds: Option<Vec<&str>>,
        queues: Option<Vec<Uuid>>,
        allow_fallback: bool,
    ) -> Option<Reservation> {
        let reservation_token = self.next_token();
        let operation = Operation::Reserve(Reserve {
            work_pool_id: pool,
            cleanup_kinds: kinds.map(|kinds| kinds.into_iter().map(str::to_string).collect()),
            preferred_work_queue_ids: queues,
            allow_fallback_to_any_queue: allow_fallback,
            reservation_token,
        });
        match self.run(operation).response {
            Response::Reserved(reservation) => reservation,
            other => panic!("expected Reserved, got {other:?}"),
        }
    }

    pub fn ack(&mut self, pool: Uuid, message_id: Uuid, token: &str) -> OperationResult {
        operation_result(self.run(Operation::Ack(reference(pool, message_id, token))))
    }

    pub fn release(&mut self, pool: Uuid, message_id: Uuid, token: &str, reason: &str) -> OperationResult {
        operation_result(self.run(Operation::Release {
            reservation: reference(pool, message_id, token),
            reason: reason.to_string(),
        }))
    }

    pub fn renew(&mut self, pool: Uuid, message_id: Uuid, token: &str) -> OperationResult {
        operation_result(self.run(Operation::Renew(reference(pool, message_id, token))))
    }

    pub fn expire_leases(&mut self, limit: i64, pool: Option<Uuid>) -> crate::LeaseExpiryResult {
        match self
            .run(Operation::ExpireLeases {
                limit,
                work_pool_id: pool,
            })
            .response
        {
            Response::LeasesExpired(result) => result,
            other => panic!("expected LeasesExpired, got {other:?}"),
        }
    }

    pub fn wakeup_sequence(&self, pool: Uuid) -> u64 {
        self.state.wakeup_sequence(pool)
    }
}

pub(crate) fn reference(pool: Uuid, message_id: Uuid, token: &str) -> ReservationRef {
    ReservationRef {
        work_pool_id: pool,
        message_id,
        reservation_token: token.to_string(),
    }
}

fn operation_result(output: CommandOutput) -> OperationResult {
    match output.response {
        Response::Operation(result) => result,
        other => panic!("expected an operation result, got {other:?}"),
    }
}

pub(crate) fn wakeup_events(output: &CommandOutput) -> Vec<u64> {
    output
        .events
        .iter()
        .filter_map(|event| match event {
            Event::WakeupAdvanced { sequence, .. } => Some(*sequence),
            _ => None,
        })
        .collect()
}
