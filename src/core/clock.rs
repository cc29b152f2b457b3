//! The wall clock, injectable so that tests can move time.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Returns "now". The fold never calls it: events carry their own time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system() -> Clock {
    Arc::new(Utc::now)
}
