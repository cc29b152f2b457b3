//! A refund notify's `req_info`: base64 of AES-256-ECB with PKCS#7 padding, keyed with the
//! lowercase hex MD5 of the API key (its 32 ASCII characters are the 32 key bytes); the
//! plaintext is a flat `<root>...</root>` document.
//!
//! ECB has no integrity: what vouches for a refund notify is only that it decrypts under
//! our key into a well-formed document of our merchant, so the caller checks both.

use aes::{
    cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit},
    Aes256,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use md5::{Digest, Md5};

use super::{
    sign::ApiKey,
    xml::{self, Fields, XmlError},
};

const BLOCK: usize = 16;

/// Why a `req_info` was not read. [`ReqInfoError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReqInfoError {
    /// Not base64, not whole blocks, or bad padding: not encrypted under our key.
    #[error("req_info does not decrypt under the API key")]
    Undecryptable,
    /// Decrypted, but not the flat UTF-8 `<root>` document expected.
    #[error("req_info: {0}")]
    Xml(XmlError),
}

impl ReqInfoError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ReqInfoError::Undecryptable => "undecryptable",
            ReqInfoError::Xml(e) => e.code(),
        }
    }
}

fn cipher(key: &ApiKey) -> Aes256 {
    let hex_md5 = hex::encode(Md5::digest(key.bytes()));
    Aes256::new(GenericArray::from_slice(hex_md5.as_bytes()))
}

/// Decrypts `req_info` to its plaintext bytes.
pub fn decrypt(req_info: &str, key: &ApiKey) -> Result<Vec<u8>, ReqInfoError> {
    let mut data = B64
        .decode(req_info.trim())
        .map_err(|_| ReqInfoError::Undecryptable)?;
    if data.is_empty() || data.len() % BLOCK != 0 {
        return Err(ReqInfoError::Undecryptable);
    }
    let aes = cipher(key);
    for block in data.chunks_exact_mut(BLOCK) {
        aes.decrypt_block(GenericArray::from_mut_slice(block));
    }
    let pad = usize::from(*data.last().expect("not empty"));
    if !(1..=BLOCK).contains(&pad)
        || !data[data.len() - pad..]
            .iter()
            .all(|&b| usize::from(b) == pad)
    {
        return Err(ReqInfoError::Undecryptable);
    }
    data.truncate(data.len() - pad);
    Ok(data)
}

/// Decrypts `req_info` and reads it (at most `limit` bytes of plaintext); returns the
/// plaintext XML too, for the evidence.
pub fn decrypt_refund(
    req_info: &str,
    key: &ApiKey,
    limit: usize,
) -> Result<(String, Fields), ReqInfoError> {
    let plain = decrypt(req_info, key)?;
    let fields = xml::parse_root(&plain, "root", limit).map_err(ReqInfoError::Xml)?;
    let text = String::from_utf8(plain).expect("the parser accepted it as UTF-8");
    Ok((text, fields))
}

/// Encrypts `plaintext` as WeChat does (the simulator sends refund notifies with it).
pub fn encrypt(plaintext: &[u8], key: &ApiKey) -> String {
    let pad = BLOCK - plaintext.len() % BLOCK;
    let mut data = plaintext.to_vec();
    data.extend(std::iter::repeat_n(pad as u8, pad));
    let aes = cipher(key);
    for block in data.chunks_exact_mut(BLOCK) {
        aes.encrypt_block(GenericArray::from_mut_slice(block));
    }
    B64.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wechatpy `tests/test_crypto.py` `test_refund_notify_decrypt_message`: API key and
    /// `req_info`, and the ids it must decrypt to.
    const WECHATPY_KEY: &str = "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk";
    const WECHATPY_REQ_INFO: &str =
        include_str!("../../../../tests/vectors/wechatpay/v2_wechatpy_refund_req_info.b64");

    #[test]
    fn wechatpy_refund_notify_known_answer() {
        let key = ApiKey::new(WECHATPY_KEY).unwrap();
        let (xml, fields) = decrypt_refund(WECHATPY_REQ_INFO, &key, 64 * 1024).unwrap();
        assert!(xml.starts_with("<root>"), "{xml}");
        assert_eq!(fields.get("out_refund_no"), Some("1234"));
        assert_eq!(
            fields.get("out_trade_no"),
            Some("2020010418301551404339261814")
        );
        assert_eq!(
            fields.get("transaction_id"),
            Some("4200000483202001042069747825")
        );
        assert_eq!(
            fields.get("refund_id"),
            Some("50300103182020010413419046597")
        );
        assert_eq!(fields.get("refund_status"), Some("SUCCESS"));
        assert_eq!(fields.get("refund_fee"), Some("1"));
        assert_eq!(fields.get("success_time"), Some("2020-01-04 18:34:24"));
        assert_eq!(fields.get("refund_recv_accout"), Some("招商银行信用卡8915"));
    }

    #[test]
    fn encrypt_round_trips_and_matches_the_known_answer() {
        let key = ApiKey::new(WECHATPY_KEY).unwrap();
        let plain = decrypt(WECHATPY_REQ_INFO, &key).unwrap();
        assert_eq!(encrypt(&plain, &key), WECHATPY_REQ_INFO.trim());
        for len in [0, 1, 15, 16, 17, 100] {
            let text = vec![b'x'; len];
            assert_eq!(decrypt(&encrypt(&text, &key), &key).unwrap(), text);
        }
    }

    #[test]
    fn another_key_garbage_and_tampering_are_refused() {
        let key = ApiKey::new(WECHATPY_KEY).unwrap();
        let other = ApiKey::new("00000000000000000000000000000000").unwrap();
        let sealed = encrypt(b"<root><a>1</a></root>", &key);
        assert!(decrypt_refund(&sealed, &other, 1024).is_err());
        for bad in ["", "!!!", "AAAA", &B64.encode([0u8; 17])] {
            assert_eq!(
                decrypt(bad, &key),
                Err(ReqInfoError::Undecryptable),
                "{bad}"
            );
        }
        // Well-padded plaintext that is not the expected document.
        let wrong_root = encrypt(b"<xml><a>1</a></xml>", &key);
        assert_eq!(
            decrypt_refund(&wrong_root, &key, 1024).unwrap_err().code(),
            "wrong_root"
        );
        let doctype = encrypt(
            b"<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><root>&x;</root>",
            &key,
        );
        assert_eq!(
            decrypt_refund(&doctype, &key, 1024).unwrap_err().code(),
            "doctype_refused"
        );
    }
}
