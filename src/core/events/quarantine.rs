//! Poison events: an event this build cannot read halts the projector until an operator
//! quarantines it (`wxledger quarantine <seq> --reason …`), which appends
//! `event.quarantined`. Every reader of the stream (the live projector, replay, audit)
//! then skips that sequence, so a replay decides exactly as the live projector did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DecodeError, Event, Recorded};

/// `event.quarantined` v1: the event at `seq` is skipped by every reader of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuarantined {
    /// The stream sequence of the skipped event.
    pub seq: u64,
    /// Why the operator skipped it, for the failure log.
    pub reason: String,
    /// The skipped event's type, when its envelope could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The skipped event's version, when its envelope could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// The sequences quarantined on a stream, each with the sequence of the
/// `event.quarantined` that skips it (the first one, if there are several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantine {
    skipped: BTreeMap<u64, u64>,
}

impl Quarantine {
    /// Notes a quarantine event read from the stream; other events are ignored.
    pub fn note(&mut self, rec: &Recorded) {
        if let Event::Quarantined(q) = &rec.event {
            self.skipped.entry(q.seq).or_insert(rec.seq);
        }
    }

    /// True when the event at `seq` is quarantined.
    pub fn contains(&self, seq: u64) -> bool {
        self.skipped.contains_key(&seq)
    }

    /// Reads the message at `seq`: `None` when it is quarantined. A quarantined event is
    /// skipped without being decoded, so a later build that could read it still decides
    /// as the build that skipped it.
    pub fn read(&self, seq: u64, payload: &[u8]) -> Result<Option<Recorded>, DecodeError> {
        if self.contains(seq) {
            return Ok(None);
        }
        Recorded::from_payload(seq, payload).map(Some)
    }
}

/// What can be told about an event that does not decode: its type and version when its
/// envelope reads, for the quarantine event and the alarm.
pub fn envelope_kind(payload: &[u8]) -> (Option<String>, Option<u32>) {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: Option<String>,
        version: Option<u32>,
    }
    match serde_json::from_slice::<Head>(payload) {
        Ok(head) => (head.kind, head.version),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn payload(kind: &str, version: u32, data: serde_json::Value) -> Vec<u8> {
        json!({"id": Uuid::nil(), "type": kind, "version": version,
               "occurred_at": "2026-11-21T08:00:00Z", "correlation_id": "c", "data": data})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_quarantined_sequence_is_skipped_and_no_other() {
        let quarantined = payload(
            "event.quarantined",
            1,
            json!({"seq": 2, "reason": "bad deploy"}),
        );
        let rec = Recorded::from_payload(5, &quarantined).unwrap();
        let mut q = Quarantine::default();
        assert!(q.read(2, b"garbage").is_err());
        q.note(&rec);
        assert!(q.contains(2) && !q.contains(5));
        assert_eq!(q.read(2, b"garbage").unwrap(), None);
        // Skipped even if a later build could read it.
        let good = payload("user.logged_in", 1, json!({"user_id": Uuid::nil()}));
        assert_eq!(q.read(2, &good).unwrap(), None);
        assert!(q.read(3, &good).unwrap().is_some());
        assert!(q.read(3, b"garbage").is_err());
    }

    #[test]
    fn the_kind_of_an_unreadable_event_is_told_when_its_envelope_reads() {
        let unknown = payload("order.placed", 9, json!({}));
        assert_eq!(
            envelope_kind(&unknown),
            (Some("order.placed".into()), Some(9))
        );
        assert_eq!(envelope_kind(b"\xff not json"), (None, None));
    }
}
