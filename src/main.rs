//! The `wxledger` command: parse, set up tracing, load settings, run.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use wxledger::{
    audit, db,
    finance::{self, BillSource},
    settings::ModeSource,
    sim::Simulator,
    startup, tail, telemetry, App, Settings,
};

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
    /// load of notifies through the webhook into the books (`notifies`), or the full
    /// rebuild of a long history (`rebuild`). `notifies` and `rebuild` need NATS and
    /// Postgres and use a scratch schema and stream.
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
        /// Events in the history (`rebuild`).
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        events: u64,
        /// Also replay the history with the live projector's batches (`rebuild`).
        #[arg(long)]
        batches: bool,
    },
    /// Walk a scripted mini program user through the API (daemon and simulator running).
    Demo {
        /// The daemon's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        /// The simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        sim: String,
        /// The daemon's `auth.admin_token` (the walk refunds an order as an admin).
        #[arg(long, env = "WXLEDGER__AUTH__ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
    },
    /// Fold the stream up to a point into a schema of its own (the books as they were
    /// then); the live projection is left untouched. Prints progress to stderr.
    Replay {
        /// A stream sequence (every event up to it) or an RFC 3339 time with offset
        /// (every event accepted by then), e.g. 2026-11-01T00:00:00+08:00.
        #[arg(long)]
        as_of: String,
        /// The schema to create and fill (same tables as the live projection).
        #[arg(long)]
        into: String,
        /// Drop the schema first if it exists.
        #[arg(long)]
        replace: bool,
        /// Apply the events in batches as the live projector does, instead of folding in
        /// memory and bulk-loading with COPY (slower; the tables are the same).
        #[arg(long)]
        batches: bool,
    },
    /// Match WeChat Pay's trade bill of a day against the ledger, line by line. Exits 0
    /// when everything matched, 1 on any discrepancy, 2 when the bill or the ledger
    /// cannot be read.
    Reconcile {
        /// A trade bill file, as WeChat Pay sends it (CSV, UTF-8 with a BOM). Without it,
        /// the bill of --date is downloaded from WeChat Pay (`pay.api_base`).
        #[arg(long, required_unless_present = "date")]
        bill: Option<PathBuf>,
        /// The bill day, YYYY-MM-DD in China Standard Time. With --bill it defaults to
        /// the day of the bill's lines.
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Report format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Rebuild the books from the stream into a scratch schema, compare them with the
    /// live tables and check the invariants of the books; print a report with the money
    /// of each day and every breach with its event sequences. Exits 0 when clean, 1 on
    /// any breach, 2 when the audit cannot be made. Prints progress to stderr.
    Audit {
        /// Audit the books as they stood at a stream sequence or an RFC 3339 time with
        /// offset (default: the live checkpoint).
        #[arg(long)]
        as_of: Option<String>,
        /// Report format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Verify WeChat's signature again on every event that carries evidence.
        #[arg(long)]
        verify_signatures: bool,
        /// Keep the rebuild in this schema (which must not exist) instead of dropping it.
        #[arg(long)]
        keep: Option<String>,
    },
    /// Asks the daemon's `/readyz` (on `http.listen`, over loopback when it listens on every
    /// interface) and exits 0 when it answers 200: a container healthcheck without curl.
    Healthcheck {
        /// Ask this URL instead.
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Erase a user's personal data (crypto-shredding): destroy their data key, then
    /// append `user.erased`. Their orders, payments and postings stay. Idempotent.
    EraseUser {
        /// The user's id (a UUID, as `GET /v1/admin/users/{user_id}` shows it).
        user_id: uuid::Uuid,
    },
    /// The event stream, as consumers see it.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print events one JSON line each: `{seq, subject, msg_id, envelope}`. Stops at the
    /// end of the stream unless --follow.
    Tail {
        /// Subject filter (default `<nats.subject_prefix>.>`, e.g. `wxledger.>`).
        #[arg(long)]
        subject: Option<String>,
        /// First stream sequence to print.
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// For humans.
    Text,
    /// One JSON object.
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchTarget {
    /// RSA sign/verify and AES-GCM.
    Crypto,
    /// Signed notifies through the webhook, booked by the projector.
    Notifies,
    /// The full rebuild of a long history, beside the raw JetStream read and Postgres
    /// COPY rates (scratch stream and schemas).
    Rebuild,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // reconcile and audit keep 1 for "discrepancies found": their own failures are 2.
    let failure = match cli.command {
        Command::Reconcile { .. } | Command::Audit { .. } => ExitCode::from(2),
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
    telemetry::init(cli.log_json);
    // The crypto benchmark needs no settings.
    if let Command::Bench {
        what: BenchTarget::Crypto,
        ..
    } = &cli.command
    {
        wxledger::bench::crypto();
        return Ok(ExitCode::SUCCESS);
    }
    let development = match &cli.command {
        Command::Sim => Some(ModeSource::Command("wxledger sim, a development tool")),
        Command::Bench { .. } => Some(ModeSource::Command(
            "wxledger bench, on scratch streams against the simulator's keys",
        )),
        Command::Demo { .. } => Some(ModeSource::Command("wxledger demo, a development tool")),
        _ if cli.dev => Some(ModeSource::Flag),
        _ => None,
    };
    let settings = Settings::load_as(cli.config.as_deref(), development)?;
    match cli.command {
        Command::Bench {
            what: BenchTarget::Rebuild,
            events,
            batches,
            ..
        } => {
            let options = wxledger::bench::rebuild::Options { events, batches };
            wxledger::bench::rebuild::run(settings, options).await?;
        }
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
        Command::Demo {
            api,
            sim,
            admin_token,
        } => wxledger::demo::run(&api, &sim, &admin_token).await?,
        Command::Replay {
            as_of,
            into,
            replace,
            batches,
        } => {
            use wxledger::replay::{replay_with, AsOf, Sink};
            let as_of = AsOf::parse(&as_of).map_err(anyhow::Error::msg)?;
            let sink = if batches { Sink::Batches } else { Sink::Copy };
            let (done, loaded) = replay_with(&settings, as_of, &into, replace, sink, |p| {
                eprintln!(
                    "replay: seq {}/{} read {} applied {} ({:.0} events/s, ETA {:.0} s)",
                    p.seq,
                    p.end,
                    p.read,
                    p.applied,
                    p.rate(),
                    p.eta().as_secs_f64()
                );
            })
            .await?;
            println!(
                "replayed {} of {} events read (up to sequence {}) into schema {into} in {:.2} s: {:.0} events/s",
                done.applied,
                done.read,
                done.checkpoint,
                done.elapsed.as_secs_f64(),
                done.rate()
            );
            if let Some(loaded) = loaded {
                let tables: Vec<String> = loaded
                    .tables
                    .iter()
                    .map(|(table, rows)| format!("{table} {rows}"))
                    .collect();
                println!("bulk-loaded {} rows: {}", loaded.rows(), tables.join(", "));
            }
        }
        Command::Reconcile { bill, date, format } => {
            let source = bill.map_or(BillSource::Download, BillSource::File);
            if matches!(source, BillSource::Download) {
                // Downloading the bill signs a request and verifies WeChat's answer.
                wxledger::settings::require_production_pay_credentials(&settings)?;
            }
            return Ok(reconcile(&settings, source, date, format).await);
        }
        Command::Audit {
            as_of,
            format,
            verify_signatures,
            keep,
        } => {
            let as_of = as_of
                .map(|a| wxledger::replay::AsOf::parse(&a))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if verify_signatures {
                // The evidence must be checked with the merchant's own keys, never the
                // development ones.
                wxledger::settings::require_production_pay_credentials(&settings)?;
            }
            let options = audit::Options {
                as_of,
                verify_signatures,
                keep,
            };
            return Ok(run_audit(&settings, &options, format).await);
        }
        Command::Healthcheck { url, timeout_secs } => {
            let url =
                url.unwrap_or_else(|| wxledger::healthcheck::readyz_url(settings.http.listen));
            let timeout = std::time::Duration::from_secs(timeout_secs.max(1));
            wxledger::healthcheck::probe(&url, timeout).await?;
            println!("{url}: ready");
        }
        Command::EraseUser { user_id } => {
            let pool = db::pool(&settings.database)?;
            db::migrate(&pool, &settings.database.schema).await?;
            let log = wxledger::events::EventLog::open(&settings.nats).await?;
            let correlation_id = format!("cli:erase-user:{}", uuid::Uuid::new_v4());
            let erasure = wxledger::privacy::erase_user(
                &pool,
                &log,
                user_id,
                &correlation_id,
                chrono::Utc::now(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("erase-user: {e} ({})", e.code()))?;
            match erasure.appended {
                Some(a) => println!(
                    "user {user_id} erased: data key destroyed, user.erased at sequence {}",
                    a.seq
                ),
                None => println!("user {user_id} was already erased: data key destroyed"),
            }
        }
        Command::Events {
            command:
                EventsCommand::Tail {
                    subject,
                    from_seq,
                    follow,
                    limit,
                },
        } => {
            let options = tail::TailOptions {
                subject: subject.unwrap_or_else(|| format!("{}.>", settings.nats.subject_prefix)),
                from_seq,
                follow,
                limit,
            };
            let mut out = std::io::stdout().lock();
            let print = |line: &tail::TailLine| {
                serde_json::to_writer(&mut out, line)?;
                out.write_all(b"\n")?;
                out.flush()
            };
            tokio::select! {
                result = tail::tail(&settings.nats, &options, print) => {
                    result.map_err(|e| anyhow::anyhow!("events tail: {} ({})", e, e.code()))?;
                }
                () = startup::shutdown_signal() => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a reconciliation and prints its report (or its error) in `format`; the exit
/// status is 0 when everything matched, 1 on a discrepancy, 2 on an error.
async fn reconcile(
    settings: &Settings,
    source: BillSource,
    date: Option<NaiveDate>,
    format: Format,
) -> ExitCode {
    let result = finance::reconcile::run(settings, source, date).await;
    let printed = match &result {
        Ok(r) => Ok((r.to_text(), r.to_json().to_string(), r.exit_code())),
        Err(e) => Err((format!("{e} ({})", e.code()), e.to_json().to_string())),
    };
    print_report("reconcile", format, printed)
}

/// Prints a finance command's report (`(text, json, exit status)`) or its error
/// (`(message, json)`, exit status 2) in `format`: reports on stdout, a text error on
/// stderr.
fn print_report(
    command: &str,
    format: Format,
    printed: Result<(String, String, u8), (String, String)>,
) -> ExitCode {
    match (printed, format) {
        (Ok((text, _, exit)), Format::Text) => {
            print!("{text}");
            ExitCode::from(exit)
        }
        (Ok((_, json, exit)), Format::Json) => {
            println!("{json}");
            ExitCode::from(exit)
        }
        (Err((message, _)), Format::Text) => {
            eprintln!("wxledger {command}: {message}");
            ExitCode::from(2)
        }
        (Err((_, json)), Format::Json) => {
            println!("{json}");
            ExitCode::from(2)
        }
    }
}

/// Runs an audit, with progress on stderr, and prints its report (or its error) in
/// `format`; the exit status is 0 when clean, 1 on a breach, 2 on an error.
async fn run_audit(settings: &Settings, options: &audit::Options, format: Format) -> ExitCode {
    let progress = |step: audit::Step<'_>| match step {
        audit::Step::Phase(phase) => eprintln!("audit: {phase}"),
        audit::Step::Scan(p) => eprintln!(
            "audit: stream seq {}/{} ({:.0} events/s, ETA {:.0} s)",
            p.seq,
            p.end,
            p.rate(),
            p.eta().as_secs_f64()
        ),
        audit::Step::Rebuild(p) => eprintln!(
            "audit: rebuild seq {}/{} applied {} ({:.0} events/s, ETA {:.0} s)",
            p.seq,
            p.end,
            p.applied,
            p.rate(),
            p.eta().as_secs_f64()
        ),
    };
    let result = audit::run(settings, options, progress).await;
    let printed = match &result {
        Ok(r) => Ok((r.to_text(), r.to_json().to_string(), r.exit_code())),
        Err(e) => Err((format!("{e} ({})", e.code()), e.to_json().to_string())),
    };
    print_report("audit", format, printed)
}
