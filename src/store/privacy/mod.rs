//! Personal data, erasable by crypto-shredding: each user's personal data enters events
//! sealed under a data key of their own, kept in Postgres (`user_keys`, never in the
//! stream) and itself sealed under the key-encryption key of the settings. Destroying a
//! user's data key erases their data wherever the events are copied; the money facts
//! stay readable. Phones also get a keyed blind index so the fold can keep a phone on one
//! user without reading it.

pub mod erase;
pub mod keys;
pub mod settings;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

pub use erase::{erase_user, EraseError, Erasure};
pub use keys::{KeyError, UserKey};
pub use settings::PrivacySettings;

use crate::core::{
    crypto::Sealer,
    events::{BlindIndex, Sealed},
    fold::Phone,
};

/// The personal fields that travel sealed; each is bound to its field by the associated
/// data, so one field's ciphertext cannot pass for another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `user.phone_bound` v2 `phone`.
    Phone,
    /// `user.profile_updated` v2 `profile`.
    Profile,
    /// `user.registered` and `user.logged_in` v2 `unionid`.
    Unionid,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Phone => "phone",
            Field::Profile => "profile",
            Field::Unionid => "unionid",
        }
    }
}

/// A sealed value that cannot be read: its key is destroyed or another one, or it was
/// altered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("personal data cannot be opened (erased, or not sealed under this key)")]
pub struct Unreadable;

/// The profile as sealed in `user.profile_updated` v2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Display name.
    pub nickname: String,
    /// Avatar URL, if any.
    pub avatar_url: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhonePlain {
    country_code: String,
    pure_phone_number: String,
}

/// The keys of the settings: the key-encryption key and the blind-index key.
#[derive(Clone)]
pub struct Vault {
    kek: Sealer,
    bidx_key: [u8; 32],
}

impl Vault {
    /// The vault of `settings` (development keys where unset).
    pub fn new(settings: &PrivacySettings) -> Self {
        Self {
            kek: Sealer::new(&settings.data_key_encryption_key()),
            bidx_key: settings.blind_index_key(),
        }
    }

    /// The phone's blind index: HMAC-SHA256 over `phone:+<country code><number>`.
    pub fn blind_index(&self, phone: &Phone) -> BlindIndex {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.bidx_key).expect("HMAC takes any key");
        mac.update(b"phone:");
        mac.update(phone.key().as_bytes());
        BlindIndex::from_mac(&mac.finalize().into_bytes().into())
    }

    /// A fresh data key for `user_id`, and its sealed form for `user_keys`.
    pub fn new_data_key(&self, user_id: Uuid) -> (DataKey, Vec<u8>) {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let key_id = Uuid::new_v4();
        let sealed = self.kek.seal(&key_owner(user_id, key_id), &key);
        (DataKey::new(user_id, key_id, &key), sealed)
    }

    /// Opens a data key read from `user_keys`.
    pub fn open_data_key(
        &self,
        user_id: Uuid,
        key_id: Uuid,
        sealed: &[u8],
    ) -> Result<DataKey, Unreadable> {
        let key: [u8; 32] = self
            .kek
            .open(&key_owner(user_id, key_id), sealed)
            .map_err(|_| Unreadable)?
            .try_into()
            .map_err(|_| Unreadable)?;
        Ok(DataKey::new(user_id, key_id, &key))
    }
}

/// The associated data of a sealed data key: it opens only for its user and key id.
fn key_owner(user_id: Uuid, key_id: Uuid) -> Vec<u8> {
    format!("user_key:{user_id}:{key_id}").into_bytes()
}

/// One user's data key, opened.
#[derive(Clone)]
pub struct DataKey {
    user_id: Uuid,
    key_id: Uuid,
    cipher: Sealer,
}

impl DataKey {
    fn new(user_id: Uuid, key_id: Uuid, key: &[u8; 32]) -> Self {
        Self {
            user_id,
            key_id,
            cipher: Sealer::new(key),
        }
    }

    /// The key's id, as events name it.
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    /// Seals `plaintext` as `field` of this key's user (associated data
    /// `<user_id>:<field>`).
    pub fn seal(&self, field: Field, plaintext: &[u8]) -> Sealed {
        Sealed {
            key_id: self.key_id,
            ciphertext: B64.encode(self.cipher.seal(&self.aad(field), plaintext)),
        }
    }

    /// Opens a value sealed as `field` of this key's user.
    pub fn open(&self, field: Field, sealed: &Sealed) -> Result<Vec<u8>, Unreadable> {
        if sealed.key_id != self.key_id {
            return Err(Unreadable);
        }
        let bytes = B64.decode(&sealed.ciphertext).map_err(|_| Unreadable)?;
        self.cipher
            .open(&self.aad(field), &bytes)
            .map_err(|_| Unreadable)
    }

    /// Seals a phone.
    pub fn seal_phone(&self, phone: &Phone) -> Sealed {
        let plain = PhonePlain {
            country_code: phone.country_code.clone(),
            pure_phone_number: phone.pure_phone_number.clone(),
        };
        self.seal(Field::Phone, &to_json(&plain))
    }

    /// Opens a sealed phone.
    pub fn open_phone(&self, sealed: &Sealed) -> Result<Phone, Unreadable> {
        let plain: PhonePlain =
            serde_json::from_slice(&self.open(Field::Phone, sealed)?).map_err(|_| Unreadable)?;
        Ok(Phone::new(&plain.country_code, &plain.pure_phone_number))
    }

    /// Seals a profile.
    pub fn seal_profile(&self, profile: &Profile) -> Sealed {
        self.seal(Field::Profile, &to_json(profile))
    }

    /// Opens a sealed profile.
    pub fn open_profile(&self, sealed: &Sealed) -> Result<Profile, Unreadable> {
        serde_json::from_slice(&self.open(Field::Profile, sealed)?).map_err(|_| Unreadable)
    }

    /// Seals a unionid.
    pub fn seal_unionid(&self, unionid: &str) -> Sealed {
        self.seal(Field::Unionid, &to_json(&unionid))
    }

    /// Opens a sealed unionid.
    pub fn open_unionid(&self, sealed: &Sealed) -> Result<String, Unreadable> {
        serde_json::from_slice(&self.open(Field::Unionid, sealed)?).map_err(|_| Unreadable)
    }

    fn aad(&self, field: Field) -> Vec<u8> {
        format!("{}:{}", self.user_id, field.name()).into_bytes()
    }
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs of strings serialize")
}

#[cfg(test)]
mod tests;
