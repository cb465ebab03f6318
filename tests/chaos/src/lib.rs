//! Fault injection over real `raftq serve` processes, in the manner of
//! Jepsen: a three-node cluster whose nodes each live in their own network
//! namespace, a workload that records every call, a nemesis that kills,
//! pauses, partitions, skews and reconfigures the nodes on a seeded
//! schedule, and a checker that judges the recorded history.
//!
//! The suite needs root: it creates network namespaces, veth links, a
//! bridge and nftables rules, all removed when a run ends. Nothing is sent
//! outside those namespaces and the run's private /24.
//!
//! Entry point: [`run::run`] with [`run::ChaosSettings`]. The seed comes from
//! `RAFTQ_CHAOS_SEED` when set, and is printed at the start and in the
//! summary.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod netns;
pub mod run;
mod spawn;
pub mod summary;
pub mod workload;
