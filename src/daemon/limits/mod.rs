//! Bounds under abuse: timeouts, the connection limit and rate limits (settings
//! `[limits]`), so no client can hold the daemon, its memory, or WeChat's quota.

mod body;
mod peer;
mod rate;
mod serve;
mod settings;

use std::time::Duration;

pub use body::{BodyTimedOut, DeadlineBody, Expired};
pub use rate::{Action, Principal, RateLimited, RateLimits};
pub use serve::{serve, ConnectionLimits};
pub use settings::{LimitSettings, ProxyNet, Rate};

/// What request handling needs of [`LimitSettings`]: the deadlines and the rate limits.
pub struct Limits {
    /// How long a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// How long an API request may take.
    pub request_timeout: Duration,
    /// How long a WeChat Pay notify may take.
    pub webhook_timeout: Duration,
    /// Per-address and per-user rate limits.
    pub rates: RateLimits,
}

impl Limits {
    /// The limits `settings` describe.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            body_read_timeout: settings.body_read_timeout,
            request_timeout: settings.request_timeout,
            webhook_timeout: settings.webhook_timeout,
            rates: RateLimits::new(settings),
        }
    }
}
