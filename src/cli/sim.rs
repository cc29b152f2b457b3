//! `wxledger sim`: run the WeChat simulator until SIGTERM/SIGINT.

use anyhow::Context;
use wxledger::{daemon::signals, sim::Simulator, Settings};

/// Binds `sim.listen` and serves until the first shutdown signal.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let sim = Simulator::build(&settings.sim)
        .await
        .context("binding sim.listen")?;
    let signal = signals::shutdown_signal();
    tracing::info!(addr = %sim.local_addr(), "WeChat simulator serving");
    let stop = sim.stop_token();
    tokio::spawn(async move {
        signal.await;
        stop.cancel();
    });
    sim.run_until_stopped().await?;
    Ok(())
}
