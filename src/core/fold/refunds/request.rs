//! The refund decisions on a request: set the amount aside or refuse it, put it back when
//! WeChat rejects it, and apply a query answer (checking the claim of a v2 notify).

use serde_json::json;

use super::*;

impl Books<'_> {
    /// A request the fold refuses: recorded as a `refused` row with the code.
    fn refuse(&mut self, e: &RefundRequested, refusal: Refusal) -> Verdict {
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
            code: Some(refusal.as_str().to_owned()),
            message: None,
            requested_at: self.at,
            settled_at: Some(self.at),
            last_seq: self.seq,
        });
        Verdict::Refused(refusal)
    }

    /// An admin asks for a refund.
    pub(in crate::core::fold) fn requested(&mut self, e: &RefundRequested) -> Verdict {
        if let Some(row) = self.refunds.get(&e.out_refund_no) {
            let same =
                row.requested && row.out_trade_no == e.out_trade_no && row.amount == e.amount;
            return if same || self.seq <= row.last_seq {
                Verdict::AlreadyApplied
            } else {
                Verdict::Refused(Refusal::OutRefundNoTaken)
            };
        }
        let Some(order) = self.orders.get(&e.out_trade_no) else {
            return self.refuse(e, Refusal::UnknownOrder);
        };
        if self.seq <= order.last_seq {
            return Verdict::AlreadyApplied;
        }
        if e.amount <= 0 {
            return self.refuse(e, Refusal::InvalidAmount);
        }
        if !order.state.is_paid() {
            return self.refuse(e, Refusal::NotPaid);
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
            return self.refuse(e, Refusal::RefundExceedsPaid);
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
            Err(PostError::AlreadyApplied) => return Verdict::AlreadyApplied,
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
                let needed = e.amount;
                return self.refuse(e, Refusal::InsufficientBalance { balance, needed });
            }
            Err(PostError::Overflow(account)) => {
                let balance = self.ledger.balance(&account);
                let detail = json!({"out_refund_no": e.out_refund_no, "account": account,
                                    "balance": balance, "amount": e.amount});
                self.fail("ledger_overflow", &e.out_trade_no, Some(e.amount), detail);
                return self.refuse(e, Refusal::LedgerOverflow);
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
        let (out_refund_no, amount) = (e.out_refund_no.clone(), e.amount);
        Verdict::Applied(vec![if to_wallet {
            let balance = self.ledger.balance(&wallet);
            Decision::RefundedToWallet {
                out_refund_no,
                amount,
                balance,
            }
        } else {
            Decision::RefundReserved {
                out_refund_no,
                amount,
            }
        }])
    }

    /// WeChat's refund API refused the request: the amount goes back.
    pub(in crate::core::fold) fn rejected(&mut self, e: &RefundRejected) -> Verdict {
        let Some(row) = self.refunds.get(&e.out_refund_no) else {
            let detail = json!({"out_refund_no": e.out_refund_no, "source": "answer",
                                "code": e.code});
            return self.failed("unknown_refund", &e.out_trade_no, None, detail);
        };
        if self.seq <= row.last_seq || row.state == RefundState::Rejected {
            return Verdict::AlreadyApplied;
        }
        if row.out_trade_no != e.out_trade_no {
            let detail = json!({"out_refund_no": e.out_refund_no, "source": "answer",
                                "expected": {"out_trade_no": row.out_trade_no},
                                "got": {"out_trade_no": e.out_trade_no}});
            let out_trade_no = row.out_trade_no.clone();
            self.fail("refund_order_mismatch", &out_trade_no, None, detail);
            return Verdict::Refused(Refusal::RefundOrderMismatch);
        }
        if !row.state.can_move_to(RefundState::Rejected) {
            let detail = json!({"out_refund_no": e.out_refund_no, "source": "answer",
                                "expected": {"state": "requested"},
                                "got": {"state": row.state.as_str(), "rejected": e.code}});
            let out_trade_no = row.out_trade_no.clone();
            self.fail("refund_state_conflict", &out_trade_no, None, detail);
            return Verdict::Refused(Refusal::RefundStateConflict);
        }
        if let Err(outcome) = self.release(&e.out_refund_no) {
            return outcome;
        }
        let row = self.refunds.touch(&e.out_refund_no, self.seq);
        row.state = RefundState::Rejected;
        row.code = Some(e.code.clone());
        row.message = Some(e.message.clone());
        row.settled_at = Some(self.at);
        Verdict::applied()
    }

    /// WeChat's signed answer to a refund query. When an API v2 notify made us ask, the
    /// notify's claim is checked against the answer first: one the answer does not confirm
    /// is logged, and moves nothing; the answer applies either way, as any query answer.
    pub(in crate::core::fold) fn queried(&mut self, e: &RefundQueried) -> Verdict {
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
            Verdict::AlreadyApplied if logged => Verdict::Refused(Refusal::RefundNotifyUnconfirmed),
            outcome => outcome,
        }
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
