//! Test fixtures of the fold: builders of events with fixed ids and times, and readers
//! of the folded state. For tests only (the fold's own, the projection's, the outcomes'
//! and the integration tests against Postgres); nothing in the daemon uses them. Compiled
//! always, and public, so that the integration tests in `tests/` can use them too.
//!
//! Every builder is deterministic: event `seq` happens at [`at`]`(seq)`, user `n` is
//! [`uid`]`(n)` with openid `openid-n`, and the app and merchant are [`APPID`] and
//! [`MCHID`].

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::core::events::{
    BalancePayRequested, CloseReason, Evidence, OrderClosed, OrderKind, OrderPlaced,
    PaymentNotified, PaymentQueried, PrepayIssued, QueryReason, Refund, RefundAccepted,
    RefundAmount, RefundEvidence, RefundNotified, RefundQueried, RefundRejected, RefundRequested,
    Transaction, TransactionAmount,
};

/// The app id of every order placed here.
pub const APPID: &str = "wx0000000000000001";
/// The merchant id of every order and refund here.
pub const MCHID: &str = "1900000001";

/// User `n`'s id: sixteen bytes of `n`.
pub fn uid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

/// The time of the event with sequence `seq`: one second apart from 2023-11-14.
pub fn at(seq: u64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seq as i64, 0)
        .single()
        .expect("a time in range")
}

/// `event` as recorded with sequence `seq` (its id and time follow from `seq`).
pub fn rec(seq: u64, event: Event) -> Recorded {
    Recorded {
        seq,
        id: Uuid::from_u128(u128::from(seq)),
        occurred_at: at(seq),
        correlation_id: format!("req-{seq}"),
        event,
    }
}

/// An order (or recharge) `no` of `amount` fen placed by user `user`, expiring at
/// `at(10_000)`.
pub fn placed(no: &str, user: u8, kind: OrderKind, amount: i64) -> Event {
    placed_until(no, user, kind, amount, 10_000)
}

/// An order that expires at `at(expires)`.
pub fn placed_until(no: &str, user: u8, kind: OrderKind, amount: i64, expires: u64) -> Event {
    Event::OrderPlaced(OrderPlaced {
        out_trade_no: no.into(),
        user_id: uid(user),
        openid: format!("openid-{user}"),
        kind,
        amount,
        currency: "CNY".into(),
        description: "goods".into(),
        appid: APPID.into(),
        mchid: MCHID.into(),
        expires_at: at(expires),
    })
}

/// A prepay `prepay_id` issued for order `no`.
pub fn prepay(no: &str, prepay_id: &str) -> Event {
    Event::PrepayIssued(PrepayIssued {
        out_trade_no: no.into(),
        prepay_id: prepay_id.into(),
    })
}

/// Order `no` closed as expired.
pub fn closed(no: &str) -> Event {
    Event::OrderClosed(OrderClosed {
        out_trade_no: no.into(),
        reason: CloseReason::Expired,
    })
}

/// WeChat Pay's transaction for order `no`: its id `tid`, `state` and `total` in fen.
pub fn transaction(no: &str, tid: Option<&str>, state: &str, total: Option<i64>) -> Transaction {
    Transaction {
        appid: APPID.into(),
        mchid: MCHID.into(),
        out_trade_no: no.into(),
        transaction_id: tid.map(Into::into),
        trade_type: Some("JSAPI".into()),
        trade_state: state.into(),
        trade_state_desc: None,
        bank_type: None,
        attach: None,
        success_time: None,
        payer: None,
        amount: Some(TransactionAmount {
            total,
            payer_total: total,
            currency: Some("CNY".into()),
            payer_currency: Some("CNY".into()),
        }),
    }
}

/// Signed-looking evidence (the fold does not check signatures).
pub fn evidence() -> Evidence {
    Evidence {
        serial: "serial".into(),
        signature: "sig".into(),
        timestamp: "1700000000".into(),
        nonce: "nonce".into(),
        signature_type: None,
        body: "{}".into(),
    }
}

/// A payment notify carrying `tx`.
pub fn notified(tx: Transaction) -> Event {
    Event::PaymentNotified(PaymentNotified {
        notify_id: format!("notify-{}", tx.transaction_id.as_deref().unwrap_or("none")),
        event_type: "TRANSACTION.SUCCESS".into(),
        transaction: tx,
        evidence: evidence(),
    })
}

/// A payment query (a sync) answered with `tx`.
pub fn queried(tx: Transaction) -> Event {
    Event::PaymentQueried(PaymentQueried {
        reason: QueryReason::Sync,
        transaction: tx,
        evidence: evidence(),
    })
}

/// A notify that order `no` was paid `total` fen in transaction `tid`.
pub fn success(no: &str, tid: &str, total: i64) -> Event {
    notified(transaction(no, Some(tid), "SUCCESS", Some(total)))
}

/// Refund `no` of `amount` fen asked for on order `order`.
pub fn refund_requested(no: &str, order: &str, amount: i64) -> Event {
    Event::RefundRequested(RefundRequested {
        out_refund_no: no.into(),
        out_trade_no: order.into(),
        amount,
        reason: "r".into(),
    })
}

/// WeChat Pay's refund `no` of order `order` in `status`, of `amount` fen.
pub fn refund(no: &str, order: &str, status: &str, amount: Option<i64>) -> Refund {
    Refund {
        mchid: Some(MCHID.into()),
        out_trade_no: order.into(),
        transaction_id: None,
        out_refund_no: no.into(),
        refund_id: Some(format!("5000{no}")),
        status: status.into(),
        success_time: None,
        user_received_account: None,
        amount: Some(RefundAmount {
            total: None,
            refund: amount,
            payer_total: None,
            payer_refund: amount,
            currency: Some("CNY".into()),
        }),
    }
}

/// WeChat Pay accepted refund `r`.
pub fn refund_accepted(r: Refund) -> Event {
    Event::RefundAccepted(RefundAccepted {
        refund: r,
        evidence: RefundEvidence::V3(evidence()),
    })
}

/// A refund notify carrying `r`.
pub fn refund_notified(r: Refund) -> Event {
    Event::RefundNotified(RefundNotified {
        notify_id: Some(format!("n-{}-{}", r.out_refund_no, r.status)),
        event_type: format!("REFUND.{}", r.status),
        refund: r,
        evidence: RefundEvidence::V3(evidence()),
    })
}

/// A refund query (by the sweep) answered with `r`.
pub fn refund_queried(r: Refund) -> Event {
    Event::RefundQueried(RefundQueried {
        reason: QueryReason::Sweep,
        refund: r,
        evidence: RefundEvidence::V3(evidence()),
        notify: None,
    })
}

/// A signed query answer `answer`, asked for by an API v2 refund notify claiming `claim`.
pub fn refund_notify_queried(claim: Refund, answer: Refund) -> Event {
    Event::RefundQueried(RefundQueried {
        reason: QueryReason::Notify,
        refund: answer,
        evidence: RefundEvidence::V3(evidence()),
        notify: Some(Box::new(crate::core::events::RefundNotifyClaim {
            refund: claim,
            evidence: crate::core::events::LegacyEvidence {
                body: "<xml><req_info>..</req_info></xml>".into(),
                sign_type: None,
                decrypted: Some("<root>..</root>".into()),
            },
        })),
    })
}

/// WeChat Pay refused refund `no` of order `order`.
pub fn refund_rejected(no: &str, order: &str) -> Event {
    Event::RefundRejected(RefundRejected {
        out_refund_no: no.into(),
        out_trade_no: order.into(),
        code: "NOT_ENOUGH".into(),
        message: "余额不足".into(),
    })
}

/// User `user` pays order `no` (`amount` fen) from the wallet.
pub fn balance_pay(no: &str, user: u8, amount: i64) -> Event {
    Event::BalancePayRequested(BalancePayRequested {
        out_trade_no: no.into(),
        user_id: uid(user),
        amount,
    })
}

/// Folds `events` with sequences 1, 2, ... and returns the state and the outcomes.
pub fn fold(events: Vec<Event>) -> (State, Vec<Verdict>) {
    let mut s = State::default();
    let outcomes = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| s.apply(&rec(i as u64 + 1, e)))
        .collect();
    (s, outcomes)
}

/// Order `no` of `s` (panics when there is none).
pub fn order(s: &State, no: &str) -> Order {
    s.orders.get(no).cloned().expect("the order was placed")
}

/// The reasons of the failure log, in order.
pub fn reasons(s: &State) -> Vec<&str> {
    s.ledger.failures().map(|f| f.reason.as_str()).collect()
}

/// (account, amount) of every posting, in order.
pub fn postings(s: &State) -> Vec<(&str, i64)> {
    s.ledger
        .entries()
        .iter()
        .map(|e| (e.account.as_str(), e.amount))
        .collect()
}
