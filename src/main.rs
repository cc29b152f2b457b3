//! The `wxledger` command: parse, set up tracing, choose the mode, load settings, and
//! hand over to the command's glue in `cli/`.

mod cli;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use wxledger::{daemon::telemetry, settings::ModeSource, Settings};

// glibc's allocator spent a quarter of the full rebuild's samples in malloc_consolidate,
// unlink_chunk and free (many small event strings freed on another thread than the one
// that allocated them); mimalloc's thread-local free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wxledger",
    version,
    about = "The money side of a WeChat mini program, event-sourced"
)]
struct Cli {
    /// TOML settings file (then WXLEDGER__SECTION__KEY environment variables override it).
    #[arg(long, short, global = true, env = "WXLEDGER_CONFIG")]
    config: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Development mode: the WeChat simulator's credentials and the public development
    /// keys of config/dev-keys/ fill unset settings and are trusted. Never with real money.
    /// Without it (or `mode = "development"`), production mode refuses to start unless
    /// every credential is configured and none is a development one.
    #[arg(long, global = true)]
    dev: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: API, webhooks and projector.
    Serve,
    /// Apply projections/*.sql to the configured schema and exit.
    Migrate,
    /// Run the WeChat simulator.
    Sim,
    /// Print how fast this machine runs the crypto of the payment paths (`crypto`), a
    /// load of notifies through the webhook into the books (`notifies`), the full
    /// rebuild of a long history (`rebuild`), the daemon in its own process as a user
    /// would measure it (`load`), or the fault matrix (`faults`). `notifies`, `rebuild`
    /// and `load` need NATS and Postgres and use a scratch schema and stream.
    Bench(Box<cli::bench::Args>),
    /// Walk a scripted mini program user through the API (daemon and simulator running).
    Demo(cli::demo::Args),
    /// Fold the stream up to a point into a schema of its own (the books as they were
    /// then); the live projection is left untouched. Prints progress to stderr.
    Replay(cli::replay::Args),
    /// Match WeChat Pay's trade bill of a day against the ledger, line by line. Exits 0
    /// when everything matched, 1 on any discrepancy, 2 when the bill or the ledger
    /// cannot be read.
    Reconcile(cli::reconcile::Args),
    /// Rebuild the books from the stream into a scratch schema, compare them with the
    /// live tables and check the invariants of the books; print a report with the money
    /// of each day and every breach with its event sequences. Exits 0 when clean, 1 on
    /// any breach, 2 when the audit cannot be made. Prints progress to stderr.
    Audit(cli::audit::Args),
    /// Asks the daemon's `/readyz` (on `http.listen`, over loopback when it listens on every
    /// interface) and exits 0 when it answers 200: a container healthcheck without curl.
    Healthcheck(cli::healthcheck::Args),
    /// Erase a user's personal data (crypto-shredding): destroy their data key, then
    /// append `user.erased`. Their orders, payments and postings stay. Idempotent.
    EraseUser(cli::erase_user::Args),
    /// Skip an event no build can read, which halted the projector: append
    /// `event.quarantined`; every reader then skips it and the failure log says why.
    /// Refused for an event that can be read. Idempotent.
    Quarantine(cli::quarantine::Args),
    /// The event stream, as consumers see it.
    Events {
        #[command(subcommand)]
        command: cli::events::Command,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // reconcile and audit keep 1 for "discrepancies found": their own failures are 2.
    let failure = match cli.command {
        Command::Reconcile(_) | Command::Audit(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // The whole cause chain on one line, without a backtrace.
            eprintln!("wxledger: {e:#}");
            failure
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Bench(args) = &cli.command {
        if args.quiet() && std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "warn");
        }
    }
    telemetry::init(cli.log_json);
    if let Command::Bench(args) = &cli.command {
        if !args.needs_settings() {
            return cli::bench::run_standalone(args).await;
        }
    }
    // The one place that decides which commands run in development mode.
    let development = match &cli.command {
        Command::Sim => Some(ModeSource::Command("wxledger sim, a development tool")),
        Command::Bench(_) => Some(ModeSource::Command(
            "wxledger bench, on scratch streams against the simulator's keys",
        )),
        Command::Demo(_) => Some(ModeSource::Command("wxledger demo, a development tool")),
        _ if cli.dev => Some(ModeSource::Flag),
        _ => None,
    };
    let settings = Settings::load_as(cli.config.as_deref(), development)?;
    match cli.command {
        Command::Serve => cli::serve::run(settings).await?,
        Command::Migrate => cli::migrate::run(&settings).await?,
        Command::Sim => cli::sim::run(&settings).await?,
        Command::Bench(args) => cli::bench::run(settings, *args).await?,
        Command::Demo(args) => cli::demo::run(args).await?,
        Command::Replay(args) => cli::replay::run(&settings, args).await?,
        Command::Reconcile(args) => return cli::reconcile::run(&settings, args).await,
        Command::Audit(args) => return cli::audit::run(&settings, args).await,
        Command::Healthcheck(args) => cli::healthcheck::run(&settings, args).await?,
        Command::EraseUser(args) => cli::erase_user::run(&settings, args).await?,
        Command::Quarantine(args) => cli::quarantine::run(&settings, args).await?,
        Command::Events { command } => cli::events::run(&settings, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}
