//! A three-node cluster of real servers in one process, on 127.0.0.1 ports
//! picked by the OS, driven over gRPC.

use std::net::SocketAddr;
use std::time::Duration;

use raftq_proto::v1 as proto;
use raftq_proto::v1::admin_client::AdminClient;
use raftq_proto::v1::queue_client::QueueClient;
use raftq_server::{RunningServer, ServerConfig, LEADER_HEADER, SERVED_BY_HEADER};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    servers: Vec<RunningServer>,
    _data: TempDir,
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Cluster {
    async fn start() -> Cluster {
        let data = TempDir::new().unwrap();
        let mut servers = Vec::new();
        for node_id in 1..=3 {
            let mut config = ServerConfig::new(node_id, data.path().join(format!("node-{node_id}")));
            config.listen = loopback_any_port();
            config.peer_listen = loopback_any_port();
            config.metrics_listen = Some(loopback_any_port());
            config.heartbeat_interval_ms = 50;
            config.election_timeout_min_ms = 300;
            config.election_timeout_max_ms = 600;
            config.sweep_interval_ms = 100;
            servers.push(raftq_server::start(config).await.unwrap());
        }

        let members = servers
            .iter()
            .map(|server| proto::NodeInfo {
                node_id: server.node_id(),
                client_addr: server.advertise().client_addr.clone(),
                peer_addr: server.advertise().peer_addr.clone(),
            })
            .collect();
        let response = Cluster::admin(&servers[0])
            .await
            .init_cluster(proto::InitClusterRequest { members })
            .await
            .unwrap();
        assert!(!response.into_inner().already_initialized);

        let cluster = Cluster { servers, _data: data };
        cluster.wait_for_leader().await;
        cluster
    }

    async fn channel(server: &RunningServer) -> Channel {
        Channel::from_shared(format!("http://{}", server.client_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn queue(server: &RunningServer) -> QueueClient<Channel> {
        QueueClient::new(Cluster::channel(server).await)
    }

    async fn admin(server: &RunningServer) -> AdminClient<Channel> {
        AdminClient::new(Cluster::channel(server).await)
    }

    /// Waits until every node reports the same leader, and returns its id.
    async fn wait_for_leader(&self) -> u64 {
        let started = tokio::time::Instant::now();
        loop {
            let leaders: Vec<Option<u64>> = self
                .servers
                .iter()
                .map(|server| server.raft_node().metrics().borrow().current_leader)
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|known| *known == Some(*leader)) {
                    return *leader;
                }
            }
            assert!(started.elapsed() < DEADLINE, "no agreed leader within {DEADLINE:?}: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn leader(&self, leader_id: u64) -> &RunningServer {
        self.servers.iter().find(|server| server.node_id() == leader_id).unwrap()
    }

    fn follower(&self, leader_id: u64) -> &RunningServer {
        self.servers.iter().find(|server| server.node_id() != leader_id).unwrap()
    }

    async fn stop(self) {
        for server in self.servers {
            server.stop().await.unwrap();
        }
    }
}

fn header<T>(response: &tonic::Response<T>, name: &str) -> Option<String> {
    response
        .metadata()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn enqueue_request(pool: Uuid, key: &str) -> proto::EnqueueRequest {
    proto::EnqueueRequest {
        options: None,
        message_id: Uuid::new_v4().to_string(),
        idempotency_key: key.to_string(),
        work_pool_id: pool.to_string(),
        work_queue_id: None,
        kind: "teardown.v1".to_string(),
        target: r#"{"container": "abc", "attempt": 1}"#.to_string(),
        data: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_forwards_writes_and_reads_to_leader() {
    let cluster = Cluster::start().await;
    let leader_id = cluster.wait_for_leader().await;
    let follower = cluster.follower(leader_id);
    let mut client = Cluster::queue(follower).await;
    let pool = Uuid::new_v4();

    let enqueued = client.enqueue(enqueue_request(pool, "k1")).await.unwrap();
    assert_eq!(header(&enqueued, SERVED_BY_HEADER), Some(leader_id.to_string()));
    let message = enqueued.into_inner().message.unwrap();
    assert_eq!(message.target, r#"{"container":"abc","attempt":1}"#);
    assert_eq!(message.data, "{}");

    let read = client
        .read_message(proto::ReadMessageRequest {
            read: None,
            work_pool_id: pool.to_string(),
            message_id: message.message_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(header(&read, SERVED_BY_HEADER), Some(leader_id.to_string()));
    assert_eq!(read.into_inner().message.unwrap().message_id, message.message_id);

    let reserved = client
        .reserve(proto::ReserveRequest {
            work_pool_id: pool.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reservation = reserved.reservation.unwrap();
    assert_eq!(reservation.reservation_token.len(), 43);
    assert_eq!(reservation.message.unwrap().delivery_count, 1);

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_read_is_served_by_the_called_node() {
    let cluster = Cluster::start().await;
    let leader_id = cluster.wait_for_leader().await;
    let follower = cluster.follower(leader_id);
    let mut client = Cluster::queue(follower).await;

    let response = client
        .read_wakeup_sequence(proto::ReadWakeupSequenceRequest {
            read: Some(proto::ReadOptions { local: true }),
            work_pool_id: Uuid::new_v4().to_string(),
        })
        .await
        .unwrap();
    assert_eq!(header(&response, SERVED_BY_HEADER), Some(follower.node_id().to_string()));
    assert_eq!(response.into_inner().sequence, 0);

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_on_follower_wakes_on_enqueue_at_leader() {
    let cluster = Cluster::start().await;
    let leader_id = cluster.wait_for_leader().await;
    let mut waiter = Cluster::queue(cluster.follower(leader_id)).await;
    let mut producer = Cluster::queue(cluster.leader(leader_id)).await;
    let pool = Uuid::new_v4();

    let wait = tokio::spawn(async move {
        waiter
            .wait_for_wakeup(proto::WaitForWakeupRequest {
                work_pool_id: pool.to_string(),
                after: 0,
                timeout_seconds: Some(10.0),
            })
            .await
    });
    producer.enqueue(enqueue_request(pool, "wake")).await.unwrap();

    let woken = wait.await.unwrap().unwrap().into_inner();
    assert!(woken.woken);
    assert_eq!(woken.sequence, 1);
    assert_eq!(woken.work_pool_id, pool.to_string());

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_without_wakeup() {
    let cluster = Cluster::start().await;
    let mut client = Cluster::queue(&cluster.servers[0]).await;

    let started = tokio::time::Instant::now();
    let response = client
        .wait_for_wakeup(proto::WaitForWakeupRequest {
            work_pool_id: Uuid::new_v4().to_string(),
            after: 0,
            timeout_seconds: Some(0.2),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!response.woken);
    assert_eq!(response.sequence, 0);
    assert!(started.elapsed() >= Duration::from_millis(200));

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_and_cluster_keeps_serving() {
    let cluster = Cluster::start().await;
    let leader_id = cluster.wait_for_leader().await;
    let mut client = Cluster::queue(cluster.follower(leader_id)).await;
    let pool = Uuid::new_v4();

    let bad_pool = proto::EnqueueRequest {
        work_pool_id: "not-a-uuid".into(),
        ..enqueue_request(pool, "k")
    };
    let status = client.enqueue(bad_pool).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "invalid work_pool_id: must be a UUID");

    let empty_kind = proto::EnqueueRequest {
        kind: String::new(),
        ..enqueue_request(pool, "k")
    };
    let status = client.enqueue(empty_kind).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("kind"), "{}", status.message());

    let array_target = proto::EnqueueRequest {
        target: "[1, 2]".into(),
        ..enqueue_request(pool, "k")
    };
    let status = client.enqueue(array_target).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("target"), "{}", status.message());

    let caller_clock = proto::EnqueueRequest {
        options: Some(proto::WriteOptions {
            now: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
            ..Default::default()
        }),
        ..enqueue_request(pool, "k")
    };
    let status = client.enqueue(caller_clock).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("options.now"), "{}", status.message());

    let zero_limit = proto::ExpireLeasesRequest {
        limit: Some(0),
        ..Default::default()
    };
    let status = client.expire_leases(zero_limit).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("limit"), "{}", status.message());

    let first = enqueue_request(pool, "k");
    client.enqueue(first.clone()).await.unwrap();
    let taken = proto::EnqueueRequest {
        idempotency_key: "other".into(),
        ..first
    };
    let status = client.enqueue(taken).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    let stats = client_stats(&cluster, pool).await;
    assert_eq!(stats.active, 1);

    cluster.stop().await;
}

async fn client_stats(cluster: &Cluster, pool: Uuid) -> proto::PoolStatsResponse {
    Cluster::admin(&cluster.servers[0])
        .await
        .pool_stats(proto::PoolStatsRequest {
            read: None,
            work_pool_id: pool.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_redelivers_an_expired_lease() {
    let cluster = Cluster::start().await;
    let leader_id = cluster.wait_for_leader().await;
    let mut client = Cluster::queue(cluster.leader(leader_id)).await;
    let pool = Uuid::new_v4();

    client.enqueue(enqueue_request(pool, "short")).await.unwrap();
    let short_lease = proto::WriteOptions {
        policy: Some(proto::PolicyOverrides {
            lease_seconds: Some(0.2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let reserved = client
        .reserve(proto::ReserveRequest {
            options: Some(short_lease),
            work_pool_id: pool.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reserved.reservation.is_some());
    assert_eq!(client_stats(&cluster, pool).await.reserved, 1);

    let started = tokio::time::Instant::now();
    loop {
        let stats = client_stats(&cluster, pool).await;
        if stats.reserved == 0 {
            assert_eq!(stats.active, 1);
            assert_eq!(stats.wakeup_sequence, 2, "the redelivery advances the wakeup sequence");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the sweeper did not expire the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics_addr = cluster.leader(leader_id).metrics_addr().unwrap();
    let metrics = http_get(metrics_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"prefect_worker_cleanup_queue_lease_expirations_total{result="redelivered"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("raftq_raft_is_leader 1"), "{metrics}");

    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_call_is_not_forwarded_again() {
    let cluster = Cluster::start().await;
    let leader_id = cluster.wait_for_leader().await;
    let follower = cluster.follower(leader_id);
    let mut client = Cluster::queue(follower).await;

    let mut request = tonic::Request::new(enqueue_request(Uuid::new_v4(), "loop"));
    request
        .metadata_mut()
        .insert(raftq_server::FORWARDED_BY_HEADER, tonic::metadata::MetadataValue::from(99u64));
    let status = client.enqueue(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let leader_addr = cluster.leader(leader_id).advertise().client_addr.clone();
    assert_eq!(
        status.metadata().get(LEADER_HEADER).and_then(|value| value.to_str().ok()),
        Some(leader_addr.as_str())
    );
    assert_eq!(
        status.metadata().get(SERVED_BY_HEADER).and_then(|value| value.to_str().ok()),
        Some(follower.node_id().to_string().as_str())
    );

    cluster.stop().await;
}

/// Sends a bare HTTP/1.0 GET and returns the body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Returns the health status a node reports for `service`.
async fn health_status(server: &RunningServer, service: &str) -> i32 {
    let channel = Channel::from_shared(format!("http://{}", server.client_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_readiness_follows_leader() {
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let data = TempDir::new().unwrap();
    let mut config = ServerConfig::new(1, data.path().join("node-1"));
    config.listen = loopback_any_port();
    config.peer_listen = loopback_any_port();
    config.heartbeat_interval_ms = 50;
    config.election_timeout_min_ms = 300;
    config.election_timeout_max_ms = 600;
    let server = raftq_server::start(config).await.unwrap();

    // Up but in no cluster: alive, not ready for queue calls.
    assert_eq!(health_status(&server, "").await, serving);
    assert_eq!(health_status(&server, "raftq.v1.Queue").await, not_serving);

    let member = proto::NodeInfo {
        node_id: server.node_id(),
        client_addr: server.advertise().client_addr.clone(),
        peer_addr: server.advertise().peer_addr.clone(),
    };
    Cluster::admin(&server)
        .await
        .init_cluster(proto::InitClusterRequest { members: vec![member] })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while health_status(&server, "raftq.v1.Queue").await != serving {
        assert!(tokio::time::Instant::now() < deadline, "the queue service never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
