//! API v2 signatures: the non-empty fields but `sign`, sorted by key (ASCII), joined as
//! `k=v&...`, then `&key=API_KEY` appended; MD5 of that, or HMAC-SHA256 of it keyed with
//! the API key; uppercase hex. Checked in constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How a message is signed (`sign_type`, `signType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignType {
    /// `MD5`: WeChat's default when `sign_type` is absent.
    Md5,
    /// `HMAC-SHA256`.
    HmacSha256,
}

impl SignType {
    /// The name WeChat writes.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// Reads WeChat's name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }
}

impl From<crate::settings::V2SignType> for SignType {
    fn from(t: crate::settings::V2SignType) -> Self {
        match t {
            crate::settings::V2SignType::Md5 => SignType::Md5,
            crate::settings::V2SignType::HmacSha256 => SignType::HmacSha256,
        }
    }
}

/// The merchant's API v2 key (32 letters and digits). Never printed.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    /// The key, if it has WeChat's form.
    pub fn new(key: &str) -> Option<Self> {
        (key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(key.into()))
    }

    /// The key's bytes, for signing and for the refund notify's AES key.
    pub(super) fn bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

/// A `sign` that does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sign does not verify")]
pub struct BadSign;

/// `k=v&...` of the fields that are signed: non-empty values, not `sign`, sorted by key.
pub fn signed_string<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut signed: Vec<(&str, &str)> = fields
        .into_iter()
        .filter(|(k, v)| !v.is_empty() && *k != "sign")
        .collect();
    signed.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::new();
    for (i, (k, v)) in signed.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The `sign` of `fields` (uppercase hex).
pub fn sign<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    key: &ApiKey,
    sign_type: SignType,
) -> String {
    let mut message = signed_string(fields).into_bytes();
    message.extend_from_slice(b"&key=");
    message.extend_from_slice(key.bytes());
    let digest = match sign_type {
        SignType::Md5 => Md5::digest(&message).to_vec(),
        SignType::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes())
                .expect("HMAC takes a key of any length");
            mac.update(&message);
            mac.finalize().into_bytes().to_vec()
        }
    };
    hex::encode_upper(digest)
}

/// Checks `given` (WeChat's `sign`, any hex case) against the fields, in time that does not
/// depend on where they differ.
pub fn verify<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    key: &ApiKey,
    sign_type: SignType,
    given: &str,
) -> Result<(), BadSign> {
    let expected = sign(fields, key, sign_type);
    let given = given.to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(BadSign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WeChat's signature doc example, also binarywang/WxJava `SignUtilsTest.java`.
    const DOC_FIELDS: [(&str, &str); 5] = [
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("device_info", "1000"),
        ("body", "test"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
    ];
    const DOC_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn key() -> ApiKey {
        ApiKey::new(DOC_KEY).unwrap()
    }

    #[test]
    fn known_answers_from_wechat_and_wxjava() {
        assert_eq!(
            signed_string(DOC_FIELDS),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
        );
        assert_eq!(
            sign(DOC_FIELDS, &key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(DOC_FIELDS, &key(), SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn sign_and_empty_values_are_not_signed_and_keys_sort_by_ascii() {
        let mut fields = DOC_FIELDS.to_vec();
        fields.push(("sign", "9A0A8659F005D6984697E2CA0A9CF3B7"));
        fields.push(("attach", ""));
        assert_eq!(
            sign(fields.iter().copied(), &key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        // Uppercase sorts before lowercase (the v2 pay params' appId, nonceStr, ...).
        assert_eq!(
            signed_string([
                ("timeStamp", "1"),
                ("appId", "a"),
                ("package", "p"),
                ("nonceStr", "n")
            ]),
            "appId=a&nonceStr=n&package=p&timeStamp=1"
        );
        assert_eq!(
            signed_string([("b", "2"), ("B", "1"), ("a_b", "3"), ("a", "4")]),
            "B=1&a=4&a_b=3&b=2"
        );
    }

    #[test]
    fn verify_accepts_the_right_sign_in_any_case_and_refuses_others() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            let good = sign(DOC_FIELDS, &key(), t);
            assert_eq!(verify(DOC_FIELDS, &key(), t, &good), Ok(()));
            assert_eq!(verify(DOC_FIELDS, &key(), t, &good.to_lowercase()), Ok(()));
            let mut bad = good.clone().into_bytes();
            bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
            let bad = String::from_utf8(bad).unwrap();
            assert_eq!(verify(DOC_FIELDS, &key(), t, &bad), Err(BadSign));
            assert_eq!(verify(DOC_FIELDS, &key(), t, ""), Err(BadSign));
            assert_eq!(verify(DOC_FIELDS, &key(), t, &good[..10]), Err(BadSign));
        }
        // The other algorithm's sign, or another key's, does not pass.
        let md5 = sign(DOC_FIELDS, &key(), SignType::Md5);
        assert!(verify(DOC_FIELDS, &key(), SignType::HmacSha256, &md5).is_err());
        let other = ApiKey::new("00000000000000000000000000000000").unwrap();
        assert!(verify(DOC_FIELDS, &other, SignType::Md5, &md5).is_err());
        // A changed value does not pass.
        let mut changed = DOC_FIELDS;
        changed[1].1 = "10000101";
        assert!(verify(changed, &key(), SignType::Md5, &md5).is_err());
    }

    #[test]
    fn keys_have_wechats_form_and_never_print() {
        assert!(ApiKey::new("short").is_none());
        assert!(ApiKey::new("192006250b4c09247ec02edce69f6a2!").is_none());
        assert_eq!(format!("{:?}", key()), "ApiKey(..)");
        assert_eq!(SignType::parse("HMAC-SHA256"), Some(SignType::HmacSha256));
        assert_eq!(SignType::parse("MD5").map(SignType::as_str), Some("MD5"));
        assert_eq!(SignType::parse("md5"), None);
    }
}
