//! The `wxledger` command: parse, set up tracing, load settings, run.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wxledger::{db, sim::Simulator, startup, telemetry, App, Settings};

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
    /// Print how fast this machine runs the crypto of the payment paths (`crypto`), or a
    /// load of notifies through the webhook into the books (`notifies`; needs NATS and
    /// Postgres, uses a scratch schema and stream).
    Bench {
        /// What to measure.
        #[arg(value_enum, default_value = "crypto")]
        what: BenchTarget,
        /// Notifies to post (`notifies`).
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Notifies in flight (`notifies`).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Walk a scripted mini program user through the API (daemon and simulator running).
    Demo {
        /// The daemon's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        /// The simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        sim: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchTarget {
    /// RSA sign/verify and AES-GCM.
    Crypto,
    /// Signed notifies through the webhook, booked by the projector.
    Notifies,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, without a backtrace.
            eprintln!("wxledger: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.log_json);
    // The crypto benchmark needs no settings.
    if let Command::Bench {
        what: BenchTarget::Crypto,
        ..
    } = &cli.command
    {
        wxledger::bench::crypto();
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Bench {
            count, concurrency, ..
        } => wxledger::bench::notifies::run(settings, count, concurrency.max(1)).await?,
        Command::Serve => {
            let app = App::build(settings).await.context("starting the daemon")?;
            tracing::info!(addr = %app.local_addr(), "wxledger serving");
            let stop = app.stop_token();
            tokio::spawn(async move {
                startup::shutdown_signal().await;
                tracing::info!("shutdown requested");
                stop.cancel();
            });
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let pool = db::pool(&settings.database)?;
            db::migrate(&pool, &settings.database.schema).await?;
            tracing::info!(schema = %settings.database.schema, "migrations applied");
        }
        Command::Sim => {
            let sim = Simulator::build(&settings.sim)
                .await
                .context("binding sim.listen")?;
            tracing::info!(addr = %sim.local_addr(), "WeChat simulator serving");
            let stop = sim.stop_token();
            tokio::spawn(async move {
                startup::shutdown_signal().await;
                stop.cancel();
            });
            sim.run_until_stopped().await?;
        }
        Command::Demo { api, sim } => wxledger::demo::run(&api, &sim).await?,
    }
    Ok(())
}
