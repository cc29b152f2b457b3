//! `[http]`: the daemon's API and webhook listener.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::duration::millis;

/// The daemon's HTTP listener.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address the API listens on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long shutdown waits for requests in flight; `shutdown_grace_ms`, in
    /// milliseconds.
    #[serde(rename = "shutdown_grace_ms", deserialize_with = "millis")]
    pub shutdown_grace: Duration,
    /// Readiness answers within this long of a check share it, so no client can turn the
    /// readiness endpoints into load on NATS and Postgres; `ready_cache_ms`, in
    /// milliseconds (0 checks on every request).
    #[serde(rename = "ready_cache_ms", deserialize_with = "millis")]
    pub ready_cache: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            max_body_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
            ready_cache: Duration::from_secs(1),
        }
    }
}
