//! Settling with WeChat: asking about a payment whose notify never came, sending a refund
//! whose answer was lost, asking about a refund not settled. Each final answer is
//! appended (`payment.queried`, `refund.accepted`/`refund.rejected`, `refund.queried`);
//! the fold treats a query answer like a notify, so whichever comes first books, once. A
//! refused refund is recorded `refund.rejected` only once a query shows WeChat has no
//! such refund: the send may repeat one whose answer was lost and that WeChat took.
//! Used by the settlement sweep ([`crate::daemon::jobs::settle`]), the expiry sweep, the admin
//! `sync` and refund endpoints, and a wallet payment closing its prepay.

use super::{CommandError, Ctx};
use crate::{
    core::{
        events::{Event, QueryReason, RefundAccepted, RefundQueried, RefundRejected},
        fold::{RefundRow, RefundState},
    },
    wechat::pay::{PayError, RefundRequest},
};

/// What WeChat said about an order.
#[derive(Debug)]
pub struct PaymentWord {
    /// WeChat's trade state, or `ORDER_NOT_EXIST`.
    pub trade_state: String,
    /// The stream sequence of the appended answer, when it was final.
    pub seq: Option<u64>,
}

/// Queries WeChat about `out_trade_no`; a final answer (not NOTPAY or USERPAYING) is
/// appended as `payment.queried`.
pub async fn query_payment(
    ctx: &Ctx,
    out_trade_no: &str,
    reason: QueryReason,
    correlation_id: &str,
) -> Result<PaymentWord, CommandError> {
    let answer = match ctx.query_order(out_trade_no).await {
        Ok(answer) => answer,
        Err(e) if e.code() == Some("ORDER_NOT_EXIST") => {
            return Ok(PaymentWord {
                trade_state: "ORDER_NOT_EXIST".into(),
                seq: None,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let trade_state = answer.transaction.trade_state.clone();
    if matches!(trade_state.as_str(), "NOTPAY" | "USERPAYING") {
        // Nothing changes; the stream need not hear it.
        return Ok(PaymentWord {
            trade_state,
            seq: None,
        });
    }
    let (event, msg_id) = answer.into_event(reason);
    let appended = ctx.record(&event, correlation_id, &msg_id).await?;
    Ok(PaymentWord {
        trade_state,
        seq: Some(appended.seq),
    })
}

/// What became of sending a refund to WeChat.
#[derive(Debug)]
pub enum Submitted {
    /// WeChat accepted it; `refund.accepted` appended at this sequence.
    Accepted(u64),
    /// WeChat refused it and, asked, knew no such refund; `refund.rejected` appended at
    /// this sequence.
    Rejected(u64),
    /// WeChat refused it but, asked, knew the refund (an earlier send whose answer was
    /// lost went through); its status appended as `refund.queried` at this sequence (or,
    /// when that status was already recorded, the refund's last applied sequence).
    Known(u64),
}

impl Submitted {
    /// The sequence of the appended answer.
    pub fn seq(&self) -> u64 {
        match self {
            Submitted::Accepted(seq) | Submitted::Rejected(seq) | Submitted::Known(seq) => *seq,
        }
    }
}

/// Sends a `requested` refund to WeChat for an admin's request (again, if its answer was
/// lost) and appends the answer. An error means the outcome is unknown: the refund stays
/// `requested`, and the sweep sends it again.
pub async fn submit_refund(
    ctx: &Ctx,
    refund: &RefundRow,
    total: i64,
    correlation_id: &str,
) -> Result<Submitted, CommandError> {
    send_refund(ctx, refund, total, QueryReason::Sync, correlation_id).await
}

/// [`submit_refund`], a refusal checked by a query made for `reason`.
///
/// A refusal is believed only once a query confirms WeChat has no such refund: this send
/// may repeat one whose answer was lost and which WeChat took and may still pay, and
/// nothing records whether an earlier send left us (a crash, a timeout, a retried admin
/// request). Asking costs one call, and only when WeChat refuses.
async fn send_refund(
    ctx: &Ctx,
    refund: &RefundRow,
    total: i64,
    reason: QueryReason,
    correlation_id: &str,
) -> Result<Submitted, CommandError> {
    let request = RefundRequest {
        out_trade_no: &refund.out_trade_no,
        out_refund_no: &refund.out_refund_no,
        reason: &refund.reason,
        amount: refund.amount,
        total,
    };
    match ctx.request_refund(&request).await {
        Ok((answer, evidence)) => {
            let event = Event::RefundAccepted(RefundAccepted {
                refund: answer,
                evidence,
            });
            let appended = ctx
                .record(&event, correlation_id, &event.msg_id(None))
                .await?;
            Ok(Submitted::Accepted(appended.seq))
        }
        Err(e @ PayError::Api { .. }) if e.is_refusal() => {
            let PayError::Api { code, message, .. } = e else {
                unreachable!("matched above")
            };
            match query_refund(ctx, refund, reason, correlation_id).await {
                Ok((_, seq)) => {
                    let seq = seq.unwrap_or(u64::try_from(refund.last_seq).unwrap_or(0));
                    return Ok(Submitted::Known(seq));
                }
                Err(CommandError::Pay(e)) if e.code() == Some("RESOURCE_NOT_EXISTS") => {}
                // Unknown: nothing is recorded; the refund stays requested.
                Err(e) => return Err(e),
            }
            let event = Event::RefundRejected(RefundRejected {
                out_refund_no: refund.out_refund_no.clone(),
                out_trade_no: refund.out_trade_no.clone(),
                code,
                message,
            });
            let appended = ctx
                .record(&event, correlation_id, &event.msg_id(None))
                .await?;
            Ok(Submitted::Rejected(appended.seq))
        }
        Err(e) => Err(e.into()),
    }
}

/// Queries WeChat about a refund; a status other than the one recorded is appended as
/// `refund.queried`. Returns WeChat's status and the appended sequence, if any.
pub async fn query_refund(
    ctx: &Ctx,
    refund: &RefundRow,
    reason: QueryReason,
    correlation_id: &str,
) -> Result<(String, Option<u64>), CommandError> {
    let (answer, evidence) = ctx.query_refund(&refund.out_refund_no).await?;
    let status = answer.status.clone();
    if refund.wechat_status.as_deref() == Some(status.as_str()) {
        return Ok((status, None));
    }
    let event = Event::RefundQueried(RefundQueried {
        reason,
        refund: answer,
        evidence,
        notify: None,
    });
    let appended = ctx
        .record(&event, correlation_id, &event.msg_id(None))
        .await?;
    Ok((status, Some(appended.seq)))
}

/// Brings one refund up to date with WeChat: sends it if still `requested`, queries it
/// if in flight. Returns the newest appended sequence, if any.
pub async fn sync_refund(
    ctx: &Ctx,
    refund: &RefundRow,
    total: i64,
    reason: QueryReason,
    correlation_id: &str,
) -> Result<Option<u64>, CommandError> {
    match refund.state {
        RefundState::Requested => Ok(Some(
            send_refund(ctx, refund, total, reason, correlation_id)
                .await?
                .seq(),
        )),
        RefundState::Processing | RefundState::Abnormal => {
            Ok(query_refund(ctx, refund, reason, correlation_id).await?.1)
        }
        _ => Ok(None),
    }
}
