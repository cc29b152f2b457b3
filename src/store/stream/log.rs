//! The event log on JetStream: the stream ensured from settings, durable appends with
//! `Nats-Msg-Id`, and ordered reads of a sequence range.

use std::{
    ops::RangeInclusive,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_nats::{
    connection::State,
    header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID},
    jetstream::{self, consumer, context::PublishErrorKind, stream},
    HeaderMap,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{future::BoxFuture, stream::BoxStream, Stream, StreamExt};
use uuid::Uuid;

use super::{atomic::Message, connect::Reconnections, group::Group};

use crate::core::events::{Envelope, Event};
use crate::settings::{NatsSettings, Storage};

/// What can go wrong talking to the log. All of it is infrastructure: retry later.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Not connected to NATS right now.
    #[error("NATS is not connected")]
    Disconnected,
    /// The append was not acknowledged (in time); it may or may not be stored, and a retry
    /// with the same message id is deduplicated.
    #[error("append not acknowledged: {0}")]
    NotAcknowledged(String),
    /// No connection could be had at start (the cause and URL named).
    #[error(transparent)]
    Connect(#[from] super::connect::ConnectError),
    /// Any other NATS or JetStream failure.
    #[error("jetstream: {0}")]
    Jetstream(String),
    /// A conditional publish was refused: the stream's last sequence was not the one
    /// expected, so someone else published meanwhile. Nothing was stored.
    #[error("refused: the stream moved past the expected last sequence {expected}")]
    Overtaken {
        /// The last sequence the publisher expected.
        expected: u64,
    },
}

pub(super) fn js_err(e: impl std::fmt::Display) -> LogError {
    LogError::Jetstream(e.to_string())
}

/// The acknowledgement of a durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's stream sequence (the original's, when this was a duplicate).
    pub seq: u64,
    /// The message id was seen inside the duplicate window: nothing new was stored.
    pub duplicate: bool,
}

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
    reconnections: Reconnections,
    /// The same connection with a short timeout, for the reader's looks at the stream
    /// while it waits (see [`Reader`]): a request lost in a leader election costs this,
    /// not the append timeout.
    quick: jetstream::Context,
    /// The highest sequence an append through this handle was acknowledged at: a read
    /// waiting below it knows at once that its consumer is stuck.
    appended: Arc<AtomicU64>,
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
        self.start_group_commit().await
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
            .append_message(Message {
                subject: self.subject(&envelope.kind),
                msg_id: msg_id.to_owned(),
                payload: Bytes::from(payload),
            })
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

    /// [`EventLog::last_seq`] with the [`QUICK_TIMEOUT`].
    async fn quick_last_seq(&self) -> Result<u64, LogError> {
        Self::last_seq_with(&self.quick, &self.stream).await
    }

    /// The stream's last sequence, asked through `js`: getting the stream asks for its
    /// info, one request.
    async fn last_seq_with(js: &jetstream::Context, stream: &str) -> Result<u64, LogError> {
        let stream = js.get_stream(stream).await.map_err(js_err)?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// The payload of the event at `seq` from any replica (a direct get, with the
    /// [`QUICK_TIMEOUT`]), or `None` when the one that answered has no such event (yet).
    async fn direct_at(&self, seq: u64) -> Result<Option<Bytes>, LogError> {
        let stream = self
            .quick
            .get_stream_no_info(&self.stream)
            .await
            .map_err(js_err)?;
        match stream.direct_get(seq).await {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(js_err(e)),
        }
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

    /// Every event from `start_seq` on, in stream order, as `(seq, payload)`; it waits
    /// for new events at the end (the live projector's read).
    pub async fn read_from(
        &self,
        start_seq: u64,
    ) -> Result<impl Stream<Item = Result<(u64, Bytes), LogError>> + Send + Unpin, LogError> {
        self.read_range(start_seq..=u64::MAX).await
    }

    /// The events of `seqs`, in stream order, as `(seq, payload)`: an ordered consumer
    /// from the range's start that ends after its last sequence (or the first one past
    /// it), waiting at the stream's end meanwhile. An empty range reads nothing and makes
    /// no consumer. The one reader of the stream: the projector, replay, rebuild, audit
    /// and the benches all read through it. An error is passed on; the caller stops.
    ///
    /// The consumer lives in the server's memory, so a restarted server has forgotten it:
    /// after every reconnection the read makes a new one from the next sequence at once,
    /// and a consumer lost otherwise shows as missed idle heartbeats (see
    /// [`PULL_EXPIRES`]).
    pub async fn read_range(
        &self,
        seqs: RangeInclusive<u64>,
    ) -> Result<impl Stream<Item = Result<(u64, Bytes), LogError>> + Send + Unpin, LogError> {
        let (start, end) = (seqs.start().max(&1).to_owned(), *seqs.end());
        if start > end {
            return Ok(futures::stream::empty().boxed());
        }
        let mut reconnections = self.reconnections.clone();
        reconnections.borrow_and_update();
        let reader = Reader {
            messages: self.ordered_from(start).await?,
            log: self.clone(),
            next: start,
            reconnections,
            direct: false,
            renewing: None,
        };
        // Dropping the consumer once the range is read stops its deliveries.
        Ok(
            futures::stream::unfold(Some(reader), move |reader| async move {
                let mut reader = reader?;
                match reader.next().await? {
                    Ok((seq, _)) if seq > end => None,
                    Ok((seq, payload)) if seq == end => Some((Ok((seq, payload)), None)),
                    next => Some((next, Some(reader))),
                }
            })
            .boxed(),
        )
    }

    /// An ordered consumer from `start_seq` on, without end.
    async fn ordered_from(&self, start_seq: u64) -> Result<Messages, LogError> {
        self.ordered_from_with(&self.js, start_seq).await
    }

    /// [`EventLog::ordered_from`], asking through `js` (with its timeout).
    async fn ordered_from_with(
        &self,
        js: &jetstream::Context,
        start_seq: u64,
    ) -> Result<Messages, LogError> {
        let stream = js.get_stream(&self.stream).await.map_err(js_err)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start_seq,
                },
                max_expires: PULL_EXPIRES,
                ..Default::default()
            })
            .await
            .map_err(js_err)?;
        let messages = consumer.messages().await.map_err(js_err)?;
        Ok(messages
            .map(|m| {
                let m = m.map_err(js_err)?;
                let seq = m.info().map_err(js_err)?.stream_sequence;
                Ok((seq, m.payload.clone()))
            })
            .boxed())
    }

    /// Deletes the stream, and the outcome stream the daemon made beside it if there is
    /// one (tests and scratch tooling only).
    pub async fn delete_stream(&self) -> Result<(), LogError> {
        self.js.delete_stream(&self.stream).await.map_err(js_err)?;
        // Absent unless a daemon ran on this stream.
        let _ = self.js.delete_stream(&self.outcome_stream).await;
        Ok(())
    }

    /// Flushes and closes the connection.
    pub async fn close(&self) {
        let _ = self.client.flush().await;
    }
}

/// One publish on `js` with `Nats-Msg-Id` (and `Nats-Expected-Last-Sequence`), waiting for
/// its acknowledgement: [`EventLog::publish`] once connected, and group commit's single
/// publishes.
pub(super) async fn publish_single(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    expected_last: Option<u64>,
    payload: Bytes,
) -> Result<Appended, LogError> {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, msg_id);
    if let Some(seq) = expected_last {
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, seq.to_string().as_str());
    }
    let refused = |e: jetstream::context::PublishError| match (e.kind(), expected_last) {
        (PublishErrorKind::WrongLastSequence, Some(expected)) => LogError::Overtaken { expected },
        _ => LogError::NotAcknowledged(e.to_string()),
    };
    let ack = js
        .publish_with_headers(subject, headers, payload)
        .await
        .map_err(refused)?
        .await
        .map_err(refused)?;
    Ok(Appended {
        seq: ack.sequence,
        duplicate: ack.duplicate,
    })
}

/// The longest a read's pull request waits at the stream's end; the server sends an idle
/// heartbeat every half of it, and a consumer that misses two heartbeats is made again
/// from where it was (a frozen or restarted server), within about twice this.
pub const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// How long a read waits for its next event before it looks whether the stream holds
/// it: at once in this process's own appends, and every [`STALL_ASK`] by asking the
/// stream. If the stream holds it, the consumer is stuck (its server died in a cluster,
/// and async-nats' own recreation backs off to 10 s a try, or hangs) and a new one is
/// made from the next sequence. Found by the cluster tests: a killed stream leader left
/// the projector without events for over 30 s, then (with a 4 s look) for up to 4 s
/// after the new leader was elected.
pub const STALL: Duration = Duration::from_millis(250);

/// How often a waiting read asks the stream for its last sequence, and how often a
/// read going event by event tries for a consumer again.
pub const STALL_ASK: Duration = Duration::from_secs(1);

/// The timeout of those looks, of making the new consumer and of reading one event
/// directly: a request sent while the cluster elects a leader goes unanswered, and the
/// next try should not wait for the append timeout to learn that.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(1);

/// What an ordered consumer delivers.
type Messages = BoxStream<'static, Result<(u64, Bytes), LogError>>;

/// One read of the stream: the consumer in hand, the next sequence it owes, and the
/// client's reconnections, watched to make the consumer again after each one.
///
/// A consumer cannot be made while the cluster has no meta leader (a killed node may have
/// led both the stream and the meta group, and each elects on its own, 4–9 s apart).
/// Meanwhile the read goes event by event with direct gets, which any replica answers
/// (the stream allows them), and keeps trying for a consumer in the background.
struct Reader {
    messages: Messages,
    log: EventLog,
    next: u64,
    reconnections: Reconnections,
    /// Reading event by event: no consumer could be made.
    direct: bool,
    /// A new consumer being made (from the sequence next was when it began).
    renewing: Option<BoxFuture<'static, Result<Messages, LogError>>>,
}

impl Reader {
    /// The next event, or an error; `None` once the consumer ends.
    async fn next(&mut self) -> Option<Result<(u64, Bytes), LogError>> {
        let mut watching = true;
        let mut looks = tokio::time::interval_at(tokio::time::Instant::now() + STALL, STALL);
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut asked = tokio::time::Instant::now();
        loop {
            if self.direct {
                // Not there yet, or NATS away: the next look tries again.
                if let Ok(Some(payload)) = self.log.direct_at(self.next).await {
                    let seq = self.next;
                    self.next += 1;
                    return Some(Ok((seq, payload)));
                }
            }
            tokio::select! {
                _ = looks.tick() => {
                    if asked.elapsed() >= STALL_ASK && self.direct {
                        asked = tokio::time::Instant::now();
                        self.renew(false);
                        continue;
                    }
                    if self.direct || self.renewing.is_some() {
                        continue;
                    }
                    // Nothing delivered for a while: fine at the stream's end, a stuck
                    // consumer if the stream holds what we wait for.
                    let held = if self.log.appended.load(Ordering::Relaxed) >= self.next {
                        true
                    } else if asked.elapsed() >= STALL_ASK {
                        asked = tokio::time::Instant::now();
                        // A failed look proves nothing: NATS may be electing a leader.
                        matches!(self.log.quick_last_seq().await, Ok(last) if last >= self.next)
                    } else {
                        false
                    };
                    if held {
                        tracing::warn!(from = self.next, "the stream holds events its consumer does not deliver; reading on with a new consumer");
                        self.renew(false);
                    }
                }
                renewed = renewal(&mut self.renewing) => {
                    self.renewing = None;
                    match renewed {
                        Ok(messages) => {
                            if self.direct {
                                tracing::info!(from = self.next, "a consumer again after reading event by event");
                            }
                            self.messages = messages;
                            self.direct = false;
                        }
                        Err(e) => {
                            if !self.direct {
                                tracing::warn!(from = self.next, error = %e, "no new consumer yet; reading event by event meanwhile");
                            }
                            self.messages = futures::stream::pending().boxed();
                            self.direct = true;
                        }
                    }
                }
                changed = self.reconnections.changed(), if watching => {
                    if changed.is_err() {
                        // The client is gone; its consumer ends on its own.
                        watching = false;
                        continue;
                    }
                    tracing::info!(from = self.next, "NATS reconnected; reading on with a new consumer");
                    self.renew(true);
                }
                next = self.messages.next(), if !self.direct => {
                    match &next {
                        // A consumer made before direct reads went further: already read.
                        Some(Ok((seq, _))) if *seq < self.next => continue,
                        Some(Ok((seq, _))) => self.next = seq + 1,
                        _ => {}
                    }
                    return next;
                }
            }
        }
    }

    /// Starts making a new consumer from the next sequence, unless one is being made
    /// (`again`: even then, as after a reconnection, which lost the request in flight).
    fn renew(&mut self, again: bool) {
        if self.renewing.is_some() && !again {
            return;
        }
        let log = self.log.clone();
        let from = self.next;
        self.renewing = Some(Box::pin(async move {
            log.ordered_from_with(&log.quick, from).await
        }));
    }
}

/// The consumer being made, once made; never while none is.
async fn renewal(
    renewing: &mut Option<BoxFuture<'static, Result<Messages, LogError>>>,
) -> Result<Messages, LogError> {
    match renewing {
        Some(making) => making.await,
        None => std::future::pending().await,
    }
}
