//! The command line glue of each tool: its clap arguments and a `run` that loads nothing
//! itself (main.rs hands it the settings), calls the library and prints. Binary-only:
//! clap and anyhow stay out of the library's API.

pub mod audit;
pub mod bench;
pub mod demo;
pub mod erase_user;
pub mod events;
pub mod healthcheck;
pub mod migrate;
pub mod quarantine;
pub mod reconcile;
pub mod replay;
pub mod serve;
pub mod sim;

use std::process::ExitCode;

/// The report format of the finance commands (audit, reconcile).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For humans.
    Text,
    /// One JSON object.
    Json,
}

/// Prints a finance command's report (`(text, json, exit status)`) or its error
/// (`(message, json)`, exit status 2) in `format`: reports on stdout, a text error on
/// stderr.
pub fn print_report(
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
