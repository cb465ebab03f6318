//! The raftq node: the `Queue` and `Admin` gRPC services over a Raft node,
//! with leader forwarding, wakeup waits, the lease sweeper, Prometheus
//! metrics and the gRPC health service.
//!
//! ```text
//! client ──gRPC──> QueueService / AdminService ──> Core ──> RaftNode (crates/raft)
//!                                                   │  ├─> stamp time, token, policy
//!                                                   │  └─> forward to the leader
//!   sweeper ──ExpireLeases──────────────────────────┘
//!   /metrics <── Metrics <── applied outputs and openraft metrics
//! ```
//!
//! [`start`] binds everything and returns a [`RunningServer`]; [`run`] serves
//! until a shutdown future completes, which is what `raftq serve` calls.

mod admin_service;
pub mod config;
pub mod convert;
mod core;
pub mod error;
mod forward;
pub mod metrics;
pub mod policy;
mod queue_service;
mod readiness;
mod server;
pub mod stamp;
mod sweeper;

pub use config::ServerConfig;
pub use error::{FORWARDED_BY_HEADER, LEADER_HEADER, SERVED_BY_HEADER};
pub use policy::PolicyConfig;
pub use server::{run, start, RunningServer, ServerError};
