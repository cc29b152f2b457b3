//! WeChat Pay API v3 crypto: request signatures (`WECHATPAY2-SHA256-RSA2048`), verifying
//! answers and callbacks over their raw bytes, `AEAD_AES_256_GCM` resources, and the
//! `paySign` of `wx.requestPayment`.
//!
//! RSA runs on `ring`: its private-key operations are constant-time (the `rsa` crate 0.9
//! is not: RUSTSEC-2023-0071) and it verifies several times faster (DESIGN.md's table).

use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use ring::{
    rand::SystemRandom,
    signature::{RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256},
};
use x509_cert::{der::Decode, spki::SubjectPublicKeyInfoRef};

/// A key or certificate (PEM) that could not be read; not a user's data key
/// (`privacy::KeyError`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PemError {
    /// Not PEM with the expected label.
    #[error("not a PEM {0}")]
    Pem(&'static str),
    /// PEM, but its DER is not what the label says.
    #[error("invalid {0}")]
    Der(&'static str),
}

/// A signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("signature does not verify")]
pub struct BadSignature;

/// A resource did not decrypt: wrong key, nonce or associated data, or altered bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("resource does not decrypt under the APIv3 key")]
pub struct DecryptError;

pub(crate) fn pem_der(pem: &str, label: &'static str) -> Result<Vec<u8>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or(PemError::Pem(label))? + begin.len();
    let stop = pem[start..].find(&end).ok_or(PemError::Pem(label))? + start;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(body).map_err(|_| PemError::Pem(label))
}

/// The merchant's (or, in the simulator, the platform's) RSA private key.
pub struct SigningKey {
    pair: RsaKeyPair,
    rng: SystemRandom,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `apiclient_key.pem`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, PemError> {
        let der = pem_der(pem, "PRIVATE KEY")?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| PemError::Der("PKCS#8 RSA key"))?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// Base64 RSA-SHA256 (PKCS#1 v1.5) signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .expect("signing with a valid key into a modulus-sized buffer cannot fail");
        B64.encode(signature)
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            pkcs1: self.pair.public().as_ref().to_vec(),
        }
    }
}

/// An RSA public key that WeChat Pay signs with (public key mode or a platform certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    /// DER `RSAPublicKey` (PKCS#1), what `ring` verifies with.
    pkcs1: Vec<u8>,
}

impl VerifyingKey {
    /// Reads an SPKI PEM (`-----BEGIN PUBLIC KEY-----`, as `pub_key.pem`).
    pub fn from_public_key_pem(pem: &str) -> Result<Self, PemError> {
        let der = pem_der(pem, "PUBLIC KEY")?;
        let spki = SubjectPublicKeyInfoRef::from_der(&der).map_err(|_| PemError::Der("SPKI"))?;
        Ok(Self {
            pkcs1: spki.subject_public_key.raw_bytes().to_vec(),
        })
    }

    // `from_certificate_pem` is in certificate.rs, beside the X.509 parsing it uses, so
    // that this module needs nothing of certificates.

    /// A key from its DER `RSAPublicKey` (PKCS#1), as a certificate carries it.
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Self {
        Self {
            pkcs1: der.to_vec(),
        }
    }

    /// The DER `RSAPublicKey` (PKCS#1).
    pub fn pkcs1_der(&self) -> &[u8] {
        &self.pkcs1
    }

    /// Checks a base64 RSA-SHA256 signature over `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), BadSignature> {
        let signature = B64.decode(signature_b64).map_err(|_| BadSignature)?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.pkcs1)
            .verify(message, &signature)
            .map_err(|_| BadSignature)
    }
}

/// A certificate serial as a canonical hex number: upper case, no leading zeros, so that
/// serials compare as numbers whatever their case or padding.
pub fn normalize_serial(serial: &str) -> String {
    let upper = serial.trim().to_ascii_uppercase();
    let trimmed = upper.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.to_owned()
    }
}

/// What a merchant signs for a request: `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// What WeChat Pay signs in an answer or callback: `TIMESTAMP\nNONCE\nBODY\n`, over the
/// body's raw bytes (never re-serialized JSON).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The `Authorization` header of a signed request.
pub fn authorization(
    mchid: &str,
    nonce: &str,
    timestamp: i64,
    serial_no: &str,
    signature: &str,
) -> String {
    format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"{mchid}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\",signature=\"{signature}\""
    )
}

/// What `paySign` signs for `wx.requestPayment`: `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn pay_sign_message(appid: &str, timestamp: &str, nonce: &str, package: &str) -> Vec<u8> {
    format!("{appid}\n{timestamp}\n{nonce}\n{package}\n").into_bytes()
}

/// The 32-byte APIv3 key.
#[derive(Clone)]
pub struct ApiV3Key(Aes256Gcm);

impl ApiV3Key {
    /// The key as the merchant platform shows it: 32 ASCII characters.
    pub fn new(key: &str) -> Option<Self> {
        let bytes: [u8; 32] = key.as_bytes().try_into().ok()?;
        Some(Self(Aes256Gcm::new(&bytes.into())))
    }

    /// Decrypts an `AEAD_AES_256_GCM` resource (base64 ciphertext with its 16-byte tag).
    pub fn decrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_b64: &str,
    ) -> Result<Vec<u8>, DecryptError> {
        if nonce.len() != 12 {
            return Err(DecryptError);
        }
        let ciphertext = B64.decode(ciphertext_b64).map_err(|_| DecryptError)?;
        self.0
            .decrypt(
                Nonce::from_slice(nonce.as_bytes()),
                Payload {
                    msg: &ciphertext,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| DecryptError)
    }

    /// Encrypts a resource the way WeChat Pay does (the simulator's half); `nonce` must be
    /// 12 bytes.
    pub fn encrypt(&self, nonce: &str, associated_data: &str, plaintext: &[u8]) -> String {
        assert_eq!(nonce.len(), 12, "AEAD_AES_256_GCM nonces are 12 bytes");
        let ciphertext = self
            .0
            .encrypt(
                Nonce::from_slice(nonce.as_bytes()),
                Payload {
                    msg: plaintext,
                    aad: associated_data.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a resource cannot fail");
        B64.encode(ciphertext)
    }
}

#[cfg(test)]
mod tests;
