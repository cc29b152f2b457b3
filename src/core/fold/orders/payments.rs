//! What WeChat reports about an order's payment, and a payment from the wallet: booked
//! once per transaction, and what cannot be credited as asked goes to `suspense`.

use serde_json::json;

use super::*;

/// Who reported a transaction, for the payment row and the failure context.
pub(in crate::core::fold) struct Report<'a> {
    pub source: PaySource,
    /// Makes `{"source": ..., "notify_id"|"query_reason": ...}` for a failure's detail;
    /// built only when a failure is recorded, which most reports never do.
    pub context: &'a dyn Fn() -> serde_json::Value,
}

/// One event's view: its sequence, time and report.
struct Ctx<'a> {
    seq: i64,
    at: DateTime<Utc>,
    report: &'a Report<'a>,
    tx: &'a Transaction,
}

impl Ctx<'_> {
    /// Records a failure row; `Applied` unless this event recorded it already.
    fn fail(
        &self,
        ledger: &mut Ledger,
        reason: &str,
        amount: Option<i64>,
        extra: serde_json::Value,
    ) -> Verdict {
        let mut detail = (self.report.context)();
        detail["trade_state"] = json!(self.tx.trade_state);
        if let (Some(detail), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
            detail.extend(extra);
        }
        let recorded = ledger.record_failure(Failure {
            seq: self.seq,
            reason: reason.to_owned(),
            out_trade_no: Some(self.tx.out_trade_no.clone()),
            transaction_id: self.tx.transaction_id.clone(),
            amount,
            detail,
            occurred_at: self.at,
        });
        if recorded {
            Verdict::applied()
        } else {
            Verdict::AlreadyApplied
        }
    }
}

/// WeChat says transaction `tx` is in `tx.trade_state` (from a notify or a query).
pub(in crate::core::fold) fn reported(
    orders: &mut Orders,
    ledger: &mut Ledger,
    seq: i64,
    at: DateTime<Utc>,
    report: &Report<'_>,
    tx: &Transaction,
) -> Verdict {
    let ctx = Ctx {
        seq,
        at,
        report,
        tx,
    };
    match tx.trade_state.as_str() {
        "SUCCESS" | "REFUND" => paid(orders, ledger, &ctx),
        "CLOSED" | "REVOKED" => {
            if orders.get(&tx.out_trade_no).is_none() {
                return ctx.fail(ledger, "unknown_order", None, json!({}));
            }
            orders.close(seq, at, &tx.out_trade_no)
        }
        "PAYERROR" => {
            let order = match orders.fresh(&tx.out_trade_no, seq) {
                Ok(order) => order,
                Err(outcome) => return outcome,
            };
            match order.state {
                OrderState::Closed => return Verdict::Refused(Refusal::OrderClosed),
                OrderState::PayError => return Verdict::Refused(Refusal::AlreadyPayError),
                s if !s.can_move_to(OrderState::PayError) => {
                    return Verdict::Refused(Refusal::AlreadyPaid {
                        paid_with: order.paid_with,
                    })
                }
                _ => {}
            }
            orders.touch(&tx.out_trade_no, seq).state = OrderState::PayError;
            Verdict::applied()
        }
        "NOTPAY" | "USERPAYING" => Verdict::Refused(Refusal::NotFinal),
        _ => ctx.fail(ledger, "unknown_trade_state", None, json!({})),
    }
}

/// Where a proven payment's money goes, and why.
enum Booking {
    /// The order is paid: credit sales or the wallet.
    Credit,
    /// Received but not assignable: suspense, with these failures.
    Suspense(Vec<(&'static str, serde_json::Value)>),
    /// Not credited at all, with this failure.
    NotCredited(&'static str, serde_json::Value),
}

/// `SUCCESS` or `REFUND`: the transaction proves the money arrived.
fn paid(orders: &mut Orders, ledger: &mut Ledger, ctx: &Ctx<'_>) -> Verdict {
    let tx = ctx.tx;
    let transaction_id = tx.transaction_id.as_deref().filter(|t| !t.is_empty());
    let amount = tx.amount.as_ref();
    let total = amount.and_then(|a| a.total);
    let (Some(transaction_id), Some(total @ 1..)) = (transaction_id, total) else {
        return ctx.fail(
            ledger,
            "malformed_transaction",
            total,
            json!({"expected": "transaction_id and a positive amount.total",
                   "got": {"transaction_id": tx.transaction_id, "total": total}}),
        );
    };
    if ledger.payment(transaction_id).is_some() {
        return Verdict::AlreadyApplied;
    }
    let currency = amount.and_then(|a| a.currency.as_deref()).unwrap_or("CNY");

    let order = orders.get(&tx.out_trade_no);
    if order.is_some_and(|o| ctx.seq <= o.last_seq) {
        return Verdict::AlreadyApplied;
    }
    let booking = match order {
        None => Booking::Suspense(vec![("unknown_order", json!({}))]),
        Some(o) if o.appid != tx.appid || o.mchid != tx.mchid => Booking::NotCredited(
            "merchant_mismatch",
            json!({"expected": {"appid": o.appid, "mchid": o.mchid},
                   "got": {"appid": tx.appid, "mchid": tx.mchid}}),
        ),
        Some(o) if o.currency != currency || o.amount != total => {
            let mut failures = Vec::new();
            if o.currency != currency {
                failures.push((
                    "currency_mismatch",
                    json!({"expected": o.currency, "got": currency}),
                ));
            }
            if o.amount != total {
                failures.push((
                    "amount_mismatch",
                    json!({"expected": o.amount, "got": total}),
                ));
            }
            Booking::Suspense(failures)
        }
        Some(o) if o.state.is_paid() => {
            if o.transaction_id.as_deref() == Some(transaction_id) {
                // Booked with the order but missing from the payments: nothing to add.
                return Verdict::AlreadyApplied;
            }
            Booking::Suspense(vec![(
                "double_payment",
                json!({"expected": {"transaction_id": o.transaction_id,
                                    "paid_with": o.paid_with.map(PaidWith::as_str)},
                       "got": {"transaction_id": transaction_id}}),
            )])
        }
        Some(o) if o.state == OrderState::Closed => Booking::Suspense(vec![(
            "paid_after_close",
            json!({"expected": {"state": "unpaid"}, "got": {"state": o.state.as_str(),
                   "closed_at": o.closed_at}}),
        )]),
        Some(_) => Booking::Credit,
    };

    let posting = |kind| Posting {
        seq: ctx.seq,
        at: ctx.at,
        group_id: GroupId::Payment(transaction_id.to_owned()),
        kind,
        out_trade_no: &tx.out_trade_no,
        transaction_id: Some(transaction_id),
    };
    let booked_as = match booking {
        Booking::NotCredited(reason, detail) => {
            ctx.fail(ledger, reason, Some(total), detail);
            BookedAs::NotCredited
        }
        Booking::Suspense(failures) => {
            let result = ledger.transfer(&posting(EntryKind::Suspense), CLEARING, SUSPENSE, total);
            if result == Err(PostError::AlreadyApplied) {
                return Verdict::AlreadyApplied;
            }
            for (reason, detail) in failures {
                ctx.fail(ledger, reason, Some(total), detail);
            }
            match result {
                Ok(()) => BookedAs::Suspense,
                Err(e) => {
                    overflow(ledger, ctx, total, &e);
                    BookedAs::NotCredited
                }
            }
        }
        Booking::Credit => {
            let order = orders
                .get(&tx.out_trade_no)
                .expect("credit needs the order");
            let (kind, account, booked) = match order.kind {
                OrderKind::Order => (EntryKind::Sale, SALES.to_owned(), BookedAs::Sale),
                OrderKind::Recharge => (
                    EntryKind::Recharge,
                    wallet_account(order.user_id),
                    BookedAs::Recharge,
                ),
            };
            let booked = match ledger.transfer(&posting(kind), CLEARING, &account, total) {
                Ok(()) => booked,
                Err(PostError::AlreadyApplied) => return Verdict::AlreadyApplied,
                Err(PostError::Overflow(a) | PostError::Negative(a)) if is_wallet(&a) => {
                    let balance = ledger.balance(&a);
                    ctx.fail(
                        ledger,
                        "recharge_credit_failed",
                        Some(total),
                        json!({"account": a, "balance": balance, "credit": total}),
                    );
                    match ledger.transfer(&posting(EntryKind::Suspense), CLEARING, SUSPENSE, total)
                    {
                        Ok(()) => BookedAs::Suspense,
                        Err(e) => {
                            overflow(ledger, ctx, total, &e);
                            BookedAs::NotCredited
                        }
                    }
                }
                Err(e) => {
                    overflow(ledger, ctx, total, &e);
                    BookedAs::NotCredited
                }
            };
            let order = orders.touch(&tx.out_trade_no, ctx.seq);
            order.state = OrderState::Paid;
            order.transaction_id = Some(transaction_id.to_owned());
            order.paid_with = Some(PaidWith::Wechat);
            order.paid_at = Some(ctx.at);
            booked
        }
    };
    ledger.record_payment(Payment {
        transaction_id: transaction_id.to_owned(),
        out_trade_no: tx.out_trade_no.clone(),
        amount: total,
        seq: ctx.seq,
        booked_as,
        source: ctx.report.source,
        occurred_at: ctx.at,
    });
    // Only a credited recharge is booked as one, to its payer's wallet.
    let wallet_balance = (booked_as == BookedAs::Recharge)
        .then(|| orders.get(&tx.out_trade_no))
        .flatten()
        .map(|o| ledger.balance(&wallet_account(o.user_id)));
    Verdict::Applied(vec![Decision::PaymentBooked {
        out_trade_no: tx.out_trade_no.clone(),
        transaction_id: transaction_id.to_owned(),
        amount: total,
        booked_as,
        wallet_balance,
    }])
}

/// A posting group that would leave an account outside `i64`: recorded, not posted.
fn overflow(ledger: &mut Ledger, ctx: &Ctx<'_>, total: i64, e: &PostError) {
    let account = match e {
        PostError::Overflow(a) | PostError::Negative(a) => a.as_str(),
        PostError::AlreadyApplied => "",
    };
    let balance = ledger.balance(account);
    ctx.fail(
        ledger,
        "ledger_overflow",
        Some(total),
        json!({"account": account, "balance": balance, "amount": total}),
    );
}

/// A user pays an unpaid order from their wallet: all of it or nothing. Without the funds
/// the order stays unpaid and the failure log says `insufficient_balance`.
pub(in crate::core::fold) fn balance_pay(
    orders: &mut Orders,
    ledger: &mut Ledger,
    seq: i64,
    at: DateTime<Utc>,
    e: &BalancePayRequested,
) -> Verdict {
    let order = match orders.fresh(&e.out_trade_no, seq) {
        Ok(order) => order,
        Err(outcome) => return outcome,
    };
    if order.user_id != e.user_id {
        return Verdict::Refused(Refusal::NotOwner);
    }
    if order.kind != OrderKind::Order {
        return Verdict::Refused(Refusal::NotPayable);
    }
    if order.amount != e.amount {
        return Verdict::Refused(Refusal::AmountMismatch);
    }
    if !order.state.can_move_to(OrderState::Paid) {
        return Verdict::Refused(if order.state.is_paid() {
            Refusal::AlreadyPaid {
                paid_with: order.paid_with,
            }
        } else {
            Refusal::OrderClosed
        });
    }
    let wallet = wallet_account(order.user_id);
    let posting = Posting {
        seq,
        at,
        group_id: GroupId::WalletPay(e.out_trade_no.clone()),
        kind: EntryKind::WalletPayment,
        out_trade_no: &e.out_trade_no,
        transaction_id: None,
    };
    let (refusal, account) = match ledger.transfer(&posting, &wallet, SALES, e.amount) {
        Ok(()) => {
            let order = orders.touch(&e.out_trade_no, seq);
            order.state = OrderState::Paid;
            order.paid_with = Some(PaidWith::Wallet);
            order.paid_at = Some(at);
            return Verdict::Applied(vec![Decision::PaidFromWallet {
                out_trade_no: e.out_trade_no.clone(),
                amount: e.amount,
                balance: ledger.balance(&wallet),
            }]);
        }
        Err(PostError::AlreadyApplied) => return Verdict::AlreadyApplied,
        Err(PostError::Negative(account)) => {
            let balance = ledger.balance(&account);
            let refusal = Refusal::InsufficientBalance {
                balance,
                needed: e.amount,
            };
            (refusal, account)
        }
        Err(PostError::Overflow(account)) => (Refusal::LedgerOverflow, account),
    };
    let (reason, balance) = (refusal.as_str(), ledger.balance(&account));
    ledger.record_failure(Failure {
        seq,
        reason: reason.to_owned(),
        out_trade_no: Some(e.out_trade_no.clone()),
        transaction_id: None,
        amount: Some(e.amount),
        detail: json!({"source": "balance_pay", "account": account,
                       "balance": balance, "amount": e.amount}),
        occurred_at: at,
    });
    Verdict::Refused(refusal)
}
