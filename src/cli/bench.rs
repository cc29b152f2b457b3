//! `wxledger bench`: how fast this machine runs the payment crypto, a load of notifies,
//! or the full rebuild of a long history.

use wxledger::{tools::bench, Settings};

/// The benchmark's flags.
#[derive(clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum, default_value = "crypto")]
    what: Target,
    /// Notifies to post (`notifies`).
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Notifies in flight (`notifies`).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Events in the history (`rebuild`).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Also replay the history with the live projector's batches (`rebuild`).
    #[arg(long)]
    batches: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Target {
    /// RSA sign/verify and AES-GCM.
    Crypto,
    /// Signed notifies through the webhook, booked by the projector.
    Notifies,
    /// The full rebuild of a long history, beside the raw JetStream read and Postgres
    /// COPY rates (scratch stream and schemas).
    Rebuild,
}

impl Args {
    /// The crypto benchmark needs no settings (and so no configuration at all).
    pub fn needs_settings(&self) -> bool {
        !matches!(self.what, Target::Crypto)
    }
}

/// Runs the crypto benchmark, which needs no settings.
pub fn crypto() {
    bench::crypto();
}

/// Runs the chosen benchmark and prints its rates.
pub async fn run(settings: Settings, args: Args) -> anyhow::Result<()> {
    match args.what {
        Target::Crypto => bench::crypto(),
        Target::Rebuild => {
            let options = bench::rebuild::Options {
                events: args.events,
                batches: args.batches,
            };
            bench::rebuild::run(settings, options).await?;
        }
        Target::Notifies => {
            bench::notifies::run(settings, args.count, args.concurrency.max(1)).await?;
        }
    }
    Ok(())
}
