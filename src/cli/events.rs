//! `wxledger events ...`: the event stream as consumers see it.

use std::io::Write;

use wxledger::{daemon::signals, tools::tail, Settings};

/// The `events` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Print events one JSON line each: `{seq, subject, msg_id, envelope}`. Stops at the
    /// end of the stream unless --follow.
    Tail(TailArgs),
}

/// The flags of `events tail`.
#[derive(clap::Args)]
pub struct TailArgs {
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
}

/// Runs an `events` subcommand.
pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Tail(args) => run_tail(settings, args).await,
    }
}

/// Prints the events as JSON lines on stdout until the end (or, with --follow, until a
/// shutdown signal).
async fn run_tail(settings: &Settings, args: TailArgs) -> anyhow::Result<()> {
    let options = tail::TailOptions {
        subject: args
            .subject
            .unwrap_or_else(|| format!("{}.>", settings.nats.subject_prefix)),
        from_seq: args.from_seq,
        follow: args.follow,
        limit: args.limit,
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
        () = signals::shutdown_signal() => {}
    }
    Ok(())
}
