//! The checker against histories written by hand: each broken promise is
//! reported, and a clean history, including calls with unknown outcomes,
//! reports nothing.

use uuid::Uuid;

use super::*;
use crate::history::{Call, DeadLetterView, MessageView, Op, Outcome, Reply, ReservationView, TokenId};

/// Server time origin of the hand-made histories, in microseconds since the
/// Unix epoch; server times below are this plus milliseconds.
const SERVER_EPOCH_US: i64 = 1_700_000_000_000_000;
const LEASE_MS: i64 = 3_000;

fn server_us(ms: i64) -> i64 {
    SERVER_EPOCH_US + ms * 1_000
}

fn message(number: u128) -> Uuid {
    Uuid::from_u128(number)
}

fn token(number: u64) -> TokenId {
    TokenId(number)
}

#[derive(Default)]
struct History {
    ops: Vec<Op>,
}

impl History {
    fn push(&mut self, process: &str, node: Option<u8>, start_ms: u64, end_ms: u64, call: Call, outcome: Outcome) {
        let index = self.ops.len();
        self.ops.push(Op {
            index,
            process: process.to_string(),
            node,
            start_us: start_ms * 1_000,
            end_us: end_ms * 1_000,
            call,
            outcome,
        });
    }

    fn ok(&mut self, process: &str, start_ms: u64, end_ms: u64, call: Call, reply: Reply) {
        self.push(process, None, start_ms, end_ms, call, Outcome::Ok { reply });
    }

    fn unknown(&mut self, process: &str, start_ms: u64, end_ms: u64, call: Call) {
        let error = "unavailable after 12 attempts".to_string();
        self.push(process, None, start_ms, end_ms, call, Outcome::Info { error });
    }

    fn enqueue(&mut self, id: Uuid, start_ms: u64, end_ms: u64) {
        let reply = Reply::Enqueued {
            message_id: id,
            duplicate: false,
            delivery_count: 0,
        };
        self.ok("worker-0", start_ms, end_ms, Call::Enqueue { message_id: id }, reply);
    }

    /// Records a reserve that returned `id` with `tok`, committed at server
    /// time `reserved_ms`, with a lease of `LEASE_MS`.
    fn reserve(&mut self, id: Uuid, tok: TokenId, delivery_count: u32, reserved_ms: i64, start_ms: u64, end_ms: u64) {
        let reservation = ReservationView {
            message_id: id,
            token: tok,
            delivery_count,
            reserved_at_us: server_us(reserved_ms),
            lease_expires_at_us: server_us(reserved_ms + LEASE_MS),
        };
        let reply = Reply::Reserved {
            reservation: Some(reservation),
            dead_lettered: Vec::new(),
        };
        self.ok("worker-1", start_ms, end_ms, Call::Reserve, reply);
    }

    fn ack(&mut self, id: Uuid, tok: TokenId, status: &str, start_ms: u64, end_ms: u64) {
        let reply = Reply::Operation {
            status: status.to_string(),
            lease_expires_at_us: None,
            dead_letter: None,
        };
        self.ok("worker-1", start_ms, end_ms, Call::Ack { message_id: id, token: tok }, reply);
    }

    fn renew(&mut self, id: Uuid, tok: TokenId, renewed_ms: i64, start_ms: u64, end_ms: u64) {
        let reply = Reply::Operation {
            status: "accepted".to_string(),
            lease_expires_at_us: Some(server_us(renewed_ms + LEASE_MS)),
            dead_letter: None,
        };
        self.ok("worker-1", start_ms, end_ms, Call::Renew { message_id: id, token: tok }, reply);
    }

    fn release(&mut self, id: Uuid, tok: TokenId, start_ms: u64, end_ms: u64) {
        let reply = Reply::Operation {
            status: "accepted".to_string(),
            lease_expires_at_us: None,
            dead_letter: None,
        };
        self.ok("worker-1", start_ms, end_ms, Call::Release { message_id: id, token: tok }, reply);
    }

    fn read(&mut self, process: &str, node: u8, id: Uuid, delivery_count: Option<u32>, start_ms: u64, end_ms: u64) {
        let message = delivery_count.map(|delivery_count| MessageView {
            message_id: id,
            delivery_count,
        });
        let call = Call::ReadMessage { message_id: id };
        self.push(process, Some(node), start_ms, end_ms, call, Outcome::Ok { reply: Reply::Message { message } });
    }

    fn final_active(&mut self, id: Uuid, delivery_count: u32, at_ms: u64) {
        self.read(FINAL_PROCESS, 1, id, Some(delivery_count), at_ms, at_ms + 1);
    }

    /// Records the final reads of a message that is neither active nor a
    /// dead letter, and the probe enqueue, whose `duplicate` flag shows whether
    /// the pool still knew the id.
    fn final_gone(&mut self, id: Uuid, still_known: bool, delivery_count: u32, at_ms: u64) {
        self.read(FINAL_PROCESS, 1, id, None, at_ms, at_ms + 1);
        let reply = Reply::DeadLetter { dead_letter: None };
        self.ok(FINAL_PROCESS, at_ms + 2, at_ms + 3, Call::ReadDeadLetter { message_id: id }, reply);
        let reply = Reply::Enqueued {
            message_id: id,
            duplicate: still_known,
            delivery_count,
        };
        self.ok(FINAL_PROCESS, at_ms + 4, at_ms + 5, Call::Enqueue { message_id: id }, reply);
    }

    fn wake(&mut self, sequence: u64, start_ms: u64, end_ms: u64) {
        self.ok("worker-2", start_ms, end_ms, Call::WakeDispatchers, Reply::Sequence { sequence });
    }

    fn observe(&mut self, node: u8, after: u64, woken: bool, sequence: u64, start_ms: u64, end_ms: u64) {
        let call = Call::WaitForWakeup { after };
        let reply = Reply::Wakeup { woken, sequence };
        self.push(&format!("observer-n{node}"), Some(node), start_ms, end_ms, call, Outcome::Ok { reply });
    }

    fn check(&self) -> CheckReport {
        check(&self.ops, &settings())
    }
}

fn settings() -> CheckSettings {
    CheckSettings {
        max_delivery_attempts: 3,
        wakeup_bound_us: 2_000_000,
        fault_windows: Vec::new(),
    }
}

fn rules(report: &CheckReport) -> Vec<Rule> {
    report.violations.iter().map(|violation| violation.rule).collect()
}

/// Builds the history of a message enqueued, reserved, renewed and acked,
/// and of one whose lease expired and that was delivered again, then released.
fn clean_history() -> History {
    let (acked, released) = (message(1), message(2));
    let mut history = History::default();
    history.enqueue(acked, 0, 10);
    history.enqueue(released, 5, 15);
    history.read("worker-3", 2, acked, Some(0), 20, 25);

    history.reserve(acked, token(1), 1, 100, 100, 110);
    history.renew(acked, token(1), 1_000, 1_000, 1_010);
    history.ack(acked, token(1), "accepted", 2_000, 2_010);
    history.read("worker-3", 3, acked, None, 2_100, 2_110);

    history.reserve(released, token(2), 1, 200, 200, 210);
    // Lease of token 2 ends at 3.2 s; the message is delivered again later.
    history.reserve(released, token(3), 2, 3_300, 3_300, 3_310);
    history.ack(released, token(2), "invalid_token", 3_400, 3_410);
    history.release(released, token(3), 3_500, 3_510);
    history.read("worker-3", 1, released, Some(2), 3_600, 3_610);

    history.observe(1, 0, true, 2, 0, 16);
    history.wake(3, 50, 60);
    history.observe(1, 2, true, 3, 16, 61);
    history.observe(1, 3, true, 4, 61, 3_511);
    history.observe(1, 4, false, 4, 3_511, 9_000);

    history.final_gone(acked, true, 1, 10_000);
    history.final_active(released, 2, 10_010);
    history
}

#[test]
fn clean_history_reports_nothing() {
    let report = clean_history().check();

    assert_eq!(report.violations, Vec::new());
    assert_eq!(report.acknowledged_messages, 2);
    assert_eq!(report.final_acked, 1);
    assert_eq!(report.final_active, 1);
}

#[test]
fn unknown_outcomes_excuse_missing_effects() {
    let (maybe_enqueued, maybe_acked) = (message(1), message(2));
    let mut history = History::default();
    history.unknown("worker-0", 0, 8_000, Call::Enqueue { message_id: maybe_enqueued });
    history.enqueue(maybe_acked, 0, 10);
    history.reserve(maybe_acked, token(1), 1, 100, 100, 110);
    history.unknown("worker-1", 200, 8_200, Call::Ack { message_id: maybe_acked, token: token(1) });
    // A reserve that may have delivered the message a second time.
    history.unknown("worker-2", 300, 8_300, Call::Reserve);

    history.final_gone(maybe_enqueued, false, 0, 10_000);
    history.final_gone(maybe_acked, true, 1, 10_010);

    let report = history.check();

    assert_eq!(report.violations, Vec::new());
}

#[test]
fn lost_write_is_reported() {
    let lost = message(7);
    let mut history = History::default();
    history.enqueue(lost, 0, 10);
    history.final_gone(lost, false, 0, 10_000);

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::AcknowledgedEnqueueLost]);
    assert_eq!(report.violations[0].message_id, Some(lost));
    assert_eq!(report.violations[0].ops, vec![0]);
}

#[test]
fn vanished_message_without_ack_is_lost() {
    let vanished = message(8);
    let mut history = History::default();
    history.enqueue(vanished, 0, 10);
    history.reserve(vanished, token(1), 1, 100, 100, 110);
    history.final_gone(vanished, true, 1, 10_000);

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::AcknowledgedEnqueueLost]);
}

#[test]
fn double_reservation_is_reported() {
    let contested = message(9);
    let mut history = History::default();
    history.enqueue(contested, 0, 10);
    // Token 1 has the lease from 1.0 s to 4.0 s. Token 2 is granted at 2.0 s
    // although token 1 was never given back, and both acks are accepted.
    history.reserve(contested, token(1), 1, 1_000, 1_000, 1_010);
    history.reserve(contested, token(2), 2, 2_000, 2_000, 2_010);
    history.ack(contested, token(1), "accepted", 2_500, 2_510);
    history.ack(contested, token(2), "accepted", 2_600, 2_610);
    history.final_gone(contested, true, 2, 10_000);

    let report = history.check();
    let found = rules(&report);

    assert!(found.contains(&Rule::DoubleReservation), "{:#?}", report.violations);
    assert!(found.contains(&Rule::AckedMessageReturned), "{:#?}", report.violations);
    let double = report.violations.iter().find(|violation| violation.rule == Rule::DoubleReservation).unwrap();
    assert_eq!(double.message_id, Some(contested));
}

#[test]
fn reservation_after_release_is_not_double() {
    let handed_over = message(10);
    let mut history = History::default();
    history.enqueue(handed_over, 0, 10);
    history.reserve(handed_over, token(1), 1, 1_000, 1_000, 1_010);
    history.release(handed_over, token(1), 1_500, 1_510);
    // Within token 1's nominal lease, but after its release.
    history.reserve(handed_over, token(2), 2, 1_600, 1_600, 1_610);
    history.ack(handed_over, token(2), "accepted", 1_700, 1_710);
    history.final_gone(handed_over, true, 2, 10_000);

    let report = history.check();

    assert_eq!(report.violations, Vec::new());
}

#[test]
fn stale_token_renew_is_reported() {
    let stolen = message(11);
    let mut history = History::default();
    history.enqueue(stolen, 0, 10);
    history.reserve(stolen, token(1), 1, 1_000, 1_000, 1_010);
    history.reserve(stolen, token(2), 2, 4_100, 4_100, 4_110);
    // Server time of this renew is 4.2 s, after token 2's reservation.
    history.renew(stolen, token(1), 4_200, 4_200, 4_210);
    history.final_active(stolen, 2, 10_000);

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::DoubleReservation, Rule::DoubleReservation]);
}

#[test]
fn stale_read_of_missing_message_is_reported() {
    let written = message(12);
    let mut history = History::default();
    history.enqueue(written, 0, 10);
    history.read("worker-3", 3, written, None, 20, 25);
    history.final_active(written, 0, 10_000);

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::StaleRead]);
    assert_eq!(report.violations[0].ops, vec![0, 1]);
}

#[test]
fn stale_read_after_ack_is_reported() {
    let done = message(13);
    let mut history = History::default();
    history.enqueue(done, 0, 10);
    history.reserve(done, token(1), 1, 100, 100, 110);
    history.ack(done, token(1), "accepted", 200, 210);
    history.read("worker-3", 2, done, Some(1), 300, 310);
    history.final_gone(done, true, 1, 10_000);

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::StaleRead]);
}

#[test]
fn stale_wakeup_sequence_read_is_reported() {
    let mut history = History::default();
    history.wake(5, 0, 10);
    history.ok("worker-3", 20, 30, Call::ReadWakeupSequence, Reply::Sequence { sequence: 4 });

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::StaleRead]);
}

#[test]
fn acked_message_reserved_again_is_reported() {
    let returned = message(14);
    let mut history = History::default();
    history.enqueue(returned, 0, 10);
    history.reserve(returned, token(1), 1, 100, 100, 110);
    history.ack(returned, token(1), "accepted", 200, 210);
    history.reserve(returned, token(2), 2, 5_000, 5_000, 5_010);
    history.final_active(returned, 2, 10_000);

    let report = history.check();
    let found = rules(&report);

    assert!(found.contains(&Rule::AckedMessageReturned), "{:#?}", report.violations);
    assert!(!found.contains(&Rule::DoubleReservation), "{:#?}", report.violations);
}

#[test]
fn shared_delivery_count_is_reported() {
    let counted = message(15);
    let mut history = History::default();
    history.enqueue(counted, 0, 10);
    history.reserve(counted, token(1), 1, 100, 100, 110);
    history.reserve(counted, token(2), 1, 3_200, 3_200, 3_210);
    history.final_active(counted, 1, 10_000);

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::DeliveryCount]);
}

#[test]
fn second_dead_letter_move_is_reported() {
    let dead = message(16);
    let mut history = History::default();
    history.enqueue(dead, 0, 10);
    for (moved_ms, start_ms) in [(9_000, 9_000), (9_500, 9_500)] {
        let dead_letter = DeadLetterView {
            message_id: dead,
            reason: "max_delivery_attempts_reached".into(),
            final_delivery_count: 3,
            moved_at_us: server_us(moved_ms),
        };
        let reply = Reply::DeadLetter {
            dead_letter: Some(dead_letter),
        };
        history.ok("worker-3", start_ms, start_ms + 10, Call::ReadDeadLetter { message_id: dead }, reply);
    }

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::DeadLetterMovedTwice]);
}

#[test]
fn wakeup_going_backwards_is_reported() {
    let mut history = History::default();
    history.observe(2, 0, true, 5, 0, 10);
    history.observe(2, 5, true, 3, 10, 20);

    let report = history.check();

    assert_eq!(rules(&report), vec![Rule::WakeupWentBackwards, Rule::WakeupWentBackwards]);
}

#[test]
fn missed_wakeup_is_reported_outside_faults() {
    let mut history = History::default();
    history.observe(1, 0, true, 1, 0, 100);
    history.wake(2, 200, 210);
    // The observer waits through the bound and times out at sequence 1.
    history.observe(1, 1, false, 1, 100, 5_000);
    history.observe(1, 1, false, 1, 5_000, 6_000);

    let report = history.check();
    assert_eq!(rules(&report), vec![Rule::WakeupMissed]);

    let mut settings = settings();
    settings.fault_windows = vec![(150_000, 1_000_000)];
    let excused = check(&history.ops, &settings);
    assert_eq!(excused.violations, Vec::new());
}
