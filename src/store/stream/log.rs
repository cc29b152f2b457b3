//! The event log on JetStream: the handle ([`EventLog`]), the stream ensured from
//! settings, and durable appends with `Nats-Msg-Id` (single publishes or group commit).
//! Reads are in [`super::reader`].

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_nats::{
    connection::State, header::NATS_MESSAGE_ID, jetstream, jetstream::stream, HeaderMap,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use super::error::{Appended, LogError};
use super::{
    atomic::Message,
    connect::Reconnections,
    error::{js_err, publish_single},
    group::Group,
};

use crate::core::events::{Envelope, Event};
use crate::settings::{NatsSettings, Storage};

/// The timeout of the reader's looks at the stream while it waits, of making its new
/// consumer and of reading one event directly: a request sent while the cluster elects
/// a leader goes unanswered, and the next try should not wait for the append timeout.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(1);

/// One event ready to append.
pub struct Draft<'a> {
    /// The fact.
    pub event: &'a Event,
    /// The request or notify that caused it.
    pub correlation_id: &'a str,
    /// Idempotency key for `Nats-Msg-Id`; a repeat inside the window appends nothing.
    pub msg_id: &'a str,
    /// Acceptance time, from the caller's clock (the fold has none).
    pub occurred_at: DateTime<Utc>,
}

/// Handle on the stream; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
    pub(super) stream: String,
    prefix: String,
    outcome_stream: String,
    pub(super) reconnections: Reconnections,
    /// The same connection with a short timeout, for the reader's looks at the stream
    /// while it waits (see [`super::reader`]): a request lost in a leader election costs
    /// this, not the append timeout.
    pub(super) quick: jetstream::Context,
    /// The highest sequence an append through this handle was acknowledged at: a read
    /// waiting below it knows at once that its consumer is stuck.
    pub(super) appended: Arc<AtomicU64>,
    /// Group commit of appends ([`super::group`]), shared by the clones.
    pub(super) group: Arc<Group>,
}

impl EventLog {
    /// True when the server refuses anonymous clients (it announced `auth_required`).
    pub fn server_requires_auth(&self) -> bool {
        self.client.server_info().auth_required
    }

    /// Connects (waiting up to `connect_timeout_secs` for the server) and ensures the stream.
    pub async fn connect(settings: &NatsSettings) -> Result<Self, LogError> {
        let log = Self::dial(settings).await?;
        log.ensure_stream(settings).await?;
        Ok(log)
    }

    /// Connects to an existing stream without creating or changing it: for readers such
    /// as replay and audit, whose settings must not alter the live stream.
    pub async fn open(settings: &NatsSettings) -> Result<Self, LogError> {
        let log = Self::dial(settings).await?;
        log.js
            .get_stream(&settings.stream)
            .await
            .map_err(|e| LogError::Jetstream(format!("stream {}: {e}", settings.stream)))?;
        Ok(log)
    }

    /// Connects without touching any stream (then [`EventLog::ensure_stream`]), so the caller
    /// can look at the server first.
    pub async fn dial(settings: &NatsSettings) -> Result<Self, LogError> {
        let (client, reconnections) = super::connect::connect_watched(settings, "wxledger").await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(settings.ack_timeout);
        let mut quick = jetstream::new(client.clone());
        quick.set_timeout(settings.ack_timeout.min(QUICK_TIMEOUT));
        Ok(Self {
            client,
            js,
            quick,
            appended: Arc::default(),
            stream: settings.stream.clone(),
            prefix: settings.subject_prefix.clone(),
            outcome_stream: settings.outcome_stream(),
            reconnections,
            group: Arc::new(Group::new(settings)),
        })
    }

    /// Creates the stream, or brings an existing one in line with the settings.
    pub async fn ensure_stream(&self, settings: &NatsSettings) -> Result<(), LogError> {
        let config = stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.>", settings.subject_prefix)],
            storage: match settings.storage {
                Storage::Memory => stream::StorageType::Memory,
                Storage::File => stream::StorageType::File,
            },
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            retention: stream::RetentionPolicy::Limits,
            // Events are immutable: no message may be deleted or the stream purged.
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            description: Some("wxledger events (immutable)".into()),
            ..Default::default()
        };
        match self.js.get_stream(&settings.stream).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(js_err)?;
                let current = &info.config;
                if current.storage != config.storage {
                    return Err(LogError::Jetstream(format!(
                        "stream {} exists with {:?} storage but nats.storage says {:?}; \
                         storage cannot change in place",
                        settings.stream, current.storage, config.storage
                    )));
                }
                if current.subjects != config.subjects
                    || current.duplicate_window != config.duplicate_window
                    || current.num_replicas != config.num_replicas
                {
                    self.js.update_stream(&config).await.map_err(js_err)?;
                }
            }
            Err(_) => {
                self.js.create_stream(config).await.map_err(js_err)?;
            }
        }
        self.group.start(&self.client, &self.js, &self.stream).await
    }

    /// The subject an event type is published on.
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{}", self.prefix, kind)
    }

    /// The JetStream context of this connection (the outcome stream shares it).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The events' stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// True while the client holds a connection to NATS.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Appends one event and waits for the stream's acknowledgement (durable).
    pub async fn append(&self, draft: Draft<'_>) -> Result<Appended, LogError> {
        let envelope = Envelope {
            id: Uuid::new_v4(),
            kind: draft.event.kind().to_owned(),
            version: draft.event.version(),
            // To the microsecond, as Postgres and every reader keep it.
            occurred_at: crate::core::events::to_micros(draft.occurred_at),
            correlation_id: draft.correlation_id.to_owned(),
            data: draft.event.to_data(),
        };
        self.append_envelope(&envelope, draft.msg_id).await
    }

    /// Appends an envelope as given (any type and version, e.g. one an older wxledger
    /// wrote) and waits for the stream's acknowledgement.
    pub async fn append_envelope(
        &self,
        envelope: &Envelope,
        msg_id: &str,
    ) -> Result<Appended, LogError> {
        let payload = serde_json::to_vec(envelope).expect("an envelope always serializes");
        let appended = self
            .group
            .append(
                &self.client,
                &self.js,
                Message {
                    subject: self.subject(&envelope.kind),
                    msg_id: msg_id.to_owned(),
                    payload: Bytes::from(payload),
                },
            )
            .await?;
        self.appended.fetch_max(appended.seq, Ordering::Relaxed);
        Ok(appended)
    }

    /// Publishes `payload` on `subject` (of this stream or another on this connection,
    /// such as the outcome stream) with `Nats-Msg-Id` = `msg_id`, and waits for the
    /// acknowledgement: inside the duplicate window a repeat of `msg_id` stores nothing
    /// new. With `expected_last`, the stream stores it only if its last sequence is that
    /// one (`Nats-Expected-Last-Sequence`; 0 for an empty stream), and refuses it with
    /// [`LogError::Overtaken`] otherwise; a repeat inside the window is still answered as
    /// a duplicate. The one publish both event appends and outcomes go through.
    pub async fn publish(
        &self,
        subject: String,
        msg_id: &str,
        expected_last: Option<u64>,
        payload: Bytes,
    ) -> Result<Appended, LogError> {
        // Refuse at once while disconnected: a publish queued now would be sent on
        // reconnect, after the caller has been told it failed.
        if !self.is_connected() {
            return Err(LogError::Disconnected);
        }
        publish_single(&self.js, subject, msg_id, expected_last, payload).await
    }

    /// Appends envelopes as given, in order, with up to `in_flight` acknowledgements
    /// outstanding, and returns the sequence of the last. For bulk imports and
    /// benchmarks; the API appends one event at a time. The message id is the event id.
    pub async fn append_pipelined(
        &self,
        envelopes: impl IntoIterator<Item = Envelope>,
        in_flight: usize,
    ) -> Result<u64, LogError> {
        let mut pending = std::collections::VecDeque::with_capacity(in_flight);
        let mut last = 0;
        for envelope in envelopes {
            let payload = serde_json::to_vec(&envelope).expect("an envelope always serializes");
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, envelope.id.to_string().as_str());
            let ack = self
                .js
                .publish_with_headers(self.subject(&envelope.kind), headers, Bytes::from(payload))
                .await
                .map_err(|e| LogError::NotAcknowledged(e.to_string()))?;
            pending.push_back(ack);
            if pending.len() >= in_flight.max(1) {
                let ack = pending.pop_front().expect("not empty");
                last = ack
                    .await
                    .map_err(|e| LogError::NotAcknowledged(e.to_string()))?
                    .sequence;
            }
        }
        for ack in pending {
            last = ack
                .await
                .map_err(|e| LogError::NotAcknowledged(e.to_string()))?
                .sequence;
        }
        Ok(last)
    }

    /// The sequence of the newest event (0 for an empty stream).
    pub async fn last_seq(&self) -> Result<u64, LogError> {
        Self::last_seq_with(&self.js, &self.stream).await
    }

    /// The stream's last sequence, asked through `js`: getting the stream asks for its
    /// info, one request.
    pub(super) async fn last_seq_with(
        js: &jetstream::Context,
        stream: &str,
    ) -> Result<u64, LogError> {
        let stream = js.get_stream(stream).await.map_err(js_err)?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// The payload of the event at `seq`, or `None` when the stream has no such event.
    pub async fn payload_at(&self, seq: u64) -> Result<Option<Bytes>, LogError> {
        let stream = self.js.get_stream(&self.stream).await.map_err(js_err)?;
        match stream.raw_message_builder().sequence(seq).send().await {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(js_err(e)),
        }
    }

    /// Deletes the stream, and the outcome stream the daemon made beside it if there is
    /// one (tests and scratch tooling only).
    pub async fn delete_stream(&self) -> Result<(), LogError> {
        self.js.delete_stream(&self.stream).await.map_err(js_err)?;
        // Absent unless a daemon ran on this stream.
        let _ = self.js.delete_stream(&self.outcome_stream).await;
        Ok(())
    }

    /// Counts group commit's batches and fallbacks in `metrics`.
    pub fn record_group_commit_into(&self, metrics: &crate::daemon::metrics::Metrics) {
        self.group.record_into(metrics);
    }

    /// Whether appends are grouped into atomic batches now.
    pub fn group_commit_active(&self) -> bool {
        self.group.active()
    }

    /// Flushes and closes the connection.
    pub async fn close(&self) {
        let _ = self.client.flush().await;
    }
}
