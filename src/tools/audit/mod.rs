//! `wxledger audit`: the live books checked against the stream they were folded from.
//!
//! One run: (1) a repeatable-read snapshot of the live schema and its checkpoint C; (2) one
//! pass over the stream up to C that indexes the events that move money, follows every
//! order's state through the fold and, on request, verifies the evidence of WeChat's
//! word again ([`scan`]); (3) a rebuild of the stream into a scratch schema with
//! [`replay`](crate::store::replay::replay); (4) the live tables compared with the rebuild row by
//! row ([`diff`]); (5) the invariants of the books checked on the live tables ([`checks`]);
//! (6) a report with the totals of each day ([`report`]).
//!
//! With `--as-of` before C, the rebuild is the books as they stood then: orders, refunds,
//! balances and users have changed since, so only the append-only tables (postings,
//! payments, failure log) are compared, up to that point, and the invariants are checked
//! on the rebuild as well.

pub mod checks;
pub mod diff;
pub mod evidence;
pub mod report;
pub mod scan;

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::IsolationLevel;

use crate::{
    core::events::DecodeError,
    settings::{DatabaseSettings, Settings},
    store::{
        db::{self, DbError},
        identity,
        projector::PROJECTION,
        replay::{self, AsOf, ReplayError},
        stream::{EventLog, LogError},
    },
};

pub use report::{AuditReport, DayTotals};

/// What to audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Audit the books as they stood at this point (default: the live checkpoint).
    pub as_of: Option<AsOf>,
    /// Verify WeChat's signature on every event that carries evidence.
    pub verify_signatures: bool,
    /// Keep the rebuild under this schema name instead of a scratch one that is dropped.
    pub keep: Option<String>,
}

/// What an audit is doing, for a progress display (about once a second per phase).
#[derive(Debug)]
pub enum Step<'a> {
    /// A phase starts.
    Phase(&'static str),
    /// The pass over the stream (every event read is counted as applied).
    Scan(&'a replay::Progress),
    /// The rebuild into the scratch schema.
    Rebuild(&'a replay::Progress),
}

/// Why an audit could not be made (the command exits 2). Each variant has a stable
/// [`code`](AuditError::code).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Postgres.
    #[error("ledger: {0}")]
    Db(#[from] DbError),
    /// NATS.
    #[error("stream: {0}")]
    Log(#[from] LogError),
    /// An event this build cannot read.
    #[error("event {seq} cannot be read: {source}")]
    Decode {
        /// Its sequence.
        seq: u64,
        /// Why.
        source: DecodeError,
    },
    /// The live checkpoint names events the stream does not hold.
    #[error(
        "the live checkpoint is event {checkpoint} but the stream ends at {head}: wrong stream?"
    )]
    StreamBehind {
        /// The checkpoint.
        checkpoint: u64,
        /// The stream's last sequence.
        head: u64,
    },
    /// The live projection was built from another stream (the stream was deleted and
    /// recreated): rebuild from this one into a new schema and audit that.
    #[error("{0}")]
    StreamIdentity(identity::Mismatch),
    /// The rebuild failed.
    #[error("rebuild: {0}")]
    Rebuild(#[from] ReplayError),
    /// The schema named by `--keep` cannot be used.
    #[error("--keep {schema}: {problem}")]
    Keep {
        /// The schema named.
        schema: String,
        /// What is wrong.
        problem: String,
    },
    /// The pay settings do not make the clients that verify signatures.
    #[error("pay: {0}")]
    Pay(String),
}

impl AuditError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::Db(_) => "ledger_unavailable",
            AuditError::Log(_) => "stream_unavailable",
            AuditError::Decode { .. } => "event_unreadable",
            AuditError::StreamBehind { .. } => "stream_behind_checkpoint",
            AuditError::StreamIdentity(_) => "stream_identity_changed",
            AuditError::Rebuild(_) => "rebuild_failed",
            AuditError::Keep { .. } => "keep_schema_unusable",
            AuditError::Pay(_) => "pay_settings",
        }
    }

    /// `{"error": {"code", "message"}}`, as the API writes errors.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }
}

impl From<tokio_postgres::Error> for AuditError {
    fn from(e: tokio_postgres::Error) -> Self {
        AuditError::Db(e.into())
    }
}

/// What kind of breach; the names are stable (JSON `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachKind {
    /// A posting group whose lines do not sum to zero.
    UnbalancedGroup,
    /// A wallet whose running balance goes below zero at some event.
    NegativeWallet,
    /// A `balances` row that is not the sum (or newest event) of its account's postings.
    BalanceMismatch,
    /// Money booked (a posting group or a payment) with no event of the right kind at its
    /// sequence to back it.
    UntracedCredit,
    /// A payment booked one way and posted another (or not at all).
    BookingMismatch,
    /// An order whose state disagrees with its money, or that moved between states the
    /// rules do not allow.
    IllegalOrderState,
    /// More refunded (or in flight) than was paid.
    RefundExceedsPaid,
    /// `wechat_clearing` is not what the payments and WeChat's refunds make it.
    ClearingMismatch,
    /// A row that differs between the live tables and the rebuild.
    Diff,
    /// Evidence whose WeChat signature (or API v2 sign, or `req_info` encryption) does not
    /// verify.
    BadSignature,
    /// An event whose facts are not what its signed evidence says.
    EvidenceMismatch,
}

impl BreachKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreachKind::UnbalancedGroup => "unbalanced_group",
            BreachKind::NegativeWallet => "negative_wallet",
            BreachKind::BalanceMismatch => "balance_mismatch",
            BreachKind::UntracedCredit => "untraced_credit",
            BreachKind::BookingMismatch => "booking_mismatch",
            BreachKind::IllegalOrderState => "illegal_order_state",
            BreachKind::RefundExceedsPaid => "refund_exceeds_paid",
            BreachKind::ClearingMismatch => "clearing_mismatch",
            BreachKind::Diff => "diff",
            BreachKind::BadSignature => "bad_signature",
            BreachKind::EvidenceMismatch => "evidence_mismatch",
        }
    }
}

/// Where a breach was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// In the live tables (or, for a diff, between them and the rebuild).
    Live,
    /// In the rebuild as of an earlier point.
    Rebuild,
    /// In the stream itself (its evidence, or the fold's order transitions).
    Stream,
}

/// One thing wrong with the books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breach {
    /// What kind.
    pub kind: BreachKind,
    /// Where it was found.
    #[serde(rename = "in")]
    pub found: Found,
    /// What it concerns: an order number, a group id, an account, a table row.
    pub key: String,
    /// The event sequences involved, oldest first.
    pub seqs: Vec<i64>,
    /// What is wrong, for a human.
    pub message: String,
}

impl Breach {
    fn new(
        kind: BreachKind,
        found: Found,
        key: impl Into<String>,
        seqs: Vec<i64>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            found,
            key: key.into(),
            seqs,
            message: message.into(),
        }
    }
}

/// How the rebuild went.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebuild {
    /// The schema rebuilt into.
    pub schema: String,
    /// Whether it was kept (`--keep`) or dropped.
    pub kept: bool,
    /// Events folded.
    pub events: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Audits the books in `settings.database` against the stream in `settings.nats`;
/// `progress` hears of each phase and, about once a second, of the long ones.
pub async fn run(
    settings: &Settings,
    options: &Options,
    mut progress: impl FnMut(Step<'_>),
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    let scratch = match &options.keep {
        Some(name) => name.clone(),
        None => format!("audit_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    };
    let verifier = if options.verify_signatures {
        Some(evidence::Verifier::new(settings)?)
    } else {
        None
    };
    // The name is checked before the long stream pass, not after it.
    if let Err(ReplayError::Target { schema, problem }) = replay::target(settings, &scratch) {
        return Err(AuditError::Keep { schema, problem });
    }
    let pg = db::pg_config(&settings.database)?;
    let mut live = db::connect_dedicated(&pg).await?;
    if db::schema_exists(&live, &scratch).await? {
        return Err(AuditError::Keep {
            schema: scratch,
            problem: "exists; drop it or name another schema".into(),
        });
    }
    // One snapshot for every read of the live tables: rows and checkpoint agree, and the
    // projector may go on meanwhile.
    let snapshot = live
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let checkpoint = snapshot
        .query_opt(
            "SELECT last_seq FROM projector_checkpoints WHERE projection = $1",
            &[&PROJECTION],
        )
        .await?
        .map_or(0, |r| r.get::<_, i64>(0));
    let checkpoint = u64::try_from(checkpoint).expect("checkpoints are not negative");
    let log = EventLog::open(&settings.nats).await?;
    let head = log.last_seq().await?;
    // A stream that ends before the checkpoint is told below, as before.
    let built_from = identity::load(&snapshot).await?;
    match identity::judge(built_from.as_ref(), &log.identity().await?, checkpoint) {
        Ok(_) | Err(identity::Mismatch::Behind { .. }) => {}
        Err(mismatch) => return Err(AuditError::StreamIdentity(mismatch)),
    }
    if checkpoint > head {
        return Err(AuditError::StreamBehind { checkpoint, head });
    }

    progress(Step::Phase("reading the stream"));
    let scan = scan::scan(
        &log,
        checkpoint,
        options.as_of,
        verifier.as_ref(),
        &mut progress,
    )
    .await?;
    let point = scan.point;
    let partial = point < checkpoint;

    progress(Step::Phase("rebuilding"));
    let rebuilt = replay::replay(settings, AsOf::Seq(point), &scratch, false, |p| {
        progress(Step::Rebuild(p));
    })
    .await;
    let result = async {
        let rebuilt = rebuilt.map_err(|e| match e {
            // replay checks the name it is given: say which flag gave it.
            ReplayError::Target { schema, problem } if options.keep.is_some() => {
                AuditError::Keep { schema, problem }
            }
            e => e.into(),
        })?;
        let scratch_db = DatabaseSettings {
            url: settings.database.url.clone(),
            schema: scratch.clone(),
            pool_size: 1,
            connect_timeout: settings.database.connect_timeout,
            sslmode: settings.database.sslmode,
            ssl_root_cert: settings.database.ssl_root_cert.clone(),
        };
        let rebuild = db::connect_dedicated(&db::pg_config(&scratch_db)?).await?;

        progress(Step::Phase("comparing the live tables with the rebuild"));
        let (tables, mut breaches) =
            diff::compare(&snapshot, &rebuild, partial.then_some(point)).await?;

        progress(Step::Phase("checking the invariants"));
        breaches.extend(checks::run(&snapshot, &scan, Found::Live).await?);
        if partial {
            breaches.extend(checks::run(&rebuild, &scan, Found::Rebuild).await?);
        }
        let days = if partial {
            checks::daily_totals(&rebuild).await?
        } else {
            checks::daily_totals(&snapshot).await?
        };
        Ok::<_, AuditError>((rebuilt, tables, breaches, days))
    }
    .await;
    snapshot.commit().await.ok();
    if options.keep.is_none() {
        drop_schema(&live, &scratch).await;
    }
    let (rebuilt, tables, mut breaches, days) = result?;

    breaches.extend(scan.breaches);
    breaches.sort_by(|a, b| {
        (a.seqs.first(), a.kind, a.found, &a.key).cmp(&(b.seqs.first(), b.kind, b.found, &b.key))
    });
    Ok(AuditReport {
        schema: settings.database.schema.clone(),
        stream: settings.nats.stream.clone(),
        checkpoint,
        head,
        point,
        as_of: options.as_of,
        rebuild: Rebuild {
            schema: scratch,
            kept: options.keep.is_some(),
            events: rebuilt.applied,
            elapsed: rebuilt.elapsed,
        },
        tables,
        signatures: scan.signatures,
        days,
        breaches,
        elapsed: started.elapsed(),
    })
}

/// Drops the scratch schema; a failure only leaves it behind, which the log says.
async fn drop_schema(client: &tokio_postgres::Client, schema: &str) {
    // The name was made here (audit_<hex>) and replay checked it is a plain identifier.
    if let Err(e) = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
    {
        tracing::warn!(schema, error = %e, "the audit's scratch schema was not dropped");
    }
}
