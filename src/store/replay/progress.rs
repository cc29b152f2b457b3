//! How far a replay got, reported as it goes and at its end.

use std::time::Duration;

/// How far a replay got.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Events read from the stream so far.
    pub read: u64,
    /// Events folded into the target so far (those inside the as-of point).
    pub applied: u64,
    /// The stream sequence reached.
    pub seq: u64,
    /// The last sequence the replay will read.
    pub end: u64,
    /// The sequence of the last event folded (0 before any): where the replayed books
    /// stand. Below `seq` when replaying as of a time, since every event is still read.
    pub checkpoint: u64,
    /// Since the start.
    pub elapsed: Duration,
}

impl Progress {
    /// Nothing done yet of a replay up to `end`.
    pub fn start(end: u64) -> Self {
        Self {
            read: 0,
            applied: 0,
            seq: 0,
            end,
            checkpoint: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Events read per second.
    pub fn rate(&self) -> f64 {
        self.read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Time left at the current rate.
    pub fn eta(&self) -> Duration {
        let left = self.end.saturating_sub(self.seq) as f64;
        Duration::from_secs_f64(left / self.rate().max(1e-9))
    }
}
