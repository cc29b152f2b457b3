//! The payment tables (`orders`, `payments`, `ledger_entries`, `balances`,
//! `failure_log`): loading the rows a batch touches, writing back what it changed, and
//! the reads the API and the background jobs make.

use chrono::{DateTime, Utc};
use tokio_postgres::{
    types::{FromSql, Type},
    GenericClient, Row,
};
use uuid::Uuid;

use super::copy::{CopyRow, EncodeError, RowWriter};
use crate::{
    events::OrderKind,
    fold::{
        Balance, BookedAs, EntryKind, Failure, Keys, LedgerEntry, Order, OrderState, PaidWith,
        PaySource, Payment,
    },
};

/// A fold enum stored as its name in a text column.
pub(super) trait Named: Sized {
    const WHAT: &'static str;
    fn from_name(s: &str) -> Option<Self>;
}

impl Named for OrderState {
    const WHAT: &'static str = "order state";
    fn from_name(s: &str) -> Option<Self> {
        OrderState::parse(s)
    }
}

impl Named for OrderKind {
    const WHAT: &'static str = "order kind";
    fn from_name(s: &str) -> Option<Self> {
        [OrderKind::Order, OrderKind::Recharge]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl Named for EntryKind {
    const WHAT: &'static str = "ledger entry kind";
    fn from_name(s: &str) -> Option<Self> {
        EntryKind::parse(s)
    }
}

impl Named for BookedAs {
    const WHAT: &'static str = "booked_as";
    fn from_name(s: &str) -> Option<Self> {
        BookedAs::parse(s)
    }
}

impl Named for PaidWith {
    const WHAT: &'static str = "paid_with";
    fn from_name(s: &str) -> Option<Self> {
        PaidWith::parse(s)
    }
}

impl Named for PaySource {
    const WHAT: &'static str = "payment source";
    fn from_name(s: &str) -> Option<Self> {
        PaySource::parse(s)
    }
}

/// Reads a [`Named`] column; an unknown name is a conversion error (written by a newer
/// wxledger?), not a panic.
struct Name<T>(T);

impl<'a, T: Named> FromSql<'a> for Name<T> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let s = <&str as FromSql>::from_sql(ty, raw)?;
        T::from_name(s)
            .map(Name)
            .ok_or_else(|| format!("unknown {} {s:?}", T::WHAT).into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

pub(super) fn named<T: Named>(row: &Row, column: &str) -> Result<T, tokio_postgres::Error> {
    Ok(row.try_get::<_, Name<T>>(column)?.0)
}

const ORDER_COLUMNS: &str = "out_trade_no, user_id, openid, kind, amount, currency, \
     description, appid, mchid, state, prepay_id, transaction_id, placed_at, expires_at, \
     paid_at, closed_at, last_seq, paid_with, refunded, refunding";

fn order_from_row(row: &Row) -> Result<Order, tokio_postgres::Error> {
    Ok(Order {
        out_trade_no: row.try_get("out_trade_no")?,
        user_id: row.try_get("user_id")?,
        openid: row.try_get("openid")?,
        kind: named(row, "kind")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        description: row.try_get("description")?,
        appid: row.try_get("appid")?,
        mchid: row.try_get("mchid")?,
        state: named(row, "state")?,
        prepay_id: row.try_get("prepay_id")?,
        transaction_id: row.try_get("transaction_id")?,
        placed_at: row.try_get("placed_at")?,
        expires_at: row.try_get("expires_at")?,
        paid_at: row.try_get("paid_at")?,
        closed_at: row.try_get("closed_at")?,
        last_seq: row.try_get("last_seq")?,
        paid_with: row
            .try_get::<_, Option<Name<PaidWith>>>("paid_with")?
            .map(|n| n.0),
        refunded: row.try_get("refunded")?,
        refunding: row.try_get("refunding")?,
    })
}

const PAYMENT_COLUMNS: &str =
    "transaction_id, out_trade_no, amount, seq, booked_as, source, occurred_at";

fn payment_from_row(row: &Row) -> Result<Payment, tokio_postgres::Error> {
    Ok(Payment {
        transaction_id: row.try_get("transaction_id")?,
        out_trade_no: row.try_get("out_trade_no")?,
        amount: row.try_get("amount")?,
        seq: row.try_get("seq")?,
        booked_as: named(row, "booked_as")?,
        source: named(row, "source")?,
        occurred_at: row.try_get("occurred_at")?,
    })
}

fn balance_from_row(row: &Row) -> Result<Balance, tokio_postgres::Error> {
    Ok(Balance {
        account: row.try_get("account")?,
        balance: row.try_get("balance")?,
        last_seq: row.try_get("last_seq")?,
    })
}

const ENTRY_COLUMNS: &str =
    "seq, group_id, line, account, amount, kind, out_trade_no, transaction_id, occurred_at";

fn entry_from_row(row: &Row) -> Result<LedgerEntry, tokio_postgres::Error> {
    Ok(LedgerEntry {
        seq: row.try_get("seq")?,
        group_id: row.try_get("group_id")?,
        line: row.try_get("line")?,
        account: row.try_get("account")?,
        amount: row.try_get("amount")?,
        kind: named(row, "kind")?,
        out_trade_no: row.try_get("out_trade_no")?,
        transaction_id: row.try_get("transaction_id")?,
        occurred_at: row.try_get("occurred_at")?,
    })
}

const FAILURE_COLUMNS: &str =
    "seq, reason, out_trade_no, transaction_id, amount, detail, occurred_at";

fn failure_from_row(row: &Row) -> Result<Failure, tokio_postgres::Error> {
    Ok(Failure {
        seq: row.try_get("seq")?,
        reason: row.try_get("reason")?,
        out_trade_no: row.try_get("out_trade_no")?,
        transaction_id: row.try_get("transaction_id")?,
        amount: row.try_get("amount")?,
        detail: row.try_get("detail")?,
        occurred_at: row.try_get("occurred_at")?,
    })
}

pub(super) fn all<T>(
    rows: &[Row],
    f: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    rows.iter().map(f).collect()
}

// ---- the projector's loads and writes ----

/// The rows of `select` (ending in `= ANY($1)`) whose key is in `keys`; no query for
/// an empty set.
pub(super) async fn rows_keyed<T>(
    client: &impl GenericClient,
    select: &str,
    keys: &std::collections::BTreeSet<String>,
    f: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    all(&client.query(select, &[&keys]).await?, f)
}

/// The orders numbered in `keys.out_trade_nos`.
pub async fn load_orders(
    client: &impl GenericClient,
    keys: &Keys,
) -> Result<Vec<Order>, tokio_postgres::Error> {
    let select = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = ANY($1)");
    rows_keyed(client, &select, &keys.out_trade_nos, order_from_row).await
}

/// The payments booked for `keys.transaction_ids`.
pub async fn load_payments(
    client: &impl GenericClient,
    keys: &Keys,
) -> Result<Vec<Payment>, tokio_postgres::Error> {
    let select = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE transaction_id = ANY($1)");
    rows_keyed(client, &select, &keys.transaction_ids, payment_from_row).await
}

/// The balances of `keys.accounts` (call after adding the loaded orders' wallets).
pub async fn load_balances(
    client: &impl GenericClient,
    keys: &Keys,
) -> Result<Vec<Balance>, tokio_postgres::Error> {
    let select = "SELECT account, balance, last_seq FROM balances WHERE account = ANY($1)";
    rows_keyed(client, select, &keys.accounts, balance_from_row).await
}

/// Inserts or replaces `orders` whose `last_seq` is newer than the stored row's.
pub async fn upsert_orders(
    client: &impl GenericClient,
    orders: &[Order],
) -> Result<(), tokio_postgres::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Order) -> &str| orders.iter().map(f).collect::<Vec<&str>>();
    let out_trade_no = col(|o| &o.out_trade_no);
    let openid = col(|o| &o.openid);
    let kind = col(|o| o.kind.as_str());
    let currency = col(|o| &o.currency);
    let description = col(|o| &o.description);
    let appid = col(|o| &o.appid);
    let mchid = col(|o| &o.mchid);
    let state = col(|o| o.state.as_str());
    let user_id: Vec<Uuid> = orders.iter().map(|o| o.user_id).collect();
    let amount: Vec<i64> = orders.iter().map(|o| o.amount).collect();
    let prepay_id: Vec<Option<&str>> = orders.iter().map(|o| o.prepay_id.as_deref()).collect();
    let transaction_id: Vec<Option<&str>> =
        orders.iter().map(|o| o.transaction_id.as_deref()).collect();
    let placed_at: Vec<DateTime<Utc>> = orders.iter().map(|o| o.placed_at).collect();
    let expires_at: Vec<DateTime<Utc>> = orders.iter().map(|o| o.expires_at).collect();
    let paid_at: Vec<Option<DateTime<Utc>>> = orders.iter().map(|o| o.paid_at).collect();
    let closed_at: Vec<Option<DateTime<Utc>>> = orders.iter().map(|o| o.closed_at).collect();
    let last_seq: Vec<i64> = orders.iter().map(|o| o.last_seq).collect();
    let paid_with: Vec<Option<&str>> = orders
        .iter()
        .map(|o| o.paid_with.map(PaidWith::as_str))
        .collect();
    let refunded: Vec<i64> = orders.iter().map(|o| o.refunded).collect();
    let refunding: Vec<i64> = orders.iter().map(|o| o.refunding).collect();
    client
        .execute(
            &format!(
                "INSERT INTO orders ({ORDER_COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], \
                     $5::int8[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                     $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[], \
                     $15::timestamptz[], $16::timestamptz[], $17::int8[], $18::text[], \
                     $19::int8[], $20::int8[])
                 ON CONFLICT (out_trade_no) DO UPDATE SET
                     user_id = EXCLUDED.user_id, openid = EXCLUDED.openid,
                     kind = EXCLUDED.kind, amount = EXCLUDED.amount,
                     currency = EXCLUDED.currency, description = EXCLUDED.description,
                     appid = EXCLUDED.appid, mchid = EXCLUDED.mchid, state = EXCLUDED.state,
                     prepay_id = EXCLUDED.prepay_id, transaction_id = EXCLUDED.transaction_id,
                     placed_at = EXCLUDED.placed_at, expires_at = EXCLUDED.expires_at,
                     paid_at = EXCLUDED.paid_at, closed_at = EXCLUDED.closed_at,
                     last_seq = EXCLUDED.last_seq, paid_with = EXCLUDED.paid_with,
                     refunded = EXCLUDED.refunded, refunding = EXCLUDED.refunding
                 WHERE orders.last_seq < EXCLUDED.last_seq"
            ),
            &[
                &out_trade_no,
                &user_id,
                &openid,
                &kind,
                &amount,
                &currency,
                &description,
                &appid,
                &mchid,
                &state,
                &prepay_id,
                &transaction_id,
                &placed_at,
                &expires_at,
                &paid_at,
                &closed_at,
                &last_seq,
                &paid_with,
                &refunded,
                &refunding,
            ],
        )
        .await?;
    Ok(())
}

/// Inserts or replaces `balances` whose `last_seq` is newer than the stored row's.
pub async fn upsert_balances(
    client: &impl GenericClient,
    balances: &[Balance],
) -> Result<(), tokio_postgres::Error> {
    if balances.is_empty() {
        return Ok(());
    }
    let account: Vec<&str> = balances.iter().map(|b| b.account.as_str()).collect();
    let balance: Vec<i64> = balances.iter().map(|b| b.balance).collect();
    let last_seq: Vec<i64> = balances.iter().map(|b| b.last_seq).collect();
    client
        .execute(
            "INSERT INTO balances (account, balance, last_seq)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])
             ON CONFLICT (account) DO UPDATE
             SET balance = EXCLUDED.balance, last_seq = EXCLUDED.last_seq
             WHERE balances.last_seq < EXCLUDED.last_seq",
            &[&account, &balance, &last_seq],
        )
        .await?;
    Ok(())
}

/// Inserts newly booked payments (a transaction id already stored is left alone).
pub async fn insert_payments(
    client: &impl GenericClient,
    payments: &[Payment],
) -> Result<(), tokio_postgres::Error> {
    if payments.is_empty() {
        return Ok(());
    }
    let transaction_id: Vec<&str> = payments.iter().map(|p| p.transaction_id.as_str()).collect();
    let out_trade_no: Vec<&str> = payments.iter().map(|p| p.out_trade_no.as_str()).collect();
    let amount: Vec<i64> = payments.iter().map(|p| p.amount).collect();
    let seq: Vec<i64> = payments.iter().map(|p| p.seq).collect();
    let booked_as: Vec<&str> = payments.iter().map(|p| p.booked_as.as_str()).collect();
    let source: Vec<&str> = payments.iter().map(|p| p.source.as_str()).collect();
    let occurred_at: Vec<DateTime<Utc>> = payments.iter().map(|p| p.occurred_at).collect();
    client
        .execute(
            &format!(
                "INSERT INTO payments ({PAYMENT_COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], \
                     $5::text[], $6::text[], $7::timestamptz[])
                 ON CONFLICT (transaction_id) DO NOTHING"
            ),
            &[
                &transaction_id,
                &out_trade_no,
                &amount,
                &seq,
                &booked_as,
                &source,
                &occurred_at,
            ],
        )
        .await?;
    Ok(())
}

/// Inserts new postings (insert-only; a line already stored is left alone).
pub async fn insert_entries(
    client: &impl GenericClient,
    entries: &[LedgerEntry],
) -> Result<(), tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let seq: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let group_id: Vec<&str> = entries.iter().map(|e| e.group_id.as_str()).collect();
    let line: Vec<i32> = entries.iter().map(|e| e.line).collect();
    let account: Vec<&str> = entries.iter().map(|e| e.account.as_str()).collect();
    let amount: Vec<i64> = entries.iter().map(|e| e.amount).collect();
    let kind: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let out_trade_no: Vec<&str> = entries.iter().map(|e| e.out_trade_no.as_str()).collect();
    let transaction_id: Vec<Option<&str>> = entries
        .iter()
        .map(|e| e.transaction_id.as_deref())
        .collect();
    let occurred_at: Vec<DateTime<Utc>> = entries.iter().map(|e| e.occurred_at).collect();
    client
        .execute(
            &format!(
                "INSERT INTO ledger_entries ({ENTRY_COLUMNS})
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::int4[], $4::text[], \
                     $5::int8[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
                 ON CONFLICT (group_id, line) DO NOTHING"
            ),
            &[
                &seq,
                &group_id,
                &line,
                &account,
                &amount,
                &kind,
                &out_trade_no,
                &transaction_id,
                &occurred_at,
            ],
        )
        .await?;
    Ok(())
}

/// Inserts new failure rows (one per event and reason).
pub async fn insert_failures(
    client: &impl GenericClient,
    failures: &[Failure],
) -> Result<(), tokio_postgres::Error> {
    if failures.is_empty() {
        return Ok(());
    }
    let seq: Vec<i64> = failures.iter().map(|f| f.seq).collect();
    let reason: Vec<&str> = failures.iter().map(|f| f.reason.as_str()).collect();
    let out_trade_no: Vec<Option<&str>> =
        failures.iter().map(|f| f.out_trade_no.as_deref()).collect();
    let transaction_id: Vec<Option<&str>> = failures
        .iter()
        .map(|f| f.transaction_id.as_deref())
        .collect();
    let amount: Vec<Option<i64>> = failures.iter().map(|f| f.amount).collect();
    let detail: Vec<&serde_json::Value> = failures.iter().map(|f| &f.detail).collect();
    let occurred_at: Vec<DateTime<Utc>> = failures.iter().map(|f| f.occurred_at).collect();
    client
        .execute(
            &format!(
                "INSERT INTO failure_log ({FAILURE_COLUMNS})
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], \
                     $5::int8[], $6::jsonb[], $7::timestamptz[])
                 ON CONFLICT (seq, reason) DO NOTHING"
            ),
            &[
                &seq,
                &reason,
                &out_trade_no,
                &transaction_id,
                &amount,
                &detail,
                &occurred_at,
            ],
        )
        .await?;
    Ok(())
}

// ---- the full rebuild's bulk load ----

impl CopyRow for Order {
    const TABLE: &'static str = "orders";
    const COLUMNS: &'static str = ORDER_COLUMNS;
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.out_trade_no)?;
        row.field(&self.user_id)?;
        row.field(&self.openid)?;
        row.field(&self.kind.as_str())?;
        row.field(&self.amount)?;
        row.field(&self.currency)?;
        row.field(&self.description)?;
        row.field(&self.appid)?;
        row.field(&self.mchid)?;
        row.field(&self.state.as_str())?;
        row.field(&self.prepay_id)?;
        row.field(&self.transaction_id)?;
        row.field(&self.placed_at)?;
        row.field(&self.expires_at)?;
        row.field(&self.paid_at)?;
        row.field(&self.closed_at)?;
        row.field(&self.last_seq)?;
        row.field(&self.paid_with.map(PaidWith::as_str))?;
        row.field(&self.refunded)?;
        row.field(&self.refunding)
    }
}

impl CopyRow for Payment {
    const TABLE: &'static str = "payments";
    const COLUMNS: &'static str = PAYMENT_COLUMNS;
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.transaction_id)?;
        row.field(&self.out_trade_no)?;
        row.field(&self.amount)?;
        row.field(&self.seq)?;
        row.field(&self.booked_as.as_str())?;
        row.field(&self.source.as_str())?;
        row.field(&self.occurred_at)
    }
}

impl CopyRow for LedgerEntry {
    const TABLE: &'static str = "ledger_entries";
    const COLUMNS: &'static str = ENTRY_COLUMNS;
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.seq)?;
        row.field(&self.group_id)?;
        row.field(&self.line)?;
        row.field(&self.account)?;
        row.field(&self.amount)?;
        row.field(&self.kind.as_str())?;
        row.field(&self.out_trade_no)?;
        row.field(&self.transaction_id)?;
        row.field(&self.occurred_at)
    }
}

impl CopyRow for Balance {
    const TABLE: &'static str = "balances";
    const COLUMNS: &'static str = "account, balance, last_seq";
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.account)?;
        row.field(&self.balance)?;
        row.field(&self.last_seq)
    }
}

impl CopyRow for Failure {
    const TABLE: &'static str = "failure_log";
    const COLUMNS: &'static str = FAILURE_COLUMNS;
    fn encode(&self, row: &mut RowWriter<'_>) -> Result<(), EncodeError> {
        row.field(&self.seq)?;
        row.field(&self.reason)?;
        row.field(&self.out_trade_no)?;
        row.field(&self.transaction_id)?;
        row.field(&self.amount)?;
        row.field(&self.detail)?;
        row.field(&self.occurred_at)
    }
}

// ---- reads ----

/// One order by number.
pub async fn get(
    client: &impl GenericClient,
    out_trade_no: &str,
) -> Result<Option<Order>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1"),
            &[&out_trade_no],
        )
        .await?;
    row.as_ref().map(order_from_row).transpose()
}

/// A user's orders and recharges, newest first.
pub async fn for_user(
    client: &impl GenericClient,
    user_id: Uuid,
    limit: i64,
) -> Result<Vec<Order>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1
                 ORDER BY placed_at DESC, out_trade_no DESC LIMIT $2"
            ),
            &[&user_id, &limit],
        )
        .await?;
    all(&rows, order_from_row)
}

/// Unpaid orders (created, prepay issued, pay error) whose `expires_at` is not after
/// `now`, oldest expiry first.
pub async fn due_for_expiry(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Order>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE state IN ('created', 'prepay_issued', 'pay_error') AND expires_at <= $1
                 ORDER BY expires_at, out_trade_no LIMIT $2"
            ),
            &[&now, &limit],
        )
        .await?;
    all(&rows, order_from_row)
}

/// Orders with a prepay but no word from WeChat, placed at or before `placed_before`
/// and not expired at `now`, oldest first: the reconciliation sweep asks WeChat about them.
pub async fn awaiting_payment(
    client: &impl GenericClient,
    placed_before: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Order>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE state = 'prepay_issued' AND placed_at <= $1 AND expires_at > $2
                 ORDER BY placed_at, out_trade_no LIMIT $3"
            ),
            &[&placed_before, &now, &limit],
        )
        .await?;
    all(&rows, order_from_row)
}

/// An account's postings, newest first.
pub async fn ledger_for_account(
    client: &impl GenericClient,
    account: &str,
    limit: i64,
) -> Result<Vec<LedgerEntry>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE account = $1
                 ORDER BY seq DESC, line DESC LIMIT $2"
            ),
            &[&account, &limit],
        )
        .await?;
    all(&rows, entry_from_row)
}

/// An account's balance in fen (0 when it never had a posting).
pub async fn balance(
    client: &impl GenericClient,
    account: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT balance FROM balances WHERE account = $1",
            &[&account],
        )
        .await?;
    row.map_or(Ok(0), |r| r.try_get(0))
}

/// The failure log, newest first.
pub async fn failures(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<Failure>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {FAILURE_COLUMNS} FROM failure_log ORDER BY seq DESC, reason LIMIT $1"
            ),
            &[&limit],
        )
        .await?;
    all(&rows, failure_from_row)
}

#[cfg(test)]
mod tests {
    //! Against the Postgres on this machine, in a scratch schema per test.

    use rand::{rngs::StdRng, Rng, SeedableRng};
    use tokio_postgres::error::SqlState;

    use super::*;
    use crate::{
        db,
        events::Recorded,
        fold::{
            pay_tests::{
                at, balance_pay, closed, notified, placed_until as placed, prepay, queried, rec,
                refund, refund_notified, refund_queried, refund_rejected, refund_requested,
                transaction as tx, uid,
            },
            wallet_account, State, CLEARING, SALES, SUSPENSE,
        },
        outcomes::{self, Outcome, OutcomeKind},
        projector::{apply_batch, apply_batch_with_outcomes},
        settings::DatabaseSettings,
    };

    /// A migrated scratch schema, dropped at the end of the test.
    struct Scratch {
        settings: DatabaseSettings,
        client: tokio_postgres::Client,
    }

    impl Scratch {
        async fn new() -> Self {
            let settings = DatabaseSettings {
                url: std::env::var("WXLEDGER_TEST_DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
                schema: format!("t_pay_{}", &Uuid::new_v4().simple().to_string()[..10]),
                pool_size: 1,
                connect_timeout_secs: 5,
                ..Default::default()
            };
            let pool = db::pool(&settings).unwrap();
            db::migrate(&pool, &settings.schema).await.unwrap();
            let client = db::connect_dedicated(&db::pg_config(&settings).unwrap())
                .await
                .unwrap();
            Self { settings, client }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            // Also when the test panicked: a runtime of its own, on a thread of its own.
            let (url, schema) = (self.settings.url.clone(), self.settings.schema.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds");
                rt.block_on(async {
                    if let Ok((client, conn)) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                    }
                });
            })
            .join()
            .expect("dropping the scratch schema does not panic");
        }
    }

    /// Every kind of event and outcome, then a seeded random mix over few orders.
    fn history() -> Vec<Recorded> {
        let mut events = vec![
            placed("o1", 1, OrderKind::Order, 100, 50),
            placed("r1", 1, OrderKind::Recharge, 500, 50),
            placed("r2", 1, OrderKind::Recharge, 300, 50),
            prepay("o1", "p1"),
            notified(tx("o1", Some("t1"), "SUCCESS", Some(100))),
            queried(tx("o1", Some("t1"), "SUCCESS", Some(100))),
            notified(tx("r1", Some("t2"), "SUCCESS", Some(500))),
            notified(tx("r1", Some("t3"), "SUCCESS", Some(500))),
            notified(tx("ghost", Some("t4"), "SUCCESS", Some(7))),
            placed("o2", 2, OrderKind::Order, 100, 5),
            closed("o2"),
            queried(tx("o2", Some("t5"), "SUCCESS", Some(100))),
            placed("o3", 2, OrderKind::Order, 100, 20),
            notified(tx("o3", Some("t6"), "SUCCESS", Some(99))),
            notified(tx("o3", None, "SUCCESS", Some(100))),
            notified(tx("o3", None, "PAYERROR", None)),
            queried(tx("o3", None, "WEIRD", None)),
            placed("o4", 3, OrderKind::Recharge, 100, 10),
            placed("o5", 1, OrderKind::Order, 100, 50),
            notified(tx("o5", Some("t8"), "SUCCESS", Some(100))),
            refund_requested("rfa", "o5", 40),
            refund_notified(refund("rfa", "o5", "SUCCESS", None)),
            placed("w1", 1, OrderKind::Order, 200, 50),
            balance_pay("w1", 1, 200),
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let no = format!("x{}", rng.gen_range(0..12));
            let user = rng.gen_range(1..4);
            let tid = format!("tx{}", rng.gen_range(0..12));
            let amount = [100, 200][rng.gen_range(0..2)];
            let state = [
                "SUCCESS", "SUCCESS", "REFUND", "CLOSED", "PAYERROR", "NOTPAY",
            ][rng.gen_range(0..6)];
            let kind = [OrderKind::Order, OrderKind::Recharge][rng.gen_range(0..2)];
            let rno = format!("rf{}", rng.gen_range(0..10));
            let status =
                ["SUCCESS", "SUCCESS", "PROCESSING", "CLOSED", "ABNORMAL"][rng.gen_range(0..5)];
            let reported = || refund(&rno, &no, status, Some(amount / 2));
            events.push(match rng.gen_range(0..10) {
                5 => refund_requested(&rno, &no, amount / 2),
                6 => refund_notified(reported()),
                7 => balance_pay(&no, user, amount),
                8 => refund_queried(reported()),
                9 => refund_rejected(&rno, &no),
                0 => placed(&no, user, kind, amount, 400),
                1 => closed(&no),
                2 => queried(tx(&no, Some(&tid), state, Some(amount))),
                _ => notified(tx(&no, Some(&tid), state, Some(amount))),
            });
        }
        // Last, in a batch of its own, long after r2 was placed: the wallet (500 since t2)
        // is loaded only through the order.
        events.push(queried(tx("r2", Some("t7"), "SUCCESS", Some(300))));
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| rec(i as u64 + 1, event))
            .collect()
    }

    async fn all_rows<T>(
        client: &tokio_postgres::Client,
        sql: &str,
        f: fn(&Row) -> Result<T, tokio_postgres::Error>,
    ) -> Vec<T> {
        all(&client.query(sql, &[]).await.unwrap(), f).unwrap()
    }

    #[tokio::test]
    async fn projected_tables_equal_one_in_memory_pass_and_reads_answer() {
        let mut db = Scratch::new().await;
        let history = history();
        let mut checkpoint = 0;
        let (mut rest, last) = history.split_at(history.len() - 1);
        let mut sizes = [1usize, 3, 7, 2, 16].into_iter().cycle();
        while !rest.is_empty() {
            let (batch, tail) = rest.split_at(sizes.next().unwrap().min(rest.len()));
            rest = tail;
            checkpoint = apply_batch(&mut db.client, checkpoint, batch)
                .await
                .unwrap();
        }
        apply_batch(&mut db.client, checkpoint, last).await.unwrap();
        let mut whole = State::default();
        whole.apply_all(&history);
        let c = &db.client;

        let q = |t: &str| format!("SELECT * FROM {t}");
        let orders = all_rows(c, &(q("orders") + " ORDER BY out_trade_no"), order_from_row).await;
        assert_eq!(orders, whole.orders.iter().cloned().collect::<Vec<_>>());
        let refunds: Vec<crate::fold::RefundRow> = c
            .query(&(q("refunds") + " ORDER BY out_refund_no"), &[])
            .await
            .unwrap()
            .iter()
            .map(crate::db::refunds::tests_row)
            .collect();
        assert_eq!(refunds, whole.refunds.iter().cloned().collect::<Vec<_>>());
        assert!(
            refunds
                .iter()
                .any(|r| r.state == crate::fold::RefundState::Succeeded)
                && whole
                    .orders
                    .iter()
                    .any(|o| o.paid_with == Some(crate::fold::PaidWith::Wallet)),
            "the mix makes refunds and wallet payments"
        );
        let payments = all_rows(
            c,
            &(q("payments") + " ORDER BY transaction_id"),
            payment_from_row,
        )
        .await;
        assert_eq!(
            payments,
            whole.ledger.payments().cloned().collect::<Vec<_>>()
        );
        let balances = all_rows(c, &(q("balances") + " ORDER BY account"), balance_from_row).await;
        assert_eq!(
            balances,
            whole.ledger.balances().cloned().collect::<Vec<_>>()
        );
        let entries = all_rows(
            c,
            &(q("ledger_entries") + " ORDER BY seq, line"),
            entry_from_row,
        )
        .await;
        assert_eq!(entries, whole.ledger.entries());
        let failures = all_rows(
            c,
            &(q("failure_log") + " ORDER BY seq, reason"),
            failure_from_row,
        )
        .await;
        assert_eq!(
            failures,
            whole.ledger.failures().cloned().collect::<Vec<_>>()
        );
        // The fixed history alone makes every kind of row.
        for reason in [
            "double_payment",
            "unknown_order",
            "paid_after_close",
            "amount_mismatch",
            "malformed_transaction",
            "unknown_trade_state",
        ] {
            assert!(failures.iter().any(|f| f.reason == reason), "{reason}");
        }

        // Reads.
        let o1 = get(c, "o1").await.unwrap().unwrap();
        assert_eq!(
            (
                o1.state,
                o1.transaction_id.as_deref(),
                o1.prepay_id.as_deref()
            ),
            (OrderState::Paid, Some("t1"), Some("p1"))
        );
        assert!(get(c, "nope").await.unwrap().is_none());
        for user in 1..4 {
            let mut expected: Vec<Order> = whole
                .orders
                .iter()
                .filter(|o| o.user_id == uid(user))
                .cloned()
                .collect();
            expected.sort_by(|a, b| {
                (b.placed_at, &b.out_trade_no).cmp(&(a.placed_at, &a.out_trade_no))
            });
            expected.truncate(3);
            assert!(!expected.is_empty());
            assert_eq!(for_user(c, uid(user), 3).await.unwrap(), expected);
        }
        let due: Vec<String> = due_for_expiry(c, at(25), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.out_trade_no)
            .collect();
        // o2 is closed (though past due) and o3 is in pay_error; o4 expires first.
        assert_eq!(due, ["o4", "o3"]);
        assert!(due_for_expiry(c, at(9), 10).await.unwrap().is_empty());
        let wallet = wallet_account(uid(1));
        let credits = ledger_for_account(c, &wallet, 1000).await.unwrap();
        assert!(credits.windows(2).all(|w| w[0].seq >= w[1].seq));
        assert_eq!(
            credits.last().unwrap().transaction_id.as_deref(),
            Some("t2")
        );
        assert!(credits
            .iter()
            .any(|e| e.transaction_id.as_deref() == Some("t7")));
        assert_eq!(
            balance(c, &wallet).await.unwrap(),
            credits.iter().map(|e| e.amount).sum::<i64>()
        );
        assert_eq!(balance(c, "wallet:nobody").await.unwrap(), 0);
        let clearing = balance(c, CLEARING).await.unwrap();
        let credited: i64 = [SALES, SUSPENSE]
            .iter()
            .map(|a| whole.ledger.balance(a))
            .sum::<i64>()
            + whole
                .ledger
                .balances()
                .filter(|b| crate::fold::is_wallet(&b.account))
                .map(|b| b.balance)
                .sum::<i64>();
        assert_eq!(clearing, -credited);
        let newest = failures_newest(c).await;
        assert_eq!(newest.first(), failures.last().map(|f| f.seq).as_ref());
    }

    async fn failures_newest(c: &tokio_postgres::Client) -> Vec<i64> {
        let rows = failures(c, 3).await.unwrap();
        assert!(rows.len() <= 3);
        rows.iter().map(|f| f.seq).collect()
    }

    #[tokio::test]
    async fn the_outbox_holds_the_outcomes_of_one_in_memory_pass_once() {
        let mut db = Scratch::new().await;
        let history = history();
        let mut checkpoint = 0;
        let mut rest = &history[..];
        let mut sizes = [5usize, 1, 9, 2].into_iter().cycle();
        while !rest.is_empty() {
            let (batch, tail) = rest.split_at(sizes.next().unwrap().min(rest.len()));
            rest = tail;
            checkpoint = apply_batch_with_outcomes(&mut db.client, checkpoint, batch)
                .await
                .unwrap();
        }
        let mut whole = State::default();
        whole.apply_all(&history);
        let (entries, failures) = (
            whole.ledger.take_new_entries(),
            whole.ledger.take_new_failures(),
        );
        let expected = outcomes::derive(&history, &entries, &failures, &whole);
        let stored = || async {
            db.client
                .query("SELECT payload FROM outbox ORDER BY seq, id", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| serde_json::from_value(r.get(0)).unwrap())
                .collect::<Vec<Outcome>>()
        };
        let got = stored().await;
        assert_eq!(got, expected);
        for kind in OutcomeKind::ALL {
            assert!(got.iter().any(|o| o.kind == kind.as_str()), "{kind:?}");
        }
        // The same outcomes written again (a batch retried after its commit's answer was
        // lost) change nothing.
        outcomes::outbox::insert(&db.client, &expected)
            .await
            .unwrap();
        assert_eq!(stored().await, expected);
    }

    #[tokio::test]
    async fn writes_are_idempotent_and_a_wallet_cannot_go_negative() {
        let mut db = Scratch::new().await;
        let history: Vec<Recorded> = history().into_iter().take(17).collect();
        let mut state = State::default();
        state.apply_all(&history);
        let (orders, payments, entries, balances, failures) = (
            state.orders.take_changed(),
            state.ledger.take_new_payments(),
            state.ledger.take_new_entries(),
            state.ledger.take_changed_balances(),
            state.ledger.take_new_failures(),
        );
        let tx = db.client.transaction().await.unwrap();
        for _ in 0..2 {
            upsert_orders(&tx, &orders).await.unwrap();
            insert_payments(&tx, &payments).await.unwrap();
            insert_entries(&tx, &entries).await.unwrap();
            upsert_balances(&tx, &balances).await.unwrap();
            insert_failures(&tx, &failures).await.unwrap();
        }
        // An older version of a row does not overwrite a newer one.
        let mut stale = orders
            .iter()
            .find(|o| o.out_trade_no == "o1")
            .unwrap()
            .clone();
        stale.last_seq = 1;
        stale.state = OrderState::Created;
        upsert_orders(&tx, &[stale]).await.unwrap();
        assert_eq!(
            get(&tx, "o1").await.unwrap().unwrap().state,
            OrderState::Paid
        );
        let count = |t: &'static str| {
            let tx = &tx;
            async move {
                tx.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };
        assert_eq!(count("orders").await, orders.len() as i64);
        assert_eq!(count("payments").await, payments.len() as i64);
        assert_eq!(count("ledger_entries").await, entries.len() as i64);
        assert_eq!(count("failure_log").await, failures.len() as i64);
        tx.commit().await.unwrap();

        let negative = Balance {
            account: wallet_account(uid(9)),
            balance: -1,
            last_seq: 99,
        };
        let err = upsert_balances(&db.client, &[negative]).await.unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION));
        let overdrawn_sales = Balance {
            account: SALES.into(),
            balance: -1,
            last_seq: 99,
        };
        upsert_balances(&db.client, &[overdrawn_sales])
            .await
            .unwrap();
    }
}
