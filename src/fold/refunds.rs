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
use serde_json::json;

use super::ledger::{
    wallet_account, EntryKind, Failure, GroupId, Ledger, PostError, Posting, CLEARING, REFUNDS,
    SALES, SUSPENSE,
};
use super::orders::{OrderState, Orders, PaidWith};
use super::Outcome;
use crate::events::{OrderKind, Refund, RefundQueried, RefundRejected, RefundRequested};

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
    ) -> Outcome {
        if self.fail(reason, out_trade_no, amount, detail) {
            Outcome::Applied
        } else {
            Outcome::AlreadyApplied
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

    /// A request the fold refuses: recorded as a `refused` row with the code.
    fn refuse(&mut self, e: &RefundRequested, code: &'static str) -> Outcome {
        self.refunds.put(RefundRow {
            out_refund_no: e.out_refund_no.clone(),
            out_trade_no: e.out_trade_no.clone(),
            amount: e.amount,
            reason: e.reason.clone(),
            state: RefundState::Refused,
            requested: true,
            reserved_from: None,
            refund_id: None,
            wechat_status: None,
            code: Some(code.to_owned()),
            message: None,
            requested_at: self.at,
            settled_at: Some(self.at),
            last_seq: self.seq,
        });
        Outcome::Refused(code)
    }

    /// An admin asks for a refund.
    pub(super) fn requested(&mut self, e: &RefundRequested) -> Outcome {
        if let Some(row) = self.refunds.get(&e.out_refund_no) {
            let same =
                row.requested && row.out_trade_no == e.out_trade_no && row.amount == e.amount;
            return if same || self.seq <= row.last_seq {
                Outcome::AlreadyApplied
            } else {
                Outcome::Refused("out_refund_no_taken")
            };
        }
        let Some(order) = self.orders.get(&e.out_trade_no) else {
            return self.refuse(e, "unknown_order");
        };
        if self.seq <= order.last_seq {
            return Outcome::AlreadyApplied;
        }
        if e.amount <= 0 {
            return self.refuse(e, "invalid_amount");
        }
        if !order.state.is_paid() {
            return self.refuse(e, "not_paid");
        }
        if e.amount > order.refundable() {
            let detail = json!({"out_refund_no": e.out_refund_no, "paid": order.amount,
                                "refunded": order.refunded, "refunding": order.refunding,
                                "asked": e.amount});
            self.fail(
                "refund_exceeds_paid",
                &e.out_trade_no,
                Some(e.amount),
                detail,
            );
            return self.refuse(e, "refund_exceeds_paid");
        }
        let (user_id, kind, paid_with) = (order.user_id, order.kind, order.paid_with);
        let wallet = wallet_account(user_id);
        let source = match kind {
            OrderKind::Order => SALES.to_owned(),
            OrderKind::Recharge => wallet.clone(),
        };
        let to_wallet = paid_with == Some(PaidWith::Wallet);
        let (group, entry, to) = if to_wallet {
            (
                GroupId::RefundToWallet(e.out_refund_no.clone()),
                EntryKind::Refund,
                wallet.as_str(),
            )
        } else {
            (
                GroupId::RefundReserve(e.out_refund_no.clone()),
                EntryKind::RefundReserve,
                REFUNDS,
            )
        };
        let posting = self.posting(group, entry, &e.out_trade_no);
        match self.ledger.transfer(&posting, &source, to, e.amount) {
            Ok(()) => {}
            Err(PostError::AlreadyApplied) => return Outcome::AlreadyApplied,
            Err(PostError::Negative(account)) => {
                let balance = self.ledger.balance(&account);
                let detail = json!({"out_refund_no": e.out_refund_no, "account": account,
                                    "balance": balance, "needed": e.amount});
                self.fail(
                    "insufficient_balance",
                    &e.out_trade_no,
                    Some(e.amount),
                    detail,
                );
                return self.refuse(e, "insufficient_balance");
            }
            Err(PostError::Overflow(account)) => {
                let balance = self.ledger.balance(&account);
                let detail = json!({"out_refund_no": e.out_refund_no, "account": account,
                                    "balance": balance, "amount": e.amount});
                self.fail("ledger_overflow", &e.out_trade_no, Some(e.amount), detail);
                return self.refuse(e, "ledger_overflow");
            }
        }
        let order = self
            .orders
            .fresh_mut(&e.out_trade_no, self.seq)
            .expect("checked fresh above");
        let state = if to_wallet {
            order.refunded += e.amount;
            order.state = refunded_state(order.amount, order.refunded);
            RefundState::Succeeded
        } else {
            order.refunding += e.amount;
            RefundState::Requested
        };
        self.refunds.put(RefundRow {
            out_refund_no: e.out_refund_no.clone(),
            out_trade_no: e.out_trade_no.clone(),
            amount: e.amount,
            reason: e.reason.clone(),
            state,
            requested: true,
            reserved_from: (!to_wallet).then_some(source),
            refund_id: None,
            wechat_status: None,
            code: None,
            message: None,
            requested_at: self.at,
            settled_at: to_wallet.then_some(self.at),
            last_seq: self.seq,
        });
        Outcome::Applied
    }

    /// WeChat's refund API refused the request: the amount goes back.
    pub(super) fn rejected(&mut self, e: &RefundRejected) -> Outcome {
        let Some(row) = self.refunds.get(&e.out_refund_no) else {
            let detail = json!({"out_refund_no": e.out_refund_no, "source": "answer",
                                "code": e.code});
            return self.failed("unknown_refund", &e.out_trade_no, None, detail);
        };
        if self.seq <= row.last_seq || row.state == RefundState::Rejected {
            return Outcome::AlreadyApplied;
        }
        if row.out_trade_no != e.out_trade_no {
            let detail = json!({"out_refund_no": e.out_refund_no, "source": "answer",
                                "expected": {"out_trade_no": row.out_trade_no},
                                "got": {"out_trade_no": e.out_trade_no}});
            let out_trade_no = row.out_trade_no.clone();
            self.fail("refund_order_mismatch", &out_trade_no, None, detail);
            return Outcome::Refused("refund_order_mismatch");
        }
        if !row.state.can_move_to(RefundState::Rejected) {
            let detail = json!({"out_refund_no": e.out_refund_no, "source": "answer",
                                "expected": {"state": "requested"},
                                "got": {"state": row.state.as_str(), "rejected": e.code}});
            let out_trade_no = row.out_trade_no.clone();
            self.fail("refund_state_conflict", &out_trade_no, None, detail);
            return Outcome::Refused("refund_state_conflict");
        }
        if let Err(outcome) = self.release(&e.out_refund_no) {
            return outcome;
        }
        let row = self.refunds.touch(&e.out_refund_no, self.seq);
        row.state = RefundState::Rejected;
        row.code = Some(e.code.clone());
        row.message = Some(e.message.clone());
        row.settled_at = Some(self.at);
        Outcome::Applied
    }

    /// WeChat's signed answer to a refund query. When an API v2 notify made us ask, the
    /// notify's claim is checked against the answer first: one the answer does not confirm
    /// is logged, and moves nothing; the answer applies either way, as any query answer.
    pub(super) fn queried(&mut self, e: &RefundQueried) -> Outcome {
        let logged = match &e.notify {
            Some(claim) => match unconfirmed(&claim.refund, &e.refund) {
                Some(detail) => {
                    let amount = claim.refund.amount.as_ref().and_then(|a| a.refund);
                    let no = e.refund.out_trade_no.clone();
                    self.fail("refund_notify_unconfirmed", &no, amount, detail)
                }
                None => false,
            },
            None => false,
        };
        match self.reported(&e.refund, "query") {
            Outcome::AlreadyApplied if logged => Outcome::Refused("refund_notify_unconfirmed"),
            outcome => outcome,
        }
    }

    /// WeChat's word on a refund: its refund API's answer, a notify or a query answer.
    pub(super) fn reported(&mut self, refund: &Refund, source: &str) -> Outcome {
        let no = refund.out_refund_no.as_str();
        let reported_amount = refund.amount.as_ref().and_then(|a| a.refund);
        let context = json!({"out_refund_no": no, "source": source, "status": refund.status});
        let Some(state) = RefundState::from_wechat(&refund.status) else {
            let out_trade_no = refund.out_trade_no.clone();
            return self.failed(
                "unknown_refund_status",
                &out_trade_no,
                reported_amount,
                context,
            );
        };
        let Some(row) = self.refunds.get(no) else {
            return self.external(refund, state, context);
        };
        if self.seq <= row.last_seq {
            return Outcome::AlreadyApplied;
        }
        if row.out_trade_no != refund.out_trade_no {
            let mut detail = context;
            detail["expected"] = json!({"out_trade_no": row.out_trade_no});
            detail["got"] = json!({"out_trade_no": refund.out_trade_no});
            let out_trade_no = row.out_trade_no.clone();
            self.fail(
                "refund_order_mismatch",
                &out_trade_no,
                reported_amount,
                detail,
            );
            return Outcome::Refused("refund_order_mismatch");
        }
        if row.state == state {
            return Outcome::AlreadyApplied;
        }
        if !row.state.can_move_to(state) {
            let mut detail = context;
            detail["expected"] = json!({"state": row.state.as_str()});
            detail["got"] = json!({"status": refund.status});
            let out_trade_no = row.out_trade_no.clone();
            self.fail(
                "refund_state_conflict",
                &out_trade_no,
                reported_amount,
                detail,
            );
            return Outcome::Refused("refund_state_conflict");
        }
        match state {
            RefundState::Succeeded => {
                if let Err(outcome) = self.settle(row.clone(), reported_amount, context) {
                    return outcome;
                }
            }
            RefundState::Closed => {
                if let Err(outcome) = self.release(no) {
                    return outcome;
                }
            }
            RefundState::Abnormal => {
                let (out_trade_no, amount) = (row.out_trade_no.clone(), row.amount);
                self.fail("refund_abnormal", &out_trade_no, Some(amount), context);
            }
            _ => {}
        }
        let row = self.refunds.touch(no, self.seq);
        row.state = state;
        row.wechat_status = Some(refund.status.clone());
        if refund.refund_id.is_some() {
            row.refund_id.clone_from(&refund.refund_id);
        }
        if state.is_final() {
            row.settled_at = Some(self.at);
        }
        Outcome::Applied
    }

    /// SUCCESS: the amount set aside goes out through WeChat. A reported amount other than
    /// the one asked is booked as reported, the difference to suspense.
    fn settle(
        &mut self,
        row: RefundRow,
        reported: Option<i64>,
        context: serde_json::Value,
    ) -> Result<(), Outcome> {
        let paid_out = reported.unwrap_or(row.amount);
        if row.reserved_from.is_none() && paid_out > 0 {
            // A refund nobody asked for, reported in flight before: out of suspense.
            let group = GroupId::RefundSettle(row.out_refund_no.clone());
            let posting = self.posting(group, EntryKind::Refund, &row.out_trade_no);
            self.post(
                &posting,
                &[(SUSPENSE, -paid_out), (CLEARING, paid_out)],
                &row.out_trade_no,
            )?;
            self.refunds.touch(&row.out_refund_no, self.seq).amount = paid_out;
            return Ok(());
        }
        if paid_out <= 0 {
            let mut detail = context;
            detail["expected"] = json!({"amount.refund": "positive"});
            detail["got"] = json!({"amount.refund": reported});
            self.fail("malformed_refund", &row.out_trade_no, reported, detail);
            return Err(Outcome::Refused("malformed_refund"));
        }
        let difference = paid_out - row.amount;
        let mut lines = vec![(REFUNDS, -row.amount), (CLEARING, paid_out)];
        if difference != 0 {
            lines.push((SUSPENSE, -difference));
        }
        let group = GroupId::RefundSettle(row.out_refund_no.clone());
        let posting = self.posting(group, EntryKind::Refund, &row.out_trade_no);
        self.post(&posting, &lines, &row.out_trade_no)?;
        if difference != 0 {
            let mut detail = context;
            detail["expected"] = json!(row.amount);
            detail["got"] = json!(paid_out);
            self.fail(
                "refund_amount_mismatch",
                &row.out_trade_no,
                Some(paid_out),
                detail,
            );
        }
        let order = self.orders.fresh_mut(&row.out_trade_no, self.seq)?;
        order.refunding -= row.amount;
        order.refunded += row.amount;
        order.state = refunded_state(order.amount, order.refunded);
        Ok(())
    }

    /// CLOSED or rejected: the amount set aside goes back where it came from.
    fn release(&mut self, out_refund_no: &str) -> Result<(), Outcome> {
        let row = self
            .refunds
            .get(out_refund_no)
            .expect("released refunds exist")
            .clone();
        let Some(from) = row.reserved_from.as_deref() else {
            return Ok(());
        };
        let group = GroupId::RefundRelease(out_refund_no.to_owned());
        let posting = self.posting(group, EntryKind::RefundRelease, &row.out_trade_no);
        self.post(
            &posting,
            &[(REFUNDS, -row.amount), (from, row.amount)],
            &row.out_trade_no,
        )?;
        let order = self.orders.fresh_mut(&row.out_trade_no, self.seq)?;
        order.refunding -= row.amount;
        Ok(())
    }

    fn post(
        &mut self,
        posting: &Posting<'_>,
        lines: &[(&str, i64)],
        out_trade_no: &str,
    ) -> Result<(), Outcome> {
        match self.ledger.post(posting, lines) {
            Ok(()) => Ok(()),
            Err(PostError::AlreadyApplied) => Err(Outcome::AlreadyApplied),
            Err(PostError::Negative(account) | PostError::Overflow(account)) => {
                let balance = self.ledger.balance(&account);
                let detail = json!({"group": posting.group_id.to_string(), "account": account,
                                    "balance": balance});
                self.fail("ledger_overflow", out_trade_no, None, detail);
                Err(Outcome::Refused("ledger_overflow"))
            }
        }
    }

    /// A refund WeChat reports that wxledger never requested (made on the merchant
    /// platform, or not ours): recorded, and if it paid out, booked against suspense.
    fn external(
        &mut self,
        refund: &Refund,
        state: RefundState,
        context: serde_json::Value,
    ) -> Outcome {
        let amount = refund.amount.as_ref().and_then(|a| a.refund).unwrap_or(0);
        let out_trade_no = refund.out_trade_no.as_str();
        self.fail(
            "unknown_refund",
            out_trade_no,
            Some(amount),
            context.clone(),
        );
        if let Some(order) = self.orders.get(out_trade_no) {
            if amount > order.refundable() {
                let mut detail = context.clone();
                detail["paid"] = json!(order.amount);
                detail["refunded"] = json!(order.refunded);
                detail["refunding"] = json!(order.refunding);
                self.fail("refund_exceeds_paid", out_trade_no, Some(amount), detail);
            }
        }
        if state == RefundState::Succeeded && amount > 0 {
            let group = GroupId::RefundSettle(refund.out_refund_no.clone());
            let posting = self.posting(group, EntryKind::Refund, out_trade_no);
            if let Err(outcome) = self.post(
                &posting,
                &[(SUSPENSE, -amount), (CLEARING, amount)],
                out_trade_no,
            ) {
                return outcome;
            }
        }
        self.refunds.put(RefundRow {
            out_refund_no: refund.out_refund_no.clone(),
            out_trade_no: out_trade_no.to_owned(),
            amount,
            reason: String::new(),
            state,
            requested: false,
            reserved_from: None,
            refund_id: refund.refund_id.clone(),
            wechat_status: Some(refund.status.clone()),
            code: None,
            message: None,
            requested_at: self.at,
            settled_at: state.is_final().then_some(self.at),
            last_seq: self.seq,
        });
        Outcome::Applied
    }
}

/// What a refund notify's `claim` says that WeChat's signed `answer` does not: its refund,
/// order, status, WeChat refund id and amount must all be the answer's. `None` when the
/// answer confirms the claim; otherwise the failure's detail.
fn unconfirmed(claim: &Refund, answer: &Refund) -> Option<serde_json::Value> {
    let amount = |r: &Refund| r.amount.as_ref().and_then(|a| a.refund);
    // A field the claim leaves out contradicts nothing.
    fn agrees<T: PartialEq>(claimed: &Option<T>, answered: &Option<T>) -> bool {
        claimed.is_none() || claimed == answered
    }
    let confirmed = claim.out_refund_no == answer.out_refund_no
        && claim.out_trade_no == answer.out_trade_no
        && claim.status == answer.status
        && agrees(&claim.refund_id, &answer.refund_id)
        && agrees(&amount(claim), &amount(answer));
    let word = |r: &Refund| {
        json!({"out_refund_no": r.out_refund_no, "out_trade_no": r.out_trade_no,
               "status": r.status, "refund_id": r.refund_id, "refund": amount(r)})
    };
    (!confirmed).then(|| {
        json!({"out_refund_no": claim.out_refund_no, "source": "notify",
               "expected": word(answer), "got": word(claim)})
    })
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
