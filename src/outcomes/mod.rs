//! The outcome stream: the decisions the fold made, for consumers who want "order paid"
//! rather than the inputs that led to it. [`derive`] reads what a batch booked (its new
//! postings and failure rows) and names each decision with an id derived from its source,
//! so re-folding the same events names the same outcomes and a duplicate is detectable.
//!
//! [`derive`] is pure, like the fold: no clock, no I/O. The projector writes its result to
//! the `outbox` table in the batch's own transaction ([`outbox`]); the [`publisher`] sends
//! committed rows to JetStream.

pub mod outbox;
pub mod publisher;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    events::Recorded,
    fold::{is_wallet, wallet_account, EntryKind, Failure, LedgerEntry, PaidWith, State, SALES},
};

pub use publisher::{OutcomeStream, Publisher};

/// The schema version of every outcome type so far.
pub const VERSION: u32 = 1;

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutcomeKind {
    /// An order was paid, through WeChat Pay or from the wallet.
    OrderPaid,
    /// A paid recharge was credited to the wallet.
    RechargeCredited,
    /// A refund went back to the payer (through WeChat, or to the wallet).
    RefundSucceeded,
    /// The failure log got a row.
    FailureRecorded,
}

impl OutcomeKind {
    /// Every kind.
    pub const ALL: [OutcomeKind; 4] = [
        OutcomeKind::OrderPaid,
        OutcomeKind::RechargeCredited,
        OutcomeKind::RefundSucceeded,
        OutcomeKind::FailureRecorded,
    ];

    /// The type name: the envelope's `type` and the subject's tail.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::OrderPaid => "order.paid",
            OutcomeKind::RechargeCredited => "recharge.credited",
            OutcomeKind::RefundSucceeded => "refund.succeeded",
            OutcomeKind::FailureRecorded => "failure.recorded",
        }
    }
}

/// The event whose folding made the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Its stream sequence on the event stream.
    pub seq: u64,
    /// Its envelope id.
    pub event_id: Uuid,
    /// Its type, e.g. `payment.notified`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One outcome: the JSON published on the outcome stream (and kept in the outbox until
/// then), shaped by `schema/outcome.envelope.v1.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Derived from the source, e.g. `order.paid:<out_trade_no>`: the same decision always
    /// has the same id. Also the message's `Nats-Msg-Id`.
    pub id: String,
    /// The outcome type, e.g. `order.paid`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version of `data` for that type.
    pub version: u32,
    /// When the source event was accepted (not when the outcome was published).
    pub occurred_at: DateTime<Utc>,
    /// The event that made the decision.
    pub source: Source,
    /// The decision's facts, shaped by `schema/outcome.<type>.v<version>.json`.
    pub data: serde_json::Value,
}

/// `order.paid`: an order is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPaid {
    /// The order.
    pub out_trade_no: String,
    /// Who placed it.
    pub user_id: Uuid,
    /// Fen paid.
    pub amount: i64,
    /// `wechat` or `wallet`.
    pub paid_with: String,
    /// WeChat's transaction (paid with WeChat Pay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The wallet's balance right after the payment, in fen (paid from the wallet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<i64>,
}

/// `recharge.credited`: a paid recharge is in the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RechargeCredited {
    /// The recharge order.
    pub out_trade_no: String,
    /// Whose wallet.
    pub user_id: Uuid,
    /// Fen credited.
    pub amount: i64,
    /// WeChat's transaction.
    pub transaction_id: String,
    /// The wallet's balance right after the credit, in fen.
    pub wallet_balance: i64,
}

/// `refund.succeeded`: a refund went back to the payer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSucceeded {
    /// The refund.
    pub out_refund_no: String,
    /// The order refunded.
    pub out_trade_no: String,
    /// Fen refunded (for a refund through WeChat: what WeChat reports it paid out).
    pub amount: i64,
    /// `wechat` (back to the payer through WeChat Pay) or `wallet`.
    pub refunded_to: String,
    /// Whether wxledger asked for it; `false` for a refund WeChat reported that nobody
    /// asked wxledger for (also recorded as the failure `unknown_refund`).
    pub requested: bool,
    /// Who paid the order (requested refunds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// WeChat's transaction that paid the order (requested refunds of orders paid with
    /// WeChat Pay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// WeChat's refund id, when WeChat reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// The wallet's balance right after the refund, in fen (refunded to the wallet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<i64>,
}

/// `failure.recorded`: a row of the failure log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRecorded {
    /// Stable snake_case code, e.g. `unknown_order`.
    pub reason: String,
    /// The order concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// WeChat's transaction, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The money concerned, in fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// Context for a human, as in the failure log; its fields vary by reason.
    pub detail: serde_json::Value,
}

/// The outcomes of one batch: `records` were folded over `state`, which made the postings
/// `entries` and the failure rows `failures` (taken from its ledger after the batch).
/// Sorted by source sequence, then id: the order they are published in.
///
/// Only the rows the batch loaded or wrote are read, and only facts that later events
/// cannot change, so folding the same events in other batches gives the same outcomes.
pub fn derive(
    records: &[Recorded],
    entries: &[LedgerEntry],
    failures: &[Failure],
    state: &State,
) -> Vec<Outcome> {
    let by_seq: BTreeMap<u64, &Recorded> = records.iter().map(|r| (r.seq, r)).collect();
    let source = |seq: i64| -> &Recorded {
        let seq = u64::try_from(seq).expect("sequences are positive");
        by_seq
            .get(&seq)
            .expect("every posting and failure of a batch comes from one of its events")
    };
    let mut out = Vec::new();
    let mut offset = 0;
    // A group's lines are adjacent: the ledger posts a group at once.
    for group in entries.chunk_by(|a, b| a.group_id == b.group_id && a.seq == b.seq) {
        offset += group.len();
        let later = &entries[offset..];
        if let Some((kind, id, data)) = decision(group, later, state) {
            out.push(outcome(kind, id, data, source(group[0].seq)));
        }
    }
    for f in failures {
        let rec = source(f.seq);
        let data = FailureRecorded {
            reason: f.reason.clone(),
            out_trade_no: f.out_trade_no.clone(),
            transaction_id: f.transaction_id.clone(),
            amount: f.amount,
            detail: f.detail.clone(),
        };
        let id = format!(
            "{}:{}:{}",
            OutcomeKind::FailureRecorded.as_str(),
            rec.id,
            f.reason
        );
        out.push(outcome(
            OutcomeKind::FailureRecorded,
            id,
            to_json(&data),
            rec,
        ));
    }
    out.sort_by(|a, b| (a.source.seq, &a.id).cmp(&(b.source.seq, &b.id)));
    out
}

fn outcome(kind: OutcomeKind, id: String, data: serde_json::Value, rec: &Recorded) -> Outcome {
    Outcome {
        id,
        kind: kind.as_str().to_owned(),
        version: VERSION,
        occurred_at: rec.occurred_at,
        source: Source {
            seq: rec.seq,
            event_id: rec.id,
            kind: rec.event.kind().to_owned(),
        },
        data,
    }
}

fn to_json(data: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(data).expect("outcome data always serializes")
}

/// The decision a posting group stands for, if it is one consumers are told about.
fn decision(
    group: &[LedgerEntry],
    later: &[LedgerEntry],
    state: &State,
) -> Option<(OutcomeKind, String, serde_json::Value)> {
    let first = &group[0];
    let no = first.out_trade_no.as_str();
    let credited = |account: &str| {
        group
            .iter()
            .find(|e| e.account == account && e.amount > 0)
            .map(|e| e.amount)
    };
    let order = || {
        state
            .orders
            .get(no)
            .expect("the fold pays only orders it holds")
    };
    let id = |kind: OutcomeKind, key: &str| format!("{}:{key}", kind.as_str());
    match first.kind {
        EntryKind::Sale => {
            let data = OrderPaid {
                out_trade_no: no.to_owned(),
                user_id: order().user_id,
                amount: credited(SALES)?,
                paid_with: PaidWith::Wechat.as_str().to_owned(),
                transaction_id: first.transaction_id.clone(),
                wallet_balance: None,
            };
            Some((
                OutcomeKind::OrderPaid,
                id(OutcomeKind::OrderPaid, no),
                to_json(&data),
            ))
        }
        EntryKind::WalletPayment => {
            let user_id = order().user_id;
            let data = OrderPaid {
                out_trade_no: no.to_owned(),
                user_id,
                amount: credited(SALES)?,
                paid_with: PaidWith::Wallet.as_str().to_owned(),
                transaction_id: None,
                wallet_balance: Some(balance_after(&wallet_account(user_id), later, state)),
            };
            Some((
                OutcomeKind::OrderPaid,
                id(OutcomeKind::OrderPaid, no),
                to_json(&data),
            ))
        }
        EntryKind::Recharge => {
            let user_id = order().user_id;
            let wallet = wallet_account(user_id);
            let data = RechargeCredited {
                out_trade_no: no.to_owned(),
                user_id,
                amount: credited(&wallet)?,
                transaction_id: first.transaction_id.clone()?,
                wallet_balance: balance_after(&wallet, later, state),
            };
            let kind = OutcomeKind::RechargeCredited;
            Some((kind, id(kind, no), to_json(&data)))
        }
        EntryKind::Refund => {
            let data = refund_succeeded(group, later, state)?;
            let kind = OutcomeKind::RefundSucceeded;
            Some((kind, id(kind, &data.out_refund_no), to_json(&data)))
        }
        EntryKind::Suspense | EntryKind::RefundReserve | EntryKind::RefundRelease => None,
    }
}

/// A `refund` group: `refund:<no>` (an order paid from the wallet, refunded to it at once)
/// or `refund:<no>:settle` (WeChat paid it out).
fn refund_succeeded(
    group: &[LedgerEntry],
    later: &[LedgerEntry],
    state: &State,
) -> Option<RefundSucceeded> {
    let first = &group[0];
    let to_wallet = group.iter().find(|e| is_wallet(&e.account) && e.amount > 0);
    let rest = first.group_id.strip_prefix("refund:")?;
    let out_refund_no = match to_wallet {
        Some(_) => rest,
        None => rest.strip_suffix(":settle")?,
    };
    let row = state.refunds.get(out_refund_no)?;
    // The order as it was asked for: a refund row names it from the request on, and a
    // paid order's user and transaction never change. (A refund nobody asked for may name
    // an order placed only later, so it names no user.)
    let order = row
        .requested
        .then(|| state.orders.get(&row.out_trade_no))
        .flatten();
    let (amount, refunded_to, wallet_balance) = match to_wallet {
        Some(line) => (
            line.amount,
            PaidWith::Wallet,
            Some(balance_after(&line.account, later, state)),
        ),
        None => (
            group
                .iter()
                .find(|e| e.account == crate::fold::CLEARING)?
                .amount,
            PaidWith::Wechat,
            None,
        ),
    };
    Some(RefundSucceeded {
        out_refund_no: out_refund_no.to_owned(),
        out_trade_no: first.out_trade_no.clone(),
        amount,
        refunded_to: refunded_to.as_str().to_owned(),
        requested: row.requested,
        user_id: order.map(|o| o.user_id),
        transaction_id: order.and_then(|o| o.transaction_id.clone()),
        refund_id: row.refund_id.clone(),
        wallet_balance,
    })
}

/// An account's balance right after a posting: its balance after the batch, less what the
/// batch posted to it later.
fn balance_after(account: &str, later: &[LedgerEntry], state: &State) -> i64 {
    let posted_later: i64 = later
        .iter()
        .filter(|e| e.account == account)
        .map(|e| e.amount)
        .sum();
    state.ledger.balance(account) - posted_later
}

#[cfg(test)]
mod tests;
