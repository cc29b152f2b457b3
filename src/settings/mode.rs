//! The two modes: production (the default), where every credential must be configured and
//! none may be a development one, and development, chosen explicitly, the only way the
//! simulator's credentials and the public development keys of `config/dev-keys/` are used.

use std::fmt;

use figment::{providers::Serialized, value::Value};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{
    error::{Problem, SettingsError},
    Settings, SIM_APPID, SIM_APP_SECRET,
};
use crate::sim::devkeys;
use crate::wechat::pay::crypto::{SigningKey, VerifyingKey};

mod urls;

use self::urls::{nats_url_has_credentials, nats_url_is_loopback, postgres_is_remote};

/// Which credentials the daemon may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Real credentials only: start-up refuses missing ones and development key material.
    #[default]
    Production,
    /// The simulator and the public development keys: demos, tests, benches.
    Development,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Production => "production",
            Mode::Development => "development",
        })
    }
}

/// Why the settings are in their mode, for the start-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModeSource {
    /// Nothing chose: production.
    #[default]
    Default,
    /// The `mode` setting (file or `WXLEDGER__MODE`).
    Setting,
    /// The `--dev` flag.
    Flag,
    /// A command that exists only for development (`sim`, `demo`, `bench`), or a test.
    Command(&'static str),
}

impl fmt::Display for ModeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeSource::Default => f.write_str("the default"),
            ModeSource::Setting => f.write_str("the mode setting"),
            ModeSource::Flag => f.write_str("the --dev flag"),
            ModeSource::Command(what) => write!(f, "{what}"),
        }
    }
}

/// The values development mode gives to settings the file and environment leave unset:
/// the simulator's app and merchant and their public keys. The lowest layer of the
/// settings, present only in development mode.
pub(super) fn development_defaults() -> Serialized<Value> {
    let json = serde_json::json!({
        "wechat": {
            "api_base": "http://127.0.0.1:8090",
            "appid": SIM_APPID,
            "app_secret": SIM_APP_SECRET,
        },
        "pay": {
            "api_base": "http://127.0.0.1:8090",
            "mchid": devkeys::MCHID,
            "merchant_serial": devkeys::MERCHANT_SERIAL,
            "merchant_private_key": devkeys::MERCHANT_KEY_PEM,
            "apiv3_key": devkeys::APIV3_KEY,
            "public_key_id": devkeys::PUBLIC_KEY_ID,
            "public_key": devkeys::PUBLIC_KEY_PEM,
            "notify_url": "http://127.0.0.1:8080/webhooks/wechatpay",
            "v2": { "api_key": devkeys::V2_API_KEY },
        },
    });
    let value = Value::serialize(json).expect("a JSON value is a figment value");
    Serialized::defaults(value)
}

/// Every credential production mode refuses, each named (empty in development mode).
pub fn production_problems(settings: &Settings) -> Vec<Problem> {
    if settings.mode == Mode::Development {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let mut refuse = |field: &'static str, problem: &str| {
        problems.push(Problem {
            field,
            problem: problem.to_owned(),
        })
    };
    const DEV: &str = "is development key material (config/dev-keys/): production refuses it";
    const SIM: &str = "is the simulator's: production refuses it";
    const UNSET: &str = "must be set in production";

    let wechat = &settings.wechat;
    if wechat.appid.is_empty() {
        refuse("wechat.appid", UNSET);
    } else if wechat.appid == SIM_APPID {
        refuse("wechat.appid", SIM);
    }
    let secret = wechat.app_secret.expose_secret();
    if secret.is_empty() {
        refuse("wechat.app_secret", UNSET);
    } else if secret == SIM_APP_SECRET {
        refuse("wechat.app_secret", SIM);
    }

    let pay = &settings.pay;
    if pay.mchid.is_empty() {
        refuse("pay.mchid", UNSET);
    }
    if pay.merchant_serial.is_empty() {
        refuse("pay.merchant_serial", UNSET);
    } else if pay
        .merchant_serial
        .eq_ignore_ascii_case(devkeys::MERCHANT_SERIAL)
    {
        refuse("pay.merchant_serial", DEV);
    }
    match pay.merchant_key_pem() {
        Ok(Some(pem)) if same_signing_key(&pem, devkeys::MERCHANT_KEY_PEM) => {
            refuse("pay.merchant_private_key", DEV)
        }
        Ok(Some(_)) => {}
        Ok(None) => refuse(
            "pay.merchant_private_key",
            "must be set in production (or pay.merchant_private_key_file)",
        ),
        Err(e) => refuse(e.field, &e.problem),
    }
    let apiv3 = pay.apiv3_key.expose_secret();
    if apiv3.is_empty() {
        refuse("pay.apiv3_key", UNSET);
    } else if apiv3 == devkeys::APIV3_KEY {
        refuse("pay.apiv3_key", DEV);
    }
    if pay.public_key_id.as_deref() == Some(devkeys::PUBLIC_KEY_ID) {
        refuse("pay.public_key_id", DEV);
    }
    match pay.public_key_pem() {
        Ok(Some(pem)) if same_public_key(&pem, devkeys::PUBLIC_KEY_PEM) => {
            refuse("pay.public_key", DEV)
        }
        Ok(_) => {}
        Err(e) => refuse(e.field, &e.problem),
    }
    if pay.public_key_id.is_none() && (pay.public_key.is_some() || pay.public_key_file.is_some()) {
        refuse(
            "pay.public_key_id",
            "a WeChat Pay public key is set without its id (PUB_KEY_ID_...)",
        );
    }
    if pay.v2.api_key.as_ref().map(|k| k.expose_secret()) == Some(devkeys::V2_API_KEY) {
        refuse("pay.v2.api_key", DEV);
    }
    if let Some(Ok(pem)) = pay.v2.client_key_file.as_ref().map(std::fs::read_to_string) {
        if same_signing_key(&pem, devkeys::MERCHANT_KEY_PEM) {
            refuse("pay.v2.client_key_file", DEV);
        }
    }
    if pay.notify_url.is_empty() {
        refuse("pay.notify_url", UNSET);
    } else if !pay.notify_url.starts_with("https://") {
        refuse(
            "pay.notify_url",
            "must be an https URL in production (WeChat Pay calls only https)",
        );
    }

    let nats = &settings.nats;
    if !nats.auth.is_set()
        && !nats_url_has_credentials(&nats.url)
        && !nats_url_is_loopback(&nats.url)
    {
        refuse(
            "nats.auth",
            "a NATS server off this machine needs credentials in production (user/password, \
             token, nkey_seed or creds_file): whoever reaches it unauthenticated could append \
             events",
        );
    }

    let nats_tls = nats.tls.required
        || nats.tls.first
        || nats.url.split(',').all(|u| u.trim().starts_with("tls://"));
    if !nats_url_is_loopback(&nats.url) && !nats_tls {
        refuse(
            "nats.tls",
            "a NATS server off this machine needs TLS in production (nats.tls.required = true, \
             or a tls:// URL): its password and every event cross the network",
        );
    }
    if postgres_is_remote(&settings.database.url)
        && !matches!(
            settings.database.sslmode,
            crate::store::db::tls::SslMode::VerifyFull | crate::store::db::tls::SslMode::VerifyCa
        )
    {
        refuse(
            "database.sslmode",
            "a Postgres off this machine needs database.sslmode = \"verify-full\" (or \
             \"verify-ca\") in production: the books cross the network",
        );
    }
    for (field, base) in [
        ("wechat.api_base", &settings.wechat.api_base),
        ("pay.api_base", &settings.pay.api_base),
    ] {
        if !base.starts_with("https://") {
            refuse(
                field,
                "must be an https URL in production: WeChat's answers (a login's openid) are \
                 believed as they arrive",
            );
        }
    }

    let privacy = &settings.privacy;
    for field in privacy.development_keys_in_use() {
        refuse(
            field,
            "must be set in production (unset: a public development key would seal personal data)",
        );
    }
    if privacy.data_key_encryption_key.is_some()
        && privacy.data_key_encryption_key()
            == crate::store::privacy::settings::DEV_DATA_KEY_ENCRYPTION_KEY
    {
        refuse("privacy.data_key_encryption_key", DEV);
    }
    if privacy.blind_index_key.is_some()
        && privacy.blind_index_key() == crate::store::privacy::settings::DEV_BLIND_INDEX_KEY
    {
        refuse("privacy.blind_index_key", DEV);
    }

    let auth = &settings.auth;
    if auth.jwt_secret.is_none() {
        refuse(
            "auth.jwt_secret",
            "must be set in production (a random key would end every token at restart and \
             differ between instances)",
        );
    }
    if auth.session_key_encryption_key.is_none() {
        refuse("auth.session_key_encryption_key", UNSET);
    }
    if auth.admin_token.is_none() && !auth.admin_disabled {
        refuse(
            "auth.admin_token",
            "must be set in production, or the admin endpoints turned off with \
             auth.admin_disabled = true",
        );
    }
    problems
}

/// Refuses production settings with any missing credential or development key material,
/// naming every offending field at once.
pub fn require_production_credentials(settings: &Settings) -> Result<(), SettingsError> {
    let problems = production_problems(settings);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SettingsError::Production(problems))
    }
}

/// [`require_production_credentials`] for the tools that use only WeChat Pay's keys
/// (`audit --verify-signatures`, `reconcile --date`): the `pay.*` problems alone.
pub fn require_production_pay_credentials(settings: &Settings) -> Result<(), SettingsError> {
    let problems: Vec<Problem> = production_problems(settings)
        .into_iter()
        .filter(|p| p.field.starts_with("pay."))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SettingsError::Production(problems))
    }
}

fn same_signing_key(pem: &str, dev: &str) -> bool {
    match (
        SigningKey::from_pkcs8_pem(pem),
        SigningKey::from_pkcs8_pem(dev),
    ) {
        (Ok(a), Ok(b)) => a.verifying_key() == b.verifying_key(),
        _ => false,
    }
}

fn same_public_key(pem: &str, dev: &str) -> bool {
    match (
        VerifyingKey::from_public_key_pem(pem),
        VerifyingKey::from_public_key_pem(dev),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
