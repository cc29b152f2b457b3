//! Table tests of the derivation (postings and failures → outcomes) and properties: the
//! same events give the same outcomes however they are batched, each decision once.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::core::{
    events::{Event, OrderKind},
    fold::{
        fixtures::{
            balance_pay, placed, refund, refund_accepted, refund_notified, refund_requested,
            success, uid,
        },
        pay_properties::{arb_event, fold_in_batches_with, history},
    },
};

/// Folds `events` (sequences 1, 2, ...) in one batch and derives its outcomes.
fn outcomes_of(events: Vec<Event>) -> Vec<Outcome> {
    let history = history(events);
    one_batch(&history)
}

fn one_batch(history: &[Recorded]) -> Vec<Outcome> {
    let mut state = State::default();
    let verdicts = state.apply_all(history);
    let entries = state.ledger.take_new_entries();
    let failures = state.ledger.take_new_failures();
    derive(history, &verdicts, &entries, &failures, &state)
}

fn ids(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes.iter().map(|o| o.id.as_str()).collect()
}

/// The envelope id `rec` gives the event at `seq`.
fn event_id(seq: u64) -> Uuid {
    Uuid::from_u128(u128::from(seq))
}

#[test]
fn an_order_paid_through_wechat_is_one_order_paid() {
    let outcomes = outcomes_of(vec![
        placed("o1", 1, OrderKind::Order, 300),
        success("o1", "t1", 300),
        // WeChat's retry of the same notify, and a query of the same transaction.
        success("o1", "t1", 300),
    ]);
    assert_eq!(ids(&outcomes), ["order.paid:o1"]);
    let o = &outcomes[0];
    assert_eq!(o.kind, "order.paid");
    assert_eq!(o.version, 1);
    assert_eq!(
        o.source,
        Source {
            seq: 2,
            event_id: event_id(2),
            kind: "payment.notified".into()
        }
    );
    assert_eq!(o.occurred_at, crate::core::fold::fixtures::at(2));
    assert_eq!(
        o.data,
        json!({"out_trade_no": "o1", "user_id": uid(1), "amount": 300,
               "paid_with": "wechat", "transaction_id": "t1"})
    );
}

#[test]
fn recharges_credit_with_the_balance_right_after_each() {
    let outcomes = outcomes_of(vec![
        placed("r1", 1, OrderKind::Recharge, 100),
        placed("r2", 1, OrderKind::Recharge, 250),
        success("r1", "t1", 100),
        success("r2", "t2", 250),
    ]);
    assert_eq!(
        ids(&outcomes),
        ["recharge.credited:r1", "recharge.credited:r2"]
    );
    assert_eq!(
        outcomes[0].data,
        json!({"out_trade_no": "r1", "user_id": uid(1), "amount": 100,
               "transaction_id": "t1", "wallet_balance": 100})
    );
    assert_eq!(outcomes[1].data["wallet_balance"], 350);
}

#[test]
fn a_wallet_payment_is_an_order_paid_with_the_wallet_and_a_short_one_a_failure() {
    let outcomes = outcomes_of(vec![
        placed("r1", 1, OrderKind::Recharge, 500),
        success("r1", "t1", 500),
        placed("o1", 1, OrderKind::Order, 300),
        balance_pay("o1", 1, 300),
        placed("o2", 1, OrderKind::Order, 300),
        balance_pay("o2", 1, 300),
    ]);
    assert_eq!(
        ids(&outcomes),
        [
            "recharge.credited:r1".to_owned(),
            "order.paid:o1".to_owned(),
            format!("failure.recorded:{}:insufficient_balance", event_id(6)),
        ]
    );
    assert_eq!(
        outcomes[1].data,
        json!({"out_trade_no": "o1", "user_id": uid(1), "amount": 300,
               "paid_with": "wallet", "wallet_balance": 200})
    );
    assert_eq!(outcomes[1].source.kind, "order.balance_pay_requested");
    let failure = &outcomes[2].data;
    assert_eq!(failure["reason"], "insufficient_balance");
    assert_eq!(failure["out_trade_no"], "o2");
    assert_eq!(failure["amount"], 300);
    assert_eq!(failure["detail"]["balance"], 200);
}

#[test]
fn a_refund_through_wechat_succeeds_once_when_wechat_says_so() {
    let outcomes = outcomes_of(vec![
        placed("o1", 1, OrderKind::Order, 300),
        success("o1", "t1", 300),
        refund_requested("rf1", "o1", 100),
        refund_accepted(refund("rf1", "o1", "PROCESSING", Some(100))),
        refund_notified(refund("rf1", "o1", "SUCCESS", Some(100))),
        refund_notified(refund("rf1", "o1", "SUCCESS", Some(100))),
    ]);
    assert_eq!(ids(&outcomes), ["order.paid:o1", "refund.succeeded:rf1"]);
    assert_eq!(outcomes[1].source.seq, 5);
    assert_eq!(outcomes[1].source.kind, "refund.notified");
    assert_eq!(
        outcomes[1].data,
        json!({"out_refund_no": "rf1", "out_trade_no": "o1", "amount": 100,
               "refunded_to": "wechat", "requested": true, "user_id": uid(1),
               "transaction_id": "t1", "refund_id": "5000rf1"})
    );
}

#[test]
fn a_closed_refund_is_no_outcome() {
    let outcomes = outcomes_of(vec![
        placed("o1", 1, OrderKind::Order, 300),
        success("o1", "t1", 300),
        refund_requested("rf1", "o1", 100),
        refund_notified(refund("rf1", "o1", "CLOSED", Some(100))),
    ]);
    assert_eq!(ids(&outcomes), ["order.paid:o1"]);
}

#[test]
fn a_wallet_paid_order_is_refunded_to_the_wallet_at_once() {
    let outcomes = outcomes_of(vec![
        placed("r1", 1, OrderKind::Recharge, 500),
        success("r1", "t1", 500),
        placed("o1", 1, OrderKind::Order, 300),
        balance_pay("o1", 1, 300),
        refund_requested("rf1", "o1", 120),
    ]);
    let last = outcomes.last().unwrap();
    assert_eq!(last.id, "refund.succeeded:rf1");
    assert_eq!(last.source.kind, "refund.requested");
    assert_eq!(
        last.data,
        json!({"out_refund_no": "rf1", "out_trade_no": "o1", "amount": 120,
               "refunded_to": "wallet", "requested": true, "user_id": uid(1),
               "wallet_balance": 320})
    );
}

#[test]
fn a_refund_nobody_asked_for_is_a_succeeded_refund_and_a_failure() {
    let outcomes = outcomes_of(vec![refund_notified(refund(
        "rf9",
        "nosuch",
        "SUCCESS",
        Some(70),
    ))]);
    assert_eq!(
        ids(&outcomes),
        [
            format!("failure.recorded:{}:unknown_refund", event_id(1)),
            "refund.succeeded:rf9".to_owned(),
        ]
    );
    assert_eq!(
        outcomes[1].data,
        json!({"out_refund_no": "rf9", "out_trade_no": "nosuch", "amount": 70,
               "refunded_to": "wechat", "requested": false, "refund_id": "5000rf9"})
    );
}

#[test]
fn money_for_an_unknown_order_is_a_failure_not_a_payment() {
    let outcomes = outcomes_of(vec![
        success("nosuch", "t9", 77),
        success("nosuch", "t9", 77),
    ]);
    assert_eq!(
        ids(&outcomes),
        [format!("failure.recorded:{}:unknown_order", event_id(1))]
    );
    assert_eq!(
        outcomes[0].data,
        json!({"reason": "unknown_order", "out_trade_no": "nosuch", "transaction_id": "t9",
               "amount": 77, "detail": {"source": "notify", "notify_id": "notify-t9",
                                        "trade_state": "SUCCESS"}})
    );
}

#[test]
fn one_event_may_record_several_failures_each_its_own_outcome() {
    let mut usd = crate::core::fold::fixtures::transaction("o1", Some("t1"), "SUCCESS", Some(1));
    usd.amount.as_mut().unwrap().currency = Some("USD".into());
    let outcomes = outcomes_of(vec![
        placed("o1", 1, OrderKind::Order, 300),
        crate::core::fold::fixtures::notified(usd),
    ]);
    assert_eq!(
        ids(&outcomes),
        [
            format!("failure.recorded:{}:amount_mismatch", event_id(2)),
            format!("failure.recorded:{}:currency_mismatch", event_id(2)),
        ]
    );
}

#[test]
fn outcome_data_matches_its_rust_type() {
    let outcomes = outcomes_of(vec![
        placed("r1", 1, OrderKind::Recharge, 500),
        success("r1", "t1", 500),
        placed("o1", 1, OrderKind::Order, 300),
        balance_pay("o1", 1, 300),
        refund_requested("rf1", "o1", 300),
        success("nosuch", "t9", 77),
    ]);
    let kinds: BTreeSet<&str> = outcomes.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds.len(), OutcomeKind::ALL.len(), "{kinds:?}");
    for o in &outcomes {
        let d = o.data.clone();
        let read = match o.kind.as_str() {
            "order.paid" => serde_json::from_value::<OrderPaid>(d).map(|_| ()),
            "recharge.credited" => serde_json::from_value::<RechargeCredited>(d).map(|_| ()),
            "refund.succeeded" => serde_json::from_value::<RefundSucceeded>(d).map(|_| ()),
            "failure.recorded" => serde_json::from_value::<FailureRecorded>(d).map(|_| ()),
            other => panic!("unexpected {other}"),
        };
        read.unwrap_or_else(|e| panic!("{}: {e}", o.id));
        let round: Outcome = serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap();
        assert_eq!(&round, o);
    }
}

/// How many outcomes the postings and failures of a whole history call for.
fn expected_count(history: &[Recorded]) -> usize {
    let mut state = State::default();
    state.apply_all(history);
    let groups: BTreeSet<(&str, i64)> = state
        .ledger
        .entries()
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EntryKind::Sale
                    | EntryKind::WalletPayment
                    | EntryKind::Recharge
                    | EntryKind::Refund
            )
        })
        .map(|e| (e.group_id.as_str(), e.seq))
        .collect();
    groups.len() + state.ledger.failures().count()
}

proptest! {
    #[test]
    fn batching_changes_no_outcome(
        events in proptest::collection::vec(arb_event(), 0..80),
        sizes in proptest::collection::vec(1usize..8, 1..5),
    ) {
        let history = history(events);
        let whole = one_batch(&history);
        let mut batched = Vec::new();
        fold_in_batches_with(&history, &sizes, |batch, verdicts, entries, failures, state| {
            batched.extend(derive(batch, verdicts, entries, failures, state));
        });
        prop_assert_eq!(&batched, &whole);
        // Each decision once, in source order.
        let unique: BTreeSet<&str> = whole.iter().map(|o| o.id.as_str()).collect();
        prop_assert_eq!(unique.len(), whole.len(), "an id twice: {:?}", ids(&whole));
        prop_assert!(whole.windows(2).all(|w| w[0].source.seq <= w[1].source.seq));
        prop_assert_eq!(whole.len(), expected_count(&history));
    }
}
