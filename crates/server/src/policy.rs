//! The policy in force for one command: the server's defaults merged with the
//! overrides a trusted caller sends, bounded by the server's limits.

use raftq_proto::v1::{completed_retention::Retention, PolicyOverrides};
use raftq_state_machine::{CommandError, Policy};

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// Upper bound of `--max-delivery-attempts` and of a caller's override.
pub const MAX_DELIVERY_ATTEMPTS_LIMIT: u32 = 1_000;

/// The server's policy: defaults for every command and the bounds on what a
/// caller may override.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    pub defaults: Policy,
    /// The maximum lease a caller may request, in microseconds.
    pub max_lease_us: i64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            defaults: Policy::default(),
            max_lease_us: 3_600 * 1_000_000,
        }
    }
}

/// Converts seconds to whole microseconds, rejecting values that are not
/// finite or do not fit an `i64`.
pub fn seconds_to_micros(field: &str, seconds: f64) -> Result<i64, CommandError> {
    if !seconds.is_finite() {
        return Err(invalid(field, "must be a finite number of seconds"));
    }
    let micros = (seconds * MICROS_PER_SECOND).round();
    // i64::MAX as f64 rounds up to 2^63, so the comparison must be strict.
    if micros >= i64::MAX as f64 || micros <= i64::MIN as f64 {
        return Err(invalid(field, "is too large"));
    }
    Ok(micros as i64)
}

fn invalid(field: &str, rule: impl Into<String>) -> CommandError {
    CommandError::InvalidInput {
        field: field.to_string(),
        rule: rule.into(),
    }
}

impl PolicyConfig {
    /// Checks the server's own defaults against its limits, at start.
    pub fn validate(&self) -> Result<(), String> {
        let defaults = &self.defaults;
        if defaults.lease_us <= 0 {
            return Err("the default lease must be greater than 0 seconds".into());
        }
        if self.max_lease_us < defaults.lease_us {
            return Err(format!(
                "the default lease ({} us) is longer than the maximum lease ({} us)",
                defaults.lease_us, self.max_lease_us
            ));
        }
        if !(1..=MAX_DELIVERY_ATTEMPTS_LIMIT).contains(&defaults.max_delivery_attempts) {
            return Err(format!(
                "max delivery attempts must be 1 to {MAX_DELIVERY_ATTEMPTS_LIMIT}, got {}",
                defaults.max_delivery_attempts
            ));
        }
        raftq_state_machine::validation::validate_policy(defaults).map_err(|error| error.to_string())
    }

    /// Merges a caller's overrides into the defaults.
    ///
    /// An override outside the server's bounds is rejected, not clamped, so
    /// the caller learns that its setting was not applied.
    pub fn merge(&self, overrides: Option<&PolicyOverrides>) -> Result<Policy, CommandError> {
        let mut policy = self.defaults;
        let Some(overrides) = overrides else {
            return Ok(policy);
        };

        if let Some(lease_seconds) = overrides.lease_seconds {
            let field = "options.policy.lease_seconds";
            let lease_us = seconds_to_micros(field, lease_seconds)?;
            if lease_us <= 0 {
                return Err(invalid(field, "must be at least 1 microsecond"));
            }
            if lease_us > self.max_lease_us {
                return Err(invalid(
                    field,
                    format!(
                        "must be at most {} seconds, the server's maximum lease",
                        self.max_lease_us as f64 / MICROS_PER_SECOND
                    ),
                ));
            }
            policy.lease_us = lease_us;
        }

        if let Some(attempts) = overrides.max_delivery_attempts {
            if !(1..=MAX_DELIVERY_ATTEMPTS_LIMIT).contains(&attempts) {
                return Err(invalid(
                    "options.policy.max_delivery_attempts",
                    format!("must be 1 to {MAX_DELIVERY_ATTEMPTS_LIMIT}"),
                ));
            }
            policy.max_delivery_attempts = attempts;
        }

        let retention = overrides
            .completed_idempotency_retention
            .as_ref()
            .and_then(|retention| retention.retention.as_ref());
        match retention {
            None => {}
            Some(Retention::Keep(false)) => {
                return Err(invalid(
                    "options.policy.completed_idempotency_retention.keep",
                    "must be true when set; leave the retention unset for the server default",
                ));
            }
            Some(Retention::Keep(true)) => policy.completed_retention_us = None,
            Some(Retention::Seconds(seconds)) => {
                let field = "options.policy.completed_idempotency_retention.seconds";
                let retention_us = seconds_to_micros(field, *seconds)?;
                if retention_us < 0 {
                    return Err(invalid(field, "must be 0 or greater"));
                }
                policy.completed_retention_us = Some(retention_us);
            }
        }

        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftq_proto::v1::CompletedRetention;

    fn field_of(error: CommandError) -> String {
        match error {
            CommandError::InvalidInput { field, .. } => field,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    fn overrides(lease_seconds: Option<f64>, attempts: Option<u32>, retention: Option<Retention>) -> PolicyOverrides {
        PolicyOverrides {
            lease_seconds,
            max_delivery_attempts: attempts,
            completed_idempotency_retention: retention.map(|retention| CompletedRetention {
                retention: Some(retention),
            }),
        }
    }

    #[test]
    fn merge_without_overrides_returns_defaults() {
        let config = PolicyConfig::default();
        assert_eq!(config.merge(None).unwrap(), config.defaults);
        assert_eq!(config.merge(Some(&PolicyOverrides::default())).unwrap(), config.defaults);
    }

    #[test]
    fn merge_applies_each_override() {
        let config = PolicyConfig::default();
        let policy = config
            .merge(Some(&overrides(Some(0.25), Some(7), Some(Retention::Keep(true)))))
            .unwrap();
        assert_eq!(policy.lease_us, 250_000);
        assert_eq!(policy.max_delivery_attempts, 7);
        assert_eq!(policy.completed_retention_us, None);
        assert_eq!(policy.max_message_bytes, config.defaults.max_message_bytes);

        let policy = config
            .merge(Some(&overrides(None, None, Some(Retention::Seconds(1.5)))))
            .unwrap();
        assert_eq!(policy.completed_retention_us, Some(1_500_000));
    }

    #[test]
    fn merge_rejects_lease_outside_bounds() {
        let config = PolicyConfig::default();
        for lease_seconds in [0.0, -1.0, 0.000_000_1, f64::NAN, f64::INFINITY, 3_600.5] {
            let error = config
                .merge(Some(&overrides(Some(lease_seconds), None, None)))
                .unwrap_err();
            assert_eq!(field_of(error), "options.policy.lease_seconds", "lease {lease_seconds}");
        }
        let at_limit = config.merge(Some(&overrides(Some(3_600.0), None, None))).unwrap();
        assert_eq!(at_limit.lease_us, 3_600_000_000);
    }

    #[test]
    fn merge_rejects_attempts_outside_bounds() {
        let config = PolicyConfig::default();
        for attempts in [0, 1_001, u32::MAX] {
            let error = config.merge(Some(&overrides(None, Some(attempts), None))).unwrap_err();
            assert_eq!(field_of(error), "options.policy.max_delivery_attempts");
        }
        let at_limit = config.merge(Some(&overrides(None, Some(1_000), None))).unwrap();
        assert_eq!(at_limit.max_delivery_attempts, 1_000);
    }

    #[test]
    fn merge_rejects_bad_retention() {
        let config = PolicyConfig::default();
        for retention in [Retention::Seconds(-1.0), Retention::Seconds(f64::NAN), Retention::Seconds(1e300)] {
            let error = config.merge(Some(&overrides(None, None, Some(retention)))).unwrap_err();
            assert_eq!(field_of(error), "options.policy.completed_idempotency_retention.seconds");
        }
        let error = config
            .merge(Some(&overrides(None, None, Some(Retention::Keep(false)))))
            .unwrap_err();
        assert_eq!(field_of(error), "options.policy.completed_idempotency_retention.keep");
    }

    #[test]
    fn validate_rejects_default_lease_over_limit() {
        let mut config = PolicyConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.max_lease_us = config.defaults.lease_us - 1;
        assert!(config.validate().is_err());
    }
}
