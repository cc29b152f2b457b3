//! The `refunds` table: loading the rows a batch touches, writing back what it changed,
//! and the reads the API and the reconciliation sweep make.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row, Statement};

use super::{
    copy::{CopyRow, EncodeError, RowWriter},
    orders::{all, named, rows_keyed, Named},
};
use crate::core::fold::{Keys, RefundRow, RefundState};

impl Named for RefundState {
    const WHAT: &'static str = "refund state";
    fn from_name(s: &str) -> Option<Self> {
        RefundState::parse(s)
    }
}

const REFUND_COLUMNS: &str = "out_refund_no, out_trade_no, amount, reason, state, requested, \
     reserved_from, refund_id, wechat_status, code, message, requested_at, settled_at, last_seq";

/// A `refunds` row (its columns read by name) as the fold's [`RefundRow`].
pub fn refund_from_row(row: &Row) -> Result<RefundRow, tokio_postgres::Error> {
    Ok(RefundRow {
        out_refund_no: row.try_get("out_refund_no")?,
        out_trade_no: row.try_get("out_trade_no")?,
        amount: row.try_get("amount")?,
        reason: row.try_get("reason")?,
        state: named(row, "state")?,
        requested: row.try_get("requested")?,
        reserved_from: row.try_get("reserved_from")?,
        refund_id: row.try_get("refund_id")?,
        wechat_status: row.try_get("wechat_status")?,
        code: row.try_get("code")?,
        message: row.try_get("message")?,
        requested_at: row.try_get("requested_at")?,
        settled_at: row.try_get("settled_at")?,
        last_seq: row.try_get("last_seq")?,
    })
}

/// The projector's load ([`load`]): the refunds numbered in `$1`.
pub fn load_sql() -> String {
    format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE out_refund_no = ANY($1)")
}

/// The refunds numbered in `keys.out_refund_nos`, by `load` (from [`load_sql`]).
pub async fn load(
    client: &impl GenericClient,
    load: &Statement,
    keys: &Keys,
) -> Result<Vec<RefundRow>, tokio_postgres::Error> {
    rows_keyed(client, load, &keys.out_refund_nos, refund_from_row).await
}

/// The projector's write ([`upsert`]).
pub fn upsert_sql() -> String {
    format!(
        "INSERT INTO refunds ({REFUND_COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], \
                     $5::text[], $6::bool[], $7::text[], $8::text[], $9::text[], $10::text[], \
                     $11::text[], $12::timestamptz[], $13::timestamptz[], $14::int8[])
                 ON CONFLICT (out_refund_no) DO UPDATE SET
                     out_trade_no = EXCLUDED.out_trade_no, amount = EXCLUDED.amount,
                     reason = EXCLUDED.reason, state = EXCLUDED.state,
                     requested = EXCLUDED.requested, reserved_from = EXCLUDED.reserved_from,
                     refund_id = EXCLUDED.refund_id, wechat_status = EXCLUDED.wechat_status,
                     code = EXCLUDED.code, message = EXCLUDED.message,
                     requested_at = EXCLUDED.requested_at, settled_at = EXCLUDED.settled_at,
                     last_seq = EXCLUDED.last_seq
                 WHERE refunds.last_seq < EXCLUDED.last_seq"
    )
}

/// Inserts or replaces `refunds` whose `last_seq` is newer than the stored row's, by
/// `statement` (prepared from [`upsert_sql`]).
pub async fn upsert(
    client: &impl GenericClient,
    statement: &Statement,
    refunds: &[RefundRow],
) -> Result<(), tokio_postgres::Error> {
    if refunds.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&RefundRow) -> &str| refunds.iter().map(f).collect::<Vec<&str>>();
    let opt = |f: fn(&RefundRow) -> Option<&str>| refunds.iter().map(f).collect::<Vec<_>>();
    let out_refund_no = text(|r| &r.out_refund_no);
    let out_trade_no = text(|r| &r.out_trade_no);
    let reason = text(|r| &r.reason);
    let state = text(|r| r.state.as_str());
    let reserved_from = opt(|r| r.reserved_from.as_deref());
    let refund_id = opt(|r| r.refund_id.as_deref());
    let wechat_status = opt(|r| r.wechat_status.as_deref());
    let code = opt(|r| r.code.as_deref());
    let message = opt(|r| r.message.as_deref());
    let amount: Vec<i64> = refunds.iter().map(|r| r.amount).collect();
    let requested: Vec<bool> = refunds.iter().map(|r| r.requested).collect();
    let requested_at: Vec<DateTime<Utc>> = refunds.iter().map(|r| r.requested_at).collect();
    let settled_at: Vec<Option<DateTime<Utc>>> = refunds.iter().map(|r| r.settled_at).collect();
    let last_seq: Vec<i64> = refunds.iter().map(|r| r.last_seq).collect();
    client
        .execute(
            statement,
            &[
                &out_refund_no,
                &out_trade_no,
                &amount,
                &reason,
                &state,
                &requested,
                &reserved_from,
                &refund_id,
                &wechat_status,
                &code,
                &message,
                &requested_at,
                &settled_at,
                &last_seq,
            ],
        )
        .await?;
    Ok(())
}

impl CopyRow for RefundRow {
    const TABLE: &'static str = "refunds";
    const COLUMNS: &'static str = REFUND_COLUMNS;
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.out_refund_no)?;
        row.field(&self.out_trade_no)?;
        row.field(&self.amount)?;
        row.field(&self.reason)?;
        row.field(&self.state.as_str())?;
        row.field(&self.requested)?;
        row.field(&self.reserved_from)?;
        row.field(&self.refund_id)?;
        row.field(&self.wechat_status)?;
        row.field(&self.code)?;
        row.field(&self.message)?;
        row.field(&self.requested_at)?;
        row.field(&self.settled_at)?;
        row.field(&self.last_seq)
    }
}

/// One refund by number.
pub async fn get(
    client: &impl GenericClient,
    out_refund_no: &str,
) -> Result<Option<RefundRow>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE out_refund_no = $1"),
            &[&out_refund_no],
        )
        .await?;
    row.as_ref().map(refund_from_row).transpose()
}

/// An order's refunds, oldest first.
pub async fn for_order(
    client: &impl GenericClient,
    out_trade_no: &str,
) -> Result<Vec<RefundRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE out_trade_no = $1
                 ORDER BY requested_at, out_refund_no"
            ),
            &[&out_trade_no],
        )
        .await?;
    all(&rows, refund_from_row)
}

/// Refunds not final (requested, processing, abnormal) since at or before `before`,
/// oldest first: the reconciliation sweep asks WeChat about them.
pub async fn open(
    client: &impl GenericClient,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RefundRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {REFUND_COLUMNS} FROM refunds
                 WHERE state IN ('requested', 'processing', 'abnormal') AND requested_at <= $1
                 ORDER BY requested_at, out_refund_no LIMIT $2"
            ),
            &[&before, &limit],
        )
        .await?;
    all(&rows, refund_from_row)
}
