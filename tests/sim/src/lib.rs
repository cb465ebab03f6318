//! A seeded simulation of a whole three-node raftq cluster in one process.
//!
//! ```text
//!   seed ──> schedule (partitions, crashes, restarts, link faults, clock jumps)
//!     │
//!     └──> workload ──RaftNode::write──> leader ──AppendEntries/Vote/InstallSnapshot──┐
//!                                                                                     v
//!              Router: drop, delay, duplicate, reorder, partition ──> target's Raft
//!                │ records the entries it carries                                     │
//!                v                                                                    v
//!            Observer <── durable log and snapshot of every stopped node (sled, real files)
//!                │
//!                v
//!     invariants: state agreement, acknowledged writes, single holder,
//!                 committed log, state validity
//! ```
//!
//! Each node is a real [`raftq_raft::RaftNode`] with its sled log and
//! snapshot files in a temporary directory, started with
//! [`raftq_raft::RaftNode::start_with_network`] on the simulated network of
//! [`network`]. A crash is a shutdown followed by a start on the same data
//! directory, so a restart reads back only what the node made durable.
//!
//! # What the seed fixes, and what it does not
//!
//! The seed fixes the fault schedule (which fault happens after how many
//! milliseconds), the probabilities of each link fault, and the stream of
//! random choices of the workload (operations, pools, keys, reservation
//! tokens, clock steps). It does not fix the interleaving: the nodes run on a
//! multi-threaded tokio runtime with real timers, real sled IO and real
//! fsyncs, so openraft's elections and batching depend on timing, and the
//! per-message fault draws and the workload's later draws follow whatever
//! order the messages and retries happen in. A replay with the same seed
//! therefore runs the same schedule and the same kind of workload, but it may
//! not repeat a failure exactly. Rerun a failing seed a few times.
//!
//! # Time
//!
//! The workload is the leader-side proposer: it stamps each command's `now`
//! from a [`workload::SimClock`] that only moves forward, and it has at most
//! one write in flight, so the time in the committed log never goes
//! backwards, as the design requires of a real leader.

// openraft's error types are large, but its traits fix them.
#![allow(clippy::result_large_err)]

pub mod cluster;
pub mod durable;
pub mod history;
pub mod invariants;
pub mod network;
pub mod observer;
pub mod run;
pub mod schedule;
pub mod workload;

pub use run::{run_seed, RunError, RunOptions, RunReport};
