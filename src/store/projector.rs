//! The projector: reads the stream in order from `checkpoint + 1` and applies each batch
//! of events, with the new checkpoint, in one Postgres transaction. One active projector
//! per projection and schema (a session advisory lock on a dedicated connection); others
//! stand by. It stops cleanly after the batch in hand. The live projector also writes each
//! batch's outcomes to the outbox in that transaction (see [`crate::store::outcomes`]).
//! It reads only the stream its projection was built from ([`crate::store::identity`]).
//!
//! [`ProjectionWatch`] lets a caller wait until an event is applied and read the fold's
//! [`Verdict`] on it, which the batch stores with its rows (`verdicts`), so it reaches the
//! caller whichever process applied the event.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub mod error;
mod waiting;

pub use error::{load_checkpoint, ProjectorError, PROJECTION};
pub use waiting::{NotYetApplied, ProjectionWatch, VerdictError};

use crate::{
    core::{
        events::{quarantine::envelope_kind, DecodeError, Quarantine, Recorded},
        fold::{Keys, State, Verdict},
    },
    daemon::metrics::Metrics,
    store::{
        db::{self, leader, orders, refunds, users, verdicts},
        identity,
        outcomes::{self, outbox},
        stream::{EventLog, LogError},
    },
};

/// Folds the stream into the schema's tables.
pub struct Projector {
    pg: db::PgConfig,
    schema: String,
    log: EventLog,
    batch_size: usize,
    linger: Duration,
    applied: watch::Sender<u64>,
    metrics: Option<Metrics>,
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
        }
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
        let Some(mut client) = leader::lead(&self.pg, &self.schema, PROJECTION).await? else {
            tracing::debug!("another projector holds the lock; standing by");
            return Ok(());
        };
        let _leading = self
            .metrics
            .as_ref()
            .map(|m| crate::daemon::metrics::leader::Leading::new(m, "projector"));
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
            let mut batch = vec![first?];
            while batch.len() < self.batch_size {
                match tokio::time::timeout(self.linger, messages.next()).await {
                    Ok(Some(next)) => batch.push(next?),
                    Ok(None) | Err(_) => break,
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
                            .commit(&mut client, checkpoint, passed, &mut records)
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
                .commit(&mut client, checkpoint, passed, &mut records)
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
        checkpoint: u64,
        through: u64,
        records: &mut Vec<Recorded>,
    ) -> Result<u64, ProjectorError> {
        if through <= checkpoint {
            return Ok(checkpoint);
        }
        let started = std::time::Instant::now();
        let checkpoint = apply(client, checkpoint, through, records, true).await?;
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
    apply(client, checkpoint, last, records, false).await
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
    apply(client, checkpoint, last, records, true).await
}

/// Folds `records` and moves the checkpoint to `last` (the last record's sequence, or
/// past quarantined events after it).
async fn apply(
    client: &mut tokio_postgres::Client,
    checkpoint: u64,
    last: u64,
    records: &[Recorded],
    with_outcomes: bool,
) -> Result<u64, ProjectorError> {
    let tx = client.transaction().await?;
    let mut keys = Keys::default();
    records.iter().for_each(|r| keys.add(&r.event));
    let mut state = State::default();
    for user in users::load_for(&tx, &keys).await? {
        state.users.load(user);
    }
    // Two phases: a payment may credit the wallet of an order placed in an earlier batch,
    // so the loaded orders name more accounts to load.
    for order in orders::load_orders(&tx, &keys).await? {
        keys.add_order(&order);
        state.orders.load(order);
    }
    for refund in refunds::load(&tx, &keys).await? {
        state.refunds.load(refund);
    }
    for payment in orders::load_payments(&tx, &keys).await? {
        state.ledger.load_payment(payment);
    }
    for balance in orders::load_balances(&tx, &keys).await? {
        state.ledger.load_balance(balance);
    }
    let verdicts = state.apply_all(records);
    for (rec, verdict) in records.iter().zip(&verdicts) {
        if let Verdict::Refused(refusal) = verdict {
            tracing::info!(
                seq = rec.seq,
                kind = rec.event.kind(),
                reason = refusal.as_str(),
                "event refused by the fold"
            );
        }
    }
    let failures = state.ledger.take_new_failures();
    for f in &failures {
        tracing::warn!(
            seq = f.seq,
            reason = %f.reason,
            out_trade_no = f.out_trade_no.as_deref(),
            transaction_id = f.transaction_id.as_deref(),
            amount = f.amount,
            "payment failure logged"
        );
    }
    users::upsert(&tx, &state.users.take_changed()).await?;
    orders::upsert_orders(&tx, &state.orders.take_changed()).await?;
    refunds::upsert(&tx, &state.refunds.take_changed()).await?;
    orders::insert_payments(&tx, &state.ledger.take_new_payments()).await?;
    let entries = state.ledger.take_new_entries();
    orders::insert_entries(&tx, &entries).await?;
    orders::upsert_balances(&tx, &state.ledger.take_changed_balances()).await?;
    orders::insert_failures(&tx, &failures).await?;
    verdicts::insert(&tx, &state.take_verdicts()).await?;
    if with_outcomes {
        let decided = outcomes::derive(records, &verdicts, &entries, &failures, &state);
        outbox::insert(&tx, &decided).await?;
    }
    let (old, new) = (
        i64::try_from(checkpoint).expect("sequences fit in i64"),
        i64::try_from(last).expect("sequences fit in i64"),
    );
    let moved = tx
        .execute(
            "INSERT INTO projector_checkpoints (projection, last_seq, updated_at)
             VALUES ($1, $3, now())
             ON CONFLICT (projection) DO UPDATE SET last_seq = $3, updated_at = now()
             WHERE projector_checkpoints.last_seq = $2",
            &[&PROJECTION, &old, &new],
        )
        .await?;
    if moved != 1 {
        return Err(ProjectorError::CheckpointMoved);
    }
    tx.commit().await?;
    tracing::debug!(from = checkpoint + 1, to = last, "batch applied");
    Ok(last)
}
