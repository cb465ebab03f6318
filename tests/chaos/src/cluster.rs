//! A cluster of `raftq serve` processes, one per network namespace of a
//! [`Topology`], with the controls the nemesis needs: SIGKILL, SIGSTOP and
//! SIGCONT, restarts with other options, data wipes and membership changes.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftq_client::proto::ClusterStatusResponse;
use raftq_client::{Client, RetryConfig};
use raftq_integration_tests::{raftq_binary, wait_until};
use tempfile::TempDir;

use crate::netns::Topology;
use crate::spawn::spawn_in_namespace;

/// Ports every node listens on, at its own address.
pub const CLIENT_PORT: u16 = 7000;
const PEER_PORT: u16 = 7001;
const METRICS_PORT: u16 = 9100;

/// Settings of a chaos cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub nodes: u8,
    /// Arguments given to every `raftq serve` after the addresses.
    pub serve_args: Vec<String>,
    /// How long a node may take to respond after a start, and the cluster to
    /// elect a leader.
    pub ready_timeout: Duration,
}

struct Node {
    id: u8,
    address: Ipv4Addr,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Passed as `--clock-skew-ms` on the next start.
    clock_skew_ms: i64,
    /// False between `raftq remove` and the next `raftq join`.
    member: bool,
}

/// A running chaos cluster. Dropping it kills every node, then removes the
/// network, then the data directories.
pub struct ChaosCluster {
    binary: PathBuf,
    settings: ClusterSettings,
    nodes: Vec<Node>,
    topology: Topology,
    root: TempDir,
}

impl ChaosCluster {
    /// Creates the network, starts the nodes, forms the cluster with
    /// `raftq init` and waits for a leader.
    pub async fn start(settings: ClusterSettings) -> Result<ChaosCluster> {
        let binary = raftq_binary()?;
        let topology = Topology::create(settings.nodes)?;
        let root = tempfile::Builder::new()
            .prefix(&format!("raftq-chaos-{}-", topology.run_id()))
            .tempdir()
            .context("failed to create the run's temporary directory")?;
        let nodes = (1..=settings.nodes)
            .map(|id| Node {
                id,
                address: topology.node_address(id),
                data_dir: root.path().join(format!("node-{id}")),
                log_path: root.path().join(format!("node-{id}.log")),
                child: None,
                paused: false,
                clock_skew_ms: 0,
                member: true,
            })
            .collect();
        let mut cluster = ChaosCluster {
            binary,
            settings,
            nodes,
            topology,
            root,
        };

        for id in cluster.ids() {
            cluster.spawn(id)?;
        }
        for id in cluster.ids() {
            cluster.wait_until_serving(id).await?;
        }
        cluster.run_cli(&["init", "--endpoints", &cluster.endpoints().join(",")]).await?;
        cluster.wait_for_leader(cluster.settings.ready_timeout).await?;
        tracing::info!(run = %cluster.topology.run_id(), nodes = cluster.settings.nodes, "chaos cluster started");
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<u8> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Returns the directory of the data directories and node logs.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    fn node(&self, id: u8) -> Result<&Node> {
        self.nodes.iter().find(|node| node.id == id).with_context(|| format!("the cluster has no node {id}"))
    }

    fn node_mut(&mut self, id: u8) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|node| node.id == id)
            .with_context(|| format!("the cluster has no node {id}"))
    }

    /// Returns a node's client endpoint, `http://ADDRESS:7000`.
    pub fn endpoint(&self, id: u8) -> String {
        format!("http://{}:{CLIENT_PORT}", self.topology.node_address(id))
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.endpoint(id)).collect()
    }

    /// Returns a client of every node with the given retry timing.
    pub fn client(&self, retry: RetryConfig) -> Result<Client> {
        Ok(Client::with_config(self.endpoints(), retry)?)
    }

    /// Returns a client of one node that never moves to another node and
    /// gives up after `total_timeout`.
    pub fn node_client(&self, id: u8, total_timeout: Duration) -> Result<Client> {
        let retry = RetryConfig {
            total_timeout,
            attempt_timeout: total_timeout,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        };
        Ok(Client::with_config([self.endpoint(id)], retry)?)
    }

    /// True when the node's process runs and is not paused.
    pub fn is_up(&self, id: u8) -> bool {
        self.node(id).is_ok_and(|node| node.child.is_some() && !node.paused)
    }

    pub fn is_member(&self, id: u8) -> bool {
        self.node(id).is_ok_and(|node| node.member)
    }

    /// Ids of the nodes that run, are not paused and are members.
    pub fn live_members(&self) -> Vec<u8> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some() && !node.paused && node.member)
            .map(|node| node.id)
            .collect()
    }

    fn serve_args(&self, node: &Node) -> Vec<String> {
        let address = node.address;
        let mut args = vec![
            "serve".to_string(),
            "--id".to_string(),
            node.id.to_string(),
            "--data-dir".to_string(),
            node.data_dir.display().to_string(),
            "--listen".to_string(),
            format!("{address}:{CLIENT_PORT}"),
            "--peer-listen".to_string(),
            format!("{address}:{PEER_PORT}"),
            "--metrics-listen".to_string(),
            format!("{address}:{METRICS_PORT}"),
        ];
        args.extend(self.settings.serve_args.iter().cloned());
        if node.clock_skew_ms != 0 {
            args.push(format!("--clock-skew-ms={}", node.clock_skew_ms));
        }
        args
    }

    fn spawn(&mut self, id: u8) -> Result<()> {
        let node = self.node(id)?;
        if node.child.is_some() {
            bail!("node {id} is already running");
        }
        let args = self.serve_args(node);
        std::fs::create_dir_all(&node.data_dir)
            .with_context(|| format!("failed to create {}", node.data_dir.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .with_context(|| format!("failed to open {}", node.log_path.display()))?;

        let mut command = Command::new(&self.binary);
        // Settings come from the arguments alone, never from RAFTQ_*
        // variables of the environment that runs the suite.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RAFTQ_") {
                command.env_remove(name);
            }
        }
        command
            .args(&args)
            .env("RUST_LOG", std::env::var("RAFTQ_CHAOS_NODE_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_in_namespace(command, &self.topology.node_namespace_path(id))
            .with_context(|| format!("failed to start node {id}: {} {}", self.binary.display(), args.join(" ")))?;
        tracing::info!(node_id = id, pid = child.id(), args = %args[1..].join(" "), "started a node");
        let node = self.node_mut(id)?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Waits until a node responds to a status call.
    pub async fn wait_until_serving(&self, id: u8) -> Result<()> {
        let client = self.node_client(id, Duration::from_millis(500))?;
        wait_until(&format!("node {id} to serve"), self.settings.ready_timeout, || {
            let client = client.clone();
            async move { client.cluster_status().await.map(|_| ()).map_err(|error| error.to_string()) }
        })
        .await
        .with_context(|| self.log_tail(id))?;
        Ok(())
    }

    /// Kills a node with SIGKILL and reaps it.
    pub fn kill(&mut self, id: u8) -> Result<()> {
        let node = self.node_mut(id)?;
        let Some(mut child) = node.child.take() else {
            bail!("node {id} is not running");
        };
        node.paused = false;
        child.kill().with_context(|| format!("failed to kill node {id}"))?;
        child.wait().with_context(|| format!("failed to reap node {id}"))?;
        tracing::info!(node_id = id, "killed a node with SIGKILL");
        Ok(())
    }

    /// Pauses a node with SIGSTOP: it keeps its sockets but runs nothing.
    pub fn pause(&mut self, id: u8) -> Result<()> {
        self.signal(id, libc::SIGSTOP)?;
        self.node_mut(id)?.paused = true;
        tracing::info!(node_id = id, "paused a node with SIGSTOP");
        Ok(())
    }

    /// Resumes a paused node with SIGCONT.
    pub fn resume(&mut self, id: u8) -> Result<()> {
        self.signal(id, libc::SIGCONT)?;
        self.node_mut(id)?.paused = false;
        tracing::info!(node_id = id, "resumed a node with SIGCONT");
        Ok(())
    }

    fn signal(&self, id: u8, signal: libc::c_int) -> Result<()> {
        let node = self.node(id)?;
        let pid = node.child.as_ref().map(Child::id).with_context(|| format!("node {id} is not running"))?;
        let pid = libc::pid_t::try_from(pid).context("process id out of range")?;
        // SAFETY: kill(2) only reads its arguments, and the pid is a child of
        // this process that has not been reaped, so it names no other process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("failed to send signal {signal} to node {id}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts a stopped node and waits until it responds.
    pub async fn start_node(&mut self, id: u8) -> Result<()> {
        self.spawn(id)?;
        self.wait_until_serving(id).await
    }

    /// Kills a node if it runs, starts it again with the same data and
    /// waits until it responds.
    pub async fn restart(&mut self, id: u8) -> Result<()> {
        if self.node(id)?.child.is_some() {
            self.kill(id)?;
        }
        self.start_node(id).await
    }

    /// Sets the `--clock-skew-ms` of the node's next start.
    pub fn set_clock_skew(&mut self, id: u8, skew_ms: i64) -> Result<()> {
        self.node_mut(id)?.clock_skew_ms = skew_ms;
        Ok(())
    }

    /// Deletes a stopped node's data directory.
    pub fn wipe(&mut self, id: u8) -> Result<()> {
        let node = self.node(id)?;
        if node.child.is_some() {
            bail!("node {id} must be stopped before its data is wiped");
        }
        std::fs::remove_dir_all(&node.data_dir)
            .with_context(|| format!("failed to delete {}", node.data_dir.display()))?;
        tracing::info!(node_id = id, "wiped a node's data directory");
        Ok(())
    }

    /// Removes a node from the membership with `raftq remove`, through the
    /// other members.
    pub async fn remove_member(&mut self, id: u8) -> Result<()> {
        let endpoints = self.member_endpoints_except(id);
        self.run_cli(&["remove", "--endpoints", &endpoints, "--id", &id.to_string()]).await?;
        self.node_mut(id)?.member = false;
        Ok(())
    }

    /// Adds a running node back with `raftq join` (learner, then voter).
    pub async fn join_member(&mut self, id: u8) -> Result<()> {
        let endpoints = self.member_endpoints_except(id);
        let node = self.endpoint(id);
        self.run_cli(&["join", "--endpoints", &endpoints, "--node", &node, "--wait-seconds", "60"]).await?;
        self.node_mut(id)?.member = true;
        Ok(())
    }

    fn member_endpoints_except(&self, id: u8) -> String {
        self.nodes
            .iter()
            .filter(|node| node.member && node.id != id)
            .map(|node| self.endpoint(node.id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs the `raftq` binary from the root namespace.
    async fn run_cli(&self, args: &[&str]) -> Result<String> {
        let mut command = tokio::process::Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RAFTQ_") {
                command.env_remove(name);
            }
        }
        let output = command
            .args(args)
            .output()
            .await
            .with_context(|| format!("failed to run raftq {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "raftq {} failed with {}: {}{}",
                args.join(" "),
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tracing::info!(command = %args.join(" "), output = %stdout.trim(), "ran the raftq CLI");
        Ok(stdout)
    }

    /// Asks one node for its status, giving up after `timeout`.
    pub async fn status(&self, id: u8, timeout: Duration) -> Result<ClusterStatusResponse> {
        let client = self.node_client(id, timeout)?;
        Ok(client.cluster_status().await?)
    }

    /// Returns the leader that every node of `ids` names, once one of them
    /// reports itself leader, or what they reported.
    pub async fn agreed_leader(&self, ids: &[u8]) -> Result<u8, String> {
        let mut views = Vec::new();
        for id in ids {
            match self.status(*id, Duration::from_millis(500)).await {
                Ok(status) => views.push((*id, status.role, status.leader_id)),
                Err(error) => return Err(format!("node {id}: {error:#}")),
            }
        }
        let observation = format!("(node, role, leader) = {views:?}");
        let Some(leader) = views.first().and_then(|(_, _, leader)| *leader) else {
            return Err(observation);
        };
        let agree = views.iter().all(|(_, _, view)| *view == Some(leader));
        let leads = views.iter().any(|(id, role, _)| u64::from(*id) == leader && role == "leader");
        match u8::try_from(leader) {
            Ok(leader) if agree && leads => Ok(leader),
            _ => Err(observation),
        }
    }

    /// Waits until the live members agree on a leader among them.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u8> {
        let ids = self.live_members();
        self.wait_for_leader_among(&ids, timeout).await
    }

    /// Waits until the nodes of `ids` agree on a leader that is one of them.
    pub async fn wait_for_leader_among(&self, ids: &[u8], timeout: Duration) -> Result<u8> {
        let condition = format!("nodes {ids:?} to agree on a leader");
        let leader = wait_until(&condition, timeout, || async move { self.agreed_leader(ids).await }).await?;
        Ok(leader)
    }

    /// Returns the last lines of a node's log, for failure messages.
    pub fn log_tail(&self, id: u8) -> String {
        let Ok(node) = self.node(id) else {
            return format!("the cluster has no node {id}");
        };
        let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!("last lines of node {id}'s log:\n{}", lines[start..].join("\n"))
    }

    /// Copies every node's log into `directory`, for a failed run.
    pub fn copy_logs(&self, directory: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(directory)?;
        for node in &self.nodes {
            std::fs::copy(&node.log_path, directory.join(format!("node-{}.log", node.id)))?;
        }
        Ok(())
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // SIGKILL ends a paused process too.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if panicking {
            for id in self.ids() {
                eprintln!("{}", self.log_tail(id));
            }
        }
        // The topology and the temporary directory are dropped after this,
        // in field order, once no process uses them.
    }
}
