//! `wxledger bench`: how fast this machine runs the payment crypto, a load of notifies,
//! or the full rebuild of a long history; the daemon under load as a user would measure
//! it; or the fault matrix on private servers.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use wxledger::{
    tools::bench::{self, faults, load},
    Settings,
};

/// The benchmark's flags.
#[derive(clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum, default_value = "crypto")]
    what: Target,
    /// Notifies to post (`notifies`: default 5,000; `load`'s closed loop: 20,000), events
    /// to append per row (`appends`: 5,000).
    #[arg(long)]
    count: Option<usize>,
    /// Notifies in flight (`notifies`: default 32; `load`'s closed loops: 64), appends in
    /// flight (`appends`: 32).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Open-loop rates, notifies per second, comma-separated (`load`).
    #[arg(long, value_delimiter = ',', default_values_t = [2000.0, 5000.0])]
    rate: Vec<f64>,
    /// Seconds of each open loop (`load`).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Warm-up notifies before the closed loop, not judged (`load`).
    #[arg(long, default_value_t = 2000)]
    warmup: usize,
    /// The NATS the daemon appends to (`load`; default `nats.url`), e.g. a server with
    /// `sync_interval: always`.
    #[arg(long)]
    nats_url: Option<String>,
    /// Start a private nats-server for the daemon instead (`load`).
    #[arg(long, conflicts_with = "nats_url")]
    private_nats: bool,
    /// The NATS of `--nats-url` fsyncs every write (`jetstream { sync_interval: always }`;
    /// the server does not say): the ingest target is then the durable one (`load`).
    #[arg(long, requires = "nats_url")]
    nats_sync_always: bool,
    /// A setting of the daemon under load, `section.key=value` (`load`; repeatable), e.g.
    /// `--daemon-setting projector.batch_linger_ms=0` or `--daemon-setting
    /// nats.group_commit=on`: passed to it as `WXLEDGER__SECTION__KEY`.
    #[arg(long, value_parser = parse_daemon_setting)]
    daemon_setting: Vec<(String, String)>,
    /// API users at once, and rounds (login, place order, wallet pay, me) each (`load`).
    #[arg(long, default_value_t = 4)]
    api_users: usize,
    /// Rounds of each API user (`load`; 0 skips the API phase).
    #[arg(long, default_value_t = 100)]
    api_rounds: usize,
    /// Only single publishes (`off`) or only group commit (`on`); both by default
    /// (`appends`).
    #[arg(long, value_parser = ["on", "off"])]
    group_commit: Option<String>,
    /// Most events in one atomic batch, 1 to 1000 (`appends`).
    #[arg(long, default_value_t = 500)]
    max_batch: usize,
    /// The nats-server 2.12+ to start (`appends`); default `$WXLEDGER_NATS_SERVER`, as
    /// `scripts/install-nats-server.sh` prints it.
    #[arg(long, env = "WXLEDGER_NATS_SERVER")]
    nats_server: Option<PathBuf>,
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
    /// Also write the results as JSON to this file (`faults`, `load`).
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
    /// The daemon as a user would measure it: `wxledger serve` in its own process on a
    /// scratch schema and stream, notifies from this process in a closed loop and in open
    /// loops at fixed rates (answer time percentiles, projection lag), API latency less
    /// WeChat's time, and the raw figures of the machine; a table of issue 14's targets.
    Load,
    /// Durable appends per second, single publishes against group commit, on private
    /// nats-servers (the pinned 2.15 with `sync_interval: always` and default fsync).
    Appends,
    /// The fault matrix (kill -9, stop, pause of the daemon, NATS and Postgres; a cluster
    /// node; the active daemon) on private servers under load: a table of answers,
    /// retries, lost and doubled payments and the time to full recovery.
    Faults,
}

impl Args {
    /// `crypto`, `appends` and `faults` need no settings (`appends` and `faults` start
    /// their own private servers).
    pub fn needs_settings(&self) -> bool {
        !matches!(self.what, Target::Crypto | Target::Appends | Target::Faults)
    }

    /// Whether the bench logs only warnings by default (`faults`, `load`: the in-process
    /// simulator would log every request).
    pub fn quiet(&self) -> bool {
        matches!(self.what, Target::Faults | Target::Load | Target::Appends)
    }
}

/// Runs a benchmark that needs no settings.
pub async fn run_standalone(args: &Args) -> anyhow::Result<ExitCode> {
    match args.what {
        Target::Faults => {}
        Target::Appends => {
            let server = args.nats_server.clone().context(
                "bench appends needs nats-server 2.12+: --nats-server PATH or \
                 WXLEDGER_NATS_SERVER=$(scripts/install-nats-server.sh)",
            )?;
            let options = bench::appends::Options {
                count: args.count.unwrap_or(5000).max(1),
                concurrency: args.concurrency.unwrap_or(32).max(1),
                group_commit: args.group_commit.as_deref().map(|g| g == "on"),
                max_batch: args.max_batch,
                server,
            };
            bench::appends::run(&options).await?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {
            bench::crypto();
            return Ok(ExitCode::SUCCESS);
        }
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

/// `section.key=value` as the environment variable that sets it and its value.
fn parse_daemon_setting(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected section.key=value"))?;
    let parts: Vec<&str> = key.split('.').collect();
    let word = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if parts.len() < 2 || !parts.iter().all(word) {
        return Err(format!(
            "{key:?}: expected section.key, e.g. projector.batch_linger_ms"
        ));
    }
    let name = format!("WXLEDGER__{}", parts.join("__").to_ascii_uppercase());
    Ok((name, value.to_owned()))
}

/// Runs `load`: prints its table, writes its JSON; fails when its counts do not add up.
async fn run_load(settings: Settings, args: &Args) -> anyhow::Result<()> {
    let mut options = load::Options::new(
        std::env::current_exe()?,
        args.nats_url.clone().unwrap_or(settings.nats.url),
        settings.database,
    );
    options.private_nats = args.private_nats;
    options.sync_always = args.nats_sync_always;
    options.closed = args.count.unwrap_or(options.closed);
    options.in_flight = args.concurrency.unwrap_or(options.in_flight).max(1);
    options.rates = args.rate.iter().copied().filter(|r| *r > 0.0).collect();
    options.seconds = args.seconds;
    options.warmup = args.warmup;
    options.api_users = args.api_users.max(1);
    options.api_rounds = args.api_rounds;
    options.daemon_settings = args.daemon_setting.clone();
    let report = load::run(&options).await?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    anyhow::ensure!(
        report.counts_add_up(),
        "the counts do not add up: a notify accepted but not booked, or booked twice"
    );
    Ok(())
}

/// Runs the chosen benchmark and prints its rates.
pub async fn run(settings: Settings, args: Args) -> anyhow::Result<()> {
    match args.what {
        Target::Load => run_load(settings, &args).await?,
        Target::Crypto => bench::crypto(),
        Target::Faults | Target::Appends => unreachable!("needs no settings"),
        Target::Rebuild => {
            let options = bench::rebuild::Options {
                events: args.events,
                batches: args.batches,
            };
            bench::rebuild::run(settings, options).await?;
        }
        Target::Notifies => {
            let count = args.count.unwrap_or(5_000);
            let concurrency = args.concurrency.unwrap_or(32).max(1);
            bench::notifies::run(settings, count, concurrency).await?;
        }
    }
    Ok(())
}
