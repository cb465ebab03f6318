//! Fan-out of each work pool's applied wakeup sequence to local waiters.
//!
//! The hub keeps one `tokio::sync::watch` channel per pool that has a
//! subscriber. Two rules make a wakeup impossible to miss:
//!
//! - [`WakeupHub::subscribe`] creates a channel under the hub lock and
//!   initialises it from the applied state, read under that same lock.
//! - The state machine publishes a sequence only after the state holds it, and
//!   publishing takes the hub lock.
//!
//! So a sequence applied before a subscription is in the state that the
//! subscription reads, and one applied after it is published to its channel.
//! A channel's value only ever grows: a stale or repeated publish is ignored.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;
use uuid::Uuid;

/// The per-pool wakeup channels of one node.
#[derive(Default)]
pub struct WakeupHub {
    channels: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
}

impl WakeupHub {
    /// Returns a receiver of the pool's applied wakeup sequence.
    ///
    /// `current_sequence` reads the pool's sequence from the applied state. It
    /// runs under the hub lock, so it must not publish to this hub.
    pub fn subscribe(
        &self,
        work_pool_id: Uuid,
        current_sequence: impl FnOnce() -> u64,
    ) -> watch::Receiver<u64> {
        let mut channels = lock(&self.channels);
        let sequence = current_sequence();
        match channels.get(&work_pool_id) {
            Some(sender) => {
                raise_to(sender, sequence);
                sender.subscribe()
            }
            None => {
                let (sender, receiver) = watch::channel(sequence);
                channels.insert(work_pool_id, sender);
                receiver
            }
        }
    }

    /// Raises the pool's channel to `sequence`, if anyone subscribed to it.
    ///
    /// A pool without a subscriber gets no channel: a later subscriber reads
    /// the sequence from the state, which already contains it.
    pub fn publish(&self, work_pool_id: Uuid, sequence: u64) {
        let mut channels = lock(&self.channels);
        let Some(sender) = channels.get(&work_pool_id) else {
            return;
        };
        if sender.receiver_count() == 0 {
            // Dropping a channel without receivers keeps the map as small as
            // the set of pools with waiters.
            channels.remove(&work_pool_id);
            return;
        }
        raise_to(sender, sequence);
    }

    /// Publishes every `(pool, sequence)` pair, as after a snapshot restore.
    pub fn publish_all(&self, sequences: impl IntoIterator<Item = (Uuid, u64)>) {
        for (work_pool_id, sequence) in sequences {
            self.publish(work_pool_id, sequence);
        }
    }
}

fn raise_to(sender: &watch::Sender<u64>, sequence: u64) {
    sender.send_if_modified(|current| {
        if sequence > *current {
            *current = sequence;
            true
        } else {
            false
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every update is a
    // single insert, remove or channel send.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_starts_at_current_sequence() {
        let hub = WakeupHub::default();
        let pool = Uuid::new_v4();

        let receiver = hub.subscribe(pool, || 4);

        assert_eq!(*receiver.borrow(), 4);
    }

    #[test]
    fn subscriber_sees_later_publish() {
        let hub = WakeupHub::default();
        let pool = Uuid::new_v4();
        let mut receiver = hub.subscribe(pool, || 1);

        hub.publish(pool, 2);

        assert!(receiver.has_changed().unwrap());
        assert_eq!(*receiver.borrow_and_update(), 2);
    }

    #[test]
    fn publish_never_lowers_sequence() {
        let hub = WakeupHub::default();
        let pool = Uuid::new_v4();
        let mut receiver = hub.subscribe(pool, || 5);

        hub.publish(pool, 3);
        hub.publish(pool, 5);

        assert!(!receiver.has_changed().unwrap());
        assert_eq!(*receiver.borrow_and_update(), 5);
    }

    #[test]
    fn second_subscriber_shares_channel() {
        let hub = WakeupHub::default();
        let pool = Uuid::new_v4();
        let first = hub.subscribe(pool, || 1);

        hub.publish(pool, 3);
        let second = hub.subscribe(pool, || 3);

        assert_eq!(*first.borrow(), 3);
        assert_eq!(*second.borrow(), 3);
    }

    #[test]
    fn publish_to_other_pool_leaves_subscriber_alone() {
        let hub = WakeupHub::default();
        let pool = Uuid::new_v4();
        let receiver = hub.subscribe(pool, || 0);

        hub.publish(Uuid::new_v4(), 9);

        assert!(!receiver.has_changed().unwrap());
    }

    #[test]
    fn channel_without_receivers_is_dropped() {
        let hub = WakeupHub::default();
        let pool = Uuid::new_v4();
        drop(hub.subscribe(pool, || 0));

        hub.publish(pool, 1);

        assert!(lock(&hub.channels).is_empty());
        assert_eq!(*hub.subscribe(pool, || 1).borrow(), 1);
    }
}
