//! Orders and recharges: placed, prepay issued, closed, and what WeChat reports about
//! their payment (a verified notify or a signed query answer, handled alike).
//!
//! A payment WeChat vouches for is booked once per transaction id and is never dropped:
//! what cannot be credited as asked goes to `suspense` (or is left uncredited) with a row
//! in the failure log saying why.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::ledger::{
    is_wallet, wallet_account, BookedAs, EntryKind, Failure, GroupId, Ledger, PaySource, Payment,
    PostError, Posting, CLEARING, SALES, SUSPENSE,
};
use super::Outcome;
use crate::events::{
    BalancePayRequested, OrderClosed, OrderKind, OrderPlaced, PrepayIssued, Transaction,
};

/// Where an order stands; WeChat's trade states, as the merchant sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderState {
    /// Placed, no prepay yet.
    Created,
    /// WeChat issued a prepay id: the user may pay.
    PrepayIssued,
    /// Paid.
    Paid,
    /// Closed unpaid.
    Closed,
    /// WeChat reported a payment error; the user may try again.
    PayError,
    /// Paid, and part of it refunded.
    PartiallyRefunded,
    /// Paid, and all of it refunded.
    Refunded,
}

impl OrderState {
    /// The name stored in `orders.state` and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::PrepayIssued => "prepay_issued",
            OrderState::Paid => "paid",
            OrderState::Closed => "closed",
            OrderState::PayError => "pay_error",
            OrderState::PartiallyRefunded => "partially_refunded",
            OrderState::Refunded => "refunded",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => OrderState::Created,
            "prepay_issued" => OrderState::PrepayIssued,
            "paid" => OrderState::Paid,
            "closed" => OrderState::Closed,
            "pay_error" => OrderState::PayError,
            "partially_refunded" => OrderState::PartiallyRefunded,
            "refunded" => OrderState::Refunded,
            _ => return None,
        })
    }

    /// Not paid and not closed: the order may still be paid (or expire).
    pub fn is_unpaid(self) -> bool {
        matches!(
            self,
            OrderState::Created | OrderState::PrepayIssued | OrderState::PayError
        )
    }

    /// Paid, whatever was refunded since.
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            OrderState::Paid | OrderState::PartiallyRefunded | OrderState::Refunded
        )
    }

    /// The state an order is placed in.
    pub const INITIAL: OrderState = OrderState::Created;

    /// Whether the fold may move an order from this state to `next`: the order rules,
    /// written once, asked by the fold before it moves an order and by the audit of every
    /// move the fold made. A self-move listed here is a real change (a new prepay id, a
    /// further partial refund); an event that leaves the state as it was is no move.
    pub fn can_move_to(self, next: OrderState) -> bool {
        use OrderState::*;
        matches!(
            (self, next),
            (
                Created | PrepayIssued | PayError,
                PrepayIssued | Closed | Paid
            ) | (Created | PrepayIssued, PayError)
                | (Paid | PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }
}

/// How an order was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PaidWith {
    /// Through WeChat Pay (a transaction id).
    Wechat,
    /// From the payer's wallet.
    Wallet,
}

impl PaidWith {
    /// The name stored in `orders.paid_with`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaidWith::Wechat => "wechat",
            PaidWith::Wallet => "wallet",
        }
    }

    /// The value named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "wechat" => PaidWith::Wechat,
            "wallet" => PaidWith::Wallet,
            _ => return None,
        })
    }
}

/// One row of the `orders` projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The merchant's order number (the key).
    pub out_trade_no: String,
    /// Who placed it.
    pub user_id: Uuid,
    /// The payer's openid.
    pub openid: String,
    /// Order or recharge.
    pub kind: OrderKind,
    /// Amount in fen.
    pub amount: i64,
    /// `CNY`.
    pub currency: String,
    /// What the payment sheet shows.
    pub description: String,
    /// App id it is paid under.
    pub appid: String,
    /// Merchant it is paid to.
    pub mchid: String,
    /// Where it stands.
    pub state: OrderState,
    /// WeChat's latest prepay id.
    pub prepay_id: Option<String>,
    /// The transaction that paid it.
    pub transaction_id: Option<String>,
    /// How it was paid.
    pub paid_with: Option<PaidWith>,
    /// Fen refunded (settled).
    pub refunded: i64,
    /// Fen set aside for refunds not settled yet.
    pub refunding: i64,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When it expires if unpaid.
    pub expires_at: DateTime<Utc>,
    /// When the payment was booked.
    pub paid_at: Option<DateTime<Utc>>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Sequence of the newest event applied to this row.
    pub last_seq: i64,
}

impl Order {
    /// Fen that may still be refunded: what was paid, less what was refunded and what is
    /// set aside for refunds in flight. The one rule the fold refunds by, and the API's
    /// pre-check asks.
    pub fn refundable(&self) -> i64 {
        self.amount - self.refunded - self.refunding
    }
}

/// Orders by out_trade_no, with the rows changed since last taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orders {
    by_no: BTreeMap<String, Order>,
    dirty: BTreeSet<String>,
}

impl Orders {
    /// Adds a row loaded from storage (not marked changed).
    pub fn load(&mut self, order: Order) {
        self.by_no.insert(order.out_trade_no.clone(), order);
    }

    /// The order numbered `out_trade_no`.
    pub fn get(&self, out_trade_no: &str) -> Option<&Order> {
        self.by_no.get(out_trade_no)
    }

    /// Every order held, by out_trade_no.
    pub fn iter(&self) -> impl Iterator<Item = &Order> {
        self.by_no.values()
    }

    /// The rows changed since the last call, which are forgotten as changed.
    pub fn take_changed(&mut self) -> Vec<Order> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|no| self.by_no.get(&no).cloned())
            .collect()
    }

    /// The row to change, unless `seq` was already applied to it.
    fn fresh(&mut self, out_trade_no: &str, seq: i64) -> Result<&mut Order, Outcome> {
        let order = self
            .by_no
            .get_mut(out_trade_no)
            .ok_or(Outcome::Refused("unknown_order"))?;
        if seq <= order.last_seq {
            return Err(Outcome::AlreadyApplied);
        }
        Ok(order)
    }

    fn touch(&mut self, out_trade_no: &str, seq: i64) -> &mut Order {
        self.dirty.insert(out_trade_no.to_owned());
        let order = self
            .by_no
            .get_mut(out_trade_no)
            .expect("only orders just found are touched");
        order.last_seq = seq;
        order
    }

    pub(super) fn placed(&mut self, seq: i64, at: DateTime<Utc>, e: &OrderPlaced) -> Outcome {
        if let Some(existing) = self.by_no.get(&e.out_trade_no) {
            let same = existing.user_id == e.user_id
                && existing.openid == e.openid
                && existing.kind == e.kind
                && existing.amount == e.amount
                && existing.currency == e.currency
                && existing.description == e.description
                && existing.appid == e.appid
                && existing.mchid == e.mchid
                && existing.expires_at == e.expires_at;
            return if same {
                Outcome::AlreadyApplied
            } else {
                Outcome::Refused("out_trade_no_taken")
            };
        }
        if e.amount <= 0 {
            return Outcome::Refused("invalid_amount");
        }
        self.by_no.insert(
            e.out_trade_no.clone(),
            Order {
                out_trade_no: e.out_trade_no.clone(),
                user_id: e.user_id,
                openid: e.openid.clone(),
                kind: e.kind,
                amount: e.amount,
                currency: e.currency.clone(),
                description: e.description.clone(),
                appid: e.appid.clone(),
                mchid: e.mchid.clone(),
                state: OrderState::Created,
                prepay_id: None,
                transaction_id: None,
                paid_with: None,
                refunded: 0,
                refunding: 0,
                placed_at: at,
                expires_at: e.expires_at,
                paid_at: None,
                closed_at: None,
                last_seq: seq,
            },
        );
        self.dirty.insert(e.out_trade_no.clone());
        Outcome::Applied
    }

    pub(super) fn prepay_issued(&mut self, seq: i64, e: &PrepayIssued) -> Outcome {
        let order = match self.fresh(&e.out_trade_no, seq) {
            Ok(order) => order,
            Err(outcome) => return outcome,
        };
        if !order.state.can_move_to(OrderState::PrepayIssued) {
            return Outcome::Refused("not_payable");
        }
        let order = self.touch(&e.out_trade_no, seq);
        order.state = OrderState::PrepayIssued;
        order.prepay_id = Some(e.prepay_id.clone());
        Outcome::Applied
    }

    pub(super) fn closed(&mut self, seq: i64, at: DateTime<Utc>, e: &OrderClosed) -> Outcome {
        self.close(seq, at, &e.out_trade_no)
    }

    /// The row to change for an event at `seq` (for the refund rules).
    pub(super) fn fresh_mut(
        &mut self,
        out_trade_no: &str,
        seq: i64,
    ) -> Result<&mut Order, Outcome> {
        self.fresh(out_trade_no, seq)?;
        Ok(self.touch(out_trade_no, seq))
    }

    fn close(&mut self, seq: i64, at: DateTime<Utc>, out_trade_no: &str) -> Outcome {
        let order = match self.fresh(out_trade_no, seq) {
            Ok(order) => order,
            Err(outcome) => return outcome,
        };
        match order.state {
            OrderState::Closed => return Outcome::AlreadyApplied,
            s if !s.can_move_to(OrderState::Closed) => return Outcome::Refused("already_paid"),
            _ => {}
        }
        let order = self.touch(out_trade_no, seq);
        order.state = OrderState::Closed;
        order.closed_at = Some(at);
        Outcome::Applied
    }
}

/// Who reported a transaction, for the payment row and the failure context.
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub source: PaySource,
    /// `{"source": ..., "notify_id"|"query_reason": ...}`.
    pub context: serde_json::Value,
}

/// One event's view: its sequence, time and report.
struct Ctx<'a> {
    seq: i64,
    at: DateTime<Utc>,
    report: &'a Report,
    tx: &'a Transaction,
}

impl Ctx<'_> {
    /// Records a failure row; `Applied` unless this event recorded it already.
    fn fail(
        &self,
        ledger: &mut Ledger,
        reason: &str,
        amount: Option<i64>,
        extra: serde_json::Value,
    ) -> Outcome {
        let mut detail = self.report.context.clone();
        detail["trade_state"] = json!(self.tx.trade_state);
        if let (Some(detail), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
            detail.extend(extra);
        }
        let recorded = ledger.record_failure(Failure {
            seq: self.seq,
            reason: reason.to_owned(),
            out_trade_no: Some(self.tx.out_trade_no.clone()),
            transaction_id: self.tx.transaction_id.clone(),
            amount,
            detail,
            occurred_at: self.at,
        });
        if recorded {
            Outcome::Applied
        } else {
            Outcome::AlreadyApplied
        }
    }
}

/// WeChat says transaction `tx` is in `tx.trade_state` (from a notify or a query).
pub(super) fn reported(
    orders: &mut Orders,
    ledger: &mut Ledger,
    seq: i64,
    at: DateTime<Utc>,
    report: &Report,
    tx: &Transaction,
) -> Outcome {
    let ctx = Ctx {
        seq,
        at,
        report,
        tx,
    };
    match tx.trade_state.as_str() {
        "SUCCESS" | "REFUND" => paid(orders, ledger, &ctx),
        "CLOSED" | "REVOKED" => {
            if orders.get(&tx.out_trade_no).is_none() {
                return ctx.fail(ledger, "unknown_order", None, json!({}));
            }
            orders.close(seq, at, &tx.out_trade_no)
        }
        "PAYERROR" => {
            let order = match orders.fresh(&tx.out_trade_no, seq) {
                Ok(order) => order,
                Err(outcome) => return outcome,
            };
            match order.state {
                OrderState::Closed => return Outcome::Refused("order_closed"),
                OrderState::PayError => return Outcome::Refused("already_pay_error"),
                s if !s.can_move_to(OrderState::PayError) => {
                    return Outcome::Refused("already_paid")
                }
                _ => {}
            }
            orders.touch(&tx.out_trade_no, seq).state = OrderState::PayError;
            Outcome::Applied
        }
        "NOTPAY" | "USERPAYING" => Outcome::Refused("not_final"),
        _ => ctx.fail(ledger, "unknown_trade_state", None, json!({})),
    }
}

/// Where a proven payment's money goes, and why.
enum Booking {
    /// The order is paid: credit sales or the wallet.
    Credit,
    /// Received but not assignable: suspense, with these failures.
    Suspense(Vec<(&'static str, serde_json::Value)>),
    /// Not credited at all, with this failure.
    NotCredited(&'static str, serde_json::Value),
}

/// `SUCCESS` or `REFUND`: the transaction proves the money arrived.
fn paid(orders: &mut Orders, ledger: &mut Ledger, ctx: &Ctx<'_>) -> Outcome {
    let tx = ctx.tx;
    let transaction_id = tx.transaction_id.as_deref().filter(|t| !t.is_empty());
    let amount = tx.amount.as_ref();
    let total = amount.and_then(|a| a.total);
    let (Some(transaction_id), Some(total @ 1..)) = (transaction_id, total) else {
        return ctx.fail(
            ledger,
            "malformed_transaction",
            total,
            json!({"expected": "transaction_id and a positive amount.total",
                   "got": {"transaction_id": tx.transaction_id, "total": total}}),
        );
    };
    if ledger.payment(transaction_id).is_some() {
        return Outcome::AlreadyApplied;
    }
    let currency = amount.and_then(|a| a.currency.as_deref()).unwrap_or("CNY");

    let order = orders.get(&tx.out_trade_no);
    if order.is_some_and(|o| ctx.seq <= o.last_seq) {
        return Outcome::AlreadyApplied;
    }
    let booking = match order {
        None => Booking::Suspense(vec![("unknown_order", json!({}))]),
        Some(o) if o.appid != tx.appid || o.mchid != tx.mchid => Booking::NotCredited(
            "merchant_mismatch",
            json!({"expected": {"appid": o.appid, "mchid": o.mchid},
                   "got": {"appid": tx.appid, "mchid": tx.mchid}}),
        ),
        Some(o) if o.currency != currency || o.amount != total => {
            let mut failures = Vec::new();
            if o.currency != currency {
                failures.push((
                    "currency_mismatch",
                    json!({"expected": o.currency, "got": currency}),
                ));
            }
            if o.amount != total {
                failures.push((
                    "amount_mismatch",
                    json!({"expected": o.amount, "got": total}),
                ));
            }
            Booking::Suspense(failures)
        }
        Some(o) if o.state.is_paid() => {
            if o.transaction_id.as_deref() == Some(transaction_id) {
                // Booked with the order but missing from the payments: nothing to add.
                return Outcome::AlreadyApplied;
            }
            Booking::Suspense(vec![(
                "double_payment",
                json!({"expected": {"transaction_id": o.transaction_id,
                                    "paid_with": o.paid_with.map(PaidWith::as_str)},
                       "got": {"transaction_id": transaction_id}}),
            )])
        }
        Some(o) if o.state == OrderState::Closed => Booking::Suspense(vec![(
            "paid_after_close",
            json!({"expected": {"state": "unpaid"}, "got": {"state": o.state.as_str(),
                   "closed_at": o.closed_at}}),
        )]),
        Some(_) => Booking::Credit,
    };

    let posting = |kind| Posting {
        seq: ctx.seq,
        at: ctx.at,
        group_id: GroupId::Payment(transaction_id.to_owned()),
        kind,
        out_trade_no: &tx.out_trade_no,
        transaction_id: Some(transaction_id),
    };
    let booked_as = match booking {
        Booking::NotCredited(reason, detail) => {
            ctx.fail(ledger, reason, Some(total), detail);
            BookedAs::NotCredited
        }
        Booking::Suspense(failures) => {
            let result = ledger.transfer(&posting(EntryKind::Suspense), CLEARING, SUSPENSE, total);
            if result == Err(PostError::AlreadyApplied) {
                return Outcome::AlreadyApplied;
            }
            for (reason, detail) in failures {
                ctx.fail(ledger, reason, Some(total), detail);
            }
            match result {
                Ok(()) => BookedAs::Suspense,
                Err(e) => {
                    overflow(ledger, ctx, total, &e);
                    BookedAs::NotCredited
                }
            }
        }
        Booking::Credit => {
            let order = orders
                .get(&tx.out_trade_no)
                .expect("credit needs the order");
            let (kind, account, booked) = match order.kind {
                OrderKind::Order => (EntryKind::Sale, SALES.to_owned(), BookedAs::Sale),
                OrderKind::Recharge => (
                    EntryKind::Recharge,
                    wallet_account(order.user_id),
                    BookedAs::Recharge,
                ),
            };
            let booked = match ledger.transfer(&posting(kind), CLEARING, &account, total) {
                Ok(()) => booked,
                Err(PostError::AlreadyApplied) => return Outcome::AlreadyApplied,
                Err(PostError::Overflow(a) | PostError::Negative(a)) if is_wallet(&a) => {
                    let balance = ledger.balance(&a);
                    ctx.fail(
                        ledger,
                        "recharge_credit_failed",
                        Some(total),
                        json!({"account": a, "balance": balance, "credit": total}),
                    );
                    match ledger.transfer(&posting(EntryKind::Suspense), CLEARING, SUSPENSE, total)
                    {
                        Ok(()) => BookedAs::Suspense,
                        Err(e) => {
                            overflow(ledger, ctx, total, &e);
                            BookedAs::NotCredited
                        }
                    }
                }
                Err(e) => {
                    overflow(ledger, ctx, total, &e);
                    BookedAs::NotCredited
                }
            };
            let order = orders.touch(&tx.out_trade_no, ctx.seq);
            order.state = OrderState::Paid;
            order.transaction_id = Some(transaction_id.to_owned());
            order.paid_with = Some(PaidWith::Wechat);
            order.paid_at = Some(ctx.at);
            booked
        }
    };
    ledger.record_payment(Payment {
        transaction_id: transaction_id.to_owned(),
        out_trade_no: tx.out_trade_no.clone(),
        amount: total,
        seq: ctx.seq,
        booked_as,
        source: ctx.report.source,
        occurred_at: ctx.at,
    });
    Outcome::Applied
}

/// A posting group that would leave an account outside `i64`: recorded, not posted.
fn overflow(ledger: &mut Ledger, ctx: &Ctx<'_>, total: i64, e: &PostError) {
    let account = match e {
        PostError::Overflow(a) | PostError::Negative(a) => a.as_str(),
        PostError::AlreadyApplied => "",
    };
    let balance = ledger.balance(account);
    ctx.fail(
        ledger,
        "ledger_overflow",
        Some(total),
        json!({"account": account, "balance": balance, "amount": total}),
    );
}

/// A user pays an unpaid order from their wallet: all of it or nothing. Without the funds
/// the order stays unpaid and the failure log says `insufficient_balance`.
pub(super) fn balance_pay(
    orders: &mut Orders,
    ledger: &mut Ledger,
    seq: i64,
    at: DateTime<Utc>,
    e: &BalancePayRequested,
) -> Outcome {
    let order = match orders.fresh(&e.out_trade_no, seq) {
        Ok(order) => order,
        Err(outcome) => return outcome,
    };
    if order.user_id != e.user_id {
        return Outcome::Refused("not_owner");
    }
    if order.kind != OrderKind::Order {
        return Outcome::Refused("not_payable");
    }
    if order.amount != e.amount {
        return Outcome::Refused("amount_mismatch");
    }
    if !order.state.can_move_to(OrderState::Paid) {
        return Outcome::Refused(if order.state.is_paid() {
            "already_paid"
        } else {
            "order_closed"
        });
    }
    let wallet = wallet_account(order.user_id);
    let posting = Posting {
        seq,
        at,
        group_id: GroupId::WalletPay(e.out_trade_no.clone()),
        kind: EntryKind::WalletPayment,
        out_trade_no: &e.out_trade_no,
        transaction_id: None,
    };
    let (reason, account) = match ledger.transfer(&posting, &wallet, SALES, e.amount) {
        Ok(()) => {
            let order = orders.touch(&e.out_trade_no, seq);
            order.state = OrderState::Paid;
            order.paid_with = Some(PaidWith::Wallet);
            order.paid_at = Some(at);
            return Outcome::Applied;
        }
        Err(PostError::AlreadyApplied) => return Outcome::AlreadyApplied,
        Err(PostError::Negative(account)) => ("insufficient_balance", account),
        Err(PostError::Overflow(account)) => ("ledger_overflow", account),
    };
    let balance = ledger.balance(&account);
    ledger.record_failure(Failure {
        seq,
        reason: reason.to_owned(),
        out_trade_no: Some(e.out_trade_no.clone()),
        transaction_id: None,
        amount: Some(e.amount),
        detail: json!({"source": "balance_pay", "account": account,
                       "balance": balance, "amount": e.amount}),
        occurred_at: at,
    });
    Outcome::Refused(reason)
}
