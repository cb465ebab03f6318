//! The nemesis: injects one fault at a time on a seeded schedule, heals it,
//! and measures how long the cluster took to elect a leader and to serve
//! writes again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use raftq_client::proto::WakeDispatchersRequest;
use raftq_client::{Client, RetryConfig};
use serde::Serialize;
use uuid::Uuid;

use crate::cluster::ChaosCluster;
use crate::history::Recorder;
use raftq_integration_tests::wait_until;

/// Entries a node keeps in its log behind a snapshot (openraft's
/// `max_in_snapshot_log_to_keep`, which `raftq serve` leaves at 1000), so a
/// rejoining node needs a snapshot once the leader's snapshot is this far
/// past the node's last entry.
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 1_000;

/// Concurrent writers that fill the log during a membership change.
const FILLER_WRITERS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL the leader, restart it after the hold.
    KillLeader,
    /// SIGKILL a follower, restart it after the hold.
    KillFollower,
    /// SIGSTOP the leader, SIGCONT it after the hold: a deposed leader wakes.
    PauseLeader,
    /// Cut the leader from both followers.
    IsolateLeader,
    /// Cut one follower from the two other nodes (a 2/1 split).
    SplitTwoOne,
    /// Cut two nodes from each other, while the third still reaches both.
    BridgePartition,
    /// Restart the leader with `--clock-skew-ms`, try to make it lead again,
    /// then restart it without skew.
    LeaderClockSkew,
    /// SIGKILL every node at once, then start them all.
    PowerLoss,
    /// Remove a follower, let the log move past it and be purged, then add it
    /// back with `raftq join` so that it catches up from a snapshot.
    MembershipChurn,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::PauseLeader,
        FaultKind::IsolateLeader,
        FaultKind::SplitTwoOne,
        FaultKind::BridgePartition,
        FaultKind::LeaderClockSkew,
        FaultKind::PowerLoss,
        FaultKind::MembershipChurn,
    ];
}

/// A fault of the schedule, with every random choice drawn up front from the
/// seed so that a seed replays the same schedule.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedFault {
    pub kind: FaultKind,
    /// Selects the target among the candidates (a follower, the bridge node).
    pub pick: usize,
    pub hold_ms: u64,
    /// Clock skew of a `LeaderClockSkew`, in milliseconds.
    pub skew_ms: i64,
    /// Whether a `MembershipChurn` wipes the node's data before it rejoins.
    pub wipe: bool,
}

/// Settings of the nemesis.
#[derive(Clone, Debug)]
pub struct NemesisSettings {
    pub hold_min: Duration,
    pub hold_max: Duration,
    /// Fault-free time after each recovery.
    pub quiet: Duration,
    /// Upper bound on every wait for a leader or for service.
    pub recovery_timeout: Duration,
    pub max_clock_skew_ms: i64,
    /// The nodes' `--snapshot-every-entries`.
    pub snapshot_every_entries: u64,
}

/// Draws one round: every kind of `kinds` once, in a seeded order.
pub fn plan_round(rng: &mut StdRng, kinds: &[FaultKind], settings: &NemesisSettings) -> Vec<PlannedFault> {
    let mut order = kinds.to_vec();
    order.shuffle(rng);
    order
        .into_iter()
        .map(|kind| {
            let hold_ms = rng.gen_range(settings.hold_min.as_millis() as u64..=settings.hold_max.as_millis() as u64);
            let skew = rng.gen_range(settings.max_clock_skew_ms / 4..=settings.max_clock_skew_ms);
            PlannedFault {
                kind,
                pick: rng.gen_range(0..6),
                hold_ms,
                skew_ms: if rng.gen_bool(0.5) { skew } else { -skew },
                wipe: rng.gen_bool(0.5),
            }
        })
        .collect()
}

/// What happened during one fault.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub targets: Vec<u8>,
    pub leader_before: Option<u8>,
    pub leader_after: Option<u8>,
    /// Monotonic times of the run, in microseconds.
    pub injected_us: u64,
    pub healed_us: u64,
    pub recovered_us: u64,
    /// Time from the injection to a leader of a higher term, when one was
    /// elected before the heal.
    pub new_leader_ms: Option<u64>,
    /// Time from the heal to the first successful write.
    pub full_service_ms: u64,
    /// Time from the heal until every member had applied the leader's
    /// commit index as of the first successful write. `None` when a member
    /// did not catch up within the recovery timeout.
    pub caught_up_ms: Option<u64>,
    pub detail: String,
}

/// Injects faults into a cluster.
pub struct Nemesis<'c> {
    cluster: &'c mut ChaosCluster,
    recorder: Recorder,
    settings: NemesisSettings,
    /// Client for probe and filler writes, on a pool of its own.
    client: Client,
    pool: String,
}

impl<'c> Nemesis<'c> {
    pub fn new(cluster: &'c mut ChaosCluster, recorder: Recorder, settings: NemesisSettings) -> Result<Nemesis<'c>> {
        let retry = RetryConfig {
            total_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(1),
            ..RetryConfig::default()
        };
        let client = cluster.client(retry)?;
        Ok(Nemesis {
            cluster,
            recorder,
            settings,
            client,
            pool: Uuid::new_v4().to_string(),
        })
    }

    pub fn cluster(&self) -> &ChaosCluster {
        self.cluster
    }

    /// Injects a fault, keeps it for the hold time, heals it and waits for full
    /// service.
    pub async fn run_fault(&mut self, fault: &PlannedFault) -> Result<FaultRecord> {
        let leader_before = self.cluster.wait_for_leader(self.settings.recovery_timeout).await?;
        let term_before = self.cluster.status(leader_before, Duration::from_secs(2)).await?.term;
        tracing::info!(kind = ?fault.kind, leader = leader_before, term = term_before, "injecting a fault");
        let injected = Instant::now();
        let injected_us = self.recorder.now_us();
        let hold = Duration::from_millis(fault.hold_ms);

        let (targets, new_leader, detail) = match fault.kind {
            FaultKind::KillLeader => {
                self.cluster.kill(leader_before)?;
                let new_leader = self.wait_for_new_term(&self.others(&[leader_before]), term_before, injected).await;
                sleep_until(injected + hold).await;
                self.cluster.start_node(leader_before).await?;
                (vec![leader_before], new_leader, String::new())
            }
            FaultKind::KillFollower => {
                let follower = self.pick_follower(leader_before, fault.pick);
                self.cluster.kill(follower)?;
                let new_leader = self.watch_for_new_term(&self.others(&[follower]), term_before, injected, hold).await;
                self.cluster.start_node(follower).await?;
                (vec![follower], new_leader, String::new())
            }
            FaultKind::PauseLeader => {
                self.cluster.pause(leader_before)?;
                let new_leader = self.wait_for_new_term(&self.others(&[leader_before]), term_before, injected).await;
                sleep_until(injected + hold).await;
                self.cluster.resume(leader_before)?;
                (vec![leader_before], new_leader, String::new())
            }
            FaultKind::IsolateLeader => {
                for other in self.others(&[leader_before]) {
                    self.cluster.topology().cut(leader_before, other)?;
                }
                let new_leader = self.wait_for_new_term(&self.others(&[leader_before]), term_before, injected).await;
                sleep_until(injected + hold).await;
                self.cluster.topology().heal()?;
                (vec![leader_before], new_leader, String::new())
            }
            FaultKind::SplitTwoOne => {
                let follower = self.pick_follower(leader_before, fault.pick);
                for other in self.others(&[follower]) {
                    self.cluster.topology().cut(follower, other)?;
                }
                let new_leader = self.watch_for_new_term(&self.others(&[follower]), term_before, injected, hold).await;
                self.cluster.topology().heal()?;
                (vec![follower], new_leader, String::new())
            }
            FaultKind::BridgePartition => {
                let ids = self.cluster.ids();
                let bridge = ids[fault.pick % ids.len()];
                let ends = self.others(&[bridge]);
                self.cluster.topology().cut(ends[0], ends[1])?;
                let new_leader = self.watch_for_new_term(&ids, term_before, injected, hold).await;
                self.cluster.topology().heal()?;
                let detail = format!("node {bridge} bridged nodes {} and {}", ends[0], ends[1]);
                (ends, new_leader, detail)
            }
            FaultKind::LeaderClockSkew => self.clock_skew(fault, leader_before, injected).await?,
            FaultKind::PowerLoss => {
                let ids = self.cluster.ids();
                for id in &ids {
                    self.cluster.kill(*id)?;
                }
                sleep_until(injected + hold.min(Duration::from_secs(2))).await;
                for id in &ids {
                    self.cluster.start_node(*id).await?;
                }
                // A restarted leader whose vote was committed may lead again
                // in its old term without an election, so any agreed leader
                // counts here.
                let new_leader = self.wait_for_any_leader(injected).await;
                (ids, new_leader, String::new())
            }
            FaultKind::MembershipChurn => self.membership_churn(fault, leader_before, term_before, injected).await?,
        };

        let healed_us = self.recorder.now_us();
        let healed = Instant::now();
        let leader_after = self
            .cluster
            .wait_for_leader(self.settings.recovery_timeout)
            .await
            .context("the cluster did not agree on a leader after the fault was healed")?;
        let full_service = self.first_write(healed).await?;
        let caught_up = self.wait_until_caught_up(healed).await;
        let recovered_us = self.recorder.now_us();
        let record = FaultRecord {
            kind: fault.kind,
            targets,
            leader_before: Some(leader_before),
            leader_after: Some(leader_after),
            injected_us,
            healed_us,
            recovered_us,
            new_leader_ms: new_leader.map(|elapsed| elapsed.as_millis() as u64),
            full_service_ms: full_service.as_millis() as u64,
            caught_up_ms: caught_up.map(|elapsed| elapsed.as_millis() as u64),
            detail,
        };
        tracing::info!(
            kind = ?fault.kind,
            targets = ?record.targets,
            new_leader_ms = ?record.new_leader_ms,
            full_service_ms = record.full_service_ms,
            caught_up_ms = ?record.caught_up_ms,
            leader = leader_after,
            "fault healed and service restored"
        );
        tokio::time::sleep(self.settings.quiet).await;
        Ok(record)
    }

    fn others(&self, excluded: &[u8]) -> Vec<u8> {
        self.cluster.ids().into_iter().filter(|id| !excluded.contains(id)).collect()
    }

    fn pick_follower(&self, leader: u8, pick: usize) -> u8 {
        let followers = self.others(&[leader]);
        followers[pick % followers.len()]
    }

    /// Waits until a node of `ids` leads in a term above `term_before`, and
    /// returns the time since `since`; `None` when none does in time.
    async fn wait_for_new_term(&self, ids: &[u8], term_before: u64, since: Instant) -> Option<Duration> {
        let deadline = Instant::now() + self.settings.recovery_timeout;
        loop {
            if let Some(elapsed) = self.new_term_seen(ids, term_before, since).await {
                return Some(elapsed);
            }
            if Instant::now() >= deadline {
                tracing::error!(nodes = ?ids, term_before, "no new leader was elected before the recovery timeout");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the live members agree on a leader and returns the time
    /// since `since`; `None` when they do not in time.
    async fn wait_for_any_leader(&self, since: Instant) -> Option<Duration> {
        match self.cluster.wait_for_leader(self.settings.recovery_timeout).await {
            Ok(_) => Some(since.elapsed()),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "no leader was agreed before the recovery timeout");
                None
            }
        }
    }

    /// Polls until `since + hold` for a node of `ids` leading in a term above
    /// `term_before`, and returns the time since `since` of the first sight.
    async fn watch_for_new_term(&self, ids: &[u8], term_before: u64, since: Instant, hold: Duration) -> Option<Duration> {
        let mut first_seen = None;
        while since.elapsed() < hold {
            if first_seen.is_none() {
                first_seen = self.new_term_seen(ids, term_before, since).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first_seen
    }

    /// Returns the time since `since` when a node of `ids` now leads in a
    /// term above `term_before`.
    async fn new_term_seen(&self, ids: &[u8], term_before: u64, since: Instant) -> Option<Duration> {
        for id in ids {
            if !self.cluster.is_up(*id) {
                continue;
            }
            if let Ok(status) = self.cluster.status(*id, Duration::from_millis(300)).await {
                if status.role == "leader" && status.term > term_before {
                    return Some(since.elapsed());
                }
            }
        }
        None
    }

    /// Waits until every member has applied the leader's current commit
    /// index, and returns the time since `since`. A node back from a
    /// partition or a restart can lag the others for seconds after the
    /// cluster serves writes again, and its waiters see nothing meanwhile.
    async fn wait_until_caught_up(&self, since: Instant) -> Option<Duration> {
        let target = async {
            let leader = self.cluster.wait_for_leader(self.settings.recovery_timeout).await?;
            let status = self.cluster.status(leader, Duration::from_secs(2)).await?;
            anyhow::Ok(status.committed_index.unwrap_or(0))
        };
        let target = match target.await {
            Ok(target) => target,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "failed to read the leader's commit index");
                return None;
            }
        };
        let members = self.cluster.live_members();
        let cluster = &*self.cluster;
        let condition = format!("nodes {members:?} to apply index {target}");
        let waited = wait_until(&condition, self.settings.recovery_timeout, || {
            let members = members.clone();
            async move {
                for id in members {
                    let applied = cluster
                        .status(id, Duration::from_millis(500))
                        .await
                        .map_err(|error| format!("node {id}: {error:#}"))?
                        .applied_index
                        .unwrap_or(0);
                    if applied < target {
                        return Err(format!("node {id} applied {applied}"));
                    }
                }
                Ok(())
            }
        })
        .await;
        match waited {
            Ok(()) => Some(since.elapsed()),
            Err(error) => {
                tracing::error!(%error, "a member did not catch up after the heal");
                None
            }
        }
    }

    /// Writes on the probe pool until a write succeeds, and returns the
    /// time since `since`.
    async fn first_write(&self, since: Instant) -> Result<Duration> {
        let deadline = Instant::now() + self.settings.recovery_timeout;
        loop {
            let request = WakeDispatchersRequest {
                options: None,
                work_pool_id: self.pool.clone(),
            };
            match self.client.wake_dispatchers(request).await {
                Ok(_) => return Ok(since.elapsed()),
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "probe write failed; retrying");
                }
                Err(error) => bail!("no write succeeded within {:?} after the heal: {error}", self.settings.recovery_timeout),
            }
        }
    }

    async fn clock_skew(
        &mut self,
        fault: &PlannedFault,
        leader: u8,
        injected: Instant,
    ) -> Result<(Vec<u8>, Option<Duration>, String)> {
        self.cluster.set_clock_skew(leader, fault.skew_ms)?;
        self.cluster.restart(leader).await?;
        let new_leader = self.wait_for_any_leader(injected).await;

        // The admin API has no leadership transfer, so the skewed node is made
        // leader by pausing the current leader instead, at most three times.
        let mut skewed_led = false;
        for _ in 0..3 {
            let current = self.cluster.wait_for_leader(self.settings.recovery_timeout).await?;
            if current == leader {
                skewed_led = true;
                break;
            }
            let term = self.cluster.status(current, Duration::from_secs(2)).await?.term;
            self.cluster.pause(current)?;
            self.wait_for_new_term(&self.others(&[current]), term, Instant::now()).await;
            self.cluster.resume(current)?;
        }
        if !skewed_led {
            skewed_led = self.cluster.wait_for_leader(self.settings.recovery_timeout).await? == leader;
        }
        sleep_until(injected + Duration::from_millis(fault.hold_ms)).await;
        let writes = self.first_write(Instant::now()).await;
        self.cluster.set_clock_skew(leader, 0)?;
        self.cluster.restart(leader).await?;
        let detail = format!(
            "node {leader} ran {} ms skewed; it {} while skewed; a write {} under the skew",
            fault.skew_ms,
            if skewed_led { "led" } else { "never led" },
            if writes.is_ok() { "succeeded" } else { "failed" }
        );
        Ok((vec![leader], new_leader, detail))
    }

    async fn membership_churn(
        &mut self,
        fault: &PlannedFault,
        leader: u8,
        term_before: u64,
        injected: Instant,
    ) -> Result<(Vec<u8>, Option<Duration>, String)> {
        let node = self.pick_follower(leader, fault.pick);
        let last_index = self.cluster.status(node, Duration::from_secs(2)).await?.last_log_index.unwrap_or(0);
        self.cluster.remove_member(node).await?;
        self.cluster.kill(node)?;
        if fault.wipe {
            self.cluster.wipe(node)?;
        }

        // The node's next entry must be purged from the leader's log, so
        // that only a snapshot can bring it up to date.
        let needed = if fault.wipe { 0 } else { last_index } + LOG_KEPT_BEHIND_SNAPSHOT + 2 * self.settings.snapshot_every_entries;
        let purged_past = self.fill_log_until_snapshot(needed).await?;
        sleep_until(injected + Duration::from_millis(fault.hold_ms)).await;

        self.cluster.start_node(node).await?;
        let joining = Instant::now();
        self.cluster.join_member(node).await?;
        let joined_ms = joining.elapsed().as_millis();

        // `raftq join` makes the node a voter once openraft deems it caught
        // up, which allows a lag of several thousand entries, so wait for the
        // node to apply what the leader had snapshotted.
        let catch_up = Instant::now();
        let cluster = &*self.cluster;
        let condition = format!("node {node} to apply index {purged_past}");
        let applied = wait_until(&condition, self.settings.recovery_timeout, || async move {
            match cluster.status(node, Duration::from_millis(500)).await {
                Ok(status) if status.applied_index.unwrap_or(0) >= purged_past => Ok(status),
                Ok(status) => Err(format!("applied index {:?}", status.applied_index)),
                Err(error) => Err(format!("{error:#}")),
            }
        })
        .await?;
        let snapshot = applied.snapshot_index.unwrap_or(0);
        let new_leader = self.new_term_seen(&self.cluster.ids(), term_before, injected).await;
        let from_snapshot = snapshot + LOG_KEPT_BEHIND_SNAPSHOT >= needed;
        if !from_snapshot {
            tracing::warn!(node_id = node, snapshot, needed, "the rejoined node caught up without a snapshot past the purge");
        }
        let detail = format!(
            "node {node} removed at log index {last_index}, data {}; leader snapshot reached {purged_past}; join took {joined_ms} ms, then {} ms to apply it; snapshot index {snapshot} ({})",
            if fault.wipe { "wiped" } else { "kept" },
            catch_up.elapsed().as_millis(),
            if from_snapshot { "caught up from a snapshot" } else { "no snapshot past the purge" }
        );
        Ok((vec![node], new_leader, detail))
    }

    /// Writes on the probe pool from several tasks until the leader's
    /// snapshot index reaches `needed`, and returns that index.
    async fn fill_log_until_snapshot(&self, needed: u64) -> Result<u64> {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..FILLER_WRITERS)
            .map(|_| {
                let client = self.client.clone();
                let pool = self.pool.clone();
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let request = WakeDispatchersRequest {
                            options: None,
                            work_pool_id: pool.clone(),
                        };
                        if let Err(error) = client.wake_dispatchers(request).await {
                            tracing::debug!(%error, "filler write failed");
                        }
                    }
                })
            })
            .collect();

        let deadline = Instant::now() + self.settings.recovery_timeout * 4;
        let result = loop {
            let leader = self.cluster.wait_for_leader(self.settings.recovery_timeout).await?;
            let snapshot = self.cluster.status(leader, Duration::from_secs(2)).await?.snapshot_index.unwrap_or(0);
            if snapshot >= needed {
                break Ok(snapshot);
            }
            if Instant::now() >= deadline {
                break Err(anyhow::anyhow!("the leader's snapshot index stayed at {snapshot}, below {needed}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            let _ = writer.await;
        }
        result
    }
}

async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
}
