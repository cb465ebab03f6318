//! A libtest-compatible main for suites whose cases share one cluster.
//!
//! The cluster starts before the first case and is dropped, killing its
//! nodes, after the last. Each case runs on its own Tokio runtime with its own
//! clients, so cases can run on parallel test threads.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use raftq_integration_tests::{Cluster, ClusterOptions};

pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// A named case: an async function of the shared cluster.
pub struct Case {
    pub name: &'static str,
    pub run: for<'a> fn(&'a Cluster) -> CaseFuture<'a>,
}

/// Builds the case list from async functions `fn(&Cluster) -> Result<()>`,
/// named after them.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$(support::Case {
            name: stringify!($name),
            run: |cluster| Box::pin($name(cluster)),
        }),*]
    };
}
pub(crate) use cases;

/// Parses the libtest arguments, starts a cluster whose nodes get
/// `serve_args`, runs the cases and returns the exit code.
pub fn run_suite(serve_args: &[&str], cases: Vec<Case>) -> ExitCode {
    let arguments = Arguments::from_args();
    // Listing the cases needs no cluster.
    if arguments.list {
        let trials = cases.into_iter().map(|case| Trial::test(case.name, || Ok(()))).collect();
        return libtest_mimic::run(&arguments, trials).exit_code();
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("failed to start a Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = ClusterOptions {
        serve_args: serve_args.iter().map(|arg| arg.to_string()).collect(),
        ..ClusterOptions::default()
    };
    let cluster = match runtime.block_on(Cluster::start(options)) {
        Ok(cluster) => Arc::new(cluster),
        Err(error) => {
            eprintln!("failed to start the test cluster: {error:#}");
            return ExitCode::FAILURE;
        }
    };

    let trials = cases
        .into_iter()
        .map(|case| {
            let cluster = Arc::clone(&cluster);
            Trial::test(case.name, move || run_case(&cluster, case.run))
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);

    drop(cluster);
    conclusion.exit_code()
}

fn run_case(cluster: &Cluster, run: for<'a> fn(&'a Cluster) -> CaseFuture<'a>) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| Failed::from(format!("failed to start a Tokio runtime: {error}")))?;
    runtime
        .block_on(run(cluster))
        .map_err(|error| Failed::from(format!("{error:#}")))
}
