//! The outcome stream: the decisions the fold made, for consumers who want "order paid"
//! rather than the inputs that led to it. `derive` reads what a batch booked (its new
//! postings and failure rows, with the fold's verdict on each event for the balances it
//! left) and names each decision with an id derived from its source,
//! so re-folding the same events names the same outcomes and a duplicate is detectable.
//!
//! `derive` is pure, like the fold: no clock, no I/O. The projector writes its result to
//! the `outbox` table in the batch's own transaction ([`outbox`]); the [`publisher`] sends
//! committed rows to the outcome [`OutcomeStream`], each publish fenced by the stream's last
//! sequence so that a stale publisher cannot reorder them.

mod message;
pub mod outbox;
pub mod publisher;
mod stream;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::{
    events::Recorded,
    fold::{
        is_wallet, wallet_account, Decision, EntryKind, Failure, GroupId, LedgerEntry, PaidWith,
        State, Verdict, SALES,
    },
};

pub use message::{
    FailureRecorded, OrderPaid, Outcome, OutcomeKind, RechargeCredited, RefundSucceeded, Source,
    VERSION,
};
pub use publisher::{Lease, PublishError, Publisher};
pub use stream::OutcomeStream;

/// The outcomes of one batch: `records` were folded over `state` with the `verdicts` (one
/// per record, in order), which made the postings `entries` and the failure rows
/// `failures` (taken from its ledger after the batch). Sorted by source sequence, then
/// id: the order they are published in.
///
/// Only the rows the batch loaded or wrote are read, and only facts that later events
/// cannot change, so folding the same events in other batches gives the same outcomes.
pub fn derive(
    records: &[Recorded],
    verdicts: &[Verdict],
    entries: &[LedgerEntry],
    failures: &[Failure],
    state: &State,
) -> Vec<Outcome> {
    assert_eq!(records.len(), verdicts.len(), "one verdict per record");
    let by_seq: BTreeMap<u64, (&Recorded, &Verdict)> = records
        .iter()
        .zip(verdicts)
        .map(|(r, v)| (r.seq, (r, v)))
        .collect();
    let source = |seq: i64| -> (&Recorded, &[Decision]) {
        let seq = u64::try_from(seq).expect("sequences are positive");
        let (rec, verdict) = by_seq
            .get(&seq)
            .expect("every posting and failure of a batch comes from one of its events");
        match verdict {
            Verdict::Applied(decisions) => (rec, decisions.as_slice()),
            Verdict::AlreadyApplied | Verdict::Refused(_) => (rec, &[]),
        }
    };
    let mut out = Vec::new();
    // A group's lines are adjacent: the ledger posts a group at once.
    for group in entries.chunk_by(|a, b| a.group_id == b.group_id && a.seq == b.seq) {
        let (rec, decided) = source(group[0].seq);
        if let Some((kind, id, data)) = decision(group, decided, state) {
            out.push(outcome(kind, id, data, rec));
        }
    }
    for f in failures {
        let (rec, _) = source(f.seq);
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

/// The decision a posting group stands for, if it is one consumers are told about;
/// `decided` are the fold's decisions on the event that posted it.
fn decision(
    group: &[LedgerEntry],
    decided: &[Decision],
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
                wallet_balance: Some(decided.iter().find_map(|d| match d {
                    Decision::PaidFromWallet {
                        out_trade_no,
                        balance,
                        ..
                    } if out_trade_no == no => Some(*balance),
                    _ => None,
                })?),
            };
            Some((
                OutcomeKind::OrderPaid,
                id(OutcomeKind::OrderPaid, no),
                to_json(&data),
            ))
        }
        EntryKind::Recharge => {
            let user_id = order().user_id;
            let transaction_id = first.transaction_id.clone()?;
            let data = RechargeCredited {
                out_trade_no: no.to_owned(),
                user_id,
                amount: credited(&wallet_account(user_id))?,
                wallet_balance: decided.iter().find_map(|d| match d {
                    Decision::PaymentBooked {
                        transaction_id: booked,
                        wallet_balance,
                        ..
                    } if *booked == transaction_id => *wallet_balance,
                    _ => None,
                })?,
                transaction_id,
            };
            let kind = OutcomeKind::RechargeCredited;
            Some((kind, id(kind, no), to_json(&data)))
        }
        EntryKind::Refund => {
            let data = refund_succeeded(group, decided, state)?;
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
    decided: &[Decision],
    state: &State,
) -> Option<RefundSucceeded> {
    let first = &group[0];
    let to_wallet = group.iter().find(|e| is_wallet(&e.account) && e.amount > 0);
    let group_id: GroupId = first.group_id.parse().ok()?;
    let out_refund_no = match (&group_id, to_wallet) {
        (GroupId::RefundToWallet(no), Some(_)) | (GroupId::RefundSettle(no), None) => no,
        _ => return None,
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
            Some(decided.iter().find_map(|d| match d {
                Decision::RefundedToWallet {
                    out_refund_no: no,
                    balance,
                    ..
                } if no == out_refund_no => Some(*balance),
                _ => None,
            })?),
        ),
        None => (
            group
                .iter()
                .find(|e| e.account == crate::core::fold::CLEARING)?
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

#[cfg(test)]
mod tests;
