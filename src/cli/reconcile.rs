//! `wxledger reconcile`: match WeChat Pay's trade bill of a day against the ledger.

use std::{path::PathBuf, process::ExitCode};

use chrono::NaiveDate;
use wxledger::{
    tools::finance::{self, BillSource},
    Settings,
};

use super::{print_report, Format};

/// The reconciliation's flags.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Runs a reconciliation and prints its report (or its error) in `--format`; the exit
/// status is 0 when everything matched, 1 on a discrepancy, 2 on an error.
pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<ExitCode> {
    let source = args.bill.map_or(BillSource::Download, BillSource::File);
    if matches!(source, BillSource::Download) {
        // Downloading the bill signs a request and verifies WeChat's answer.
        wxledger::settings::require_production_pay_credentials(settings)?;
    }
    let result = finance::reconcile::reconcile_bill(settings, source, args.date).await;
    let printed = match &result {
        Ok(r) => Ok((r.to_text(), r.to_json().to_string(), r.exit_code())),
        Err(e) => Err((format!("{e} ({})", e.code()), e.to_json().to_string())),
    };
    Ok(print_report("reconcile", args.format, printed))
}
