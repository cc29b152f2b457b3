//! `wxledger quarantine <seq> --reason …`: skip an event no build can read, by appending
//! `event.quarantined` (see [`crate::core::events::quarantine`]). Only an event that does
//! not decode may be quarantined: one this build reads was (or will be) applied, and
//! skipping it in a replay would make the replay differ from the live books.

use chrono::{DateTime, Utc};

use crate::{
    core::events::{quarantine::envelope_kind, DecodeError, Event, EventQuarantined, Recorded},
    store::stream::{log::Draft, Appended, EventLog, LogError},
};

/// Why an event was not quarantined.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// The stream has no event at that sequence (yet).
    #[error("the stream has no event {0}")]
    NoSuchEvent(u64),
    /// The event decodes: it is applied, not skipped.
    #[error("event {seq} ({kind}) can be read; only an unreadable event is quarantined")]
    Readable {
        /// Its sequence.
        seq: u64,
        /// Its type.
        kind: &'static str,
    },
    /// The reason is empty.
    #[error("a reason is required: it goes to the failure log")]
    NoReason,
    /// NATS failed; nothing or the whole event was appended (a retry appends it once).
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What [`quarantine`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quarantined {
    /// `event.quarantined` was appended (or found inside the duplicate window).
    Appended {
        /// The quarantine event's acknowledgement.
        appended: Appended,
        /// Why the skipped event could not be read.
        error: String,
    },
    /// The event was quarantined before; nothing was appended.
    Already,
}

/// Quarantines the event at `seq` for `reason`: appends `event.quarantined` (once per
/// sequence), after which every reader of the stream skips it and the failure log gets
/// a row `event_quarantined` naming it.
pub async fn quarantine(
    log: &EventLog,
    seq: u64,
    reason: &str,
    correlation_id: &str,
    now: DateTime<Utc>,
) -> Result<Quarantined, QuarantineError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(QuarantineError::NoReason);
    }
    if seq == 0 {
        return Err(QuarantineError::NoSuchEvent(seq));
    }
    let payload = log
        .payload_at(seq)
        .await?
        .ok_or(QuarantineError::NoSuchEvent(seq))?;
    let error: DecodeError = match Recorded::from_payload(seq, &payload) {
        Ok(rec) => {
            return Err(QuarantineError::Readable {
                seq,
                kind: rec.event.kind(),
            })
        }
        Err(e) => e,
    };
    if log.quarantine().await?.contains(seq) {
        return Ok(Quarantined::Already);
    }
    let (kind, version) = envelope_kind(&payload);
    let event = Event::Quarantined(EventQuarantined {
        seq,
        reason: reason.to_owned(),
        kind,
        version,
    });
    let appended = log
        .append(Draft {
            event: &event,
            correlation_id,
            msg_id: &event.msg_id(None),
            occurred_at: now,
        })
        .await?;
    tracing::warn!(seq, at = appended.seq, "event quarantined");
    Ok(Quarantined::Appended {
        appended,
        error: error.to_string(),
    })
}
