//! Symmetric crypto: sealing session keys at rest (AES-256-GCM) and opening WeChat's
//! legacy `encryptedData` (AES-128-CBC, PKCS#7, key = the user's session key).

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use rand::{distributions::Alphanumeric, Rng, RngCore};

/// `len` random letters and digits (`[A-Za-z0-9]`): WeChat's nonces, and the ids and
/// codes the simulator and the benchmarks make up.
pub fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Decodes the base64 of a 32-byte key; `None` when it is not exactly that.
pub fn decode_aes256_key(b64: &str) -> Option<[u8; 32]> {
    B64.decode(b64.trim()).ok()?.try_into().ok()
}

/// Seals secrets (session keys) so that a database dump alone does not reveal them.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

/// A sealed value could not be opened: another key, another owner, or altered bytes.
#[derive(Debug, thiserror::Error)]
#[error("sealed value does not open under this key")]
pub struct OpenError;

const GCM_NONCE: usize = 12;

impl Sealer {
    /// A sealer under `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Encrypts `plaintext` bound to `owner` (associated data); output is nonce ‖ ciphertext.
    pub fn seal(&self, owner: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; GCM_NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: owner,
                },
            )
            .expect("AES-GCM encryption of a short buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Reverses [`Sealer::seal`] for the same `owner`.
    pub fn open(&self, owner: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < GCM_NONCE + 16 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(GCM_NONCE);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: owner,
                },
            )
            .map_err(|_| OpenError)
    }
}

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;
type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

/// `encryptedData` could not be opened: bad base64, wrong key or iv length, bad padding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenDataError {
    /// A field is not base64 or has the wrong length.
    #[error("{0} is not valid base64 of the expected length")]
    Encoding(&'static str),
    /// The padding did not check out: wrong key, wrong iv or altered data.
    #[error("encrypted data does not decrypt under this session key and iv")]
    Decrypt,
}

/// Decrypts WeChat open data (`encryptedData`, `iv`) under a base64 session key.
pub fn decrypt_open_data(
    session_key_b64: &str,
    encrypted_b64: &str,
    iv_b64: &str,
) -> Result<Vec<u8>, OpenDataError> {
    let key: [u8; 16] = B64
        .decode(session_key_b64)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(OpenDataError::Encoding("session key"))?;
    let iv: [u8; 16] = B64
        .decode(iv_b64)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(OpenDataError::Encoding("iv"))?;
    let data = B64
        .decode(encrypted_b64)
        .map_err(|_| OpenDataError::Encoding("encrypted_data"))?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(OpenDataError::Encoding("encrypted_data"));
    }
    Aes128CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&data)
        .map_err(|_| OpenDataError::Decrypt)
}

/// Encrypts open data the way WeChat does (the simulator's half of [`decrypt_open_data`]).
/// Returns base64 `(encrypted_data, iv)`.
pub fn encrypt_open_data(session_key: &[u8; 16], plaintext: &[u8]) -> (String, String) {
    let mut iv = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut iv);
    let ciphertext = Aes128CbcEnc::new(session_key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    (B64.encode(ciphertext), B64.encode(iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    // WeChat's own demo of open-data decryption (the docs' sample, also in
    // wechatpy tests/test_crypto.py `test_wxa_decrypt_message` and go-pay/wechat-sdk).
    const DEMO_SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const DEMO_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const DEMO_ENCRYPTED: &str = include_str!("../../tests/vectors/wxa_demo_encrypted_data.txt");
    const DEMO_PLAINTEXT: &str = include_str!("../../tests/vectors/wxa_demo_plaintext.json");

    #[test]
    fn decrypts_wechat_demo_vector() {
        let plain =
            decrypt_open_data(DEMO_SESSION_KEY, DEMO_ENCRYPTED.trim(), DEMO_IV).expect("decrypts");
        assert_eq!(std::str::from_utf8(&plain).unwrap(), DEMO_PLAINTEXT.trim());
    }

    #[test]
    fn wrong_iv_or_key_does_not_yield_the_plaintext() {
        let wrong_iv = B64.encode([7u8; 16]);
        let out = decrypt_open_data(DEMO_SESSION_KEY, DEMO_ENCRYPTED.trim(), &wrong_iv);
        // CBC has no MAC: a wrong iv garbles the first block only, so the caller must
        // also parse and check the watermark; the plaintext must differ either way.
        assert_ne!(out.ok().as_deref(), Some(DEMO_PLAINTEXT.trim().as_bytes()));
        let wrong_key = B64.encode([1u8; 16]);
        assert!(decrypt_open_data(&wrong_key, DEMO_ENCRYPTED.trim(), DEMO_IV).is_err());
        assert_eq!(
            decrypt_open_data(DEMO_SESSION_KEY, "not base64!", DEMO_IV),
            Err(OpenDataError::Encoding("encrypted_data"))
        );
    }

    #[test]
    fn open_data_round_trip() {
        let key = [9u8; 16];
        let (data, iv) = encrypt_open_data(&key, b"{\"a\":1}");
        let plain = decrypt_open_data(&B64.encode(key), &data, &iv).unwrap();
        assert_eq!(plain, b"{\"a\":1}");
    }

    #[test]
    fn sealed_values_open_only_for_their_owner_and_key() {
        let sealer = Sealer::new(&[3u8; 32]);
        let sealed = sealer.seal(b"user-1", b"session-key");
        assert_eq!(sealer.open(b"user-1", &sealed).unwrap(), b"session-key");
        assert!(sealer.open(b"user-2", &sealed).is_err());
        assert!(Sealer::new(&[4u8; 32]).open(b"user-1", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(b"user-1", &tampered).is_err());
        assert!(!sealed.windows(11).any(|w| w == b"session-key"));
    }
}
