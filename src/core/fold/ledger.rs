//! The double-entry ledger: account balances, posting groups that sum to zero, the
//! payments booked (one per WeChat transaction id) and the failure log.
//!
//! Sign convention: a credit is positive, a debit negative. `wechat_clearing` is what
//! WeChat holds for us (it goes negative as payments arrive), `sales` what we sold,
//! `suspense` money received that nobody could be credited with (a human must look),
//! and `wallet:<user id>` what we owe a user (never below zero).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

mod ids;

pub use ids::{
    is_wallet, wallet_account, Account, GroupId, ParseIdError, CLEARING, PAYMENT_GROUP_PREFIX,
    REFUNDS, SALES, SUSPENSE, WALLET_LIKE, WALLET_PREFIX,
};

/// Why a posting group was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A paid recharge credited to a wallet.
    Recharge,
    /// A paid order booked as a sale.
    Sale,
    /// Money received that went to `suspense`.
    Suspense,
    /// An order paid from the payer's wallet.
    WalletPayment,
    /// A refund requested: its amount set aside in `refunds_pending`.
    RefundReserve,
    /// A refund WeChat paid out (or, for a wallet payment, returned to the wallet).
    Refund,
    /// A refund WeChat refused or closed: the amount set aside goes back.
    RefundRelease,
}

impl EntryKind {
    /// The name stored in `ledger_entries.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Recharge => "recharge",
            EntryKind::Sale => "sale",
            EntryKind::Suspense => "suspense",
            EntryKind::WalletPayment => "wallet_payment",
            EntryKind::RefundReserve => "refund_reserve",
            EntryKind::Refund => "refund",
            EntryKind::RefundRelease => "refund_release",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "recharge" => EntryKind::Recharge,
            "sale" => EntryKind::Sale,
            "suspense" => EntryKind::Suspense,
            "wallet_payment" => EntryKind::WalletPayment,
            "refund_reserve" => EntryKind::RefundReserve,
            "refund" => EntryKind::Refund,
            "refund_release" => EntryKind::RefundRelease,
            _ => return None,
        })
    }
}

/// One posting: a line of a group. Insert-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The event that made it.
    pub seq: i64,
    /// The group's id as stored, e.g. `payment:<transaction id>` (a [`GroupId`]); its
    /// lines sum to zero.
    pub group_id: String,
    /// Line number within the group, from 0.
    pub line: i32,
    /// The account posted to, as stored (an [`Account`]).
    pub account: String,
    /// Signed amount in fen: credit positive, debit negative.
    pub amount: i64,
    /// Why.
    pub kind: EntryKind,
    /// The order concerned.
    pub out_trade_no: String,
    /// WeChat's transaction, when money moved at WeChat.
    pub transaction_id: Option<String>,
    /// When the event was accepted.
    pub occurred_at: DateTime<Utc>,
}

/// An account's balance: the sum of its postings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// The account.
    pub account: String,
    /// Sum of its postings, in fen.
    pub balance: i64,
    /// Sequence of the newest event that posted to it.
    pub last_seq: i64,
}

/// How a received payment was booked.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum BookedAs {
    /// Credited to sales.
    Sale,
    /// Credited to the payer's wallet.
    Recharge,
    /// Received into suspense (see the failure log).
    Suspense,
    /// Not credited anywhere (merchant mismatch, ...): see the failure log.
    NotCredited,
}

impl BookedAs {
    /// The name stored in `payments.booked_as`.
    pub fn as_str(self) -> &'static str {
        match self {
            BookedAs::Sale => "sale",
            BookedAs::Recharge => "recharge",
            BookedAs::Suspense => "suspense",
            BookedAs::NotCredited => "not_credited",
        }
    }

    /// The value named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sale" => BookedAs::Sale,
            "recharge" => BookedAs::Recharge,
            "suspense" => BookedAs::Suspense,
            "not_credited" => BookedAs::NotCredited,
            _ => return None,
        })
    }
}

/// Where WeChat's word on a transaction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PaySource {
    /// A verified payment notify.
    Notify,
    /// A signed answer to our query.
    Query,
}

impl PaySource {
    /// The name stored in `payments.source` and in failure details.
    pub fn as_str(self) -> &'static str {
        match self {
            PaySource::Notify => "notify",
            PaySource::Query => "query",
        }
    }

    /// The value named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "notify" => PaySource::Notify,
            "query" => PaySource::Query,
            _ => return None,
        })
    }
}

/// A WeChat transaction booked once, however often it is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// WeChat's transaction id (the key).
    pub transaction_id: String,
    /// The order WeChat named.
    pub out_trade_no: String,
    /// `amount.total`, in fen.
    pub amount: i64,
    /// The event that booked it.
    pub seq: i64,
    /// How it was booked.
    pub booked_as: BookedAs,
    /// Whether a notify or a query reported it first.
    pub source: PaySource,
    /// When that event was accepted.
    pub occurred_at: DateTime<Utc>,
}

/// Something the fold could not do as asked: a row for a human. The event stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The event.
    pub seq: i64,
    /// Stable snake_case code, e.g. `amount_mismatch`.
    pub reason: String,
    /// The order concerned, when known.
    pub out_trade_no: Option<String>,
    /// WeChat's transaction, when known.
    pub transaction_id: Option<String>,
    /// The money concerned, in fen.
    pub amount: Option<i64>,
    /// Context: expected and got, the source (`notify`/`query`), ...
    pub detail: serde_json::Value,
    /// When the event was accepted.
    pub occurred_at: DateTime<Utc>,
}

/// Why a posting group was not applied. Nothing was posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// An account already has this event's (or a newer) posting.
    AlreadyApplied,
    /// The account's balance would leave the range of `i64`.
    Overflow(String),
    /// The wallet would go below zero.
    Negative(String),
}

/// What a posting group is about; its lines get these fields.
#[derive(Debug, Clone)]
pub(super) struct Posting<'a> {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub group_id: GroupId,
    pub kind: EntryKind,
    pub out_trade_no: &'a str,
    pub transaction_id: Option<&'a str>,
}

/// Balances, payments, postings and failures, with what changed since last taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    balances: BTreeMap<String, Balance>,
    changed_balances: BTreeSet<String>,
    payments: BTreeMap<String, Payment>,
    new_payments: BTreeSet<String>,
    entries: Vec<LedgerEntry>,
    entries_taken: usize,
    failures: BTreeMap<(i64, String), Failure>,
    new_failures: BTreeSet<(i64, String)>,
}

impl Ledger {
    /// Adds a balance loaded from storage (not marked changed).
    pub fn load_balance(&mut self, balance: Balance) {
        self.balances.insert(balance.account.clone(), balance);
    }

    /// Adds a payment loaded from storage (not marked new).
    pub fn load_payment(&mut self, payment: Payment) {
        self.payments
            .insert(payment.transaction_id.clone(), payment);
    }

    /// The balance of `account` (0 when it never had a posting).
    pub fn balance(&self, account: &str) -> i64 {
        self.balances.get(account).map_or(0, |b| b.balance)
    }

    /// Every balance row held, by account.
    pub fn balances(&self) -> impl Iterator<Item = &Balance> {
        self.balances.values()
    }

    /// The payment booked for `transaction_id`.
    pub fn payment(&self, transaction_id: &str) -> Option<&Payment> {
        self.payments.get(transaction_id)
    }

    /// Every payment held, by transaction id.
    pub fn payments(&self) -> impl Iterator<Item = &Payment> {
        self.payments.values()
    }

    /// Every posting made by this state, in order.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// Every failure recorded by this state, by (seq, reason).
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.failures.values()
    }

    /// The balances changed since the last call.
    pub fn take_changed_balances(&mut self) -> Vec<Balance> {
        std::mem::take(&mut self.changed_balances)
            .into_iter()
            .filter_map(|a| self.balances.get(&a).cloned())
            .collect()
    }

    /// The payments booked since the last call.
    pub fn take_new_payments(&mut self) -> Vec<Payment> {
        std::mem::take(&mut self.new_payments)
            .into_iter()
            .filter_map(|t| self.payments.get(&t).cloned())
            .collect()
    }

    /// The postings made since the last call.
    pub fn take_new_entries(&mut self) -> Vec<LedgerEntry> {
        let new = self.entries[self.entries_taken..].to_vec();
        self.entries_taken = self.entries.len();
        new
    }

    /// Moves out every posting made so far, for a bulk load that writes them as the fold
    /// goes. The fold never reads its postings back, so no decision changes.
    pub fn drain_entries(&mut self) -> Vec<LedgerEntry> {
        self.entries_taken = 0;
        std::mem::take(&mut self.entries)
    }

    /// The failures recorded since the last call.
    pub fn take_new_failures(&mut self) -> Vec<Failure> {
        std::mem::take(&mut self.new_failures)
            .into_iter()
            .filter_map(|k| self.failures.get(&k).cloned())
            .collect()
    }

    /// Drops the failures already taken. No decision reads them again (a failure is
    /// deduplicated within its own event only), so a long in-memory fold that writes
    /// nowhere, like the audit's pass over the stream, stays flat in memory (with
    /// [`Ledger::drain_entries`] for the postings).
    pub fn forget_taken_failures(&mut self) {
        let new = &self.new_failures;
        self.failures.retain(|key, _| new.contains(key));
    }

    /// Moves `amount` (positive) from `from` (debited) to `to` (credited) as one group of
    /// two lines, or posts nothing.
    pub(super) fn transfer(
        &mut self,
        posting: &Posting<'_>,
        from: &str,
        to: &str,
        amount: i64,
    ) -> Result<(), PostError> {
        debug_assert!(
            amount > 0 && from != to,
            "a transfer moves money between two accounts"
        );
        self.post(posting, &[(from, -amount), (to, amount)])
    }

    /// Posts one group: `lines` (account, signed amount) on distinct accounts summing to
    /// zero, all or nothing.
    pub(super) fn post(
        &mut self,
        posting: &Posting<'_>,
        lines: &[(&str, i64)],
    ) -> Result<(), PostError> {
        debug_assert!(
            lines.iter().map(|(_, a)| i128::from(*a)).sum::<i128>() == 0,
            "a group sums to zero"
        );
        debug_assert!(
            lines
                .iter()
                .enumerate()
                .all(|(i, (a, _))| lines[..i].iter().all(|(b, _)| a != b)),
            "a group posts once per account"
        );
        let mut after = Vec::with_capacity(lines.len());
        for (account, delta) in lines {
            let row = self.balances.get(*account);
            if row.is_some_and(|b| b.last_seq >= posting.seq) {
                return Err(PostError::AlreadyApplied);
            }
            let new = row
                .map_or(0, |b| b.balance)
                .checked_add(*delta)
                .ok_or_else(|| PostError::Overflow((*account).to_owned()))?;
            if is_wallet(account) && new < 0 {
                return Err(PostError::Negative((*account).to_owned()));
            }
            after.push(new);
        }
        let group_id = posting.group_id.to_string();
        for (line, ((account, delta), balance)) in lines.iter().zip(after).enumerate() {
            // Most postings go to an account already held and changed: no new key then.
            match self.balances.get_mut(*account) {
                Some(row) => {
                    row.balance = balance;
                    row.last_seq = posting.seq;
                }
                None => {
                    self.balances.insert(
                        (*account).to_owned(),
                        Balance {
                            account: (*account).to_owned(),
                            balance,
                            last_seq: posting.seq,
                        },
                    );
                }
            }
            if !self.changed_balances.contains(*account) {
                self.changed_balances.insert((*account).to_owned());
            }
            self.entries.push(LedgerEntry {
                seq: posting.seq,
                group_id: group_id.clone(),
                line: i32::try_from(line).expect("a group has a few lines"),
                account: (*account).to_owned(),
                amount: *delta,
                kind: posting.kind,
                out_trade_no: posting.out_trade_no.to_owned(),
                transaction_id: posting.transaction_id.map(str::to_owned),
                occurred_at: posting.at,
            });
        }
        Ok(())
    }

    /// Books a payment; false when its transaction id was booked already.
    pub(super) fn record_payment(&mut self, payment: Payment) -> bool {
        if self.payments.contains_key(&payment.transaction_id) {
            return false;
        }
        self.new_payments.insert(payment.transaction_id.clone());
        self.payments
            .insert(payment.transaction_id.clone(), payment);
        true
    }

    /// Records a failure; false when this event recorded this reason already.
    pub(super) fn record_failure(&mut self, failure: Failure) -> bool {
        let key = (failure.seq, failure.reason.clone());
        if self.failures.contains_key(&key) {
            return false;
        }
        self.new_failures.insert(key.clone());
        self.failures.insert(key, failure);
        true
    }
}
