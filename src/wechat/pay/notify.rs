//! The body of an API v3 notify: `{id, event_type, resource}` with the resource sealed
//! under the APIv3 key. The webhook reads it as it arrives; the audit reads recorded ones
//! again, with the same checks: [`believe`] (and [`signed`] for any v3 message).

use chrono::DateTime;
use serde::Deserialize;

use super::{
    client::{verify_signature, Unbelieved},
    crypto::{ApiV3Key, DecryptError},
    keys::NoKey,
    PayClient,
};
use crate::core::events::Evidence;

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

/// Whether a notify's timestamp must be near our clock: the webhook's, as it arrives
/// (and the key is the one valid now); not the audit's, re-reading old evidence (the key
/// is the one valid when the message was signed: genuine evidence outlives the
/// certificate that signed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within `pay.tolerance_secs` of now; the key as it is now.
    Now,
    /// Any time; the key as it was at the signed timestamp.
    AsSigned,
}

/// Why a message or notify said to be WeChat Pay's is not believed. The webhook and the
/// audit word each their own way.
#[derive(Debug)]
pub enum Doubt {
    /// A probe, a timestamp that is no time (or not fresh), or a signature that does not
    /// verify.
    Unbelieved(Unbelieved),
    /// `Wechatpay-Signature-Type` is not `WECHATPAY2-SHA256-RSA2048`.
    SignatureType(String),
    /// No key for the serial (at the time asked).
    NoKey(NoKey),
    /// The signed body is not a notify.
    Body(serde_json::Error),
    /// The resource's algorithm is not `AEAD_AES_256_GCM`.
    Algorithm(String),
    /// The resource does not decrypt under the APIv3 key.
    Undecryptable(DecryptError),
}

/// An API v3 message signed by WeChat Pay: not a `WECHATPAY/SIGNTEST/` probe, a timestamp
/// that is a time (and fresh, if asked), WeChat's signature type, and RSA-SHA256 over
/// `timestamp\nnonce\nbody\n` of the raw body (`evidence.body`) under the key the serial
/// names.
pub async fn signed(
    pay: &PayClient,
    evidence: &Evidence,
    freshness: Freshness,
) -> Result<(), Doubt> {
    let at = match freshness {
        Freshness::Now => {
            pay.check_fresh(evidence).map_err(Doubt::Unbelieved)?;
            pay.now()
        }
        Freshness::AsSigned => {
            if evidence.signature.starts_with("WECHATPAY/SIGNTEST/") {
                return Err(Doubt::Unbelieved(Unbelieved::Probe));
            }
            evidence
                .timestamp
                .parse::<i64>()
                .ok()
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
                .ok_or(Doubt::Unbelieved(Unbelieved::Timestamp))?
        }
    };
    if let Some(kind) = &evidence.signature_type {
        if kind != "WECHATPAY2-SHA256-RSA2048" {
            return Err(Doubt::SignatureType(kind.clone()));
        }
    }
    let key = pay
        .key_at(&evidence.serial, at)
        .await
        .map_err(Doubt::NoKey)?;
    verify_signature(evidence, &key, evidence.body.as_bytes()).map_err(Doubt::Unbelieved)
}

impl Notify {
    /// The notify a (signed) body is.
    pub fn read(body: &[u8]) -> Result<Self, Doubt> {
        serde_json::from_slice(body).map_err(Doubt::Body)
    }

    /// The resource's plaintext, decrypted under the APIv3 key.
    pub fn open(&self, key: &ApiV3Key) -> Result<Vec<u8>, Doubt> {
        let r = &self.resource;
        if r.algorithm != "AEAD_AES_256_GCM" {
            return Err(Doubt::Algorithm(r.algorithm.clone()));
        }
        key.decrypt(&r.nonce, &r.associated_data, &r.ciphertext)
            .map_err(Doubt::Undecryptable)
    }
}

/// A v3 notify believed: [`signed`], a notify, its resource opened. Answers the notify and
/// the resource's plaintext.
pub async fn believe(
    pay: &PayClient,
    evidence: &Evidence,
    freshness: Freshness,
) -> Result<(Notify, Vec<u8>), Doubt> {
    signed(pay, evidence, freshness).await?;
    let notify = Notify::read(evidence.body.as_bytes())?;
    let plain = notify.open(pay.apiv3_key())?;
    Ok((notify, plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{core::clock, settings::Settings, sim::devkeys, wechat::pay::crypto::SigningKey};

    fn pay() -> PayClient {
        let mut settings = Settings::development();
        // No certificate downloads: the public key answers for its id.
        settings.pay.platform_certificates = false;
        PayClient::new(&settings.pay, &settings.wechat.appid, clock::system()).unwrap()
    }

    fn evidence(timestamp: &str, signature: Option<&str>) -> Evidence {
        let body = r#"{"id":"n1"}"#;
        let wechat = SigningKey::from_pkcs8_pem(devkeys::PUBLIC_KEY_MODE_KEY_PEM).unwrap();
        let message =
            crate::wechat::pay::crypto::response_message(timestamp, "n0nce", body.as_bytes());
        Evidence {
            serial: devkeys::PUBLIC_KEY_ID.into(),
            signature: signature.map_or_else(|| wechat.sign(&message), str::to_owned),
            timestamp: timestamp.into(),
            nonce: "n0nce".into(),
            signature_type: Some("WECHATPAY2-SHA256-RSA2048".into()),
            body: body.into(),
        }
    }

    #[tokio::test]
    async fn old_evidence_is_believed_as_signed_but_not_as_now() {
        let pay = pay();
        let old = evidence("1700000000", None);
        assert!(signed(&pay, &old, Freshness::AsSigned).await.is_ok());
        assert!(matches!(
            signed(&pay, &old, Freshness::Now).await,
            Err(Doubt::Unbelieved(Unbelieved::Stale(_)))
        ));
        let now = evidence(&pay.now().timestamp().to_string(), None);
        assert!(signed(&pay, &now, Freshness::Now).await.is_ok());
        for freshness in [Freshness::Now, Freshness::AsSigned] {
            let probe = evidence("1700000000", Some("WECHATPAY/SIGNTEST/xyz"));
            assert!(matches!(
                signed(&pay, &probe, freshness).await,
                Err(Doubt::Unbelieved(Unbelieved::Probe))
            ));
            assert!(matches!(
                signed(&pay, &evidence("soon", None), freshness).await,
                Err(Doubt::Unbelieved(Unbelieved::Timestamp))
            ));
        }
    }
}
