//! The audit's one pass over the stream, up to the live checkpoint: which event sits at
//! each sequence (and, for those that move money, what they say), every order's state
//! followed through the fold event by event against the transitions the rules allow, and,
//! on request, each event's evidence verified again.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use uuid::Uuid;

use super::{
    evidence::{EvidenceProblem, Verifier},
    AuditError, Breach, BreachKind, Found, Step,
};
use crate::{
    core::{
        events::{Event, Recorded, Refund, Transaction},
        fold::{Keys, OrderState, PaySource, State},
    },
    store::{
        replay::{AsOf, Progress},
        stream::EventLog,
    },
};

/// The event types, in a fixed order: a sequence's type is kept as its index here.
const KINDS: [&str; 19] = [
    "user.registered",
    "user.logged_in",
    "user.phone_bound",
    "user.profile_updated",
    "order.placed",
    "order.prepay_issued",
    "order.closed",
    "payment.notified",
    "payment.queried",
    "order.balance_pay_requested",
    "payment.legacy_notified",
    "payment.legacy_queried",
    "refund.requested",
    "refund.accepted",
    "refund.rejected",
    "refund.notified",
    "refund.queried",
    "user.erased",
    "event.quarantined",
];

/// The index of `event`'s type in [`KINDS`] (a match, so a new type cannot be missed).
fn kind_code(event: &Event) -> u8 {
    match event {
        Event::UserRegistered(_) | Event::RegisteredSealed(_) => 0,
        Event::UserLoggedIn(_) | Event::LoggedInSealed(_) => 1,
        Event::PhoneBound(_) | Event::PhoneSealed(_) => 2,
        Event::ProfileUpdated(_) | Event::ProfileSealed(_) => 3,
        Event::OrderPlaced(_) => 4,
        Event::PrepayIssued(_) => 5,
        Event::OrderClosed(_) => 6,
        Event::PaymentNotified(_) => 7,
        Event::PaymentQueried(_) => 8,
        Event::BalancePayRequested(_) => 9,
        Event::LegacyPaymentNotified(_) => 10,
        Event::LegacyPaymentQueried(_) => 11,
        Event::RefundRequested(_) => 12,
        Event::RefundAccepted(_) => 13,
        Event::RefundRejected(_) => 14,
        Event::RefundNotified(_) => 15,
        Event::RefundQueried(_) => 16,
        Event::UserErased(_) => 17,
        Event::Quarantined(_) => 18,
    }
}

/// What an event that moves money says: enough to tell whether a posting group or a
/// payment row at its sequence is backed by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Money {
    /// WeChat's word on a transaction (`payment.notified`, `payment.queried`,
    /// `payment.legacy_notified`, `payment.legacy_queried`).
    Payment {
        /// Notify or query.
        source: PaySource,
        /// The transaction as reported.
        transaction: Transaction,
    },
    /// `order.balance_pay_requested`.
    BalancePay {
        /// The order.
        out_trade_no: String,
        /// The payer.
        user_id: Uuid,
        /// Fen.
        amount: i64,
    },
    /// `refund.requested`.
    RefundRequested {
        /// Our refund number.
        out_refund_no: String,
        /// The order.
        out_trade_no: String,
        /// Fen.
        amount: i64,
    },
    /// WeChat's word on a refund (`refund.accepted`, `refund.notified`, `refund.queried`).
    RefundReport(Refund),
    /// `refund.rejected`.
    RefundRejected {
        /// Our refund number.
        out_refund_no: String,
        /// The order.
        out_trade_no: String,
    },
}

impl Money {
    /// What `event` says about money, if anything.
    pub fn of(event: &Event) -> Option<Self> {
        let payment = |source, tx: &Transaction| Money::Payment {
            source,
            transaction: tx.clone(),
        };
        Some(match event {
            Event::PaymentNotified(e) => payment(PaySource::Notify, &e.transaction),
            Event::LegacyPaymentNotified(e) => payment(PaySource::Notify, &e.transaction),
            Event::PaymentQueried(e) => payment(PaySource::Query, &e.transaction),
            Event::LegacyPaymentQueried(e) => payment(PaySource::Query, &e.transaction),
            Event::BalancePayRequested(e) => Money::BalancePay {
                out_trade_no: e.out_trade_no.clone(),
                user_id: e.user_id,
                amount: e.amount,
            },
            Event::RefundRequested(e) => Money::RefundRequested {
                out_refund_no: e.out_refund_no.clone(),
                out_trade_no: e.out_trade_no.clone(),
                amount: e.amount,
            },
            Event::RefundAccepted(e) => Money::RefundReport(e.refund.clone()),
            Event::RefundNotified(e) => Money::RefundReport(e.refund.clone()),
            Event::RefundQueried(e) => Money::RefundReport(e.refund.clone()),
            Event::RefundRejected(e) => Money::RefundRejected {
                out_refund_no: e.out_refund_no.clone(),
                out_trade_no: e.out_trade_no.clone(),
            },
            _ => return None,
        })
    }
}

/// How many events carried evidence, and how many of those did not verify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signatures {
    /// Events whose evidence was checked.
    pub checked: u64,
    /// Of those, the ones that failed (a `bad_signature` or `evidence_mismatch` each).
    pub failed: u64,
}

/// What the pass learnt.
#[derive(Debug, Default)]
pub struct Scan {
    /// The sequence audited as of: the checkpoint, or the `--as-of` point before it.
    pub point: u64,
    /// The type of each event, by sequence - 1 (an index into the fixed list of types).
    kinds: Vec<u8>,
    /// What each event that moves money says, by sequence.
    money: HashMap<i64, Money>,
    /// Breaches found in the stream (order transitions, evidence).
    pub breaches: Vec<Breach>,
    /// The evidence checked, when asked to.
    pub signatures: Option<Signatures>,
}

impl Scan {
    /// The type of the event at `seq`, if the pass read one there.
    pub fn kind_at(&self, seq: i64) -> Option<&'static str> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        // A gap in the stream is marked with a code no kind has: no event there.
        self.kinds
            .get(i)
            .and_then(|k| KINDS.get(usize::from(*k)))
            .copied()
    }

    /// What the event at `seq` says about money, if it moves any.
    pub fn money_at(&self, seq: i64) -> Option<&Money> {
        self.money.get(&seq)
    }

    /// A scan of `events` read in order from sequence 1 (for tests of the checks).
    pub fn of_events(events: &[Recorded]) -> Self {
        let mut scan = Scan::default();
        let mut orders = Transitions::default();
        for rec in events {
            scan.record(rec);
            orders.apply(rec, &mut scan.breaches);
            scan.point = rec.seq;
        }
        scan
    }

    fn record(&mut self, rec: &Recorded) {
        let kind = kind_code(&rec.event);
        debug_assert_eq!(KINDS[usize::from(kind)], rec.event.kind());
        let index = usize::try_from(rec.seq - 1).expect("sequences fit in usize");
        if self.kinds.len() < index {
            // Sequences are dense on an immutable stream; be safe if not.
            self.kinds.resize(index, u8::MAX);
        }
        self.kinds.push(kind);
        if let Some(money) = Money::of(&rec.event) {
            self.money
                .insert(i64::try_from(rec.seq).expect("sequences fit in i64"), money);
        }
    }
}

/// Whether the rules let an order move from `from` (`None`: not placed yet) to `to`;
/// staying is always allowed. The rules are the fold's own, [`OrderState::can_move_to`]
/// and [`OrderState::INITIAL`], so the audit checks the fold against what it means to do.
pub fn legal_transition(from: Option<OrderState>, to: OrderState) -> bool {
    match from {
        None => to == OrderState::INITIAL,
        // An event that leaves the state as it was moved nothing.
        Some(from) => from == to || from.can_move_to(to),
    }
}

/// The fold, run over the stream in memory, watched for illegal order transitions.
#[derive(Default)]
struct Transitions {
    state: State,
}

impl Transitions {
    fn apply(&mut self, rec: &Recorded, breaches: &mut Vec<Breach>) {
        let mut keys = Keys::default();
        keys.add(&rec.event);
        let before: Vec<(String, Option<OrderState>)> = keys
            .out_trade_nos
            .into_iter()
            .map(|no| {
                let state = self.state.orders.get(&no).map(|o| o.state);
                (no, state)
            })
            .collect();
        self.state.apply(rec);
        for order in self.state.orders.take_changed() {
            let Some((_, was)) = before.iter().find(|(no, _)| *no == order.out_trade_no) else {
                continue;
            };
            if !legal_transition(*was, order.state) {
                let was = was.map_or("(not placed)", OrderState::as_str);
                breaches.push(Breach::new(
                    BreachKind::IllegalOrderState,
                    Found::Stream,
                    &order.out_trade_no,
                    vec![order.last_seq],
                    format!(
                        "the fold moved the order from {was} to {} at event {} ({}), which the order rules do not allow",
                        order.state.as_str(),
                        order.last_seq,
                        rec.event.kind()
                    ),
                ));
            }
        }
        // Nothing is written anywhere: forget what changed, keep memory flat.
        self.state.refunds.take_changed();
        self.state.users.take_changed();
        self.state.take_verdicts();
        let ledger = &mut self.state.ledger;
        ledger.take_changed_balances();
        ledger.take_new_payments();
        ledger.drain_entries();
        ledger.take_new_failures();
        ledger.forget_taken_failures();
    }
}

/// Reads events 1 to `end`, learning what [`Scan`] holds; with `as_of`, the point is the
/// last event inside it (at most `end`). With a verifier, every event that carries
/// evidence is checked.
pub async fn scan(
    log: &EventLog,
    end: u64,
    as_of: Option<AsOf>,
    verifier: Option<&Verifier>,
    progress: &mut impl FnMut(Step<'_>),
) -> Result<Scan, AuditError> {
    let mut scan = Scan {
        signatures: verifier.map(|_| Signatures::default()),
        ..Scan::default()
    };
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut orders = Transitions::default();
    let mut point = 0;
    // The pass reads from sequence 1, so the sequence reached is the count read.
    let report = |seq| Progress {
        read: seq,
        applied: seq,
        seq,
        end,
        checkpoint: seq,
        elapsed: started.elapsed(),
    };
    if end > 0 {
        // Quarantined events are skipped, as the projector skipped them.
        let quarantine = log.quarantine().await?;
        let mut messages = log.read_range(1..=end).await?;
        while let Some(message) = messages.next().await {
            let (seq, payload) = message?;
            let Some(rec) = quarantine
                .read(seq, &payload)
                .map_err(|source| AuditError::Decode { seq, source })?
            else {
                continue;
            };
            scan.record(&rec);
            orders.apply(&rec, &mut scan.breaches);
            if within(as_of, &rec.occurred_at, seq) {
                point = seq;
            }
            if let (Some(verifier), Some(tally)) = (verifier, scan.signatures.as_mut()) {
                if let Some(verdict) = verifier.check(&rec.event).await {
                    tally.checked += 1;
                    if let Err(problem) = verdict {
                        tally.failed += 1;
                        scan.breaches.push(problem_breach(&rec, problem));
                    }
                }
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                progress(Step::Scan(&report(seq)));
                last_report = Instant::now();
            }
        }
    }
    progress(Step::Scan(&report(end)));
    scan.point = point;
    Ok(scan)
}

/// Whether the event at `seq`, accepted at `at`, is inside the `--as-of` point.
fn within(as_of: Option<AsOf>, at: &DateTime<Utc>, seq: u64) -> bool {
    match as_of {
        None => true,
        Some(AsOf::Seq(point)) => seq <= point,
        Some(AsOf::Time(t)) => *at <= t,
    }
}

/// The key of an event with evidence: its order, refund or transaction.
fn event_key(event: &Event) -> String {
    match Money::of(event) {
        Some(Money::Payment { transaction, .. }) => transaction
            .transaction_id
            .unwrap_or(transaction.out_trade_no),
        Some(Money::RefundReport(refund)) => refund.out_refund_no,
        _ => event.kind().to_owned(),
    }
}

fn problem_breach(rec: &Recorded, problem: EvidenceProblem) -> Breach {
    let seq = i64::try_from(rec.seq).expect("sequences fit in i64");
    let (kind, what) = match problem {
        EvidenceProblem::Signature(what) => (BreachKind::BadSignature, what),
        EvidenceProblem::Mismatch(what) => (BreachKind::EvidenceMismatch, what),
    };
    Breach::new(
        kind,
        Found::Stream,
        event_key(&rec.event),
        vec![seq],
        format!("{} at event {seq}: {what}", rec.event.kind()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fold::OrderState::*;

    #[test]
    fn the_transitions_are_those_of_the_order_rules() {
        let all = [
            Created,
            PrepayIssued,
            Paid,
            Closed,
            PayError,
            PartiallyRefunded,
            Refunded,
        ];
        let legal = [
            (Created, PrepayIssued),
            (Created, Closed),
            (Created, Paid),
            (Created, PayError),
            (PrepayIssued, Closed),
            (PrepayIssued, Paid),
            (PrepayIssued, PayError),
            (PayError, PrepayIssued),
            (PayError, Closed),
            (PayError, Paid),
            (Paid, PartiallyRefunded),
            (Paid, Refunded),
            (PartiallyRefunded, Refunded),
        ];
        for from in all {
            for to in all {
                let expected = from == to || legal.contains(&(from, to));
                assert_eq!(
                    legal_transition(Some(from), to),
                    expected,
                    "{from:?} -> {to:?}"
                );
            }
            assert_eq!(
                legal_transition(None, from),
                from == Created,
                "placed as {from:?}"
            );
        }
    }

    #[test]
    fn every_listed_type_is_an_event_type() {
        for kind in KINDS {
            let decoded = Event::decode(kind, 1, serde_json::json!({}));
            assert!(
                matches!(decoded, Err(crate::core::events::DecodeError::Data { .. })),
                "{kind}: {decoded:?}"
            );
        }
    }
}
