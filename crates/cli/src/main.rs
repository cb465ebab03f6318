//! The `raftq` binary: runs a node, administers the cluster and talks to the
//! queue.

mod admin;
mod bench;
mod dev;
mod queue;
mod serve;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "raftq", version, about = "A delivery queue replicated with Raft")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a cluster.
    Serve(serve::ServeArgs),
    /// Start a local 3-node cluster as child processes, for a first try.
    Dev(dev::DevArgs),
    /// Cluster administration: init, join, remove, status, health.
    #[command(flatten)]
    Admin(admin::AdminCommand),
    /// Queue operations against a cluster.
    #[command(flatten)]
    Queue(queue::QueueCommand),
    /// Run a load of worker cycles (enqueue, reserve, ack) and print
    /// throughput and latency per operation.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the context chain on one line, without the
            // backtrace that anyhow's Debug form adds when RUST_BACKTRACE is set.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Admin(command) => admin::run(command).await,
            Command::Queue(command) => queue::run(command).await,
            Command::Bench(args) => bench::run(args).await,
        }
    })
}
