//! An admin's commands on a paid order: refund part or all of it, and bring it and its
//! refunds up to date with WeChat.

use super::{
    settle::{self, PaymentWord},
    CommandError, Ctx,
};
use crate::{
    core::{
        domain::{Fen, OutRefundNo},
        events::{Event, OrderKind, QueryReason, RefundRequested},
        fold::{wallet_account, Order, PaidWith, RefundRow, RefundState, Refusal, Verdict},
    },
    store::{
        db::{orders, refunds},
        projector::VerdictError,
    },
};

/// A refund to make.
pub struct NewRefund {
    /// Its number: given by the admin, or derived from the order and `Idempotency-Key`.
    pub out_refund_no: OutRefundNo,
    /// How much.
    pub amount: Fen,
    /// Why (shown to the payer).
    pub reason: String,
}

/// A refund made (or found made).
pub struct Refunded {
    /// `false` when this `out_refund_no` was seen with the same request.
    pub created: bool,
    /// The refund after WeChat's answer applied.
    pub refund: RefundRow,
    /// The order after the refund applied.
    pub order: Order,
}

/// Refunds part of `order`: checked here and again by the fold (which sets the amount
/// aside, or refuses), then sent to WeChat; WeChat's answer is recorded and applied. The
/// fold's refusal is answered from its verdict on the refund's `refund.requested` event
/// ([`crate::store::projector::ProjectionWatch::wait_for_verdict`]), also for a retry.
pub async fn refund(
    ctx: &Ctx,
    order: &Order,
    new: NewRefund,
    request_id: &str,
) -> Result<Refunded, CommandError> {
    let NewRefund {
        out_refund_no,
        amount,
        reason,
    } = new;
    let amount = amount.get();
    let existing = refunds::get(&**ctx.pool.get().await?, out_refund_no.as_str()).await?;
    let created = match existing {
        Some(r) if r.out_trade_no == order.out_trade_no && r.amount == amount && r.requested => {
            false
        }
        Some(_) => return Err(CommandError::OutRefundNoTaken),
        None => {
            check_refundable(ctx, order, amount).await?;
            let event = Event::RefundRequested(RefundRequested {
                out_refund_no: out_refund_no.as_str().to_owned(),
                out_trade_no: order.out_trade_no.clone(),
                amount,
                reason,
            });
            let appended = ctx.record(&event, request_id, &event.msg_id(None)).await?;
            let verdict = ctx.wait_for_verdict(appended.seq).await?;
            // A duplicate's verdict is on the first request with this number, which may
            // not be this one: answered from its row below, as a retry is. So is one
            // applied already (the same refund, requested by a retry that raced this).
            if let (false, Verdict::Refused(refusal)) = (appended.duplicate, verdict) {
                return Err(refused(refusal));
            }
            !appended.duplicate
        }
    };
    let refund = refunds::get(&**ctx.pool.get().await?, out_refund_no.as_str())
        .await?
        .ok_or_else(|| {
            CommandError::internal("a requested refund is missing after its event applied")
        })?;
    if refund.out_trade_no != order.out_trade_no || refund.amount != amount {
        return Err(CommandError::OutRefundNoTaken);
    }
    match refund.state {
        RefundState::Refused => {
            // A retry of a refused request: the row's last event is the one refused.
            let refusing = u64::try_from(refund.last_seq).expect("sequences are positive");
            let verdict = ctx
                .projection
                .wait_for_verdict(refusing, ctx.read_your_writes)
                .await;
            return Err(match verdict {
                Ok(Verdict::Refused(refusal)) => refused(refusal),
                Ok(other) => CommandError::internal(format!(
                    "a refused refund's request was {}",
                    other.as_str()
                )),
                // Refused before this version kept verdicts (no rebuild since).
                Err(VerdictError::NotKept(_)) => CommandError::RefundRefusedEarlier,
                Err(e) => e.into(),
            });
        }
        RefundState::Requested => {
            // Sent now; if WeChat cannot be reached the refund stays requested and the
            // settlement sweep sends it again.
            let sent = settle::submit_refund(ctx, &refund, order.amount, request_id).await?;
            ctx.wait_for(sent.seq()).await?;
        }
        _ => {}
    }
    let client = ctx.pool.get().await?;
    let refund = refunds::get(&**client, out_refund_no.as_str())
        .await?
        .ok_or_else(|| CommandError::internal("a refund row disappeared"))?;
    if refund.state == RefundState::Rejected {
        return Err(CommandError::RefundRejected {
            code: refund.code.unwrap_or_else(|| "-".into()),
            message: refund.message.unwrap_or_else(|| "-".into()),
        });
    }
    let order = orders::get(&**client, &order.out_trade_no)
        .await?
        .ok_or(CommandError::OrderNotFound)?;
    Ok(Refunded {
        created,
        refund,
        order,
    })
}

/// The answer to a request the fold refused: its number taken by another refund, or the
/// refusal itself.
fn refused(refusal: Refusal) -> CommandError {
    match refusal {
        Refusal::OutRefundNoTaken => CommandError::OutRefundNoTaken,
        other => CommandError::RefundRefused(other),
    }
}

/// The checks made before appending (the fold makes them again, in stream order).
async fn check_refundable(ctx: &Ctx, order: &Order, amount: i64) -> Result<(), CommandError> {
    if !order.state.is_paid() {
        return Err(CommandError::RefundRefused(Refusal::NotPaid));
    }
    let left = order.refundable();
    if amount > left {
        return Err(CommandError::RefundTooLarge { left });
    }
    if order.kind == OrderKind::Recharge && order.paid_with == Some(PaidWith::Wechat) {
        let balance =
            orders::balance(&**ctx.pool.get().await?, &wallet_account(order.user_id)).await?;
        if balance < amount {
            return Err(CommandError::RefundRefused(Refusal::InsufficientBalance {
                balance,
                needed: amount,
            }));
        }
    }
    Ok(())
}

/// An order brought up to date with WeChat.
pub struct Synced {
    /// WeChat's trade state, or `ORDER_NOT_EXIST`.
    pub trade_state: String,
    /// Whether WeChat's answer was appended as `payment.queried`.
    pub recorded: bool,
    /// The order after the answers applied.
    pub order: Order,
    /// Its refunds after their answers applied.
    pub refunds: Vec<RefundRow>,
}

/// Asks WeChat about an order (recording a final answer as `payment.queried`) and brings
/// its refunds up to date (sending a refund whose answer was lost, recording a changed
/// status as `refund.queried`); waits until all of that is applied.
pub async fn sync_order(
    ctx: &Ctx,
    order: &Order,
    request_id: &str,
) -> Result<Synced, CommandError> {
    let word: PaymentWord =
        settle::query_payment(ctx, &order.out_trade_no, QueryReason::Sync, request_id).await?;
    let mut newest = word.seq;
    let open = refunds::for_order(&**ctx.pool.get().await?, &order.out_trade_no).await?;
    for refund in open.iter().filter(|r| !r.state.is_final()) {
        let seq =
            settle::sync_refund(ctx, refund, order.amount, QueryReason::Sync, request_id).await?;
        newest = newest.max(seq);
    }
    if let Some(seq) = newest {
        ctx.wait_for(seq).await?;
    }
    let client = ctx.pool.get().await?;
    let order = orders::get(&**client, &order.out_trade_no)
        .await?
        .ok_or(CommandError::OrderNotFound)?;
    let refunds = refunds::for_order(&**client, &order.out_trade_no).await?;
    Ok(Synced {
        recorded: word.seq.is_some(),
        trade_state: word.trade_state,
        order,
        refunds,
    })
}
