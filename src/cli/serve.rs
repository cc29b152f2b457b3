//! `wxledger serve`: run the daemon until SIGTERM/SIGINT.

use anyhow::Context;
use wxledger::{daemon::signals, App, Settings};

/// Builds the app, serves, and drains on the first shutdown signal.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings).await.context("starting the daemon")?;
    // Installed before "serving" is logged: a signal from then on drains.
    let signal = signals::shutdown_signal();
    tracing::info!(addr = %app.local_addr(), "wxledger serving");
    let stop = app.stop_token();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutdown requested");
        stop.cancel();
    });
    app.run_until_stopped().await?;
    Ok(())
}
