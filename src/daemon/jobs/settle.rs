//! The settlement sweep: asks WeChat about payments whose notify never came and refunds
//! not settled, and sends refund requests whose answer was lost (the steps are
//! [`crate::daemon::commands::settle`]). Not the bill reconciliation ([`crate::tools::finance`]).
//!
//! It runs every `pay.reconcile_sweep_ms`: orders with a prepay but no word from WeChat
//! after `pay.reconcile_after_secs` are queried, and a final answer is appended as
//! `payment.queried`; refunds still `requested` are sent again (WeChat treats the same
//! `out_refund_no` as the same refund; a refusal is believed only once a query shows WeChat
//! has no such refund), and refunds `processing` or `abnormal` are
//! queried, a changed status appended as `refund.queried`. The fold treats a query answer
//! like a notify, so whichever comes first books, once. The admin `sync` endpoint runs the
//! same steps for one order.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::Sweep;
use crate::{
    core::events::QueryReason,
    daemon::commands::{
        settle::{query_payment, sync_refund, PaymentWord},
        Ctx,
    },
    store::db::{orders, refunds},
};

/// Runs the settlement sweep every `every` until `stop`; an order or refund is asked
/// about at most once per `after`.
pub async fn run(ctx: Ctx, every: Duration, after: Duration, stop: CancellationToken) {
    let sweep = Settle {
        after,
        asked: HashMap::new(),
    };
    super::run(ctx, every, sweep, stop).await
}

/// The settlement sweep, with when it last asked about each order and refund.
pub struct Settle {
    after: Duration,
    asked: HashMap<String, Instant>,
}

impl Sweep for Settle {
    // The metric label predates the name "settlement".
    const NAME: &'static str = "reconcile";

    async fn pass(&mut self, ctx: &Ctx) -> Result<usize, String> {
        let result = sweep(ctx, self.after, &mut self.asked).await;
        let after = self.after;
        self.asked.retain(|_, at| at.elapsed() < after);
        result
    }

    fn handled(n: usize) {
        tracing::info!(appended = n, "settlement sweep recorded WeChat's word");
    }
}

/// One pass; returns how many answers were appended.
pub async fn sweep(
    ctx: &Ctx,
    after: Duration,
    asked: &mut HashMap<String, Instant>,
) -> Result<usize, String> {
    let now = ctx.now();
    let before = now - chrono::Duration::from_std(after).map_err(|e| e.to_string())?;
    let (waiting, open) = {
        let client = ctx.pool.get().await.map_err(|e| e.to_string())?;
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
        match query_payment(ctx, &order.out_trade_no, QueryReason::Sweep, &correlation).await {
            Ok(PaymentWord { seq: Some(_), .. }) => appended += 1,
            Ok(_) => {}
            Err(e) => {
                ctx.metrics.sweep_item_failed(Settle::NAME);
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "could not query order")
            }
        }
    }
    for refund in open {
        if !due(format!("refund:{}", refund.out_refund_no)) {
            continue;
        }
        let total = {
            let client = ctx.pool.get().await.map_err(|e| e.to_string())?;
            match orders::get(&**client, &refund.out_trade_no).await {
                Ok(Some(order)) => order.amount,
                Ok(None) => continue,
                Err(e) => return Err(e.to_string()),
            }
        };
        let correlation = format!("sweep:{}", refund.out_refund_no);
        match sync_refund(ctx, &refund, total, QueryReason::Sweep, &correlation).await {
            Ok(Some(_)) => appended += 1,
            Ok(None) => {}
            Err(e) => {
                ctx.metrics.sweep_item_failed(Settle::NAME);
                tracing::warn!(out_refund_no = %refund.out_refund_no, error = %e, "could not sync refund")
            }
        }
    }
    Ok(appended)
}
