//! The webhook against hostile input: extreme numbers in headers, floods of made-up
//! certificate serials, and certificates outside their validity.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{eventually, TestEnv};

/// Timestamps no sender should write: at and beyond the ends of i64, and digit strings
/// too long for any integer.
const EXTREME_TIMESTAMPS: [&str; 6] = [
    "-9223372036854775808",
    "9223372036854775807",
    "-9223372036854775807",
    "99999999999999999999999999999999",
    "-99999999999999999999999999999999",
    "+9223372036854775807",
];

#[tokio::test]
async fn extreme_timestamps_are_refused_with_a_4xx_and_append_nothing() {
    let env = TestEnv::start().await;
    for ts in EXTREME_TIMESTAMPS {
        let response = env
            .http
            .post(format!("{}/webhooks/wechatpay", env.api))
            .header("Wechatpay-Serial", wxledger::sim::devkeys::PUBLIC_KEY_ID)
            .header("Wechatpay-Signature", "c2ln")
            .header("Wechatpay-Timestamp", ts)
            .header("Wechatpay-Nonce", "n0nce")
            .body("{}")
            .send()
            .await
            .expect("the daemon answers (no panic dropped the connection)");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "timestamp {ts}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "FAIL", "timestamp {ts}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("timestamp"),
            "timestamp {ts}: the message names the timestamp: {message}"
        );
    }
    assert_eq!(env.last_seq().await, 0, "nothing appended");

    // The simulator checks the merchant's request timestamps the same way.
    for ts in EXTREME_TIMESTAMPS {
        let authorization = format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"n\",timestamp=\"{ts}\",serial_no=\"{}\",signature=\"c2ln\"",
            wxledger::sim::devkeys::MCHID,
            wxledger::sim::devkeys::MERCHANT_SERIAL,
        );
        let response = env
            .http
            .get(format!("{}/v3/certificates", env.sim))
            .header("Authorization", authorization)
            .send()
            .await
            .expect("the simulator answers (no panic dropped the connection)");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "timestamp {ts}"
        );
    }
}

/// A daemon that verifies with platform certificates only, against a simulator signing
/// with them.
async fn certificate_mode() -> TestEnv {
    TestEnv::start_full(
        |sim| sim.pay_signing = wxledger::settings::SimSigning::Certificate,
        |s| s.pay.public_key_id = None,
    )
    .await
}

async fn certificate_downloads(env: &TestEnv) -> u64 {
    env.sim_get("/sim/pay/stats").await["certificates"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_signature_by_an_expired_certificate_is_refused_and_the_certificate_evicted() {
    let env = certificate_mode().await;
    let now = chrono::Utc::now();
    let issued = env
        .sim_post(
            "/sim/pay/issue-certificate",
            json!({
                "not_before": (now - chrono::Duration::days(1)).to_rfc3339(),
                "not_after": (now + chrono::Duration::seconds(60)).to_rfc3339(),
            }),
        )
        .await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let (token, _) = env.login("o-cert-expiry").await;
    // Signed by the new certificate while it is valid: downloaded and believed.
    let first = env.recharge(&token, 100).await;
    env.sim_pay(&first, json!({})).await;
    env.wait_delivered(&first, 204).await;

    // Two minutes on by the daemon's clock the certificate has expired (the simulator's
    // timestamps are still within the 300 s tolerance).
    env.clock_offset.store(120, Ordering::Relaxed);
    let second = env.recharge(&token, 100).await;
    env.sim_pay(&second, json!({})).await;
    let env_ref = &env;
    let second_ref = &second;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            env_ref.deliveries(second_ref).await.len() >= 2
        })
        .await,
        "WeChat retried"
    );
    let deliveries = env.deliveries(&second).await;
    let message = |i: usize| -> String {
        let body: Value =
            serde_json::from_str(deliveries[i]["response_body"].as_str().unwrap()).unwrap();
        body["message"].as_str().unwrap().to_owned()
    };
    assert_eq!(deliveries[0]["status"], 401, "{deliveries:?}");
    assert!(
        message(0).contains(&serial) && message(0).contains("expired"),
        "{}",
        message(0)
    );
    // The retry finds no certificate at all: the expired one was evicted (and a fresh
    // listing, which still has it, does not bring it back).
    assert_eq!(deliveries[1]["status"], 401, "{deliveries:?}");
    assert!(message(1).contains("no key for serial"), "{}", message(1));
    assert_eq!(
        env.count_events("payment.notified").await,
        1,
        "the refused notify appended nothing"
    );
}

#[tokio::test]
async fn a_flood_of_made_up_serials_costs_one_download_and_no_answer_waits_for_it() {
    let env = certificate_mode().await;
    let before = certificate_downloads(&env).await;
    // A slow WeChat: a download takes longer than a notify may wait.
    env.sim_post("/sim/pay/certificate-delay", json!({"delay_ms": 3_500}))
        .await;
    let notify = |serial: String| {
        let env = &env;
        async move {
            let started = Instant::now();
            let response = env
                .http
                .post(format!("{}/webhooks/wechatpay", env.api))
                .header("Wechatpay-Serial", serial)
                .header("Wechatpay-Signature", "c2ln")
                .header(
                    "Wechatpay-Timestamp",
                    chrono::Utc::now().timestamp().to_string(),
                )
                .header("Wechatpay-Nonce", "n0nce")
                .body("{}")
                .send()
                .await
                .unwrap();
            (response.status(), started.elapsed())
        }
    };
    let made_up = || uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let flood = futures::future::join_all((0..50).map(|_| notify(made_up()))).await;
    for (status, took) in &flood {
        // 503 while the download runs (WeChat retries); never the download's 3.5 s.
        assert!(
            [StatusCode::SERVICE_UNAVAILABLE, StatusCode::UNAUTHORIZED].contains(status),
            "{status}"
        );
        assert!(*took < Duration::from_millis(3_000), "answered in {took:?}");
    }
    assert!(flood
        .iter()
        .any(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE));
    let slowest = flood.iter().map(|(_, took)| *took).max().unwrap();
    eprintln!("50 concurrent made-up serials: slowest answer {slowest:?}");
    // Once it is done, more made-up serials are refused at once without another.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    for _ in 0..10 {
        let (status, took) = notify(made_up()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(took < Duration::from_millis(1_000), "answered in {took:?}");
    }
    let downloads = certificate_downloads(&env).await - before;
    assert!(
        downloads <= 1,
        "{downloads} downloads for 60 made-up serials"
    );
    assert_eq!(env.last_seq().await, 0, "nothing appended");
}
