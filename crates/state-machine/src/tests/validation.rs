use uuid::Uuid;

use super::Harness;
use crate::{CommandError, Operation, Policy, Response};

/// Applies an operation that must be rejected and checks that the rejection
/// names `field` and that the state did not change.
fn assert_rejected(queue: &mut Harness, operation: Operation, field: &str) {
    let before = queue.state.clone();

    let output = queue.run(operation);

    match output.response {
        Response::Rejected(CommandError::InvalidInput { field: named, .. }) => assert_eq!(named, field),
        other => panic!("expected a rejection of {field}, got {other:?}"),
    }
    assert!(output.events.is_empty());
    assert_eq!(queue.state, before);
}

#[test]
fn enqueue_with_empty_idempotency_key_is_rejected() {
    let mut queue = Harness::new();
    let request = Harness::enqueue_request(Uuid::new_v4(), Uuid::new_v4(), "");

    assert_rejected(&mut queue, Operation::Enqueue(request), "idempotency_key");
}

#[test]
fn enqueue_with_empty_kind_is_rejected() {
    let mut queue = Harness::new();
    let mut request = Harness::enqueue_request(Uuid::new_v4(), Uuid::new_v4(), "key");
    request.kind = String::new();

    assert_rejected(&mut queue, Operation::Enqueue(request), "kind");
}

#[test]
fn enqueue_with_non_object_target_is_rejected() {
    for target in ["[1, 2]", "\"text\"", "42", "null", "{broken"] {
        let mut queue = Harness::new();
        let mut request = Harness::enqueue_request(Uuid::new_v4(), Uuid::new_v4(), "key");
        request.target_json = target.to_string();

        assert_rejected(&mut queue, Operation::Enqueue(request), "target");
    }
}

#[test]
fn enqueue_with_non_object_data_is_rejected() {
    let mut queue = Harness::new();
    let mut request = Harness::enqueue_request(Uuid::new_v4(), Uuid::new_v4(), "key");
    request.data_json = Some("[]".to_string());

    assert_rejected(&mut queue, Operation::Enqueue(request), "data");
}

#[test]
fn enqueue_over_size_limit_is_rejected() {
    let mut queue = Harness::new();
    queue.policy.max_message_bytes = 1024;
    let mut request = Harness::enqueue_request(Uuid::new_v4(), Uuid::new_v4(), "key");
    request.target_json = format!(r#"{{"blob":"{}"}}"#, "x".repeat(1024));

    assert_rejected(&mut queue, Operation::Enqueue(request), "message");
}

#[test]
fn release_with_empty_reason_is_rejected() {
    let mut queue = Harness::new();
    let pool = Uuid::new_v4();
    let message = queue.enqueue(pool, "key");
    let reservation = queue.reserve(pool).unwrap();

    let operation = Operation::Release {
        reservation: super::reference(pool, message.message_id, &reservation.reservation_token),
        reason: String::new(),
    };

    assert_rejected(&mut queue, operation, "reason");
}

#[test]
fn expire_leases_with_limit_below_one_is_rejected() {
    let mut queue = Harness::new();

    assert_rejected(
        &mut queue,
        Operation::ExpireLeases {
            limit: 0,
            work_pool_id: None,
        },
        "limit",
    );
}

#[test]
fn policy_out_of_range_is_rejected() {
    let cases: [(Policy, &str); 3] = [
        (Policy { lease_us: 0, ..Policy::default() }, "lease_seconds"),
        (Policy { max_delivery_attempts: 0, ..Policy::default() }, "max_delivery_attempts"),
        (
            Policy {
                completed_retention_us: Some(-1),
                ..Policy::default()
            },
            "completed_idempotency_retention_seconds",
        ),
    ];
    for (policy, field) in cases {
        let mut queue = Harness::new();
        queue.policy = policy;

        assert_rejected(&mut queue, Operation::WakeDispatchers { work_pool_id: Uuid::new_v4() }, field);
    }
}

#[test]
fn invalid_request_id_is_rejected() {
    let mut queue = Harness::new();
    let mut command = queue.command(Operation::WakeDispatchers {
        work_pool_id: Uuid::new_v4(),
    });
    command.request_id = Some("x".repeat(129));

    let output = queue.apply(&command);

    assert!(matches!(
        output.response,
        Response::Rejected(CommandError::InvalidInput { ref field, .. }) if field == "request_id"
    ));
}
