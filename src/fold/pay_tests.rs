//! Table tests and properties of orders, payments, refunds and the ledger, and the event
//! builders other tests of the crate share.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::events::{
    BalancePayRequested, CloseReason, Evidence, OrderClosed, OrderKind, OrderPlaced,
    PaymentNotified, PaymentQueried, PrepayIssued, QueryReason, Refund, RefundAccepted,
    RefundAmount, RefundEvidence, RefundNotified, RefundQueried, RefundRejected, RefundRequested,
    Transaction, TransactionAmount,
};

const APPID: &str = "wx0000000000000001";
const MCHID: &str = "1900000001";

pub(crate) fn uid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

pub(crate) fn at(seq: u64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap()
}

pub(crate) fn rec(seq: u64, event: Event) -> Recorded {
    Recorded {
        seq,
        id: Uuid::from_u128(u128::from(seq)),
        occurred_at: at(seq),
        correlation_id: format!("req-{seq}"),
        event,
    }
}

pub(crate) fn placed(no: &str, user: u8, kind: OrderKind, amount: i64) -> Event {
    placed_until(no, user, kind, amount, 10_000)
}

/// An order that expires at `at(expires)`.
pub(crate) fn placed_until(
    no: &str,
    user: u8,
    kind: OrderKind,
    amount: i64,
    expires: u64,
) -> Event {
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

pub(crate) fn prepay(no: &str, prepay_id: &str) -> Event {
    Event::PrepayIssued(PrepayIssued {
        out_trade_no: no.into(),
        prepay_id: prepay_id.into(),
    })
}

pub(crate) fn closed(no: &str) -> Event {
    Event::OrderClosed(OrderClosed {
        out_trade_no: no.into(),
        reason: CloseReason::Expired,
    })
}

pub(crate) fn transaction(
    no: &str,
    tid: Option<&str>,
    state: &str,
    total: Option<i64>,
) -> Transaction {
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

pub(crate) fn evidence() -> Evidence {
    Evidence {
        serial: "serial".into(),
        signature: "sig".into(),
        timestamp: "1700000000".into(),
        nonce: "nonce".into(),
        signature_type: None,
        body: "{}".into(),
    }
}

pub(crate) fn notified(tx: Transaction) -> Event {
    Event::PaymentNotified(PaymentNotified {
        notify_id: format!("notify-{}", tx.transaction_id.as_deref().unwrap_or("none")),
        event_type: "TRANSACTION.SUCCESS".into(),
        transaction: tx,
        evidence: evidence(),
    })
}

pub(crate) fn queried(tx: Transaction) -> Event {
    Event::PaymentQueried(PaymentQueried {
        reason: QueryReason::Sync,
        transaction: tx,
        evidence: evidence(),
    })
}

pub(crate) fn success(no: &str, tid: &str, total: i64) -> Event {
    notified(transaction(no, Some(tid), "SUCCESS", Some(total)))
}

pub(crate) fn refund_requested(no: &str, order: &str, amount: i64) -> Event {
    Event::RefundRequested(RefundRequested {
        out_refund_no: no.into(),
        out_trade_no: order.into(),
        amount,
        reason: "r".into(),
    })
}

pub(crate) fn refund(no: &str, order: &str, status: &str, amount: Option<i64>) -> Refund {
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

pub(crate) fn refund_accepted(r: Refund) -> Event {
    Event::RefundAccepted(RefundAccepted {
        refund: r,
        evidence: RefundEvidence::V3(evidence()),
    })
}

pub(crate) fn refund_notified(r: Refund) -> Event {
    Event::RefundNotified(RefundNotified {
        notify_id: Some(format!("n-{}-{}", r.out_refund_no, r.status)),
        event_type: format!("REFUND.{}", r.status),
        refund: r,
        evidence: RefundEvidence::V3(evidence()),
    })
}

pub(crate) fn refund_queried(r: Refund) -> Event {
    Event::RefundQueried(RefundQueried {
        reason: QueryReason::Sweep,
        refund: r,
        evidence: RefundEvidence::V3(evidence()),
        notify: None,
    })
}

/// A signed query answer `answer`, asked for by an API v2 refund notify claiming `claim`.
pub(crate) fn refund_notify_queried(claim: Refund, answer: Refund) -> Event {
    Event::RefundQueried(RefundQueried {
        reason: QueryReason::Notify,
        refund: answer,
        evidence: RefundEvidence::V3(evidence()),
        notify: Some(Box::new(crate::events::RefundNotifyClaim {
            refund: claim,
            evidence: crate::events::LegacyEvidence {
                body: "<xml><req_info>..</req_info></xml>".into(),
                sign_type: None,
                decrypted: Some("<root>..</root>".into()),
            },
        })),
    })
}

pub(crate) fn refund_rejected(no: &str, order: &str) -> Event {
    Event::RefundRejected(RefundRejected {
        out_refund_no: no.into(),
        out_trade_no: order.into(),
        code: "NOT_ENOUGH".into(),
        message: "余额不足".into(),
    })
}

pub(crate) fn balance_pay(no: &str, user: u8, amount: i64) -> Event {
    Event::BalancePayRequested(BalancePayRequested {
        out_trade_no: no.into(),
        user_id: uid(user),
        amount,
    })
}

/// Folds `events` with sequences 1, 2, ... and returns the state and the outcomes.
pub(crate) fn fold(events: Vec<Event>) -> (State, Vec<Outcome>) {
    let mut s = State::default();
    let outcomes = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| s.apply(&rec(i as u64 + 1, e)))
        .collect();
    (s, outcomes)
}

pub(crate) fn order(s: &State, no: &str) -> Order {
    s.orders.get(no).cloned().unwrap()
}

pub(crate) fn reasons(s: &State) -> Vec<&str> {
    s.ledger.failures().map(|f| f.reason.as_str()).collect()
}

/// (account, amount) of every posting, in order.
fn postings(s: &State) -> Vec<(&str, i64)> {
    s.ledger
        .entries()
        .iter()
        .map(|e| (e.account.as_str(), e.amount))
        .collect()
}

// ---- orders ----

#[test]
fn placing_creates_and_the_same_number_again_is_a_duplicate_or_taken() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        placed("o1", 1, OrderKind::Order, 100),
        placed("o1", 1, OrderKind::Order, 101),
        placed("o1", 2, OrderKind::Order, 100),
        placed("o2", 1, OrderKind::Order, 0),
    ]);
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::AlreadyApplied,
            Outcome::Refused("out_trade_no_taken"),
            Outcome::Refused("out_trade_no_taken"),
            Outcome::Refused("invalid_amount"),
        ]
    );
    let o = order(&s, "o1");
    assert_eq!(
        (o.state, o.amount, o.user_id, o.last_seq),
        (OrderState::Created, 100, uid(1), 1)
    );
    assert_eq!(o.placed_at, at(1));
    assert!(s.orders.get("o2").is_none());
}

#[test]
fn prepay_is_issued_to_unpaid_orders_only() {
    let (s, outcomes) = fold(vec![
        prepay("nope", "p0"),
        placed("o1", 1, OrderKind::Order, 100),
        prepay("o1", "p1"),
        prepay("o1", "p2"),
        placed("o2", 1, OrderKind::Order, 100),
        closed("o2"),
        prepay("o2", "p3"),
        placed("o3", 1, OrderKind::Order, 100),
        success("o3", "t3", 100),
        prepay("o3", "p4"),
        placed("o4", 1, OrderKind::Order, 100),
        notified(transaction("o4", None, "PAYERROR", None)),
        prepay("o4", "p5"),
    ]);
    assert_eq!(outcomes[0], Outcome::Refused("unknown_order"));
    assert_eq!(outcomes[2], Outcome::Applied);
    assert_eq!(outcomes[3], Outcome::Applied);
    assert_eq!(outcomes[6], Outcome::Refused("not_payable"));
    assert_eq!(outcomes[9], Outcome::Refused("not_payable"));
    assert_eq!(outcomes[12], Outcome::Applied);
    let o1 = order(&s, "o1");
    assert_eq!(
        (o1.state, o1.prepay_id.as_deref()),
        (OrderState::PrepayIssued, Some("p2"))
    );
    assert_eq!(order(&s, "o2").prepay_id, None);
    assert_eq!(order(&s, "o3").state, OrderState::Paid);
    assert_eq!(order(&s, "o4").state, OrderState::PrepayIssued);
}

#[test]
fn closing_applies_to_unpaid_orders() {
    let (s, outcomes) = fold(vec![
        closed("nope"),
        placed("o1", 1, OrderKind::Order, 100),
        prepay("o1", "p1"),
        closed("o1"),
        closed("o1"),
        placed("o2", 1, OrderKind::Order, 100),
        success("o2", "t2", 100),
        closed("o2"),
    ]);
    assert_eq!(
        [
            outcomes[0].clone(),
            outcomes[3].clone(),
            outcomes[4].clone(),
            outcomes[7].clone()
        ],
        [
            Outcome::Refused("unknown_order"),
            Outcome::Applied,
            Outcome::AlreadyApplied,
            Outcome::Refused("already_paid"),
        ]
    );
    let o1 = order(&s, "o1");
    assert_eq!((o1.state, o1.closed_at), (OrderState::Closed, Some(at(4))));
    assert_eq!(order(&s, "o2").state, OrderState::Paid);
    assert_eq!(order(&s, "o2").closed_at, None);
}

// ---- payments ----

#[test]
fn a_paid_order_books_a_sale_once_however_often_reported() {
    let mut events = vec![placed("o1", 1, OrderKind::Order, 100), prepay("o1", "p1")];
    events.extend((0..15).map(|_| success("o1", "t1", 100)));
    events.push(queried(transaction("o1", Some("t1"), "SUCCESS", Some(100))));
    let (s, outcomes) = fold(events);
    assert_eq!(outcomes[2], Outcome::Applied);
    assert!(outcomes[3..].iter().all(|o| *o == Outcome::AlreadyApplied));
    let o = order(&s, "o1");
    assert_eq!(o.state, OrderState::Paid);
    assert_eq!(o.transaction_id.as_deref(), Some("t1"));
    assert_eq!(o.paid_at, Some(at(3)));
    assert_eq!(postings(&s), [(CLEARING, -100), (SALES, 100)]);
    let entries = s.ledger.entries();
    assert!(entries.iter().all(|e| e.group_id == "payment:t1"
        && e.kind == EntryKind::Sale
        && e.seq == 3
        && e.transaction_id.as_deref() == Some("t1")));
    assert_eq!((entries[0].line, entries[1].line), (0, 1));
    assert_eq!(s.ledger.balance(CLEARING), -100);
    assert_eq!(s.ledger.balance(SALES), 100);
    let p = s.ledger.payment("t1").unwrap();
    assert_eq!(
        (p.amount, p.seq, p.booked_as, p.source),
        (100, 3, BookedAs::Sale, PaySource::Notify)
    );
    assert!(reasons(&s).is_empty());
}

#[test]
fn a_paid_recharge_credits_the_wallet_and_a_query_counts_like_a_notify() {
    let (s, outcomes) = fold(vec![
        placed("r1", 7, OrderKind::Recharge, 5_000),
        queried(transaction("r1", Some("t1"), "SUCCESS", Some(5_000))),
        success("r1", "t1", 5_000),
    ]);
    assert_eq!(outcomes[1..], [Outcome::Applied, Outcome::AlreadyApplied]);
    let wallet = wallet_account(uid(7));
    assert_eq!(wallet, format!("wallet:{}", uid(7)));
    assert_eq!(postings(&s), [(CLEARING, -5_000), (wallet.as_str(), 5_000)]);
    assert!(s
        .ledger
        .entries()
        .iter()
        .all(|e| e.kind == EntryKind::Recharge));
    assert_eq!(s.ledger.balance(&wallet), 5_000);
    let p = s.ledger.payment("t1").unwrap();
    assert_eq!(
        (p.booked_as, p.source),
        (BookedAs::Recharge, PaySource::Query)
    );
    assert_eq!(order(&s, "r1").state, OrderState::Paid);
}

#[test]
fn refund_state_still_proves_the_payment() {
    let (s, _) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        queried(transaction("o1", Some("t1"), "REFUND", Some(100))),
    ]);
    assert_eq!(order(&s, "o1").state, OrderState::Paid);
    assert_eq!(postings(&s), [(CLEARING, -100), (SALES, 100)]);
}

#[test]
fn a_success_without_id_or_amount_is_malformed_and_moves_nothing() {
    let mut no_amount = transaction("o1", Some("t4"), "SUCCESS", None);
    no_amount.amount = None;
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        notified(transaction("o1", None, "SUCCESS", Some(100))),
        notified(transaction("o1", Some("t2"), "SUCCESS", None)),
        notified(transaction("o1", Some("t3"), "SUCCESS", Some(0))),
        notified(no_amount),
        notified(transaction("o1", Some(""), "REFUND", Some(100))),
    ]);
    assert!(outcomes[1..].iter().all(|o| *o == Outcome::Applied));
    assert_eq!(reasons(&s), ["malformed_transaction"; 5]);
    assert!(postings(&s).is_empty());
    assert_eq!(s.ledger.payments().count(), 0);
    assert_eq!(order(&s, "o1").state, OrderState::Created);
    let f = s.ledger.failures().next().unwrap();
    assert_eq!((f.seq, f.detail["source"].as_str()), (2, Some("notify")));
}

#[test]
fn money_for_an_unknown_order_goes_to_suspense() {
    let (s, outcomes) = fold(vec![
        success("ghost", "t1", 300),
        success("ghost", "t1", 300),
    ]);
    assert_eq!(outcomes, [Outcome::Applied, Outcome::AlreadyApplied]);
    assert_eq!(reasons(&s), ["unknown_order"]);
    assert_eq!(postings(&s), [(CLEARING, -300), (SUSPENSE, 300)]);
    assert!(s
        .ledger
        .entries()
        .iter()
        .all(|e| e.kind == EntryKind::Suspense));
    let f = s.ledger.failures().next().unwrap();
    assert_eq!(
        (
            f.out_trade_no.as_deref(),
            f.transaction_id.as_deref(),
            f.amount
        ),
        (Some("ghost"), Some("t1"), Some(300))
    );
    assert_eq!(
        s.ledger.payment("t1").unwrap().booked_as,
        BookedAs::Suspense
    );
}

#[test]
fn another_merchant_is_not_credited() {
    let mut tx = transaction("o1", Some("t1"), "SUCCESS", Some(100));
    tx.mchid = "1900000999".into();
    let mut other_app = transaction("o1", Some("t2"), "SUCCESS", Some(100));
    other_app.appid = "wx_other".into();
    let (s, _) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        notified(tx),
        queried(other_app),
    ]);
    assert_eq!(reasons(&s), ["merchant_mismatch", "merchant_mismatch"]);
    assert!(postings(&s).is_empty());
    assert_eq!(order(&s, "o1").state, OrderState::Created);
    assert_eq!(
        s.ledger.payment("t1").unwrap().booked_as,
        BookedAs::NotCredited
    );
    let f = s.ledger.failures().next().unwrap();
    assert_eq!(f.detail["expected"]["mchid"], MCHID);
    assert_eq!(f.detail["got"]["mchid"], "1900000999");
}

#[test]
fn amount_or_currency_mismatches_are_received_into_suspense() {
    let mut usd = transaction("o1", Some("t2"), "SUCCESS", Some(100));
    usd.amount.as_mut().unwrap().currency = Some("USD".into());
    let mut both = transaction("o1", Some("t3"), "SUCCESS", Some(99));
    both.amount.as_mut().unwrap().currency = Some("USD".into());
    let mut no_currency = transaction("o2", Some("t4"), "SUCCESS", Some(100));
    no_currency.amount.as_mut().unwrap().currency = None;
    let (s, _) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 99),
        queried(usd),
        notified(both),
        placed("o2", 1, OrderKind::Order, 100),
        notified(no_currency),
    ]);
    let f: Vec<(i64, &str)> = s
        .ledger
        .failures()
        .map(|f| (f.seq, f.reason.as_str()))
        .collect();
    assert_eq!(
        f,
        [
            (2, "amount_mismatch"),
            (3, "currency_mismatch"),
            (4, "amount_mismatch"),
            (4, "currency_mismatch"),
        ]
    );
    let amount = s.ledger.failures().next().unwrap();
    assert_eq!(
        (
            amount.detail["expected"].as_i64(),
            amount.detail["got"].as_i64()
        ),
        (Some(100), Some(99))
    );
    assert_eq!(
        postings(&s)[..6],
        [
            (CLEARING, -99),
            (SUSPENSE, 99),
            (CLEARING, -100),
            (SUSPENSE, 100),
            (CLEARING, -99),
            (SUSPENSE, 99),
        ]
    );
    assert_eq!(order(&s, "o1").state, OrderState::Created);
    // No currency means CNY.
    assert_eq!(order(&s, "o2").state, OrderState::Paid);
    assert_eq!(s.ledger.balance(SUSPENSE), 298);
}

#[test]
fn a_second_payment_of_a_paid_order_is_received_and_flagged() {
    let (s, _) = fold(vec![
        placed("o1", 1, OrderKind::Recharge, 100),
        success("o1", "t1", 100),
        queried(transaction("o1", Some("t2"), "SUCCESS", Some(100))),
    ]);
    assert_eq!(reasons(&s), ["double_payment"]);
    assert_eq!(s.ledger.balance(&wallet_account(uid(1))), 100);
    assert_eq!(s.ledger.balance(SUSPENSE), 100);
    assert_eq!(s.ledger.balance(CLEARING), -200);
    assert_eq!(order(&s, "o1").transaction_id.as_deref(), Some("t1"));
    let f = s.ledger.failures().next().unwrap();
    assert_eq!(f.detail["source"], "query");
    assert_eq!(f.detail["query_reason"], "sync");
}

#[test]
fn a_payment_after_close_is_received_and_the_order_stays_closed() {
    let (s, _) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        closed("o1"),
        success("o1", "t1", 100),
    ]);
    assert_eq!(reasons(&s), ["paid_after_close"]);
    assert_eq!(postings(&s), [(CLEARING, -100), (SUSPENSE, 100)]);
    let o = order(&s, "o1");
    assert_eq!((o.state, o.transaction_id), (OrderState::Closed, None));
}

#[test]
fn a_wallet_credit_that_cannot_be_applied_goes_to_suspense() {
    let mut s = State::default();
    let wallet = wallet_account(uid(1));
    s.ledger.load_balance(Balance {
        account: wallet.clone(),
        balance: i64::MAX - 10,
        last_seq: 0,
    });
    s.apply(&rec(1, placed("r1", 1, OrderKind::Recharge, 11)));
    assert_eq!(s.apply(&rec(2, success("r1", "t1", 11))), Outcome::Applied);
    assert_eq!(reasons(&s), ["recharge_credit_failed"]);
    assert_eq!(postings(&s), [(CLEARING, -11), (SUSPENSE, 11)]);
    assert_eq!(s.ledger.balance(&wallet), i64::MAX - 10);
    assert_eq!(order(&s, "r1").state, OrderState::Paid);
    assert_eq!(
        s.ledger.payment("t1").unwrap().booked_as,
        BookedAs::Suspense
    );
    // Only the changed balances are written back.
    let changed: Vec<String> = s
        .ledger
        .take_changed_balances()
        .into_iter()
        .map(|b| b.account)
        .collect();
    assert_eq!(changed, [SUSPENSE, CLEARING]);
}

#[test]
fn a_posting_that_would_overflow_is_recorded_not_posted() {
    let mut s = State::default();
    s.ledger.load_balance(Balance {
        account: CLEARING.into(),
        balance: i64::MIN + 5,
        last_seq: 0,
    });
    s.apply(&rec(1, placed("o1", 1, OrderKind::Order, 10)));
    assert_eq!(s.apply(&rec(2, success("o1", "t1", 10))), Outcome::Applied);
    assert_eq!(reasons(&s), ["ledger_overflow"]);
    assert!(postings(&s).is_empty());
    assert_eq!(order(&s, "o1").state, OrderState::Paid);
    assert_eq!(
        s.ledger.payment("t1").unwrap().booked_as,
        BookedAs::NotCredited
    );
}

#[test]
fn closed_or_revoked_at_wechat_closes_unpaid_orders() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        notified(transaction("o1", None, "CLOSED", None)),
        placed("o2", 1, OrderKind::Order, 100),
        queried(transaction("o2", None, "REVOKED", None)),
        placed("o3", 1, OrderKind::Order, 100),
        success("o3", "t3", 100),
        queried(transaction("o3", Some("t3"), "CLOSED", Some(100))),
        queried(transaction("ghost", None, "CLOSED", None)),
    ]);
    assert_eq!(outcomes[1], Outcome::Applied);
    assert_eq!(outcomes[3], Outcome::Applied);
    assert_eq!(outcomes[6], Outcome::Refused("already_paid"));
    assert_eq!(outcomes[7], Outcome::Applied);
    assert_eq!(order(&s, "o1").state, OrderState::Closed);
    assert_eq!(order(&s, "o1").closed_at, Some(at(2)));
    assert_eq!(order(&s, "o2").state, OrderState::Closed);
    assert_eq!(order(&s, "o3").state, OrderState::Paid);
    assert_eq!(reasons(&s), ["unknown_order"]);
    assert_eq!(postings(&s).len(), 2);
}

#[test]
fn a_pay_error_marks_unpaid_orders_and_a_later_success_still_pays() {
    let err = |no: &str| notified(transaction(no, None, "PAYERROR", None));
    let (s, outcomes) = fold(vec![
        err("ghost"),
        placed("o1", 1, OrderKind::Order, 100),
        prepay("o1", "p1"),
        err("o1"),
        err("o1"),
        success("o1", "t1", 100),
        err("o1"),
        placed("o2", 1, OrderKind::Order, 100),
        closed("o2"),
        err("o2"),
    ]);
    assert_eq!(outcomes[0], Outcome::Refused("unknown_order"));
    assert_eq!(outcomes[3], Outcome::Applied);
    assert_eq!(outcomes[4], Outcome::Refused("already_pay_error"));
    assert_eq!(outcomes[5], Outcome::Applied);
    assert_eq!(outcomes[6], Outcome::Refused("already_paid"));
    assert_eq!(outcomes[9], Outcome::Refused("order_closed"));
    assert_eq!(order(&s, "o1").state, OrderState::Paid);
    assert_eq!(order(&s, "o2").state, OrderState::Closed);
    assert!(reasons(&s).is_empty());
}

#[test]
fn not_final_states_change_nothing_and_unknown_states_are_logged() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        notified(transaction("o1", None, "NOTPAY", None)),
        queried(transaction("o1", None, "USERPAYING", None)),
        queried(transaction("o1", Some("t1"), "ACCEPT", Some(100))),
    ]);
    assert_eq!(
        outcomes[1..],
        [
            Outcome::Refused("not_final"),
            Outcome::Refused("not_final"),
            Outcome::Applied,
        ]
    );
    assert_eq!(order(&s, "o1").state, OrderState::Created);
    assert_eq!(order(&s, "o1").last_seq, 1);
    assert_eq!(reasons(&s), ["unknown_trade_state"]);
    assert!(postings(&s).is_empty());
    assert_eq!(
        s.ledger.failures().next().unwrap().detail["trade_state"],
        "ACCEPT"
    );
}

#[test]
fn an_old_sequence_applied_again_changes_nothing() {
    let history: Vec<Recorded> = vec![
        placed("o1", 1, OrderKind::Order, 100),
        prepay("o1", "p1"),
        closed("o1"),
        success("o1", "t1", 100),
        notified(transaction("o1", None, "WEIRD", None)),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, e)| rec(i as u64 + 1, e))
    .collect();
    let mut s = State::default();
    s.apply_all(&history);
    let before = snapshot(&s);
    for r in &history {
        assert_ne!(s.apply(r), Outcome::Applied, "seq {}", r.seq);
    }
    assert_eq!(snapshot(&s), before);
}

#[test]
fn keys_name_what_a_batch_touches_and_wallets_come_second() {
    let mut keys = Keys::default();
    keys.add(&placed("o1", 1, OrderKind::Recharge, 100));
    keys.add(&success("o2", "t2", 100));
    keys.add(&notified(transaction("o3", None, "CLOSED", None)));
    keys.add(&closed("o4"));
    assert_eq!(
        keys.out_trade_nos.iter().collect::<Vec<_>>(),
        ["o1", "o2", "o3", "o4"]
    );
    assert_eq!(keys.transaction_ids.iter().collect::<Vec<_>>(), ["t2"]);
    let mut accounts = vec![
        CLEARING.to_owned(),
        SALES.to_owned(),
        SUSPENSE.to_owned(),
        wallet_account(uid(1)),
    ];
    accounts.sort();
    assert_eq!(keys.accounts.iter().cloned().collect::<Vec<_>>(), accounts);
    let (s, _) = fold(vec![placed("o2", 9, OrderKind::Recharge, 100)]);
    keys.add_order(&order(&s, "o2"));
    assert!(keys.accounts.contains(&wallet_account(uid(9))));
}

// ---- refunds and wallet payments ----

fn refund_row(s: &State, no: &str) -> RefundRow {
    s.refunds.get(no).cloned().unwrap()
}

#[test]
fn partial_refunds_add_up_and_never_exceed_what_was_paid() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
        refund_requested("r1", "o1", 30),
        refund_accepted(refund("r1", "o1", "PROCESSING", Some(30))),
        refund_notified(refund("r1", "o1", "SUCCESS", Some(30))),
        refund_requested("r2", "o1", 71),
        refund_requested("r3", "o1", 70),
        refund_notified(refund("r3", "o1", "SUCCESS", Some(70))),
        refund_requested("r4", "o1", 1),
    ]);
    assert_eq!(outcomes[2], Outcome::Applied);
    assert_eq!(outcomes[5], Outcome::Refused("refund_exceeds_paid"));
    assert_eq!(outcomes[8], Outcome::Refused("refund_exceeds_paid"));
    let o = order(&s, "o1");
    assert_eq!(
        (o.state, o.refunded, o.refunding),
        (OrderState::Refunded, 100, 0)
    );
    assert_eq!(refund_row(&s, "r1").state, RefundState::Succeeded);
    assert_eq!(refund_row(&s, "r1").refund_id.as_deref(), Some("5000r1"));
    assert_eq!(refund_row(&s, "r2").state, RefundState::Refused);
    assert_eq!(
        refund_row(&s, "r2").code.as_deref(),
        Some("refund_exceeds_paid")
    );
    assert_eq!(s.ledger.balance(SALES), 0);
    assert_eq!(s.ledger.balance(CLEARING), 0);
    assert_eq!(s.ledger.balance(REFUNDS), 0);
    assert_eq!(reasons(&s), ["refund_exceeds_paid", "refund_exceeds_paid"]);
}

#[test]
fn a_partial_refund_leaves_the_order_partially_refunded() {
    let (s, _) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
        refund_requested("r1", "o1", 40),
    ]);
    let o = order(&s, "o1");
    assert_eq!(
        (o.state, o.refunded, o.refunding),
        (OrderState::Paid, 0, 40)
    );
    assert_eq!(s.ledger.balance(REFUNDS), 40);
    assert_eq!(s.ledger.balance(SALES), 60);
    let (s, _) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
        refund_requested("r1", "o1", 40),
        refund_queried(refund("r1", "o1", "SUCCESS", Some(40))),
    ]);
    let o = order(&s, "o1");
    assert_eq!(
        (o.state, o.refunded, o.refunding),
        (OrderState::PartiallyRefunded, 40, 0)
    );
    assert_eq!(s.ledger.balance(CLEARING), -60);
}

#[test]
fn refunds_of_unpaid_or_unknown_orders_and_bad_amounts_are_refused() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        refund_requested("r1", "o1", 10),
        refund_requested("r2", "nope", 10),
        success("o1", "t1", 100),
        refund_requested("r3", "o1", 0),
        refund_requested("r4", "o1", -5),
    ]);
    assert_eq!(outcomes[1], Outcome::Refused("not_paid"));
    assert_eq!(outcomes[2], Outcome::Refused("unknown_order"));
    assert_eq!(outcomes[4], Outcome::Refused("invalid_amount"));
    assert_eq!(outcomes[5], Outcome::Refused("invalid_amount"));
    assert_eq!(order(&s, "o1").refunding, 0);
    assert_eq!(s.ledger.balance(REFUNDS), 0);
}

#[test]
fn the_same_out_refund_no_twice_is_one_refund() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
        refund_requested("r1", "o1", 30),
        refund_requested("r1", "o1", 30),
        refund_requested("r1", "o1", 31),
    ]);
    assert_eq!(outcomes[3], Outcome::AlreadyApplied);
    assert_eq!(outcomes[4], Outcome::Refused("out_refund_no_taken"));
    assert_eq!(order(&s, "o1").refunding, 30);
    assert_eq!(s.ledger.balance(REFUNDS), 30);
}

#[test]
fn closed_and_rejected_refunds_put_the_amount_back() {
    let (s, outcomes) = fold(vec![
        placed("r0", 1, OrderKind::Recharge, 500),
        success("r0", "t1", 500),
        refund_requested("f1", "r0", 200),
        refund_notified(refund("f1", "r0", "CLOSED", Some(200))),
        refund_requested("f2", "r0", 300),
        refund_rejected("f2", "r0"),
        refund_notified(refund("f1", "r0", "SUCCESS", Some(200))),
    ]);
    assert_eq!(outcomes[3], Outcome::Applied);
    assert_eq!(outcomes[5], Outcome::Applied);
    assert_eq!(outcomes[6], Outcome::Refused("refund_state_conflict"));
    assert_eq!(s.ledger.balance(&wallet_account(uid(1))), 500);
    assert_eq!(s.ledger.balance(REFUNDS), 0);
    let o = order(&s, "r0");
    assert_eq!((o.state, o.refunded, o.refunding), (OrderState::Paid, 0, 0));
    assert_eq!(refund_row(&s, "f1").state, RefundState::Closed);
    let f2 = refund_row(&s, "f2");
    assert_eq!(
        (f2.state, f2.code.as_deref()),
        (RefundState::Rejected, Some("NOT_ENOUGH"))
    );
    assert_eq!(reasons(&s), ["refund_state_conflict"]);
}

#[test]
fn abnormal_is_recorded_not_final_and_success_books_once() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
        refund_requested("r1", "o1", 100),
        refund_notified(refund("r1", "o1", "ABNORMAL", Some(100))),
        refund_notified(refund("r1", "o1", "ABNORMAL", Some(100))),
        refund_notified(refund("r1", "o1", "SUCCESS", Some(100))),
        refund_queried(refund("r1", "o1", "SUCCESS", Some(100))),
        refund_notified(refund("r1", "o1", "SUCCESS", Some(100))),
    ]);
    assert_eq!(outcomes[3], Outcome::Applied);
    assert_eq!(outcomes[4], Outcome::AlreadyApplied);
    assert_eq!(outcomes[5], Outcome::Applied);
    assert_eq!(outcomes[6], Outcome::AlreadyApplied);
    assert_eq!(outcomes[7], Outcome::AlreadyApplied);
    assert_eq!(reasons(&s), ["refund_abnormal"]);
    let settles = s
        .ledger
        .entries()
        .iter()
        .filter(|e| e.group_id == "refund:r1:settle")
        .count();
    assert_eq!(settles, 2);
    assert_eq!(order(&s, "o1").state, OrderState::Refunded);
    assert_eq!(s.ledger.balance(CLEARING), 0);
}

#[test]
fn refunding_a_recharge_takes_it_out_of_the_wallet_unless_spent() {
    let (s, outcomes) = fold(vec![
        placed("r0", 1, OrderKind::Recharge, 500),
        success("r0", "t1", 500),
        placed("o1", 1, OrderKind::Order, 400),
        balance_pay("o1", 1, 400),
        refund_requested("f1", "r0", 200),
        refund_requested("f2", "r0", 100),
    ]);
    assert_eq!(outcomes[3], Outcome::Applied);
    assert_eq!(outcomes[4], Outcome::Refused("insufficient_balance"));
    assert_eq!(outcomes[5], Outcome::Applied);
    assert_eq!(s.ledger.balance(&wallet_account(uid(1))), 0);
    assert_eq!(s.ledger.balance(REFUNDS), 100);
    assert_eq!(reasons(&s), ["insufficient_balance"]);
    assert_eq!(refund_row(&s, "f1").state, RefundState::Refused);
}

#[test]
fn two_wallet_payments_racing_for_one_balance_one_wins() {
    let (s, outcomes) = fold(vec![
        placed("r0", 1, OrderKind::Recharge, 500),
        success("r0", "t1", 500),
        placed("o1", 1, OrderKind::Order, 300),
        placed("o2", 1, OrderKind::Order, 300),
        balance_pay("o1", 1, 300),
        balance_pay("o2", 1, 300),
        balance_pay("o1", 1, 300),
        balance_pay("o2", 2, 300),
        balance_pay("o2", 1, 299),
        balance_pay("r0", 1, 500),
    ]);
    assert_eq!(outcomes[4], Outcome::Applied);
    assert_eq!(outcomes[5], Outcome::Refused("insufficient_balance"));
    assert_eq!(outcomes[6], Outcome::Refused("already_paid"));
    assert_eq!(outcomes[7], Outcome::Refused("not_owner"));
    assert_eq!(outcomes[8], Outcome::Refused("amount_mismatch"));
    assert_eq!(outcomes[9], Outcome::Refused("not_payable"));
    let o1 = order(&s, "o1");
    assert_eq!(
        (o1.state, o1.paid_with),
        (OrderState::Paid, Some(PaidWith::Wallet))
    );
    assert_eq!(order(&s, "o2").state, OrderState::Created);
    assert_eq!(s.ledger.balance(&wallet_account(uid(1))), 200);
    assert_eq!(s.ledger.balance(SALES), 300);
    assert_eq!(reasons(&s), ["insufficient_balance"]);
}

#[test]
fn a_wallet_paid_order_is_refunded_to_the_wallet_at_once() {
    let (s, outcomes) = fold(vec![
        placed("r0", 1, OrderKind::Recharge, 500),
        success("r0", "t1", 500),
        placed("o1", 1, OrderKind::Order, 300),
        balance_pay("o1", 1, 300),
        refund_requested("f1", "o1", 100),
    ]);
    assert_eq!(outcomes[4], Outcome::Applied);
    assert_eq!(refund_row(&s, "f1").state, RefundState::Succeeded);
    assert_eq!(s.ledger.balance(&wallet_account(uid(1))), 300);
    assert_eq!(s.ledger.balance(SALES), 200);
    assert_eq!(s.ledger.balance(REFUNDS), 0);
    assert_eq!(order(&s, "o1").state, OrderState::PartiallyRefunded);
}

#[test]
fn refunds_wechat_never_got_from_us_go_to_suspense_and_the_failure_log() {
    let (s, outcomes) = fold(vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
        refund_notified(refund("x1", "o1", "SUCCESS", Some(150))),
        refund_notified(refund("x1", "o1", "SUCCESS", Some(150))),
        refund_requested("r1", "o1", 50),
        refund_notified(refund("r1", "o1", "SUCCESS", Some(60))),
    ]);
    assert_eq!(outcomes[2], Outcome::Applied);
    assert_eq!(outcomes[3], Outcome::AlreadyApplied);
    assert_eq!(
        reasons(&s),
        [
            "refund_exceeds_paid",
            "unknown_refund",
            "refund_amount_mismatch"
        ]
    );
    // 150 out of suspense for x1; 10 more than asked for r1.
    assert_eq!(s.ledger.balance(SUSPENSE), -160);
    assert_eq!(s.ledger.balance(CLEARING), -100 + 150 + 60);
    assert!(!refund_row(&s, "x1").requested);
    assert_eq!(order(&s, "o1").refunded, 50);
}

#[test]
fn order_states_round_trip_their_names() {
    for state in [
        OrderState::Created,
        OrderState::PrepayIssued,
        OrderState::Paid,
        OrderState::Closed,
        OrderState::PayError,
        OrderState::PartiallyRefunded,
        OrderState::Refunded,
    ] {
        assert_eq!(OrderState::parse(state.as_str()), Some(state));
    }
    assert_eq!(OrderState::parse("refunding"), None);
    for state in [
        RefundState::Requested,
        RefundState::Processing,
        RefundState::Abnormal,
        RefundState::Succeeded,
        RefundState::Closed,
        RefundState::Rejected,
        RefundState::Refused,
    ] {
        assert_eq!(RefundState::parse(state.as_str()), Some(state));
    }
    for kind in [
        EntryKind::Recharge,
        EntryKind::Sale,
        EntryKind::Suspense,
        EntryKind::WalletPayment,
        EntryKind::RefundReserve,
        EntryKind::Refund,
        EntryKind::RefundRelease,
    ] {
        assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
    }
    for b in [
        BookedAs::Sale,
        BookedAs::Recharge,
        BookedAs::Suspense,
        BookedAs::NotCredited,
    ] {
        assert_eq!(BookedAs::parse(b.as_str()), Some(b));
    }
}

// ---- properties ----

/// Every row of every table the payment fold writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tables {
    orders: Vec<Order>,
    refunds: Vec<RefundRow>,
    balances: Vec<Balance>,
    payments: Vec<Payment>,
    entries: Vec<LedgerEntry>,
    failures: Vec<Failure>,
}

fn snapshot(s: &State) -> Tables {
    Tables {
        orders: s.orders.iter().cloned().collect(),
        refunds: s.refunds.iter().cloned().collect(),
        balances: s.ledger.balances().cloned().collect(),
        payments: s.ledger.payments().cloned().collect(),
        entries: s.ledger.entries().to_vec(),
        failures: s.ledger.failures().cloned().collect(),
    }
}

const BIG: i64 = i64::MAX / 2;

fn arb_amount() -> impl Strategy<Value = i64> {
    prop_oneof![8 => Just(100i64), 4 => Just(250i64), 1 => Just(BIG)]
}

fn arb_transaction() -> impl Strategy<Value = Transaction> {
    let state = prop_oneof![
        10 => Just("SUCCESS"),
        2 => Just("REFUND"),
        2 => Just("CLOSED"),
        1 => Just("REVOKED"),
        2 => Just("PAYERROR"),
        1 => Just("NOTPAY"),
        1 => Just("USERPAYING"),
        1 => Just("WEIRD"),
    ];
    let total = prop_oneof![10 => arb_amount().prop_map(Some), 1 => Just(None), 1 => Just(Some(0))];
    let currency = prop_oneof![6 => Just(Some("CNY")), 2 => Just(None), 1 => Just(Some("USD"))];
    (
        0u8..5,
        proptest::option::weighted(0.9, 0u8..6),
        state,
        total,
        currency,
        prop_oneof![10 => Just(MCHID), 1 => Just("1900000999")],
    )
        .prop_map(|(no, tid, state, total, currency, mchid)| {
            let mut tx = transaction(
                &format!("o{no}"),
                tid.map(|t| format!("t{t}")).as_deref(),
                state,
                total,
            );
            tx.mchid = mchid.into();
            tx.amount.as_mut().unwrap().currency = currency.map(Into::into);
            tx
        })
}

pub(crate) fn arb_event() -> impl Strategy<Value = Event> {
    let kind = prop_oneof![Just(OrderKind::Order), Just(OrderKind::Recharge)];
    prop_oneof![
        4 => (0u8..5, 0u8..3, kind, arb_amount())
            .prop_map(|(no, user, kind, amount)| placed(&format!("o{no}"), user, kind, amount)),
        2 => (0u8..5, 0u8..3).prop_map(|(no, p)| prepay(&format!("o{no}"), &format!("p{p}"))),
        1 => (0u8..5).prop_map(|no| closed(&format!("o{no}"))),
        6 => arb_transaction().prop_map(notified),
        3 => arb_transaction().prop_map(queried),
        3 => (0u8..4, 0u8..5, arb_refund_amount())
            .prop_map(|(r, no, amount)| refund_requested(&format!("r{r}"), &format!("o{no}"), amount)),
        4 => arb_refund().prop_map(refund_notified),
        1 => arb_refund().prop_map(refund_accepted),
        2 => arb_refund().prop_map(refund_queried),
        2 => (arb_refund(), arb_refund())
            .prop_map(|(claim, answer)| refund_notify_queried(claim, answer)),
        1 => (0u8..4, 0u8..5)
            .prop_map(|(r, no)| refund_rejected(&format!("r{r}"), &format!("o{no}"))),
        2 => (0u8..5, 0u8..3, arb_amount())
            .prop_map(|(no, user, amount)| balance_pay(&format!("o{no}"), user, amount)),
    ]
}

fn arb_refund_amount() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(50i64), 4 => Just(100i64), 1 => Just(250i64), 1 => Just(0i64)]
}

fn arb_refund() -> impl Strategy<Value = Refund> {
    let status = prop_oneof![
        4 => Just("SUCCESS"),
        2 => Just("PROCESSING"),
        2 => Just("CLOSED"),
        2 => Just("ABNORMAL"),
        1 => Just("ODD"),
    ];
    let amount = prop_oneof![8 => arb_refund_amount().prop_map(Some), 1 => Just(None)];
    (0u8..6, 0u8..5, status, amount).prop_map(|(r, no, status, amount)| {
        refund(&format!("r{r}"), &format!("o{no}"), status, amount)
    })
}

pub(crate) fn history(events: Vec<Event>) -> Vec<Recorded> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| rec(i as u64 + 1, e))
        .collect()
}

/// The transaction a well-formed event reports as paid, if any.
fn success_id(event: &Event) -> Option<&str> {
    let tx = match event {
        Event::PaymentNotified(e) => &e.transaction,
        Event::PaymentQueried(e) => &e.transaction,
        _ => return None,
    };
    let proves = matches!(tx.trade_state.as_str(), "SUCCESS" | "REFUND")
        && tx
            .amount
            .as_ref()
            .and_then(|a| a.total)
            .is_some_and(|t| t > 0);
    tx.transaction_id
        .as_deref()
        .filter(|t| proves && !t.is_empty())
}

fn check_books(s: &State) -> Result<(), TestCaseError> {
    let mut groups: BTreeMap<&str, i128> = BTreeMap::new();
    let mut accounts: BTreeMap<&str, i128> = BTreeMap::new();
    for e in s.ledger.entries() {
        *groups.entry(&e.group_id).or_default() += i128::from(e.amount);
        *accounts.entry(&e.account).or_default() += i128::from(e.amount);
    }
    for (group, sum) in &groups {
        prop_assert_eq!(*sum, 0, "group {} does not sum to zero", group);
    }
    for b in s.ledger.balances() {
        prop_assert_eq!(
            i128::from(b.balance),
            accounts.get(b.account.as_str()).copied().unwrap_or(0),
            "balance of {}",
            &b.account
        );
        if is_wallet(&b.account) {
            prop_assert!(b.balance >= 0, "{} below zero", &b.account);
        }
    }
    prop_assert_eq!(
        accounts.len(),
        s.ledger.balances().count(),
        "an account posted to without a balance row"
    );
    // Refunds never exceed what was paid, and what is set aside is exactly what the
    // requested refunds in flight hold.
    let mut in_flight: BTreeMap<&str, i64> = BTreeMap::new();
    let mut settled: BTreeMap<&str, i64> = BTreeMap::new();
    for r in s.refunds.iter().filter(|r| r.reserved_from.is_some()) {
        match r.state {
            RefundState::Requested | RefundState::Processing | RefundState::Abnormal => {
                *in_flight.entry(&r.out_trade_no).or_default() += r.amount;
            }
            RefundState::Succeeded => *settled.entry(&r.out_trade_no).or_default() += r.amount,
            _ => {}
        }
    }
    for o in s.orders.iter() {
        prop_assert!(o.refunded >= 0 && o.refunding >= 0);
        prop_assert!(
            o.refunded + o.refunding <= o.amount,
            "{} refunds exceed paid",
            &o.out_trade_no
        );
        prop_assert_eq!(
            o.refunding,
            in_flight.get(o.out_trade_no.as_str()).copied().unwrap_or(0)
        );
        if o.paid_with != Some(PaidWith::Wallet) {
            prop_assert_eq!(
                o.refunded,
                settled.get(o.out_trade_no.as_str()).copied().unwrap_or(0)
            );
        }
        if o.refunded + o.refunding > 0 {
            prop_assert!(
                o.state.is_paid(),
                "{} refunded but not paid",
                &o.out_trade_no
            );
        }
    }
    prop_assert_eq!(
        i128::from(s.ledger.balance(REFUNDS)),
        in_flight.values().map(|v| i128::from(*v)).sum::<i128>()
    );
    Ok(())
}

/// The projector's way: per batch, load only the keyed rows (two-phase for wallets), fold,
/// and write back what changed.
fn fold_in_batches(history: &[Recorded], batch_sizes: &[usize]) -> Tables {
    fold_in_batches_with(history, batch_sizes, |_, _, _, _| {})
}

/// [`fold_in_batches`], showing `each` every batch with its new postings and failures and
/// the state it was folded over (as the projector derives its outcomes).
pub(crate) fn fold_in_batches_with(
    history: &[Recorded],
    batch_sizes: &[usize],
    mut each: impl FnMut(&[Recorded], &[LedgerEntry], &[Failure], &State),
) -> Tables {
    let mut orders: BTreeMap<String, Order> = BTreeMap::new();
    let mut refunds: BTreeMap<String, RefundRow> = BTreeMap::new();
    let mut payments: BTreeMap<String, Payment> = BTreeMap::new();
    let mut balances: BTreeMap<String, Balance> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    let mut rest = history;
    let mut sizes = batch_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let mut keys = Keys::default();
        batch.iter().for_each(|r| keys.add(&r.event));
        let mut state = State::default();
        for no in &keys.out_trade_nos {
            if let Some(o) = orders.get(no) {
                state.orders.load(o.clone());
            }
        }
        for no in &keys.out_refund_nos {
            if let Some(r) = refunds.get(no) {
                state.refunds.load(r.clone());
            }
        }
        let loaded: Vec<Order> = state.orders.iter().cloned().collect();
        loaded.iter().for_each(|o| keys.add_order(o));
        for t in &keys.transaction_ids {
            if let Some(p) = payments.get(t) {
                state.ledger.load_payment(p.clone());
            }
        }
        for a in &keys.accounts {
            if let Some(b) = balances.get(a) {
                state.ledger.load_balance(b.clone());
            }
        }
        state.apply_all(batch);
        for o in state.orders.take_changed() {
            orders.insert(o.out_trade_no.clone(), o);
        }
        for r in state.refunds.take_changed() {
            refunds.insert(r.out_refund_no.clone(), r);
        }
        for b in state.ledger.take_changed_balances() {
            balances.insert(b.account.clone(), b);
        }
        for p in state.ledger.take_new_payments() {
            payments.insert(p.transaction_id.clone(), p);
        }
        let (new_entries, new_failures) = (
            state.ledger.take_new_entries(),
            state.ledger.take_new_failures(),
        );
        each(batch, &new_entries, &new_failures, &state);
        entries.extend(new_entries);
        failures.extend(new_failures);
    }
    Tables {
        orders: orders.into_values().collect(),
        refunds: refunds.into_values().collect(),
        balances: balances.into_values().collect(),
        payments: payments.into_values().collect(),
        entries,
        failures,
    }
}

proptest! {
    #[test]
    fn books_balance_at_every_step(events in proptest::collection::vec(arb_event(), 0..80)) {
        let mut s = State::default();
        for r in history(events) {
            let booked_before = success_id(&r.event)
                .is_some_and(|t| s.ledger.payment(t).is_some());
            let entries_before = s.ledger.entries().len();
            let balances_before: Vec<Balance> = s.ledger.balances().cloned().collect();
            s.apply(&r);
            check_books(&s)?;
            if booked_before {
                // A later report of a booked transaction posts nothing.
                prop_assert_eq!(s.ledger.entries().len(), entries_before);
                prop_assert_eq!(s.ledger.balances().cloned().collect::<Vec<_>>(), balances_before);
            }
        }
    }

    #[test]
    fn reapplying_an_old_sequence_changes_nothing(
        events in proptest::collection::vec(arb_event(), 1..60),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..60),
    ) {
        let history = history(events);
        let mut s = State::default();
        for (i, r) in history.iter().enumerate() {
            s.apply(r);
            let old = &history[picks[i % picks.len()].index(i + 1)];
            let before = snapshot(&s);
            let outcome = s.apply(old);
            prop_assert_ne!(outcome, Outcome::Applied, "seq {} applied again", old.seq);
            prop_assert_eq!(snapshot(&s), before);
        }
    }

    #[test]
    fn later_duplicates_of_booked_transactions_post_nothing(
        events in proptest::collection::vec(arb_event(), 1..60),
    ) {
        let history = history(events);
        let mut s = State::default();
        s.apply_all(&history);
        let before = snapshot(&s);
        let mut seq = history.len() as u64;
        for r in &history {
            if success_id(&r.event).is_some() {
                seq += 1;
                prop_assert_eq!(s.apply(&rec(seq, r.event.clone())), Outcome::AlreadyApplied);
            }
        }
        prop_assert_eq!(snapshot(&s), before);
    }

    #[test]
    fn batched_partial_loads_equal_one_pass(
        events in proptest::collection::vec(arb_event(), 0..80),
        sizes in proptest::collection::vec(1usize..8, 1..5),
    ) {
        let history = history(events);
        let mut whole = State::default();
        whole.apply_all(&history);
        prop_assert_eq!(fold_in_batches(&history, &sizes), snapshot(&whole));
    }
}
