//! Table tests of orders: placing, prepay, closing, and the names of their states.

use super::{fixtures::*, *};
use crate::core::events::OrderKind;

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
            Verdict::applied(),
            Verdict::AlreadyApplied,
            Verdict::Refused(Refusal::OutTradeNoTaken),
            Verdict::Refused(Refusal::OutTradeNoTaken),
            Verdict::Refused(Refusal::InvalidAmount),
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
    assert_eq!(outcomes[0], Verdict::Refused(Refusal::UnknownOrder));
    assert_eq!(outcomes[2], Verdict::applied());
    assert_eq!(outcomes[3], Verdict::applied());
    assert_eq!(outcomes[6], Verdict::Refused(Refusal::NotPayable));
    assert_eq!(outcomes[9], Verdict::Refused(Refusal::NotPayable));
    assert_eq!(outcomes[12], Verdict::applied());
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
            Verdict::Refused(Refusal::UnknownOrder),
            Verdict::applied(),
            Verdict::AlreadyApplied,
            Verdict::Refused(Refusal::AlreadyPaid {
                paid_with: Some(PaidWith::Wechat)
            }),
        ]
    );
    let o1 = order(&s, "o1");
    assert_eq!((o1.state, o1.closed_at), (OrderState::Closed, Some(at(4))));
    assert_eq!(order(&s, "o2").state, OrderState::Paid);
    assert_eq!(order(&s, "o2").closed_at, None);
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
