//! `raftq bench`: a load generator that runs the worker cycle (enqueue,
//! reserve, ack) on concurrent workers and prints throughput, latency per
//! operation and errors by kind.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use raftq_client::proto::{EnqueueRequest, KindFilter, ReservationRequest, ReserveRequest};
use raftq_client::{parse_endpoints, Client, ClientError, RetryConfig};
use uuid::Uuid;

/// Kind of the messages the bench enqueues; reserves filter on it so that a
/// bench never takes other messages of a pool.
const BENCH_KIND: &str = "raftq_bench.v1";

/// Highest latency the histograms record, in microseconds (60 s); slower
/// operations are clamped to it.
const MAX_RECORDED_LATENCY_US: u64 = 60_000_000;

#[derive(Args)]
pub struct BenchArgs {
    /// Client endpoints of the cluster's nodes, comma-separated
    /// (http://host:port or host:port).
    #[arg(long, env = "RAFTQ_ENDPOINTS", value_name = "LIST")]
    endpoints: String,
    /// Concurrent workers, each running one cycle at a time.
    #[arg(long, value_name = "COUNT", default_value_t = 8)]
    workers: usize,
    /// How long to run, in seconds. Cycles started before the end finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    duration: f64,
    /// Number of work pools the workers are spread over (fresh random pool
    /// ids, so the bench starts on empty pools).
    #[arg(long, value_name = "COUNT", default_value_t = 1)]
    pools: usize,
    /// Give up retrying one operation after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    timeout_seconds: f64,
}

/// Latencies and errors of one worker, merged into the totals at the end.
struct WorkerReport {
    cycles: u64,
    latencies_us: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
}

impl WorkerReport {
    fn new() -> Result<Self> {
        let mut latencies_us = BTreeMap::new();
        for operation in ["enqueue", "reserve", "ack"] {
            let histogram = Histogram::new_with_bounds(1, MAX_RECORDED_LATENCY_US, 3)
                .context("failed to create a latency histogram")?;
            latencies_us.insert(operation, histogram);
        }
        Ok(WorkerReport {
            cycles: 0,
            latencies_us,
            errors: BTreeMap::new(),
        })
    }

    fn record(&mut self, operation: &'static str, started: Instant) {
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = self.latencies_us.get_mut(operation) {
            histogram.saturating_record(elapsed_us.clamp(1, MAX_RECORDED_LATENCY_US));
        }
    }

    fn count_error(&mut self, operation: &str, kind: &str) {
        *self.errors.entry(format!("{operation} {kind}")).or_insert(0) += 1;
    }

    fn merge(&mut self, other: WorkerReport) -> Result<()> {
        self.cycles += other.cycles;
        for (operation, histogram) in other.latencies_us {
            if let Some(total) = self.latencies_us.get_mut(operation) {
                total.add(&histogram).context("failed to merge latency histograms")?;
            }
        }
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_insert(0) += count;
        }
        Ok(())
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: BenchArgs) -> Result<()> {
    ensure!(args.workers >= 1, "--workers must be at least 1");
    ensure!(args.pools >= 1, "--pools must be at least 1");
    let duration = Duration::try_from_secs_f64(args.duration)
        .with_context(|| format!("invalid --duration {}", args.duration))?;
    let total_timeout = Duration::try_from_secs_f64(args.timeout_seconds)
        .with_context(|| format!("invalid --timeout-seconds {}", args.timeout_seconds))?;
    let endpoints = parse_endpoints(&args.endpoints).context("invalid --endpoints")?;
    let retry = RetryConfig {
        total_timeout,
        ..RetryConfig::default()
    };
    let client = Client::with_config(endpoints, retry)?;
    let pools: Vec<Uuid> = (0..args.pools).map(|_| Uuid::new_v4()).collect();

    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.workers {
        let client = client.clone();
        let pool = pools[worker % pools.len()];
        workers.spawn(run_worker(client, pool, deadline));
    }

    let mut total = WorkerReport::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a bench worker panicked")??)?;
    }
    let elapsed = started.elapsed();

    print_report(&args, &total, elapsed);
    Ok(())
}

async fn run_worker(client: Client, pool: Uuid, deadline: Instant) -> Result<WorkerReport> {
    let mut report = WorkerReport::new()?;
    while Instant::now() < deadline {
        if run_cycle(&client, pool, &mut report).await {
            report.cycles += 1;
        }
    }
    Ok(report)
}

/// Runs one enqueue, reserve and ack. Returns true when all three succeeded;
/// a failed step is counted and ends the cycle.
async fn run_cycle(client: &Client, pool: Uuid, report: &mut WorkerReport) -> bool {
    let message_id = Uuid::new_v4();
    let enqueue = EnqueueRequest {
        options: None,
        message_id: message_id.to_string(),
        idempotency_key: format!("bench-{message_id}"),
        work_pool_id: pool.to_string(),
        work_queue_id: None,
        kind: BENCH_KIND.to_string(),
        target: format!(r#"{{"bench_message":"{message_id}"}}"#),
        data: None,
    };
    let started = Instant::now();
    if let Err(error) = client.enqueue(enqueue).await {
        return count_failure(report, "enqueue", &error);
    }
    report.record("enqueue", started);

    let reserve = ReserveRequest {
        work_pool_id: pool.to_string(),
        cleanup_kinds: Some(KindFilter {
            kinds: vec![BENCH_KIND.to_string()],
        }),
        ..ReserveRequest::default()
    };
    let started = Instant::now();
    let reservation = match client.reserve(reserve).await {
        Ok(response) => response.reservation,
        Err(error) => return count_failure(report, "reserve", &error),
    };
    report.record("reserve", started);
    // Another worker of the pool may have taken every visible message.
    let Some(reservation) = reservation else {
        report.count_error("reserve", "empty");
        return false;
    };

    let ack = ReservationRequest {
        options: None,
        work_pool_id: pool.to_string(),
        message_id: reservation.message.map(|message| message.message_id).unwrap_or_default(),
        reservation_token: reservation.reservation_token,
    };
    let started = Instant::now();
    match client.ack(ack).await {
        Ok(result) if result.status == "accepted" => {
            report.record("ack", started);
            true
        }
        Ok(result) => {
            report.record("ack", started);
            report.count_error("ack", &result.status);
            false
        }
        Err(error) => count_failure(report, "ack", &error),
    }
}

fn count_failure(report: &mut WorkerReport, operation: &'static str, error: &ClientError) -> bool {
    tracing::debug!(operation, %error, "bench operation failed");
    report.count_error(operation, error.kind());
    false
}

fn print_report(args: &BenchArgs, total: &WorkerReport, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    let operations: u64 = total.latencies_us.values().map(Histogram::len).sum();

    println!(
        "workers {}, pools {}, ran {:.1} s",
        args.workers, args.pools, seconds
    );
    println!(
        "cycles {} ({:.1} cycles/s), operations {} ({:.1} ops/s)",
        total.cycles,
        total.cycles as f64 / seconds,
        operations,
        operations as f64 / seconds
    );
    println!("{:<8} {:>8} {:>10} {:>10} {:>10}", "op", "count", "p50 ms", "p99 ms", "max ms");
    for operation in ["enqueue", "reserve", "ack"] {
        let Some(histogram) = total.latencies_us.get(operation) else {
            continue;
        };
        let milliseconds = |micros: u64| micros as f64 / 1000.0;
        println!(
            "{:<8} {:>8} {:>10.2} {:>10.2} {:>10.2}",
            operation,
            histogram.len(),
            milliseconds(histogram.value_at_quantile(0.50)),
            milliseconds(histogram.value_at_quantile(0.99)),
            milliseconds(histogram.max()),
        );
    }
    if total.errors.is_empty() {
        println!("errors: none");
    } else {
        for (kind, count) in &total.errors {
            println!("errors: {kind}: {count}");
        }
    }
}
