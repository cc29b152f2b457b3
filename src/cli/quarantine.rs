//! `wxledger quarantine <seq> --reason …`: skip an event the projector halted on.

use wxledger::{
    store::{
        quarantine::{quarantine, Quarantined},
        stream::EventLog,
    },
    Settings,
};

/// The quarantine's arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The stream sequence of the unreadable event (the projector's ERROR line and
    /// `wxledger_projector_halted_seq` name it).
    seq: u64,
    /// Why it is skipped, for the failure log (an incident or ticket reference).
    #[arg(long)]
    reason: String,
}

/// Appends `event.quarantined` for the event, and says what happened.
pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let log = EventLog::open(&settings.nats).await?;
    let correlation_id = format!("cli:quarantine:{}", uuid::Uuid::new_v4());
    let seq = args.seq;
    let done = quarantine(&log, seq, &args.reason, &correlation_id, chrono::Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("quarantine: {e}"))?;
    match done {
        Quarantined::Appended { appended, error } => println!(
            "event {seq} quarantined ({error}): event.quarantined at sequence {}; \
             the projector skips it",
            appended.seq
        ),
        Quarantined::Already => println!("event {seq} was already quarantined"),
    }
    log.close().await;
    Ok(())
}
