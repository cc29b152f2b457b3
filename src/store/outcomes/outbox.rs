//! The `outbox` table: outcomes inserted in the projector's batch transaction, read in
//! publishing order, deleted once JetStream acknowledged them.

use chrono::{DateTime, Utc};
use tokio_postgres::{types::Type, GenericClient, Statement};

use super::Outcome;

/// The projector's write ([`insert`]).
pub const INSERT: &str = "INSERT INTO outbox (id, seq, kind, payload, occurred_at)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::jsonb[], $5::timestamptz[])
     ON CONFLICT (id) DO NOTHING";

/// Inserts `outcomes` by `statement` (prepared from [`INSERT`]); one already there (the
/// same id) is left as it is.
pub async fn insert(
    client: &impl GenericClient,
    statement: &Statement,
    outcomes: &[Outcome],
) -> Result<(), tokio_postgres::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let id: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
    let seq: Vec<i64> = outcomes
        .iter()
        .map(|o| i64::try_from(o.source.seq).expect("sequences fit in i64"))
        .collect();
    let kind: Vec<&str> = outcomes.iter().map(|o| o.kind.as_str()).collect();
    let payload: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| serde_json::to_value(o).expect("an outcome always serializes"))
        .collect();
    let occurred_at: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.occurred_at).collect();
    client
        .execute(statement, &[&id, &seq, &kind, &payload, &occurred_at])
        .await?;
    Ok(())
}

/// An outcome waiting to be published.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Its id (the `Nats-Msg-Id`).
    pub id: String,
    /// Its source sequence.
    pub seq: i64,
    /// Its type: the subject's tail.
    pub kind: String,
    /// The message.
    pub payload: serde_json::Value,
}

/// The first `limit` outcomes in publishing order: by source sequence, then id.
pub async fn next(
    client: &impl GenericClient,
    limit: usize,
) -> Result<Vec<Pending>, tokio_postgres::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query_typed(
            "SELECT id, seq, kind, payload FROM outbox ORDER BY seq, id LIMIT $1",
            &[(&limit, Type::INT8)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Pending {
            id: r.get(0),
            seq: r.get(1),
            kind: r.get(2),
            payload: r.get(3),
        })
        .collect())
}

/// Deletes the outcomes named (published).
pub async fn delete(
    client: &impl GenericClient,
    ids: &[&str],
) -> Result<u64, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted = client
        .query_typed(
            "DELETE FROM outbox WHERE id = ANY($1) RETURNING 1",
            &[(&ids, Type::TEXT_ARRAY)],
        )
        .await?;
    Ok(u64::try_from(deleted.len()).expect("a count fits"))
}

/// How many outcomes wait.
pub async fn pending(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM outbox", &[])
        .await?
        .get(0))
}
