//! The full rebuild: fold the stream from sequence 1 in memory and bulk-load the result
//! with binary COPY, in one transaction. The live projector's sink writes small batches
//! of changed rows (`projector::apply_batch`); this one writes every row once. Both run
//! the same fold (`State::apply`), so they give the same tables (tests/it/replay.rs).
//!
//! Three tasks overlap: one reads the stream, this one decodes and folds, one writes
//! to Postgres. Postings are written as the fold goes (the fold never reads them back);
//! the other tables are written from the final state.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{as_of::AsOf, error::ReplayError, progress::Progress};

use crate::{
    core::{
        events::Quarantine,
        fold::{LedgerEntry, State},
    },
    store::{
        db::copy::copy_in,
        projector::{ProjectorError, PROJECTION},
        stream::{EventLog, LogError},
    },
};

// Debug builds (the tests) use tiny sizes, so that a short history crosses many chunk
// and flush boundaries and the test comparing both sinks covers them.
/// Messages handed from the reader to the fold at a time.
const READ_CHUNK: usize = if cfg!(debug_assertions) { 3 } else { 1_024 };
/// Postings held before they are handed to the writer.
const FLUSH_ENTRIES: usize = if cfg!(debug_assertions) { 5 } else { 50_000 };

/// What the writer is handed.
enum Load {
    /// Postings, in order.
    Entries(Vec<LedgerEntry>),
    /// The final state and the sequence of the last event folded: write the rest and
    /// commit.
    Rest(Box<State>, Option<u64>),
}

/// Rows written per table, and where the time went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// `(table, rows)`, in the order written.
    pub tables: Vec<(&'static str, u64)>,
    /// From the start until the last event was folded (postings were written meanwhile).
    pub folded_after: Duration,
}

impl Loaded {
    /// Rows written in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, table: &'static str, rows: u64) {
        match self.tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n += rows,
            None => self.tables.push((table, rows)),
        }
    }
}

/// Folds every event up to `end` that `as_of` includes, but those in `quarantine`, and loads the tables of
/// `client`'s schema (migrated and empty) with the result, committed at once or not at
/// all. `progress` is called about once a second and once at the end.
pub async fn rebuild(
    client: tokio_postgres::Client,
    log: EventLog,
    quarantine: &Quarantine,
    as_of: AsOf,
    end: u64,
    mut progress: impl FnMut(&Progress),
) -> Result<(Progress, Loaded), ReplayError> {
    let started = Instant::now();
    let mut done = Progress::start(end);
    let (chunks_tx, mut chunks) = mpsc::channel(32);
    let reader = tokio::spawn(read(log, end, chunks_tx));
    let (load_tx, loads) = mpsc::channel(2);
    let writer = tokio::spawn(write(client, loads));

    let mut state = State::default();
    let mut last = None;
    let mut last_report = Instant::now();
    let mut folded_after = Duration::ZERO;
    let folded: Result<(), ReplayError> = async {
        while let Some(chunk) = chunks.recv().await {
            for (seq, payload) in chunk? {
                done.read += 1;
                done.seq = seq;
                let Some(rec) = quarantine
                    .read(seq, &payload)
                    .map_err(|source| ProjectorError::Decode { seq, source })?
                else {
                    // Skipped: the checkpoint passes it, as the live one does, when it
                    // reached the event before it (a time may have stopped it earlier).
                    if last.unwrap_or(0) + 1 == seq {
                        done.checkpoint = seq;
                        last = Some(seq);
                    }
                    continue;
                };
                if as_of.includes(&rec) {
                    state.apply(&rec);
                    done.applied += 1;
                    done.checkpoint = seq;
                    last = Some(seq);
                }
            }
            if state.ledger.entries().len() >= FLUSH_ENTRIES {
                let entries = state.ledger.drain_entries();
                if load_tx.send(Load::Entries(entries)).await.is_err() {
                    // The writer stopped: its error is the one to report.
                    return Ok(());
                }
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                done.elapsed = started.elapsed();
                progress(&done);
                last_report = Instant::now();
            }
        }
        folded_after = started.elapsed();
        let entries = state.ledger.drain_entries();
        if load_tx.send(Load::Entries(entries)).await.is_ok() {
            let _ = load_tx
                .send(Load::Rest(Box::new(std::mem::take(&mut state)), last))
                .await;
        }
        Ok(())
    }
    .await;
    drop(load_tx);
    reader.abort();
    if let Err(e) = folded {
        // Dropping the writer's transaction rolls it back.
        writer.abort();
        return Err(e);
    }
    let mut loaded = writer
        .await
        .map_err(|e| ReplayError::Stopped(format!("the writer: {e}")))??;
    loaded.folded_after = folded_after;
    done.elapsed = started.elapsed();
    progress(&done);
    Ok((done, loaded))
}

/// Sends the stream's messages up to `end`, in order, in chunks.
async fn read(log: EventLog, end: u64, out: mpsc::Sender<Result<Vec<(u64, Bytes)>, ReplayError>>) {
    if end == 0 {
        return;
    }
    let mut messages = match log.read_range(1..=end).await {
        Ok(m) => m,
        Err(e) => {
            let _ = out.send(Err(e.into())).await;
            return;
        }
    };
    let mut chunk = Vec::with_capacity(READ_CHUNK);
    while let Some(message) = messages.next().await {
        let (seq, payload) = match message {
            Ok(m) => m,
            Err(e) => {
                let _ = out.send(Err(e.into())).await;
                return;
            }
        };
        chunk.push((seq, payload));
        if chunk.len() == READ_CHUNK || seq == end {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(READ_CHUNK));
            if out.send(Ok(full)).await.is_err() || seq == end {
                return;
            }
        }
    }
    if chunk.is_empty() {
        let _ = out
            .send(Err(ReplayError::Log(LogError::Jetstream(
                "event stream ended before the last sequence".into(),
            ))))
            .await;
    } else {
        let _ = out.send(Ok(chunk)).await;
    }
}

/// Writes what the fold hands over in one transaction, committed after the rest.
async fn write(
    mut client: tokio_postgres::Client,
    mut loads: mpsc::Receiver<Load>,
) -> Result<Loaded, ReplayError> {
    let tx = client.transaction().await?;
    // Secondary indexes are built once at the end, from sorted data, rather than
    // updated row by row; the ones behind constraints stay.
    let indexes: Vec<(String, String)> = tx
        .query(
            "SELECT quote_ident(i.indexname), i.indexdef FROM pg_indexes i
             WHERE i.schemaname = current_schema()
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                   WHERE c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, _) in &indexes {
        tx.batch_execute(&format!("DROP INDEX {name}")).await?;
    }
    let mut loaded = Loaded::default();
    while let Some(load) = loads.recv().await {
        match load {
            Load::Entries(entries) => {
                loaded.add("ledger_entries", copy_in(&tx, &entries).await?);
            }
            Load::Rest(mut state, last) => {
                loaded.add("users", copy_in(&tx, state.users.iter()).await?);
                loaded.add("orders", copy_in(&tx, state.orders.iter()).await?);
                loaded.add("refunds", copy_in(&tx, state.refunds.iter()).await?);
                loaded.add("payments", copy_in(&tx, state.ledger.payments()).await?);
                loaded.add("balances", copy_in(&tx, state.ledger.balances()).await?);
                loaded.add("failure_log", copy_in(&tx, state.ledger.failures()).await?);
                loaded.add("verdicts", copy_in(&tx, &state.take_verdicts()).await?);
                if let Some(last) = last {
                    let last = i64::try_from(last).expect("sequences fit in i64");
                    tx.execute(
                        "INSERT INTO projector_checkpoints (projection, last_seq, updated_at)
                         VALUES ($1, $2, now())",
                        &[&PROJECTION, &last],
                    )
                    .await?;
                }
                for (_, definition) in &indexes {
                    tx.batch_execute(definition).await?;
                }
                tx.commit().await?;
                return Ok(loaded);
            }
        }
    }
    // The fold stopped early: nothing is committed.
    Err(ReplayError::Stopped(
        "the fold handed over no final state".into(),
    ))
}
