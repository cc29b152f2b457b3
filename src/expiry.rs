//! The expiry sweep: orders still unpaid past `expires_at` are closed at WeChat (when
//! they have a prepay id) and `order.closed` is appended. If WeChat says the order was
//! paid after all, its signed answer is appended as `payment.queried` instead, so the
//! money is booked. Every step is idempotent, so two daemons sweeping at once only
//! repeat each other.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{
    api::AppState,
    db::orders,
    events::{CloseReason, Event, OrderClosed, QueryReason},
    fold::Order,
};

/// Runs the sweep every `every` until `stop`.
pub async fn run(app: AppState, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let result = sweep(&app).await;
        app.metrics
            .sweep_run("expiry", result.as_ref().ok().copied());
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(orders = n, "expired orders handled"),
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed; trying again next round"),
        }
    }
}

/// One pass over the orders due; returns how many were handled.
pub async fn sweep(app: &AppState) -> Result<usize, String> {
    let due = {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
        orders::due_for_expiry(&**client, (app.clock)(), 100)
            .await
            .map_err(|e| e.to_string())?
    };
    let mut handled = 0;
    for order in due {
        match expire(app, &order).await {
            Ok(()) => handled += 1,
            Err(e) => {
                app.metrics.sweep_item_failed("expiry");
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "could not expire order")
            }
        }
    }
    Ok(handled)
}

async fn expire(app: &AppState, order: &Order) -> Result<(), String> {
    let correlation = format!("expiry:{}", order.out_trade_no);
    if order.prepay_id.is_some() {
        match app.close_order(&order.out_trade_no).await {
            Ok(()) => {}
            Err(e) if e.code() == Some("ORDER_NOT_EXIST") => {}
            Err(e) if e.code() == Some("ORDERPAID") => {
                crate::reconcile::query_payment(
                    app,
                    &order.out_trade_no,
                    QueryReason::Expiry,
                    &correlation,
                )
                .await
                .map_err(|e| e.code().to_owned())?;
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let event = Event::OrderClosed(OrderClosed {
        out_trade_no: order.out_trade_no.clone(),
        reason: CloseReason::Expired,
    });
    app.record(&event, &correlation, &event.msg_id(None))
        .await
        .map_err(|e| e.code().to_owned())?;
    Ok(())
}
