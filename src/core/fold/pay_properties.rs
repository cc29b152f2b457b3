//! Properties of the payment fold: the books balance, replays and batches change nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{fixtures::*, *};
use crate::core::events::{OrderKind, Refund, Transaction};

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

pub(crate) fn snapshot(s: &State) -> Tables {
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
    fold_in_batches_with(history, batch_sizes, |_, _, _, _, _| {})
}

/// [`fold_in_batches`], showing `each` every batch with its verdicts, new postings and
/// failures and the state it was folded over (as the projector derives its outcomes).
pub(crate) fn fold_in_batches_with(
    history: &[Recorded],
    batch_sizes: &[usize],
    mut each: impl FnMut(&[Recorded], &[Verdict], &[LedgerEntry], &[Failure], &State),
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
        let verdicts = state.apply_all(batch);
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
        each(batch, &verdicts, &new_entries, &new_failures, &state);
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
            prop_assert!(!outcome.is_applied(), "seq {} applied again", old.seq);
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
                prop_assert_eq!(s.apply(&rec(seq, r.event.clone())), Verdict::AlreadyApplied);
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
