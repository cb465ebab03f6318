//! The worker cycle through the `raftq` client commands with `--json`,
//! shared by the CLI and `raftq dev` suites.

use std::process::{Command, Output};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use uuid::Uuid;

/// Runs a `raftq` command and returns its output, whatever its status.
pub fn run(mut command: Command) -> Result<Output> {
    command.output().context("failed to run raftq")
}

/// Runs a `raftq ... --json` command that must succeed and parses the one
/// JSON object it prints.
fn run_json(command: Command) -> Result<Value> {
    let output = run(command)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "raftq failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(lines.len() == 1, "expected one line of JSON, got {stdout:?}");
    serde_json::from_str(lines[0]).with_context(|| format!("stdout is not JSON: {stdout:?}"))
}

/// Builds a `raftq` command with the given arguments and `--json`.
pub fn raftq(base: &Command, args: &[&str]) -> Command {
    let mut command = Command::new(base.get_program());
    for (name, value) in base.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.args(args).arg("--json");
    command
}

/// Runs enqueue, reserve (twice, the second on an empty pool), ack and read
/// with `--json` and checks every printed field that the contract names.
pub fn worker_cycle(base: &Command) -> Result<()> {
    let pool = Uuid::new_v4().to_string();
    let message_id = Uuid::new_v4().to_string();

    let enqueued = run_json(raftq(
        base,
        &[
            "enqueue", "--pool", &pool, "--kind", "pending_claim_teardown.v1", "--key", "job-1",
            "--target", r#"{"container":"abc","attempt":1}"#, "--message-id", &message_id,
        ],
    ))?;
    assert_eq!(enqueued["duplicate"], Value::Bool(false));
    let message = &enqueued["message"];
    assert_eq!(message["message_id"], Value::from(message_id.as_str()));
    assert_eq!(message["idempotency_key"], "job-1");
    assert_eq!(message["work_pool_id"], Value::from(pool.as_str()));
    assert_eq!(message["work_queue_id"], Value::Null);
    assert_eq!(message["target"]["attempt"], Value::from(1));
    assert_eq!(message["data"], serde_json::json!({}));
    assert_eq!(message["delivery_count"], Value::from(0));
    let created_at = message["created_at"].as_str().context("created_at is not a string")?;
    assert_eq!(created_at.len(), "2026-01-01T00:00:00.000000Z".len(), "{created_at}");
    assert!(created_at.ends_with('Z'), "{created_at}");

    let reserved = run_json(raftq(base, &["reserve", "--pool", &pool, "--kind", "pending_claim_teardown.v1"]))?;
    let reservation = &reserved["reservation"];
    assert_eq!(reservation["message_id"], Value::from(message_id.as_str()));
    assert_eq!(reservation["delivery_count"], Value::from(1));
    let token = reservation["reservation_token"].as_str().context("no reservation_token")?;
    assert!(token.len() > 32);
    assert!(reservation["lease_expires_at"].is_string());

    let empty = run_json(raftq(base, &["reserve", "--pool", &pool]))?;
    assert_eq!(empty["reservation"], Value::Null);

    let acked = run_json(raftq(base, &["ack", "--pool", &pool, "--message-id", &message_id, "--token", token]))?;
    assert_eq!(acked["status"], "accepted");
    assert_eq!(acked["operation"], "ack");
    assert_eq!(acked["message_id"], Value::from(message_id.as_str()));

    // A second ack finds no active message: the result is printed and the
    // exit status is 3, so that scripts notice.
    let again = run(raftq(base, &["ack", "--pool", &pool, "--message-id", &message_id, "--token", token]))?;
    assert_eq!(again.status.code(), Some(3), "{}", String::from_utf8_lossy(&again.stderr));
    let again_result: Value = serde_json::from_slice(&again.stdout).context("the second ack printed no JSON")?;
    assert_eq!(again_result["status"], "not_found");

    let read = run_json(raftq(base, &["read", "--pool", &pool, "--message-id", &message_id]))?;
    assert_eq!(read["message"], Value::Null, "an acked message is not active");

    let stats = run_json(raftq(base, &["stats", "--pool", &pool]))?;
    assert_eq!(stats["tombstones"], Value::from(1));
    Ok(())
}
