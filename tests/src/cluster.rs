//! A cluster of `raftq serve` processes on 127.0.0.1.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftq_client::{Client, RetryConfig};
use tempfile::TempDir;

use crate::binary::raftq_binary;
use crate::wait::wait_until;

/// Settings of a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes, with ids 1 to `nodes`.
    pub nodes: u64,
    /// Extra arguments given to every `raftq serve`, such as
    /// `--sweep-interval-ms 0`.
    pub serve_args: Vec<String>,
    /// How long `start` waits for the nodes to serve and elect a leader.
    pub ready_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            serve_args: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// One node: its addresses, data directory, log file and process.
pub struct NodeProcess {
    pub id: u64,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The node's stdout and stderr, appended across restarts.
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    /// Returns the node's client endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client_addr)
    }

    /// Returns the process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A running cluster. Dropping it kills every node it started.
pub struct Cluster {
    binary: PathBuf,
    options: ClusterOptions,
    nodes: Vec<NodeProcess>,
    // Kept last so that the data directories outlive the processes.
    _root: TempDir,
}

impl Cluster {
    /// Starts the nodes, forms the cluster with `raftq init` and waits for a
    /// leader that every node reports.
    pub async fn start(options: ClusterOptions) -> Result<Cluster> {
        let binary = raftq_binary()?;
        let root = tempfile::Builder::new()
            .prefix("raftq-cluster-")
            .tempdir()
            .context("failed to create the cluster's temporary directory")?;

        let addresses = pick_addresses(options.nodes as usize * 3)?;
        let mut nodes = Vec::new();
        for (index, ports) in addresses.chunks(3).enumerate() {
            let id = index as u64 + 1;
            let data_dir = root.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("failed to create {}", data_dir.display()))?;
            nodes.push(NodeProcess {
                id,
                client_addr: ports[0],
                peer_addr: ports[1],
                metrics_addr: ports[2],
                log_path: root.path().join(format!("node-{id}.log")),
                data_dir,
                child: None,
            });
        }

        let mut cluster = Cluster {
            binary,
            options,
            nodes,
            _root: root,
        };
        for id in cluster.ids() {
            cluster.spawn(id)?;
        }
        cluster.wait_until_serving().await?;
        cluster.init().await?;
        cluster.wait_for_leader(cluster.options.ready_timeout).await?;
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    pub fn node(&self, id: u64) -> &NodeProcess {
        self.nodes
            .iter()
            .find(|node| node.id == id)
            .unwrap_or_else(|| panic!("the cluster has no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProcess {
        self.nodes
            .iter_mut()
            .find(|node| node.id == id)
            .unwrap_or_else(|| panic!("the cluster has no node {id}"))
    }

    /// Returns the client endpoints of every node, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(NodeProcess::endpoint).collect()
    }

    /// Returns the endpoints as the comma-separated list that `--endpoints`
    /// and `RAFTQ_ENDPOINTS` take.
    pub fn endpoint_list(&self) -> String {
        self.endpoints().join(",")
    }

    /// Returns a client of every node. Must be called inside a Tokio runtime.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(self.endpoints())?)
    }

    /// Returns a client of one node only, which never moves to another node.
    pub fn node_client(&self, id: u64) -> Result<Client> {
        Ok(Client::new([self.node(id).endpoint()])?)
    }

    /// Returns a client of one node that gives up after `total_timeout`, for
    /// probes that must not wait through a long retry loop.
    pub fn probe_client(&self, id: u64, total_timeout: Duration) -> Result<Client> {
        let retry = RetryConfig {
            total_timeout,
            attempt_timeout: total_timeout,
            ..RetryConfig::default()
        };
        Ok(Client::with_config([self.node(id).endpoint()], retry)?)
    }

    /// Returns a `raftq` command with `RAFTQ_ENDPOINTS` set to this cluster.
    pub fn raftq_command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.env("RAFTQ_ENDPOINTS", self.endpoint_list());
        command
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    fn serve_args(&self, node: &NodeProcess) -> Vec<String> {
        let mut args = vec![
            "serve".to_string(),
            "--id".to_string(),
            node.id.to_string(),
            "--data-dir".to_string(),
            node.data_dir.display().to_string(),
            "--listen".to_string(),
            node.client_addr.to_string(),
            "--peer-listen".to_string(),
            node.peer_addr.to_string(),
            "--metrics-listen".to_string(),
            node.metrics_addr.to_string(),
        ];
        args.extend(self.options.serve_args.iter().cloned());
        args
    }

    fn spawn(&mut self, id: u64) -> Result<()> {
        let args = self.serve_args(self.node(id));
        let binary = self.binary.clone();
        let node = self.node_mut(id);
        if node.child.is_some() {
            bail!("node {id} is already running");
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .with_context(|| format!("failed to open {}", node.log_path.display()))?;
        let mut command = Command::new(&binary);
        // Settings come from the arguments alone, never from RAFTQ_*
        // variables of the environment that runs the tests.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RAFTQ_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(&args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {} {}", binary.display(), args.join(" ")))?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until every running node serves a status call.
    async fn wait_until_serving(&self) -> Result<()> {
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            let client = self.probe_client(node.id, Duration::from_secs(1))?;
            wait_until(&format!("node {} to serve", node.id), self.options.ready_timeout, || {
                let client = client.clone();
                async move { client.cluster_status().await.map(|_| ()).map_err(|error| error.to_string()) }
            })
            .await
            .with_context(|| self.log_tail(node.id))?;
        }
        Ok(())
    }

    /// Runs `raftq init` against every node.
    async fn init(&self) -> Result<()> {
        let output = tokio::process::Command::new(&self.binary)
            .args(["init", "--endpoints", &self.endpoint_list()])
            .output()
            .await
            .context("failed to run raftq init")?;
        if !output.status.success() {
            bail!(
                "raftq init failed with {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Waits until a running node reports itself leader and every other
    /// running node names it as leader, and returns its id. A paused node
    /// serves no call, so pause nodes only after this returns.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        let running: Vec<u64> = self.nodes.iter().filter(|node| node.is_running()).map(|node| node.id).collect();
        let probes = running
            .iter()
            .map(|id| Ok((*id, self.probe_client(*id, Duration::from_millis(500))?)))
            .collect::<Result<Vec<_>>>()?;

        let leader = wait_until("every running node to agree on a leader", timeout, || {
            let probes = probes.clone();
            let running = running.clone();
            async move { agreed_leader(&probes, &running).await }
        })
        .await?;
        Ok(leader)
    }

    /// Kills a node with SIGKILL and reaps it.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let node = self.node_mut(id);
        let Some(mut child) = node.child.take() else {
            bail!("node {id} is not running");
        };
        child.kill().with_context(|| format!("failed to kill node {id}"))?;
        child.wait().with_context(|| format!("failed to reap node {id}"))?;
        Ok(())
    }

    /// Pauses a node with SIGSTOP: it keeps its sockets but responds to nothing.
    pub fn pause(&self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGSTOP)
    }

    /// Resumes a node paused with [`Cluster::pause`] (SIGCONT).
    pub fn resume(&self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGCONT)
    }

    /// Sends a signal to a running node.
    pub fn signal(&self, id: u64, signal: libc::c_int) -> Result<()> {
        let pid = self.node(id).pid().with_context(|| format!("node {id} is not running"))?;
        let pid = libc::pid_t::try_from(pid).context("process id out of range")?;
        // SAFETY: kill(2) only reads its arguments; the pid is our own child,
        // not yet reaped, so it cannot name another process.
        let result = unsafe { libc::kill(pid, signal) };
        if result != 0 {
            bail!("failed to send signal {signal} to node {id}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts a node again on the same ports and data directory, killing it
    /// first if it still runs, and waits until it serves.
    pub async fn restart(&mut self, id: u64) -> Result<()> {
        if self.node(id).is_running() {
            self.kill(id)?;
        }
        self.spawn(id)?;
        let client = self.probe_client(id, Duration::from_secs(1))?;
        wait_until(&format!("node {id} to serve after a restart"), self.options.ready_timeout, || {
            let client = client.clone();
            async move { client.cluster_status().await.map(|_| ()).map_err(|error| error.to_string()) }
        })
        .await
        .with_context(|| self.log_tail(id))?;
        Ok(())
    }

    /// Returns the last lines of a node's log, for failure messages.
    pub fn log_tail(&self, id: u64) -> String {
        let node = self.node(id);
        let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!("last lines of node {id}'s log:\n{}", lines[start..].join("\n"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let ids = self.ids();
        for id in ids {
            if panicking {
                eprintln!("{}", self.log_tail(id));
            }
            let node = self.node_mut(id);
            if let Some(mut child) = node.child.take() {
                // SIGKILL ends a paused (SIGSTOP) process too.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Reserves `count` distinct free loopback addresses: every listener stays
/// open until all are picked, so no two picks return the same port.
fn pick_addresses(count: usize) -> Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("failed to bind a free loopback port")?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().context("failed to read a bound address"))
        .collect()
}

/// Returns the leader every probed node agrees on, or what they reported.
async fn agreed_leader(probes: &[(u64, Client)], running: &[u64]) -> Result<u64, String> {
    let mut views = Vec::new();
    for (id, client) in probes {
        match client.cluster_status().await {
            Ok(status) => views.push((*id, status.role.clone(), status.leader_id)),
            Err(error) => return Err(format!("node {id}: {error}")),
        }
    }
    let observation = format!("(node, role, leader) = {views:?}");
    let Some(leader) = views.first().and_then(|(_, _, leader)| *leader) else {
        return Err(observation);
    };
    let all_agree = views.iter().all(|(_, _, view)| *view == Some(leader));
    let leader_leads = views.iter().any(|(id, role, _)| *id == leader && role == "leader");
    if all_agree && leader_leads && running.contains(&leader) {
        Ok(leader)
    } else {
        Err(observation)
    }
}
