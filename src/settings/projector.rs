//! `[projector]`: the projector that folds the stream into Postgres.

use std::time::Duration;

use serde::Deserialize;

use super::duration::millis;
use super::error::{invalid, SettingsError};

/// The projector.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorSettings {
    /// Run the projector in this process (another instance may hold the lock).
    pub enabled: bool,
    /// Most events applied in one Postgres transaction.
    pub batch_size: usize,
    /// How long a batch may wait for more events after its first (a deadline, not a
    /// wait per event); `batch_linger_ms`, in milliseconds. At 0 a batch is only what was
    /// already delivered when the last one committed, which measured as batches of one or
    /// two events under load (2 ms, the default, let them grow with the load).
    #[serde(rename = "batch_linger_ms", deserialize_with = "millis")]
    pub batch_linger: Duration,
    /// How long a handler waits for the projector to apply its event;
    /// `read_your_writes_timeout_ms`, in milliseconds.
    #[serde(rename = "read_your_writes_timeout_ms", deserialize_with = "millis")]
    pub read_your_writes_timeout: Duration,
    /// The API role is ready (`/readyz`, `/readyz/api`) only while the projection is at
    /// most this many events behind the stream's end.
    pub ready_max_lag_events: u64,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 500,
            batch_linger: Duration::from_millis(2),
            read_your_writes_timeout: Duration::from_secs(5),
            ready_max_lag_events: 1000,
        }
    }
}

impl ProjectorSettings {
    /// Checks the values the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.batch_size == 0 {
            return Err(invalid("projector.batch_size", "must be positive"));
        }
        Ok(())
    }
}
