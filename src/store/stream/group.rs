//! Group commit: appends made at the same time go to the stream as one atomic batch
//! ([`super::atomic`]), so with `sync_interval: always` one fsync covers many events; each
//! caller is answered with its own sequence once the batch is acknowledged, exactly as a
//! single publish would answer it.
//!
//! A queue feeds one task that forms the batches: a batch takes what is queued, up to
//! `group_commit_max_messages`, after waiting at most `group_commit_max_wait_us` after its
//! first append and then for one of `group_commit_in_flight` slots; so under load a batch
//! is whatever queued while the batches before it were in flight, and alone an append is
//! a single publish. Deduplication is kept: appends of one msg id in a batch are sent once
//! (the first is answered as stored, the others as its duplicates); a batch the server
//! refuses because a msg id is already in the duplicate window is sent again as single
//! publishes, which answer `duplicate: true` with the original sequence. A stream or server
//! that refuses atomic batches turns grouping off for good. No caller is answered success
//! before the server acknowledged its event.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use async_nats::{connection::State, jetstream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{
    atomic::{self, BatchError, Message, Refused},
    error::{publish_single, Appended, LogError},
};
use crate::{
    daemon::metrics::Metrics,
    settings::{GroupCommit, NatsSettings},
};

/// What one append is answered.
type Answer = Result<Appended, LogError>;

/// An append waiting for its batch.
struct Pending {
    message: Message,
    answer: oneshot::Sender<Answer>,
}

/// Group commit's settings, as the committer uses them.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_messages: usize,
    max_wait: Duration,
    in_flight: usize,
    ack_timeout: Duration,
}

/// The group commit of one connection, shared by every clone of its
/// [`super::EventLog`].
pub(super) struct Group {
    mode: GroupCommit,
    limits: Limits,
    /// The batching task's queue, once started.
    queue: OnceLock<mpsc::Sender<Pending>>,
    shared: Arc<Shared>,
}

/// What the batching task and the appenders both see.
#[derive(Default)]
struct Shared {
    /// Appends are grouped (cleared for good when the stream refuses atomic batches).
    grouped: AtomicBool,
    metrics: OnceLock<Metrics>,
}

impl Shared {
    fn grouped(&self) -> bool {
        self.grouped.load(Ordering::Acquire)
    }

    fn fallback(&self, reason: &'static str, events: usize) {
        if let Some(m) = self.metrics.get() {
            m.group_commit_fallback(reason, events);
        }
    }
}

impl Group {
    /// Group commit as `settings` ask, not started (see [`Group::start`]).
    pub(super) fn new(settings: &NatsSettings) -> Self {
        Self {
            mode: settings.group_commit,
            limits: Limits {
                max_messages: settings.group_commit_max_messages.max(1),
                max_wait: settings.group_commit_max_wait,
                in_flight: settings.group_commit_in_flight.max(1),
                ack_timeout: settings.ack_timeout,
            },
            queue: OnceLock::new(),
            shared: Arc::default(),
        }
    }
}

impl Group {
    /// Starts grouping appends to `stream` if `nats.group_commit` asks for it and the
    /// server has atomic batches (2.12+), allowing them on the stream (`allow_atomic`).
    /// With `on`, an older server is an error; with `auto`, appends stay single publishes.
    pub(super) async fn start(
        &self,
        client: &async_nats::Client,
        js: &jetstream::Context,
        stream: &str,
    ) -> Result<(), LogError> {
        let group = self;
        if group.mode == GroupCommit::Off || group.queue.get().is_some() {
            return Ok(());
        }
        let version = client.server_info().version;
        if !atomic::server_supports(&version) {
            if group.mode == GroupCommit::On {
                return Err(LogError::Jetstream(format!(
                    "nats.group_commit = \"on\" needs nats-server 2.12 or later (atomic batch \
                     publish), and this server is {version}: use \"auto\" or \"off\""
                )));
            }
            tracing::info!(
                server = %version,
                "group commit off: nats-server before 2.12 has no atomic batches; single publishes"
            );
            return Ok(());
        }
        atomic::allow_on_stream(client, stream, group.limits.ack_timeout).await?;
        let limits = group.limits;
        let (queue, queued) = mpsc::channel(limits.max_messages * (limits.in_flight + 1));
        if group.queue.set(queue).is_ok() {
            group.shared.grouped.store(true, Ordering::Release);
            tokio::spawn(batch(
                queued,
                Committer {
                    client: client.clone(),
                    js: js.clone(),
                    limits,
                    shared: group.shared.clone(),
                },
            ));
            tracing::info!(
                server = %version,
                max_messages = limits.max_messages,
                max_wait_us = limits.max_wait.as_micros() as u64,
                in_flight = limits.in_flight,
                "group commit on: concurrent appends go to the stream as atomic batches"
            );
        }
        Ok(())
    }

    /// Counts the batches and fallbacks in `metrics`.
    pub(super) fn record_into(&self, metrics: &Metrics) {
        let _ = self.shared.metrics.set(metrics.clone());
    }

    /// Whether appends are grouped into atomic batches now.
    pub(super) fn active(&self) -> bool {
        self.queue.get().is_some() && self.shared.grouped()
    }

    /// Appends `message` and waits for its acknowledgement: through the batches when
    /// group commit is on, else as a single publish on `js`. Refused at once while
    /// `client` is disconnected: a publish queued now would be sent on reconnect, after
    /// the caller has been told it failed.
    pub(super) async fn append(
        &self,
        client: &async_nats::Client,
        js: &jetstream::Context,
        message: Message,
    ) -> Answer {
        if client.connection_state() != State::Connected {
            return Err(LogError::Disconnected);
        }
        let Some(queue) = self.queue.get().filter(|_| self.shared.grouped()) else {
            return publish_single(js, message.subject, &message.msg_id, None, message.payload)
                .await;
        };
        let (answer, answered) = oneshot::channel();
        let stopped = || LogError::Jetstream("the group commit task stopped".into());
        queue
            .send(Pending { message, answer })
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// Forms batches from the queue until every [`super::EventLog`] clone is gone.
async fn batch(mut queue: mpsc::Receiver<Pending>, committer: Committer) {
    let limits = committer.limits;
    let in_flight = Arc::new(Semaphore::new(limits.in_flight));
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        if !limits.max_wait.is_zero() {
            let until = tokio::time::Instant::now() + limits.max_wait;
            while group.len() < limits.max_messages {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(pending)) => group.push(pending),
                    _ => break,
                }
            }
        }
        // While every slot is taken, appends queue up for this batch.
        let slot = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        while group.len() < limits.max_messages {
            match queue.try_recv() {
                Ok(pending) => group.push(pending),
                Err(_) => break,
            }
        }
        let committer = committer.clone();
        tokio::spawn(async move {
            committer.commit(group).await;
            drop(slot);
        });
    }
}

/// Sends batches and answers their appends.
#[derive(Clone)]
struct Committer {
    client: async_nats::Client,
    js: jetstream::Context,
    limits: Limits,
    shared: Arc<Shared>,
}

impl Committer {
    /// Stores `group` and answers each of its appends.
    async fn commit(&self, group: Vec<Pending>) {
        // One message per msg id: the server refuses a batch holding one twice, and a
        // repeat is answered as single publishes would answer it.
        let mut slots: HashMap<String, usize> = HashMap::with_capacity(group.len());
        let mut messages = Vec::with_capacity(group.len());
        let mut waiting = Vec::with_capacity(group.len());
        for Pending { message, answer } in group {
            let (slot, repeat) = match slots.get(&message.msg_id) {
                Some(&slot) => (slot, true),
                None => {
                    slots.insert(message.msg_id.clone(), messages.len());
                    messages.push(message);
                    (messages.len() - 1, false)
                }
            };
            waiting.push((slot, repeat, answer));
        }
        let stored = self.store(&messages).await;
        for (slot, repeat, answer) in waiting {
            let answered = match &stored[slot] {
                Ok(appended) => Ok(Appended {
                    seq: appended.seq,
                    duplicate: appended.duplicate || repeat,
                }),
                Err(e) => Err(again(e)),
            };
            // The caller may have gone; its event is stored all the same.
            let _ = answer.send(answered);
        }
    }

    /// Stores `messages` (distinct msg ids) and answers for each what a single publish of
    /// it would have answered.
    async fn store(&self, messages: &[Message]) -> Vec<Answer> {
        let n = messages.len();
        if n == 1 || !self.shared.grouped() {
            return self.singles(messages).await;
        }
        if self.client.connection_state() != State::Connected {
            return (0..n).map(|_| Err(LogError::Disconnected)).collect();
        }
        let refused = match atomic::publish(&self.client, messages, self.limits.ack_timeout).await {
            Ok(last) => {
                if let Some(m) = self.shared.metrics.get() {
                    m.group_commit_batch(n);
                }
                let first = last + 1 - n as u64;
                return (0..n as u64)
                    .map(|i| {
                        Ok(Appended {
                            seq: first + i,
                            duplicate: false,
                        })
                    })
                    .collect();
            }
            Err(BatchError::Refused(refused)) => refused,
            Err(BatchError::NotAcknowledged(e)) => {
                return (0..n).map(|_| Err(again(&e))).collect();
            }
            Err(BatchError::NotBatched(why)) => {
                self.stop_grouping(&why);
                return (0..n)
                    .map(|_| Err(LogError::NotAcknowledged(why.clone())))
                    .collect();
            }
        };
        // Nothing of the batch was stored: single publishes store it, or answer each
        // duplicate with its original's sequence.
        let reason = match refused {
            Refused::Duplicate => "duplicate",
            Refused::Busy(reason) => reason,
            Refused::Unsupported => {
                self.stop_grouping("the stream refuses atomic batches");
                "unsupported"
            }
            Refused::Other(why) => {
                return (0..n)
                    .map(|_| Err(LogError::NotAcknowledged(why.clone())))
                    .collect();
            }
        };
        tracing::debug!(
            events = n,
            reason,
            "batch refused; single publishes instead"
        );
        self.shared.fallback(reason, n);
        self.singles(messages).await
    }

    /// Each message as its own publish, all in flight at once.
    async fn singles(&self, messages: &[Message]) -> Vec<Answer> {
        if self.client.connection_state() != State::Connected {
            return messages
                .iter()
                .map(|_| Err(LogError::Disconnected))
                .collect();
        }
        futures::future::join_all(messages.iter().map(|m| {
            publish_single(
                &self.js,
                m.subject.clone(),
                &m.msg_id,
                None,
                m.payload.clone(),
            )
        }))
        .await
    }

    fn stop_grouping(&self, why: &str) {
        if self.shared.grouped.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                why,
                "group commit off for good: single publishes from now on"
            );
        }
    }
}

/// The same answer for another caller of the same batch.
fn again(e: &LogError) -> LogError {
    match e {
        LogError::Disconnected => LogError::Disconnected,
        LogError::NotAcknowledged(m) => LogError::NotAcknowledged(m.clone()),
        LogError::Overtaken { expected } => LogError::Overtaken {
            expected: *expected,
        },
        other => LogError::Jetstream(other.to_string()),
    }
}
