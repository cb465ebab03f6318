//! The simulated peer network.
//!
//! [`SimNetwork`] is openraft's `RaftNetworkFactory` for one node. Every RPC
//! goes through the shared [`Router`], which draws from the seeded RNG and
//! the current faults whether the request is lost, how long it waits,
//! whether a second copy follows, and whether the response is lost. The
//! router then delivers the request by calling the target node's `Raft`.
//!
//! Reordering comes from the delays: each message sleeps for its own random
//! time, so a later message, or the late duplicate of an earlier one, can
//! reach the target first.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, RaftNetwork, RaftNetworkFactory};
use raftq_raft::types::Raft;
use raftq_raft::{NodeInfo, TypeConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::observer::Observer;

/// Fault probabilities of every link, each in `0.0..=1.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkFaults {
    pub drop_request: f64,
    pub drop_response: f64,
    pub duplicate: f64,
    /// Upper bound of the random delay of each message, in milliseconds.
    pub max_delay_ms: u64,
}

impl LinkFaults {
    pub const NONE: LinkFaults = LinkFaults {
        drop_request: 0.0,
        drop_response: 0.0,
        duplicate: 0.0,
        max_delay_ms: 0,
    };
}

/// Counts of what the router did, for the run report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkCounters {
    pub delivered: u64,
    pub dropped_requests: u64,
    pub dropped_responses: u64,
    pub duplicated: u64,
    /// Requests refused because a partition or a stopped node was in the way.
    pub unreachable: u64,
    /// InstallSnapshot chunks sent, delivered or not.
    pub snapshot_chunks: u64,
    /// AppendEntries requests acknowledged with `Success` without delivery (only with
    /// [`Router::set_lying_leader`]).
    pub faked_appends: u64,
}

/// The fate of one request, drawn before it is sent.
struct Delivery {
    delay: Duration,
    drop_request: bool,
    drop_response: bool,
    /// Delay of a second copy of the request, if one is sent.
    duplicate_delay: Option<Duration>,
}

struct RouterState {
    nodes: BTreeMap<u64, Raft>,
    /// Partition group of each node. Two nodes talk only when their groups
    /// are equal, and a node missing from the map is in group 0.
    groups: BTreeMap<u64, usize>,
    faults: LinkFaults,
    rng: StdRng,
    /// The node whose AppendEntries requests are faked, if any.
    lying_leader: Option<u64>,
    counters: NetworkCounters,
}

/// Routes the RPCs of every node of one simulated cluster.
pub struct Router {
    state: Mutex<RouterState>,
    observer: Arc<Observer>,
}

impl Router {
    pub fn new(network_seed: u64, observer: Arc<Observer>) -> Arc<Router> {
        Arc::new(Router {
            state: Mutex::new(RouterState {
                nodes: BTreeMap::new(),
                groups: BTreeMap::new(),
                faults: LinkFaults::NONE,
                rng: StdRng::seed_from_u64(network_seed),
                lying_leader: None,
                counters: NetworkCounters::default(),
            }),
            observer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RouterState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes a started node reachable.
    pub fn register(&self, node_id: u64, raft: Raft) {
        self.lock().nodes.insert(node_id, raft);
    }

    /// Makes a node unreachable, before it stops.
    pub fn unregister(&self, node_id: u64) {
        self.lock().nodes.remove(&node_id);
    }

    /// Splits the nodes into the given groups. Nodes not listed join group 0
    /// together with the first group.
    pub fn partition(&self, groups: &[BTreeSet<u64>]) {
        let mut state = self.lock();
        state.groups.clear();
        for (group, members) in groups.iter().enumerate() {
            for node_id in members {
                state.groups.insert(*node_id, group);
            }
        }
    }

    pub fn heal(&self) {
        self.lock().groups.clear();
    }

    pub fn set_faults(&self, faults: LinkFaults) {
        self.lock().faults = faults;
    }

    /// A deliberately broken network for testing the checks: while set,
    /// every AppendEntries request from `leader_id`, heartbeats included, is
    /// dropped and acknowledged with `Success`. That leader then counts followers that
    /// never stored its entries towards its quorum, and because it never
    /// sees a conflict, openraft's own check of matching indexes stays quiet.
    pub fn set_lying_leader(&self, leader_id: Option<u64>) {
        self.lock().lying_leader = leader_id;
    }

    pub fn counters(&self) -> NetworkCounters {
        self.lock().counters
    }

    fn connected(state: &RouterState, source: u64, target: u64) -> bool {
        let group = |node_id| state.groups.get(&node_id).copied().unwrap_or(0);
        group(source) == group(target)
    }

    /// Returns the target's `Raft` when the link is up and the target runs.
    fn reachable(&self, source: u64, target: u64) -> Option<Raft> {
        let mut state = self.lock();
        let raft = Self::connected(&state, source, target)
            .then(|| state.nodes.get(&target).cloned())
            .flatten();
        if raft.is_none() {
            state.counters.unreachable += 1;
        }
        raft
    }

    fn plan(&self) -> Delivery {
        let mut state = self.lock();
        let faults = state.faults;
        let rng = &mut state.rng;
        let delay = Duration::from_millis(rng.gen_range(0..=faults.max_delay_ms));
        let duplicate_delay = Duration::from_millis(rng.gen_range(0..=faults.max_delay_ms));
        let drop_request = rng.gen_bool(faults.drop_request);
        let drop_response = rng.gen_bool(faults.drop_response);
        let duplicate = rng.gen_bool(faults.duplicate);

        let counters = &mut state.counters;
        counters.dropped_requests += u64::from(drop_request);
        counters.dropped_responses += u64::from(drop_response && !drop_request);
        counters.duplicated += u64::from(duplicate && !drop_request);
        Delivery {
            delay,
            drop_request,
            drop_response,
            // The copy leaves with the original but sleeps its own delay, so
            // it arrives before or after the original and the messages that
            // follow it.
            duplicate_delay: duplicate.then_some(duplicate_delay),
        }
    }

    /// Sends one request from `source` to `target` through the faults and
    /// returns the target's response, or the error openraft would get from a
    /// real network.
    async fn send<Request, Reply, E, Call, Reply_>(
        self: &Arc<Self>,
        source: u64,
        target: u64,
        kind: RPCTypes,
        request: Request,
        call: Call,
    ) -> Result<Reply, RPCError<u64, NodeInfo, RaftError<u64, E>>>
    where
        Request: Clone + Send + 'static,
        Reply: Send + 'static,
        E: std::error::Error + Send + 'static,
        Call: Fn(Raft, Request) -> Reply_ + Clone + Send + Sync + 'static,
        Reply_: Future<Output = Result<Reply, RaftError<u64, E>>> + Send + 'static,
    {
        let delivery = self.plan();
        tokio::time::sleep(delivery.delay).await;

        if delivery.drop_request {
            return Err(RPCError::Network(NetworkError::new(&SimFault::RequestLost)));
        }
        let Some(raft) = self.reachable(source, target) else {
            return Err(RPCError::Unreachable(Unreachable::new(
                &SimFault::Unreachable,
            )));
        };

        if let Some(duplicate_delay) = delivery.duplicate_delay {
            let router = Arc::clone(self);
            let duplicate = request.clone();
            let call = call.clone();
            tokio::spawn(async move {
                tokio::time::sleep(duplicate_delay).await;
                if let Some(raft) = router.reachable(source, target) {
                    // The sender already has its response, so the copy's is dropped.
                    let _ = call(raft, duplicate).await;
                }
            });
        }

        let result = call(raft, request).await;
        self.lock().counters.delivered += 1;

        // A partition or a crash that began while the target worked also
        // loses the response.
        if delivery.drop_response || self.reachable(source, target).is_none() {
            return Err(RPCError::Network(NetworkError::new(
                &SimFault::ResponseLost,
            )));
        }
        match result {
            Ok(reply) => Ok(reply),
            // A stopping node returns `Fatal`, which a real peer reports as a
            // closed connection.
            Err(RaftError::Fatal(fatal)) => {
                tracing::debug!(source, target, rpc = %kind, %fatal, "target stopped during an rpc");
                Err(RPCError::Unreachable(Unreachable::new(
                    &SimFault::Unreachable,
                )))
            }
            Err(error) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                target,
                sim_node_info(target),
                error,
            ))),
        }
    }

    /// Runs `send` under openraft's deadline for the RPC.
    async fn send_with_deadline<Request, Reply, E, Call, Reply_>(
        self: &Arc<Self>,
        source: u64,
        target: u64,
        kind: RPCTypes,
        request: Request,
        option: &RPCOption,
        call: Call,
    ) -> Result<Reply, RPCError<u64, NodeInfo, RaftError<u64, E>>>
    where
        Request: Clone + Send + 'static,
        Reply: Send + 'static,
        E: std::error::Error + Send + 'static,
        Call: Fn(Raft, Request) -> Reply_ + Clone + Send + Sync + 'static,
        Reply_: Future<Output = Result<Reply, RaftError<u64, E>>> + Send + 'static,
    {
        let timeout = option.hard_ttl();
        match tokio::time::timeout(timeout, self.send(source, target, kind, request, call)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(RPCError::Timeout(Timeout {
                action: kind,
                id: source,
                target,
                timeout,
            })),
        }
    }

    /// Returns `true` and counts the request when the broken mode fakes it.
    fn fakes_append(&self, source: u64) -> bool {
        let mut state = self.lock();
        let fake = state.lying_leader == Some(source);
        if fake {
            state.counters.faked_appends += 1;
        }
        fake
    }
}

/// Returns the membership entry of a simulated node. Nothing dials these
/// addresses.
pub fn sim_node_info(node_id: u64) -> NodeInfo {
    NodeInfo {
        client_addr: format!("sim-node-{node_id}"),
        peer_addr: format!("sim-node-{node_id}"),
    }
}

#[derive(Debug, thiserror::Error)]
enum SimFault {
    #[error("simulated network lost the request")]
    RequestLost,
    #[error("simulated network lost the response")]
    ResponseLost,
    #[error("target is partitioned away or stopped")]
    Unreachable,
}

/// Openraft's network factory of one simulated node.
#[derive(Clone)]
pub struct SimNetwork {
    node_id: u64,
    router: Arc<Router>,
}

impl SimNetwork {
    pub fn new(node_id: u64, router: Arc<Router>) -> Self {
        SimNetwork { node_id, router }
    }
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimConnection;

    async fn new_client(&mut self, target: u64, _node: &NodeInfo) -> SimConnection {
        SimConnection {
            source: self.node_id,
            target,
            router: Arc::clone(&self.router),
        }
    }
}

/// Openraft's connection from one simulated node to another.
pub struct SimConnection {
    source: u64,
    target: u64,
    router: Arc<Router>,
}

type RpcResult<Reply, E> = Result<Reply, RPCError<u64, NodeInfo, RaftError<u64, E>>>;

impl RaftNetwork<TypeConfig> for SimConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.router.observer.record_append(
            self.source,
            rpc.vote.leader_id().term,
            &rpc.entries,
            rpc.leader_commit,
        );
        if self.router.fakes_append(self.source) {
            return Ok(AppendEntriesResponse::Success);
        }
        self.router
            .send_with_deadline(
                self.source,
                self.target,
                RPCTypes::AppendEntries,
                rpc,
                &option,
                |raft: Raft, rpc| async move { raft.append_entries(rpc).await },
            )
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.router.lock().counters.snapshot_chunks += 1;
        self.router
            .send_with_deadline(
                self.source,
                self.target,
                RPCTypes::InstallSnapshot,
                rpc,
                &option,
                |raft: Raft, rpc| async move { raft.install_snapshot(rpc).await },
            )
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.router
            .send_with_deadline(
                self.source,
                self.target,
                RPCTypes::Vote,
                rpc,
                &option,
                |raft: Raft, rpc| async move { raft.vote(rpc).await },
            )
            .await
    }
}
