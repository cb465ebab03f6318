//! Waiting on a condition with a deadline, in place of fixed sleeps.

use std::future::Future;
use std::time::{Duration, Instant};

/// Interval between two checks of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A condition that did not hold before its deadline.
#[derive(Debug)]
pub struct WaitTimedOut {
    pub condition: String,
    pub timeout: Duration,
    /// What the last check saw, for the failure message.
    pub last_observation: String,
}

impl std::fmt::Display for WaitTimedOut {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "timed out after {:?} waiting for {}; last check: {}",
            self.timeout, self.condition, self.last_observation
        )
    }
}

impl std::error::Error for WaitTimedOut {}

/// Polls `check` until it returns `Ok(value)` or `timeout` passes. `check`
/// returns `Err(observation)` while the condition does not hold; the last
/// observation goes into the error.
pub async fn wait_until<T, F, Fut>(
    condition: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, WaitTimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last_observation = match check().await {
            Ok(value) => return Ok(value),
            Err(observation) => observation,
        };
        if Instant::now() >= deadline {
            return Err(WaitTimedOut {
                condition: condition.to_string(),
                timeout,
                last_observation,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
