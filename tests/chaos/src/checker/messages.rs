//! Rules about single messages: durability, exclusive reservations,
//! delivery counts, acks, dead letters and reads of a message.

use uuid::Uuid;

use super::{describe, CheckReport, CheckSettings, FinalState, Index, MessageOps, Rule, Violation};
use crate::history::{Call, Op, ReservationView, TokenId};

pub(super) fn check_messages(index: &Index<'_>, settings: &CheckSettings, report: &mut CheckReport) {
    for (message_id, ops) in &index.messages {
        let mut found = Vec::new();
        let message_id = *message_id;
        check_durability(message_id, ops, report, &mut found);
        check_reservations(message_id, ops, &mut found);
        check_delivery_counts(index, message_id, ops, settings, &mut found);
        check_acks(message_id, ops, &mut found);
        check_dead_letters(message_id, ops, &mut found);
        check_reads(message_id, ops, &mut found);
        report.violations.extend(found);
    }
}

fn violation(rule: Rule, message_id: Uuid, ops: &[&Op], detail: String) -> Violation {
    let calls: Vec<String> = ops.iter().map(|op| describe(op)).collect();
    Violation {
        rule,
        message_id: Some(message_id),
        ops: ops.iter().map(|op| op.index).collect(),
        detail: format!("{detail}; calls: {}", calls.join(" | ")),
    }
}

fn is_accepted(op: &Op) -> bool {
    op.operation_status() == Some("accepted")
}

/// Acks with status accepted, with the token they carried.
fn accepted_acks<'h>(ops: &MessageOps<'h>) -> Vec<(&'h Op, TokenId)> {
    ops.token_ops
        .iter()
        .filter(|op| matches!(op.call, Call::Ack { .. }) && is_accepted(op))
        .filter_map(|op| Some((*op, op.token()?)))
        .collect()
}

/// An acknowledged enqueue must end active, dead-lettered, or acked.
fn check_durability(message_id: Uuid, ops: &MessageOps<'_>, report: &mut CheckReport, found: &mut Vec<Violation>) {
    let Some(first) = ops.acknowledged_enqueues.first() else {
        return;
    };
    report.acknowledged_messages += 1;
    let ack_attempted = ops.token_ops.iter().any(|op| {
        matches!(op.call, Call::Ack { .. }) && (is_accepted(op) || op.is_indeterminate())
    });
    match ops.final_state.as_ref().unwrap_or(&FinalState::Unverified) {
        FinalState::Active { .. } => report.final_active += 1,
        FinalState::DeadLettered(_) => report.final_dead_lettered += 1,
        FinalState::Tombstone { .. } if ack_attempted => report.final_acked += 1,
        FinalState::Tombstone { .. } => found.push(violation(
            Rule::AcknowledgedEnqueueLost,
            message_id,
            &[first],
            "the message left active delivery without a dead letter and no ack of it was accepted or pending".into(),
        )),
        FinalState::Missing => found.push(violation(
            Rule::AcknowledgedEnqueueLost,
            message_id,
            &[first],
            "the enqueue was acknowledged but at the end the pool knew no message with this id".into(),
        )),
        FinalState::Unverified => report.final_unverified += 1,
    }
}

/// Returns the end of a token's lease: the reservation's, pushed out by
/// accepted renews.
fn lease_end(ops: &MessageOps<'_>, reservation: &ReservationView) -> i64 {
    ops.token_ops
        .iter()
        .filter(|op| matches!(op.call, Call::Renew { .. }) && op.token() == Some(reservation.token) && is_accepted(op))
        .filter_map(|op| match op.reply() {
            Some(crate::history::Reply::Operation {
                lease_expires_at_us, ..
            }) => *lease_expires_at_us,
            _ => None,
        })
        .fold(reservation.lease_expires_at_us, i64::max)
}

/// Two reservations of one message must not be live at once.
fn check_reservations(message_id: Uuid, ops: &MessageOps<'_>, found: &mut Vec<Violation>) {
    let reservations = &ops.reservations;
    for (position, (op, view)) in reservations.iter().enumerate() {
        for (other_op, other) in &reservations[position + 1..] {
            if other.token == view.token {
                found.push(violation(
                    Rule::DoubleReservation,
                    message_id,
                    &[op, other_op],
                    format!("two reserve calls returned the same reservation {}", view.token),
                ));
            }
        }
    }

    for (earlier_op, earlier) in reservations {
        let lease_us = earlier.lease_expires_at_us - earlier.reserved_at_us;
        let end = lease_end(ops, earlier);
        let earlier_token_ops: Vec<&Op> =
            ops.token_ops.iter().copied().filter(|op| op.token() == Some(earlier.token)).collect();
        for (later_op, later) in reservations {
            if later.token == earlier.token || later.reserved_at_us < earlier.reserved_at_us {
                continue;
            }
            if later.reserved_at_us == earlier.reserved_at_us && later_op.index < earlier_op.index {
                continue;
            }

            // Within the earlier lease, the later reservation is only legal
            // if the earlier one was given back before it was granted.
            if later.reserved_at_us < end {
                let freed = earlier_token_ops.iter().any(|op| {
                    matches!(op.call, Call::Ack { .. } | Call::Release { .. })
                        && (is_accepted(op) || op.is_indeterminate() || op.operation_status() == Some("dead_lettered"))
                        && op.start_us < later_op.end_us
                });
                if !freed {
                    found.push(violation(
                        Rule::DoubleReservation,
                        message_id,
                        &[earlier_op, later_op],
                        format!(
                            "reservation {} (delivery {}) was granted at {} us while reservation {} (delivery {}) held a lease until {} us and was not given back",
                            later.token, later.delivery_count, later.reserved_at_us, earlier.token, earlier.delivery_count, end
                        ),
                    ));
                }
            }

            // The earlier token must not be accepted after the later
            // reservation exists, regardless of the lease times.
            for op in &earlier_token_ops {
                if !is_accepted(op) {
                    continue;
                }
                let renewed_after = match (&op.call, op.reply()) {
                    (
                        Call::Renew { .. },
                        Some(crate::history::Reply::Operation {
                            lease_expires_at_us: Some(expires),
                            ..
                        }),
                    ) => expires - lease_us > later.reserved_at_us,
                    _ => false,
                };
                if op.start_us > later_op.end_us || renewed_after {
                    found.push(violation(
                        Rule::DoubleReservation,
                        message_id,
                        &[earlier_op, later_op, op],
                        format!(
                            "{} with the older token {} was accepted after reservation {} was granted",
                            op.call.name(),
                            earlier.token,
                            later.token
                        ),
                    ));
                }
            }
        }
    }
}

/// Checks that each committed reservation adds exactly one to delivery_count.
fn check_delivery_counts(
    index: &Index<'_>,
    message_id: Uuid,
    ops: &MessageOps<'_>,
    settings: &CheckSettings,
    found: &mut Vec<Violation>,
) {
    let mut by_count = ops.reservations.clone();
    by_count.sort_by_key(|(op, view)| (view.delivery_count, op.index));
    for pair in by_count.windows(2) {
        let ((first_op, first), (second_op, second)) = (pair[0], pair[1]);
        if first.delivery_count == second.delivery_count && first.token != second.token {
            found.push(violation(
                Rule::DeliveryCount,
                message_id,
                &[first_op, second_op],
                format!("two reservations share delivery_count {}", first.delivery_count),
            ));
        }
        if first.delivery_count < second.delivery_count && first.reserved_at_us > second.reserved_at_us {
            found.push(violation(
                Rule::DeliveryCount,
                message_id,
                &[first_op, second_op],
                format!(
                    "delivery {} was reserved at {} us, after delivery {} at {} us",
                    first.delivery_count, first.reserved_at_us, second.delivery_count, second.reserved_at_us
                ),
            ));
        }
    }
    for (op, view) in &ops.reservations {
        if view.delivery_count == 0 || view.delivery_count > settings.max_delivery_attempts {
            found.push(violation(
                Rule::DeliveryCount,
                message_id,
                &[op],
                format!(
                    "a reservation has delivery_count {}, outside 1..={}",
                    view.delivery_count, settings.max_delivery_attempts
                ),
            ));
        }
    }

    // Deliveries that no reply returned can only come from reserves whose
    // outcome is unknown.
    let unknown = index.indeterminate_reserve_starts.len();
    let highest = by_count.last().map(|(_, view)| view.delivery_count).unwrap_or(0);
    let mut distinct: Vec<u32> = by_count.iter().map(|(_, view)| view.delivery_count).collect();
    distinct.dedup();
    let unseen = highest as usize - distinct.len().min(highest as usize);
    if unseen > unknown {
        let calls: Vec<&Op> = by_count.iter().map(|(op, _)| *op).collect();
        found.push(violation(
            Rule::DeliveryCount,
            message_id,
            &calls,
            format!("{unseen} deliveries below {highest} were never returned, but only {unknown} reserves had an unknown outcome"),
        ));
    }

    let final_count = match &ops.final_state {
        Some(FinalState::Active { delivery_count }) | Some(FinalState::Tombstone { delivery_count }) => {
            Some(*delivery_count)
        }
        Some(FinalState::DeadLettered(dead_letter)) => Some(dead_letter.final_delivery_count),
        _ => None,
    };
    if let Some(final_count) = final_count {
        let beyond = final_count.saturating_sub(highest) as usize;
        if final_count < highest || beyond > unknown {
            let calls: Vec<&Op> = by_count.iter().map(|(op, _)| *op).collect();
            found.push(violation(
                Rule::DeliveryCount,
                message_id,
                &calls,
                format!("the final delivery_count is {final_count}, but the highest reservation returned was {highest} and {unknown} reserves had an unknown outcome"),
            ));
        }
    }

    // A read can show no more deliveries than reserves that had started.
    for (read, count) in &ops.reads {
        let Some(count) = count else {
            continue;
        };
        let started = ops.reservations.iter().filter(|(op, _)| op.start_us < read.end_us).count();
        let possible = started + index.indeterminate_reserves_before(read.end_us);
        if *count as usize > possible {
            found.push(violation(
                Rule::DeliveryCount,
                message_id,
                &[read],
                format!("a read shows delivery_count {count}, but only {possible} reserves could have delivered the message by then"),
            ));
        }
    }
}

/// After an accepted ack the message is done for good.
fn check_acks(message_id: Uuid, ops: &MessageOps<'_>, found: &mut Vec<Violation>) {
    let acks = accepted_acks(ops);
    for (position, (ack, token)) in acks.iter().enumerate() {
        for (other, other_token) in &acks[position + 1..] {
            if other_token != token {
                found.push(violation(
                    Rule::AckedMessageReturned,
                    message_id,
                    &[ack, other],
                    format!("two acks with different tokens ({token} and {other_token}) were both accepted"),
                ));
            }
        }

        let acked_delivery = ops.reservations.iter().find(|(_, view)| view.token == *token).map(|(_, view)| view.delivery_count);
        for (reserve, view) in &ops.reservations {
            let later_delivery = acked_delivery.is_some_and(|acked| view.delivery_count > acked);
            if later_delivery || reserve.start_us > ack.end_us {
                found.push(violation(
                    Rule::AckedMessageReturned,
                    message_id,
                    &[ack, reserve],
                    format!("the message was reserved again (delivery {}) after the ack of {token} was accepted", view.delivery_count),
                ));
            }
        }
        match &ops.final_state {
            Some(FinalState::Active { .. }) | Some(FinalState::DeadLettered(_)) => found.push(violation(
                Rule::AckedMessageReturned,
                message_id,
                &[ack],
                format!("the ack was accepted but at the end the message is {:?}", ops.final_state),
            )),
            _ => {}
        }
    }
}

/// Checks that a dead-letter move happens once and that the message never
/// comes back.
fn check_dead_letters(message_id: Uuid, ops: &MessageOps<'_>, found: &mut Vec<Violation>) {
    let Some((first_op, first)) = ops.dead_letters.first() else {
        return;
    };
    for (op, other) in &ops.dead_letters[1..] {
        if (other.moved_at_us, other.final_delivery_count) != (first.moved_at_us, first.final_delivery_count) {
            found.push(violation(
                Rule::DeadLetterMovedTwice,
                message_id,
                &[first_op, op],
                format!(
                    "two dead-letter moves: at {} us after {} deliveries and at {} us after {} deliveries",
                    first.moved_at_us, first.final_delivery_count, other.moved_at_us, other.final_delivery_count
                ),
            ));
        }
    }
    let seen_at = ops.dead_letters.iter().map(|(op, _)| op.end_us).min().unwrap_or(u64::MAX);
    for (reserve, view) in &ops.reservations {
        if view.delivery_count > first.final_delivery_count || reserve.start_us > seen_at {
            found.push(violation(
                Rule::DeadLetterMovedTwice,
                message_id,
                &[first_op, reserve],
                format!("the message was reserved (delivery {}) after its dead-letter move", view.delivery_count),
            ));
        }
    }
    if matches!(ops.final_state, Some(FinalState::Active { .. }) | Some(FinalState::Tombstone { .. })) {
        found.push(violation(
            Rule::DeadLetterMovedTwice,
            message_id,
            &[first_op],
            format!("the message was dead-lettered but at the end it is {:?}", ops.final_state),
        ));
    }
}

/// Checks that a linearizable read reflects every write acknowledged before
/// it started.
fn check_reads(message_id: Uuid, ops: &MessageOps<'_>, found: &mut Vec<Violation>) {
    let acks = accepted_acks(ops);
    let first_ack_end = acks.iter().map(|(op, _)| op.end_us).min();
    let first_dead_letter_end = ops.dead_letters.iter().map(|(op, _)| op.end_us).min();
    let enqueued_end = ops.acknowledged_enqueues.iter().map(|op| op.end_us).min();
    let first_ack_start = ops
        .token_ops
        .iter()
        .filter(|op| matches!(op.call, Call::Ack { .. }))
        .map(|op| op.start_us)
        .min();

    for (read, count) in &ops.reads {
        match count {
            None => {
                let Some(enqueued_end) = enqueued_end.filter(|end| *end < read.start_us) else {
                    continue;
                };
                // Removal from active delivery is permanent, so a message
                // active at the end was active at every read after its
                // enqueue. A tombstone whose acks all started after the read
                // was active at the read as well. A tombstone without any ack
                // is reported as a lost write instead.
                let active_throughout = match &ops.final_state {
                    Some(FinalState::Active { .. }) => true,
                    Some(FinalState::Tombstone { .. }) => {
                        first_ack_start.is_some_and(|start| start > read.end_us) && ops.dead_letters.is_empty()
                    }
                    _ => false,
                };
                if active_throughout {
                    let enqueue = ops.acknowledged_enqueues.iter().find(|op| op.end_us == enqueued_end);
                    let mut calls: Vec<&Op> = enqueue.into_iter().copied().collect();
                    calls.push(read);
                    found.push(violation(
                        Rule::StaleRead,
                        message_id,
                        &calls,
                        "a read found no message although its enqueue was acknowledged before the read started and the message was still active".into(),
                    ));
                }
            }
            Some(count) => {
                if let Some(end) = first_ack_end.filter(|end| *end < read.start_us) {
                    let ack = acks.iter().find(|(op, _)| op.end_us == end).map(|(op, _)| *op);
                    let mut calls: Vec<&Op> = ack.into_iter().collect();
                    calls.push(read);
                    found.push(violation(
                        Rule::StaleRead,
                        message_id,
                        &calls,
                        "a read returned the message after an accepted ack of it had completed".into(),
                    ));
                }
                if first_dead_letter_end.is_some_and(|end| end < read.start_us) {
                    found.push(violation(
                        Rule::StaleRead,
                        message_id,
                        &[read],
                        "a read returned the message as active after its dead-letter move was seen".into(),
                    ));
                }
                let completed = ops
                    .reservations
                    .iter()
                    .filter(|(op, _)| op.end_us < read.start_us)
                    .map(|(_, view)| view.delivery_count)
                    .max()
                    .unwrap_or(0);
                if *count < completed {
                    found.push(violation(
                        Rule::StaleRead,
                        message_id,
                        &[read],
                        format!("a read shows delivery_count {count}, but delivery {completed} was reserved before the read started"),
                    ));
                }
            }
        }
    }
}
