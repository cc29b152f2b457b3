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
use crate::devkeys;
use crate::wechat::pay::crypto::{SigningKey, VerifyingKey};

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
            crate::db::tls::SslMode::VerifyFull | crate::db::tls::SslMode::VerifyCa
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
            == crate::privacy::settings::DEV_DATA_KEY_ENCRYPTION_KEY
    {
        refuse("privacy.data_key_encryption_key", DEV);
    }
    if privacy.blind_index_key.is_some()
        && privacy.blind_index_key() == crate::privacy::settings::DEV_BLIND_INDEX_KEY
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

/// Every server of a (comma-separated) NATS URL is on this machine.
fn nats_url_is_loopback(url: &str) -> bool {
    url.split(',').all(|one| {
        let rest = one.trim().split_once("://").map_or(one.trim(), |(_, r)| r);
        let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host_port.split(':').next().unwrap_or_default(),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// The Postgres URL names a host off this machine (a Unix socket or loopback is not).
fn postgres_is_remote(url: &str) -> bool {
    use tokio_postgres::config::Host;
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    config.get_hosts().iter().any(|host| match host {
        Host::Tcp(name) => {
            name != "localhost"
                && !name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => false,
    })
}

fn nats_url_has_credentials(url: &str) -> bool {
    url.split(',').all(|one| {
        let rest = one.trim().split_once("://").map_or(one.trim(), |(_, r)| r);
        rest.contains('@')
    })
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
mod tests {
    use std::path::Path;

    use super::*;

    const MERCHANT_KEY: &str =
        include_str!("../../tests/vectors/wechatpay/java_merchant_private_key.pem");
    const WECHAT_PAY_PUBLIC_KEY: &str =
        include_str!("../../tests/vectors/wechatpay/java_wechat_pay_public_key.pem");

    /// A production configuration as a merchant would write it: its own keys throughout.
    fn real_looking() -> Settings {
        let mut s = Settings::default();
        s.wechat.appid = "wx8888888888888888".into();
        s.wechat.app_secret = "0123456789abcdef0123456789abcdef".into();
        s.pay.mchid = "1900000109".into(); // WeChat's documentation mchid is not a key
        s.pay.merchant_serial = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into();
        s.pay.merchant_private_key = Some(MERCHANT_KEY.into());
        s.pay.apiv3_key = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5".into();
        s.pay.public_key_id = Some("PUB_KEY_ID_0114232134912410000000000001".into());
        s.pay.public_key = Some(WECHAT_PAY_PUBLIC_KEY.into());
        s.pay.notify_url = "https://pay.example.com/webhooks/wechatpay".into();
        s.auth.jwt_secret = Some("j".repeat(40).into());
        s.auth.session_key_encryption_key =
            Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
        s.auth.admin_token = Some("a".repeat(40).into());
        s.privacy.data_key_encryption_key =
            Some("ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=".into());
        s.privacy.blind_index_key = Some("QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=".into());
        s
    }

    fn fields(s: &Settings) -> Vec<&'static str> {
        production_problems(s).iter().map(|p| p.field).collect()
    }

    #[test]
    fn production_is_the_default_and_names_every_missing_credential() {
        let s = Settings::default();
        assert_eq!(s.mode, Mode::Production);
        s.validate()
            .expect("unset credentials are not a shape error");
        assert_eq!(
            fields(&s),
            [
                "wechat.appid",
                "wechat.app_secret",
                "pay.mchid",
                "pay.merchant_serial",
                "pay.merchant_private_key",
                "pay.apiv3_key",
                "pay.notify_url",
                "privacy.data_key_encryption_key",
                "privacy.blind_index_key",
                "auth.jwt_secret",
                "auth.session_key_encryption_key",
                "auth.admin_token",
            ]
        );
        let err = s.require_production_credentials().unwrap_err().to_string();
        for field in fields(&s) {
            assert!(err.contains(field), "{err}");
        }
        assert!(
            err.contains("--dev"),
            "says how development is chosen: {err}"
        );
    }

    #[test]
    fn a_real_looking_production_configuration_is_accepted() {
        let s = real_looking();
        s.validate().expect("valid");
        assert_eq!(fields(&s), Vec::<&str>::new());
        let mut s = real_looking();
        s.auth.admin_token = None;
        assert_eq!(fields(&s), ["auth.admin_token"]);
        s.auth.admin_disabled = true;
        assert_eq!(
            fields(&s),
            Vec::<&str>::new(),
            "admin turned off on purpose"
        );
    }

    #[test]
    fn production_refuses_each_piece_of_development_key_material() {
        let dev = Settings::development();
        type Swap = fn(&mut Settings, &Settings);
        let cases: [(&str, Swap); 9] = [
            ("wechat.appid", |s, d| {
                s.wechat.appid = d.wechat.appid.clone()
            }),
            ("wechat.app_secret", |s, _| {
                s.wechat.app_secret = SIM_APP_SECRET.into()
            }),
            ("pay.merchant_serial", |s, d| {
                s.pay.merchant_serial = d.pay.merchant_serial.to_lowercase()
            }),
            ("pay.merchant_private_key", |s, _| {
                s.pay.merchant_private_key = Some(devkeys::MERCHANT_KEY_PEM.into())
            }),
            ("pay.apiv3_key", |s, _| {
                s.pay.apiv3_key = devkeys::APIV3_KEY.into()
            }),
            ("pay.public_key_id", |s, _| {
                s.pay.public_key_id = Some(devkeys::PUBLIC_KEY_ID.into())
            }),
            ("pay.public_key", |s, _| {
                s.pay.public_key = Some(devkeys::PUBLIC_KEY_PEM.into())
            }),
            ("pay.v2.api_key", |s, _| {
                s.pay.v2.api_key = Some(devkeys::V2_API_KEY.into())
            }),
            ("pay.notify_url", |s, d| {
                s.pay.notify_url = d.pay.notify_url.clone()
            }),
        ];
        for (field, swap) in cases {
            let mut s = real_looking();
            swap(&mut s, &dev);
            assert_eq!(fields(&s), [field], "swapping in the development {field}");
        }
        use base64::Engine as _;
        let b64 = |key: &[u8]| base64::engine::general_purpose::STANDARD.encode(key);
        let mut s = real_looking();
        s.privacy.data_key_encryption_key =
            Some(b64(&crate::privacy::settings::DEV_DATA_KEY_ENCRYPTION_KEY).into());
        s.privacy.blind_index_key =
            Some(b64(&crate::privacy::settings::DEV_BLIND_INDEX_KEY).into());
        assert_eq!(
            fields(&s),
            ["privacy.data_key_encryption_key", "privacy.blind_index_key"]
        );
        // The development merchant key as a file is refused as well.
        let mut s = real_looking();
        s.pay.merchant_private_key = None;
        s.pay.merchant_private_key_file =
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev-keys/merchant_key.pem"));
        assert_eq!(fields(&s), ["pay.merchant_private_key"]);
    }

    #[test]
    fn a_nats_off_this_machine_needs_credentials_in_production() {
        let mut s = real_looking();
        s.nats.url = "nats://127.0.0.1:4222".into();
        assert!(fields(&s).is_empty());
        for url in ["nats://localhost:4222", "nats://[::1]:4222"] {
            s.nats.url = url.into();
            assert!(fields(&s).is_empty(), "{url}");
        }
        for url in [
            "nats://10.0.0.5:4222",
            "nats://127.0.0.1:4222,nats://10.0.0.6:4222",
        ] {
            s.nats.url = url.into();
            assert_eq!(fields(&s), ["nats.auth", "nats.tls"], "{url}");
        }
        s.nats.url = "tls://nats.internal:4222".into();
        assert_eq!(fields(&s), ["nats.auth"], "a tls:// URL is TLS");
        s.nats.url = "nats://wxledger:pw@10.0.0.5:4222".into();
        assert_eq!(fields(&s), ["nats.tls"], "credentials in the URL");
        s.nats.tls.required = true;
        assert!(fields(&s).is_empty());
        s.nats.url = "nats://10.0.0.5:4222".into();
        s.nats.auth.creds_file = Some("/run/secrets/wxledger.creds".into());
        assert!(fields(&s).is_empty(), "a creds file");
    }

    #[test]
    fn production_wants_https_to_wechat_and_a_verified_remote_postgres() {
        let mut s = real_looking();
        s.wechat.api_base = "http://api.weixin.qq.com".into();
        s.pay.api_base = "http://127.0.0.1:8090".into();
        assert_eq!(fields(&s), ["wechat.api_base", "pay.api_base"]);

        let mut s = real_looking();
        s.database.url = "postgres://wxledger@db.internal:5432/wxledger".into();
        assert_eq!(fields(&s), ["database.sslmode"]);
        s.database.sslmode = crate::db::tls::SslMode::Require;
        assert_eq!(
            fields(&s),
            ["database.sslmode"],
            "unverified TLS is not enough"
        );
        s.database.sslmode = crate::db::tls::SslMode::VerifyFull;
        assert!(fields(&s).is_empty());
        s.database.url = "postgres://wxledger@localhost/wxledger".into();
        s.database.sslmode = crate::db::tls::SslMode::Disable;
        assert!(fields(&s).is_empty(), "loopback needs no TLS");
    }

    #[test]
    fn a_public_key_id_needs_its_key_and_a_key_its_id() {
        let mut s = real_looking();
        s.pay.public_key = None;
        assert_eq!(fields(&s), ["pay.public_key"]);

        let mut s = real_looking();
        s.pay.public_key_id = None;
        assert_eq!(fields(&s), ["pay.public_key_id"]);
    }

    #[test]
    fn development_fills_the_simulators_credentials_and_refuses_nothing() {
        let s = Settings::development();
        assert_eq!(s.mode, Mode::Development);
        s.validate().expect("valid");
        assert!(production_problems(&s).is_empty());
        assert_eq!(s.wechat.appid, SIM_APPID);
        assert_eq!(s.pay.public_key_id.as_deref(), Some(devkeys::PUBLIC_KEY_ID));
        assert_eq!(s.pay.v2_api_key(), Some(devkeys::V2_API_KEY));
        assert!(s.pay.required_merchant_key_pem().is_ok());
        assert!(
            s.auth.jwt_secret.is_none(),
            "random per start, development only"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn the_mode_is_chosen_by_setting_or_flag_and_production_gets_no_development_values() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).expect("loads");
            assert_eq!(
                (s.mode, s.mode_source),
                (Mode::Production, ModeSource::Default)
            );
            assert_eq!(
                s.pay.public_key_id, None,
                "no development key in production"
            );
            assert_eq!(s.pay.v2_api_key(), None);
            assert!(s.pay.merchant_key_pem().unwrap().is_none());
            assert_eq!(s.wechat.appid, "");

            let s = Settings::load_as(None, Some(ModeSource::Flag)).expect("loads");
            assert_eq!(
                (s.mode, s.mode_source),
                (Mode::Development, ModeSource::Flag)
            );
            assert_eq!(s.pay.public_key_id.as_deref(), Some(devkeys::PUBLIC_KEY_ID));

            jail.set_env("WXLEDGER__MODE", "development");
            jail.set_env("WXLEDGER__PAY__MCHID", "1234567890");
            let s = Settings::load(None).expect("loads");
            assert_eq!(
                (s.mode, s.mode_source),
                (Mode::Development, ModeSource::Setting)
            );
            assert_eq!(s.pay.mchid, "1234567890", "the environment still wins");
            assert_eq!(s.wechat.appid, SIM_APPID);

            jail.set_env("WXLEDGER__MODE", "staging");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("mode"), "{err}");
            Ok(())
        });
    }
}
