//! `wxledger healthcheck`: ask the daemon's `/readyz`, a container healthcheck without curl.

use std::time::Duration;

use wxledger::{daemon::healthcheck, Settings};

/// The healthcheck's flags.
#[derive(clap::Args)]
pub struct Args {
    /// Ask this URL instead.
    #[arg(long)]
    url: Option<String>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

/// Probes `/readyz` (or `--url`) and prints that it is ready; an error otherwise.
pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let url = args
        .url
        .unwrap_or_else(|| healthcheck::readyz_url(settings.http.listen));
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    healthcheck::probe(&url, timeout).await?;
    println!("{url}: ready");
    Ok(())
}
