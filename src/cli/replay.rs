//! `wxledger replay`: fold the stream up to a point into a schema of its own, with
//! progress on stderr and a summary on stdout. Calls only `wxledger::store::replay`'s public API.

use wxledger::{
    store::replay::{replay_with, AsOf, Sink},
    Settings,
};

/// The replay's flags.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Replays into `--into` and prints what was replayed and, after a COPY, the rows loaded.
pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let Args {
        as_of,
        into,
        replace,
        batches,
    } = args;
    let as_of = AsOf::parse(&as_of).map_err(anyhow::Error::msg)?;
    let sink = if batches { Sink::Batches } else { Sink::Copy };
    let (done, loaded) = replay_with(settings, as_of, &into, replace, sink, |p| {
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
    Ok(())
}
