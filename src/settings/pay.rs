//! `[pay]`: WeChat Pay for the merchant (API v3, and what v2 shares with it); the v2
//! table is in `pay_v2`.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::duration::{millis, seconds};
use super::error::{invalid, SettingsError};
use super::PayV2Settings;

/// WeChat Pay API v3 for the merchant. Production requires every credential; development
/// mode fills unset ones with the simulator's public credentials (`config/dev-keys/`).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaySettings {
    /// Base URL of WeChat Pay (`https://api.mch.weixin.qq.com`, or the simulator).
    pub api_base: String,
    /// The merchant id (`mchid`).
    pub mchid: String,
    /// Serial of the merchant's API certificate (`serial_no` in request signatures).
    pub merchant_serial: String,
    /// The merchant's private key (`apiclient_key.pem`, PKCS#8 PEM) inline. Secret: set
    /// it in the environment, or use `merchant_private_key_file`.
    pub merchant_private_key: Option<SecretString>,
    /// Path of the merchant's private key file.
    pub merchant_private_key_file: Option<PathBuf>,
    /// The 32-character APIv3 key. Secret: set it in the environment.
    pub apiv3_key: SecretString,
    /// WeChat Pay public key id (`PUB_KEY_ID_...`), for public key mode. Unset: the
    /// merchant uses platform certificates only.
    pub public_key_id: Option<String>,
    /// The WeChat Pay public key (SPKI PEM) inline.
    pub public_key: Option<String>,
    /// Path of the WeChat Pay public key (`pub_key.pem`).
    pub public_key_file: Option<PathBuf>,
    /// Download platform certificates from `/v3/certificates` (certificate mode, or both
    /// during a switch-over).
    pub platform_certificates: bool,
    /// How often the platform certificates are downloaded again (an unknown serial also
    /// triggers a download); `certificate_refresh_secs`, in seconds.
    #[serde(rename = "certificate_refresh_secs", deserialize_with = "seconds")]
    pub certificate_refresh: Duration,
    /// The URL WeChat Pay sends notifies to: this daemon's `/webhooks/wechatpay`.
    pub notify_url: String,
    /// Largest amount of one order or recharge, in fen.
    pub max_amount_fen: i64,
    /// An order unpaid this long after it was placed is closed; `order_ttl_secs`, in
    /// seconds.
    #[serde(rename = "order_ttl_secs", deserialize_with = "seconds")]
    pub order_ttl: Duration,
    /// How often the expiry sweep looks for unpaid orders past their time;
    /// `expiry_sweep_ms`, in milliseconds.
    #[serde(rename = "expiry_sweep_ms", deserialize_with = "millis")]
    pub expiry_sweep: Duration,
    /// An order with a prepay but no notify, or a refund not settled, this long is asked
    /// about at WeChat by the reconciliation sweep (and at most once per this long);
    /// `reconcile_after_secs`, in seconds.
    #[serde(rename = "reconcile_after_secs", deserialize_with = "seconds")]
    pub reconcile_after: Duration,
    /// How often the reconciliation sweep runs; `reconcile_sweep_ms`, in milliseconds.
    #[serde(rename = "reconcile_sweep_ms", deserialize_with = "millis")]
    pub reconcile_sweep: Duration,
    /// Largest notify body accepted, in bytes.
    pub max_notify_bytes: usize,
    /// A notify or answer whose `Wechatpay-Timestamp` is further off than this is
    /// refused; `timestamp_tolerance_secs`, in seconds.
    #[serde(rename = "timestamp_tolerance_secs", deserialize_with = "seconds")]
    pub timestamp_tolerance: Duration,
    /// Timeout of one HTTP call to WeChat Pay; `timeout_ms`, in milliseconds.
    #[serde(rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
    /// Which WeChat Pay API new prepays use: `v3` (JSON, RSA) or `v2` (XML, MD5 or
    /// HMAC-SHA256, for legacy merchants).
    pub api: PayApi,
    /// WeChat Pay API v2 (legacy merchants).
    pub v2: PayV2Settings,
}

/// Which WeChat Pay API the merchant uses for new prepays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayApi {
    /// API v3: JSON, RSA signatures, AES-GCM notifies.
    #[default]
    V3,
    /// API v2: XML, MD5 or HMAC-SHA256 signatures with the API key.
    V2,
}

impl Default for PaySettings {
    fn default() -> Self {
        Self {
            api_base: "https://api.mch.weixin.qq.com".into(),
            mchid: String::new(),
            merchant_serial: String::new(),
            merchant_private_key: None,
            merchant_private_key_file: None,
            apiv3_key: String::new().into(),
            public_key_id: None,
            public_key: None,
            public_key_file: None,
            platform_certificates: true,
            certificate_refresh: Duration::from_secs(12 * 3600),
            notify_url: String::new(),
            max_amount_fen: 10_000_000,
            order_ttl: Duration::from_secs(1800),
            expiry_sweep: Duration::from_secs(10),
            reconcile_after: Duration::from_secs(300),
            reconcile_sweep: Duration::from_secs(30),
            max_notify_bytes: 16 * 1024,
            timestamp_tolerance: Duration::from_secs(300),
            timeout: Duration::from_secs(4),
            api: PayApi::V3,
            v2: PayV2Settings::default(),
        }
    }
}

/// A key named by the settings could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct KeySourceError {
    /// The setting.
    pub field: &'static str,
    /// What went wrong.
    pub problem: String,
}

impl PaySettings {
    /// The merchant's private key PEM, inline or from its file; `None` when neither is set.
    pub fn merchant_key_pem(&self) -> Result<Option<Cow<'_, str>>, KeySourceError> {
        read_key(
            "pay.merchant_private_key",
            self.merchant_private_key
                .as_ref()
                .map(|k| k.expose_secret()),
            self.merchant_private_key_file.as_deref(),
        )
    }

    /// The merchant's private key PEM, which every WeChat Pay call needs.
    pub fn required_merchant_key_pem(&self) -> Result<Cow<'_, str>, KeySourceError> {
        self.merchant_key_pem()?.ok_or_else(|| KeySourceError {
            field: "pay.merchant_private_key",
            problem: "set it or pay.merchant_private_key_file".into(),
        })
    }

    /// The WeChat Pay public key PEM, when a public key id is set.
    pub fn public_key_pem(&self) -> Result<Option<Cow<'_, str>>, KeySourceError> {
        if self.public_key_id.is_none() {
            return Ok(None);
        }
        let pem = read_key(
            "pay.public_key",
            self.public_key.as_deref(),
            self.public_key_file.as_deref(),
        )?;
        pem.map(Some).ok_or_else(|| KeySourceError {
            field: "pay.public_key",
            problem: "pay.public_key_id is set: set pay.public_key or pay.public_key_file".into(),
        })
    }

    /// Checks the values the types cannot, the v2 table included.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            return Err(invalid("pay.api_base", "must be an http(s) URL"));
        }
        // Unset credentials are production's concern (`mode::production_problems`); a set
        // one must have its form in either mode.
        let url = &self.notify_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("pay.notify_url", "must be an http(s) URL"));
        }
        if !self.mchid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("pay.mchid", "must be the merchant's digits"));
        }
        if !self.merchant_serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("pay.merchant_serial", "must be a hex serial"));
        }
        let apiv3 = self.apiv3_key.expose_secret();
        if !apiv3.is_empty() && apiv3.len() != 32 {
            return Err(invalid("pay.apiv3_key", "must be exactly 32 characters"));
        }
        if let Some(merchant) = self
            .merchant_key_pem()
            .map_err(|e| invalid(e.field, e.problem))?
        {
            crate::wechat::pay::crypto::SigningKey::from_pkcs8_pem(&merchant)
                .map_err(|e| invalid("pay.merchant_private_key", e.to_string()))?;
        }
        // A public key id without its key is named with the other missing credentials
        // (`mode::production_problems`); a key that is there must parse.
        if let Ok(Some(pem)) = self.public_key_pem() {
            crate::wechat::pay::crypto::VerifyingKey::from_public_key_pem(&pem)
                .map_err(|e| invalid("pay.public_key", e.to_string()))?;
        }
        if self.public_key_id.is_none() && !self.platform_certificates {
            return Err(invalid(
                "pay.platform_certificates",
                "with no pay.public_key_id, platform certificates are the only way to verify WeChat",
            ));
        }
        if self.max_amount_fen < 1 {
            return Err(invalid("pay.max_amount_fen", "must be at least 1"));
        }
        if !(MINUTE..=7 * DAY).contains(&self.order_ttl) {
            return Err(invalid(
                "pay.order_ttl_secs",
                "must be between 60 s and 7 days",
            ));
        }
        if self.certificate_refresh < MINUTE {
            return Err(invalid(
                "pay.certificate_refresh_secs",
                "must be at least 60",
            ));
        }
        if !(Duration::from_secs(1)..=5 * MINUTE).contains(&self.timestamp_tolerance) {
            return Err(invalid(
                "pay.timestamp_tolerance_secs",
                "must be between 1 and 300 (WeChat's rule)",
            ));
        }
        if self.max_notify_bytes < 1024 {
            return Err(invalid("pay.max_notify_bytes", "must be at least 1024"));
        }
        if self.expiry_sweep.is_zero() {
            return Err(invalid("pay.expiry_sweep_ms", "must be positive"));
        }
        if self.reconcile_after.is_zero() || self.reconcile_sweep.is_zero() {
            return Err(invalid(
                "pay.reconcile_after_secs",
                "reconcile_after_secs and reconcile_sweep_ms must be positive",
            ));
        }
        self.validate_v2()
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn read_key<'a>(
    field: &'static str,
    inline: Option<&'a str>,
    file: Option<&Path>,
) -> Result<Option<Cow<'a, str>>, KeySourceError> {
    if let Some(pem) = inline {
        return Ok(Some(Cow::Borrowed(pem)));
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|s| Some(Cow::Owned(s)))
            .map_err(|e| KeySourceError {
                field,
                problem: format!("cannot read {}: {e}", path.display()),
            });
    }
    Ok(None)
}
