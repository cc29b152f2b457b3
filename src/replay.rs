//! `wxledger replay --as-of <RFC 3339 time | stream sequence> --into <schema>`: the books
//! as they were at a point in time, folded from the stream into a schema of their own
//! (the same tables as the live projection, which is left untouched).
//!
//! Two sinks run the same fold (`State::apply`) from sequence 1: by default the full
//! rebuild (`rebuild`: fold in memory, then bulk-load with COPY), or, with
//! [`Sink::Batches`], the live projector's own batch code (`projector::apply_batch`).
//! Either way the replayed tables are exactly what the live projector had written once
//! it reached that point.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use futures::StreamExt;

use crate::{
    db::{self, DbError},
    events::{EventLog, LogError, Recorded},
    projector::{apply_batch, ProjectorError},
    rebuild::{rebuild, Loaded},
    settings::{DatabaseSettings, Settings},
};

/// How many events one transaction applies.
const BATCH: usize = 2_000;

/// The point to replay to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event up to and including this stream sequence.
    Seq(u64),
    /// Every event wxledger had accepted at this time (`occurred_at` not after it).
    Time(DateTime<FixedOffset>),
}

impl AsOf {
    /// A stream sequence (digits) or an RFC 3339 time with its offset.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(seq) = s.parse::<u64>() {
            return Ok(AsOf::Seq(seq));
        }
        DateTime::parse_from_rfc3339(s)
            .map(AsOf::Time)
            .map_err(|e| {
                format!("--as-of {s:?}: neither a stream sequence nor an RFC 3339 time ({e})")
            })
    }

    pub(crate) fn includes(self, rec: &Recorded) -> bool {
        match self {
            AsOf::Seq(seq) => rec.seq <= seq,
            AsOf::Time(t) => rec.occurred_at <= t,
        }
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target schema is not usable.
    #[error("--into {schema}: {problem}")]
    Target {
        /// The schema named.
        schema: String,
        /// What is wrong.
        problem: String,
    },
    /// Postgres.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stage of the full rebuild stopped without saying why (it panicked, or the
    /// fold ended early); nothing was committed.
    #[error("the rebuild stopped: {0}")]
    Stopped(String),
    /// The stream.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Folding or writing a batch.
    #[error(transparent)]
    Projector(#[from] ProjectorError),
}

impl From<tokio_postgres::Error> for ReplayError {
    fn from(e: tokio_postgres::Error) -> Self {
        ReplayError::Db(DbError::from(e))
    }
}

/// How far a replay got.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Events read from the stream so far.
    pub read: u64,
    /// Events folded into the target so far (those inside the as-of point).
    pub applied: u64,
    /// The stream sequence reached.
    pub seq: u64,
    /// The last sequence the replay will read.
    pub end: u64,
    /// The sequence of the last event folded (0 before any): where the replayed books
    /// stand. Below `seq` when replaying as of a time, since every event is still read.
    pub checkpoint: u64,
    /// Since the start.
    pub elapsed: Duration,
}

impl Progress {
    /// Nothing done yet of a replay up to `end`.
    pub fn start(end: u64) -> Self {
        Self {
            read: 0,
            applied: 0,
            seq: 0,
            end,
            checkpoint: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Events read per second.
    pub fn rate(&self) -> f64 {
        self.read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Time left at the current rate.
    pub fn eta(&self) -> Duration {
        let left = self.end.saturating_sub(self.seq) as f64;
        Duration::from_secs_f64(left / self.rate().max(1e-9))
    }
}

/// How the folded state reaches the target schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sink {
    /// Fold everything in memory, then bulk-load every table with COPY (fast).
    #[default]
    Copy,
    /// Apply batches of events as the live projector does (slow; for comparison).
    Batches,
}

/// Folds the stream up to `as_of` into the schema `into` with the full rebuild
/// ([`Sink::Copy`]); see [`replay_with`].
pub async fn replay(
    settings: &Settings,
    as_of: AsOf,
    into: &str,
    replace: bool,
    progress: impl FnMut(&Progress),
) -> Result<Progress, ReplayError> {
    Ok(
        replay_with(settings, as_of, into, replace, Sink::Copy, progress)
            .await?
            .0,
    )
}

/// Folds the stream up to `as_of` into the schema `into`, created and migrated here. An
/// existing schema is refused unless `replace` (which drops it first). `progress` is
/// called about once a second and once at the end. With [`Sink::Copy`] it also returns
/// the rows loaded per table.
pub async fn replay_with(
    settings: &Settings,
    as_of: AsOf,
    into: &str,
    replace: bool,
    sink: Sink,
    mut progress: impl FnMut(&Progress),
) -> Result<(Progress, Option<Loaded>), ReplayError> {
    let target = target(settings, into)?;
    let pg = db::pg_config(&target)?;
    let admin = db::connect_dedicated(&pg).await?;
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&into],
        )
        .await?
        .get(0);
    if exists && !replace {
        return Err(ReplayError::Target {
            schema: into.to_owned(),
            problem: "exists; pass --replace to drop and rebuild it".into(),
        });
    }
    if exists {
        admin
            .batch_execute(&format!("DROP SCHEMA {into} CASCADE"))
            .await?;
    }
    drop(admin);
    let pool = db::pool(&target)?;
    db::migrate(&pool, into).await?;
    drop(pool);
    let mut client = db::connect_dedicated(&pg).await?;

    let log = EventLog::open(&settings.nats).await?;
    let head = log.last_seq().await?;
    let end = match as_of {
        AsOf::Seq(seq) => seq.min(head),
        AsOf::Time(_) => head,
    };
    if sink == Sink::Copy {
        let (done, loaded) = rebuild(client, log, as_of, end, progress).await?;
        return Ok((done, Some(loaded)));
    }
    let started = Instant::now();
    let mut done = Progress::start(end);
    let mut checkpoint = 0;
    let mut last_report = Instant::now();
    if end > 0 {
        let mut messages = log.read_range(1..=end).await?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(message) = messages.next().await {
            let (seq, payload) = message?;
            done.read += 1;
            done.seq = seq;
            let rec = Recorded::from_payload(seq, &payload)
                .map_err(|source| ProjectorError::Decode { seq, source })?;
            if as_of.includes(&rec) {
                batch.push(rec);
            }
            if batch.len() >= BATCH || seq == end {
                if !batch.is_empty() {
                    checkpoint = apply_batch(&mut client, checkpoint, &batch).await?;
                    done.checkpoint = checkpoint;
                    done.applied += batch.len() as u64;
                    batch.clear();
                }
                if last_report.elapsed() >= Duration::from_secs(1) {
                    done.elapsed = started.elapsed();
                    progress(&done);
                    last_report = Instant::now();
                }
            }
        }
    }
    done.elapsed = started.elapsed();
    progress(&done);
    Ok((done, None))
}

/// The database settings of the target schema, checked.
pub fn target(settings: &Settings, into: &str) -> Result<DatabaseSettings, ReplayError> {
    let problem = |p: &str| ReplayError::Target {
        schema: into.to_owned(),
        problem: p.to_owned(),
    };
    db::check_schema_name(into).map_err(problem)?;
    if into == settings.database.schema {
        return Err(problem(
            "is the live projection's schema; replay into another",
        ));
    }
    if matches!(into, "public" | "pg_catalog" | "information_schema") {
        return Err(problem("is a system schema"));
    }
    Ok(DatabaseSettings {
        url: settings.database.url.clone(),
        schema: into.to_owned(),
        pool_size: 2,
        connect_timeout_secs: settings.database.connect_timeout_secs,
        sslmode: settings.database.sslmode,
        ssl_root_cert: settings.database.ssl_root_cert.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_a_sequence_or_an_rfc3339_time() {
        assert_eq!(AsOf::parse("42"), Ok(AsOf::Seq(42)));
        let t = AsOf::parse("2026-11-01T00:00:00+08:00").unwrap();
        assert_eq!(
            t,
            AsOf::Time(DateTime::parse_from_rfc3339("2026-10-31T16:00:00Z").unwrap())
        );
        assert!(AsOf::parse("yesterday").is_err());
        assert!(AsOf::parse("-1").is_err());
        assert!(AsOf::parse("2026-11-01").is_err());
    }

    #[test]
    fn the_target_must_be_a_plain_schema_other_than_the_live_one() {
        let settings = Settings::default();
        assert!(target(&settings, "books_2026_11_01").is_ok());
        for bad in [
            "",
            "drop table;",
            "1abc",
            "public",
            "pg_temp_books",
            // Postgres would fold it to the live schema's name.
            &settings.database.schema.to_uppercase(),
            "Books",
            &settings.database.schema.clone(),
        ] {
            assert!(target(&settings, bad).is_err(), "{bad:?} accepted");
        }
    }
}
