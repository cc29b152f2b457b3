//! Start-up errors an operator can act on: each names what failed and where, and a
//! mistake that waiting cannot fix fails at once instead of after the timeout.

use std::time::{Duration, Instant};

use wxledger::{store::stream::EventLog, App, Settings};

use crate::common::{database_url, drop_schema, isolated_settings};

fn settings() -> Settings {
    // No simulator is needed: these daemons never get that far.
    isolated_settings("http://127.0.0.1:9")
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_error(settings: Settings) -> (String, Duration) {
    let schema = settings.database.schema.clone();
    let started = Instant::now();
    let result = App::build(settings).await;
    let elapsed = started.elapsed();
    drop_schema(&database_url(), &schema).await;
    (result.err().expect("start-up fails").to_string(), elapsed)
}

#[tokio::test]
async fn a_closed_nats_port_is_named_within_connect_timeout() {
    let mut s = settings();
    let url = format!("nats://127.0.0.1:{}", closed_port());
    s.nats.url = url.clone();
    s.nats.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let msg = EventLog::connect(&s.nats).await.err().unwrap().to_string();
    let elapsed = started.elapsed();
    assert!(
        msg.contains(&url) && msg.contains("connection refused"),
        "{msg}"
    );
    assert!(msg.contains("gave up after 1 s"), "{msg}");
    // Not the 6 s of a JetStream request timing out: the setting bounds the wait.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn an_unknown_nats_host_is_a_dns_failure() {
    let mut s = settings();
    s.nats.url = "nats://no-such-host.invalid:4222".into();
    s.nats.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let msg = EventLog::connect(&s.nats).await.err().unwrap().to_string();
    assert!(
        msg.contains("no-such-host.invalid") && msg.contains("DNS"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_database_or_role_fails_at_once() {
    let mut s = settings();
    s.database.url = database_url().rsplit_once('/').unwrap().0.to_owned() + "/wxl_no_such_db";
    s.database.connect_timeout = Duration::from_secs(20);
    let (msg, elapsed) = start_error(s).await;
    assert!(msg.contains("no such database (SQLSTATE 3D000)"), "{msg}");
    assert!(msg.contains("/wxl_no_such_db as postgres"), "{msg}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    let mut s = settings();
    s.database.url = database_url().replace("postgres@", "wxl_no_such_role@");
    s.database.connect_timeout = Duration::from_secs(20);
    let (msg, elapsed) = start_error(s).await;
    assert!(msg.contains("SQLSTATE 28000"), "{msg}");
    assert!(msg.contains("as wxl_no_such_role"), "{msg}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn an_unreachable_postgres_is_waited_for_then_named() {
    let mut s = settings();
    let port = closed_port();
    s.database.url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/test");
    s.database.connect_timeout = Duration::from_secs(1);
    let (msg, elapsed) = start_error(s).await;
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/test as postgres")),
        "{msg}"
    );
    assert!(msg.contains("gave up after 1 s"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_at_once() {
    // The local server's certificate is for "localhost", not 127.0.0.1 (see pg_tls.rs).
    let mut s = settings();
    s.database.sslmode = wxledger::store::db::tls::SslMode::VerifyFull;
    s.database.ssl_root_cert = Some(crate::pg_tls::SERVER_CERT.into());
    s.database.connect_timeout = Duration::from_secs(20);
    let (msg, elapsed) = start_error(s).await;
    assert!(msg.contains("127.0.0.1:5432/test"), "{msg}");
    assert!(msg.contains("certificate not valid for name"), "{msg}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn a_taken_listen_address_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut s = settings();
    s.http.listen = addr;
    let (msg, _) = start_error(s).await;
    assert_eq!(msg, format!("http.listen {addr}: address in use"));
}
