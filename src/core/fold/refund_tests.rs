//! Table tests of refunds and wallet payments.

use super::{fixtures::*, *};
use crate::core::events::OrderKind;

fn reserved(no: &str, amount: i64) -> Verdict {
    Verdict::Applied(vec![Decision::RefundReserved {
        out_refund_no: no.into(),
        amount,
    }])
}

fn paid_from_wallet(no: &str, amount: i64, balance: i64) -> Verdict {
    Verdict::Applied(vec![Decision::PaidFromWallet {
        out_trade_no: no.into(),
        amount,
        balance,
    }])
}

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
    assert_eq!(outcomes[2], reserved("r1", 30));
    assert_eq!(outcomes[5], Verdict::Refused(Refusal::RefundExceedsPaid));
    assert_eq!(outcomes[8], Verdict::Refused(Refusal::RefundExceedsPaid));
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
    assert_eq!(outcomes[1], Verdict::Refused(Refusal::NotPaid));
    assert_eq!(outcomes[2], Verdict::Refused(Refusal::UnknownOrder));
    assert_eq!(outcomes[4], Verdict::Refused(Refusal::InvalidAmount));
    assert_eq!(outcomes[5], Verdict::Refused(Refusal::InvalidAmount));
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
    assert_eq!(outcomes[3], Verdict::AlreadyApplied);
    assert_eq!(outcomes[4], Verdict::Refused(Refusal::OutRefundNoTaken));
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
    assert_eq!(outcomes[3], Verdict::applied());
    assert_eq!(outcomes[5], Verdict::applied());
    assert_eq!(outcomes[6], Verdict::Refused(Refusal::RefundStateConflict));
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
    assert_eq!(outcomes[3], Verdict::applied());
    assert_eq!(outcomes[4], Verdict::AlreadyApplied);
    assert_eq!(outcomes[5], Verdict::applied());
    assert_eq!(outcomes[6], Verdict::AlreadyApplied);
    assert_eq!(outcomes[7], Verdict::AlreadyApplied);
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
    assert_eq!(outcomes[3], paid_from_wallet("o1", 400, 100));
    assert_eq!(
        outcomes[4],
        Verdict::Refused(Refusal::InsufficientBalance {
            balance: 100,
            needed: 200
        })
    );
    assert_eq!(outcomes[5], reserved("f2", 100));
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
    assert_eq!(outcomes[4], paid_from_wallet("o1", 300, 200));
    assert_eq!(
        outcomes[5],
        Verdict::Refused(Refusal::InsufficientBalance {
            balance: 200,
            needed: 300
        })
    );
    assert_eq!(
        outcomes[6],
        Verdict::Refused(Refusal::AlreadyPaid {
            paid_with: Some(PaidWith::Wallet)
        })
    );
    assert_eq!(outcomes[7], Verdict::Refused(Refusal::NotOwner));
    assert_eq!(outcomes[8], Verdict::Refused(Refusal::AmountMismatch));
    assert_eq!(outcomes[9], Verdict::Refused(Refusal::NotPayable));
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
    assert_eq!(
        outcomes[4],
        Verdict::Applied(vec![Decision::RefundedToWallet {
            out_refund_no: "f1".into(),
            amount: 100,
            balance: 300
        }])
    );
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
    assert_eq!(outcomes[2], Verdict::applied());
    assert_eq!(outcomes[3], Verdict::AlreadyApplied);
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
