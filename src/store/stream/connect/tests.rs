//! Unit tests of the NATS connection settings: parsing, validation, secrets from files
//! and the environment, URL redaction, the pauses between reconnections.

use secrecy::ExposeSecret;

use super::*;

fn nats(toml: &str) -> Result<NatsSettings, String> {
    use figment::providers::{Format, Toml};
    figment::Figment::new()
        .merge(Toml::string(toml))
        .extract::<NatsSettings>()
        .map_err(|e| e.to_string())
}

#[test]
fn urls_lose_their_credentials_in_messages() {
    assert_eq!(
        redact_url("nats://wxledger:s3cret@nats:4222"),
        "nats://***@nats:4222"
    );
    assert_eq!(
        redact_url("tls://tok3n@a:4222,nats://b:4222"),
        "tls://***@a:4222,nats://b:4222"
    );
    assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    assert_eq!(redact_url("localhost"), "localhost");
}

#[test]
fn one_auth_method_at_a_time_and_each_complete() {
    let ok = nats("[auth]\nuser = \"wxledger\"\npassword = \"pw\"").unwrap();
    ok.auth.validate().unwrap();
    assert!(ok.auth.is_set());
    let two = nats("[auth]\nuser = \"wxledger\"\npassword = \"pw\"\ntoken = \"t\"").unwrap();
    let err = two.validate().unwrap_err().to_string();
    assert!(err.contains("nats.auth: choose one"), "{err}");
    let no_password = nats("[auth]\nuser = \"wxledger\"").unwrap();
    let err = no_password.validate().unwrap_err().to_string();
    assert!(err.contains("nats.auth.user"), "{err}");
    let both = nats("[auth]\ntoken = \"t\"\ntoken_file = \"/run/secrets/t\"").unwrap();
    let err = both.validate().unwrap_err().to_string();
    assert!(
        err.contains("nats.auth.token: set it or its _file"),
        "{err}"
    );
    let cert_only = nats("[tls]\ncert_file = \"/etc/hostname\"").unwrap();
    let err = cert_only.validate().unwrap_err().to_string();
    assert!(err.contains("nats.tls.cert_file"), "{err}");
    let missing_ca = nats("[tls]\nca_file = \"/nonexistent/ca.pem\"").unwrap();
    let err = missing_ca.validate().unwrap_err().to_string();
    assert!(
        err.contains("nats.tls.ca_file: /nonexistent/ca.pem: no such file"),
        "{err}"
    );
    let err = nats("[auth]\npasword = \"pw\"").unwrap_err();
    assert!(err.contains("pasword"), "unknown keys are refused: {err}");
}

#[test]
fn a_secret_comes_from_its_file_without_the_trailing_newline() {
    let dir = std::env::temp_dir().join(format!("wxl-nats-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "from-the-file\n").unwrap();
    let got = secret("nats.auth.password_file", &None, &Some(file.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(got.expose_secret(), "from-the-file");
    std::fs::write(&file, "\n").unwrap();
    let err = secret("nats.auth.password_file", &None, &Some(file.clone())).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
    let err = secret("nats.auth.password_file", &None, &Some(dir.join("absent"))).unwrap_err();
    assert!(err.to_string().contains("nats.auth.password_file"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
fn credentials_come_from_the_environment_and_never_show_in_debug_output() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("WXLEDGER__NATS__AUTH__USER", "wxledger");
        jail.set_env("WXLEDGER__NATS__AUTH__PASSWORD", "env-secret-value");
        let settings: NatsSettings = figment::Figment::new()
            .merge(figment::providers::Env::prefixed("WXLEDGER__NATS__").split("__"))
            .extract()
            .expect("loads");
        assert_eq!(settings.auth.user.as_deref(), Some("wxledger"));
        let password = secret("nats.auth.password_file", &settings.auth.password, &None)
            .unwrap()
            .unwrap();
        assert_eq!(password.expose_secret(), "env-secret-value");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("env-secret-value"), "{shown}");
        Ok(())
    });
}

#[tokio::test]
async fn a_bad_nkey_seed_is_a_settings_error() {
    let mut s = NatsSettings::default();
    s.auth.nkey_seed = Some("SUnot-a-seed".into());
    let err = connect(&s, "test").await.unwrap_err().to_string();
    assert!(
        err.contains("nats.auth.nkey_seed: not an NKey seed"),
        "{err}"
    );
    assert!(!err.contains("SUnot-a-seed"), "{err}");
}

#[test]
fn reconnection_attempts_start_at_once_and_stay_close_together() {
    assert_eq!(reconnect_delay(1), Duration::ZERO);
    assert_eq!(reconnect_delay(2), Duration::from_millis(10));
    assert_eq!(reconnect_delay(3), Duration::from_millis(20));
    for attempts in [7, 10, 100, usize::MAX] {
        assert_eq!(reconnect_delay(attempts), MAX_RECONNECT_DELAY);
    }
    let mut last = Duration::ZERO;
    for attempts in 1..40 {
        let delay = reconnect_delay(attempts);
        assert!(
            delay >= last && delay <= MAX_RECONNECT_DELAY,
            "{attempts}: {delay:?}"
        );
        last = delay;
    }
}

#[test]
fn a_comma_list_is_several_servers() {
    assert_eq!(
        servers("nats://a:4222, nats://b:4222,,tls://c:4443"),
        ["nats://a:4222", "nats://b:4222", "tls://c:4443"]
    );
    assert_eq!(servers("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
}
