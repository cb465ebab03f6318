//! `raftq dev`: a local three-node cluster for a first try, run as child
//! processes of this binary and stopped together on SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::process::{Child, Command};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::admin::{check_health, init_cluster};
use crate::serve::shutdown_signal;

const NODE_COUNT: u16 = 3;
/// Ports between two nodes: node i listens on base + (i - 1) * 10 + 0, 1, 2.
const PORT_STRIDE: u16 = 10;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for the nodes' data and log files (node-1/, node-1.log, ...).
    /// Default: a temporary directory, deleted when the cluster stops.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// First port. Node i (1 to 3) serves clients on BASE + 10 * (i - 1),
    /// its peer service on the next port and its metrics on the one after.
    #[arg(long, default_value_t = 7000, value_name = "P")]
    pub base_port: u16,
}

struct DevNode {
    id: u16,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    log_path: PathBuf,
    child: Child,
}

impl DevNode {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

pub async fn run(args: DevArgs) -> Result<()> {
    let mut shutdown = Box::pin(shutdown_signal().context("failed to install the SIGTERM and SIGINT handlers")?);

    // The guard deletes a temporary directory when it drops, after the nodes stopped.
    let (mut temporary, root) = match &args.data_dir {
        Some(dir) => (None, dir.clone()),
        None => {
            let temporary = tempfile::Builder::new()
                .prefix("raftq-dev-")
                .tempdir()
                .context("failed to create a temporary data directory")?;
            let root = temporary.path().to_path_buf();
            (Some(temporary), root)
        }
    };
    std::fs::create_dir_all(&root).with_context(|| format!("failed to create {}", root.display()))?;
    if u32::from(args.base_port) + u32::from(PORT_STRIDE * NODE_COUNT) > u32::from(u16::MAX) {
        bail!("--base-port {} leaves no room for three nodes below port 65535", args.base_port);
    }

    let mut nodes = Vec::new();
    let started = tokio::select! {
        result = start_cluster(&root, args.base_port, &mut nodes) => result,
        _ = &mut shutdown => Err(anyhow::anyhow!("interrupted while starting")),
    };
    if let Err(error) = started {
        stop_nodes(&mut nodes).await;
        // The error names a node's log file: keep the directory for reading it.
        if let Some(directory) = temporary.take() {
            let kept = directory.keep();
            eprintln!("kept the data directory {} for its logs", kept.display());
        }
        return Err(error);
    }

    print_welcome(&root, &nodes, args.data_dir.is_none());

    let exited = {
        let waits = nodes.iter_mut().map(|node| Box::pin(node.child.wait()));
        tokio::select! {
            _ = &mut shutdown => None,
            (status, index, _) = futures::future::select_all(waits) => Some((index, status)),
        }
    };
    if let Some((index, status)) = &exited {
        let node = &nodes[*index];
        eprintln!(
            "node {} exited on its own ({}); stopping the others. Its log: {}",
            node.id,
            status.as_ref().map_or_else(|error| error.to_string(), |status| status.to_string()),
            node.log_path.display()
        );
    }

    println!("stopping the cluster");
    stop_nodes(&mut nodes).await;
    println!("stopped");
    match exited {
        Some(_) => bail!("a node exited unexpectedly"),
        None => Ok(()),
    }
}

async fn start_cluster(root: &Path, base_port: u16, nodes: &mut Vec<DevNode>) -> Result<()> {
    let binary = std::env::current_exe().context("failed to find this binary's path")?;
    for id in 1..=NODE_COUNT {
        let client_port = base_port + (id - 1) * PORT_STRIDE;
        nodes.push(spawn_node(&binary, root, id, client_port)?);
    }

    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    for node in nodes.iter_mut() {
        wait_until_serving(node, deadline).await?;
    }

    let endpoints: Vec<String> = nodes.iter().map(DevNode::endpoint).collect();
    let outcome = init_cluster(&endpoints, STARTUP_TIMEOUT).await?;
    if outcome.leader_id.is_none() {
        bail!("no leader was elected within {} s", STARTUP_TIMEOUT.as_secs());
    }
    Ok(())
}

fn spawn_node(binary: &Path, root: &Path, id: u16, client_port: u16) -> Result<DevNode> {
    let peer_port = client_port + 1;
    let metrics_port = client_port + 2;
    let data_dir = root.join(format!("node-{id}"));
    let log_path = root.join(format!("node-{id}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("failed to create the log file {}", log_path.display()))?;
    let log_for_stderr = log
        .try_clone()
        .with_context(|| format!("failed to open the log file {} twice", log_path.display()))?;

    let mut command = Command::new(binary);
    command
        .arg("serve")
        .args(["--id", &id.to_string()])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", &format!("127.0.0.1:{client_port}")])
        .args(["--peer-listen", &format!("127.0.0.1:{peer_port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr)
        // Its own process group keeps a terminal's Ctrl-C away from the
        // nodes, so that this process stops them in order.
        .process_group(0)
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        // If this process dies without stopping the nodes, the kernel sends
        // them SIGTERM.
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("failed to start node {id} ({})", binary.display()))?;

    Ok(DevNode {
        id,
        client_port,
        peer_port,
        metrics_port,
        log_path,
        child,
    })
}

async fn wait_until_serving(node: &mut DevNode, deadline: tokio::time::Instant) -> Result<()> {
    loop {
        if let Some(status) = node.child.try_wait().context("failed to check a node process")? {
            bail!(
                "node {} exited during startup ({status}); see {}",
                node.id,
                node.log_path.display()
            );
        }
        if let Ok(ServingStatus::Serving) = check_health(&node.endpoint(), "", Duration::from_secs(1)).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "node {} did not report SERVING within {} s; see {}",
                node.id,
                STARTUP_TIMEOUT.as_secs(),
                node.log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM to every node still running, waits for each, and kills
/// the ones that do not stop in time.
async fn stop_nodes(nodes: &mut [DevNode]) {
    for node in nodes.iter() {
        if let Some(pid) = node.child.id() {
            // SAFETY: kill has no memory effects; the pid is our own child,
            // which is not reaped yet, so the id cannot name another process.
            let result = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if result == -1 {
                eprintln!("failed to send SIGTERM to node {}: {}", node.id, std::io::Error::last_os_error());
            }
        }
    }
    for node in nodes.iter_mut() {
        match tokio::time::timeout(STOP_TIMEOUT, node.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("node {} stopped with {status}; see {}", node.id, node.log_path.display()),
            Ok(Err(error)) => eprintln!("failed to wait for node {}: {error}", node.id),
            Err(_elapsed) => {
                eprintln!("node {} did not stop within {} s; killing it", node.id, STOP_TIMEOUT.as_secs());
                if let Err(error) = node.child.kill().await {
                    eprintln!("failed to kill node {}: {error}", node.id);
                }
            }
        }
    }
}

fn print_welcome(root: &Path, nodes: &[DevNode], temporary: bool) {
    println!("raftq dev cluster is running (data in {}{})", root.display(), if temporary { ", deleted at exit" } else { "" });
    for node in nodes {
        println!(
            "  node {}: client {}  peer 127.0.0.1:{}  metrics http://127.0.0.1:{}/metrics  log {}",
            node.id,
            node.endpoint(),
            node.peer_port,
            node.metrics_port,
            node.log_path.display()
        );
    }
    let endpoints: Vec<String> = nodes.iter().map(DevNode::endpoint).collect();
    println!();
    // The full path, since a binary run through `cargo run` is not on PATH.
    let binary = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "raftq".to_string());
    println!("Try, in another shell:");
    println!("  export RAFTQ_ENDPOINTS={}", endpoints.join(","));
    println!(
        "  {binary} enqueue --pool {} --kind demo.v1 --key first --target '{{\"container\": \"abc\"}}'",
        uuid::Uuid::new_v4()
    );
    println!("  {binary} status");
    println!();
    println!("Press Ctrl-C to stop all three nodes.");
}
