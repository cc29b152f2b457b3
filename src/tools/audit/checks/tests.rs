//! The checks that need no database: every posting group the fold makes traces to its
//! event, every order it leaves agrees with its money, and tampered ones do not.

use std::collections::BTreeMap;

use super::*;
use crate::core::{
    events::{OrderKind, Recorded},
    fold::{fixtures::*, RefundState, State},
};

/// A history with every kind of posting group: sale, recharge, wallet payment, refund
/// reserve / settle / release (rejected and closed), a wallet refund, suspense, an
/// external refund, a refund paid out at another amount than asked.
fn history() -> Vec<Recorded> {
    let events = vec![
        placed("o1", 1, OrderKind::Order, 1000),
        prepay("o1", "p1"),
        success("o1", "t1", 1000),
        placed("r1", 1, OrderKind::Recharge, 500),
        success("r1", "t2", 500),
        placed("o2", 1, OrderKind::Order, 200),
        balance_pay("o2", 1, 200),
        refund_requested("rf1", "o1", 300),
        refund_accepted(refund("rf1", "o1", "PROCESSING", Some(300))),
        refund_notified(refund("rf1", "o1", "SUCCESS", Some(300))),
        refund_requested("rf2", "o1", 100),
        refund_rejected("rf2", "o1"),
        refund_requested("rf3", "o2", 50),
        success("nobody", "t3", 70),
        refund_queried(refund("rf9", "o1", "SUCCESS", Some(10))),
        refund_requested("rf4", "o1", 100),
        refund_notified(refund("rf4", "o1", "CLOSED", Some(100))),
        refund_requested("rf5", "r1", 100),
        refund_notified(refund("rf5", "r1", "SUCCESS", Some(120))),
        placed("o3", 2, OrderKind::Order, 90),
        closed("o3"),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| rec(i as u64 + 1, e))
        .collect()
}

fn folded() -> (Vec<Recorded>, State) {
    let events = history();
    let mut state = State::default();
    state.apply_all(&events);
    (events, state)
}

fn groups(state: &State) -> BTreeMap<String, Vec<Line>> {
    let mut out: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for e in state.ledger.entries() {
        out.entry(e.group_id.clone()).or_default().push(Line {
            seq: e.seq,
            account: e.account.clone(),
            amount: e.amount,
            kind: e.kind.as_str().to_owned(),
            out_trade_no: e.out_trade_no.clone(),
            transaction_id: e.transaction_id.clone(),
        });
    }
    out
}

#[test]
fn every_group_the_fold_posts_traces_to_its_event() {
    let (events, state) = folded();
    let scan = Scan::of_events(&events);
    let groups = groups(&state);
    let ids: Vec<&str> = groups.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "payment:t1",
            "payment:t2",
            "payment:t3",
            "refund:rf1:reserve",
            "refund:rf1:settle",
            "refund:rf2:release",
            "refund:rf2:reserve",
            "refund:rf3",
            "refund:rf4:release",
            "refund:rf4:reserve",
            "refund:rf5:reserve",
            "refund:rf5:settle",
            "refund:rf9:settle",
            "wallet_pay:o2",
        ],
        "the history posts every kind of group"
    );
    for (id, lines) in &groups {
        assert_eq!(trace_group(id, lines, &scan), Ok(()), "{id}");
    }
    assert!(scan.breaches.is_empty(), "{:?}", scan.breaches);
}

#[test]
fn a_group_at_the_wrong_event_or_of_the_wrong_amount_does_not_trace() {
    let (events, state) = folded();
    let scan = Scan::of_events(&events);
    let groups = groups(&state);
    let sale = &groups["payment:t1"];
    let moved = |seq| -> Vec<Line> {
        sale.iter()
            .cloned()
            .map(|mut l| {
                l.seq = seq;
                l
            })
            .collect()
    };
    let err = trace_group("payment:t1", &moved(1), &scan).unwrap_err();
    assert!(err.contains("order.placed"), "{err}");
    let err = trace_group("payment:t1", &moved(99), &scan).unwrap_err();
    assert!(err.contains("no event 99"), "{err}");
    // At the payment of another transaction.
    let err = trace_group("payment:t1", &moved(5), &scan).unwrap_err();
    assert!(err.contains("t2"), "{err}");
    // Balanced, but more than WeChat reported.
    let inflated: Vec<Line> = sale
        .iter()
        .cloned()
        .map(|mut l| {
            l.amount *= 2;
            l
        })
        .collect();
    let err = trace_group("payment:t1", &inflated, &scan).unwrap_err();
    assert!(err.contains("reports 10.00 yuan"), "{err}");
    // A wallet payment's lines under a made-up group, or at a refund request.
    let wallet = &groups["wallet_pay:o2"];
    assert!(trace_group("bonus:o2", wallet, &scan).is_err());
    let err = trace_group("refund:rf3", wallet, &scan).unwrap_err();
    assert!(err.contains("not the request of refund rf3"), "{err}");
    // A release at the event that settled the refund.
    let release: Vec<Line> = groups["refund:rf4:release"]
        .iter()
        .cloned()
        .map(|mut l| {
            l.seq = 10;
            l
        })
        .collect();
    assert!(trace_group("refund:rf4:release", &release, &scan).is_err());
}

/// An order with its money as the tables would hold it, from the folded state.
fn order_money(state: &State, no: &str) -> OrderMoney {
    let o = state.orders.get(no).unwrap();
    let entries = state.ledger.entries();
    let at = |kinds: &[&str]| {
        entries
            .iter()
            .filter(|e| e.out_trade_no == no && kinds.contains(&e.kind.as_str()))
            .map(|e| e.seq)
            .max()
    };
    let requested: Vec<_> = state
        .refunds
        .iter()
        .filter(|r| r.out_trade_no == no && r.requested)
        .collect();
    let sum = |states: &[RefundState], reserved: bool| {
        requested
            .iter()
            .filter(|r| states.contains(&r.state) && (!reserved || r.reserved_from.is_some()))
            .map(|r| r.amount)
            .sum()
    };
    OrderMoney {
        out_trade_no: no.into(),
        state: o.state.as_str().into(),
        amount: o.amount,
        paid_with: o.paid_with.map(|p| p.as_str().to_owned()),
        transaction_id: o.transaction_id.clone(),
        refunded: o.refunded,
        refunding: o.refunding,
        last_seq: o.last_seq,
        payment: o
            .transaction_id
            .as_deref()
            .and_then(|t| state.ledger.payment(t))
            .map(|p| (p.out_trade_no.clone(), p.amount)),
        credited_at: at(&["sale", "recharge"]),
        wallet_paid_at: at(&["wallet_payment"]),
        refunds_succeeded: sum(&[RefundState::Succeeded], false),
        refunds_in_flight: sum(
            &[
                RefundState::Requested,
                RefundState::Processing,
                RefundState::Abnormal,
            ],
            true,
        ),
    }
}

#[test]
fn the_folds_orders_agree_with_their_money_and_tampered_ones_do_not() {
    let (_, state) = folded();
    for o in state.orders.iter() {
        let money = order_money(&state, &o.out_trade_no);
        assert_eq!(order_problems(&money), Vec::<String>::new(), "{money:?}");
    }
    let paid = order_money(&state, "o1");
    let closed = order_money(&state, "o3");

    let unbacked = OrderMoney {
        payment: None,
        ..paid.clone()
    };
    assert!(order_problems(&unbacked)[0].contains("no payment is booked"));
    let sold_while_closed = OrderMoney {
        credited_at: Some(3),
        ..closed.clone()
    };
    assert!(order_problems(&sold_while_closed)[0].contains("event 3 booked its payment"));
    let paid_without_money = OrderMoney {
        state: "paid".into(),
        paid_with: Some("wallet".into()),
        ..closed
    };
    assert!(order_problems(&paid_without_money)[0].contains("no wallet payment"));
    let refunded_twice = OrderMoney {
        refunded: paid.refunded * 2,
        ..paid.clone()
    };
    assert!(order_problems(&refunded_twice)
        .iter()
        .any(|p| p.contains("its refunds say")));
    let all_back = OrderMoney {
        refunded: paid.amount,
        refunds_succeeded: paid.amount,
        ..paid
    };
    assert!(order_problems(&all_back)[0].contains("partially_refunded with 10.00 of 10.00"));
}
