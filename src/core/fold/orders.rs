//! Orders and recharges: placed, prepay issued, closed, and what WeChat reports about
//! their payment (a verified notify or a signed query answer, handled alike).
//!
//! A payment WeChat vouches for is booked once per transaction id and is never dropped:
//! what cannot be credited as asked goes to `suspense` (or is left uncredited) with a row
//! in the failure log saying why.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ledger::{
    is_wallet, wallet_account, BookedAs, EntryKind, Failure, GroupId, Ledger, PaySource, Payment,
    PostError, Posting, CLEARING, SALES, SUSPENSE,
};
use super::{Decision, Refusal, Verdict};
use crate::core::events::{
    BalancePayRequested, OrderClosed, OrderKind, OrderPlaced, PrepayIssued, Transaction,
};

mod payments;

pub(super) use self::payments::{balance_pay, reported, Report};

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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
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
    fn fresh(&mut self, out_trade_no: &str, seq: i64) -> Result<&mut Order, Verdict> {
        let order = self
            .by_no
            .get_mut(out_trade_no)
            .ok_or(Verdict::Refused(Refusal::UnknownOrder))?;
        if seq <= order.last_seq {
            return Err(Verdict::AlreadyApplied);
        }
        Ok(order)
    }

    fn touch(&mut self, out_trade_no: &str, seq: i64) -> &mut Order {
        if !self.dirty.contains(out_trade_no) {
            self.dirty.insert(out_trade_no.to_owned());
        }
        let order = self
            .by_no
            .get_mut(out_trade_no)
            .expect("only orders just found are touched");
        order.last_seq = seq;
        order
    }

    pub(super) fn placed(&mut self, seq: i64, at: DateTime<Utc>, e: &OrderPlaced) -> Verdict {
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
                Verdict::AlreadyApplied
            } else {
                Verdict::Refused(Refusal::OutTradeNoTaken)
            };
        }
        if e.amount <= 0 {
            return Verdict::Refused(Refusal::InvalidAmount);
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
        Verdict::applied()
    }

    pub(super) fn prepay_issued(&mut self, seq: i64, e: &PrepayIssued) -> Verdict {
        let order = match self.fresh(&e.out_trade_no, seq) {
            Ok(order) => order,
            Err(outcome) => return outcome,
        };
        if !order.state.can_move_to(OrderState::PrepayIssued) {
            return Verdict::Refused(Refusal::NotPayable);
        }
        let order = self.touch(&e.out_trade_no, seq);
        order.state = OrderState::PrepayIssued;
        order.prepay_id = Some(e.prepay_id.clone());
        Verdict::applied()
    }

    pub(super) fn closed(&mut self, seq: i64, at: DateTime<Utc>, e: &OrderClosed) -> Verdict {
        self.close(seq, at, &e.out_trade_no)
    }

    /// The row to change for an event at `seq` (for the refund rules).
    pub(super) fn fresh_mut(
        &mut self,
        out_trade_no: &str,
        seq: i64,
    ) -> Result<&mut Order, Verdict> {
        self.fresh(out_trade_no, seq)?;
        Ok(self.touch(out_trade_no, seq))
    }

    fn close(&mut self, seq: i64, at: DateTime<Utc>, out_trade_no: &str) -> Verdict {
        let order = match self.fresh(out_trade_no, seq) {
            Ok(order) => order,
            Err(outcome) => return outcome,
        };
        match order.state {
            OrderState::Closed => return Verdict::AlreadyApplied,
            s if !s.can_move_to(OrderState::Closed) => {
                return Verdict::Refused(Refusal::AlreadyPaid {
                    paid_with: order.paid_with,
                })
            }
            _ => {}
        }
        let order = self.touch(out_trade_no, seq);
        order.state = OrderState::Closed;
        order.closed_at = Some(at);
        Verdict::applied()
    }
}
