//! The fold: every decision wxledger makes from its events, as plain functions over plain
//! data. No clock, no randomness, no I/O: the same events always give the same state.
//!
//! The projector loads the slice of state an event batch touches ([`Keys`]), folds the
//! batch in memory and writes back what changed; a full rebuild folds from empty.
//!
//! Applying an event yields its [`Verdict`]: the [`Decision`]s made, or the [`Refusal`]
//! that stopped it. The verdicts callers wait on are kept with the state
//! ([`State::take_verdicts`]) and stored like its rows.

pub mod ledger;
pub mod orders;
pub mod phone;
pub mod quarantine;
pub mod refunds;
pub mod users;
pub mod verdict;

// Public for the integration tests, which cannot see `#[cfg(test)]` items.
pub mod fixtures;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use uuid::Uuid;

use crate::core::events::{Event, Recorded};

pub use ledger::{
    is_wallet, wallet_account, Account, Balance, BookedAs, EntryKind, Failure, GroupId, Ledger,
    LedgerEntry, ParseIdError, PaySource, Payment, PostError, CLEARING, PAYMENT_GROUP_PREFIX,
    REFUNDS, SALES, SUSPENSE, WALLET_LIKE,
};
pub use orders::{Order, OrderState, Orders, PaidWith};
pub use refunds::{RefundRow, RefundState, Refunds};
pub use users::{bidx_owner_key, BoundPhone, Phone, User, Users};
pub use verdict::{keeps_verdict, Decision, KeptVerdict, Refusal, Verdict};

/// The state the fold decides over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Users by id, with the phone index.
    pub users: Users,
    /// Orders and recharges by out_trade_no.
    pub orders: Orders,
    /// Refunds by out_refund_no.
    pub refunds: Refunds,
    /// Balances, payments, postings and the failure log.
    pub ledger: Ledger,
    /// The verdicts on the events that keep theirs ([`keeps_verdict`]) not taken yet, by
    /// sequence; the first verdict on a sequence stands.
    verdicts: BTreeMap<i64, KeptVerdict>,
}

/// The rows an event reads or writes; the projector loads them before folding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// Users by id.
    pub user_ids: BTreeSet<Uuid>,
    /// Users by phone key (see [`BoundPhone::owner_key`]).
    pub phones: BTreeSet<String>,
    /// Orders by out_trade_no.
    pub out_trade_nos: BTreeSet<String>,
    /// Payments by WeChat transaction id.
    pub transaction_ids: BTreeSet<String>,
    /// Refunds by out_refund_no.
    pub out_refund_nos: BTreeSet<String>,
    /// Balances by account. Loading is two-phase: once the orders are loaded, add their
    /// wallets with [`Keys::add_order`].
    pub accounts: BTreeSet<String>,
}

impl Keys {
    /// Adds the keys `event` touches.
    pub fn add(&mut self, event: &Event) {
        match event {
            Event::UserRegistered(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::UserLoggedIn(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::RegisteredSealed(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::LoggedInSealed(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::PhoneBound(e) => {
                self.user_ids.insert(e.user_id);
                self.phones
                    .insert(Phone::new(&e.country_code, &e.pure_phone_number).key());
            }
            Event::PhoneSealed(e) => {
                self.user_ids.insert(e.user_id);
                self.phones.insert(bidx_owner_key(&e.phone_bidx));
            }
            Event::ProfileUpdated(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::ProfileSealed(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::UserErased(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::OrderPlaced(e) => {
                self.out_trade_nos.insert(e.out_trade_no.clone());
                self.accounts.insert(wallet_account(e.user_id));
            }
            Event::PrepayIssued(e) => {
                self.out_trade_nos.insert(e.out_trade_no.clone());
            }
            Event::OrderClosed(e) => {
                self.out_trade_nos.insert(e.out_trade_no.clone());
            }
            Event::PaymentNotified(e) => self.add_transaction(&e.transaction),
            Event::PaymentQueried(e) => self.add_transaction(&e.transaction),
            Event::LegacyPaymentNotified(e) => self.add_transaction(&e.transaction),
            Event::LegacyPaymentQueried(e) => self.add_transaction(&e.transaction),
            Event::BalancePayRequested(e) => {
                self.out_trade_nos.insert(e.out_trade_no.clone());
                self.accounts.insert(wallet_account(e.user_id));
                self.accounts.insert(SALES.to_owned());
            }
            Event::RefundRequested(e) => self.add_refund(&e.out_refund_no, &e.out_trade_no),
            Event::RefundAccepted(e) => {
                self.add_refund(&e.refund.out_refund_no, &e.refund.out_trade_no)
            }
            Event::RefundRejected(e) => self.add_refund(&e.out_refund_no, &e.out_trade_no),
            Event::RefundNotified(e) => {
                self.add_refund(&e.refund.out_refund_no, &e.refund.out_trade_no)
            }
            Event::RefundQueried(e) => {
                self.add_refund(&e.refund.out_refund_no, &e.refund.out_trade_no)
            }
            // Touches only the failure log, which no decision reads back.
            Event::Quarantined(_) => {}
        }
    }

    /// Adds the wallet of a loaded order (the second loading phase).
    pub fn add_order(&mut self, order: &Order) {
        self.accounts.insert(wallet_account(order.user_id));
    }

    fn add_refund(&mut self, out_refund_no: &str, out_trade_no: &str) {
        self.out_refund_nos.insert(out_refund_no.to_owned());
        self.out_trade_nos.insert(out_trade_no.to_owned());
        for account in [CLEARING, SALES, SUSPENSE, REFUNDS] {
            self.accounts.insert(account.to_owned());
        }
    }

    fn add_transaction(&mut self, tx: &crate::core::events::Transaction) {
        self.out_trade_nos.insert(tx.out_trade_no.clone());
        if let Some(id) = &tx.transaction_id {
            self.transaction_ids.insert(id.clone());
        }
        for account in [CLEARING, SALES, SUSPENSE] {
            self.accounts.insert(account.to_owned());
        }
    }
}

impl State {
    /// Applies one recorded event and says what it decided; the verdict on an event that
    /// keeps its verdict ([`keeps_verdict`]) is also kept, for [`State::take_verdicts`].
    pub fn apply(&mut self, rec: &Recorded) -> Verdict {
        let seq = i64::try_from(rec.seq).expect("stream sequences fit in i64");
        let verdict = self.decide(seq, rec);
        if keeps_verdict(&rec.event) {
            self.verdicts.entry(seq).or_insert_with(|| KeptVerdict {
                seq,
                event: rec.event.kind(),
                verdict: verdict.clone(),
            });
        }
        verdict
    }

    /// The kept verdicts not taken yet, by sequence; they are forgotten here.
    pub fn take_verdicts(&mut self) -> Vec<KeptVerdict> {
        std::mem::take(&mut self.verdicts).into_values().collect()
    }

    fn decide(&mut self, seq: i64, rec: &Recorded) -> Verdict {
        match &rec.event {
            Event::UserRegistered(e) => self.users.registered(seq, rec.occurred_at, e),
            Event::UserLoggedIn(e) => self.users.logged_in(seq, rec.occurred_at, e),
            Event::RegisteredSealed(e) => self.users.registered_sealed(seq, rec.occurred_at, e),
            Event::LoggedInSealed(e) => self.users.logged_in_sealed(seq, rec.occurred_at, e),
            Event::PhoneBound(e) => self.users.phone_bound(seq, rec.occurred_at, e),
            Event::PhoneSealed(e) => self.users.phone_sealed(seq, rec.occurred_at, e),
            Event::ProfileUpdated(e) => self.users.profile_updated(seq, e),
            Event::ProfileSealed(e) => self.users.profile_sealed(seq, e),
            Event::UserErased(e) => self.users.erased(seq, rec.occurred_at, e),
            Event::OrderPlaced(e) => self.orders.placed(seq, rec.occurred_at, e),
            Event::PrepayIssued(e) => self.orders.prepay_issued(seq, e),
            Event::OrderClosed(e) => self.orders.closed(seq, rec.occurred_at, e),
            Event::PaymentNotified(e) => {
                let context = || json!({"source": "notify", "notify_id": e.notify_id});
                self.reported(seq, rec, PaySource::Notify, &context, &e.transaction)
            }
            Event::PaymentQueried(e) => {
                let context = || json!({"source": "query", "query_reason": e.reason});
                self.reported(seq, rec, PaySource::Query, &context, &e.transaction)
            }
            Event::LegacyPaymentNotified(e) => {
                let context = || json!({"source": "notify", "api": "v2"});
                self.reported(seq, rec, PaySource::Notify, &context, &e.transaction)
            }
            Event::LegacyPaymentQueried(e) => {
                let context = || json!({"source": "query", "api": "v2", "query_reason": e.reason});
                self.reported(seq, rec, PaySource::Query, &context, &e.transaction)
            }
            Event::BalancePayRequested(e) => {
                orders::balance_pay(&mut self.orders, &mut self.ledger, seq, rec.occurred_at, e)
            }
            Event::RefundRequested(e) => self.books(seq, rec).requested(e),
            Event::RefundAccepted(e) => self.books(seq, rec).reported(&e.refund, "answer"),
            Event::RefundRejected(e) => self.books(seq, rec).rejected(e),
            Event::RefundNotified(e) => self.books(seq, rec).reported(&e.refund, "notify"),
            Event::RefundQueried(e) => self.books(seq, rec).queried(e),
            Event::Quarantined(e) => {
                quarantine::quarantined(&mut self.ledger, seq, rec.occurred_at, e)
            }
        }
    }

    fn books(&mut self, seq: i64, rec: &Recorded) -> refunds::Books<'_> {
        refunds::Books {
            orders: &mut self.orders,
            refunds: &mut self.refunds,
            ledger: &mut self.ledger,
            seq,
            at: rec.occurred_at,
        }
    }

    /// WeChat's word on a transaction, by notify or by query: the same decision.
    fn reported(
        &mut self,
        seq: i64,
        rec: &Recorded,
        source: PaySource,
        context: &dyn Fn() -> serde_json::Value,
        transaction: &crate::core::events::Transaction,
    ) -> Verdict {
        let report = orders::Report { source, context };
        orders::reported(
            &mut self.orders,
            &mut self.ledger,
            seq,
            rec.occurred_at,
            &report,
            transaction,
        )
    }

    /// Applies events in order; the verdict on each, in the same order.
    pub fn apply_all<'a>(&mut self, recs: impl IntoIterator<Item = &'a Recorded>) -> Vec<Verdict> {
        recs.into_iter().map(|rec| self.apply(rec)).collect()
    }
}

#[cfg(test)]
mod order_tests;
#[cfg(test)]
pub(crate) mod pay_properties;
#[cfg(test)]
mod payment_tests;
#[cfg(test)]
mod refund_notify_tests;
#[cfg(test)]
mod refund_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transition_tests;
