//! The expiry sweep: orders still unpaid past `expires_at` are closed at WeChat (when
//! they have a prepay id) and `order.closed` is appended. If WeChat says the order was
//! paid after all, its signed answer is appended as `payment.queried` instead, so the
//! money is booked. Every step is idempotent, so two daemons sweeping at once only
//! repeat each other.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Sweep;
use crate::{
    core::{
        events::{CloseReason, Event, OrderClosed, QueryReason},
        fold::Order,
    },
    daemon::commands::{settle, Ctx},
    store::db::orders,
};

/// Runs the sweep every `every` until `stop`.
pub async fn run(ctx: Ctx, every: Duration, stop: CancellationToken) {
    super::run(ctx, every, Expiry, stop).await
}

/// The expiry sweep (it keeps no state between passes).
pub struct Expiry;

impl Sweep for Expiry {
    const NAME: &'static str = "expiry";

    async fn pass(&mut self, ctx: &Ctx) -> Result<usize, String> {
        sweep(ctx).await
    }

    fn handled(n: usize) {
        tracing::info!(orders = n, "expired orders handled");
    }
}

/// One pass over the orders due; returns how many were handled.
pub async fn sweep(ctx: &Ctx) -> Result<usize, String> {
    let due = {
        let client = ctx.pool.get().await.map_err(|e| e.to_string())?;
        orders::due_for_expiry(&**client, ctx.now(), 100)
            .await
            .map_err(|e| e.to_string())?
    };
    let mut handled = 0;
    for order in due {
        match expire(ctx, &order).await {
            Ok(()) => handled += 1,
            Err(e) => {
                ctx.metrics.sweep_item_failed(Expiry::NAME);
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "could not expire order")
            }
        }
    }
    Ok(handled)
}

async fn expire(ctx: &Ctx, order: &Order) -> Result<(), String> {
    let correlation = format!("expiry:{}", order.out_trade_no);
    if order.prepay_id.is_some() {
        match ctx.close_order(&order.out_trade_no).await {
            Ok(()) => {}
            Err(e) if e.code() == Some("ORDER_NOT_EXIST") => {}
            Err(e) if e.code() == Some("ORDERPAID") => {
                settle::query_payment(ctx, &order.out_trade_no, QueryReason::Expiry, &correlation)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let event = Event::OrderClosed(OrderClosed {
        out_trade_no: order.out_trade_no.clone(),
        reason: CloseReason::Expired,
    });
    ctx.record(&event, &correlation, &event.msg_id(None))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
