//! Durations read from whole microseconds, milliseconds or seconds: a key keeps its `_us`,
//! `_ms` or `_secs`
//! suffix (what operators' files and `WXLEDGER__...` variables say), while its field
//! hands out a [`Duration`], so no caller converts units.
//!
//! Used as `#[serde(rename = "poll_ms", deserialize_with = "millis")]` on a field named
//! for what it is (`poll`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A [`Duration`] from a whole number of milliseconds.
pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A [`Duration`] from a whole number of microseconds.
pub(crate) fn micros<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_micros)
}

/// A [`Duration`] from a whole number of seconds.
pub(crate) fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use figment::{providers::Serialized, Figment};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Both {
        #[serde(rename = "wait_ms", deserialize_with = "millis")]
        wait: Duration,
        #[serde(rename = "ttl_secs", deserialize_with = "seconds")]
        ttl: Duration,
    }

    #[test]
    fn keys_keep_their_unit_and_fields_carry_it() {
        let read = |wait: serde_json::Value, ttl: serde_json::Value| {
            Figment::from(Serialized::defaults(
                serde_json::json!({ "wait_ms": wait, "ttl_secs": ttl }),
            ))
            .extract_lossy::<Both>()
            // figment's error is large; the message is enough here.
            .map_err(|e| e.to_string())
        };
        let both = read(1_500.into(), 30.into()).expect("numbers read");
        assert_eq!(both.wait, Duration::from_millis(1_500));
        assert_eq!(both.ttl, Duration::from_secs(30));
        // The environment's form: digits as text.
        let both = read("250".into(), "2".into()).expect("digits read");
        assert_eq!(
            (both.wait, both.ttl),
            (Duration::from_millis(250), Duration::from_secs(2))
        );
        assert!(
            read((-1).into(), 30.into()).is_err(),
            "no negative duration"
        );
        assert!(read(1.into(), "soon".into()).is_err(), "no words");
    }
}
