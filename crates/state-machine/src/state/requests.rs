//! The request-id log that makes retried writes safe.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{Operation, Response};
use crate::error::CommandError;
use crate::time::Timestamp;

/// Responses of recent commands by request id, kept for the policy's request
/// retention and pruned by command time, so every node prunes the same
/// entries at the same log index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestLog {
    entries: BTreeMap<String, RequestRecord>,
    by_time: BTreeSet<(Timestamp, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RequestRecord {
    recorded_at: Timestamp,
    operation: String,
    work_pool_id: Option<Uuid>,
    response: Response,
}

impl RequestLog {
    /// Drops entries recorded at or before `now - retention_us`.
    pub fn prune(&mut self, now: Timestamp, retention_us: i64) {
        while let Some((recorded_at, _)) = self.by_time.first() {
            if recorded_at.saturating_add_micros(retention_us) > now {
                break;
            }
            let (_, request_id) = self.by_time.pop_first().expect("first() returned an entry");
            self.entries.remove(&request_id);
        }
    }

    /// Returns the stored response of an earlier command with this request id,
    /// or an error when that command was a different operation or pool.
    pub fn lookup(&self, request_id: &str, operation: &Operation) -> Result<Option<&Response>, CommandError> {
        let Some(record) = self.entries.get(request_id) else {
            return Ok(None);
        };
        if record.operation != operation.name() || record.work_pool_id != operation.work_pool_id() {
            return Err(CommandError::RequestIdReused {
                request_id: request_id.to_string(),
                first_operation: record.operation.clone(),
            });
        }
        Ok(Some(&record.response))
    }

    pub fn record(&mut self, request_id: &str, now: Timestamp, operation: &Operation, response: Response) {
        let record = RequestRecord {
            recorded_at: now,
            operation: operation.name().to_string(),
            work_pool_id: operation.work_pool_id(),
            response,
        };
        if let Some(previous) = self.entries.insert(request_id.to_string(), record) {
            self.by_time
                .remove(&(previous.recorded_at, request_id.to_string()));
        }
        self.by_time.insert((now, request_id.to_string()));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn time_index_len(&self) -> usize {
        self.by_time.len()
    }
}
