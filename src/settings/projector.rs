//! `[projector]`: the projector that folds the stream into Postgres.

use serde::Deserialize;

use super::error::{invalid, SettingsError};

/// The projector.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorSettings {
    /// Run the projector in this process (another instance may hold the lock).
    pub enabled: bool,
    /// Most events applied in one Postgres transaction.
    pub batch_size: usize,
    /// A batch is applied once no event arrived for this long, in milliseconds.
    pub batch_linger_ms: u64,
    /// How long a handler waits for the projector to apply its event, in milliseconds.
    pub read_your_writes_timeout_ms: u64,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 500,
            batch_linger_ms: 5,
            read_your_writes_timeout_ms: 5_000,
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
