//! At most one live reservation per message, and no accepted ack, release
//! or renew by a holder whose lease was over or whose message another
//! holder had reserved since.
//!
//! The check reads the client's history, where a write's effect time is only
//! known to lie between its first and its acknowledged attempt. Every bound
//! is taken on the side that can only hide a violation, never invent one:
//!
//! - a lease ends no earlier than its expiry (extended by acknowledged
//!   renews) or the first ack or release attempt with its token, whichever
//!   comes first;
//! - a lease may have been extended by any renew attempt, acknowledged or
//!   not;
//! - an accepted operation happened no earlier than its first attempt.
//!
//! The bounds compare the `now` of commands, which is sound because the
//! workload keeps the time in the committed log ascending.

use std::collections::BTreeMap;

use raftq_state_machine::{
    Operation, OperationStatus, ReservationOperation, ReservationRef, Response, Timestamp,
};
use uuid::Uuid;

use crate::history::History;
use crate::invariants::{push_capped, Violation};
use crate::observer::digest;

pub const NAME: &str = "single_holder";

/// What the history shows of one reservation.
#[derive(Debug)]
struct Lease {
    token: String,
    /// The `now` of the reserve that granted it.
    start: Timestamp,
    expiry: Timestamp,
    /// Acknowledged accepted renews: when they ran and the expiry they set.
    renewed: Vec<(Timestamp, Timestamp)>,
    /// The earliest `now` of any ack or release attempt with this token.
    first_end_attempt: Option<Timestamp>,
    /// The latest expiry any renew attempt could have set.
    latest_possible_expiry: Timestamp,
}

impl Lease {
    /// Returns the earliest time the lease can have ended, counting only
    /// renews that ran before `before`.
    fn ends_no_earlier_than(&self, before: Timestamp) -> Timestamp {
        let expiry = self
            .renewed
            .iter()
            .filter(|(renewed_at, _)| *renewed_at < before)
            .map(|(_, expiry)| *expiry)
            .fold(self.expiry, Timestamp::max);
        self.first_end_attempt.map_or(expiry, |end| end.min(expiry))
    }
}

/// An acknowledged accepted ack, release or renew.
#[derive(Debug)]
struct AcceptedOperation {
    request_id: String,
    operation: ReservationOperation,
    token: String,
    /// No later than the time the operation ran.
    at: Timestamp,
}

type MessageKey = (Uuid, Uuid);

pub fn check(history: &History) -> Vec<Violation> {
    let mut leases = collect_leases(history);
    let accepted = collect_attempts_and_accepts(history, &mut leases);

    let mut by_message: BTreeMap<MessageKey, Vec<&Lease>> = BTreeMap::new();
    for (key, lease) in leases.values() {
        by_message.entry(*key).or_default().push(lease);
    }

    let mut found = Vec::new();
    for ((work_pool_id, message_id), message_leases) in &by_message {
        for earlier in message_leases {
            for later in message_leases {
                if earlier.token == later.token || later.start < earlier.start {
                    continue;
                }
                let earlier_end = earlier.ends_no_earlier_than(later.start);
                if later.start < earlier_end {
                    found.push(format!(
                        "message {message_id} of pool {work_pool_id} was reserved by {} at {} while {} held it until at least {earlier_end}",
                        token_label(&later.token),
                        later.start,
                        token_label(&earlier.token)
                    ));
                }
            }
        }
    }

    for operation in &accepted {
        let Some((key, lease)) = leases.get(&operation.token) else {
            continue;
        };
        let (work_pool_id, message_id) = key;
        if operation.at >= lease.latest_possible_expiry {
            found.push(format!(
                "{} {} of message {message_id} by {} was accepted at {} or later, after its lease ran out at {}",
                operation.operation.as_str(),
                operation.request_id,
                token_label(&operation.token),
                operation.at,
                lease.latest_possible_expiry
            ));
        }
        for (other_key, other) in leases.values() {
            if other_key == key
                && other.token != lease.token
                && lease.start < other.start
                && other.start < operation.at
            {
                found.push(format!(
                    "{} {} of message {message_id} in pool {work_pool_id} by {} was accepted at {} or later, after {} reserved the message at {}",
                    operation.operation.as_str(),
                    operation.request_id,
                    token_label(&operation.token),
                    operation.at,
                    token_label(&other.token),
                    other.start
                ));
            }
        }
    }

    let mut violations = Vec::new();
    push_capped(&mut violations, NAME, found);
    violations
}

/// Returns the leases granted by acknowledged reserves, by token.
fn collect_leases(history: &History) -> BTreeMap<String, (MessageKey, Lease)> {
    let mut leases = BTreeMap::new();
    for (_, _, output) in history.acknowledged() {
        if let Response::Reserved(Some(reservation)) = &output.response {
            let message = &reservation.message;
            let lease = Lease {
                token: reservation.reservation_token.clone(),
                start: message.updated_at,
                expiry: reservation.lease_expires_at,
                renewed: Vec::new(),
                first_end_attempt: None,
                latest_possible_expiry: reservation.lease_expires_at,
            };
            leases.insert(
                reservation.reservation_token.clone(),
                ((message.work_pool_id, message.message_id), lease),
            );
        }
    }
    leases
}

/// Folds every ack, release and renew attempt into the leases, and returns
/// the acknowledged accepted ones.
fn collect_attempts_and_accepts(
    history: &History,
    leases: &mut BTreeMap<String, (MessageKey, Lease)>,
) -> Vec<AcceptedOperation> {
    for write in &history.writes {
        for attempt in &write.attempts {
            let Some((operation, reference)) = reservation_operation(&attempt.operation) else {
                continue;
            };
            let Some((_, lease)) = leases.get_mut(&reference.reservation_token) else {
                continue;
            };
            match operation {
                ReservationOperation::Renew => {
                    let expiry = attempt.now.saturating_add_micros(attempt.policy.lease_us);
                    lease.latest_possible_expiry = lease.latest_possible_expiry.max(expiry);
                }
                ReservationOperation::Ack | ReservationOperation::Release => {
                    let first = lease.first_end_attempt.get_or_insert(attempt.now);
                    *first = (*first).min(attempt.now);
                }
            }
        }
    }

    let mut accepted = Vec::new();
    for (write, command, output) in history.acknowledged() {
        let Response::Operation(result) = &output.response else {
            continue;
        };
        let Some((_, reference)) = reservation_operation(&command.operation) else {
            continue;
        };
        if result.status != OperationStatus::Accepted {
            continue;
        }
        let at = match (result.operation, result.lease_expires_at) {
            // An accepted renew ran exactly one lease before its new expiry.
            (ReservationOperation::Renew, Some(expiry)) => {
                let renewed_at =
                    Timestamp::from_micros(expiry.as_micros() - command.policy.lease_us);
                if let Some((_, lease)) = leases.get_mut(&reference.reservation_token) {
                    lease.renewed.push((renewed_at, expiry));
                }
                renewed_at
            }
            _ => write.earliest_now().unwrap_or(command.now),
        };
        accepted.push(AcceptedOperation {
            request_id: write.request_id.clone(),
            operation: result.operation,
            token: reference.reservation_token.clone(),
            at,
        });
    }
    accepted
}

fn reservation_operation(operation: &Operation) -> Option<(ReservationOperation, &ReservationRef)> {
    match operation {
        Operation::Ack(reference) => Some((ReservationOperation::Ack, reference)),
        Operation::Release { reservation, .. } => {
            Some((ReservationOperation::Release, reservation))
        }
        Operation::Renew(reference) => Some((ReservationOperation::Renew, reference)),
        _ => None,
    }
}

/// Names a token in a report by a digest, so the report never contains one.
fn token_label(token: &str) -> String {
    format!("token #{:016x}", digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use raftq_state_machine::{
        Command, CommandOutput, Message, OperationResult, Policy, Reservation, Reserve,
    };

    use super::*;
    use crate::history::WriteRecord;

    const LEASE_US: i64 = 2_000_000;
    const POOL: Uuid = Uuid::from_u128(10);
    const MESSAGE: Uuid = Uuid::from_u128(11);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_micros(seconds * 1_000_000)
    }

    fn command(now: Timestamp, operation: Operation) -> Command {
        Command {
            now,
            request_id: Some(format!("request-{}", now.as_micros())),
            policy: Policy {
                lease_us: LEASE_US,
                ..Policy::default()
            },
            operation,
        }
    }

    fn write(command: Command, response: Response) -> WriteRecord {
        WriteRecord {
            request_id: command.request_id.clone().unwrap_or_default(),
            attempts: vec![command.clone()],
            acknowledged: Some((
                command,
                CommandOutput {
                    response,
                    events: Vec::new(),
                    replayed: false,
                },
            )),
        }
    }

    fn reserved(now: Timestamp, token: &str) -> WriteRecord {
        let operation = Operation::Reserve(Reserve {
            work_pool_id: POOL,
            cleanup_kinds: None,
            preferred_work_queue_ids: None,
            allow_fallback_to_any_queue: true,
            reservation_token: token.to_string(),
        });
        let message = Message {
            message_id: MESSAGE,
            idempotency_key: "key".to_string(),
            work_pool_id: POOL,
            work_queue_id: None,
            kind: "cleanup".to_string(),
            target_json: "{}".to_string(),
            data_json: "{}".to_string(),
            created_at: at(0),
            updated_at: now,
            delivery_count: 1,
        };
        let reservation = Reservation {
            message,
            reservation_token: token.to_string(),
            lease_expires_at: now.saturating_add_micros(LEASE_US),
        };
        write(
            command(now, operation),
            Response::Reserved(Some(reservation)),
        )
    }

    fn accepted(now: Timestamp, token: &str, operation: ReservationOperation) -> WriteRecord {
        let reference = ReservationRef {
            work_pool_id: POOL,
            message_id: MESSAGE,
            reservation_token: token.to_string(),
        };
        let (request, lease_expires_at) = match operation {
            ReservationOperation::Ack => (Operation::Ack(reference), None),
            ReservationOperation::Release => (
                Operation::Release {
                    reservation: reference,
                    reason: "done".to_string(),
                },
                None,
            ),
            ReservationOperation::Renew => (
                Operation::Renew(reference),
                Some(now.saturating_add_micros(LEASE_US)),
            ),
        };
        let result = OperationResult {
            message_id: MESSAGE,
            operation,
            status: OperationStatus::Accepted,
            lease_expires_at,
            reason: None,
            dead_letter: None,
        };
        write(command(now, request), Response::Operation(result))
    }

    #[test]
    fn reserve_after_ack_passes() {
        let history = History {
            writes: vec![
                reserved(at(1), "first"),
                accepted(at(2), "first", ReservationOperation::Ack),
                reserved(at(3), "second"),
                accepted(at(4), "second", ReservationOperation::Ack),
            ],
        };

        assert!(check(&history).is_empty(), "{:?}", check(&history));
    }

    #[test]
    fn reserve_after_expiry_passes() {
        let history = History {
            writes: vec![reserved(at(1), "first"), reserved(at(3), "second")],
        };

        assert!(check(&history).is_empty(), "{:?}", check(&history));
    }

    #[test]
    fn reserve_during_live_lease_fails() {
        let history = History {
            writes: vec![reserved(at(1), "first"), reserved(at(2), "second")],
        };

        let violations = check(&history);

        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("while token"),
            "{}",
            violations[0]
        );
        assert!(
            !violations[0].detail.contains("first"),
            "a token leaked: {}",
            violations[0]
        );
    }

    #[test]
    fn reserve_during_renewed_lease_fails() {
        let history = History {
            writes: vec![
                reserved(at(1), "first"),
                accepted(at(2), "first", ReservationOperation::Renew),
                reserved(at(3), "second"),
            ],
        };

        let violations = check(&history);

        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("while token"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn accept_after_expiry_fails() {
        let history = History {
            writes: vec![
                reserved(at(1), "first"),
                accepted(at(4), "first", ReservationOperation::Ack),
            ],
        };

        let violations = check(&history);

        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("after its lease ran out"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn stale_holder_accepted_after_new_reserve_fails() {
        let history = History {
            writes: vec![
                reserved(at(1), "first"),
                reserved(at(4), "second"),
                accepted(at(5), "first", ReservationOperation::Renew),
            ],
        };

        let violations = check(&history);

        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("after token"),
            "{}",
            violations[0]
        );
    }
}
