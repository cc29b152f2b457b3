//! The payment tables (`orders`, `payments`, `ledger_entries`, `balances`,
//! `failure_log`): loading the rows a batch touches, writing back what it changed, and
//! the reads the API and the background jobs make.

use chrono::{DateTime, Utc};
use tokio_postgres::{types::Type, GenericClient, Row, Statement};
use uuid::Uuid;

use crate::core::fold::{
    ledger::WALLET_PREFIX, Balance, Failure, Keys, LedgerEntry, Order, PaidWith, Payment,
};

mod rows;

pub(super) use self::rows::{all, named, Named};
pub use self::rows::{
    balance_from_row, entry_from_row, failure_from_row, order_from_row, payment_from_row,
};
use self::rows::{ENTRY_COLUMNS, FAILURE_COLUMNS, ORDER_COLUMNS, PAYMENT_COLUMNS};

// ---- the projector's loads and writes ----

/// The rows of `select` (a statement whose one parameter is an array of keys) whose
/// key is in `keys`; no query for an empty set.
pub(super) async fn rows_keyed<T>(
    client: &impl GenericClient,
    select: &Statement,
    keys: &std::collections::BTreeSet<String>,
    f: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    all(&client.query(select, &[&keys]).await?, f)
}

/// The projector's load of orders ([`load_orders`]): those numbered in `$1`.
pub fn load_orders_sql() -> String {
    format!("SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = ANY($1)")
}

/// The orders numbered in `keys.out_trade_nos`, by `load` (from [`load_orders_sql`]).
pub async fn load_orders(
    client: &impl GenericClient,
    load: &Statement,
    keys: &Keys,
) -> Result<Vec<Order>, tokio_postgres::Error> {
    rows_keyed(client, load, &keys.out_trade_nos, order_from_row).await
}

/// The projector's load of payments ([`load_payments`]): those of the transaction ids in `$1`.
pub fn load_payments_sql() -> String {
    format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE transaction_id = ANY($1)")
}

/// The payments booked for `keys.transaction_ids`, by `load` (from [`load_payments_sql`]).
pub async fn load_payments(
    client: &impl GenericClient,
    load: &Statement,
    keys: &Keys,
) -> Result<Vec<Payment>, tokio_postgres::Error> {
    rows_keyed(client, load, &keys.transaction_ids, payment_from_row).await
}

/// The projector's load of balances ([`load_balances`]): the accounts in `$1`, and the
/// wallets of the orders numbered in `$2` (what [`Keys::add_order`] adds once the orders
/// are loaded), so that both phases of the load are one query. `$3` is
/// [`WALLET_PREFIX`]: [`crate::core::fold::wallet_account`] names a wallet by the prefix
/// and its owner's id, hyphenated in lower case as Postgres prints a uuid.
pub const LOAD_BALANCES: &str = "SELECT account, balance, last_seq FROM balances
     WHERE account = ANY($1::text[] || ARRAY(
         SELECT $3::text || user_id::text FROM orders WHERE out_trade_no = ANY($2::text[])))";

/// The balances of `keys.accounts` and of the wallets of the orders in
/// `keys.out_trade_nos`, by `load` (from [`LOAD_BALANCES`]).
pub async fn load_balances(
    client: &impl GenericClient,
    load: &Statement,
    keys: &Keys,
) -> Result<Vec<Balance>, tokio_postgres::Error> {
    if keys.accounts.is_empty() && keys.out_trade_nos.is_empty() {
        return Ok(Vec::new());
    }
    let accounts: Vec<&str> = keys.accounts.iter().map(String::as_str).collect();
    let orders: Vec<&str> = keys.out_trade_nos.iter().map(String::as_str).collect();
    let rows = client
        .query(load, &[&accounts, &orders, &WALLET_PREFIX])
        .await?;
    all(&rows, balance_from_row)
}

/// The projector's upsert of orders ([`upsert_orders`]).
pub fn upsert_orders_sql() -> String {
    format!(
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
    )
}

/// Inserts or replaces `orders` whose `last_seq` is newer than the stored row's,
/// by `statement` (prepared from [`upsert_orders_sql`]).
pub async fn upsert_orders(
    client: &impl GenericClient,
    statement: &Statement,
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
            statement,
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

/// The projector's upsert of balances ([`upsert_balances`]).
pub const UPSERT_BALANCES: &str = "INSERT INTO balances (account, balance, last_seq)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])
             ON CONFLICT (account) DO UPDATE
             SET balance = EXCLUDED.balance, last_seq = EXCLUDED.last_seq
             WHERE balances.last_seq < EXCLUDED.last_seq";

/// Inserts or replaces `balances` whose `last_seq` is newer than the stored row's,
/// by `statement` (prepared from [`UPSERT_BALANCES`]).
pub async fn upsert_balances(
    client: &impl GenericClient,
    statement: &Statement,
    balances: &[Balance],
) -> Result<(), tokio_postgres::Error> {
    if balances.is_empty() {
        return Ok(());
    }
    let account: Vec<&str> = balances.iter().map(|b| b.account.as_str()).collect();
    let balance: Vec<i64> = balances.iter().map(|b| b.balance).collect();
    let last_seq: Vec<i64> = balances.iter().map(|b| b.last_seq).collect();
    client
        .execute(statement, &[&account, &balance, &last_seq])
        .await?;
    Ok(())
}

/// The projector's insert of payments ([`insert_payments`]).
pub fn insert_payments_sql() -> String {
    format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], \
                     $5::text[], $6::text[], $7::timestamptz[])
                 ON CONFLICT (transaction_id) DO NOTHING"
    )
}

/// Inserts newly booked payments (a transaction id already stored is left alone),
/// by `statement` (prepared from [`insert_payments_sql`]).
pub async fn insert_payments(
    client: &impl GenericClient,
    statement: &Statement,
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
            statement,
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

/// The projector's insert of postings ([`insert_entries`]).
pub fn insert_entries_sql() -> String {
    format!(
        "INSERT INTO ledger_entries ({ENTRY_COLUMNS})
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::int4[], $4::text[], \
                     $5::int8[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
                 ON CONFLICT (group_id, line) DO NOTHING"
    )
}

/// Inserts new postings (insert-only; a line already stored is left alone),
/// by `statement` (prepared from [`insert_entries_sql`]).
pub async fn insert_entries(
    client: &impl GenericClient,
    statement: &Statement,
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
            statement,
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

/// The projector's insert of failures ([`insert_failures`]).
pub fn insert_failures_sql() -> String {
    format!(
        "INSERT INTO failure_log ({FAILURE_COLUMNS})
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], \
                     $5::int8[], $6::jsonb[], $7::timestamptz[])
                 ON CONFLICT (seq, reason) DO NOTHING"
    )
}

/// Inserts new failure rows (one per event and reason),
/// by `statement` (prepared from [`insert_failures_sql`]).
pub async fn insert_failures(
    client: &impl GenericClient,
    statement: &Statement,
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
            statement,
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

// ---- reads ----

/// One order by number.
pub async fn get(
    client: &impl GenericClient,
    out_trade_no: &str,
) -> Result<Option<Order>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1"),
            &[(&out_trade_no, Type::TEXT)],
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
        .query_typed_opt(
            "SELECT balance FROM balances WHERE account = $1",
            &[(&account, Type::TEXT)],
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
