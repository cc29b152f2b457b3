//! The failure log's row for a quarantined event. The skip itself happens where the
//! stream is read ([`crate::core::events::Quarantine`]): the skipped event never reaches
//! the fold. Its `event.quarantined` does, later in the stream, and records here the one
//! row that explains the gap, the same live and in a replay.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Failure, Ledger, Verdict};
use crate::core::events::EventQuarantined;

/// The failure-log reason of a skipped event.
pub const QUARANTINED: &str = "event_quarantined";

/// Records that the event at `e.seq` was skipped, on the quarantine event's own row
/// (`seq`): a row per quarantine event, once however often it is applied.
pub(super) fn quarantined(
    ledger: &mut Ledger,
    seq: i64,
    at: DateTime<Utc>,
    e: &EventQuarantined,
) -> Verdict {
    let failure = Failure {
        seq,
        reason: QUARANTINED.to_owned(),
        out_trade_no: None,
        transaction_id: None,
        amount: None,
        detail: json!({"quarantined_seq": e.seq, "kind": e.kind, "version": e.version,
                       "reason": e.reason}),
        occurred_at: at,
    };
    if ledger.record_failure(failure) {
        Verdict::applied()
    } else {
        Verdict::AlreadyApplied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        events::{Event, Recorded},
        fold::State,
    };

    #[test]
    fn a_quarantine_records_one_failure_row_naming_the_skipped_sequence() {
        let rec = Recorded {
            seq: 9,
            id: uuid::Uuid::nil(),
            occurred_at: "2026-11-21T08:00:00Z".parse().unwrap(),
            correlation_id: "c".into(),
            event: Event::Quarantined(EventQuarantined {
                seq: 4,
                reason: "written by a canary build".into(),
                kind: Some("order.placed".into()),
                version: Some(9),
            }),
        };
        let mut state = State::default();
        assert!(state.apply(&rec).is_applied());
        assert_eq!(state.apply(&rec), Verdict::AlreadyApplied);
        let rows = state.ledger.take_new_failures();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].seq, rows[0].reason.as_str()), (9, QUARANTINED));
        assert_eq!(rows[0].detail["quarantined_seq"], 4);
        assert_eq!(rows[0].detail["reason"], "written by a canary build");
        assert_eq!(rows[0].detail["kind"], "order.placed");
    }
}
