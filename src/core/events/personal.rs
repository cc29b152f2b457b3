//! Personal data in events: the sealed form it travels in (`user.registered`,
//! `user.logged_in`, `user.phone_bound` and `user.profile_updated`, each v2), the keyed blind index that keeps a phone on one user, and
//! `user.erased`. The keys themselves never enter the stream (see [`crate::store::privacy`]).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PhoneSource;

/// A value sealed with AES-256-GCM under one user's data key (associated data: the
/// user id and the field, see [`crate::store::privacy::DataKey`]). Once that key is destroyed
/// no one can read it again: the value is erased wherever a copy of the event lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Which data key sealed it (`user_keys.key_id`).
    pub key_id: Uuid,
    /// Base64 of nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes).
    pub ciphertext: String,
}

/// A stored [`Sealed`] that is not `<key_id>:<base64>`.
#[derive(Debug, thiserror::Error)]
#[error("not a sealed value (<key_id>:<base64>)")]
pub struct SealedParseError;

/// The column form `<key_id>:<ciphertext>` (one text column in the projections).
impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_id, self.ciphertext)
    }
}

impl FromStr for Sealed {
    type Err = SealedParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key_id, ciphertext) = s.split_once(':').ok_or(SealedParseError)?;
        Ok(Self {
            key_id: key_id.parse().map_err(|_| SealedParseError)?,
            ciphertext: ciphertext.to_owned(),
        })
    }
}

/// HMAC-SHA256 of a normalized phone (`+<country code><number>`) under the blind-index
/// key (`privacy.blind_index_key`), as 64 lowercase hex digits. Equal phones have equal
/// indexes, so the fold can keep a phone on one user without reading it; without the key
/// the index cannot be tested against guessed numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlindIndex(String);

/// Not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("a blind index is 64 lowercase hex digits")]
pub struct BlindIndexParseError;

impl BlindIndex {
    /// The index of a 32-byte HMAC output.
    pub fn from_mac(mac: &[u8; 32]) -> Self {
        Self(hex::encode(mac))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BlindIndex {
    type Error = BlindIndexParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s))
        } else {
            Err(BlindIndexParseError)
        }
    }
}

impl From<BlindIndex> for String {
    fn from(b: BlindIndex) -> String {
        b.0
    }
}

impl fmt::Display for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `user.registered` v2: a user registered on their first login; the unionid, when
/// WeChat reported one, travels sealed (the openid stays readable: see the README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredSealed {
    /// Stable id, derived from the app id and openid.
    pub user_id: Uuid,
    /// The user's openid under our app id.
    pub openid: String,
    /// The unionid as a JSON string, sealed (field `unionid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<Sealed>,
}

/// `user.logged_in` v2: a known user logged in again; the unionid travels sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedInSealed {
    /// Who logged in.
    pub user_id: Uuid,
    /// The unionid WeChat returned this time, if any, as a JSON string, sealed (field
    /// `unionid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<Sealed>,
}

/// `user.phone_bound` v2: a user bound a phone WeChat vouched for; the number travels
/// sealed, and only its blind index is readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneSealed {
    /// Whose phone.
    pub user_id: Uuid,
    /// `{"country_code", "pure_phone_number"}` as JSON, sealed (field `phone`).
    pub phone: Sealed,
    /// The phone's blind index: the fold's key for "one user per phone".
    pub phone_bidx: BlindIndex,
    /// Which WeChat path vouched for it.
    pub source: PhoneSource,
}

/// `user.profile_updated` v2: a user set their profile; nickname and avatar travel sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSealed {
    /// Whose profile.
    pub user_id: Uuid,
    /// `{"nickname", "avatar_url"}` as JSON, sealed (field `profile`).
    pub profile: Sealed,
}

/// `user.erased` v1: the user's data key was destroyed (crypto-shredding); every sealed
/// value of theirs is unreadable from now on, their phone is free for another user, and
/// their readable personal data (from version 1 events) leaves the projections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserErased {
    /// Who was erased.
    pub user_id: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_through_their_column_form() {
        let sealed = Sealed {
            key_id: Uuid::from_u128(7),
            ciphertext: "AAEC+/==".into(),
        };
        assert_eq!(sealed.to_string().parse::<Sealed>().unwrap(), sealed);
        assert!("no-colon".parse::<Sealed>().is_err());
        assert!("not-a-uuid:AA".parse::<Sealed>().is_err());
    }

    #[test]
    fn blind_indexes_are_64_lowercase_hex_digits() {
        let ok = "ab".repeat(32);
        assert!(BlindIndex::try_from(ok.clone()).is_ok());
        assert!(BlindIndex::try_from(ok.to_uppercase()).is_err());
        assert!(BlindIndex::try_from(String::from("ab")).is_err());
        let json = serde_json::json!({"user_id": Uuid::nil(), "phone": {"key_id": Uuid::nil(),
            "ciphertext": "AA"}, "phone_bidx": "+8613800138000", "source": "phone_code"});
        assert!(serde_json::from_value::<PhoneSealed>(json).is_err());
    }
}
