//! The `[metrics]` settings: where `/metrics` is served and how long a scrape may wait.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use crate::settings::{duration::millis, error::SettingsError};

/// Where Prometheus scrapes the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// A separate listener for `GET /metrics` (e.g. an address only the monitoring
    /// network reaches). Unset: `/metrics` is served on the API listener. Set: it is served
    /// only there, never on the public API listener.
    pub listen: Option<SocketAddr>,
    /// How long a scrape waits for NATS and Postgres to answer its questions (stream end,
    /// outbox, failure log, suspense), `scrape_timeout_ms` in milliseconds; what does not
    /// answer in time is reported as down or keeps its last value, and the scrape still
    /// answers.
    #[serde(rename = "scrape_timeout_ms", deserialize_with = "millis")]
    pub scrape_timeout: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            scrape_timeout: Duration::from_secs(1),
        }
    }
}

impl MetricsSettings {
    /// Checks the values; `api` is the API's listen address, which the metrics listener
    /// must not share.
    pub fn validate(&self, api: SocketAddr) -> Result<(), SettingsError> {
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.scrape_timeout) {
            return Err(SettingsError::Invalid {
                field: "metrics.scrape_timeout_ms",
                problem: "must be between 10 and 10000".into(),
            });
        }
        if let Some(listen) = self.listen {
            if listen.port() != 0 && listen == api {
                return Err(SettingsError::Invalid {
                    field: "metrics.listen",
                    problem: format!("{listen} is http.listen; give metrics its own address"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_api_address_and_silly_timeouts() {
        let api: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(MetricsSettings::default().validate(api).is_ok());
        let same = MetricsSettings {
            listen: Some(api),
            ..Default::default()
        };
        assert!(same
            .validate(api)
            .unwrap_err()
            .to_string()
            .contains("metrics.listen"));
        let other = MetricsSettings {
            listen: Some("127.0.0.1:9090".parse().unwrap()),
            ..Default::default()
        };
        assert!(other.validate(api).is_ok());
        let zero = MetricsSettings {
            scrape_timeout: Duration::ZERO,
            ..Default::default()
        };
        assert!(zero.validate(api).is_err());
    }
}
