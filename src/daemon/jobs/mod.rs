//! Background jobs: sweeps that run every so often until the daemon stops, each a loop
//! over [`crate::daemon::commands`] (never the HTTP layer).

pub mod expiry;
pub mod settle;

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::daemon::commands::Ctx;

/// One kind of sweep: a pass, and how its result is told.
pub trait Sweep {
    /// The sweep's name in `wxledger_sweep_runs_total` and friends.
    const NAME: &'static str;

    /// One pass; returns how many items it handled (or appended).
    fn pass(&mut self, ctx: &Ctx) -> impl Future<Output = Result<usize, String>> + Send;

    /// Logs a pass that handled `n` (> 0) items.
    fn handled(n: usize);
}

/// Runs `sweep` every `every` until `stop`, counting each run in the metrics.
pub async fn run<S: Sweep>(ctx: Ctx, every: Duration, mut sweep: S, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let result = sweep.pass(&ctx).await;
        ctx.metrics
            .sweep_run(S::NAME, result.as_ref().ok().copied());
        match result {
            Ok(0) => {}
            Ok(n) => S::handled(n),
            Err(e) => {
                tracing::warn!(sweep = S::NAME, error = %e, "sweep failed; trying again next round")
            }
        }
    }
}
