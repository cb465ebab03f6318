//! Cluster administration commands: health, init, join, remove, status.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use raftq_client::parse_endpoints;
use raftq_client::proto::admin_client::AdminClient;
use raftq_client::proto::{
    AddLearnerRequest, ChangeMembershipRequest, ClusterStatusRequest, ClusterStatusResponse,
    GetNodeInfoRequest, InitClusterRequest, Member, NodeInfo, RemoveNodeRequest,
};
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Interval between two polls of a waiting command.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Exit 0 when the node's gRPC health service reports SERVING, else exit
    /// non-zero (for container health checks).
    Health(HealthArgs),
    /// Form a cluster from the listed nodes, once. On a cluster that is
    /// already initialized it prints so and exits 0.
    Init(InitArgs),
    /// Add a node to a running cluster: as a learner first, then as a voter
    /// once it has caught up.
    Join(JoinArgs),
    /// Remove a node from a running cluster (from the voters and learners).
    Remove(RemoveArgs),
    /// Show members, leader, term, log, commit and applied indexes and the
    /// replication lag, as each listed node reports them.
    Status(StatusArgs),
}

#[derive(Args)]
pub struct HealthArgs {
    /// The node's client endpoint, e.g. http://127.0.0.1:7000.
    #[arg(long, env = "RAFTQ_ENDPOINT")]
    pub endpoint: String,
    /// Service to check; the empty default stands for the whole node.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Time limit of the check, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_name = "MS")]
    pub timeout_ms: u64,
}

#[derive(Args)]
pub struct InitArgs {
    /// Client endpoints of every initial member, comma-separated, e.g.
    /// http://n1:7000,http://n2:7000,http://n3:7000. InitCluster is sent to
    /// the first one.
    #[arg(long, env = "RAFTQ_ENDPOINTS", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// How long to wait for every node to respond and then for a leader, in
    /// seconds.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub wait_seconds: u64,
}

#[derive(Args)]
pub struct JoinArgs {
    /// Client endpoints of the running cluster, comma-separated.
    #[arg(long, env = "RAFTQ_ENDPOINTS", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Client endpoint of the node to add; it must be running with a data
    /// directory of its own.
    #[arg(long)]
    pub node: String,
    /// How long to wait for the new node to respond, in seconds. Catching up
    /// is bounded by the server's membership timeout.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub wait_seconds: u64,
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Client endpoints of the running cluster, comma-separated.
    #[arg(long, env = "RAFTQ_ENDPOINTS", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Id of the node to remove.
    #[arg(long)]
    pub id: u64,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Client endpoints to ask, comma-separated.
    #[arg(long, env = "RAFTQ_ENDPOINTS", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Print one JSON object: the fields of the leader's status (or of the
    /// first node that responded) plus `nodes`, every node's own status.
    #[arg(long)]
    pub json: bool,
    /// Time limit of each node's response, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_name = "MS")]
    pub timeout_ms: u64,
}

pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Health(args) => health(args).await,
        AdminCommand::Init(args) => {
            let endpoints = endpoint_list(&args.endpoints)?;
            let outcome = init_cluster(&endpoints, Duration::from_secs(args.wait_seconds)).await?;
            if outcome.already_initialized {
                println!("cluster already initialized; nothing changed");
            } else {
                let ids: Vec<String> = outcome.members.iter().map(|member| member.node_id.to_string()).collect();
                println!("cluster initialized with nodes {}", ids.join(", "));
            }
            match outcome.leader_id {
                Some(leader_id) => println!("leader: node {leader_id}"),
                None => println!("no leader elected yet"),
            }
            Ok(())
        }
        AdminCommand::Join(args) => join(args).await,
        AdminCommand::Remove(args) => remove(args).await,
        AdminCommand::Status(args) => status(args).await,
    }
}

fn endpoint_list(items: &[String]) -> Result<Vec<String>> {
    parse_endpoints(&items.join(",")).context("invalid --endpoints")
}

fn endpoint(item: &str, timeout: Duration) -> Result<Endpoint> {
    let uri = raftq_client::parse_endpoint(item).with_context(|| format!("invalid endpoint {item:?}"))?;
    let endpoint = Endpoint::from_shared(uri).with_context(|| format!("invalid endpoint {item:?}"))?;
    Ok(endpoint.connect_timeout(timeout).timeout(timeout))
}

async fn admin_client(item: &str, timeout: Duration) -> Result<AdminClient<Channel>> {
    let channel = endpoint(item, timeout)?
        .connect()
        .await
        .with_context(|| format!("failed to connect to {item}"))?;
    Ok(AdminClient::new(channel))
}

/// Asks a node's gRPC health service for `service`.
pub async fn check_health(item: &str, service: &str, timeout: Duration) -> Result<ServingStatus> {
    let channel = endpoint(item, timeout)?
        .connect()
        .await
        .with_context(|| format!("failed to connect to {item}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .with_context(|| format!("health check of {item} failed"))?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

async fn health(args: HealthArgs) -> Result<()> {
    let status = check_health(&args.endpoint, &args.service, Duration::from_millis(args.timeout_ms)).await?;
    if status == ServingStatus::Serving {
        println!("SERVING");
        Ok(())
    } else {
        bail!("{} reports {}", args.endpoint, status.as_str_name())
    }
}

/// Asks one node for its id and addresses, retrying until `deadline`.
async fn node_info(item: &str, deadline: tokio::time::Instant) -> Result<NodeInfo> {
    loop {
        let attempt = async {
            let mut client = admin_client(item, Duration::from_secs(2)).await?;
            let info = client
                .get_node_info(GetNodeInfoRequest {})
                .await
                .with_context(|| format!("GetNodeInfo on {item} failed"))?;
            Ok::<_, anyhow::Error>(info.into_inner())
        };
        match attempt.await {
            Ok(info) => return Ok(info),
            Err(error) if tokio::time::Instant::now() + POLL_INTERVAL < deadline => {
                tracing::debug!(endpoint = item, error = %format!("{error:#}"), "node not responding yet; retrying");
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(error) => return Err(error.context(format!("{item} did not respond within the wait"))),
        }
    }
}

/// Result of `init_cluster`.
pub struct InitOutcome {
    pub already_initialized: bool,
    pub members: Vec<NodeInfo>,
    pub leader_id: Option<u64>,
}

/// Collects every node's id and addresses, sends InitCluster to the first,
/// then waits (up to `wait`) until a leader is known.
pub async fn init_cluster(endpoints: &[String], wait: Duration) -> Result<InitOutcome> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut members = Vec::with_capacity(endpoints.len());
    let mut ids = BTreeSet::new();
    for item in endpoints {
        let info = node_info(item, deadline).await?;
        if !ids.insert(info.node_id) {
            bail!("two endpoints report node id {}; every node needs its own --id", info.node_id);
        }
        members.push(info);
    }

    let first = &endpoints[0];
    let mut client = admin_client(first, Duration::from_secs(10)).await?;
    let response = client
        .init_cluster(InitClusterRequest {
            members: members.clone(),
        })
        .await
        .with_context(|| format!("InitCluster on {first} failed"))?
        .into_inner();

    let leader_id = wait_for_leader(endpoints, deadline).await;
    Ok(InitOutcome {
        already_initialized: response.already_initialized,
        members,
        leader_id,
    })
}

/// Polls the nodes until one reports a leader; `None` when `deadline` passes.
pub async fn wait_for_leader(endpoints: &[String], deadline: tokio::time::Instant) -> Option<u64> {
    loop {
        for item in endpoints {
            if let Ok(status) = cluster_status(item, Duration::from_secs(1)).await {
                if let Some(leader_id) = status.leader_id {
                    return Some(leader_id);
                }
            }
        }
        if tokio::time::Instant::now() + POLL_INTERVAL >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn cluster_status(item: &str, timeout: Duration) -> Result<ClusterStatusResponse> {
    let mut client = admin_client(item, timeout).await?;
    let status = client
        .cluster_status(ClusterStatusRequest {})
        .await
        .with_context(|| format!("ClusterStatus on {item} failed"))?;
    Ok(status.into_inner())
}

/// Sends a membership call to each endpoint in turn until one accepts it.
/// Followers forward these calls to the leader themselves.
async fn on_any<T, F, Fut>(endpoints: &[String], what: &str, mut call: F) -> Result<T>
where
    F: FnMut(AdminClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut last_error = None;
    for item in endpoints {
        // Learner catch-up can take long, so this timeout is generous.
        let client = match admin_client(item, Duration::from_secs(120)).await {
            Ok(client) => client,
            Err(error) => {
                last_error = Some(error);
                continue;
            }
        };
        match call(client).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                last_error = Some(anyhow!("{what} on {item} failed: {}", status.message()));
            }
            Err(status) => bail!("{what} on {item} failed: {} ({:?})", status.message(), status.code()),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("no endpoint given")).context(format!("{what} failed on every endpoint")))
}

fn describe_members(members: &[Member]) -> String {
    members
        .iter()
        .map(|member| {
            let role = if member.voter { "voter" } else { "learner" };
            format!("node {} ({role}, {})", member.node_id, member.client_addr)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn join(args: JoinArgs) -> Result<()> {
    let endpoints = endpoint_list(&args.endpoints)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait_seconds);
    let info = node_info(&args.node, deadline).await?;
    let node_id = info.node_id;

    println!("adding node {node_id} ({}) as a learner", info.client_addr);
    let learner = AddLearnerRequest { node: Some(info) };
    let response = on_any(&endpoints, "AddLearner", |mut client| {
        let request = learner.clone();
        async move { client.add_learner(request).await }
    })
    .await?;

    let mut voters: BTreeSet<u64> = response
        .members
        .iter()
        .filter(|member| member.voter)
        .map(|member| member.node_id)
        .collect();
    voters.insert(node_id);
    println!("node {node_id} caught up; making it a voter");
    let change = ChangeMembershipRequest {
        voters: voters.into_iter().collect(),
    };
    let response = on_any(&endpoints, "ChangeMembership", |mut client| {
        let request = change.clone();
        async move { client.change_membership(request).await }
    })
    .await?;
    println!("members: {}", describe_members(&response.members));
    Ok(())
}

async fn remove(args: RemoveArgs) -> Result<()> {
    let endpoints = endpoint_list(&args.endpoints)?;
    let request = RemoveNodeRequest { node_id: args.id };
    let response = on_any(&endpoints, "RemoveNode", |mut client| async move {
        client.remove_node(request).await
    })
    .await?;
    println!("removed node {}; members: {}", args.id, describe_members(&response.members));
    Ok(())
}

fn status_json(endpoint: &str, status: &ClusterStatusResponse) -> Value {
    json!({
        "endpoint": endpoint,
        "node_id": status.node_id,
        "role": status.role,
        "leader_id": status.leader_id,
        "leader_client_addr": (!status.leader_client_addr.is_empty()).then_some(&status.leader_client_addr),
        "term": status.term,
        "last_log_index": status.last_log_index,
        "committed_index": status.committed_index,
        "applied_index": status.applied_index,
        "snapshot_index": status.snapshot_index,
        "initialized": status.initialized,
        "members": status.members.iter().map(|member| json!({
            "node_id": member.node_id,
            "client_addr": member.client_addr,
            "peer_addr": member.peer_addr,
            "voter": member.voter,
        })).collect::<Vec<_>>(),
        "replication": status.replication.iter().map(|peer| json!({
            "node_id": peer.node_id,
            "matched_index": peer.matched_index,
            "lag_entries": peer.lag_entries,
        })).collect::<Vec<_>>(),
    })
}

fn index_text(index: Option<u64>) -> String {
    index.map_or_else(|| "-".to_string(), |index| index.to_string())
}

async fn status(args: StatusArgs) -> Result<()> {
    let endpoints = endpoint_list(&args.endpoints)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let answers = futures::future::join_all(endpoints.iter().map(|item| async move {
        (item.clone(), cluster_status(item, timeout).await)
    }))
    .await;

    let reachable: Vec<(&String, &ClusterStatusResponse)> = answers
        .iter()
        .filter_map(|(item, result)| result.as_ref().ok().map(|status| (item, status)))
        .collect();
    if reachable.is_empty() {
        let errors: Vec<String> = answers
            .iter()
            .filter_map(|(_, result)| result.as_ref().err().map(|error| format!("{error:#}")))
            .collect();
        bail!("no node responded: {}", errors.join("; "));
    }
    // The leader's view is the reference. Without a reachable leader, the
    // first node that responded is.
    let (reference_endpoint, reference) = reachable
        .iter()
        .find(|(_, status)| status.role == "leader")
        .or_else(|| reachable.first())
        .copied()
        .ok_or_else(|| anyhow!("no node responded"))?;

    if args.json {
        let mut output = status_json(reference_endpoint, reference);
        let nodes: Vec<Value> = answers
            .iter()
            .map(|(item, result)| match result {
                Ok(status) => status_json(item, status),
                Err(error) => json!({ "endpoint": item, "error": format!("{error:#}") }),
            })
            .collect();
        output["nodes"] = Value::Array(nodes);
        println!("{output}");
        return Ok(());
    }

    match reference.leader_id {
        Some(leader_id) => println!("leader: node {leader_id} ({}), term {}", reference.leader_client_addr, reference.term),
        None => println!("leader: none known, term {}", reference.term),
    }
    println!("members: {}", describe_members(&reference.members));
    for (item, result) in &answers {
        match result {
            Ok(status) => println!(
                "node {:<3} {:<9} term {:<4} log {:<8} commit {:<8} applied {:<8} snapshot {:<8} {}",
                status.node_id,
                status.role,
                status.term,
                index_text(status.last_log_index),
                index_text(status.committed_index),
                index_text(status.applied_index),
                index_text(status.snapshot_index),
                item,
            ),
            Err(error) => println!("{item}: unreachable ({error:#})"),
        }
    }
    for peer in &reference.replication {
        println!(
            "replication to node {}: matched {}, lag {} entries",
            peer.node_id,
            index_text(peer.matched_index),
            peer.lag_entries
        );
    }
    Ok(())
}
