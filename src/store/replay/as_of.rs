//! The point a replay stops at: a stream sequence or a time.

use chrono::{DateTime, FixedOffset};

use crate::core::events::Recorded;

/// The point to replay to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event up to and including this stream sequence.
    Seq(u64),
    /// Every event wxledger had accepted at this time (`occurred_at` not after it).
    Time(DateTime<FixedOffset>),
}

impl AsOf {
    /// A stream sequence (digits) or an RFC 3339 time with its offset.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(seq) = s.parse::<u64>() {
            return Ok(AsOf::Seq(seq));
        }
        DateTime::parse_from_rfc3339(s)
            .map(AsOf::Time)
            .map_err(|e| {
                format!("--as-of {s:?}: neither a stream sequence nor an RFC 3339 time ({e})")
            })
    }

    pub(crate) fn includes(self, rec: &Recorded) -> bool {
        match self {
            AsOf::Seq(seq) => rec.seq <= seq,
            AsOf::Time(t) => rec.occurred_at <= t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_a_sequence_or_an_rfc3339_time() {
        assert_eq!(AsOf::parse("42"), Ok(AsOf::Seq(42)));
        let t = AsOf::parse("2026-11-01T00:00:00+08:00").unwrap();
        assert_eq!(
            t,
            AsOf::Time(DateTime::parse_from_rfc3339("2026-10-31T16:00:00Z").unwrap())
        );
        assert!(AsOf::parse("yesterday").is_err());
        assert!(AsOf::parse("-1").is_err());
        assert!(AsOf::parse("2026-11-01").is_err());
    }
}
