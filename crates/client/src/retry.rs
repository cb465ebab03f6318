//! Retry rules: which failed attempts the client repeats, and for how long.

use std::error::Error as _;
use std::time::Duration;

use backon::ExponentialBuilder;
use tonic::{Code, Status};

/// Repeat safety of a call after an attempt whose outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallSafety {
    /// A read: repeating it changes nothing.
    Read,
    /// A write carrying a request id: the server returns the first outcome
    /// to a repeat instead of applying it twice.
    WriteWithRequestId,
    /// A write without a request id: repeated only when the server reported
    /// that it did not run it (UNAVAILABLE).
    WriteWithoutRequestId,
}

/// Timing of the retries of one logical call.
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Time from the first attempt after which no new attempt starts.
    pub total_timeout: Duration,
    /// Upper bound on one attempt, including the connection.
    pub attempt_timeout: Duration,
    /// Delay before the first retry; later delays double, with jitter.
    pub min_delay: Duration,
    /// Upper bound on the delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    /// Defaults sized for leader elections of a few seconds: a call keeps
    /// trying for 15 s, each attempt waits up to 5 s.
    fn default() -> Self {
        RetryConfig {
            total_timeout: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(5),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryConfig {
    /// Builds the backoff between attempts. It has no attempt limit because the
    /// caller stops at `total_timeout`.
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }
}

/// True when `status` was produced by this process's transport (connection
/// refused, reset, stream broken) rather than sent by a server. Statuses
/// decoded from a server's trailers carry no source error.
pub fn is_local_transport_failure(status: &Status) -> bool {
    status.source().is_some()
}

/// Decides whether an attempt that failed with `code` may be repeated.
pub fn is_retryable(code: Code, local_transport_failure: bool, safety: CallSafety) -> bool {
    let repeat_is_safe = matches!(safety, CallSafety::Read | CallSafety::WriteWithRequestId);
    match code {
        // The server did not run the call, or a follower could not reach the
        // leader; either way it is safe to try again.
        Code::Unavailable => true,
        Code::DeadlineExceeded => repeat_is_safe,
        // A connection that broke mid-call may or may not have delivered it.
        Code::Unknown | Code::Cancelled | Code::Internal | Code::Aborted => {
            local_transport_failure && repeat_is_safe
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_retried_for_every_call() {
        assert!(is_retryable(Code::Unavailable, false, CallSafety::Read));
        assert!(is_retryable(Code::Unavailable, false, CallSafety::WriteWithRequestId));
        assert!(is_retryable(Code::Unavailable, false, CallSafety::WriteWithoutRequestId));
    }

    #[test]
    fn deadline_retried_only_when_repeat_is_safe() {
        assert!(is_retryable(Code::DeadlineExceeded, false, CallSafety::Read));
        assert!(is_retryable(Code::DeadlineExceeded, false, CallSafety::WriteWithRequestId));
        assert!(!is_retryable(Code::DeadlineExceeded, false, CallSafety::WriteWithoutRequestId));
    }

    #[test]
    fn broken_connection_retried_when_repeat_is_safe() {
        assert!(is_retryable(Code::Unknown, true, CallSafety::WriteWithRequestId));
        assert!(is_retryable(Code::Cancelled, true, CallSafety::Read));
        assert!(!is_retryable(Code::Unknown, true, CallSafety::WriteWithoutRequestId));
    }

    #[test]
    fn server_sent_unknown_is_not_retried() {
        assert!(!is_retryable(Code::Unknown, false, CallSafety::WriteWithRequestId));
        assert!(!is_retryable(Code::Internal, false, CallSafety::Read));
    }

    #[test]
    fn input_errors_are_not_retried() {
        for code in [
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::NotFound,
            Code::Unimplemented,
        ] {
            assert!(!is_retryable(code, false, CallSafety::Read), "{code:?}");
            assert!(!is_retryable(code, true, CallSafety::WriteWithRequestId), "{code:?}");
        }
    }

    #[test]
    fn server_status_has_no_local_source() {
        let status = Status::unavailable("no leader");
        assert!(!is_local_transport_failure(&status));
    }

    #[test]
    fn transport_status_has_local_source() {
        let io_error = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let status = Status::from_error(Box::new(io_error));
        assert!(is_local_transport_failure(&status));
    }
}
