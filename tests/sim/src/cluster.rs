//! Three real `RaftNode`s on the simulated network, each with its sled log
//! and snapshots in its own temporary directory, that can be crashed and
//! restarted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use raftq_raft::types::LogId;
use raftq_raft::{NodeConfig, RaftNode, StartError};
use raftq_state_machine::QueueState;

use crate::durable::{DurableError, DurableLog};
use crate::network::{sim_node_info, Router, SimNetwork};
use crate::observer::Observer;

pub const NODE_IDS: [u64; 3] = [1, 2, 3];

/// How long a start may wait for the previous instance of the node to
/// release its sled lock, and a stopped node's storage to become readable.
const STORAGE_RELEASE_WAIT: Duration = Duration::from_secs(20);

/// Failure of a cluster operation of the simulation itself.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to create the data directory: {0}")]
    DataDir(#[source] std::io::Error),

    #[error("node {node_id} did not start within {waited_ms} ms: {source}")]
    Start {
        node_id: u64,
        waited_ms: u128,
        source: StartError,
    },

    #[error("initializing the cluster failed: {0}")]
    Initialize(String),

    #[error(transparent)]
    Durable(#[from] DurableError),
}

struct Slot {
    node: Option<RaftNode>,
    /// Starts of this node so far, so a caller can tell whether the node it
    /// wrote to was restarted meanwhile.
    incarnation: u64,
}

/// A node's final in-memory state.
pub struct FinalState {
    pub node_id: u64,
    pub last_applied: Option<LogId>,
    pub state: QueueState,
}

pub struct SimCluster {
    root: tempfile::TempDir,
    router: Arc<Router>,
    observer: Arc<Observer>,
    slots: Mutex<BTreeMap<u64, Slot>>,
    crashes: AtomicU64,
}

impl SimCluster {
    /// Starts the three nodes, each in its own data directory.
    pub async fn start(router: Arc<Router>, observer: Arc<Observer>) -> Result<Self, ClusterError> {
        let root = tempfile::Builder::new()
            .prefix("raftq-sim-")
            .tempdir()
            .map_err(ClusterError::DataDir)?;
        let cluster = SimCluster {
            root,
            router,
            observer,
            crashes: AtomicU64::new(0),
            slots: Mutex::new(
                NODE_IDS
                    .iter()
                    .map(|id| {
                        let slot = Slot {
                            node: None,
                            incarnation: 0,
                        };
                        (*id, slot)
                    })
                    .collect(),
            ),
        };
        for node_id in NODE_IDS {
            cluster.restart(node_id).await?;
        }
        Ok(cluster)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn data_dir(&self, node_id: u64) -> PathBuf {
        self.root.path().join(format!("node-{node_id}"))
    }

    /// Returns the node's settings: heartbeats every 50 ms, elections after
    /// 300 to 600 ms, a snapshot every 40 entries with 10 entries kept behind
    /// it, so that a node that was down or cut off for a while catches up by
    /// snapshot.
    fn config(&self, node_id: u64) -> NodeConfig {
        // Never bound: `start_with_network` serves no peer service.
        let unused_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = NodeConfig::new(
            node_id,
            self.data_dir(node_id),
            unused_listen,
            sim_node_info(node_id),
        );
        config.heartbeat_interval_ms = 50;
        config.election_timeout_min_ms = 300;
        config.election_timeout_max_ms = 600;
        config.snapshot_every_entries = 40;
        config.max_in_snapshot_log_to_keep = 10;
        config.install_snapshot_timeout_ms = 2_000;
        config.request_timeout_ms = 1_500;
        config.membership_timeout_ms = 20_000;
        config
    }

    /// Returns the running node and its incarnation.
    pub fn node(&self, node_id: u64) -> Option<(RaftNode, u64)> {
        let slots = self.slots();
        let slot = slots.get(&node_id)?;
        slot.node.clone().map(|node| (node, slot.incarnation))
    }

    pub fn running_nodes(&self) -> Vec<RaftNode> {
        self.slots()
            .values()
            .filter_map(|slot| slot.node.clone())
            .collect()
    }

    pub fn stopped_nodes(&self) -> Vec<u64> {
        self.slots()
            .iter()
            .filter(|(_, slot)| slot.node.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Returns how many times a node was stopped, the final stops included.
    pub fn crashes(&self) -> u64 {
        self.crashes.load(Ordering::Relaxed)
    }

    /// Returns the running node that is leader by its own metrics.
    pub fn leader(&self) -> Option<RaftNode> {
        self.running_nodes().into_iter().find(|node| {
            let metrics = node.metrics();
            let metrics = metrics.borrow();
            metrics.state == ServerState::Leader && metrics.current_leader == Some(node.node_id())
        })
    }

    /// Returns the leader, or else the leader that a running node names.
    pub fn leader_hint(&self) -> Option<u64> {
        if let Some(leader) = self.leader() {
            return Some(leader.node_id());
        }
        self.running_nodes()
            .iter()
            .find_map(|node| node.metrics().borrow().current_leader)
    }

    /// Forms the cluster of the three nodes from node 1.
    pub async fn initialize(&self) -> Result<(), ClusterError> {
        let (first, _) = self
            .node(NODE_IDS[0])
            .ok_or_else(|| ClusterError::Initialize("node 1 is not running".to_string()))?;
        let members = NODE_IDS
            .iter()
            .map(|id| (*id, sim_node_info(*id)))
            .collect();
        first
            .initialize(members)
            .await
            .map(|_| ())
            .map_err(|error| ClusterError::Initialize(error.to_string()))
    }

    /// Stops a node as a crash does: it becomes unreachable at once, stops,
    /// and its durable log and snapshot are read back and replayed into the
    /// observations. Stopping a stopped node does nothing.
    pub async fn crash(&self, node_id: u64) -> Result<(), ClusterError> {
        let Some(node) = self
            .slots()
            .get_mut(&node_id)
            .and_then(|slot| slot.node.take())
        else {
            return Ok(());
        };
        self.router.unregister(node_id);
        let applied_hint = node.metrics().borrow().last_applied;
        tracing::info!(node_id, "crashing node");
        self.crashes.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = node.shutdown().await {
            tracing::warn!(node_id, %error, "node stopped with an error");
        }

        let durable =
            DurableLog::read(node_id, &self.data_dir(node_id), STORAGE_RELEASE_WAIT).await?;
        self.observer
            .with(|observations| durable.replay(applied_hint, observations))?;
        Ok(())
    }

    /// Starts a stopped node on its data directory. Starting a running node
    /// does nothing.
    pub async fn restart(&self, node_id: u64) -> Result<(), ClusterError> {
        if self.node(node_id).is_some() {
            return Ok(());
        }
        let config = self.config(node_id);
        let network = SimNetwork::new(node_id, Arc::clone(&self.router));
        let started = tokio::time::Instant::now();
        let node = loop {
            match RaftNode::start_with_network(config.clone(), network.clone()).await {
                Ok(node) => break node,
                Err(source) if started.elapsed() >= STORAGE_RELEASE_WAIT => {
                    return Err(ClusterError::Start {
                        node_id,
                        waited_ms: started.elapsed().as_millis(),
                        source,
                    })
                }
                Err(error) => {
                    tracing::debug!(node_id, %error, "retrying a node start");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };

        self.router.register(node_id, node.raft().clone());
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(&node_id) {
            slot.incarnation += 1;
            tracing::info!(node_id, incarnation = slot.incarnation, "node started");
            slot.node = Some(node);
        }
        Ok(())
    }

    /// Waits until every running node applied the leader's last log entry,
    /// and returns that index, or `None` when `wait` passed first.
    pub async fn wait_converged(&self, wait: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if let Some(leader) = self.leader() {
                let target = leader.metrics().borrow().last_log_index;
                let applied: Vec<Option<u64>> = self
                    .running_nodes()
                    .iter()
                    .map(|node| {
                        node.metrics()
                            .borrow()
                            .last_applied
                            .map(|log_id| log_id.index)
                    })
                    .collect();
                if target.is_some() && applied.iter().all(|index| *index >= target) {
                    return target;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Returns the in-memory state of every running node. The index and the
    /// state are read one after the other, so they match only once no write
    /// is in flight and the nodes converged.
    pub fn final_states(&self) -> Vec<FinalState> {
        self.running_nodes()
            .iter()
            .map(|node| FinalState {
                node_id: node.node_id(),
                last_applied: node.metrics().borrow().last_applied,
                state: node.read_local(|state| state.clone()),
            })
            .collect()
    }

    /// Crashes every running node, which records their durable logs.
    pub async fn stop_all(&self) -> Result<(), ClusterError> {
        for node_id in NODE_IDS {
            self.crash(node_id).await?;
        }
        Ok(())
    }
}
