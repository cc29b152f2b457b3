//! Refunds: requested by an admin, answered by WeChat's refund API, settled by WeChat's
//! word (a verified notify or a signed query answer, handled alike).
//!
//! A request sets its amount aside at once (`sales` or the wallet → `refunds_pending`), so
//! that refunds in flight count against what may still be refunded and a recharge's
//! refund cannot be spent from the wallet meanwhile. SUCCESS pays it out to WeChat
//! (`refunds_pending` → `wechat_clearing`); CLOSED or a rejection puts it back. An order
//! paid from the wallet is refunded to the wallet at once, without WeChat.
//!
//! An API v2 refund notify is only a claim (its `req_info` is encrypted, not signed): it
//! comes with the signed query answer it made us ask for, and only the answer applies; a
//! claim the answer does not confirm is logged (`refund_notify_unconfirmed`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::ledger::{
    wallet_account, EntryKind, Failure, GroupId, Ledger, PostError, Posting, CLEARING, REFUNDS,
    SALES, SUSPENSE,
};
use super::orders::{OrderState, Orders, PaidWith};
use super::{Decision, Refusal, Verdict};
use crate::core::events::{OrderKind, Refund, RefundQueried, RefundRejected, RefundRequested};

mod request;
mod settle;

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefundState {
    /// Accepted by the fold, amount set aside; WeChat not yet answered.
    Requested,
    /// WeChat accepted it and is paying it out.
    Processing,
    /// WeChat could not pay it out (e.g. the payer's card is closed); not final: WeChat
    /// or the merchant platform settles it later, as SUCCESS or CLOSED.
    Abnormal,
    /// Paid back. Final.
    Succeeded,
    /// Closed by WeChat; the amount set aside went back. Final.
    Closed,
    /// WeChat's refund API refused it; the amount set aside went back. Final.
    Rejected,
    /// The fold refused the request (see `code`); nothing was set aside. Final.
    Refused,
}

impl RefundState {
    /// The name stored in `refunds.state` and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "requested",
            RefundState::Processing => "processing",
            RefundState::Abnormal => "abnormal",
            RefundState::Succeeded => "succeeded",
            RefundState::Closed => "closed",
            RefundState::Rejected => "rejected",
            RefundState::Refused => "refused",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => RefundState::Requested,
            "processing" => RefundState::Processing,
            "abnormal" => RefundState::Abnormal,
            "succeeded" => RefundState::Succeeded,
            "closed" => RefundState::Closed,
            "rejected" => RefundState::Rejected,
            "refused" => RefundState::Refused,
            _ => return None,
        })
    }

    /// No later word changes it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RefundState::Succeeded
                | RefundState::Closed
                | RefundState::Rejected
                | RefundState::Refused
        )
    }

    /// Whether the fold may move a refund from this state to `next`: the refund rules,
    /// written once. Only a request WeChat has not answered can be rejected by its refund
    /// API; WeChat's word (processing, abnormal, success, closed) moves any refund that is
    /// not final. Requested and refused are where a refund starts, never where it moves.
    pub fn can_move_to(self, next: RefundState) -> bool {
        use RefundState::*;
        match (self, next) {
            (Requested, Rejected) => true,
            (from, Processing | Abnormal | Succeeded | Closed) => !from.is_final() && from != next,
            _ => false,
        }
    }

    /// The state WeChat's refund `status` names, if it is one.
    fn from_wechat(status: &str) -> Option<Self> {
        Some(match status {
            "PROCESSING" => RefundState::Processing,
            "ABNORMAL" => RefundState::Abnormal,
            "SUCCESS" => RefundState::Succeeded,
            "CLOSED" => RefundState::Closed,
            _ => return None,
        })
    }
}

/// One row of the `refunds` projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    /// Our refund number (the key).
    pub out_refund_no: String,
    /// The order refunded.
    pub out_trade_no: String,
    /// Fen: asked for, or, for a refund nobody asked for, what WeChat reported.
    pub amount: i64,
    /// Why (shown to the payer).
    pub reason: String,
    /// Where it stands.
    pub state: RefundState,
    /// False for a refund WeChat reported that wxledger never requested.
    pub requested: bool,
    /// The account the amount was set aside from (`sales` or a wallet) and goes back to
    /// if the refund fails; `None` when nothing was set aside.
    pub reserved_from: Option<String>,
    /// WeChat's refund id.
    pub refund_id: Option<String>,
    /// WeChat's latest status word (SUCCESS, PROCESSING, ...).
    pub wechat_status: Option<String>,
    /// Why it was refused or rejected: our code or WeChat's.
    pub code: Option<String>,
    /// WeChat's message for a rejection.
    pub message: Option<String>,
    /// When the request (or the first report) was accepted.
    pub requested_at: DateTime<Utc>,
    /// When it became final.
    pub settled_at: Option<DateTime<Utc>>,
    /// Sequence of the newest event applied to this row.
    pub last_seq: i64,
}

/// Refunds by out_refund_no, with the rows changed since last taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refunds {
    by_no: BTreeMap<String, RefundRow>,
    dirty: BTreeSet<String>,
}

impl Refunds {
    /// Adds a row loaded from storage (not marked changed).
    pub fn load(&mut self, row: RefundRow) {
        self.by_no.insert(row.out_refund_no.clone(), row);
    }

    /// The refund numbered `out_refund_no`.
    pub fn get(&self, out_refund_no: &str) -> Option<&RefundRow> {
        self.by_no.get(out_refund_no)
    }

    /// Every refund held, by out_refund_no.
    pub fn iter(&self) -> impl Iterator<Item = &RefundRow> {
        self.by_no.values()
    }

    /// The rows changed since the last call, which are forgotten as changed.
    pub fn take_changed(&mut self) -> Vec<RefundRow> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|no| self.by_no.get(&no).cloned())
            .collect()
    }

    fn put(&mut self, row: RefundRow) {
        self.dirty.insert(row.out_refund_no.clone());
        self.by_no.insert(row.out_refund_no.clone(), row);
    }

    fn touch(&mut self, out_refund_no: &str, seq: i64) -> &mut RefundRow {
        self.dirty.insert(out_refund_no.to_owned());
        let row = self
            .by_no
            .get_mut(out_refund_no)
            .expect("only refunds just found are touched");
        row.last_seq = seq;
        row
    }
}

/// The part of the state the refund rules change.
pub(super) struct Books<'a> {
    pub orders: &'a mut Orders,
    pub refunds: &'a mut Refunds,
    pub ledger: &'a mut Ledger,
    pub seq: i64,
    pub at: DateTime<Utc>,
}

impl Books<'_> {
    /// Records a failure row; false when this event recorded this reason already. (The
    /// order's transaction id is not looked up: the order a refund row names may not be
    /// loaded, and the row must not depend on what a batch happened to load.)
    fn fail(
        &mut self,
        reason: &str,
        out_trade_no: &str,
        amount: Option<i64>,
        detail: serde_json::Value,
    ) -> bool {
        self.ledger.record_failure(Failure {
            seq: self.seq,
            reason: reason.to_owned(),
            out_trade_no: Some(out_trade_no.to_owned()),
            transaction_id: None,
            amount,
            detail,
            occurred_at: self.at,
        })
    }

    fn failed(
        &mut self,
        reason: &str,
        out_trade_no: &str,
        amount: Option<i64>,
        detail: serde_json::Value,
    ) -> Verdict {
        if self.fail(reason, out_trade_no, amount, detail) {
            Verdict::applied()
        } else {
            Verdict::AlreadyApplied
        }
    }

    fn posting<'n>(
        &self,
        group_id: GroupId,
        kind: EntryKind,
        out_trade_no: &'n str,
    ) -> Posting<'n> {
        Posting {
            seq: self.seq,
            at: self.at,
            group_id,
            kind,
            out_trade_no,
            transaction_id: None,
        }
    }
}

/// The state of a paid order once `refunded` of its `amount` went back.
fn refunded_state(amount: i64, refunded: i64) -> OrderState {
    if refunded >= amount {
        OrderState::Refunded
    } else if refunded > 0 {
        OrderState::PartiallyRefunded
    } else {
        OrderState::Paid
    }
}
