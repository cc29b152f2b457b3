//! The batch sink: apply the stream in batches of events with the live projector's own
//! code (`projector::apply_batch`). Slow; kept to compare with the full rebuild.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{as_of::AsOf, error::ReplayError, progress::Progress};
use crate::{
    core::events::Quarantine,
    store::{
        projector::{apply_batch, ProjectorError},
        stream::EventLog,
    },
};

/// How many events one transaction applies.
const BATCH: usize = 2_000;

/// Applies every event up to `end` that `as_of` includes, but those in `quarantine`, to `client`'s schema (migrated
/// and empty), a transaction per batch. `progress` is called about once a second and
/// once at the end.
pub async fn apply_in_batches(
    mut client: tokio_postgres::Client,
    log: EventLog,
    quarantine: &Quarantine,
    as_of: AsOf,
    end: u64,
    mut progress: impl FnMut(&Progress),
) -> Result<Progress, ReplayError> {
    let started = Instant::now();
    let mut done = Progress::start(end);
    let mut checkpoint = 0;
    let mut last_report = Instant::now();
    if end > 0 {
        let mut messages = log.read_range(1..=end).await?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(message) = messages.next().await {
            let (seq, payload) = message?;
            done.read += 1;
            done.seq = seq;
            let rec = quarantine
                .read(seq, &payload)
                .map_err(|source| ProjectorError::Decode { seq, source })?;
            if let Some(rec) = rec.filter(|rec| as_of.includes(rec)) {
                batch.push(rec);
            }
            if batch.len() >= BATCH || seq == end {
                if !batch.is_empty() {
                    checkpoint = apply_batch(&mut client, checkpoint, &batch).await?;
                    done.checkpoint = checkpoint;
                    done.applied += batch.len() as u64;
                    batch.clear();
                }
                if last_report.elapsed() >= Duration::from_secs(1) {
                    done.elapsed = started.elapsed();
                    progress(&done);
                    last_report = Instant::now();
                }
            }
        }
    }
    done.elapsed = started.elapsed();
    progress(&done);
    Ok(done)
}
