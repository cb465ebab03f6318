//! The `Admin` service operations a client needs: cluster status, dead-letter
//! administration and pool statistics. Membership changes are left to the
//! `raftq` binary.

use std::time::Duration;

use raftq_proto::v1::admin_client::AdminClient;
use raftq_proto::v1::{
    CleanupMessage, ClusterStatusRequest, ClusterStatusResponse, ListDeadLettersRequest,
    ListDeadLettersResponse, PoolStatsRequest, PoolStatsResponse, PurgeDeadLettersRequest,
    RedriveDeadLettersRequest,
};

use crate::client::{request_with_timeout, Client};
use crate::error::ClientError;
use crate::queue::ensure_request_id;
use crate::retry::CallSafety;

impl Client {
    /// Fetches the status of the node that serves the call: its role, its
    /// view of the leader, term, log indexes and members. With several
    /// endpoints, that node is the current one, not necessarily the leader.
    pub async fn cluster_status(&self) -> Result<ClusterStatusResponse, ClientError> {
        self.call("cluster_status", CallSafety::Read, Duration::ZERO, |channel, timeout| async move {
            AdminClient::new(channel)
                .cluster_status(request_with_timeout(ClusterStatusRequest {}, timeout))
                .await
        })
        .await
    }

    /// Lists a page of a pool's dead letters; pass `next_cursor` as `after`
    /// to read the next page.
    pub async fn list_dead_letters(
        &self,
        request: ListDeadLettersRequest,
    ) -> Result<ListDeadLettersResponse, ClientError> {
        self.call("list_dead_letters", CallSafety::Read, Duration::ZERO, |channel, timeout| {
            let request = request.clone();
            async move {
                AdminClient::new(channel)
                    .list_dead_letters(request_with_timeout(request, timeout))
                    .await
            }
        })
        .await
    }

    /// Moves one dead letter, or all of a pool's, back to active delivery with
    /// `delivery_count = 0`, and returns the messages moved.
    pub async fn redrive_dead_letters(
        &self,
        mut request: RedriveDeadLettersRequest,
    ) -> Result<Vec<CleanupMessage>, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        let response = self
            .call("redrive_dead_letters", safety, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move {
                    AdminClient::new(channel)
                        .redrive_dead_letters(request_with_timeout(request, timeout))
                        .await
                }
            })
            .await?;
        Ok(response.redriven)
    }

    /// Deletes one dead letter, or all of a pool's, and returns how many.
    pub async fn purge_dead_letters(
        &self,
        mut request: PurgeDeadLettersRequest,
    ) -> Result<u64, ClientError> {
        let safety = ensure_request_id(&mut request.options);
        let response = self
            .call("purge_dead_letters", safety, Duration::ZERO, |channel, timeout| {
                let request = request.clone();
                async move {
                    AdminClient::new(channel)
                        .purge_dead_letters(request_with_timeout(request, timeout))
                        .await
                }
            })
            .await?;
        Ok(response.purged)
    }

    /// Counts a pool's active, reserved, dead-lettered and tombstone messages.
    pub async fn pool_stats(&self, request: PoolStatsRequest) -> Result<PoolStatsResponse, ClientError> {
        self.call("pool_stats", CallSafety::Read, Duration::ZERO, |channel, timeout| {
            let request = request.clone();
            async move {
                AdminClient::new(channel)
                    .pool_stats(request_with_timeout(request, timeout))
                    .await
            }
        })
        .await
    }
}
