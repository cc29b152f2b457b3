//! The order and refund rules (`can_move_to`) as a table, and a check that the fold moves
//! orders and refunds exactly as that table says.

use super::fixtures::{
    closed, fold, notified, placed, prepay, rec, refund, refund_accepted, refund_queried,
    refund_rejected, refund_requested, success, transaction,
};
use super::*;
use crate::core::events::OrderKind;

const ORDER_STATES: [OrderState; 7] = [
    OrderState::Created,
    OrderState::PrepayIssued,
    OrderState::PayError,
    OrderState::Closed,
    OrderState::Paid,
    OrderState::PartiallyRefunded,
    OrderState::Refunded,
];

const REFUND_STATES: [RefundState; 7] = [
    RefundState::Requested,
    RefundState::Processing,
    RefundState::Abnormal,
    RefundState::Succeeded,
    RefundState::Closed,
    RefundState::Rejected,
    RefundState::Refused,
];

/// The moves the fold made before the rules were written down as `can_move_to` (its
/// guards in `orders.rs` and `refunds.rs`, and the audit's old table), spelled out so that
/// a change to the rules or to the fold shows here.
const ORDER_MOVES: &[(OrderState, OrderState)] = &[
    (OrderState::Created, OrderState::PrepayIssued),
    (OrderState::Created, OrderState::Closed),
    (OrderState::Created, OrderState::Paid),
    (OrderState::Created, OrderState::PayError),
    (OrderState::PrepayIssued, OrderState::PrepayIssued),
    (OrderState::PrepayIssued, OrderState::Closed),
    (OrderState::PrepayIssued, OrderState::Paid),
    (OrderState::PrepayIssued, OrderState::PayError),
    (OrderState::PayError, OrderState::PrepayIssued),
    (OrderState::PayError, OrderState::Closed),
    (OrderState::PayError, OrderState::Paid),
    (OrderState::Paid, OrderState::PartiallyRefunded),
    (OrderState::Paid, OrderState::Refunded),
    (OrderState::PartiallyRefunded, OrderState::PartiallyRefunded),
    (OrderState::PartiallyRefunded, OrderState::Refunded),
];

/// The same for refunds.
const REFUND_MOVES: &[(RefundState, RefundState)] = &[
    (RefundState::Requested, RefundState::Processing),
    (RefundState::Requested, RefundState::Abnormal),
    (RefundState::Requested, RefundState::Succeeded),
    (RefundState::Requested, RefundState::Closed),
    (RefundState::Requested, RefundState::Rejected),
    (RefundState::Processing, RefundState::Abnormal),
    (RefundState::Processing, RefundState::Succeeded),
    (RefundState::Processing, RefundState::Closed),
    (RefundState::Abnormal, RefundState::Processing),
    (RefundState::Abnormal, RefundState::Succeeded),
    (RefundState::Abnormal, RefundState::Closed),
];

#[test]
fn the_order_rules_are_this_table() {
    for from in ORDER_STATES {
        for to in ORDER_STATES {
            assert_eq!(
                from.can_move_to(to),
                ORDER_MOVES.contains(&(from, to)),
                "{from:?} -> {to:?}"
            );
        }
    }
    assert_eq!(OrderState::INITIAL, OrderState::Created);
}

#[test]
fn the_refund_rules_are_this_table() {
    for from in REFUND_STATES {
        for to in REFUND_STATES {
            assert_eq!(
                from.can_move_to(to),
                REFUND_MOVES.contains(&(from, to)),
                "{from:?} -> {to:?}"
            );
        }
    }
}

/// Events that bring order `o1` (100 fen, paid through WeChat where paid) to `state`.
fn order_in(state: OrderState) -> Vec<Event> {
    use OrderState::*;
    let mut events = vec![placed("o1", 1, OrderKind::Order, 100)];
    let refunded = |no: &str, amount| {
        [
            refund_requested(no, "o1", amount),
            refund_accepted(refund(no, "o1", "SUCCESS", Some(amount))),
        ]
    };
    match state {
        Created => {}
        PrepayIssued => events.push(prepay("o1", "p1")),
        PayError => events.push(notified(transaction("o1", None, "PAYERROR", None))),
        Closed => events.push(closed("o1")),
        Paid => events.push(success("o1", "t1", 100)),
        PartiallyRefunded => {
            events.push(success("o1", "t1", 100));
            events.extend(refunded("ra", 40));
        }
        Refunded => {
            events.push(success("o1", "t1", 100));
            events.extend(refunded("ra", 100));
        }
    }
    events
}

/// The events that try to move order `o1` to the state named.
fn moves_order_to(target: OrderState) -> Vec<Event> {
    use OrderState::*;
    match target {
        PrepayIssued => vec![prepay("o1", "p2")],
        Closed => vec![closed("o1")],
        PayError => vec![notified(transaction("o1", None, "PAYERROR", None))],
        Paid => vec![success("o1", "t2", 100)],
        PartiallyRefunded => vec![
            refund_requested("rb", "o1", 10),
            refund_accepted(refund("rb", "o1", "SUCCESS", Some(10))),
        ],
        Refunded | Created => vec![],
    }
}

/// Folds `history`, then `then`, and returns the order's state before and after `then`.
fn before_after(history: Vec<Event>, then: Vec<Event>) -> (State, State) {
    let (before, _) = fold(history.clone());
    let (after, _) = fold(history.into_iter().chain(then).collect());
    (before, after)
}

#[test]
fn the_fold_moves_orders_as_the_rules_say() {
    const MOVES: &[(OrderState, OrderState)] = ORDER_MOVES;
    for from in ORDER_STATES {
        let (before, _) = fold(order_in(from));
        assert_eq!(
            before.orders.get("o1").unwrap().state,
            from,
            "reaching {from:?}"
        );
        for target in ORDER_STATES {
            let then = moves_order_to(target);
            if then.is_empty() {
                continue;
            }
            let (_, after) = before_after(order_in(from), then);
            let after = after.orders.get("o1").unwrap().state;
            assert!(
                after == from || MOVES.contains(&(from, after)),
                "{from:?} moved to {after:?}"
            );
            if from != target {
                assert_eq!(
                    after == target,
                    MOVES.contains(&(from, target)),
                    "{from:?} asked to move to {target:?}, is {after:?}"
                );
            }
        }
    }
}

/// Events that bring refund `r1` of the paid order `o1` to `state`.
fn refund_in(state: RefundState) -> Vec<Event> {
    use RefundState::*;
    let mut events = vec![
        placed("o1", 1, OrderKind::Order, 100),
        success("o1", "t1", 100),
    ];
    let wechat = |status| refund_queried(refund("r1", "o1", status, Some(40)));
    match state {
        Refused => events.push(refund_requested("r1", "o1", 1_000)),
        Requested => events.push(refund_requested("r1", "o1", 40)),
        Rejected => events.extend([
            refund_requested("r1", "o1", 40),
            refund_rejected("r1", "o1"),
        ]),
        Processing => events.extend([refund_requested("r1", "o1", 40), wechat("PROCESSING")]),
        Abnormal => events.extend([refund_requested("r1", "o1", 40), wechat("ABNORMAL")]),
        Succeeded => events.extend([refund_requested("r1", "o1", 40), wechat("SUCCESS")]),
        Closed => events.extend([refund_requested("r1", "o1", 40), wechat("CLOSED")]),
    }
    events
}

#[test]
fn the_fold_moves_refunds_as_the_rules_say() {
    const MOVES: &[(RefundState, RefundState)] = REFUND_MOVES;
    use RefundState::*;
    for from in REFUND_STATES {
        let (before, _) = fold(refund_in(from));
        assert_eq!(
            before.refunds.get("r1").unwrap().state,
            from,
            "reaching {from:?}"
        );
        for target in [Processing, Abnormal, Succeeded, Closed, Rejected] {
            let then = match target {
                Rejected => refund_rejected("r1", "o1"),
                _ => refund_queried(refund("r1", "o1", wechat_status(target), Some(40))),
            };
            let mut state = before.clone();
            let seq = refund_in(from).len() as u64 + 1;
            state.apply(&rec(seq, then));
            let after = state.refunds.get("r1").unwrap().state;
            assert!(
                after == from || MOVES.contains(&(from, after)),
                "{from:?} moved to {after:?}"
            );
            if from != target {
                assert_eq!(
                    after == target,
                    MOVES.contains(&(from, target)),
                    "{from:?} asked to move to {target:?}, is {after:?}"
                );
            }
        }
    }
}

fn wechat_status(state: RefundState) -> &'static str {
    match state {
        RefundState::Processing => "PROCESSING",
        RefundState::Abnormal => "ABNORMAL",
        RefundState::Succeeded => "SUCCESS",
        _ => "CLOSED",
    }
}
