//! `wxledger audit`: rebuild the books from the stream, compare them with the live
//! tables, check the invariants, and print the report.

use std::process::ExitCode;

use wxledger::{store::replay::AsOf, tools::audit, Settings};

use super::{print_report, Format};

/// The audit's flags.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Runs an audit, with progress on stderr, and prints its report (or its error) in
/// `--format`; the exit status is 0 when clean, 1 on a breach, 2 on an error.
pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<ExitCode> {
    let as_of = args
        .as_of
        .map(|a| AsOf::parse(&a))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if args.verify_signatures {
        // The evidence must be checked with the merchant's own keys, never the
        // development ones.
        wxledger::settings::require_production_pay_credentials(settings)?;
    }
    let options = audit::Options {
        as_of,
        verify_signatures: args.verify_signatures,
        keep: args.keep,
    };
    let result = audit::run(settings, &options, progress).await;
    let printed = match &result {
        Ok(r) => Ok((r.to_text(), r.to_json().to_string(), r.exit_code())),
        Err(e) => Err((format!("{e} ({})", e.code()), e.to_json().to_string())),
    };
    Ok(print_report("audit", args.format, printed))
}

/// Prints the audit's progress on stderr.
fn progress(step: audit::Step<'_>) {
    match step {
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
    }
}
