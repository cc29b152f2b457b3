//! The `verdicts` table: the fold's verdict on each event that keeps one
//! ([`crate::core::fold::keeps_verdict`]), written with the batch that decided it and read by
//! whoever waits on that event, in this process or another.

use tokio_postgres::{types::Type, GenericClient, Statement};

use super::copy::{CopyRow, EncodeError, RowWriter};
use crate::core::fold::{KeptVerdict, Verdict};

const COLUMNS: &str = "seq, event, verdict, code, detail";

/// Why a stored verdict could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Postgres failed.
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
    /// The row does not read as a verdict (written by another build?).
    #[error("verdict of event {seq} unreadable: {source}")]
    Unreadable {
        /// The event.
        seq: i64,
        /// Why.
        source: serde_json::Error,
    },
}

/// The projector's write ([`insert`]).
pub fn insert_sql() -> String {
    format!(
        "INSERT INTO verdicts ({COLUMNS})
         SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
         ON CONFLICT (seq) DO NOTHING"
    )
}

/// Inserts `verdicts` by `statement` (prepared from [`insert_sql`]); a sequence that has
/// one already keeps it (the first verdict on an event is the one that decided).
pub async fn insert(
    client: &impl GenericClient,
    statement: &Statement,
    verdicts: &[KeptVerdict],
) -> Result<(), tokio_postgres::Error> {
    if verdicts.is_empty() {
        return Ok(());
    }
    let seq: Vec<i64> = verdicts.iter().map(|v| v.seq).collect();
    let event: Vec<&str> = verdicts.iter().map(|v| v.event).collect();
    let verdict: Vec<&str> = verdicts.iter().map(|v| v.verdict.as_str()).collect();
    let code: Vec<Option<&str>> = verdicts.iter().map(code).collect();
    let detail: Vec<Option<serde_json::Value>> = verdicts.iter().map(detail).collect();
    client
        .execute(statement, &[&seq, &event, &verdict, &code, &detail])
        .await?;
    Ok(())
}

/// The verdict on the event at `seq`, if it keeps one and was applied.
pub async fn get(client: &impl GenericClient, seq: i64) -> Result<Option<Verdict>, ReadError> {
    let Some(row) = client
        .query_typed_opt(
            "SELECT verdict, detail FROM verdicts WHERE seq = $1",
            &[(&seq, Type::INT8)],
        )
        .await?
    else {
        return Ok(None);
    };
    let detail: Option<serde_json::Value> = row.get(1);
    KeptVerdict::parse_verdict(row.get(0), detail.unwrap_or(serde_json::Value::Null))
        .map(Some)
        .map_err(|source| ReadError::Unreadable { seq, source })
}

fn code(v: &KeptVerdict) -> Option<&'static str> {
    match &v.verdict {
        Verdict::Refused(refusal) => Some(refusal.as_str()),
        Verdict::Applied(_) | Verdict::AlreadyApplied => None,
    }
}

fn detail(v: &KeptVerdict) -> Option<serde_json::Value> {
    Some(v.detail()).filter(|d| !d.is_null())
}

impl CopyRow for KeptVerdict {
    const TABLE: &'static str = "verdicts";
    const COLUMNS: &'static str = COLUMNS;
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.seq)?;
        row.field(&self.event)?;
        row.field(&self.verdict.as_str())?;
        row.field(&code(self))?;
        row.field(&detail(self))
    }
}
