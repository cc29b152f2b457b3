//! Table tests of payments: sales, recharges, suspense, and what a batch touches.

use super::{fixtures::*, pay_properties::snapshot, *};
use crate::core::events::OrderKind;

/// The verdict on a payment booked as `booked_as` (not to a wallet).
fn booked(no: &str, tx: &str, amount: i64, booked_as: BookedAs) -> Verdict {
    Verdict::Applied(vec![Decision::PaymentBooked {
        out_trade_no: no.into(),
        transaction_id: tx.into(),
        amount,
        booked_as,
        wallet_balance: None,
    }])
}

#[test]
fn a_paid_order_books_a_sale_once_however_often_reported() {
    let mut events = vec![placed("o1", 1, OrderKind::Order, 100), prepay("o1", "p1")];
    events.extend((0..15).map(|_| success("o1", "t1", 100)));
    events.push(queried(transaction("o1", Some("t1"), "SUCCESS", Some(100))));
    let (s, outcomes) = fold(events);
    assert_eq!(outcomes[2], booked("o1", "t1", 100, BookedAs::Sale));
    assert!(outcomes[3..].iter().all(|o| *o == Verdict::AlreadyApplied));
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
    assert_eq!(
        outcomes[1..],
        [
            Verdict::Applied(vec![Decision::PaymentBooked {
                out_trade_no: "r1".into(),
                transaction_id: "t1".into(),
                amount: 5_000,
                booked_as: BookedAs::Recharge,
                wallet_balance: Some(5_000),
            }]),
            Verdict::AlreadyApplied
        ]
    );
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
    assert!(outcomes[1..].iter().all(|o| *o == Verdict::applied()));
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
    assert_eq!(
        outcomes,
        [
            booked("ghost", "t1", 300, BookedAs::Suspense),
            Verdict::AlreadyApplied
        ]
    );
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
    assert_eq!(
        s.apply(&rec(2, success("r1", "t1", 11))),
        booked("r1", "t1", 11, BookedAs::Suspense)
    );
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
    assert_eq!(
        s.apply(&rec(2, success("o1", "t1", 10))),
        booked("o1", "t1", 10, BookedAs::NotCredited)
    );
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
    assert_eq!(outcomes[1], Verdict::applied());
    assert_eq!(outcomes[3], Verdict::applied());
    assert_eq!(
        outcomes[6],
        Verdict::Refused(Refusal::AlreadyPaid {
            paid_with: Some(PaidWith::Wechat)
        })
    );
    assert_eq!(outcomes[7], Verdict::applied());
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
    assert_eq!(outcomes[0], Verdict::Refused(Refusal::UnknownOrder));
    assert_eq!(outcomes[3], Verdict::applied());
    assert_eq!(outcomes[4], Verdict::Refused(Refusal::AlreadyPayError));
    assert_eq!(outcomes[5], booked("o1", "t1", 100, BookedAs::Sale));
    assert_eq!(
        outcomes[6],
        Verdict::Refused(Refusal::AlreadyPaid {
            paid_with: Some(PaidWith::Wechat)
        })
    );
    assert_eq!(outcomes[9], Verdict::Refused(Refusal::OrderClosed));
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
            Verdict::Refused(Refusal::NotFinal),
            Verdict::Refused(Refusal::NotFinal),
            Verdict::applied(),
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
        assert!(!s.apply(r).is_applied(), "seq {}", r.seq);
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
