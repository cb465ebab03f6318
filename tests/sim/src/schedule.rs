//! The fault schedule: which fault happens when, drawn from the seed.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::NODE_IDS;
use crate::network::LinkFaults;

/// One change to the cluster or the network.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Every node can reach every other node again.
    Heal,
    /// Nodes talk only within their group. A group of one isolates a node,
    /// and three groups cut every link.
    Partition(Vec<BTreeSet<u64>>),
    /// New drop, duplicate and delay settings for every link.
    Links(LinkFaults),
    /// Stops the node and reads back its durable log.
    Crash(u64),
    /// Stops whichever node leads when the step runs, if any.
    CrashLeader,
    /// Starts every stopped node on its data directory.
    RestartAll,
    /// Moves the simulated clock forward by this many milliseconds, so that
    /// leases run out.
    ClockJump { millis: i64 },
}

/// A fault and the wait before it, in real milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub wait_ms: u64,
    pub fault: Fault,
}

/// Draws steps until their waits add up to `duration_ms`.
pub fn generate(schedule_seed: u64, duration_ms: u64) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(schedule_seed);
    let mut steps = Vec::new();
    let mut elapsed_ms = 0;
    while elapsed_ms < duration_ms {
        let wait_ms = rng.gen_range(150..=600);
        elapsed_ms += wait_ms;
        let fault = draw_fault(&mut rng);
        steps.push(Step { wait_ms, fault });
    }
    steps
}

fn draw_fault(rng: &mut StdRng) -> Fault {
    match rng.gen_range(0..100) {
        0..=24 => Fault::Links(draw_link_faults(rng)),
        25..=44 => Fault::Partition(draw_partition(rng)),
        45..=59 => Fault::Heal,
        60..=69 => Fault::Crash(NODE_IDS[rng.gen_range(0..NODE_IDS.len())]),
        70..=79 => Fault::CrashLeader,
        80..=91 => Fault::RestartAll,
        _ => Fault::ClockJump {
            millis: rng.gen_range(1_000..=5_000),
        },
    }
}

fn draw_link_faults(rng: &mut StdRng) -> LinkFaults {
    LinkFaults {
        drop_request: rng.gen_range(0.0..0.15),
        drop_response: rng.gen_range(0.0..0.10),
        duplicate: rng.gen_range(0.0..0.15),
        max_delay_ms: rng.gen_range(0..=40),
    }
}

/// Puts each node in one of three groups at random, so every split of three
/// nodes can come up, including none.
fn draw_partition(rng: &mut StdRng) -> Vec<BTreeSet<u64>> {
    let mut groups = vec![BTreeSet::new(); 3];
    for node_id in NODE_IDS {
        groups[rng.gen_range(0..3)].insert(node_id);
    }
    groups.retain(|group| !group.is_empty());
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        assert_eq!(generate(7, 5_000), generate(7, 5_000));
    }

    #[test]
    fn schedule_covers_duration() {
        let steps = generate(11, 5_000);
        let total: u64 = steps.iter().map(|step| step.wait_ms).sum();
        assert!(total >= 5_000, "steps end after {total} ms");
        assert!(
            total < 5_000 + 600,
            "steps run {total} ms, past the last wait"
        );
    }

    #[test]
    fn partition_places_every_node_once() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let groups = draw_partition(&mut rng);
            let placed: Vec<u64> = groups.iter().flatten().copied().collect();
            let unique: BTreeSet<u64> = placed.iter().copied().collect();
            assert_eq!(placed.len(), NODE_IDS.len());
            assert_eq!(unique, NODE_IDS.into_iter().collect());
        }
    }
}
