//! The publisher: sends committed outbox rows to the outcome stream in (seq, id) order,
//! each with `Nats-Msg-Id` = the outcome id, and deletes a row once JetStream acknowledged
//! it. It wakes on every local projector commit and polls besides (a projector in another
//! process commits too). One active publisher per schema (a session advisory lock);
//! others stand by. While NATS is away rows wait: nothing is lost, nothing goes out before
//! its commit, and a row published again after a crash is the same message id.

use std::time::Duration;

use async_nats::jetstream::stream;
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    outbox::{self, Pending},
    Outcome, OutcomeKind,
};
use crate::{
    daemon::metrics::Metrics,
    settings::{NatsSettings, Storage},
    store::{
        db::{self, leader, DbError},
        stream::{Appended, EventLog, LogError},
    },
};

fn js_err(e: impl std::fmt::Display) -> LogError {
    LogError::Jetstream(e.to_string())
}

/// The outcome stream (`<stream>_OUTCOMES`, subjects `<prefix>_outcome.<type>`), on the
/// event log's connection. Cheap to clone.
#[derive(Clone)]
pub struct OutcomeStream {
    log: EventLog,
    name: String,
    prefix: String,
}

impl OutcomeStream {
    /// The outcome stream of `settings`, without touching the server.
    pub fn new(log: &EventLog, settings: &NatsSettings) -> Self {
        Self {
            log: log.clone(),
            name: settings.outcome_stream(),
            prefix: settings.outcome_subject_prefix(),
        }
    }

    /// Creates the stream with the event stream's storage, replicas and duplicate window,
    /// or brings those of an existing one in line (its other limits, e.g. a `max_age` an
    /// operator set, are kept).
    pub async fn ensure(log: &EventLog, settings: &NatsSettings) -> Result<Self, LogError> {
        let this = Self::new(log, settings);
        let js = log.jetstream();
        let storage = match settings.storage {
            Storage::Memory => stream::StorageType::Memory,
            Storage::File => stream::StorageType::File,
        };
        let subjects = vec![format!("{}.>", this.prefix)];
        let window = settings.duplicate_window;
        match js.get_stream(&this.name).await {
            Ok(mut existing) => {
                let mut config = existing.info().await.map_err(js_err)?.config.clone();
                if config.storage != storage {
                    return Err(LogError::Jetstream(format!(
                        "stream {} exists with {:?} storage but nats.storage says {:?}; \
                         storage cannot change in place",
                        this.name, config.storage, storage
                    )));
                }
                if config.subjects != subjects
                    || config.duplicate_window != window
                    || config.num_replicas != settings.replicas
                {
                    config.subjects = subjects;
                    config.duplicate_window = window;
                    config.num_replicas = settings.replicas;
                    js.update_stream(&config).await.map_err(js_err)?;
                }
            }
            Err(_) => {
                js.create_stream(stream::Config {
                    name: this.name.clone(),
                    subjects,
                    storage,
                    num_replicas: settings.replicas,
                    duplicate_window: window,
                    retention: stream::RetentionPolicy::Limits,
                    // An outcome once published is never changed.
                    deny_delete: true,
                    deny_purge: true,
                    allow_direct: true,
                    description: Some(format!(
                        "wxledger outcomes: decisions folded from {}",
                        settings.stream
                    )),
                    ..Default::default()
                })
                .await
                .map_err(js_err)?;
            }
        }
        Ok(this)
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subject an outcome type is published on: `<prefix>_outcome.<type>`.
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{kind}", self.prefix)
    }

    /// Publishes one message with `Nats-Msg-Id` = `id` and waits for the acknowledgement;
    /// inside the duplicate window a repeat of `id` stores nothing new.
    pub async fn publish(
        &self,
        id: &str,
        kind: &str,
        payload: Bytes,
    ) -> Result<Appended, LogError> {
        self.log.publish(self.subject(kind), id, payload).await
    }
}

/// Why a publishing round ended; the publisher starts over after a pause.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// NATS failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<tokio_postgres::Error> for PublishError {
    fn from(e: tokio_postgres::Error) -> Self {
        PublishError::Db(DbError::Query(e))
    }
}

/// Publishes the outbox of one schema.
pub struct Publisher {
    pg: db::PgConfig,
    schema: String,
    stream: OutcomeStream,
    applied: watch::Receiver<u64>,
    poll: Duration,
    batch_size: usize,
    metrics: Metrics,
}

/// The name of the publisher's advisory lock within a schema.
const LOCK: &str = "outcomes";

impl Publisher {
    /// A publisher of the outbox in `schema` to `stream`; it wakes when `applied` changes
    /// (the local projector's commits) and every `poll`.
    pub fn new(
        pg: db::PgConfig,
        schema: &str,
        stream: OutcomeStream,
        applied: watch::Receiver<u64>,
        poll: Duration,
        batch_size: usize,
        metrics: Metrics,
    ) -> Self {
        Self {
            pg,
            schema: schema.to_owned(),
            stream,
            applied,
            poll,
            batch_size: batch_size.max(1),
            metrics,
        }
    }

    /// Runs until `stop` is cancelled: waits for the lock, then drains the outbox at every
    /// wake-up; after an error it pauses and starts over.
    pub async fn run(mut self, stop: CancellationToken) {
        let idle = self.poll;
        leader::run(
            &mut self,
            &stop,
            idle,
            "outcome publishing failed; the outbox keeps them",
        )
        .await;
        tracing::info!("outcome publisher stopped");
    }
}

impl leader::Round for Publisher {
    type Error = PublishError;

    /// One attempt: lock, then publish at every wake-up until stopped or failed. The
    /// connection, and with it the lock, is dropped when this returns.
    async fn round(&mut self, stop: &CancellationToken) -> Result<(), PublishError> {
        let Some(client) = leader::lead(&self.pg, &self.schema, LOCK).await? else {
            tracing::debug!("another outcome publisher holds the lock; standing by");
            return Ok(());
        };
        tracing::info!(stream = self.stream.name(), "outcome publisher active");
        // Without a local projector the sender is gone: polling alone tells.
        let mut local = true;
        loop {
            self.drain(&client, stop).await?;
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                changed = self.applied.changed(), if local => local = changed.is_ok(),
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

impl Publisher {
    /// Publishes every committed outbox row, oldest first, deleting each page once it
    /// is acknowledged. Stops at the first failure (later rows must not overtake it),
    /// and after the message in hand once `stop` is cancelled.
    async fn drain(
        &self,
        client: &tokio_postgres::Client,
        stop: &CancellationToken,
    ) -> Result<(), PublishError> {
        loop {
            let page = outbox::next(client, self.batch_size).await?;
            let mut done: Vec<&str> = Vec::with_capacity(page.len());
            let mut failed = None;
            for pending in &page {
                if stop.is_cancelled() {
                    break;
                }
                match self.publish(pending).await {
                    Ok(()) => done.push(&pending.id),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            outbox::delete(client, &done).await?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            if page.len() < self.batch_size || stop.is_cancelled() {
                return Ok(());
            }
        }
    }

    async fn publish(&self, pending: &Pending) -> Result<(), LogError> {
        // Re-read as an outcome, so the message keeps the envelope's field order (jsonb
        // does not); a row this build cannot read goes out as stored.
        let payload = match serde_json::from_value::<Outcome>(pending.payload.clone()) {
            Ok(outcome) => serde_json::to_vec(&outcome),
            Err(_) => serde_json::to_vec(&pending.payload),
        }
        .expect("JSON values always serialize");
        let ack = self
            .stream
            .publish(&pending.id, &pending.kind, Bytes::from(payload))
            .await?;
        tracing::debug!(
            id = %pending.id,
            source_seq = pending.seq,
            outcome_seq = ack.seq,
            duplicate = ack.duplicate,
            "outcome published"
        );
        // A kind this build does not know (a newer build's row) is counted as `other`.
        let kind = OutcomeKind::ALL
            .into_iter()
            .map(OutcomeKind::as_str)
            .find(|k| *k == pending.kind)
            .unwrap_or("other");
        self.metrics.outcome_published(kind);
        Ok(())
    }
}
