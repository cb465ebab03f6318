//! Time as the replicated log records it.
//!
//! The state machine never reads a clock. Every command carries the `now` that
//! the leader stamped, and every deadline in the state is compared against it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A UTC instant, in microseconds since the Unix epoch.
///
/// Microseconds match the precision of the contract's timestamps, so a lease
/// of 30 s stamped at `now` expires at exactly `now + 30_000_000`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Adds a duration in microseconds, saturating at the ends of `i64`
    /// rather than wrapping, so that a huge lease can never expire in the past.
    pub const fn saturating_add_micros(self, duration_us: i64) -> Self {
        Timestamp(self.0.saturating_add(duration_us))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}us", self.0)
    }
}
