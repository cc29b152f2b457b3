//! How the payment tables' rows map to the fold's types: the enums stored by name, the
//! row decoders with their column lists, and the `COPY` encoders of the full rebuild.

use tokio_postgres::{
    types::{FromSql, Type},
    Row,
};

use crate::core::{
    events::OrderKind,
    fold::{
        Balance, BookedAs, EntryKind, Failure, LedgerEntry, Order, OrderState, PaidWith, PaySource,
        Payment,
    },
};
use crate::store::db::copy::{CopyRow, EncodeError, RowWriter};

/// A fold enum stored as its name in a text column.
pub(in crate::store::db) trait Named: Sized {
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

pub(in crate::store::db) fn named<T: Named>(
    row: &Row,
    column: &str,
) -> Result<T, tokio_postgres::Error> {
    Ok(row.try_get::<_, Name<T>>(column)?.0)
}

pub(super) const ORDER_COLUMNS: &str = "out_trade_no, user_id, openid, kind, amount, currency, \
     description, appid, mchid, state, prepay_id, transaction_id, placed_at, expires_at, \
     paid_at, closed_at, last_seq, paid_with, refunded, refunding";

/// An `orders` row (its columns read by name) as the fold's [`Order`].
pub fn order_from_row(row: &Row) -> Result<Order, tokio_postgres::Error> {
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

pub(super) const PAYMENT_COLUMNS: &str =
    "transaction_id, out_trade_no, amount, seq, booked_as, source, occurred_at";

/// A `payments` row as the fold's [`Payment`].
pub fn payment_from_row(row: &Row) -> Result<Payment, tokio_postgres::Error> {
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

/// A `balances` row as the fold's [`Balance`].
pub fn balance_from_row(row: &Row) -> Result<Balance, tokio_postgres::Error> {
    Ok(Balance {
        account: row.try_get("account")?,
        balance: row.try_get("balance")?,
        last_seq: row.try_get("last_seq")?,
    })
}

pub(super) const ENTRY_COLUMNS: &str =
    "seq, group_id, line, account, amount, kind, out_trade_no, transaction_id, occurred_at";

/// A `ledger_entries` row as the fold's [`LedgerEntry`].
pub fn entry_from_row(row: &Row) -> Result<LedgerEntry, tokio_postgres::Error> {
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

pub(super) const FAILURE_COLUMNS: &str =
    "seq, reason, out_trade_no, transaction_id, amount, detail, occurred_at";

/// A `failure_log` row as the fold's [`Failure`].
pub fn failure_from_row(row: &Row) -> Result<Failure, tokio_postgres::Error> {
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

pub(in crate::store::db) fn all<T>(
    rows: &[Row],
    f: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    rows.iter().map(f).collect()
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
