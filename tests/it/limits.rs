//! Bounded under abuse: slow clients are cut off at their deadlines while others are
//! served, the connection limit holds, and rate-limited requests get 429 `rate_limited`
//! before they cost a WeChat call or an event.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use wxledger::daemon::limits::Rate;

use crate::common::TestEnv;

async fn connect(env: &TestEnv) -> TcpStream {
    TcpStream::connect(env.api.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or `limit` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

async fn healthz(env: &TestEnv) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{}/healthz", env.api))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::GATEWAY_TIMEOUT)
}

#[tokio::test]
async fn a_slow_body_is_cut_off_at_its_deadline_while_others_are_served() {
    let env =
        TestEnv::start_with(|s| s.limits.body_read_timeout = Duration::from_millis(1_500)).await;
    let mut slow = connect(&env).await;
    slow.write_all(
        b"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 40\r\n\r\n",
    )
    .await
    .unwrap();
    let (mut reader, mut writer) = slow.into_split();
    let dribble = tokio::spawn(async move {
        for _ in 0..40 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let started = Instant::now();
    // Meanwhile everyone else is served.
    for _ in 0..3 {
        assert_eq!(healthz(&env).await, StatusCode::OK);
    }
    let mut seen = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(6), reader.read_to_end(&mut seen)).await;
    let elapsed = started.elapsed();
    dribble.abort();
    assert!(
        cut.is_ok(),
        "the slow client still held its connection after 6 s"
    );
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");
    assert!(
        elapsed < Duration::from_secs(5),
        "cut off after {elapsed:?}"
    );
    assert_eq!(env.last_seq().await, 0, "nothing was recorded");
}

#[tokio::test]
async fn unfinished_headers_and_idle_keep_alive_connections_are_closed() {
    let env = TestEnv::start_with(|s| s.limits.header_read_timeout = Duration::from_secs(1)).await;
    // Headers that never end: one more header line every 300 ms.
    let mut endless = connect(&env).await;
    endless
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = endless.into_split();
    let dribble = tokio::spawn(async move {
        for i in 0..40 {
            let line = format!("X-Slow-{i}: 1\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut seen)).await;
    dribble.abort();
    assert!(
        cut.is_ok(),
        "a client that never finished its headers was kept"
    );
    assert!(!String::from_utf8_lossy(&seen).contains("200 OK"));
    assert!(started.elapsed() < Duration::from_secs(3));

    // A served keep-alive connection left idle is closed after the same limit.
    let mut idle = connect(&env).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn the_connection_limit_holds() {
    let env = TestEnv::start_with(|s| s.limits.max_connections = 2).await;
    let first = connect(&env).await;
    let second = connect(&env).await;
    // Both slots are held by clients that say nothing: the next one waits.
    assert_eq!(healthz(&env).await, StatusCode::GATEWAY_TIMEOUT);
    drop(first);
    assert_eq!(healthz(&env).await, StatusCode::OK);
    drop(second);
}

async fn login_status(
    env: &TestEnv,
    code: &str,
    forwarded_for: Option<&str>,
) -> (StatusCode, Option<u64>, Value) {
    let mut req = env
        .http
        .post(format!("{}/v1/auth/login", env.api))
        .json(&json!({ "code": code }));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_burst_of_logins_from_one_address_gets_429_before_wechat_is_called() {
    let env = TestEnv::start_with(|s| s.limits.login_per_ip = Rate::new(1, 3)).await;
    let mut codes = Vec::new();
    for i in 0..8 {
        codes.push(env.login_code(&format!("o-burst-{i}")).await);
    }
    let mut ok = 0;
    for code in &codes {
        let (status, retry_after, body) = login_status(&env, code, None).await;
        if status == StatusCode::OK {
            ok += 1;
            continue;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        assert!(
            retry_after.is_some_and(|s| (1..=60).contains(&s)),
            "{retry_after:?}"
        );
    }
    assert_eq!(ok, 3, "the burst, then refusals");
    let stats = env.sim_get("/sim/mini/stats").await;
    assert_eq!(
        stats["jscode2session"], 3,
        "WeChat saw only the allowed logins"
    );
    // X-Forwarded-For from an untrusted peer changes nothing.
    let (status, ..) = login_status(&env, &codes[7], Some("198.51.100.1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let env = TestEnv::start_with(|s| {
        s.limits.login_per_ip = Rate::new(1, 1);
        s.limits.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    // A malformed code is refused after it was counted, without a WeChat call.
    let (status, ..) = login_status(&env, "", Some("198.51.100.1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, ..) = login_status(&env, "", Some("198.51.100.1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The right-most untrusted hop is the client: a forged left entry is ignored.
    let (status, ..) = login_status(&env, "", Some("198.51.100.9, 198.51.100.1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, ..) = login_status(&env, "", Some("198.51.100.2")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_user_over_the_recharge_limit_appends_nothing_and_costs_no_prepay() {
    let env = TestEnv::start_with(|s| s.limits.recharge_per_user = Rate::new(1, 2)).await;
    let (token, _) = env.login("o-recharger").await;
    env.recharge(&token, 100).await;
    env.recharge(&token, 100).await;
    let (seq, prepays) = (
        env.last_seq().await,
        env.sim_get("/sim/pay/stats").await["jsapi"].clone(),
    );
    let resp = env
        .http
        .post(format!("{}/v1/recharges", env.api))
        .bearer_auth(&token)
        .json(&json!({"amount": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(env.last_seq().await, seq, "no event appended");
    assert_eq!(
        env.sim_get("/sim/pay/stats").await["jsapi"],
        prepays,
        "no prepay"
    );
    // Another user on the same address is not affected.
    let (other, _) = env.login("o-other").await;
    env.recharge(&other, 100).await;
    let (status, _) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "reads are not limited");
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_answered() {
    let mut env = TestEnv::start().await;
    let mut client = connect(&env).await;
    client
        .write_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 11\r\n\r\n{\"code\":",
        )
        .await
        .unwrap();
    // Let the daemon accept it and start reading the body before it is told to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let api = env.api.clone();
    let finish = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write_all(b"\"\"}").await.unwrap();
        let answer = read_to_close(&mut client, Duration::from_secs(5)).await;
        (
            answer,
            reqwest::get(format!("{api}/healthz")).await.is_err(),
        )
    };
    let ((answer, refused), ()) = tokio::join!(finish, env.stop_daemon());
    let answer = answer.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(refused, "no new connection after the stop");
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_with_a_timeout() {
    // A WeChat that accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = black_hole.accept().await {
            open.push(stream);
        }
    });
    let env = TestEnv::start_with(|s| {
        s.wechat.api_base = base;
        s.limits.request_timeout = Duration::from_secs(1);
    })
    .await;
    let started = Instant::now();
    let (status, _, body) = login_status(&env, "a-code-never-checked", None).await;
    held.abort();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
