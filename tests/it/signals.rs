//! Signals to the real binary: SIGHUP drains like SIGTERM (stop accepting, finish the
//! request in flight, exit 0), rather than killing the process; and the 503 it answers
//! meanwhile is logged as a warning, not an ERROR.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::mpsc,
};
use uuid::Uuid;
use wxledger::{settings::NatsSettings, store::stream::EventLog};

use crate::common::{database_url, drop_schema, nats_url};

/// Waits for a line of `lines` containing `what` and returns it; `seen` keeps every line
/// read.
async fn wait_line(
    lines: &mut mpsc::UnboundedReceiver<String>,
    seen: &mut String,
    what: &str,
) -> String {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.recv().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(what) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!("no line with {what:?} in:\n{seen}"),
    }
}

/// Starts `wxledger --dev serve` on its own schema and stream, opens a request and leaves
/// its body half sent, sends `signal`, then finishes the body: the request is answered and
/// the process exits 0.
async fn drains_on(signal: &str) {
    let id = &Uuid::new_v4().simple().to_string()[..12];
    let (schema, stream, prefix) = (format!("t_{id}"), format!("T_{id}"), format!("t_{id}"));
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxledger"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .args(["--dev", "serve"])
        .env("WXLEDGER__HTTP__LISTEN", "127.0.0.1:0")
        .env("WXLEDGER__NATS__URL", nats_url())
        .env("WXLEDGER__NATS__STREAM", &stream)
        .env("WXLEDGER__NATS__SUBJECT_PREFIX", &prefix)
        .env("WXLEDGER__DATABASE__URL", database_url())
        .env("WXLEDGER__DATABASE__SCHEMA", &schema)
        .env("WXLEDGER__PAY__PLATFORM_CERTIFICATES", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let pid = daemon.id().expect("running");
    let stderr = daemon.stderr.take().unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let serving = wait_line(&mut lines, &mut seen, "wxledger serving").await;
    let addr: std::net::SocketAddr = serving
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {serving:?}"));
    let url = format!("http://{addr}/readyz");
    let mut ready = false;
    for _ in 0..100 {
        if wxledger::daemon::healthcheck::probe(&url, Duration::from_secs(1))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "never ready:\n{seen}");

    // A request in flight: its head sent with `Expect: 100-continue`, so the server's
    // "100 Continue" says the handler is reading the body, which is not sent yet.
    let body = br#"{"code": "signal-test"}"#;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(20), conn.read_exact(&mut interim))
        .await
        .expect("the handler reads the body")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

    let killed = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_line(&mut lines, &mut seen, "shutdown requested").await;
    assert!(seen.contains(&format!("signal=\"SIG{signal}\"")), "{seen}");

    conn.write_all(body).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_string(&mut answer))
        .await
        .expect("the request in flight is answered")
        .unwrap();
    // No simulator runs: the login is answered 503, WeChat unreachable.
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.contains("wechat_unavailable"),
        "answered: {answer:?}"
    );

    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon exits after draining")
        .unwrap();
    drop_schema(&database_url(), &schema).await;
    let settings = NatsSettings {
        url: nats_url(),
        stream,
        subject_prefix: prefix,
        connect_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    if let Ok(log) = EventLog::open(&settings).await {
        let _ = log.delete_stream().await;
    }
    while let Ok(line) = lines.try_recv() {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert!(status.success(), "exit {status}:\n{seen}");
    // An expected 503 is a warning, not an ERROR that pages someone.
    assert!(
        seen.contains("WARN") && seen.contains("answered unavailable"),
        "{seen}"
    );
    assert!(!seen.contains("ERROR"), "{seen}");
}

#[tokio::test]
async fn sighup_drains_and_exits_zero_like_sigterm() {
    drains_on("HUP").await;
    drains_on("TERM").await;
}
