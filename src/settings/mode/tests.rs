//! Tests of the mode checks: what production refuses and what development fills in.

use std::path::Path;

use super::*;

const MERCHANT_KEY: &str =
    include_str!("../../../tests/vectors/wechatpay/java_merchant_private_key.pem");
const WECHAT_PAY_PUBLIC_KEY: &str =
    include_str!("../../../tests/vectors/wechatpay/java_wechat_pay_public_key.pem");

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
    s.auth.session_key_encryption_key = Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
    s.auth.admin_token = Some("a".repeat(40).into());
    s.privacy.data_key_encryption_key = Some("ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=".into());
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
        Some(b64(&crate::store::privacy::settings::DEV_DATA_KEY_ENCRYPTION_KEY).into());
    s.privacy.blind_index_key =
        Some(b64(&crate::store::privacy::settings::DEV_BLIND_INDEX_KEY).into());
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
    s.database.sslmode = crate::store::db::tls::SslMode::Require;
    assert_eq!(
        fields(&s),
        ["database.sslmode"],
        "unverified TLS is not enough"
    );
    s.database.sslmode = crate::store::db::tls::SslMode::VerifyFull;
    assert!(fields(&s).is_empty());
    s.database.url = "postgres://wxledger@localhost/wxledger".into();
    s.database.sslmode = crate::store::db::tls::SslMode::Disable;
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
