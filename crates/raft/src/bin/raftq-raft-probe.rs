//! A single-node raftq cluster driven through stdin, for crash tests.
//!
//! The probe starts a node on `--data-dir`, forms a one-member cluster (or
//! finds it already formed), waits until it leads, and prints `ready`. Then it
//! reads one request per stdin line and prints one line per outcome:
//!
//! ```text
//! enqueue <pool-uuid> <message-uuid>  ->  acked <message-uuid>
//!                                         | rejected <message-uuid> <reason>
//!                                         | failed <message-uuid> <error>
//! read <pool-uuid> <message-uuid>     ->  found <message-uuid> | missing <message-uuid>
//! ```
//!
//! Enqueues run concurrently, so several can be in flight when the probe is
//! killed. `acked` is printed only after the write returned, that is after a
//! majority (here: this node) flushed the entry. End of input stops the node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use raftq_raft::{NodeConfig, NodeInfo, RaftNode};
use raftq_state_machine::{Command, Enqueue, Operation, Policy, Response, Timestamp};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Run a one-node raftq cluster and write to it from stdin")]
struct Args {
    #[arg(long, default_value_t = 1)]
    node_id: u64,
    /// Directory of the node's log and snapshots, reused across restarts.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address of the peer service. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    peer_listen: SocketAddr,
    /// Applied entries between two snapshots.
    #[arg(long, default_value_t = NodeConfig::DEFAULT_SNAPSHOT_EVERY_ENTRIES)]
    snapshot_every_entries: u64,
    /// How long to wait for the node to lead, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    leader_timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let node = start_leader(&args).await?;
    let (lines, mut outcomes) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = outcomes.recv().await {
            // A closed stdout means the test went away. The probe keeps going
            // until its stdin ends.
            let _ = stdout.write_all(format!("{line}\n").as_bytes()).await;
            let _ = stdout.flush().await;
        }
    });
    lines.send("ready".to_string()).ok();

    let mut requests = BufReader::new(tokio::io::stdin()).lines();
    let mut in_flight = Vec::new();
    while let Some(line) = requests.next_line().await.context("failed to read stdin")? {
        let node = node.clone();
        let lines = lines.clone();
        in_flight.push(tokio::spawn(async move {
            let outcome = match serve(&node, &line).await {
                Ok(outcome) => outcome,
                Err(error) => format!("error {line:?}: {error:#}"),
            };
            lines.send(outcome).ok();
        }));
    }

    for request in in_flight {
        request.await.context("a request task panicked")?;
    }
    drop(lines);
    writer.await.context("the stdout task panicked")?;
    node.shutdown().await.context("failed to stop the node")?;
    Ok(())
}

async fn start_leader(args: &Args) -> anyhow::Result<RaftNode> {
    let mut config = NodeConfig::new(
        args.node_id,
        args.data_dir.clone(),
        args.peer_listen,
        NodeInfo::default(),
    );
    config.snapshot_every_entries = args.snapshot_every_entries;
    config.heartbeat_interval_ms = 50;
    config.election_timeout_min_ms = 150;
    config.election_timeout_max_ms = 300;

    let node = RaftNode::start(config)
        .await
        .context("failed to start the node")?;
    let advertise = NodeInfo {
        client_addr: String::new(),
        peer_addr: node.peer_addr().to_string(),
    };
    node.initialize(BTreeMap::from([(args.node_id, advertise)]))
        .await
        .context("failed to initialize the cluster")?;

    node.raft()
        .wait(Some(Duration::from_millis(args.leader_timeout_ms)))
        .current_leader(args.node_id, "probe leads")
        .await
        .context("the node did not become leader")?;
    Ok(node)
}

async fn serve(node: &RaftNode, line: &str) -> anyhow::Result<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [verb, pool, message] = fields.as_slice() else {
        bail!("expected `<verb> <pool-uuid> <message-uuid>`");
    };
    let work_pool_id = Uuid::parse_str(pool).context("invalid pool uuid")?;
    let message_id = Uuid::parse_str(message).context("invalid message uuid")?;

    match *verb {
        "enqueue" => {
            let command = enqueue_command(node, work_pool_id, message_id);
            match node.write(command).await {
                Ok(output) => match output.response {
                    Response::Enqueued { .. } => Ok(format!("acked {message_id}")),
                    other => Ok(format!("rejected {message_id} {other:?}")),
                },
                Err(error) => Ok(format!("failed {message_id} {error}")),
            }
        }
        "read" => {
            let found = node
                .read_linearizable(|state| state.read_message(work_pool_id, message_id).is_some())
                .await?;
            let word = if found { "found" } else { "missing" };
            Ok(format!("{word} {message_id}"))
        }
        other => bail!("unknown verb {other:?}, expected enqueue or read"),
    }
}

/// Builds an enqueue stamped as a leader stamps it: with the wall clock, but
/// never earlier than the latest applied time.
fn enqueue_command(node: &RaftNode, work_pool_id: Uuid, message_id: Uuid) -> Command {
    let wall_clock_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        });
    let latest = node.read_local(|state| state.latest_time());
    Command {
        now: Timestamp::from_micros(wall_clock_us).max(latest),
        request_id: None,
        policy: Policy::default(),
        operation: Operation::Enqueue(Enqueue {
            message_id,
            idempotency_key: format!("probe-{message_id}"),
            work_pool_id,
            work_queue_id: None,
            kind: "probe".to_string(),
            target_json: "{}".to_string(),
            data_json: None,
        }),
    }
}
