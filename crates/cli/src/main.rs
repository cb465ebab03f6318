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
        Err(error) => match error.downcast_ref::<queue::NotAccepted>() {
            Some(not_accepted) => {
                eprintln!("{not_accepted}");
                ExitCode::from(queue::NotAccepted::EXIT_CODE)
            }
            None => {
                eprintln!("error: {}", render_error(&error));
                ExitCode::FAILURE
            }
        },
    }
}

/// Renders an error and its causes on one line, without the backtrace that
/// anyhow's Debug form adds when RUST_BACKTRACE is set. A cause whose text an
/// outer message already contains is left out, since many error types repeat
/// their source in their own message.
fn render_error(error: &anyhow::Error) -> String {
    let mut rendered = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if rendered.contains(&text) {
            continue;
        }
        if !rendered.is_empty() {
            rendered.push_str(": ");
        }
        rendered.push_str(&text);
    }
    rendered
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

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::render_error;

    /// An error that repeats its source in its own message, as many do.
    #[derive(Debug)]
    struct BindFailed(std::io::Error);

    impl fmt::Display for BindFailed {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(formatter, "failed to bind 127.0.0.1:7000: {}", self.0)
        }
    }

    impl std::error::Error for BindFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn rendered_error_skips_repeated_cause() {
        let source = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = anyhow::Error::new(BindFailed(source)).context("failed to start the node");

        let rendered = render_error(&error);

        assert_eq!(rendered, "failed to start the node: failed to bind 127.0.0.1:7000: address in use");
    }
}
