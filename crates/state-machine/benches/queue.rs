//! Throughput of the state machine's hot paths with 1 thousand, 100 thousand
//! and 1 million messages in one pool. Run with
//! `cargo bench -p raftq-state-machine --bench queue`; criterion prints the
//! time per operation and the operations per second.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raftq_state_machine::{
    Command, Enqueue, Operation, Policy, QueueState, ReservationRef, Reserve, Response, Timestamp,
};
use uuid::Uuid;

const POOL_SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const EXPIRY_BATCH: usize = 100;

/// A pool of `size` visible messages and the clock that filled it.
struct Fixture {
    state: QueueState,
    pool: Uuid,
    now_us: i64,
    counter: u64,
}

impl Fixture {
    fn new(size: usize) -> Self {
        let mut fixture = Fixture {
            state: QueueState::new(),
            pool: Uuid::from_u128(1),
            now_us: 1_700_000_000_000_000,
            counter: 0,
        };
        for _ in 0..size {
            fixture.enqueue();
        }
        fixture
    }

    fn command(&mut self, operation: Operation) -> Command {
        // One microsecond per command keeps time moving forward as a leader would.
        self.now_us += 1;
        Command {
            now: Timestamp::from_micros(self.now_us),
            request_id: None,
            policy: Policy {
                lease_us: 1_000_000,
                // Messages go round many times in the expiry bench; none may
                // dead-letter and drain the pool.
                max_delivery_attempts: u32::MAX,
                ..Policy::default()
            },
            operation,
        }
    }

    fn enqueue(&mut self) {
        self.counter += 1;
        let command = self.command(Operation::Enqueue(Enqueue {
            message_id: Uuid::from_u128(self.counter as u128 + 1_000),
            idempotency_key: format!("key-{}", self.counter),
            work_pool_id: self.pool,
            work_queue_id: None,
            kind: "cancelling_timeout_teardown.v1".to_string(),
            target_json: format!(r#"{{"flow_run_id":"{}"}}"#, self.counter),
            data_json: None,
        }));
        self.state.apply(&command);
    }

    /// Reserves the oldest message and returns its id and token.
    fn reserve(&mut self) -> (Uuid, String) {
        self.counter += 1;
        let command = self.command(Operation::Reserve(Reserve {
            work_pool_id: self.pool,
            cleanup_kinds: None,
            preferred_work_queue_ids: None,
            allow_fallback_to_any_queue: true,
            reservation_token: format!("token-{:0>40}", self.counter),
        }));
        match self.state.apply(&command).response {
            Response::Reserved(Some(reservation)) => {
                (reservation.message.message_id, reservation.reservation_token)
            }
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    fn ack(&mut self, message_id: Uuid, reservation_token: String) {
        let command = self.command(Operation::Ack(ReservationRef {
            work_pool_id: self.pool,
            message_id,
            reservation_token,
        }));
        self.state.apply(&command);
    }
}

fn bench_enqueue(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("enqueue");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    for size in POOL_SIZES {
        let mut fixture = Fixture::new(size);
        group.bench_function(BenchmarkId::from_parameter(size), |bencher| {
            bencher.iter(|| fixture.enqueue())
        });
    }
    group.finish();
}

fn bench_reserve_and_ack(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("reserve_ack");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    for size in POOL_SIZES {
        let mut fixture = Fixture::new(size);
        group.bench_function(BenchmarkId::from_parameter(size), |bencher| {
            bencher.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                for _ in 0..iterations {
                    // Refill outside the measurement so the pool stays at `size`.
                    fixture.enqueue();
                    let start = Instant::now();
                    let (message_id, token) = fixture.reserve();
                    fixture.ack(message_id, token);
                    measured += start.elapsed();
                }
                measured
            })
        });
    }
    group.finish();
}

fn bench_expire_leases(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("expire_leases");
    group.throughput(Throughput::Elements(EXPIRY_BATCH as u64));
    group.sample_size(20);
    for size in POOL_SIZES {
        let mut fixture = Fixture::new(size);
        group.bench_function(BenchmarkId::from_parameter(size), |bencher| {
            bencher.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                for _ in 0..iterations {
                    for _ in 0..EXPIRY_BATCH {
                        fixture.reserve();
                    }
                    // Past the 1 s lease of every reservation just made.
                    fixture.now_us += 2_000_000;
                    let command = fixture.command(Operation::ExpireLeases {
                        limit: EXPIRY_BATCH as i64,
                        work_pool_id: None,
                    });
                    let start = Instant::now();
                    fixture.state.apply(&command);
                    measured += start.elapsed();
                }
                measured
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_enqueue, bench_reserve_and_ack, bench_expire_leases);
criterion_main!(benches);
