//! The webhook: what does not verify is refused with WeChat's FAIL body and appends
//! nothing; what does is booked once, even replayed, and survives NATS and Postgres
//! going away.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    common::{eventually, TestEnv},
    proxy::Proxy,
};

/// Pays a recharge with `faults` armed; waits for the retry that lands; returns the
/// attempts' statuses in order.
async fn pay_with_faults(env: &TestEnv, token: &str, faults: Value) -> (String, Vec<Value>) {
    let no = env.recharge(token, 100).await;
    env.sim_faults(faults).await;
    env.sim_pay(&no, json!({})).await;
    let deliveries = env.wait_delivered(&no, 204).await;
    let statuses = deliveries.iter().map(|d| d["status"].clone()).collect();
    (no, statuses)
}

#[tokio::test]
async fn refused_notifies_get_fail_and_the_retry_books_once() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-wh-1").await;
    for (fault, status) in [
        ("bad_signature", 401),
        ("signtest", 401),
        ("stale_timestamp", 400),
        ("unknown_serial", 401),
        ("forged", 401),
    ] {
        let (no, statuses) = pay_with_faults(&env, &token, json!({ fault: 1 })).await;
        assert_eq!(statuses, [json!(status), json!(204)], "{fault}");
        let first = &env.deliveries(&no).await[0];
        let body: Value = serde_json::from_str(first["response_body"].as_str().unwrap()).unwrap();
        assert_eq!(body["code"], "FAIL", "{fault}: {body}");
        env.wait_order_state(&token, &no, "paid").await;
    }
    assert_eq!(
        env.balance(&token).await,
        500,
        "five recharges, each booked once"
    );
    assert_eq!(
        env.count_events("payment.notified").await,
        5,
        "refused attempts appended nothing"
    );
    let (_, metrics) = get_text(&env, "/metrics").await;
    for outcome in [
        "bad_signature",
        "signtest",
        "stale_timestamp",
        "unknown_serial",
        "recorded",
    ] {
        assert!(
            metrics.contains(&format!("wxledger_notifies_total{{outcome=\"{outcome}\"}}")),
            "{outcome} counted"
        );
    }
}

#[tokio::test]
async fn undecryptable_or_wrongly_sealed_resources_are_refused_every_time() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-wh-2").await;
    for fault in ["wrong_algorithm", "undecryptable"] {
        let no = env.recharge(&token, 100).await;
        env.sim_faults(json!({ fault: true })).await;
        env.sim_pay(&no, json!({})).await;
        let mut deliveries = Vec::new();
        for _ in 0..100 {
            deliveries = env.deliveries(&no).await;
            if deliveries.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(deliveries.len() >= 2, "{fault}: retried");
        assert!(
            deliveries.iter().all(|d| d["status"] == 400),
            "{fault}: {deliveries:?}"
        );
    }
    assert_eq!(env.count_events("payment.notified").await, 0);
    assert_eq!(env.balance(&token).await, 0);
}

#[tokio::test]
async fn a_genuine_notify_replayed_is_booked_once_and_a_day_later_refused() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-wh-3").await;
    let no = env.recharge(&token, 700).await;
    env.sim_pay(&no, json!({})).await;
    let delivered = env.wait_delivered(&no, 204).await;
    let genuine = delivered
        .iter()
        .find(|d| d["status"] == 204)
        .unwrap()
        .clone();
    let replay = || {
        let mut req = env.http.post(format!("{}/webhooks/wechatpay", env.api));
        for (name, value) in genuine["headers"].as_object().unwrap() {
            req = req.header(name.as_str(), value.as_str().unwrap());
        }
        req.body(genuine["body"].as_str().unwrap().to_owned())
            .send()
    };
    for _ in 0..3 {
        assert_eq!(replay().await.unwrap().status(), StatusCode::NO_CONTENT);
    }
    env.wait_applied().await;
    assert_eq!(
        env.balance(&token).await,
        700,
        "replays inside the window book nothing new"
    );

    env.clock_offset
        .store(86_400, std::sync::atomic::Ordering::Relaxed);
    let before = env.last_seq().await;
    let late = replay().await.unwrap();
    assert_eq!(late.status(), StatusCode::BAD_REQUEST);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["code"], "FAIL");
    assert_eq!(env.last_seq().await, before, "nothing appended");
}

#[tokio::test]
async fn malformed_and_oversized_notifies_are_refused() {
    let env = TestEnv::start().await;
    let post = |body: Vec<u8>, headers: &[(&str, &str)]| {
        let mut req = env.http.post(format!("{}/webhooks/wechatpay", env.api));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).send()
    };
    let big = post(vec![b' '; 64 * 1024], &[]).await.unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.json::<Value>().await.unwrap()["code"], "FAIL");
    let bare = post(b"{}".to_vec(), &[]).await.unwrap();
    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
    let now = chrono::Utc::now().timestamp().to_string();
    let wrong_type = post(
        b"{}".to_vec(),
        &[
            ("Wechatpay-Serial", wxledger::sim::devkeys::PUBLIC_KEY_ID),
            ("Wechatpay-Signature", "c2ln"),
            ("Wechatpay-Timestamp", &now),
            ("Wechatpay-Nonce", "n"),
            ("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::BAD_REQUEST);
    assert_eq!(env.last_seq().await, 0, "nothing appended");
}

#[tokio::test]
async fn notifies_during_a_nats_outage_get_5xx_and_the_retry_books_once() {
    let proxy = Proxy::start("127.0.0.1:4222").await;
    let env =
        TestEnv::start_with(|s| s.nats.url = format!("nats://127.0.0.1:{}", proxy.port)).await;
    let (token, _) = env.login("o-wh-5").await;
    let no = env.recharge(&token, 900).await;
    proxy.cut();
    env.sim_pay(&no, json!({})).await;
    let env_ref = &env;
    let no_ref = &no;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            env_ref
                .deliveries(no_ref)
                .await
                .iter()
                .filter(|d| d["status"] == 503)
                .count()
                >= 2
        })
        .await,
        "notifies answered 503 while NATS is away"
    );
    proxy.restore();
    env.wait_delivered(&no, 204).await;
    env.wait_order_state(&token, &no, "paid").await;
    assert_eq!(env.balance(&token).await, 900);
    assert_eq!(env.count_events("payment.notified").await, 1);
}

#[tokio::test]
async fn notifies_are_accepted_while_postgres_is_away_and_booked_when_it_returns() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let env = TestEnv::start_with(|s| {
        s.database.url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port)
    })
    .await;
    let (token, user_id) = env.login("o-wh-6").await;
    let no = env.recharge(&token, 250).await;
    proxy.cut();
    env.sim_pay(&no, json!({})).await;
    env.wait_delivered(&no, 204).await;
    assert_eq!(
        env.count_events("payment.notified").await,
        1,
        "durable on the stream"
    );
    proxy.restore();
    env.wait_order_state(&token, &no, "paid").await;
    let books = env.books().await;
    assert!(
        books.contains(&(format!("wallet:{user_id}"), 250)),
        "{books:?}"
    );
}

#[tokio::test]
async fn certificate_mode_follows_a_rotation_by_downloading_on_the_unknown_serial() {
    let env = TestEnv::start_full(
        |sim| sim.pay_signing = wxledger::settings::SimSigning::Certificate,
        |s| s.pay.public_key_id = None,
    )
    .await;
    let (token, _) = env.login("o-wh-7").await;
    let first = env.recharge(&token, 100).await;
    env.sim_pay(&first, json!({})).await;
    env.wait_delivered(&first, 204).await;

    env.sim_post("/sim/pay/rotate-certificate", json!({})).await;
    let downloads = env.sim_get("/sim/pay/stats").await["certificates"]
        .as_u64()
        .unwrap();
    // The first unknown serial downloads at once (later ones at most once a minute).
    let second = env.recharge(&token, 100).await;
    env.sim_pay(&second, json!({})).await;
    env.wait_delivered(&second, 204).await;
    let after = env.sim_get("/sim/pay/stats").await["certificates"]
        .as_u64()
        .unwrap();
    assert!(
        after > downloads,
        "the unknown serial made the daemon download again"
    );
    env.wait_order_state(&token, &second, "paid").await;
    assert_eq!(env.balance(&token).await, 200);
}

async fn get_text(env: &TestEnv, path: &str) -> (StatusCode, String) {
    let r = env
        .http
        .get(format!("{}{path}", env.api))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_report_requests_events_notifies_and_lag() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-wh-8").await;
    let no = env.recharge(&token, 100).await;
    env.sim_pay(&no, json!({})).await;
    env.wait_order_state(&token, &no, "paid").await;
    let _ = env
        .call(Method::GET, "/v1/orders/nope00", Some(&token), None)
        .await;
    let (status, text) = get_text(&env, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "wxledger_http_requests_total{route=\"/v1/recharges\",method=\"POST\",status=\"201\"} 1",
        "wxledger_http_requests_total{route=\"/v1/orders/{out_trade_no}\",method=\"GET\",status=\"404\"} 1",
        "wxledger_http_request_duration_seconds_count{route=\"/v1/recharges\",method=\"POST\",class=\"2xx\"} 1",
        "wxledger_events_appended_total{type=\"payment.notified\"} 1",
        "wxledger_events_appended_total{type=\"order.placed\"} 1",
        "wxledger_notifies_total{outcome=\"recorded\"} 1",
        "wxledger_projector_lag_events ",
        "wxledger_projector_lag_seconds ",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
}

#[tokio::test]
async fn notifies_held_and_delivered_in_reverse_order_are_each_booked_once() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-wh-9").await;
    let mut orders = Vec::new();
    for amount in [100, 200, 300] {
        let no = env.recharge(&token, amount).await;
        env.sim_faults(json!({"hold": true, "duplicates": 1})).await;
        env.sim_pay(&no, json!({})).await;
        orders.push(no);
    }
    assert_eq!(env.count_events("payment.notified").await, 0, "all held");
    env.sim_post("/sim/pay/release", json!({})).await;
    for no in &orders {
        env.wait_order_state(&token, no, "paid").await;
    }
    assert_eq!(env.balance(&token).await, 600);
    let books = env.books().await;
    assert!(
        books.contains(&("wechat_clearing".to_owned(), -600)),
        "{books:?}"
    );
}
