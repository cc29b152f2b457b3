//! An API v2 refund notify is a claim: only the signed query answer it comes with moves
//! money, and a claim the answer does not confirm is logged (`refund_notify_unconfirmed`).

use super::fixtures::{
    fold, order, reasons, refund, refund_accepted, refund_notify_queried, refund_requested, success,
};
use super::*;
use crate::core::events::OrderKind;

/// A paid order of 100 fen with a refund of 60 in flight at WeChat.
fn in_flight() -> Vec<Event> {
    vec![
        fixtures::placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
        refund_requested("r1", "o1", 60),
        refund_accepted(refund("r1", "o1", "PROCESSING", Some(60))),
    ]
}

#[test]
fn a_confirmed_notify_settles_once_and_a_late_replay_changes_nothing() {
    let mut events = in_flight();
    let ok = refund("r1", "o1", "SUCCESS", Some(60));
    events.push(refund_notify_queried(ok.clone(), ok.clone()));
    // The same notify after the duplicate window: a fresh event, the same answer.
    events.push(refund_notify_queried(ok.clone(), ok));
    let (s, outcomes) = fold(events);
    assert_eq!(outcomes[4], Verdict::applied());
    assert_eq!(outcomes[5], Verdict::AlreadyApplied);
    let o = order(&s, "o1");
    assert_eq!(
        (o.state, o.refunded, o.refunding),
        (OrderState::PartiallyRefunded, 60, 0)
    );
    assert_eq!(s.ledger.balance(CLEARING), -40);
    assert_eq!(s.ledger.balance(REFUNDS), 0);
    assert!(reasons(&s).is_empty(), "{:?}", reasons(&s));
}

#[test]
fn a_forged_closed_moves_nothing_is_logged_and_the_reserve_still_counts() {
    let mut events = in_flight();
    let forged = refund("r1", "o1", "CLOSED", Some(60));
    events.push(refund_notify_queried(
        forged.clone(),
        refund("r1", "o1", "PROCESSING", Some(60)),
    ));
    // The reserve still counts: 60 in flight, so 41 more is too much.
    events.push(refund_requested("r2", "o1", 41));
    let (s, outcomes) = fold(events);
    assert_eq!(
        outcomes[4],
        Verdict::Refused(Refusal::RefundNotifyUnconfirmed)
    );
    assert_eq!(outcomes[5], Verdict::Refused(Refusal::RefundExceedsPaid));
    let o = order(&s, "o1");
    assert_eq!(
        (o.state, o.refunded, o.refunding),
        (OrderState::Paid, 0, 60)
    );
    assert_eq!(s.ledger.balance(REFUNDS), 60);
    assert_eq!(s.ledger.balance(SALES), 40);
    assert_eq!(s.refunds.get("r1").unwrap().state, RefundState::Processing);
    assert_eq!(
        reasons(&s),
        ["refund_notify_unconfirmed", "refund_exceeds_paid"]
    );
    let logged = s.ledger.failures().next().unwrap();
    assert_eq!(logged.seq, 5);
    assert_eq!(logged.out_trade_no.as_deref(), Some("o1"));
    assert_eq!(logged.detail["got"]["status"], "CLOSED");
    assert_eq!(logged.detail["expected"]["status"], "PROCESSING");

    // Folded again (a redelivered batch): nothing new.
    let mut again = s.clone();
    let rec5 = fixtures::rec(
        5,
        refund_notify_queried(forged, refund("r1", "o1", "PROCESSING", Some(60))),
    );
    assert_eq!(again.apply(&rec5), Verdict::AlreadyApplied);
    assert_eq!(again.ledger.failures().count(), 2);
}

#[test]
fn a_forged_closed_of_a_refund_that_succeeded_books_the_answer_not_the_claim() {
    let mut events = in_flight();
    events.push(refund_notify_queried(
        refund("r1", "o1", "CLOSED", Some(60)),
        refund("r1", "o1", "SUCCESS", Some(60)),
    ));
    events.push(refund_requested("r2", "o1", 41));
    let (s, outcomes) = fold(events);
    assert_eq!(outcomes[4], Verdict::applied());
    assert_eq!(outcomes[5], Verdict::Refused(Refusal::RefundExceedsPaid));
    let o = order(&s, "o1");
    assert_eq!((o.refunded, o.refunding), (60, 0));
    assert_eq!(s.ledger.balance(SALES), 40);
    assert_eq!(s.ledger.balance(CLEARING), -40);
    assert_eq!(
        reasons(&s),
        ["refund_notify_unconfirmed", "refund_exceeds_paid"]
    );
}

#[test]
fn a_claim_is_confirmed_only_when_order_amount_and_refund_id_agree_too() {
    let answer = refund("r1", "o1", "SUCCESS", Some(60));
    let mut other_order = answer.clone();
    other_order.out_trade_no = "o2".into();
    let mut other_amount = answer.clone();
    other_amount.amount.as_mut().unwrap().refund = Some(99);
    let mut other_id = answer.clone();
    other_id.refund_id = Some("5000x".into());
    for claim in [other_order, other_amount, other_id] {
        let mut events = in_flight();
        events.push(refund_notify_queried(claim.clone(), answer.clone()));
        let (s, _) = fold(events);
        assert_eq!(reasons(&s), ["refund_notify_unconfirmed"], "{claim:?}");
        // The answer applies as WeChat signed it.
        assert_eq!(order(&s, "o1").refunded, 60);
    }
    // A claim that leaves out what the answer has contradicts nothing.
    let mut sparse = answer.clone();
    sparse.refund_id = None;
    sparse.amount = None;
    let mut events = in_flight();
    events.push(refund_notify_queried(sparse, answer));
    let (s, _) = fold(events);
    assert!(reasons(&s).is_empty());
}
