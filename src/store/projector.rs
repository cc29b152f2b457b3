//! The projector: reads the stream in order from `checkpoint + 1` and applies each batch
//! of events, with the new checkpoint, in one Postgres transaction. One active projector
//! per projection and schema (a session advisory lock on a dedicated connection); others
//! stand by. It stops cleanly after the batch in hand. The live projector also writes each
//! batch's outcomes to the outbox in that transaction (see [`crate::store::outcomes`]).
//! It reads only the stream its projection was built from ([`crate::store::identity`]).
//!
//! [`ProjectionWatch`] lets a caller wait until an event is applied and read the fold's
//! [`crate::core::fold::Verdict`] on it, which the batch stores with its rows
//! (`verdicts`), so it reaches the caller whichever process applied the event.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod batch;
pub mod error;
mod waiting;

pub use error::{load_checkpoint, ProjectorError, PROJECTION};
pub use waiting::{Demand, NotYetApplied, ProjectionWatch, VerdictError};

use crate::{
    core::events::{quarantine::envelope_kind, DecodeError, Quarantine, Recorded},
    daemon::metrics::Metrics,
    store::{
        db::{self, leader},
        identity,
        stream::{EventLog, LogError},
    },
};
use batch::{apply, Statements};

/// Folds the stream into the schema's tables.
pub struct Projector {
    pg: db::PgConfig,
    schema: String,
    log: EventLog,
    batch_size: usize,
    linger: Duration,
    applied: watch::Sender<u64>,
    metrics: Option<Metrics>,
    demand: Demand,
    /// When this projector, standing by, last judged the stream.
    identity_checked: Option<std::time::Instant>,
}

impl Projector {
    /// A projector; `applied` receives the checkpoint after every commit.
    pub fn new(
        pg: db::PgConfig,
        schema: &str,
        log: EventLog,
        batch_size: usize,
        linger: Duration,
        applied: watch::Sender<u64>,
    ) -> Self {
        Self {
            pg,
            schema: schema.to_owned(),
            log,
            batch_size,
            linger,
            applied,
            metrics: None,
            demand: Demand::default(),
            identity_checked: None,
        }
    }

    /// Lingers only while no caller of the [`ProjectionWatch`] sharing `demand` waits.
    pub fn with_demand(mut self, demand: Demand) -> Self {
        self.demand = demand;
        self
    }

    /// Records each batch's size and duration in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs until `stop` is cancelled: waits for the lock, then follows the stream;
    /// after an error it pauses and starts again from the checkpoint.
    pub async fn run(mut self, stop: CancellationToken) {
        leader::run(
            &mut self,
            &stop,
            Duration::from_millis(100),
            "projector round failed; starting over from the checkpoint",
        )
        .await;
        tracing::info!("projector stopped");
    }
}

impl leader::Round for Projector {
    type Error = ProjectorError;

    /// One attempt: lock, then apply batches until stopped or failed. The connection,
    /// and with it the lock, is dropped when this returns.
    async fn round(&mut self, stop: &CancellationToken) -> Result<(), ProjectorError> {
        let mut client = match leader::try_lead(&self.pg, &self.schema, PROJECTION).await? {
            leader::Lead::Leading(client) => client,
            leader::Lead::Standby(client) => {
                tracing::debug!("another projector holds the lock; standing by");
                // A standby judges the stream too, so that its process's watch and
                // readiness (both read the metrics) refuse a stream the active one refuses.
                let due = self
                    .identity_checked
                    .is_none_or(|at| at.elapsed() >= identity::RECHECK);
                if let (true, Some(metrics)) = (due, &self.metrics) {
                    self.identity_checked = Some(std::time::Instant::now());
                    // Read before the stream's end, which only grows: a checkpoint the
                    // active projector moves meanwhile is never taken for lost writes.
                    let checkpoint = load_checkpoint(&client).await?;
                    identity::judge_standing_by(&client, &self.log, checkpoint, metrics).await?;
                }
                return Ok(());
            }
        };
        let _leading = self
            .metrics
            .as_ref()
            .map(|m| crate::daemon::metrics::leader::Leading::new(m, "projector"));
        let statements = Statements::prepare(&client).await?;
        let mut checkpoint = load_checkpoint(&client).await?;
        self.applied.send_replace(checkpoint);
        let metrics = self.metrics.as_ref();
        let Some(known) = identity::hold(&client, &self.log, checkpoint, metrics, stop).await?
        else {
            return Ok(());
        };
        tracing::info!(checkpoint, "projector active");
        let mut quarantine = self.log.quarantine().await?;
        let messages = self.log.read_from(checkpoint + 1).await?;
        let mut messages = identity::watched(&self.log, known, checkpoint, messages);
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let Some(first) = first else {
                return Err(LogError::Jetstream("event stream ended".into()).into());
            };
            // The batch is what was delivered while the last one committed and what
            // arrives within the linger after its first event: a deadline, so an event
            // waits for at most one linger and one commit (a linger per next event filled
            // whole batches under steady traffic: lag ≈ batch_size / rate). No linger
            // while a caller waits for an event (read-your-writes): it is committed with
            // what was delivered.
            let mut batch = vec![first?];
            let linger_until = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch_size {
                let next = match messages.next().now_or_never() {
                    Some(next) => next,
                    None if self.linger.is_zero() || self.demand.waits_beyond(checkpoint) => break,
                    None => tokio::select! {
                        next = tokio::time::timeout_at(linger_until, messages.next()) => match next {
                            Ok(next) => next,
                            Err(_) => break,
                        },
                        () = self.demand.woken() => break,
                    },
                };
                match next {
                    Some(next) => batch.push(next?),
                    None => break,
                }
            }
            let mut records = Vec::with_capacity(batch.len());
            // The last sequence read, applied or skipped: the checkpoint passes both.
            let mut passed = checkpoint;
            let from = checkpoint;
            for (seq, payload) in batch.into_iter().filter(|(seq, _)| *seq > from) {
                let read = match quarantine.read(seq, &payload) {
                    Ok(read) => read,
                    Err(error) => {
                        // The events before it are applied: the checkpoint stops just
                        // short of the poison.
                        checkpoint = self
                            .commit(&mut client, &statements, checkpoint, passed, &mut records)
                            .await?;
                        let halt = Halt {
                            seq,
                            payload: &payload,
                            error,
                        };
                        match self.halt(&mut quarantine, halt, stop).await? {
                            Some(read) => read,
                            None => return Ok(()),
                        }
                    }
                };
                match read {
                    Some(rec) => records.push(rec),
                    None => tracing::warn!(seq, "quarantined event skipped"),
                }
                passed = seq;
            }
            checkpoint = self
                .commit(&mut client, &statements, checkpoint, passed, &mut records)
                .await?;
        }
    }
}

/// An event the projector cannot read.
struct Halt<'a> {
    seq: u64,
    payload: &'a [u8],
    error: DecodeError,
}

impl Projector {
    /// Applies `records` (taken; none is fine) after `checkpoint`, moving the checkpoint
    /// to `through` (past the events skipped after the last record), and returns it.
    async fn commit(
        &self,
        client: &mut tokio_postgres::Client,
        statements: &Statements,
        checkpoint: u64,
        through: u64,
        records: &mut Vec<Recorded>,
    ) -> Result<u64, ProjectorError> {
        if through <= checkpoint {
            return Ok(checkpoint);
        }
        let started = std::time::Instant::now();
        let checkpoint = apply(client, statements, checkpoint, through, records, true).await?;
        if let Some(m) = &self.metrics {
            m.projector_batch(records.len(), started.elapsed().as_secs_f64());
            if m.projector_halted_at().is_some_and(|seq| seq <= checkpoint) {
                m.projector_halted(None);
            }
        }
        records.clear();
        self.applied.send_replace(checkpoint);
        Ok(checkpoint)
    }

    /// Halts on an event this build cannot read, loudly (an ERROR naming its sequence,
    /// and the `wxledger_projector_halted_seq` gauge), never skipping it: it looks for a
    /// quarantine every [`HALT_RECHECK`] and returns the event's reading (`None`: skip
    /// it) once one names it, or `None` when stopped.
    async fn halt(
        &self,
        quarantine: &mut Quarantine,
        halt: Halt<'_>,
        stop: &CancellationToken,
    ) -> Result<Option<Option<Recorded>>, ProjectorError> {
        let Halt {
            seq,
            payload,
            error,
        } = halt;
        let mut alarmed = false;
        loop {
            // A quarantine may have been appended since the round began.
            *quarantine = self.log.quarantine().await?;
            if quarantine.contains(seq) {
                return Ok(Some(None));
            }
            if !alarmed {
                alarmed = true;
                let (kind, version) = envelope_kind(payload);
                tracing::error!(
                    seq,
                    kind,
                    version,
                    error = %error,
                    "projector halted: the event cannot be read; once understood, skip it \
                     with `wxledger quarantine {seq} --reason …` or deploy a build that reads it"
                );
                if let Some(m) = &self.metrics {
                    m.projector_halted(Some(seq));
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(None),
                _ = tokio::time::sleep(HALT_RECHECK) => {}
            }
        }
    }
}

/// How often a projector halted on an unreadable event looks for its quarantine.
pub const HALT_RECHECK: Duration = Duration::from_secs(1);

/// Folds `records` (all newer than `checkpoint`) over the rows they touch and commits
/// the changed rows with the new checkpoint. Returns the new checkpoint. Writes no
/// outcomes: this is the batch of a replay into another schema, which must never publish.
pub async fn apply_batch(
    client: &mut tokio_postgres::Client,
    checkpoint: u64,
    records: &[Recorded],
) -> Result<u64, ProjectorError> {
    let last = records.last().expect("batches are not empty").seq;
    let statements = Statements::prepare(client).await?;
    apply(client, &statements, checkpoint, last, records, false).await
}

/// [`apply_batch`], also writing the batch's outcomes to the outbox in the same
/// transaction (the live projector): an outcome exists exactly when its decision was
/// committed, and the publisher sends it only then.
pub async fn apply_batch_with_outcomes(
    client: &mut tokio_postgres::Client,
    checkpoint: u64,
    records: &[Recorded],
) -> Result<u64, ProjectorError> {
    let last = records.last().expect("batches are not empty").seq;
    let statements = Statements::prepare(client).await?;
    apply(client, &statements, checkpoint, last, records, true).await
}
