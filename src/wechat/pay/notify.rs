//! The body of an API v3 notify: `{id, event_type, resource}` with the resource sealed
//! under the APIv3 key. The webhook reads it as it arrives; the audit reads recorded ones
//! again.

use serde::Deserialize;

/// A notify's body, the fields wxledger reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Notify {
    /// The notify's id (the same across WeChat's retries).
    pub id: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, ...
    pub event_type: String,
    /// The sealed payload.
    pub resource: Resource,
}

/// A notify's `resource`: `AEAD_AES_256_GCM` under the APIv3 key.
#[derive(Debug, Clone, Deserialize)]
pub struct Resource {
    /// Always `AEAD_AES_256_GCM` today.
    pub algorithm: String,
    /// Base64 ciphertext with its tag.
    pub ciphertext: String,
    /// Associated data (may be empty).
    #[serde(default)]
    pub associated_data: String,
    /// The 12-byte nonce.
    pub nonce: String,
}
