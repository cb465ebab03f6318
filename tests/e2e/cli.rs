//! The `raftq` client commands with `--json`, against a harness cluster and
//! against `raftq dev`.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use raftq_integration_tests::{raftq_binary, wait_until, Cluster, ClusterOptions};
use serde_json::Value;
use uuid::Uuid;

/// Runs a `raftq` command and returns its output, whatever its status.
fn run(mut command: Command) -> Result<Output> {
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
fn raftq(base: &Command, args: &[&str]) -> Command {
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
fn worker_cycle(base: &Command) -> Result<()> {
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

    let read = run_json(raftq(base, &["read", "--pool", &pool, "--message-id", &message_id]))?;
    assert_eq!(read["message"], Value::Null, "an acked message is not active");

    let stats = run_json(raftq(base, &["stats", "--pool", &pool]))?;
    assert_eq!(stats["tombstones"], Value::from(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_worker_cycle_prints_json() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions::default()).await?;
    let base = cluster.raftq_command();

    tokio::task::spawn_blocking(move || worker_cycle(&base)).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bad_input_fails_on_stderr() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions::default()).await?;
    let base = cluster.raftq_command();
    let pool = Uuid::new_v4().to_string();

    let output = tokio::task::spawn_blocking(move || {
        run(raftq(&base, &["enqueue", "--pool", &pool, "--kind", "k.v1", "--key", "key", "--target", "[1]"]))
    })
    .await??;

    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing on stdout for an error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid argument"), "{stderr}");
    assert!(stderr.contains("target"), "{stderr}");
    Ok(())
}

/// A `raftq dev` process that is stopped with SIGINT when dropped, so that
/// a failing test does not leave its three nodes running. SIGKILL would end
/// `raftq dev` without stopping the nodes it started.
struct DevProcess(std::process::Child);

impl DevProcess {
    fn interrupt(&self) -> bool {
        // SAFETY: kill(2) reads only its arguments, and the pid is our child,
        // not yet reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) == 0 }
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) && self.interrupt() {
            let _ = self.0.wait();
        }
    }
}

/// Finds a base port for `raftq dev`, whose node i uses BASE + 10 * (i - 1)
/// and the two ports after it, such that all nine ports are free now.
fn free_dev_base_port() -> Result<u16> {
    for _ in 0..50 {
        let probe = TcpListener::bind("127.0.0.1:0")?;
        let base = probe.local_addr()?.port();
        drop(probe);
        if base > 65_000 {
            continue;
        }
        let ports: Vec<u16> = (0..3).flat_map(|node| (0..3).map(move |offset| base + node * 10 + offset)).collect();
        let all_free = ports.iter().all(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    bail!("found no free range of ports for raftq dev")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_serves_cycle_and_stops_on_sigint() -> Result<()> {
    let binary = raftq_binary()?;
    let data_dir = tempfile::tempdir()?;
    let base_port = free_dev_base_port()?;
    let mut dev = Command::new(&binary)
        .args(["dev", "--base-port", &base_port.to_string(), "--data-dir"])
        .arg(data_dir.path())
        .env_remove("RAFTQ_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("failed to start raftq dev")?;
    let stdout = dev.stdout.take().context("no stdout")?;
    let mut dev = DevProcess(dev);

    let endpoints = tokio::task::spawn_blocking(move || -> Result<(String, BufReader<_>)> {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("raftq dev exited before printing its endpoints");
            }
            if let Some(list) = line.trim().strip_prefix("export RAFTQ_ENDPOINTS=") {
                return Ok((list.to_string(), reader));
            }
        }
    });
    let (endpoints, mut reader) = tokio::time::timeout(Duration::from_secs(60), endpoints)
        .await
        .context("raftq dev printed no endpoints within 60 s")???;

    let mut base = Command::new(&binary);
    base.env("RAFTQ_ENDPOINTS", &endpoints);
    tokio::task::spawn_blocking(move || worker_cycle(&base)).await??;

    assert!(dev.interrupt(), "failed to send SIGINT to raftq dev");
    let status = tokio::task::spawn_blocking(move || dev.0.wait()).await??;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest)?;

    assert!(status.success(), "raftq dev exited with {status}; output: {rest}");
    assert!(rest.contains("stopped"), "{rest}");
    let client_ports: Vec<u16> = (0..3).map(|node| base_port + node * 10).collect();
    wait_until("every dev node to close its client port", Duration::from_secs(30), || {
        let open: Vec<u16> = client_ports
            .iter()
            .copied()
            .filter(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
            .collect();
        async move {
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("still open: {open:?}"))
            }
        }
    })
    .await?;
    Ok(())
}
