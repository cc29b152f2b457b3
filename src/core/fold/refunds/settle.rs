//! The refund decisions on WeChat's word: pay a refund out, put its amount back, or book
//! a refund we never asked for.

use serde_json::json;

use super::*;

impl Books<'_> {
    /// WeChat's word on a refund: its refund API's answer, a notify or a query answer.
    pub(in crate::core::fold) fn reported(&mut self, refund: &Refund, source: &str) -> Verdict {
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
            return Verdict::AlreadyApplied;
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
            return Verdict::Refused(Refusal::RefundOrderMismatch);
        }
        if row.state == state {
            return Verdict::AlreadyApplied;
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
            return Verdict::Refused(Refusal::RefundStateConflict);
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
        Verdict::applied()
    }

    /// SUCCESS: the amount set aside goes out through WeChat. A reported amount other than
    /// the one asked is booked as reported, the difference to suspense.
    pub(super) fn settle(
        &mut self,
        row: RefundRow,
        reported: Option<i64>,
        context: serde_json::Value,
    ) -> Result<(), Verdict> {
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
            return Err(Verdict::Refused(Refusal::MalformedRefund));
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
    pub(super) fn release(&mut self, out_refund_no: &str) -> Result<(), Verdict> {
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

    pub(super) fn post(
        &mut self,
        posting: &Posting<'_>,
        lines: &[(&str, i64)],
        out_trade_no: &str,
    ) -> Result<(), Verdict> {
        match self.ledger.post(posting, lines) {
            Ok(()) => Ok(()),
            Err(PostError::AlreadyApplied) => Err(Verdict::AlreadyApplied),
            Err(PostError::Negative(account) | PostError::Overflow(account)) => {
                let balance = self.ledger.balance(&account);
                let detail = json!({"group": posting.group_id.to_string(), "account": account,
                                    "balance": balance});
                self.fail("ledger_overflow", out_trade_no, None, detail);
                Err(Verdict::Refused(Refusal::LedgerOverflow))
            }
        }
    }

    /// A refund WeChat reports that wxledger never requested (made on the merchant
    /// platform, or not ours): recorded, and if it paid out, booked against suspense.
    pub(super) fn external(
        &mut self,
        refund: &Refund,
        state: RefundState,
        context: serde_json::Value,
    ) -> Verdict {
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
        Verdict::applied()
    }
}
