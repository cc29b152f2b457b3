//! `[outcomes]`: the publisher of the outcome stream.

use std::time::Duration;

use serde::Deserialize;

use super::duration::millis;
use super::error::{invalid, SettingsError};

/// The publisher of the outcome stream (`<stream>_OUTCOMES`). The projector always
/// writes outcomes to the `outbox` table in its own transactions; this publishes them.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomeSettings {
    /// Publish the outbox from this process (one publisher per schema is active at a
    /// time; others stand by).
    pub publish: bool,
    /// How often the outbox is checked besides each local commit (a projector in
    /// another process commits too); `poll_ms`, in milliseconds.
    #[serde(rename = "poll_ms", deserialize_with = "millis")]
    pub poll: Duration,
    /// Most outcomes read from the outbox at a time.
    pub batch_size: usize,
}

impl Default for OutcomeSettings {
    fn default() -> Self {
        Self {
            publish: true,
            poll: Duration::from_secs(1),
            batch_size: 256,
        }
    }
}

impl OutcomeSettings {
    /// Checks the values the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.poll.is_zero() {
            return Err(invalid("outcomes.poll_ms", "must be positive"));
        }
        if self.batch_size == 0 {
            return Err(invalid("outcomes.batch_size", "must be positive"));
        }
        Ok(())
    }
}
