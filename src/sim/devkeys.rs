//! Development credentials shared by the WeChat Pay simulator and a daemon that runs
//! against it. They are public (`config/dev-keys/`), so a daemon that still uses them
//! says so loudly at start; they never sign anything outside development and tests.

/// The simulator's merchant id.
pub const MCHID: &str = "1900000109";

/// The simulator's APIv3 key (32 ASCII characters).
pub const APIV3_KEY: &str = "wxledgerSimulatorApiV3Key0000032";

/// The simulator's WeChat Pay API v2 key (32 letters and digits), for legacy merchants.
pub const V2_API_KEY: &str = "wxledgerSimulatorApiV2Key0000032";

/// The merchant's private key (PKCS#8 PEM), as `apiclient_key.pem`.
pub const MERCHANT_KEY_PEM: &str = include_str!("../../config/dev-keys/merchant_key.pem");

/// The serial of the merchant's API certificate.
pub const MERCHANT_SERIAL: &str = "1DB8E7F45A2B3C4D5E6F708192A3B4C5D6E7F801";

/// The simulator's WeChat Pay public key id (public key mode).
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000001092025112100000000000001";

/// The private half of the simulator's WeChat Pay public key.
pub const PUBLIC_KEY_MODE_KEY_PEM: &str = include_str!("../../config/dev-keys/pubkey_mode_key.pem");

/// The simulator's WeChat Pay public key (SPKI PEM), as `pub_key.pem`.
pub const PUBLIC_KEY_PEM: &str = include_str!("../../config/dev-keys/pubkey_mode_pub.pem");

/// A platform certificate of the simulator, with its private key.
pub struct Platform {
    /// Certificate serial, as WeChat writes it in `Wechatpay-Serial`.
    pub serial: &'static str,
    /// The certificate (PEM).
    pub certificate_pem: &'static str,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: &'static str,
}

/// The simulator's platform certificates: it starts with the first and rotates to the
/// second on request.
pub const PLATFORMS: [Platform; 2] = [
    Platform {
        serial: "3A1B2C3D4E5F60718293A4B5C6D7E8F901234567",
        certificate_pem: include_str!("../../config/dev-keys/platform_a_cert.pem"),
        key_pem: include_str!("../../config/dev-keys/platform_a_key.pem"),
    },
    Platform {
        serial: "5B6C7D8E9FA0B1C2D3E4F5061728394A5B6C7D8E",
        certificate_pem: include_str!("../../config/dev-keys/platform_b_cert.pem"),
        key_pem: include_str!("../../config/dev-keys/platform_b_key.pem"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::pay::crypto::{SigningKey, VerifyingKey};

    #[test]
    fn the_dev_keys_match_their_certificates_and_serials() {
        assert_eq!(APIV3_KEY.len(), 32);
        for p in &PLATFORMS {
            let (serial, cert_key) = VerifyingKey::from_certificate_pem(p.certificate_pem).unwrap();
            assert_eq!(serial, p.serial);
            let signing = SigningKey::from_pkcs8_pem(p.key_pem).unwrap();
            assert_eq!(signing.verifying_key(), cert_key);
        }
        let public = VerifyingKey::from_public_key_pem(PUBLIC_KEY_PEM).unwrap();
        let signing = SigningKey::from_pkcs8_pem(PUBLIC_KEY_MODE_KEY_PEM).unwrap();
        assert_eq!(signing.verifying_key(), public);
        SigningKey::from_pkcs8_pem(MERCHANT_KEY_PEM).unwrap();
    }
}
