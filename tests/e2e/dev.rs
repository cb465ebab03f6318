//! `raftq dev`: a worker cycle through the CLI, then SIGINT stops all three
//! nodes. A suite of its own, because `raftq dev` listens on fixed ports
//! that must not race with the free ports other suites pick.

#[path = "cli_cycle.rs"]
mod cli_cycle;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cli_cycle::worker_cycle;
use raftq_integration_tests::{raftq_binary, wait_until};

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

/// First and last base port tried for `raftq dev`. They lie below Linux's
/// default ephemeral range (32768 to 60999), so no process that binds port 0
/// is handed one of them while the test runs.
const DEV_BASE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Finds a base port for `raftq dev`, whose node i uses BASE + 10 * (i - 1)
/// and the two ports after it, such that all nine ports are free now.
fn free_dev_base_port() -> Result<u16> {
    let span = DEV_BASE_PORTS.end - DEV_BASE_PORTS.start;
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let offset = (hasher.finish() % u64::from(span)) as u16;
    for attempt in 0..200u16 {
        let base = DEV_BASE_PORTS.start + (offset + attempt * 37) % span;
        let ports: Vec<u16> = (0..3).flat_map(|node| (0..3).map(move |port| base + node * 10 + port)).collect();
        if ports.iter().all(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("found no free range of ports for raftq dev in {DEV_BASE_PORTS:?}")
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
