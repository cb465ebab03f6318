//! The `raftq.v1.Admin` service: membership, cluster status, dead-letter
//! administration and pool statistics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::ServerState;
use raftq_proto::v1 as proto;
use raftq_proto::v1::admin_server::Admin;
use raftq_raft::{InitOutcome, NodeInfo, RaftMetrics};
use raftq_state_machine::{CommandError, Response as Applied};
use tonic::{Request, Response, Status};

use crate::convert::{self, parse_uuid};
use crate::core::Core;
use crate::error::{Failure, ServiceError};
use crate::metrics::leader_commit_index;

/// Page size of `ListDeadLetters` when the request leaves it unset.
const DEFAULT_DEAD_LETTER_PAGE: u32 = 100;
const MAX_DEAD_LETTER_PAGE: u32 = 1_000;

pub struct AdminService {
    core: Arc<Core>,
}

impl AdminService {
    pub fn new(core: Arc<Core>) -> Self {
        AdminService { core }
    }
}

fn invalid(field: &str, rule: &str) -> ServiceError {
    ServiceError::Rejected(CommandError::InvalidInput {
        field: field.to_string(),
        rule: rule.to_string(),
    })
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Lists the members of the membership in `metrics`, voters first flagged.
pub fn members_of(metrics: &RaftMetrics) -> Vec<proto::Member> {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(node_id, node)| proto::Member {
            node_id: *node_id,
            client_addr: node.client_addr.clone(),
            peer_addr: node.peer_addr.clone(),
            voter: voters.contains(node_id),
        })
        .collect()
}

/// Builds the status of this node from openraft's metrics.
pub fn cluster_status(metrics: &RaftMetrics) -> proto::ClusterStatusResponse {
    let membership = metrics.membership_config.membership();
    let leader_client_addr = metrics
        .current_leader
        .and_then(|leader_id| membership.get_node(&leader_id))
        .map(|leader| leader.client_addr.clone())
        .unwrap_or_default();

    let is_leader = metrics.state == ServerState::Leader;
    let replication = match (&metrics.replication, is_leader) {
        (Some(replication), true) => {
            let last_log_index = metrics.last_log_index.unwrap_or(0);
            replication
                .iter()
                .filter(|(peer, _)| **peer != metrics.id)
                .map(|(peer, matched)| {
                    let matched_index = matched.map(|log_id| log_id.index);
                    proto::PeerProgress {
                        node_id: *peer,
                        matched_index,
                        lag_entries: last_log_index.saturating_sub(matched_index.unwrap_or(0)),
                    }
                })
                .collect()
        }
        _ => Vec::new(),
    };

    let members = members_of(metrics);
    proto::ClusterStatusResponse {
        node_id: metrics.id,
        role: role_name(metrics.state).to_string(),
        leader_id: metrics.current_leader,
        leader_client_addr,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        // openraft 0.9 reports no commit index on followers, so only the
        // leader computes one.
        committed_index: if is_leader { leader_commit_index(metrics) } else { None },
        applied_index: metrics.last_applied.map(|log_id| log_id.index),
        snapshot_index: metrics.snapshot.map(|log_id| log_id.index),
        initialized: !members.is_empty(),
        members,
        replication,
    }
}

fn node_info_from_proto(field: &str, node: &proto::NodeInfo) -> Result<NodeInfo, ServiceError> {
    if node.client_addr.is_empty() {
        return Err(invalid(&format!("{field}.client_addr"), "must be non-empty"));
    }
    if node.peer_addr.is_empty() {
        return Err(invalid(&format!("{field}.peer_addr"), "must be non-empty"));
    }
    Ok(NodeInfo {
        client_addr: node.client_addr.clone(),
        peer_addr: node.peer_addr.clone(),
    })
}

impl AdminService {
    fn membership_response(&self) -> proto::MembershipResponse {
        proto::MembershipResponse {
            members: members_of(&self.core.node.metrics().borrow()),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_node_info(
        &self,
        _request: Request<proto::GetNodeInfoRequest>,
    ) -> Result<Response<proto::NodeInfo>, Status> {
        let info = proto::NodeInfo {
            node_id: self.core.node_id,
            client_addr: self.core.advertise.client_addr.clone(),
            peer_addr: self.core.advertise.peer_addr.clone(),
        };
        self.core.served_by(Ok(Response::new(info)))
    }

    async fn cluster_status(
        &self,
        _request: Request<proto::ClusterStatusRequest>,
    ) -> Result<Response<proto::ClusterStatusResponse>, Status> {
        let status = cluster_status(&self.core.node.metrics().borrow());
        self.core.served_by(Ok(Response::new(status)))
    }

    async fn init_cluster(
        &self,
        request: Request<proto::InitClusterRequest>,
    ) -> Result<Response<proto::InitClusterResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            if request.members.is_empty() {
                return Err(invalid("members", "must list at least one node"));
            }
            let mut members = BTreeMap::new();
            for (position, member) in request.members.iter().enumerate() {
                let node = node_info_from_proto(&format!("members[{position}]"), member)?;
                if members.insert(member.node_id, node).is_some() {
                    return Err(invalid(&format!("members[{position}].node_id"), "must be unique"));
                }
            }
            if !members.contains_key(&self.core.node_id) {
                return Err(invalid("members", "must include the node that receives InitCluster"));
            }
            let outcome = self
                .core
                .node
                .initialize(members)
                .await
                .map_err(|error| Failure::from(error).into_service_error())?;
            Ok(proto::InitClusterResponse {
                already_initialized: outcome == InitOutcome::AlreadyInitialized,
            })
        }
        .await;
        self.core
            .served_by(result.map(Response::new).map_err(ServiceError::into_status))
    }

    async fn add_learner(
        &self,
        request: Request<proto::AddLearnerRequest>,
    ) -> Result<Response<proto::MembershipResponse>, Status> {
        let local = |message: Arc<proto::AddLearnerRequest>| async move {
            let node = message
                .node
                .as_ref()
                .ok_or_else(|| invalid("node", "must be set"))?;
            let info = node_info_from_proto("node", node)?;
            self.core.node.add_learner(node.node_id, info).await?;
            Ok(self.membership_response())
        };
        // Membership changes run under the raft crate's own timeout, which
        // includes the learner's catch-up and can exceed a request's.
        self.core
            .on_leader(request, None, local, |upstream, request| async move {
                upstream.admin().add_learner(request).await
            })
            .await
    }

    async fn change_membership(
        &self,
        request: Request<proto::ChangeMembershipRequest>,
    ) -> Result<Response<proto::MembershipResponse>, Status> {
        let local = |message: Arc<proto::ChangeMembershipRequest>| async move {
            let voters: BTreeSet<u64> = message.voters.iter().copied().collect();
            if voters.is_empty() {
                return Err(invalid("voters", "must list at least one node").into());
            }
            self.core.node.change_voters(voters).await?;
            Ok(self.membership_response())
        };
        self.core
            .on_leader(request, None, local, |upstream, request| async move {
                upstream.admin().change_membership(request).await
            })
            .await
    }

    async fn remove_node(
        &self,
        request: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::MembershipResponse>, Status> {
        let local = |message: Arc<proto::RemoveNodeRequest>| async move {
            self.core.node.remove_node(message.node_id).await?;
            Ok(self.membership_response())
        };
        self.core
            .on_leader(request, None, local, |upstream, request| async move {
                upstream.admin().remove_node(request).await
            })
            .await
    }

    async fn list_dead_letters(
        &self,
        request: Request<proto::ListDeadLettersRequest>,
    ) -> Result<Response<proto::ListDeadLettersResponse>, Status> {
        let message = request.get_ref();
        let work_pool_id = parse_uuid("work_pool_id", &message.work_pool_id)
            .map_err(|error| self.core.reject(error))?;
        let limit = message.limit.unwrap_or(DEFAULT_DEAD_LETTER_PAGE);
        if !(1..=MAX_DEAD_LETTER_PAGE).contains(&limit) {
            return Err(self.core.reject(invalid("limit", "must be 1 to 1000")));
        }
        let after = message.after;
        let local_read = message.read.as_ref().is_some_and(|read| read.local);
        self.core
            .read(
                request,
                local_read,
                move |state| {
                    let page = state.list_dead_letters(work_pool_id, after, limit as usize);
                    proto::ListDeadLettersResponse {
                        dead_letters: page
                            .dead_letters
                            .into_iter()
                            .map(convert::dead_letter_to_proto)
                            .collect(),
                        next_cursor: page.next_cursor,
                    }
                },
                |upstream, request| async move { upstream.admin().list_dead_letters(request).await },
            )
            .await
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<proto::RedriveDeadLettersRequest>,
    ) -> Result<Response<proto::RedriveDeadLettersResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::redrive_operation(request)?)),
                |output| match output.response {
                    Applied::Redriven { messages } => Ok(proto::RedriveDeadLettersResponse {
                        redriven: messages.into_iter().map(convert::message_to_proto).collect(),
                    }),
                    other => Err(ServiceError::Internal(format!(
                        "redrive applied with an unexpected response: {other:?}"
                    ))),
                },
                |upstream, request| async move { upstream.admin().redrive_dead_letters(request).await },
            )
            .await
    }

    async fn purge_dead_letters(
        &self,
        request: Request<proto::PurgeDeadLettersRequest>,
    ) -> Result<Response<proto::PurgeDeadLettersResponse>, Status> {
        self.core
            .write(
                request,
                |request| Ok((request.options.clone(), convert::purge_operation(request)?)),
                |output| match output.response {
                    Applied::Purged { count } => Ok(proto::PurgeDeadLettersResponse { purged: count }),
                    other => Err(ServiceError::Internal(format!(
                        "purge applied with an unexpected response: {other:?}"
                    ))),
                },
                |upstream, request| async move { upstream.admin().purge_dead_letters(request).await },
            )
            .await
    }

    async fn pool_stats(
        &self,
        request: Request<proto::PoolStatsRequest>,
    ) -> Result<Response<proto::PoolStatsResponse>, Status> {
        let message = request.get_ref();
        let work_pool_id = parse_uuid("work_pool_id", &message.work_pool_id)
            .map_err(|error| self.core.reject(error))?;
        let local_read = message.read.as_ref().is_some_and(|read| read.local);
        self.core
            .read(
                request,
                local_read,
                move |state| {
                    let stats = state.pool_stats(work_pool_id);
                    proto::PoolStatsResponse {
                        active: stats.active,
                        reserved: stats.reserved,
                        dead_lettered: stats.dead_lettered,
                        tombstones: stats.tombstones,
                        wakeup_sequence: stats.wakeup_sequence,
                    }
                },
                |upstream, request| async move { upstream.admin().pool_stats(request).await },
            )
            .await
    }
}
