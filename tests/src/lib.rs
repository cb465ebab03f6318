//! A harness that runs a raftq cluster as real `raftq serve` processes on
//! 127.0.0.1, for the end-to-end, chaos and partition suites.
//!
//! [`Cluster::start`] picks free ports, starts the nodes with temporary data
//! directories, runs `raftq init` and waits for a leader. A test can then
//! kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT) and restart nodes. Every
//! process the harness started is killed when the [`Cluster`] is dropped.

mod binary;
mod cluster;
mod wait;

pub use binary::raftq_binary;
pub use cluster::{Cluster, ClusterOptions, NodeProcess};
pub use wait::{wait_until, WaitTimedOut};

/// Returns a loopback port that was free when this function ran. The
/// listener is closed before returning, so that a process started next can
/// bind it. Another process could take it first, but that is rare.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
