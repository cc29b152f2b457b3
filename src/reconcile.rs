//! Active reconciliation with WeChat: asking about payments whose notify never came and
//! refunds not settled, and sending refund requests whose answer was lost.
//!
//! A background sweep runs every `pay.reconcile_sweep_ms`: orders with a prepay but no
//! word from WeChat after `pay.reconcile_after_secs` are queried, and a final answer is
//! appended as `payment.queried`; refunds still `requested` are sent again (WeChat treats
//! the same `out_refund_no` as the same refund), and refunds `processing` or `abnormal`
//! are queried, a changed status appended as `refund.queried`. The fold treats a query
//! answer like a notify, so whichever comes first books, once. The admin `sync` endpoint
//! runs the same steps for one order.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    api::{ApiError, AppState},
    db::{orders, refunds},
    events::{Event, QueryReason, RefundAccepted, RefundQueried, RefundRejected},
    fold::{RefundRow, RefundState},
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
    app: &AppState,
    out_trade_no: &str,
    reason: QueryReason,
    correlation_id: &str,
) -> Result<PaymentWord, ApiError> {
    let answer = match app.query_order(out_trade_no).await {
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
    let appended = app.record(&event, correlation_id, &msg_id).await?;
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
    /// WeChat refused it; `refund.rejected` appended at this sequence.
    Rejected(u64),
}

/// Sends a `requested` refund to WeChat (again, if its answer was lost) and appends the
/// answer. An error means the outcome is unknown: the refund stays `requested`, and the
/// sweep sends it again.
pub async fn submit_refund(
    app: &AppState,
    refund: &RefundRow,
    total: i64,
    correlation_id: &str,
) -> Result<Submitted, ApiError> {
    let request = RefundRequest {
        out_trade_no: &refund.out_trade_no,
        out_refund_no: &refund.out_refund_no,
        reason: &refund.reason,
        amount: refund.amount,
        total,
    };
    match app.request_refund(&request).await {
        Ok((answer, evidence)) => {
            let event = Event::RefundAccepted(RefundAccepted {
                refund: answer,
                evidence,
            });
            let appended = app
                .record(&event, correlation_id, &event.msg_id(None))
                .await?;
            Ok(Submitted::Accepted(appended.seq))
        }
        Err(e @ PayError::Api { .. }) if e.is_refusal() => {
            let PayError::Api { code, message, .. } = e else {
                unreachable!("matched above")
            };
            let event = Event::RefundRejected(RefundRejected {
                out_refund_no: refund.out_refund_no.clone(),
                out_trade_no: refund.out_trade_no.clone(),
                code,
                message,
            });
            let appended = app
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
    app: &AppState,
    refund: &RefundRow,
    reason: QueryReason,
    correlation_id: &str,
) -> Result<(String, Option<u64>), ApiError> {
    let (answer, evidence) = app.query_refund(&refund.out_refund_no).await?;
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
    let appended = app
        .record(&event, correlation_id, &event.msg_id(None))
        .await?;
    Ok((status, Some(appended.seq)))
}

/// Brings one refund up to date with WeChat: sends it if still `requested`, queries it
/// if in flight. Returns the newest appended sequence, if any.
pub async fn sync_refund(
    app: &AppState,
    refund: &RefundRow,
    total: i64,
    reason: QueryReason,
    correlation_id: &str,
) -> Result<Option<u64>, ApiError> {
    match refund.state {
        RefundState::Requested => match submit_refund(app, refund, total, correlation_id).await? {
            Submitted::Accepted(seq) | Submitted::Rejected(seq) => Ok(Some(seq)),
        },
        RefundState::Processing | RefundState::Abnormal => {
            Ok(query_refund(app, refund, reason, correlation_id).await?.1)
        }
        _ => Ok(None),
    }
}

/// Runs the reconciliation sweep every `every` until `stop`; an order or refund is asked
/// about at most once per `after`.
pub async fn run(app: AppState, every: Duration, after: Duration, stop: CancellationToken) {
    let mut asked: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let result = sweep(&app, after, &mut asked).await;
        app.metrics
            .sweep_run("reconcile", result.as_ref().ok().copied());
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(appended = n, "reconciliation sweep recorded WeChat's word"),
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation sweep failed; trying again next round")
            }
        }
        asked.retain(|_, at| at.elapsed() < after);
    }
}

/// One pass; returns how many answers were appended.
pub async fn sweep(
    app: &AppState,
    after: Duration,
    asked: &mut HashMap<String, Instant>,
) -> Result<usize, String> {
    let now = (app.clock)();
    let before = now - chrono::Duration::from_std(after).map_err(|e| e.to_string())?;
    let (waiting, open) = {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
        let waiting = orders::awaiting_payment(&**client, before, now, 100)
            .await
            .map_err(|e| e.to_string())?;
        let open = refunds::open(&**client, before, 100)
            .await
            .map_err(|e| e.to_string())?;
        (waiting, open)
    };
    let mut appended = 0;
    let mut due = |key: String| match asked.get(&key) {
        Some(at) if at.elapsed() < after => false,
        _ => {
            asked.insert(key, Instant::now());
            true
        }
    };
    for order in waiting {
        if !due(format!("order:{}", order.out_trade_no)) {
            continue;
        }
        let correlation = format!("sweep:{}", order.out_trade_no);
        match query_payment(app, &order.out_trade_no, QueryReason::Sweep, &correlation).await {
            Ok(PaymentWord { seq: Some(_), .. }) => appended += 1,
            Ok(_) => {}
            Err(e) => {
                app.metrics.sweep_item_failed("reconcile");
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e.code(), "could not query order")
            }
        }
    }
    for refund in open {
        if !due(format!("refund:{}", refund.out_refund_no)) {
            continue;
        }
        let total = {
            let client = app.pool.get().await.map_err(|e| e.to_string())?;
            match orders::get(&**client, &refund.out_trade_no).await {
                Ok(Some(order)) => order.amount,
                Ok(None) => continue,
                Err(e) => return Err(e.to_string()),
            }
        };
        let correlation = format!("sweep:{}", refund.out_refund_no);
        match sync_refund(app, &refund, total, QueryReason::Sweep, &correlation).await {
            Ok(Some(_)) => appended += 1,
            Ok(None) => {}
            Err(e) => {
                app.metrics.sweep_item_failed("reconcile");
                tracing::warn!(out_refund_no = %refund.out_refund_no, error = %e.code(), "could not sync refund")
            }
        }
    }
    Ok(appended)
}
