//! The non-deterministic values a leader fixes in a command before proposing
//! it: the time of the operation and the reservation token.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use raftq_state_machine::Timestamp;

/// Random bytes in a reservation token. 32 bytes encode to 43 characters of
/// URL-safe base64 without padding, and cannot be guessed.
pub const RESERVATION_TOKEN_BYTES: usize = 32;

/// Draws a fresh reservation token from the operating system's random source.
pub fn reservation_token() -> String {
    let mut bytes = [0u8; RESERVATION_TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// The leader's clock for commands.
///
/// Time stamped by one stamper never goes backwards: each stamp is at least
/// the previous one and at least the latest time already applied, so a new
/// leader whose clock is behind the old leader's continues from the log's time.
pub struct Stamper {
    clock_us: Clock,
    clock_skew_us: i64,
    last_stamped: Mutex<Timestamp>,
}

impl Stamper {
    /// Creates a stamper on the system's wall clock, shifted by `clock_skew_ms` (a
    /// test option that simulates a node whose clock is off).
    pub fn system(clock_skew_ms: i64) -> Self {
        Self::with_clock(clock_skew_ms, Box::new(system_clock_us))
    }

    fn with_clock(clock_skew_ms: i64, clock_us: Clock) -> Self {
        Stamper {
            clock_us,
            clock_skew_us: clock_skew_ms.saturating_mul(1_000),
            last_stamped: Mutex::new(Timestamp::EPOCH),
        }
    }

    /// Reads the clock without stamping, for decisions that propose nothing
    /// by themselves (the lease sweeper's check for a due lease).
    pub fn peek(&self, applied_latest: Timestamp) -> Timestamp {
        let last = *self.last_stamped.lock().unwrap_or_else(|poison| poison.into_inner());
        self.wall_clock().max(last).max(applied_latest)
    }

    /// Returns the time of a new command: the wall clock, but never earlier
    /// than the last stamp or the latest applied time.
    pub fn stamp(&self, applied_latest: Timestamp) -> Timestamp {
        let mut last = self.last_stamped.lock().unwrap_or_else(|poison| poison.into_inner());
        let now = self.wall_clock().max(*last).max(applied_latest);
        *last = now;
        now
    }

    /// Records a caller's clock used as a command's time, so that later
    /// server stamps do not fall behind it.
    pub fn observe_caller_time(&self, caller_now: Timestamp) {
        let mut last = self.last_stamped.lock().unwrap_or_else(|poison| poison.into_inner());
        *last = (*last).max(caller_now);
    }

    fn wall_clock(&self) -> Timestamp {
        Timestamp::from_micros((self.clock_us)().saturating_add(self.clock_skew_us))
    }
}

fn system_clock_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since_epoch) => i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX),
        // A clock before 1970 is broken. The monotonic floor of the stamper
        // keeps the log's time from going backwards anyway.
        Err(before_epoch) => -i64::try_from(before_epoch.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    fn manual_clock(start_us: i64) -> (Arc<AtomicI64>, Stamper) {
        let time = Arc::new(AtomicI64::new(start_us));
        let reader = Arc::clone(&time);
        let stamper = Stamper::with_clock(0, Box::new(move || reader.load(Ordering::SeqCst)));
        (time, stamper)
    }

    #[test]
    fn token_is_43_url_safe_characters() {
        let token = reservation_token();
        assert_eq!(token.len(), 43);
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
    }

    #[test]
    fn tokens_differ_between_draws() {
        assert_ne!(reservation_token(), reservation_token());
    }

    #[test]
    fn stamp_follows_the_clock_forward() {
        let (time, stamper) = manual_clock(1_000);
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(1_000));
        time.store(2_500, Ordering::SeqCst);
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(2_500));
    }

    #[test]
    fn stamp_never_goes_back_when_clock_does() {
        let (time, stamper) = manual_clock(5_000);
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(5_000));
        time.store(4_000, Ordering::SeqCst);
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(5_000));
    }

    #[test]
    fn stamp_is_at_least_latest_applied_time() {
        let (_time, stamper) = manual_clock(1_000);
        let applied = Timestamp::from_micros(9_000);
        assert_eq!(stamper.stamp(applied), applied);
        assert_eq!(stamper.peek(Timestamp::EPOCH), applied);
    }

    #[test]
    fn caller_time_raises_the_floor() {
        let (_time, stamper) = manual_clock(1_000);
        stamper.observe_caller_time(Timestamp::from_micros(7_000));
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(7_000));
        stamper.observe_caller_time(Timestamp::from_micros(10));
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(7_000));
    }

    #[test]
    fn skew_shifts_the_clock() {
        let stamper = Stamper::with_clock(-2, Box::new(|| 10_000));
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(8_000));
    }

    #[test]
    fn peek_does_not_raise_the_floor() {
        let (time, stamper) = manual_clock(5_000);
        assert_eq!(stamper.peek(Timestamp::EPOCH), Timestamp::from_micros(5_000));
        time.store(4_000, Ordering::SeqCst);
        assert_eq!(stamper.stamp(Timestamp::EPOCH), Timestamp::from_micros(4_000));
    }
}
