//! Client commands of the `raftq` binary: one command per queue operation,
//! plus dead-letter administration and pool statistics.
//!
//! With `--json` each command prints exactly one JSON object on stdout, with
//! the contract's field names; without it, one short line per result. Errors
//! go to stderr and end the process with status 1. An ack, release or renew
//! whose result status is not `accepted` prints its result and ends with
//! status 3, so that scripts notice a lost reservation.

mod json;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use raftq_client::proto::{
    completed_retention, CleanupMessage, CompletedRetention, DeadLetter, EnqueueRequest,
    ExpireLeasesRequest, KindFilter, ListDeadLettersRequest, OperationResult, PolicyOverrides,
    PoolStatsRequest, PurgeDeadLettersRequest, ReadDeadLetterRequest, ReadMessageRequest,
    ReadOptions, ReadWakeupSequenceRequest, RedriveDeadLettersRequest, ReleaseRequest,
    ReservationRequest, ReserveRequest, WaitForWakeupRequest, WakeDispatchersRequest,
    WorkQueueFilter, WriteOptions,
};
use raftq_client::{parse_endpoints, Client, RetryConfig};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Add a cleanup message to a pool. A known message id or idempotency
    /// key returns the stored message instead (reported as a duplicate).
    Enqueue(EnqueueArgs),
    /// Reserve the oldest matching message of a pool, if any.
    Reserve(ReserveArgs),
    /// Acknowledge a reservation: the message is done. Exits with 3 when
    /// the result status is not accepted.
    Ack(ReservationArgs),
    /// Give a reservation back so that the message is delivered again, or
    /// dead-lettered when it reached the maximum delivery attempts. Exits
    /// with 3 when the result status is not accepted.
    Release(ReleaseArgs),
    /// Extend a reservation's lease from now by the lease duration. Exits
    /// with 3 when the result status is not accepted.
    Renew(ReservationArgs),
    /// Expire due leases now: redeliver their messages, or dead-letter those
    /// at the maximum delivery attempts.
    ExpireLeases(ExpireLeasesArgs),
    /// Read an active message of a pool.
    Read(ReadArgs),
    /// Advance a pool's wakeup sequence by one.
    Wake(PoolArgs),
    /// Read a pool's committed wakeup sequence (0 for a pool never woken).
    WakeupSequence(PoolReadArgs),
    /// Wait until a pool's wakeup sequence is greater than a cursor.
    Wait(WaitArgs),
    /// List, read, redrive or purge a pool's dead letters.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Count a pool's active, reserved, dead-lettered and tombstone messages.
    Stats(PoolReadArgs),
}

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List a page of a pool's dead letters, oldest first.
    List(ListDeadLettersArgs),
    /// Read one dead letter.
    Read(ReadArgs),
    /// Move one dead letter, or all of the pool's, back to active delivery
    /// with a delivery count of 0.
    Redrive(DeadLetterSelectArgs),
    /// Delete one dead letter, or all of the pool's.
    Purge(DeadLetterSelectArgs),
}

#[derive(Args)]
pub struct ConnectionArgs {
    /// Client endpoints of the cluster's nodes, comma-separated
    /// (http://host:port or host:port). Any node serves: followers forward
    /// to the leader.
    #[arg(long, env = "RAFTQ_ENDPOINTS", value_name = "LIST")]
    endpoints: String,
    /// Print one JSON object on stdout instead of a human-readable line.
    #[arg(long)]
    json: bool,
    /// Give up retrying after this many seconds (retries cover leader
    /// elections and unreachable nodes).
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    timeout_seconds: f64,
}

/// Per-request policy overrides of a trusted caller; unset knobs take the
/// server's defaults.
#[derive(Args)]
pub struct PolicyArgs {
    /// Lease duration in seconds for reserve and renew, greater than 0.
    #[arg(long, value_name = "SECONDS")]
    lease_seconds: Option<f64>,
    /// Committed reservations allowed before a message dead-letters, at least 1.
    #[arg(long, value_name = "COUNT")]
    max_delivery_attempts: Option<u32>,
    /// Seconds an acked message keeps its message id and idempotency key
    /// taken, 0 or more.
    #[arg(long, value_name = "SECONDS", conflicts_with = "keep_completed")]
    completed_retention_seconds: Option<f64>,
    /// Keep acked messages' ids and keys taken for as long as the cluster lives.
    #[arg(long)]
    keep_completed: bool,
}

#[derive(Args)]
pub struct PoolArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
}

#[derive(Args)]
pub struct PoolReadArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// Read the called node's applied state, possibly stale, instead of a
    /// linearizable read through the leader.
    #[arg(long)]
    local: bool,
}

#[derive(Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// Message kind, such as pending_claim_teardown.v1; non-empty.
    #[arg(long)]
    kind: String,
    /// Idempotency key, stable for one logical job; non-empty.
    #[arg(long = "key", value_name = "IDEMPOTENCY_KEY")]
    idempotency_key: String,
    /// Cleanup target as a JSON object, such as {"container_id": "abc"}.
    #[arg(long, value_name = "JSON")]
    target: String,
    /// Extra payload as a JSON object; the server stores {} when unset.
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// Message id (UUID); a random one when unset.
    #[arg(long, value_name = "UUID")]
    message_id: Option<Uuid>,
    /// Work queue id (UUID), an advisory routing hint inside the pool.
    #[arg(long, value_name = "UUID")]
    work_queue: Option<Uuid>,
}

#[derive(Args)]
pub struct ReserveArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// Only reserve messages of this kind; repeat for several kinds. Unset:
    /// any kind.
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// Look at messages of this work queue (UUID) first; repeat for several.
    #[arg(long = "prefer-queue", value_name = "UUID")]
    preferred_queues: Vec<Uuid>,
    /// With --prefer-queue, reserve nothing rather than a message of
    /// another queue.
    #[arg(long, requires = "preferred_queues")]
    no_fallback: bool,
}

#[derive(Args)]
pub struct ReservationArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// Id (UUID) of the reserved message.
    #[arg(long, value_name = "UUID")]
    message_id: Uuid,
    /// Reservation token returned by reserve.
    #[arg(long)]
    token: String,
}

#[derive(Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    reservation: ReservationArgs,
    /// Reason the worker gives the message back; non-empty.
    #[arg(long)]
    reason: String,
}

#[derive(Args)]
pub struct ExpireLeasesArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Maximum number of due leases to expire, at least 1; the server
    /// default is 100.
    #[arg(long, value_name = "COUNT")]
    limit: Option<i64>,
    /// Only expire leases of this work pool (UUID). Unset: every pool.
    #[arg(long, value_name = "UUID")]
    pool: Option<Uuid>,
}

#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// Message id (UUID).
    #[arg(long, value_name = "UUID")]
    message_id: Uuid,
    /// Read the called node's applied state, possibly stale, instead of a
    /// linearizable read through the leader.
    #[arg(long)]
    local: bool,
}

#[derive(Args)]
pub struct WaitArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// Return once the sequence is greater than this cursor (the last
    /// sequence the caller saw).
    #[arg(long, value_name = "SEQUENCE", default_value_t = 0)]
    after: u64,
    /// Give up after this many seconds and report no wakeup. Unset: wait
    /// until --timeout-seconds.
    #[arg(long = "timeout", value_name = "SECONDS")]
    wait_seconds: Option<f64>,
}

#[derive(Args)]
pub struct ListDeadLettersArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// Cursor from the previous page's next_cursor; unset for the first page.
    #[arg(long, value_name = "CURSOR")]
    after: Option<u64>,
    /// Page size, 1 to 1000; the server default is 100.
    #[arg(long, value_name = "COUNT")]
    limit: Option<u32>,
    /// Read the called node's applied state, possibly stale.
    #[arg(long)]
    local: bool,
}

#[derive(Args)]
pub struct DeadLetterSelectArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Work pool id (UUID).
    #[arg(long, value_name = "UUID")]
    pool: Uuid,
    /// One dead letter's message id (UUID). Unset: every dead letter of the pool.
    #[arg(long, value_name = "UUID")]
    message_id: Option<Uuid>,
}

impl ConnectionArgs {
    fn client(&self) -> Result<Client> {
        let total_timeout = Duration::try_from_secs_f64(self.timeout_seconds)
            .with_context(|| format!("invalid --timeout-seconds {}", self.timeout_seconds))?;
        let retry = RetryConfig {
            total_timeout,
            ..RetryConfig::default()
        };
        let endpoints = parse_endpoints(&self.endpoints).context("invalid --endpoints")?;
        Ok(Client::with_config(endpoints, retry)?)
    }
}

impl PolicyArgs {
    /// Builds the write options carrying the overrides, or `None` when no
    /// knob is set. The client adds the request id either way.
    fn write_options(&self) -> Option<WriteOptions> {
        let retention = if self.keep_completed {
            Some(completed_retention::Retention::Keep(true))
        } else {
            self.completed_retention_seconds.map(completed_retention::Retention::Seconds)
        };
        if self.lease_seconds.is_none() && self.max_delivery_attempts.is_none() && retention.is_none() {
            return None;
        }
        let policy = PolicyOverrides {
            lease_seconds: self.lease_seconds,
            max_delivery_attempts: self.max_delivery_attempts,
            completed_idempotency_retention: retention
                .map(|retention| CompletedRetention { retention: Some(retention) }),
        };
        Some(WriteOptions {
            policy: Some(policy),
            ..WriteOptions::default()
        })
    }
}

fn read_options(local: bool) -> Option<ReadOptions> {
    Some(ReadOptions { local })
}

/// Runs one client command and prints its result.
pub async fn run(command: QueueCommand) -> Result<()> {
    init_logging();
    match command {
        QueueCommand::Enqueue(args) => enqueue(args).await,
        QueueCommand::Reserve(args) => reserve(args).await,
        QueueCommand::Ack(args) => {
            let connection = &args.connection;
            let result = connection.client()?.ack(reservation_request(&args)).await?;
            print_operation(connection.json, &result)
        }
        QueueCommand::Release(args) => release(args).await,
        QueueCommand::Renew(args) => {
            let connection = &args.connection;
            let result = connection.client()?.renew(reservation_request(&args)).await?;
            print_operation(connection.json, &result)
        }
        QueueCommand::ExpireLeases(args) => expire_leases(args).await,
        QueueCommand::Read(args) => read_message(args).await,
        QueueCommand::Wake(args) => wake(args).await,
        QueueCommand::WakeupSequence(args) => wakeup_sequence(args).await,
        QueueCommand::Wait(args) => wait(args).await,
        QueueCommand::DeadLetters(command) => dead_letters(command).await,
        QueueCommand::Stats(args) => stats(args).await,
    }
}

/// Sends client logs, such as retries, to stderr so that stdout stays one
/// JSON object. `RUST_LOG` overrides the default level, warn.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A subscriber already set by an embedding program is kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn print_json(value: Value) {
    println!("{value}");
}

async fn enqueue(args: EnqueueArgs) -> Result<()> {
    let message_id = args.message_id.unwrap_or_else(Uuid::new_v4);
    let request = EnqueueRequest {
        options: args.policy.write_options(),
        message_id: message_id.to_string(),
        idempotency_key: args.idempotency_key,
        work_pool_id: args.pool.to_string(),
        work_queue_id: args.work_queue.map(|queue| queue.to_string()),
        kind: args.kind,
        target: args.target,
        data: args.data,
    };
    let response = args.connection.client()?.enqueue(request).await?;
    let message = response
        .message
        .context("the server returned no message for the enqueue")?;

    if args.connection.json {
        print_json(json!({ "message": json::message(&message), "duplicate": response.duplicate }));
    } else if response.duplicate {
        println!(
            "message {} already stored (duplicate), delivery_count {}",
            message.message_id, message.delivery_count
        );
    } else {
        println!("enqueued message {} in pool {}", message.message_id, message.work_pool_id);
    }
    Ok(())
}

async fn reserve(args: ReserveArgs) -> Result<()> {
    let request = ReserveRequest {
        options: args.policy.write_options(),
        work_pool_id: args.pool.to_string(),
        cleanup_kinds: (!args.kinds.is_empty()).then(|| KindFilter { kinds: args.kinds.clone() }),
        preferred_work_queue_ids: (!args.preferred_queues.is_empty()).then(|| WorkQueueFilter {
            work_queue_ids: args.preferred_queues.iter().map(Uuid::to_string).collect(),
        }),
        allow_fallback_to_any_queue: args.no_fallback.then_some(false),
    };
    let response = args.connection.client()?.reserve(request).await?;

    if args.connection.json {
        print_json(json!({
            "reservation": response.reservation.as_ref().map(json::reservation),
            "dead_lettered": response.dead_lettered.iter().map(json::dead_letter).collect::<Vec<_>>(),
            "redelivered_count": response.redelivered_count,
        }));
        return Ok(());
    }
    for dead_letter in &response.dead_lettered {
        print_dead_letter_line(dead_letter);
    }
    match &response.reservation {
        Some(reservation) => {
            let message = reservation.message.clone().unwrap_or_default();
            let lease = reservation.lease_expires_at.as_ref().map(json::rfc3339).unwrap_or_default();
            println!(
                "reserved message {} (delivery {}) until {lease}, token {}",
                message.message_id, message.delivery_count, reservation.reservation_token
            );
        }
        None => println!("no message to reserve"),
    }
    Ok(())
}

fn reservation_request(args: &ReservationArgs) -> ReservationRequest {
    ReservationRequest {
        options: args.policy.write_options(),
        work_pool_id: args.pool.to_string(),
        message_id: args.message_id.to_string(),
        reservation_token: args.token.clone(),
    }
}

async fn release(args: ReleaseArgs) -> Result<()> {
    let reservation = reservation_request(&args.reservation);
    let request = ReleaseRequest {
        options: reservation.options,
        work_pool_id: reservation.work_pool_id,
        message_id: reservation.message_id,
        reservation_token: reservation.reservation_token,
        reason: args.reason,
    };
    let connection = &args.reservation.connection;
    let result = connection.client()?.release(request).await?;
    print_operation(connection.json, &result)
}

/// An ack, release or renew that ran but whose status is not `accepted`. The
/// result is already printed; `main` exits with [`NotAccepted::EXIT_CODE`].
#[derive(Debug)]
pub struct NotAccepted {
    pub operation: String,
    pub status: String,
}

impl NotAccepted {
    pub const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for NotAccepted {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} finished with status {}", self.operation, self.status)
    }
}

impl std::error::Error for NotAccepted {}

/// Prints a result, and returns [`NotAccepted`] unless its status is accepted.
fn print_operation(as_json: bool, result: &OperationResult) -> Result<()> {
    print_result(as_json, result);
    if result.status != "accepted" {
        return Err(NotAccepted {
            operation: result.operation.clone(),
            status: result.status.clone(),
        }
        .into());
    }
    Ok(())
}

fn print_result(as_json: bool, result: &OperationResult) {
    if as_json {
        print_json(json::operation_result(result));
        return;
    }
    let mut line = format!("{} {}: {}", result.operation, result.message_id, result.status);
    if let Some(reason) = &result.reason {
        line.push_str(&format!(" ({reason})"));
    }
    if let Some(lease) = &result.lease_expires_at {
        line.push_str(&format!(", lease until {}", json::rfc3339(lease)));
    }
    println!("{line}");
}

async fn expire_leases(args: ExpireLeasesArgs) -> Result<()> {
    let request = ExpireLeasesRequest {
        options: args.policy.write_options(),
        limit: args.limit,
        work_pool_id: args.pool.map(|pool| pool.to_string()),
    };
    let response = args.connection.client()?.expire_leases(request).await?;

    if args.connection.json {
        print_json(json!({
            "redelivered": response.redelivered.iter().map(json::message).collect::<Vec<_>>(),
            "dead_lettered": response.dead_lettered.iter().map(json::dead_letter).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    for message in &response.redelivered {
        println!("redelivered message {} of pool {}", message.message_id, message.work_pool_id);
    }
    for dead_letter in &response.dead_lettered {
        print_dead_letter_line(dead_letter);
    }
    println!(
        "{} redelivered, {} dead-lettered",
        response.redelivered.len(),
        response.dead_lettered.len()
    );
    Ok(())
}

async fn read_message(args: ReadArgs) -> Result<()> {
    let request = ReadMessageRequest {
        read: read_options(args.local),
        work_pool_id: args.pool.to_string(),
        message_id: args.message_id.to_string(),
    };
    let message = args.connection.client()?.read_message(request).await?;

    if args.connection.json {
        print_json(json!({ "message": json::optional_message(message.as_ref()) }));
    } else {
        match message {
            Some(message) => print_message_line(&message),
            None => println!("no active message {} in pool {}", args.message_id, args.pool),
        }
    }
    Ok(())
}

async fn wake(args: PoolArgs) -> Result<()> {
    let request = WakeDispatchersRequest {
        options: args.policy.write_options(),
        work_pool_id: args.pool.to_string(),
    };
    let sequence = args.connection.client()?.wake_dispatchers(request).await?;
    print_sequence(args.connection.json, args.pool, sequence);
    Ok(())
}

async fn wakeup_sequence(args: PoolReadArgs) -> Result<()> {
    let request = ReadWakeupSequenceRequest {
        read: read_options(args.local),
        work_pool_id: args.pool.to_string(),
    };
    let sequence = args.connection.client()?.read_wakeup_sequence(request).await?;
    print_sequence(args.connection.json, args.pool, sequence);
    Ok(())
}

fn print_sequence(as_json: bool, pool: Uuid, sequence: u64) {
    if as_json {
        print_json(json!({ "work_pool_id": pool.to_string(), "sequence": sequence }));
    } else {
        println!("pool {pool} wakeup sequence {sequence}");
    }
}

async fn wait(args: WaitArgs) -> Result<()> {
    let request = WaitForWakeupRequest {
        work_pool_id: args.pool.to_string(),
        after: args.after,
        timeout_seconds: args.wait_seconds,
    };
    let response = args.connection.client()?.wait_for_wakeup(request).await?;

    if args.connection.json {
        let wakeup = response
            .woken
            .then(|| json!({ "work_pool_id": response.work_pool_id, "sequence": response.sequence }));
        print_json(json!({ "wakeup": wakeup }));
    } else if response.woken {
        println!("pool {} woken at sequence {}", args.pool, response.sequence);
    } else {
        println!("no wakeup after {} before the timeout (sequence {})", args.after, response.sequence);
    }
    Ok(())
}

async fn dead_letters(command: DeadLettersCommand) -> Result<()> {
    match command {
        DeadLettersCommand::List(args) => {
            let request = ListDeadLettersRequest {
                read: read_options(args.local),
                work_pool_id: args.pool.to_string(),
                after: args.after,
                limit: args.limit,
            };
            let response = args.connection.client()?.list_dead_letters(request).await?;
            if args.connection.json {
                print_json(json!({
                    "dead_letters": response.dead_letters.iter().map(json::dead_letter).collect::<Vec<_>>(),
                    "next_cursor": response.next_cursor,
                }));
            } else {
                response.dead_letters.iter().for_each(print_dead_letter_line);
                if let Some(cursor) = response.next_cursor {
                    println!("more: pass --after {cursor}");
                }
            }
        }
        DeadLettersCommand::Read(args) => {
            let request = ReadDeadLetterRequest {
                read: read_options(args.local),
                work_pool_id: args.pool.to_string(),
                message_id: args.message_id.to_string(),
            };
            let dead_letter = args.connection.client()?.read_dead_letter(request).await?;
            if args.connection.json {
                print_json(json!({ "dead_letter": dead_letter.as_ref().map(json::dead_letter) }));
            } else {
                match dead_letter {
                    Some(dead_letter) => print_dead_letter_line(&dead_letter),
                    None => println!("no dead letter {} in pool {}", args.message_id, args.pool),
                }
            }
        }
        DeadLettersCommand::Redrive(args) => {
            let request = RedriveDeadLettersRequest {
                options: None,
                work_pool_id: args.pool.to_string(),
                message_id: args.message_id.map(|id| id.to_string()),
            };
            let redriven = args.connection.client()?.redrive_dead_letters(request).await?;
            if args.connection.json {
                print_json(json!({ "redriven": redriven.iter().map(json::message).collect::<Vec<_>>() }));
            } else {
                redriven.iter().for_each(print_message_line);
                println!("{} redriven", redriven.len());
            }
        }
        DeadLettersCommand::Purge(args) => {
            let request = PurgeDeadLettersRequest {
                options: None,
                work_pool_id: args.pool.to_string(),
                message_id: args.message_id.map(|id| id.to_string()),
            };
            let purged = args.connection.client()?.purge_dead_letters(request).await?;
            if args.connection.json {
                print_json(json!({ "purged": purged }));
            } else {
                println!("{purged} purged");
            }
        }
    }
    Ok(())
}

async fn stats(args: PoolReadArgs) -> Result<()> {
    let request = PoolStatsRequest {
        read: read_options(args.local),
        work_pool_id: args.pool.to_string(),
    };
    let stats = args.connection.client()?.pool_stats(request).await?;

    if args.connection.json {
        print_json(json!({
            "work_pool_id": args.pool.to_string(),
            "active": stats.active,
            "reserved": stats.reserved,
            "dead_lettered": stats.dead_lettered,
            "tombstones": stats.tombstones,
            "wakeup_sequence": stats.wakeup_sequence,
        }));
    } else {
        println!(
            "pool {}: {} active, {} reserved, {} dead-lettered, {} tombstones, wakeup sequence {}",
            args.pool, stats.active, stats.reserved, stats.dead_lettered, stats.tombstones, stats.wakeup_sequence
        );
    }
    Ok(())
}

fn print_message_line(message: &CleanupMessage) {
    println!(
        "message {} kind {} key {} delivery_count {} target {}",
        message.message_id, message.kind, message.idempotency_key, message.delivery_count, message.target
    );
}

fn print_dead_letter_line(dead_letter: &DeadLetter) {
    let message = dead_letter.message.clone().unwrap_or_default();
    println!(
        "dead letter {} kind {}: {} after {} deliveries",
        message.message_id, message.kind, dead_letter.reason, dead_letter.final_delivery_count
    );
}
