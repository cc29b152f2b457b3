//! `[nats]`: the JetStream event log (its `auth` and `tls` tables live in
//! `events::connect`, beside the code that uses them).

use std::time::Duration;

use serde::Deserialize;

use super::check::is_token;
use super::duration::{millis, seconds};
use super::error::{invalid, SettingsError};
use crate::store::stream::connect::settings::{ConnectError, NatsAuthSettings, NatsTlsSettings};

/// Where events live.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS server URL.
    pub url: String,
    /// JetStream stream name.
    pub stream: String,
    /// First token of every subject: `<prefix>.<aggregate>.<event>`.
    pub subject_prefix: String,
    /// Stream replicas: 1 on a single server, 3 on a cluster.
    pub replicas: usize,
    /// `file` (durable) or `memory`.
    pub storage: Storage,
    /// Window in which a repeated `Nats-Msg-Id` appends nothing; `duplicate_window_secs`,
    /// in seconds.
    #[serde(rename = "duplicate_window_secs", deserialize_with = "seconds")]
    pub duplicate_window: Duration,
    /// How long an append waits for the stream's acknowledgement; `ack_timeout_ms`, in
    /// milliseconds.
    #[serde(rename = "ack_timeout_ms", deserialize_with = "millis")]
    pub ack_timeout: Duration,
    /// How long start-up waits for NATS before giving up; `connect_timeout_secs`, in
    /// seconds.
    #[serde(rename = "connect_timeout_secs", deserialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// Credentials (`[nats.auth]`): user/password, token, NKey seed or `.creds` file.
    pub auth: NatsAuthSettings,
    /// TLS to NATS (`[nats.tls]`).
    pub tls: NatsTlsSettings,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "WXLEDGER".into(),
            subject_prefix: "wxledger".into(),
            replicas: 1,
            storage: Storage::File,
            duplicate_window: Duration::from_secs(120),
            ack_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(30),
            auth: Default::default(),
            tls: Default::default(),
        }
    }
}

impl NatsSettings {
    /// The stream of outcomes (the projector's decisions): `<stream>_OUTCOMES`.
    pub fn outcome_stream(&self) -> String {
        format!("{}_OUTCOMES", self.stream)
    }

    /// First token(s) of every outcome subject: `<prefix>_outcome`, outside the event
    /// stream's `<prefix>.>`.
    pub fn outcome_subject_prefix(&self) -> String {
        format!("{}_outcome", self.subject_prefix)
    }

    /// Checks the values the types cannot, credentials and TLS included.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid("nats.replicas", "must be between 1 and 5"));
        }
        if !is_token(&self.stream) {
            return Err(invalid(
                "nats.stream",
                "must be letters, digits, '-' or '_' only",
            ));
        }
        if !self.subject_prefix.split('.').all(is_token) {
            return Err(invalid(
                "nats.subject_prefix",
                "must be dot-separated tokens of letters, digits, '-' or '_'",
            ));
        }
        if self.duplicate_window.is_zero() {
            return Err(invalid("nats.duplicate_window_secs", "must be positive"));
        }
        let result = self.auth.validate().and_then(|()| self.tls.validate());
        result.map_err(|e| match e {
            ConnectError::Settings { field, problem } => SettingsError::Invalid { field, problem },
            other => SettingsError::Invalid {
                field: "nats",
                problem: other.to_string(),
            },
        })
    }
}

/// Where JetStream keeps the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk: survives a server restart.
    File,
    /// In memory: for throwaway streams only.
    Memory,
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    #[test]
    fn the_outcome_stream_and_subjects_lie_outside_the_event_stream() {
        let mut s = Settings::default();
        assert_eq!(s.nats.outcome_stream(), "WXLEDGER_OUTCOMES");
        assert_eq!(s.nats.outcome_subject_prefix(), "wxledger_outcome");
        s.nats.subject_prefix = "acme.wxledger".into();
        // `acme.wxledger_outcome.order.paid` is not matched by `acme.wxledger.>`.
        assert_eq!(s.nats.outcome_subject_prefix(), "acme.wxledger_outcome");
        s.validate().expect("derived names are valid tokens");
        s.outcomes.poll = std::time::Duration::ZERO;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("outcomes.poll_ms"), "{err}");
    }
}
