//! `wxledger bench`: how fast this machine runs the payment crypto, a load of notifies,
//! or the full rebuild of a long history; or the fault matrix on private servers.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use wxledger::{
    tools::bench::{self, faults},
    Settings,
};

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
    /// Runs per fault kind (`faults`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Run only this fault kind (`faults`; repeatable): daemon-kill, nats-kill, nats-pause,
    /// postgres-kill, postgres-stop, cluster-node-kill, active-daemon-kill.
    #[arg(long)]
    only: Vec<faults::Kind>,
    /// Users of the load (`faults`).
    #[arg(long, default_value_t = 6)]
    users: usize,
    /// Payments made before each fault and again after its recovery (`faults`).
    #[arg(long, default_value_t = 10)]
    payments: usize,
    /// Also write the results as JSON to this file (`faults`).
    #[arg(long)]
    json: Option<PathBuf>,
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
    /// The fault matrix (kill -9, stop, pause of the daemon, NATS and Postgres; a cluster
    /// node; the active daemon) on private servers under load: a table of answers,
    /// retries, lost and doubled payments and the time to full recovery.
    Faults,
}

impl Args {
    /// `crypto` and `faults` need no settings (`faults` starts its own private servers).
    pub fn needs_settings(&self) -> bool {
        !matches!(self.what, Target::Crypto | Target::Faults)
    }

    /// Whether the bench logs only warnings by default (`faults`: the in-process
    /// simulator would log every notify).
    pub fn quiet(&self) -> bool {
        matches!(self.what, Target::Faults)
    }
}

/// Runs a benchmark that needs no settings.
pub async fn run_standalone(args: &Args) -> anyhow::Result<ExitCode> {
    if !matches!(args.what, Target::Faults) {
        bench::crypto();
        return Ok(ExitCode::SUCCESS);
    }
    let mut options = faults::Options::new(std::env::current_exe()?);
    options.runs = args.runs as usize;
    options.only = args.only.clone();
    options.users = args.users.max(1);
    options.warmup = args.payments;
    options.after = args.payments;
    let report = faults::run(&options).await?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.met() {
        ExitCode::SUCCESS
    } else {
        eprintln!("wxledger: some fault kinds missed their targets");
        ExitCode::FAILURE
    })
}

/// Runs the chosen benchmark and prints its rates.
pub async fn run(settings: Settings, args: Args) -> anyhow::Result<()> {
    match args.what {
        Target::Crypto => bench::crypto(),
        Target::Faults => unreachable!("faults needs no settings"),
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
