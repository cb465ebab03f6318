//! The `raftq` client commands with `--json` against a harness cluster.

#[path = "cli_cycle.rs"]
mod cli_cycle;

use anyhow::Result;
use cli_cycle::{raftq, run, worker_cycle};
use raftq_integration_tests::{Cluster, ClusterOptions};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_worker_cycle_prints_json() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions::default()).await?;
    let base = cluster.raftq_command();

    tokio::task::spawn_blocking(move || worker_cycle(&base)).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bad_input_fails_on_stderr() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions::default()).await?;
    let base = cluster.raftq_command();
    let pool = Uuid::new_v4().to_string();

    let output = tokio::task::spawn_blocking(move || {
        run(raftq(&base, &["enqueue", "--pool", &pool, "--kind", "k.v1", "--key", "key", "--target", "[1]"]))
    })
    .await??;

    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing on stdout for an error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid argument"), "{stderr}");
    assert!(stderr.contains("target"), "{stderr}");
    Ok(())
}
