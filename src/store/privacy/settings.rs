//! `[privacy]` settings: the keys of personal data (crypto-shredding), never in the stream.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{core::crypto::decode_aes256_key, settings::error::SettingsError};

/// The development key-encryption key, used only when `data_key_encryption_key` is unset.
/// It is public (it is in this source): production must set its own.
pub const DEV_DATA_KEY_ENCRYPTION_KEY: [u8; 32] = *b"wxledger-dev-data-key-encryption";

/// The development blind-index key, used only when `blind_index_key` is unset (public too).
pub const DEV_BLIND_INDEX_KEY: [u8; 32] = *b"wxledger-dev-blind-index-key-32b";

/// The keys that protect personal data in events.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// Base64 of the 32-byte AES-256-GCM key-encryption key that seals each user's data
    /// key in `user_keys`. Unset: the public development key (development only).
    pub data_key_encryption_key: Option<SecretString>,
    /// Base64 of the 32-byte HMAC-SHA256 key of phone blind indexes. It must stay the same
    /// for the life of the stream (events carry indexes made with it); a leak lets whoever
    /// holds the events test guessed numbers. Unset: the public development key.
    pub blind_index_key: Option<SecretString>,
}

impl PrivacySettings {
    /// Checks each key is the base64 of 32 bytes, and that the two keys differ.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let kek = decode(
            "privacy.data_key_encryption_key",
            &self.data_key_encryption_key,
        )?;
        let bidx = decode("privacy.blind_index_key", &self.blind_index_key)?;
        if kek.is_some() && kek == bidx {
            return Err(SettingsError::Invalid {
                field: "privacy.blind_index_key",
                problem: "must differ from privacy.data_key_encryption_key".into(),
            });
        }
        Ok(())
    }

    /// The key-encryption key: configured, or the development one.
    pub fn data_key_encryption_key(&self) -> [u8; 32] {
        key_or(&self.data_key_encryption_key, DEV_DATA_KEY_ENCRYPTION_KEY)
    }

    /// The blind-index key: configured, or the development one.
    pub fn blind_index_key(&self) -> [u8; 32] {
        key_or(&self.blind_index_key, DEV_BLIND_INDEX_KEY)
    }

    /// The fields left unset, which fall back to public development keys.
    pub fn development_keys_in_use(&self) -> Vec<&'static str> {
        let mut unset = Vec::new();
        if self.data_key_encryption_key.is_none() {
            unset.push("privacy.data_key_encryption_key");
        }
        if self.blind_index_key.is_none() {
            unset.push("privacy.blind_index_key");
        }
        unset
    }
}

fn decode(
    field: &'static str,
    key: &Option<SecretString>,
) -> Result<Option<[u8; 32]>, SettingsError> {
    key.as_ref()
        .map(|k| {
            decode_aes256_key(k.expose_secret()).ok_or_else(|| SettingsError::Invalid {
                field,
                problem: "must be the base64 of exactly 32 bytes".into(),
            })
        })
        .transpose()
}

fn key_or(key: &Option<SecretString>, dev: [u8; 32]) -> [u8; 32] {
    key.as_ref().map_or(dev, |k| {
        decode_aes256_key(k.expose_secret()).expect("validated at load")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kek: Option<&str>, bidx: Option<&str>) -> PrivacySettings {
        PrivacySettings {
            data_key_encryption_key: kek.map(|k| SecretString::from(k.to_owned())),
            blind_index_key: bidx.map(|k| SecretString::from(k.to_owned())),
        }
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64_and_differ() {
        let a = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="; // 32 × 'A'
        let b = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="; // 32 × 'B'
        assert!(settings(None, None).validate().is_ok());
        assert!(settings(Some(a), Some(b)).validate().is_ok());
        let err = settings(Some("c2hvcnQ="), None).validate().unwrap_err();
        assert!(err.to_string().contains("privacy.data_key_encryption_key"));
        let err = settings(None, Some("!")).validate().unwrap_err();
        assert!(err.to_string().contains("privacy.blind_index_key"));
        assert!(settings(Some(a), Some(a)).validate().is_err());
        assert_eq!(
            settings(Some(a), None).data_key_encryption_key(),
            [b'A'; 32]
        );
        assert_eq!(
            settings(Some(a), None).development_keys_in_use(),
            ["privacy.blind_index_key"]
        );
    }
}
