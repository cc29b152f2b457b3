//! Production and development modes as an operator meets them: the real binary refuses a
//! production configuration that misses a credential or carries development key material,
//! takes every environment value as text, refuses a variable that names no setting, and a
//! running daemon honours a JWT key rotation.

use std::process::Output;

use reqwest::{Method, StatusCode};
use uuid::Uuid;

use crate::common::{database_url, drop_schema, nats_url, TestEnv, JWT_SECRET};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/wechatpay");

/// The binary with a clean environment: only what the test gives it.
fn wxledger() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxledger"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    command
}

/// A production configuration as a merchant would write it (keys of WeChat's SDK tests,
/// not ours), minus what `omit` names.
fn production(command: &mut tokio::process::Command, omit: &[&str]) {
    let vars = [
        ("WXLEDGER__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
        ("WXLEDGER__NATS__URL", nats_url()),
        ("WXLEDGER__DATABASE__URL", database_url()),
        ("WXLEDGER__WECHAT__APPID", "wx8888888888888888".into()),
        (
            "WXLEDGER__WECHAT__APP_SECRET",
            "0123456789abcdef0123456789abcdef".into(),
        ),
        ("WXLEDGER__PAY__MCHID", "1900000109".into()),
        (
            "WXLEDGER__PAY__MERCHANT_SERIAL",
            "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
        ),
        (
            "WXLEDGER__PAY__MERCHANT_PRIVATE_KEY_FILE",
            format!("{VECTORS}/java_merchant_private_key.pem"),
        ),
        (
            "WXLEDGER__PAY__APIV3_KEY",
            "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5".into(),
        ),
        (
            "WXLEDGER__PAY__PUBLIC_KEY_ID",
            "PUB_KEY_ID_0114232134912410000000000001".into(),
        ),
        (
            "WXLEDGER__PAY__PUBLIC_KEY_FILE",
            format!("{VECTORS}/java_wechat_pay_public_key.pem"),
        ),
        (
            "WXLEDGER__PAY__NOTIFY_URL",
            "https://pay.example.com/webhooks/wechatpay".into(),
        ),
        ("WXLEDGER__AUTH__JWT_SECRET", "j".repeat(40)),
        (
            "WXLEDGER__AUTH__SESSION_KEY_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
        ("WXLEDGER__AUTH__ADMIN_TOKEN", "a".repeat(40)),
        (
            "WXLEDGER__PRIVACY__DATA_KEY_ENCRYPTION_KEY",
            "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=".into(),
        ),
        (
            "WXLEDGER__PRIVACY__BLIND_INDEX_KEY",
            "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=".into(),
        ),
    ];
    for (name, value) in vars {
        if !omit.contains(&name) {
            command.env(name, value);
        }
    }
}

async fn run(mut command: tokio::process::Command) -> Output {
    tokio::time::timeout(std::time::Duration::from_secs(20), command.output())
        .await
        .expect("the command ends on its own")
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn serve_refuses_production_without_the_public_key_or_the_apiv3_key() {
    let mut serve = wxledger();
    serve.arg("serve");
    production(
        &mut serve,
        &["WXLEDGER__PAY__PUBLIC_KEY_FILE", "WXLEDGER__PAY__APIV3_KEY"],
    );
    let output = run(serve).await;
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("pay.apiv3_key"), "{err}");
    assert!(err.contains("pay.public_key"), "{err}");
    assert!(err.contains("production mode refuses to start"), "{err}");
}

#[tokio::test]
async fn serve_refuses_development_key_material_in_production_and_names_it() {
    let mut serve = wxledger();
    serve.arg("serve");
    production(&mut serve, &["WXLEDGER__PAY__PUBLIC_KEY_ID"]);
    serve.env(
        "WXLEDGER__PAY__PUBLIC_KEY_ID",
        wxledger::sim::devkeys::PUBLIC_KEY_ID,
    );
    serve.env(
        "WXLEDGER__PAY__V2__API_KEY",
        wxledger::sim::devkeys::V2_API_KEY,
    );
    let output = run(serve).await;
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains("pay.public_key_id: is development key material"),
        "{err}"
    );
    assert!(
        err.contains("pay.v2.api_key: is development key material"),
        "{err}"
    );
    assert!(
        !err.contains(wxledger::sim::devkeys::V2_API_KEY),
        "no secret in the error: {err}"
    );

    // Nothing configured at all: every credential is named, none is filled in.
    let mut bare = wxledger();
    bare.arg("serve")
        .env("WXLEDGER__HTTP__LISTEN", "127.0.0.1:0");
    let output = run(bare).await;
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    for field in [
        "wechat.appid",
        "wechat.app_secret",
        "pay.mchid",
        "pay.merchant_private_key",
        "pay.apiv3_key",
        "auth.jwt_secret",
        "auth.session_key_encryption_key",
        "auth.admin_token",
        "privacy.data_key_encryption_key",
        "privacy.blind_index_key",
    ] {
        assert!(err.contains(field), "{field} not named: {err}");
    }
}

#[tokio::test]
async fn a_numeric_merchant_id_is_text_and_a_mistyped_variable_is_refused() {
    let schema = format!("t_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let mut migrate = wxledger();
    migrate
        .arg("migrate")
        .env("WXLEDGER__DATABASE__URL", database_url())
        .env("WXLEDGER__DATABASE__SCHEMA", &schema)
        .env("WXLEDGER__PAY__MCHID", "1900000109")
        .env("WXLEDGER__WECHAT__APPID", "12345678");
    let output = run(migrate).await;
    drop_schema(&database_url(), &schema).await;
    assert!(output.status.success(), "{}", stderr(&output));

    let mut typo = wxledger();
    typo.arg("migrate")
        .env("WXLEDGER__DATABASE__SCHEMA", &schema)
        .env("WXLEDGER_NATS__URL", "nats://127.0.0.1:1");
    let output = run(typo).await;
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("WXLEDGER_NATS__URL names no setting"), "{err}");
    assert!(err.contains("did you mean WXLEDGER__NATS__URL"), "{err}");

    let mut typo = wxledger();
    typo.arg("migrate")
        .env("WXLEDGER__DATABASE__SCHEMA", &schema)
        .env("WXLEDGER__DATABASE__SHEMA", "x");
    let output = run(typo).await;
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains("did you mean database.schema (WXLEDGER__DATABASE__SCHEMA)"),
        "{err}"
    );
}

#[tokio::test]
async fn after_a_key_rotation_tokens_of_the_previous_key_still_work() {
    let new_secret = "rotated-jwt-secret-abcdefghijklmnopqrstuvwxyz";
    let env = TestEnv::start_with(|s| {
        s.auth.jwt_kid = "2026-12".into();
        s.auth.jwt_secret = Some(new_secret.into());
        s.auth.jwt_previous_kid = Some("1".into());
        s.auth.jwt_previous_secret = Some(JWT_SECRET.into());
    })
    .await;
    let (token, user_id) = env.login("o-rotation").await;
    let user: Uuid = user_id.parse().unwrap();
    let ttl = 3600;
    let previous = wxledger::daemon::auth::Tokens::new("1", JWT_SECRET.as_bytes(), ttl);
    let (old, _) = previous.issue(user, chrono::Utc::now());
    for (name, token) in [("new", &token), ("previous key's", &old)] {
        let (status, me) = env.call(Method::GET, "/v1/me", Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "the {name} token: {me}");
        assert_eq!(me["user_id"], user_id.as_str());
    }
    // A token under a kid the daemon does not hold, or the right kid and a wrong key.
    for (kid, secret) in [("0", JWT_SECRET), ("1", new_secret)] {
        let (forged, _) = wxledger::daemon::auth::Tokens::new(kid, secret.as_bytes(), ttl)
            .issue(user, chrono::Utc::now());
        let (status, body) = env.call(Method::GET, "/v1/me", Some(&forged), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "kid {kid}: {body}");
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn production_refuses_a_nats_that_accepts_anonymous_clients_and_runs_on_one_that_does_not() {
    let schema = format!("t_{}", &Uuid::new_v4().simple().to_string()[..12]);
    // The machine's NATS takes anyone: production refuses it.
    let mut serve = wxledger();
    serve.arg("serve");
    production(&mut serve, &[]);
    serve.env("WXLEDGER__DATABASE__SCHEMA", &schema);
    let output = run(serve).await;
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains("nats.auth: the NATS server accepts anonymous clients"),
        "{err}"
    );

    // A NATS with users and permissions (config/nats/auth.conf): the same production
    // configuration with the daemon's credentials starts and becomes ready.
    let nats = crate::nats_auth::PrivateNats::start();
    let port = free_port();
    let mut serve = wxledger();
    serve.arg("serve");
    production(
        &mut serve,
        &["WXLEDGER__NATS__URL", "WXLEDGER__HTTP__LISTEN"],
    );
    serve
        .env("WXLEDGER__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("WXLEDGER__DATABASE__SCHEMA", &schema)
        .env("WXLEDGER__NATS__URL", &nats.url)
        .env("WXLEDGER__NATS__AUTH__USER", "wxledger")
        .env(
            "WXLEDGER__NATS__AUTH__PASSWORD",
            crate::nats_auth::DAEMON_PASSWORD,
        )
        .env("WXLEDGER__PAY__PLATFORM_CERTIFICATES", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut daemon = serve.spawn().expect("serve starts");
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut ready = false;
    for _ in 0..100 {
        if wxledger::daemon::healthcheck::probe(&url, std::time::Duration::from_secs(1))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        if daemon.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = daemon.start_kill();
    let output = daemon.wait_with_output().await.unwrap();
    drop_schema(&database_url(), &schema).await;
    assert!(ready, "production daemon never ready: {}", stderr(&output));
    assert!(
        stderr(&output).contains("production mode"),
        "the start-up log names the mode: {}",
        stderr(&output)
    );
}
