//! A running raftq node: openraft with the sled storage, the state machine
//! and the peer service, behind the API the server builds on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::raft::ClientWriteResponse;
use openraft::{ChangeMembers, LogIdOptionExt, RaftNetworkFactory};
use raftq_state_machine::{Command, CommandOutput, QueueState};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use uuid::Uuid;

use crate::config::NodeConfig;
use crate::error::{MembershipError, ReadError, ShutdownError, StartError, Stopped, WriteError};
use crate::log_store::LogStore;
use crate::network::client::PeerNetwork;
use crate::network::server::PeerService;
use crate::snapshot_file::SnapshotDir;
use crate::state_machine::{SharedState, StateMachineStore};
use crate::types::{NodeInfo, Raft, RaftMetrics, TypeConfig};

/// The outcome of [`RaftNode::initialize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// This call formed the cluster.
    Initialized,
    /// The node already had a membership, so nothing changed.
    AlreadyInitialized,
}

/// A running node. Clones share it.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    config: NodeConfig,
    raft: Raft,
    shared: Arc<SharedState>,
    peer_addr: SocketAddr,
    /// Taken by `shutdown`, so the database closes even while clones of the
    /// node are still alive.
    db: Mutex<Option<sled::Db>>,
    peer_server: Mutex<Option<PeerServer>>,
}

struct PeerServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

type ClientWriteResult =
    Result<ClientWriteResponse<TypeConfig>, RaftError<u64, ClientWriteError<u64, NodeInfo>>>;

impl RaftNode {
    /// Opens the log and the latest snapshot, starts openraft and serves the
    /// peer service on `config.peer_listen`, bound before this returns.
    pub async fn start(config: NodeConfig) -> Result<RaftNode, StartError> {
        let openraft_config = Arc::new(config.openraft_config()?);
        let storage = Storage::open(&config)?;

        let listener = tokio::net::TcpListener::bind(config.peer_listen)
            .await
            .map_err(|source| StartError::BindPeer {
                addr: config.peer_listen,
                source,
            })?;
        let peer_addr = listener
            .local_addr()
            .map_err(|source| StartError::BindPeer {
                addr: config.peer_listen,
                source,
            })?;

        let network = PeerNetwork::new(
            config.node_id,
            Duration::from_millis(config.peer_connect_timeout_ms),
        );
        let raft = storage
            .start_raft(config.node_id, openraft_config, network)
            .await?;

        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(PeerService::into_server(config.node_id, raft.clone()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                // A dropped sender stops the server too.
                let _ = stopped.await;
            });
        let task = tokio::spawn(server);

        Ok(RaftNode::assemble(
            config,
            raft,
            storage,
            peer_addr,
            Some(PeerServer { stop, task }),
        ))
    }

    /// Starts a node like [`RaftNode::start`], but openraft sends its RPCs
    /// through `network` and no peer service listens.
    ///
    /// For in-process clusters, such as a simulated network that delivers
    /// RPCs by calling the target's [`RaftNode::raft`] directly. Nothing is
    /// bound, so [`RaftNode::peer_addr`] returns `config.peer_listen` as given.
    pub async fn start_with_network<N>(
        config: NodeConfig,
        network: N,
    ) -> Result<RaftNode, StartError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let openraft_config = Arc::new(config.openraft_config()?);
        let storage = Storage::open(&config)?;
        let raft = storage
            .start_raft(config.node_id, openraft_config, network)
            .await?;
        let peer_addr = config.peer_listen;
        Ok(RaftNode::assemble(config, raft, storage, peer_addr, None))
    }

    fn assemble(
        config: NodeConfig,
        raft: Raft,
        storage: Storage,
        peer_addr: SocketAddr,
        peer_server: Option<PeerServer>,
    ) -> RaftNode {
        tokio::spawn(log_leader_changes(config.node_id, raft.metrics()));
        tracing::info!(
            node_id = config.node_id,
            %peer_addr,
            peer_service = peer_server.is_some(),
            data_dir = %config.data_dir.display(),
            "raft node started"
        );
        RaftNode {
            inner: Arc::new(NodeInner {
                config,
                raft,
                shared: storage.shared,
                peer_addr,
                db: Mutex::new(Some(storage.db)),
                peer_server: Mutex::new(peer_server),
            }),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.inner.config.node_id
    }

    /// Returns the address the peer service is bound to, or
    /// `config.peer_listen` for a node started with its own network.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Proposes a command and returns this node's apply output once a
    /// majority made the entry durable and this node applied it.
    ///
    /// The command is replicated exactly as given: its time, token and policy
    /// are the caller's. After `Unavailable` the entry may still commit, so
    /// retry with the same request id.
    pub async fn write(&self, command: Command) -> Result<CommandOutput, WriteError> {
        let timeout = self.inner.config.request_timeout();
        let result: ClientWriteResult =
            match tokio::time::timeout(timeout, self.inner.raft.client_write(command)).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    tracing::warn!(
                        node_id = self.node_id(),
                        timeout_ms = timeout.as_millis() as u64,
                        "write timed out"
                    );
                    return Err(WriteError::Unavailable {
                        reason: format!("no commit within {} ms", timeout.as_millis()),
                    });
                }
            };

        match result {
            Ok(response) => response.data.ok_or_else(|| {
                WriteError::Fatal(format!(
                    "entry {} of a command returned no output",
                    response.log_id
                ))
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(forward.into())
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error))) => {
                Err(WriteError::Fatal(format!(
                    "a command write returned a membership error: {error}"
                )))
            }
            Err(RaftError::Fatal(fatal)) => Err(Stopped::from(&fatal).into()),
        }
    }

    /// Confirms leadership with a quorum (openraft's read index), waits until
    /// this node applied up to the read index, then runs `f` on the state.
    pub async fn read_linearizable<T>(
        &self,
        f: impl FnOnce(&QueueState) -> T,
    ) -> Result<T, ReadError> {
        let timeout = self.inner.config.request_timeout();
        let started = tokio::time::Instant::now();
        let unavailable = |what: &str| ReadError::Unavailable {
            reason: format!("{what} within {} ms", timeout.as_millis()),
        };

        let read_index = tokio::time::timeout(timeout, self.inner.raft.get_read_log_id())
            .await
            .map_err(|_elapsed| unavailable("no quorum confirmed leadership"))?;
        let (read_log_id, applied) = match read_index {
            Ok(ids) => ids,
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                return Err(forward.into())
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error))) => {
                return Err(ReadError::Unavailable {
                    reason: error.to_string(),
                })
            }
            Err(RaftError::Fatal(fatal)) => return Err(Stopped::from(&fatal).into()),
        };

        // openraft's read index is max(committed, first entry of this term).
        // A leader restarted without losing its term starts from the
        // committed index on disk, which may lag writes it acknowledged before
        // the crash. Every acknowledged write is in the leader's own log, so
        // waiting until its last entry is applied covers them all.
        let last_log_index = self.inner.raft.metrics().borrow().last_log_index;
        let read_index = read_log_id.index().max(last_log_index);
        if read_index > applied.index() {
            let remaining = timeout.saturating_sub(started.elapsed());
            self.inner
                .raft
                .wait(Some(remaining))
                .applied_index_at_least(read_index, "linearizable read")
                .await
                .map_err(|error| match error {
                    WaitError::Timeout(..) => unavailable("the read index was not applied"),
                    WaitError::ShuttingDown => ReadError::Unavailable {
                        reason: "raft is shutting down".to_string(),
                    },
                })?;
        }
        Ok(self.read_local(f))
    }

    /// Runs `f` on this node's applied state, which may lag the leader.
    pub fn read_local<T>(&self, f: impl FnOnce(&QueueState) -> T) -> T {
        f(&self.inner.shared.read().queue)
    }

    /// Returns a receiver of the pool's applied wakeup sequence. It starts at
    /// the current sequence, never goes back, and misses no advance applied
    /// after this call.
    pub fn subscribe_wakeups(&self, work_pool_id: Uuid) -> watch::Receiver<u64> {
        self.inner.shared.subscribe_wakeups(work_pool_id)
    }

    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.inner.raft.metrics()
    }

    /// Returns the leader in this node's metrics, with its addresses when the
    /// membership lists them.
    pub fn current_leader(&self) -> Option<(u64, Option<NodeInfo>)> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let leader_id = metrics.current_leader?;
        let leader = metrics
            .membership_config
            .membership()
            .get_node(&leader_id)
            .cloned();
        Some((leader_id, leader))
    }

    /// Forms a cluster of `members`, which must include this node. Calling
    /// it on a node that already has a membership changes nothing.
    pub async fn initialize(
        &self,
        members: BTreeMap<u64, NodeInfo>,
    ) -> Result<InitOutcome, MembershipError> {
        let initialized = self
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|fatal| MembershipError::from(Stopped::from(&fatal)))?;
        if initialized {
            tracing::info!(
                node_id = self.node_id(),
                "cluster already initialized, so initialize changed nothing"
            );
            return Ok(InitOutcome::AlreadyInitialized);
        }

        let member_ids: Vec<u64> = members.keys().copied().collect();
        match self.inner.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.node_id(), members = ?member_ids, "initialized the cluster");
                Ok(InitOutcome::Initialized)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(error))) => {
                tracing::info!(node_id = self.node_id(), %error, "cluster already initialized, so initialize changed nothing");
                Ok(InitOutcome::AlreadyInitialized)
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(error))) => {
                Err(MembershipError::Invalid {
                    reason: error.to_string(),
                })
            }
            Err(RaftError::Fatal(fatal)) => Err(Stopped::from(&fatal).into()),
        }
    }

    /// Adds a learner and waits until its log caught up with the leader's.
    pub async fn add_learner(&self, id: u64, node: NodeInfo) -> Result<(), MembershipError> {
        tracing::info!(node_id = self.node_id(), learner = id, %node, "adding a learner");
        let raft = self.inner.raft.clone();
        let started = tokio::time::Instant::now();
        self.change_membership("add learner", async move {
            raft.add_learner(id, node, true).await
        })
        .await?;

        // openraft's blocking add returns once the learner is within its
        // replication lag threshold (5000 entries by default), which may be
        // before the learner has the snapshot it needs. A voter promoted then
        // could not help form a majority, so wait until its log contains
        // everything the leader had when the learner joined.
        let target = self.inner.raft.metrics().borrow().last_log_index;
        let remaining = self
            .inner
            .config
            .membership_timeout()
            .saturating_sub(started.elapsed());
        self.inner
            .raft
            .wait(Some(remaining))
            .metrics(
                |metrics| {
                    let matched = metrics
                        .replication
                        .as_ref()
                        .and_then(|replication| replication.get(&id).cloned().flatten())
                        .map(|log_id| log_id.index);
                    matched >= target
                },
                "learner caught up",
            )
            .await
            .map_err(|error| match error {
                WaitError::Timeout(..) => MembershipError::Unavailable {
                    reason: format!("learner {id} did not catch up to index {target:?} in time"),
                },
                WaitError::ShuttingDown => MembershipError::Unavailable {
                    reason: "raft is shutting down".to_string(),
                },
            })?;
        tracing::info!(node_id = self.node_id(), learner = id, index = ?target, "learner caught up");
        Ok(())
    }

    /// Makes `voters` the voter set. Each new voter must already be a
    /// learner, and a voter left out stays a learner.
    pub async fn change_voters(&self, voters: BTreeSet<u64>) -> Result<(), MembershipError> {
        tracing::info!(node_id = self.node_id(), voters = ?voters, "changing the voter set");
        let raft = self.inner.raft.clone();
        let change = ChangeMembers::ReplaceAllVoters(voters);
        self.change_membership("change voters", async move {
            raft.change_membership(change, true).await
        })
        .await
    }

    /// Removes a node from the voters and the learners. Removing a node that
    /// is not a member succeeds without a change.
    pub async fn remove_node(&self, id: u64) -> Result<(), MembershipError> {
        let (is_voter, is_member) = {
            let metrics = self.inner.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            (
                membership.voter_ids().any(|voter| voter == id),
                membership.get_node(&id).is_some(),
            )
        };
        if !is_member {
            tracing::info!(
                node_id = self.node_id(),
                removed = id,
                "node is not a member, so there is nothing to remove"
            );
            return Ok(());
        }

        tracing::info!(
            node_id = self.node_id(),
            removed = id,
            is_voter,
            "removing a node"
        );
        let ids = BTreeSet::from([id]);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        let raft = self.inner.raft.clone();
        // `retain = false` drops a removed voter from the learners as well.
        self.change_membership("remove node", async move {
            raft.change_membership(change, false).await
        })
        .await
    }

    async fn change_membership(
        &self,
        action: &str,
        change: impl std::future::Future<Output = ClientWriteResult>,
    ) -> Result<(), MembershipError> {
        let timeout = self.inner.config.membership_timeout();
        let result = tokio::time::timeout(timeout, change)
            .await
            .map_err(|_elapsed| {
                tracing::warn!(
                    node_id = self.node_id(),
                    action,
                    timeout_ms = timeout.as_millis() as u64,
                    "membership change timed out"
                );
                MembershipError::Unavailable {
                    reason: format!(
                        "{action} did not complete within {} ms",
                        timeout.as_millis()
                    ),
                }
            })?;
        match result {
            Ok(response) => {
                tracing::info!(node_id = self.node_id(), action, log_id = %response.log_id, "membership change committed");
                Ok(())
            }
            Err(RaftError::APIError(error)) => Err(error.into()),
            Err(RaftError::Fatal(fatal)) => Err(Stopped::from(&fatal).into()),
        }
    }

    /// Stops openraft and the peer service, then flushes and closes the log.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        let node_id = self.node_id();
        tracing::info!(node_id, "stopping raft node");

        // Every step runs even after an earlier one failed, so that the port
        // and the sled lock are released; the first error is returned.
        let mut first_error = None;
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::error!(node_id, %error, "raft task failed while stopping");
            first_error.get_or_insert(ShutdownError::Raft(error.to_string()));
        }

        let peer_server = self
            .inner
            .peer_server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(PeerServer { stop, task }) = peer_server {
            // The server may have stopped on its own already, and the join reports why.
            let _ = stop.send(());
            let stopped = match task.await {
                Ok(result) => result.map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = stopped {
                tracing::error!(node_id, %error, "peer service failed while stopping");
                first_error.get_or_insert(ShutdownError::PeerServer(error));
            }
        }

        let db = self
            .inner
            .db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(db) = db {
            if let Err(error) = db.flush_async().await {
                tracing::error!(node_id, %error, "failed to flush the raft log while stopping");
                first_error.get_or_insert(ShutdownError::Flush(error));
            }
        }

        match first_error {
            None => {
                tracing::info!(node_id, "raft node stopped");
                Ok(())
            }
            Some(error) => Err(error),
        }
    }
}

/// The opened sled log and state machine of a node that is starting.
struct Storage {
    db: sled::Db,
    log_store: LogStore,
    state_machine: StateMachineStore,
    shared: Arc<SharedState>,
}

impl Storage {
    fn open(config: &NodeConfig) -> Result<Storage, StartError> {
        let raft_dir = config.raft_dir();
        let db = sled::Config::new()
            .path(&raft_dir)
            .open()
            .map_err(|source| StartError::OpenLog {
                path: raft_dir.clone(),
                source,
            })?;
        let log_store = LogStore::open(&db).map_err(|source| StartError::OpenLog {
            path: raft_dir,
            source,
        })?;
        let snapshots = SnapshotDir::open(config.snapshot_dir())
            .map_err(crate::state_machine::StateMachineOpenError::from)?;
        let state_machine = StateMachineStore::open(snapshots)?;
        let shared = state_machine.shared();
        Ok(Storage {
            db,
            log_store,
            state_machine,
            shared,
        })
    }

    async fn start_raft<N>(
        &self,
        node_id: u64,
        openraft_config: Arc<openraft::Config>,
        network: N,
    ) -> Result<Raft, StartError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let raft = Raft::new(
            node_id,
            openraft_config,
            network,
            self.log_store.clone(),
            self.state_machine.clone(),
        )
        .await?;
        Ok(raft)
    }
}

/// Logs each change of leader or term seen by this node, until Raft stops.
async fn log_leader_changes(node_id: u64, mut metrics: watch::Receiver<RaftMetrics>) {
    let mut last_seen = None;
    loop {
        let (term, leader) = {
            let current = metrics.borrow_and_update();
            (current.current_term, current.current_leader)
        };
        if last_seen != Some((term, leader)) {
            match leader {
                Some(leader_id) => tracing::info!(node_id, term, leader_id, "leader changed"),
                None => tracing::info!(node_id, term, "no leader known in this term"),
            }
            last_seen = Some((term, leader));
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
