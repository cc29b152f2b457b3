//! `[nats]`: the JetStream event log (its `auth` and `tls` tables live in
//! `events::connect`, beside the code that uses them).

use std::time::Duration;

use serde::Deserialize;

use super::check::is_token;
use super::duration::{micros, millis, seconds};
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
    /// Group commit: concurrent appends go to the stream as one atomic batch (one fsync
    /// for many events) when the server and the stream allow it (see
    /// README, Durability). Off by default: it pays only on a server that fsyncs every
    /// write (`sync_interval: always`), and the client cannot see that setting.
    pub group_commit: GroupCommit,
    /// Most events in one batch (1 to 1000, the server's limit per atomic batch).
    pub group_commit_max_messages: usize,
    /// How long a batch waits for more appends after its first, at most;
    /// `group_commit_max_wait_us`, in microseconds. 0: a batch is what queued while the
    /// batches before it were in flight.
    #[serde(rename = "group_commit_max_wait_us", deserialize_with = "micros")]
    pub group_commit_max_wait: Duration,
    /// Batches sent and not yet acknowledged, at most.
    pub group_commit_in_flight: usize,
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
            group_commit: GroupCommit::Off,
            group_commit_max_messages: 500,
            group_commit_max_wait: Duration::ZERO,
            group_commit_in_flight: 4,
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
        if !(1..=MAX_BATCH_MESSAGES).contains(&self.group_commit_max_messages) {
            return Err(invalid(
                "nats.group_commit_max_messages",
                "must be between 1 and 1000 (nats-server's limit for one atomic batch)",
            ));
        }
        if self.group_commit_max_wait > MAX_GROUP_WAIT {
            return Err(invalid(
                "nats.group_commit_max_wait_us",
                "must be at most 10000 (10 ms): every append in the batch waits for it",
            ));
        }
        if !(1..=MAX_BATCHES_IN_FLIGHT).contains(&self.group_commit_in_flight) {
            return Err(invalid(
                "nats.group_commit_in_flight",
                "must be between 1 and 50 (nats-server's limit of batches in flight per stream)",
            ));
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

/// The most events nats-server takes in one atomic batch (ADR-50; a batch of 1001 is
/// refused with err_code 10199).
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// The most atomic batches nats-server keeps open on one stream (ADR-50).
pub const MAX_BATCHES_IN_FLIGHT: usize = 50;

/// The longest `group_commit_max_wait_us` allowed.
const MAX_GROUP_WAIT: Duration = Duration::from_millis(10);

/// Whether appends are grouped into atomic batches (`nats.group_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupCommit {
    /// Grouped when the server supports atomic batches (nats-server 2.12+), else single
    /// publishes.
    Auto,
    /// Grouped; start-up fails on a server older than 2.12.
    On,
    /// Every append is its own publish.
    Off,
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

    #[test]
    fn group_commit_limits_are_the_servers() {
        let mut s = Settings::default();
        s.nats.group_commit_max_messages = 1000;
        s.nats.group_commit_in_flight = 50;
        s.nats.group_commit_max_wait = std::time::Duration::from_millis(10);
        s.validate()
            .expect("the server's limits themselves are allowed");
        for (field, change) in [
            ("nats.group_commit_max_messages", (1001, 50, 10_000)),
            ("nats.group_commit_max_messages", (0, 50, 10_000)),
            ("nats.group_commit_in_flight", (1000, 51, 10_000)),
            ("nats.group_commit_in_flight", (1000, 0, 10_000)),
            ("nats.group_commit_max_wait_us", (1000, 50, 10_001)),
        ] {
            let mut s = Settings::default();
            (
                s.nats.group_commit_max_messages,
                s.nats.group_commit_in_flight,
            ) = (change.0, change.1);
            s.nats.group_commit_max_wait = std::time::Duration::from_micros(change.2);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{change:?}: {err}");
        }
    }
}
