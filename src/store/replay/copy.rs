//! The full rebuild: fold the stream from sequence 1 in memory and bulk-load the result
//! with binary COPY into the replay's build schema, which takes its name only once
//! complete (`replay_with`), so the loads need no transaction of their own. The live
//! projector's sink writes small batches of changed rows (`projector::apply_batch`); this
//! one writes every row once. Both run the same fold (`State::apply`), so they give the
//! same tables (tests/it/replay.rs).
//!
//! Four tasks overlap: one reads the stream, this one decodes and folds, two write to
//! Postgres on a connection each. Postings are written by the first as the fold goes
//! (the fold never reads them back); the other tables are written from the final state
//! by both, half each, and each then builds half the secondary indexes.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::{as_of::AsOf, error::ReplayError, progress::Progress};

use crate::{
    core::{
        events::Quarantine,
        fold::{KeptVerdict, LedgerEntry, State},
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

/// What the first writer is handed.
enum Load {
    /// Postings, in order.
    Entries(Vec<LedgerEntry>),
    /// The final state, its verdicts and the sequence of the last event folded: write
    /// its share of the rest.
    Rest(Arc<State>, Vec<KeptVerdict>, Option<u64>),
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

/// Folds every event up to `end` that `as_of` includes, but those in `quarantine`, and
/// loads the tables of the `clients`' schema (migrated and empty; both on the same one)
/// with the result. `progress` is called about once a second and once at the end.
pub async fn rebuild(
    clients: [tokio_postgres::Client; 2],
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
    let [first, second] = clients;
    let indexes = drop_indexes(&first).await?;
    let (first_indexes, second_indexes) = share_indexes(indexes);
    let (load_tx, loads) = mpsc::channel(2);
    let (entries_done_tx, entries_done) = oneshot::channel();
    let (rest_tx, rest) = oneshot::channel();
    let writer = tokio::spawn(write(first, loads, entries_done_tx, first_indexes));
    let helper = tokio::spawn(write_more(second, rest, entries_done, second_indexes));

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
        let verdicts = state.take_verdicts();
        let state = Arc::new(std::mem::take(&mut state));
        // The second writer starts on its tables while the first writes the last postings.
        let _ = rest_tx.send(Arc::clone(&state));
        if load_tx.send(Load::Entries(entries)).await.is_ok() {
            let _ = load_tx.send(Load::Rest(state, verdicts, last)).await;
        }
        Ok(())
    }
    .await;
    drop(load_tx);
    reader.abort();
    if let Err(e) = folded {
        // What they wrote stays in the build schema, which never takes the target's name.
        writer.abort();
        helper.abort();
        return Err(e);
    }
    let mut loaded = writer
        .await
        .map_err(|e| ReplayError::Stopped(format!("the writer: {e}")))??;
    let more = helper
        .await
        .map_err(|e| ReplayError::Stopped(format!("the second writer: {e}")))??;
    for (table, rows) in more.tables {
        loaded.add(table, rows);
    }
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

/// A secondary index: its table and its definition.
struct Index {
    table: String,
    definition: String,
}

/// Drops the schema's secondary indexes, to be built once at the end from the loaded
/// tables (sorted) rather than updated row by row, and the postings' primary key (the
/// only table loaded while the fold runs, where its upkeep took CPU from the fold; a
/// duplicate fails the rebuild when the key is added back, as it failed the COPY). The
/// other constraints' indexes stay.
async fn drop_indexes(client: &tokio_postgres::Client) -> Result<Vec<Index>, ReplayError> {
    let mut indexes = Vec::new();
    let keys = client
        .query(
            "SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = 'ledger_entries'::regclass AND contype = 'p'",
            &[],
        )
        .await?;
    for key in &keys {
        let (name, definition): (String, String) = (key.get(0), key.get(1));
        client
            .batch_execute(&format!(
                "ALTER TABLE ledger_entries DROP CONSTRAINT {name}"
            ))
            .await?;
        indexes.push(Index {
            table: "ledger_entries".into(),
            definition: format!("ALTER TABLE ledger_entries ADD CONSTRAINT {name} {definition}"),
        });
    }
    let rows = client
        .query(
            "SELECT quote_ident(i.indexname), i.tablename::text, i.indexdef FROM pg_indexes i
             WHERE i.schemaname = current_schema()
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                   WHERE c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)
             ORDER BY i.tablename, i.indexname",
            &[],
        )
        .await?;
    for row in &rows {
        let name: String = row.get(0);
        client.batch_execute(&format!("DROP INDEX {name}")).await?;
        indexes.push(Index {
            table: row.get(1),
            definition: row.get(2),
        });
    }
    Ok(indexes)
}

/// The tables the second writer loads from the final state (the first loads the others).
const SECOND_WRITER_TABLES: [&str; 3] = ["orders", "refunds", "balances"];

/// Splits the indexes between the writers: each builds those of the tables it loaded,
/// and the postings' (the largest table) go to both in turn.
fn share_indexes(indexes: Vec<Index>) -> (Vec<Index>, Vec<Index>) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let mut postings = 0;
    for index in indexes {
        if index.table == "ledger_entries" {
            postings += 1;
            if postings % 2 == 0 {
                second.push(index);
            } else {
                first.push(index);
            }
        } else if SECOND_WRITER_TABLES.contains(&index.table.as_str()) {
            second.push(index);
        } else {
            first.push(index);
        }
    }
    (first, second)
}

/// Writes the postings the fold hands over, then (told so by `entries_done`) its share of
/// the final state, the checkpoint and its share of the indexes.
async fn write(
    client: tokio_postgres::Client,
    mut loads: mpsc::Receiver<Load>,
    entries_done: oneshot::Sender<()>,
    indexes: Vec<Index>,
) -> Result<Loaded, ReplayError> {
    let mut loaded = Loaded::default();
    let mut entries_done = Some(entries_done);
    while let Some(load) = loads.recv().await {
        match load {
            Load::Entries(entries) => {
                loaded.add("ledger_entries", copy_in(&client, &entries).await?);
            }
            Load::Rest(state, verdicts, last) => {
                if let Some(done) = entries_done.take() {
                    let _ = done.send(());
                }
                loaded.add("users", copy_in(&client, state.users.iter()).await?);
                loaded.add("payments", copy_in(&client, state.ledger.payments()).await?);
                loaded.add(
                    "failure_log",
                    copy_in(&client, state.ledger.failures()).await?,
                );
                loaded.add("verdicts", copy_in(&client, &verdicts).await?);
                drop(verdicts);
                if let Some(last) = last {
                    let last = i64::try_from(last).expect("sequences fit in i64");
                    client
                        .execute(
                            "INSERT INTO projector_checkpoints (projection, last_seq, updated_at)
                             VALUES ($1, $2, now())",
                            &[&PROJECTION, &last],
                        )
                        .await?;
                }
                drop(state);
                build_indexes(&client, &indexes).await?;
                return Ok(loaded);
            }
        }
    }
    Err(ReplayError::Stopped(
        "the fold handed over no final state".into(),
    ))
}

/// Writes the second writer's share of the final state, then its share of the indexes
/// (the postings' once the first writer has written them all).
async fn write_more(
    client: tokio_postgres::Client,
    rest: oneshot::Receiver<Arc<State>>,
    entries_done: oneshot::Receiver<()>,
    indexes: Vec<Index>,
) -> Result<Loaded, ReplayError> {
    let stopped = |_| ReplayError::Stopped("the fold handed over no final state".into());
    let state = rest.await.map_err(stopped)?;
    let mut loaded = Loaded::default();
    loaded.add("orders", copy_in(&client, state.orders.iter()).await?);
    loaded.add("refunds", copy_in(&client, state.refunds.iter()).await?);
    loaded.add("balances", copy_in(&client, state.ledger.balances()).await?);
    drop(state);
    let (postings, others): (Vec<Index>, Vec<Index>) = indexes
        .into_iter()
        .partition(|i| i.table == "ledger_entries");
    build_indexes(&client, &others).await?;
    if !postings.is_empty() {
        entries_done.await.map_err(stopped)?;
        build_indexes(&client, &postings).await?;
    }
    Ok(loaded)
}

async fn build_indexes(
    client: &tokio_postgres::Client,
    indexes: &[Index],
) -> Result<(), ReplayError> {
    for index in indexes {
        client.batch_execute(&index.definition).await?;
    }
    Ok(())
}
