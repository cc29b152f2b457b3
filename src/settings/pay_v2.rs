//! `[pay.v2]`: WeChat Pay API v2, for legacy merchants.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::check::is_v2_key;
use super::error::{invalid, SettingsError};
use super::{PayApi, PaySettings};

/// How API v2 messages are signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum V2SignType {
    /// `MD5`: WeChat's default.
    #[serde(rename = "MD5")]
    Md5,
    /// `HMAC-SHA256`, keyed with the API key.
    #[default]
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

/// WeChat Pay API v2 for the merchant. Its key also verifies the notifies of
/// `POST /webhooks/wechatpay/v2`, whichever API new prepays use.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayV2Settings {
    /// The 32-character API key (商户平台 → API安全 → API密钥). Secret: set it in the
    /// environment. Unset: API v2 is off (development mode: the simulator's public key).
    pub api_key: Option<SecretString>,
    /// How requests are signed and notifies must be signed: `MD5` or `HMAC-SHA256`.
    pub sign_type: V2SignType,
    /// The URL WeChat Pay sends v2 notifies to. Unset: `pay.notify_url` + `/v2`.
    pub notify_url: Option<String>,
    /// The merchant's API client certificate (`apiclient_cert.pem`), which WeChat's
    /// `/secapi/...` calls (refunds) require as a TLS client certificate.
    pub client_cert_file: Option<PathBuf>,
    /// Its private key (`apiclient_key.pem`, PKCS#8 PEM).
    pub client_key_file: Option<PathBuf>,
    /// `spbill_create_ip` of unified orders: the IP WeChat is told the payment came from
    /// (WeChat accepts the server's own for JSAPI).
    pub spbill_create_ip: String,
}

impl Default for PayV2Settings {
    fn default() -> Self {
        Self {
            api_key: None,
            sign_type: V2SignType::default(),
            notify_url: None,
            client_cert_file: None,
            client_key_file: None,
            spbill_create_ip: "127.0.0.1".into(),
        }
    }
}

impl PaySettings {
    /// The API v2 key; `None` turns API v2 off.
    pub fn v2_api_key(&self) -> Option<&str> {
        self.v2.api_key.as_ref().map(|key| key.expose_secret())
    }

    /// Where WeChat Pay sends API v2 notifies.
    pub fn v2_notify_url(&self) -> String {
        match &self.v2.notify_url {
            Some(url) => url.clone(),
            None => format!("{}/v2", self.notify_url.trim_end_matches('/')),
        }
    }

    /// Checks `pay.v2` (and `pay.api`, which may require it).
    pub(super) fn validate_v2(&self) -> Result<(), SettingsError> {
        match self.v2_api_key() {
            Some(key) if !is_v2_key(key) => {
                return Err(invalid(
                    "pay.v2.api_key",
                    "must be 32 ASCII letters or digits",
                ))
            }
            None if self.api == PayApi::V2 => {
                return Err(invalid(
                    "pay.v2.api_key",
                    "pay.api is \"v2\": set the merchant's API v2 key",
                ))
            }
            _ => {}
        }
        let url = self.v2_notify_url();
        if (self.v2.notify_url.is_some() || !self.notify_url.is_empty())
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("pay.v2.notify_url", "must be an http(s) URL"));
        }
        if self.v2.client_cert_file.is_some() != self.v2.client_key_file.is_some() {
            return Err(invalid(
                "pay.v2.client_cert_file",
                "set both pay.v2.client_cert_file and pay.v2.client_key_file, or neither",
            ));
        }
        if self
            .v2
            .spbill_create_ip
            .parse::<std::net::IpAddr>()
            .is_err()
        {
            return Err(invalid("pay.v2.spbill_create_ip", "must be an IP address"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn api_v2_needs_a_key_of_wechats_form_outside_the_simulator() {
        let mut s = Settings::development();
        s.pay.api = PayApi::V2;
        s.validate()
            .expect("the simulator's merchant has the public v2 key");
        assert_eq!(s.pay.v2_api_key(), Some(crate::sim::devkeys::V2_API_KEY));
        assert_eq!(
            s.pay.v2_notify_url(),
            "http://127.0.0.1:8080/webhooks/wechatpay/v2"
        );

        // Another merchant: the public key is never used, v2 is off unless configured.
        let mut s = Settings::default();
        s.pay.mchid = "1234567890".into();
        s.pay.merchant_private_key = Some(crate::sim::devkeys::MERCHANT_KEY_PEM.into());
        s.validate().expect("v3 needs no v2 key");
        assert_eq!(s.pay.v2_api_key(), None);
        s.pay.api = PayApi::V2;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.api_key"), "{err}");
        s.pay.v2.api_key = Some("too short".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.api_key"), "{err}");
        s.pay.v2.api_key = Some("192006250b4c09247ec02edce69f6a2d".into());
        s.validate().expect("a 32-character key");

        s.pay.v2.client_cert_file = Some("/run/secrets/apiclient_cert.pem".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.client_cert_file"), "{err}");
        s.pay.v2.client_cert_file = None;
        s.pay.v2.spbill_create_ip = "localhost".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.spbill_create_ip"), "{err}");

        let mut s = Settings::default();
        s.sim.v2_api_key = "x".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("sim.v2_api_key"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn the_v2_key_and_sign_type_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WXLEDGER__PAY__API", "v2");
            jail.set_env(
                "WXLEDGER__PAY__V2__API_KEY",
                "192006250b4c09247ec02edce69f6a2d",
            );
            jail.set_env("WXLEDGER__PAY__V2__SIGN_TYPE", "MD5");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.pay.api, PayApi::V2);
            assert_eq!(s.pay.v2.sign_type, V2SignType::Md5);
            assert_eq!(s.pay.v2_api_key(), Some("192006250b4c09247ec02edce69f6a2d"));
            assert!(!format!("{s:?}").contains("192006250b4c09247ec02edce69f6a2d"));
            jail.set_env("WXLEDGER__PAY__V2__SIGN_TYPE", "SHA1");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("pay.v2.sign_type"), "{err}");
            Ok(())
        });
    }
}
