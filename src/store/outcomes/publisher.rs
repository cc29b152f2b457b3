//! The publisher: sends committed outbox rows to the outcome stream in (seq, id) order,
//! each with `Nats-Msg-Id` = the outcome id, and deletes a row once JetStream acknowledged
//! it. It wakes on every local projector commit and polls besides (a projector in another
//! process commits too). One active publisher per schema (a session advisory lock);
//! others stand by. While NATS is away rows wait: nothing is lost, nothing goes out before
//! its commit, and a row published again after a crash is the same message id.
//!
//! The lock alone cannot keep order: a publisher paused after reading a page does not
//! know that its connection, and with it the lock, is gone while another publisher went
//! on. So each publish is fenced: it carries the outcome stream's last sequence as this
//! publisher knows it (read once it holds the lock, then the sequence of each message it
//! stored), and JetStream refuses it when anyone else stored a message since. A refused
//! publisher ends its round and gives up the lock; the next round reads the stream again.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    outbox::{self, Pending},
    Outcome, OutcomeKind, OutcomeStream,
};
use crate::{
    daemon::metrics::Metrics,
    store::{
        db::{self, leader, DbError},
        stream::LogError,
    },
};

/// Why a publishing round ended; the publisher starts over after a pause.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// NATS failed.
    #[error(transparent)]
    Log(LogError),
    /// The outcome stream moved on since this publisher last knew it: another publisher
    /// stored outcomes meanwhile. This one stops before storing anything out of order.
    #[error(
        "another outcome publisher stored outcomes after sequence {expected}; \
         this one stands down"
    )]
    Overtaken {
        /// The last sequence this publisher knew.
        expected: u64,
    },
}

impl From<LogError> for PublishError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Overtaken { expected } => PublishError::Overtaken { expected },
            other => PublishError::Log(other),
        }
    }
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

/// One round's hold on the outbox: the connection holding the publisher's lock, and the
/// outcome stream's last sequence as this publisher knows it, the condition of its next
/// publish. Dropping it closes the connection and gives up the lock.
pub struct Lease {
    client: tokio_postgres::Client,
    last: u64,
}

impl Lease {
    /// The outcome stream's last sequence as this holder knows it.
    pub fn last_seq(&self) -> u64 {
        self.last
    }
}

impl leader::Round for Publisher {
    type Error = PublishError;

    /// One attempt: lock, then publish at every wake-up until stopped or failed. The
    /// connection, and with it the lock, is dropped when this returns.
    async fn round(&mut self, stop: &CancellationToken) -> Result<(), PublishError> {
        let Some(mut lease) = self.lead().await? else {
            tracing::debug!("another outcome publisher holds the lock; standing by");
            return Ok(());
        };
        let _leading = crate::daemon::metrics::leader::Leading::new(&self.metrics, "publisher");
        tracing::info!(
            stream = self.stream.name(),
            last_seq = lease.last,
            "outcome publisher active"
        );
        // Without a local projector the sender is gone: polling alone tells.
        let mut local = true;
        loop {
            self.drain(&mut lease, stop).await?;
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                changed = self.applied.changed(), if local => local = changed.is_ok(),
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

/// The steps of a round, in the order [`Publisher::run`] takes them; public so a test can
/// hold a publisher between two of them.
impl Publisher {
    /// Takes the lock and reads the outcome stream's last sequence, in that order: a
    /// publisher that held the lock before can only have stored more since, which fences
    /// this one's first publish, never the other way round. `None` while another session
    /// holds the lock.
    pub async fn lead(&self) -> Result<Option<Lease>, PublishError> {
        let Some(client) = leader::lead(&self.pg, &self.schema, LOCK).await? else {
            return Ok(None);
        };
        let last = self.stream.last_seq().await?;
        Ok(Some(Lease { client, last }))
    }

    /// The next outcomes to publish, oldest first, at most a batch.
    pub async fn page(&self, lease: &Lease) -> Result<Vec<Pending>, PublishError> {
        Ok(outbox::next(&lease.client, self.batch_size).await?)
    }

    /// Publishes one outcome if the stream's last sequence is still the lease's, and
    /// moves the lease to the message stored. A repeat inside the duplicate window is
    /// answered as stored before and leaves the lease where it was.
    pub async fn send(&self, lease: &mut Lease, pending: &Pending) -> Result<(), PublishError> {
        // Re-read as an outcome, so the message keeps the envelope's field order (jsonb
        // does not); a row this build cannot read goes out as stored.
        let payload = match serde_json::from_value::<Outcome>(pending.payload.clone()) {
            Ok(outcome) => serde_json::to_vec(&outcome),
            Err(_) => serde_json::to_vec(&pending.payload),
        }
        .expect("JSON values always serialize");
        let ack = self
            .stream
            .publish(&pending.id, &pending.kind, lease.last, Bytes::from(payload))
            .await?;
        if !ack.duplicate {
            lease.last = ack.seq;
        }
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

    /// Deletes the outcomes named, once published, from the outbox.
    pub async fn forget(&self, lease: &Lease, ids: &[&str]) -> Result<(), PublishError> {
        outbox::delete(&lease.client, ids).await?;
        Ok(())
    }

    /// Publishes every committed outbox row, oldest first, deleting each page once it
    /// is acknowledged. Stops at the first failure (later rows must not overtake it),
    /// and after the message in hand once `stop` is cancelled.
    async fn drain(&self, lease: &mut Lease, stop: &CancellationToken) -> Result<(), PublishError> {
        loop {
            let page = self.page(lease).await?;
            let mut done: Vec<&str> = Vec::with_capacity(page.len());
            let mut failed = None;
            for pending in &page {
                if stop.is_cancelled() {
                    break;
                }
                match self.send(lease, pending).await {
                    Ok(()) => done.push(&pending.id),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            self.forget(lease, &done).await?;
            if let Some(e) = failed {
                return Err(e);
            }
            if page.len() < self.batch_size || stop.is_cancelled() {
                return Ok(());
            }
        }
    }
}
