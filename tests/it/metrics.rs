//! `/metrics`: bounded whatever clients send, served apart from the API when
//! `metrics.listen` is set, and telling operators what they need after a payment flow,
//! with no personal data in any label.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::{
    common::{eventually, TestEnv},
    proxy::Proxy,
};

/// GET `{base}/metrics`: status and body.
async fn scrape(env: &TestEnv, base: &str) -> (StatusCode, String) {
    let r = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The value of the sample line that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Sample lines (not comments) in the exposition.
fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

/// Requests with made-up methods and paths, ids in matched routes, and a spread of
/// statuses (400, 401, 404, 405), numbered `from..to` so each one is new.
async fn noise(env: &TestEnv, from: usize, to: usize) {
    for i in from..to {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let made_up = env
            .http
            .request(method, format!("{}/no/such/path/{i}", env.api))
            .send()
            .await
            .unwrap();
        assert_eq!(made_up.status(), StatusCode::NOT_FOUND);
        let (status, _) = env
            .call(Method::GET, &format!("/v1/orders/X{i:06}"), None, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = env
            .call(Method::DELETE, &format!("/healthz?i={i}"), None, None)
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _) = env
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"code": format!("13800{i:06}")})),
            )
            .await;
        assert!(status.is_client_error(), "{status}");
    }
}

#[tokio::test]
async fn metrics_stay_bounded_whatever_methods_paths_and_statuses_clients_send() {
    // Without the login rate limit, so its 429s come at no chosen moment mid-run.
    let env = TestEnv::start_with(|s| {
        s.limits.login_per_ip = wxledger::daemon::limits::Rate::UNLIMITED;
    })
    .await;
    noise(&env, 0, 50).await;
    let (status, after_50) = scrape(&env, &env.api).await;
    assert_eq!(status, StatusCode::OK);
    noise(&env, 50, 500).await;
    let (_, after_500) = scrape(&env, &env.api).await;
    assert_eq!(
        series(&after_50),
        series(&after_500),
        "450 more distinct requests added series:\n{after_500}"
    );
    // Counts grow by a digit or two; names and labels do not.
    assert!(
        after_500.len() < after_50.len() + 2_000,
        "{} -> {} bytes",
        after_50.len(),
        after_500.len()
    );
    for needle in [
        "wxledger_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 500",
        "wxledger_http_requests_total{route=\"/v1/orders/{out_trade_no}\",method=\"GET\",status=\"401\"} 500",
        "wxledger_http_requests_total{route=\"/healthz\",method=\"DELETE\",status=\"405\"} 500",
        "wxledger_http_request_duration_seconds_count{route=\"unmatched\",method=\"other\",class=\"4xx\"} 500",
    ] {
        assert!(after_500.contains(needle), "missing {needle}\n{after_500}");
    }
    for leaked in ["MADEUP", "/no/such", "X000", "13800"] {
        assert!(!after_500.contains(leaked), "{leaked} in\n{after_500}");
    }
}

#[tokio::test]
async fn metrics_listen_serves_metrics_there_and_not_on_the_api() {
    let env =
        TestEnv::start_with(|s| s.metrics.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let own = env.metrics.clone().expect("metrics.listen was set");
    let (status, text) = scrape(&env, &own).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("wxledger_build_info{version=\""), "{text}");
    let (status, _) = scrape(&env, &env.api).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not on the public listener");
    let r = env.http.get(format!("{own}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "only /metrics there");
    let (status, _) = env.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "the API still serves");
}

#[tokio::test]
async fn a_payment_flow_fills_the_operator_metrics_without_personal_data() {
    let env = TestEnv::start().await;
    let openid = "o-metrics-payer-1";
    let (token, _) = env.login(openid).await;
    let phone = "13912345678";
    let code = env.phone_code(phone).await;
    let (status, body) = env
        .call(
            Method::POST,
            "/v1/me/phone",
            Some(&token),
            Some(json!({ "code": code })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let no = env.recharge(&token, 100).await;
    env.sim_pay(&no, json!({})).await;
    env.wait_order_state(&token, &no, "paid").await;
    env.wait_applied().await;
    // Two failure-log rows written as the fold would, and one no fold writes (a phone
    // number as its reason): the scrape must show the first two and hide the third.
    let db = env.db().await;
    for (seq, reason) in [
        (9_000_001_i64, "amount_mismatch"),
        (9_000_002, "amount_mismatch"),
        (9_000_003, "13800138000 leaked"),
    ] {
        db.execute(
            "INSERT INTO failure_log (seq, reason, detail, occurred_at) VALUES ($1, $2, '{}', now())",
            &[&seq, &reason],
        )
        .await
        .unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let (caught_up, text) = loop {
        let (_, text) = scrape(&env, &env.api).await;
        let done = value(&text, "wxledger_projector_lag_events") == Some(0.0)
            && value(
                &text,
                "wxledger_sweep_runs_total{sweep=\"expiry\",result=\"ok\"}",
            )
            .is_some_and(|runs| runs >= 1.0);
        if done || Instant::now() > deadline {
            break (done, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(caught_up, "{text}");
    let at_least = |series: &str, min: f64| {
        let v = value(&text, series).unwrap_or_else(|| panic!("no {series}\n{text}"));
        assert!(v >= min, "{series} = {v}, expected at least {min}\n{text}");
    };
    at_least("wxledger_build_info{version=\"0.1.0\"}", 1.0);
    at_least("process_resident_memory_bytes", 1e6);
    at_least("process_open_fds", 1.0);
    at_least("process_start_time_seconds", 1.6e9);
    at_least("wxledger_nats_up", 1.0);
    at_least("wxledger_postgres_up", 1.0);
    at_least("wxledger_db_pool_max", 1.0);
    at_least("wxledger_db_pool_size", 1.0);
    at_least("wxledger_outbox_depth", 0.0);
    at_least("wxledger_outbox_oldest_seconds", 0.0);
    at_least("wxledger_suspense_balance_fen", 0.0);
    // The simulator's current platform certificate, downloaded at start, is valid for
    // decades.
    at_least(
        &format!(
            "wxledger_certificate_expiry_seconds{{serial=\"{}\"}}",
            wxledger::sim::devkeys::PLATFORMS[0].serial
        ),
        30.0 * 365.0 * 86_400.0,
    );
    at_least("wxledger_stream_last_seq", 3.0);
    at_least("wxledger_append_duration_seconds_count", 3.0);
    at_least("wxledger_projector_batch_events_count", 1.0);
    at_least("wxledger_projector_batch_duration_seconds_count", 1.0);
    at_least(
        "wxledger_outbound_calls_total{service=\"wechat\",endpoint=\"jscode2session\",outcome=\"ok\"}",
        1.0,
    );
    at_least(
        "wxledger_outbound_calls_total{service=\"wechat_pay\",endpoint=\"jsapi_prepay\",outcome=\"ok\"}",
        1.0,
    );
    at_least(
        "wxledger_outbound_call_duration_seconds_count{service=\"wechat_pay\",endpoint=\"jsapi_prepay\"}",
        1.0,
    );
    assert_eq!(
        value(
            &text,
            "wxledger_failure_log_rows{reason=\"amount_mismatch\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "wxledger_failure_log_rows{reason=\"other\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&text, "wxledger_projector_lag_seconds"), Some(0.0));
    at_least(
        "wxledger_outbound_calls_total{service=\"wechat\",endpoint=\"getuserphonenumber\",outcome=\"ok\"}",
        1.0,
    );
    let settings = env.settings();
    let secret = settings.wechat.app_secret.expose_secret();
    for personal in [openid, phone, &code, &no, &token, "13800138000", secret] {
        assert!(!text.contains(personal), "{personal} in\n{text}");
    }
}

#[tokio::test]
async fn lag_is_still_reported_and_the_scrape_answers_while_nats_is_away() {
    let proxy = Proxy::start("127.0.0.1:4222").await;
    let env = TestEnv::start_with(|s| {
        s.nats.url = format!("nats://127.0.0.1:{}", proxy.port);
        s.metrics.scrape_timeout = Duration::from_millis(300);
    })
    .await;
    env.login("o-metrics-lag").await;
    env.wait_applied().await;
    let (_, before) = scrape(&env, &env.api).await;
    let head = value(&before, "wxledger_stream_last_seq").expect("stream end read");
    assert!(head >= 1.0, "{before}");

    proxy.cut();
    let api = env.api.clone();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let text = reqwest::get(format!("{api}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            value(&text, "wxledger_nats_up") == Some(0.0)
        })
        .await,
        "the scrape notices NATS is gone"
    );
    let started = Instant::now();
    let (status, text) = scrape(&env, &env.api).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the scrape waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        value(&text, "wxledger_stream_last_seq"),
        Some(head),
        "{text}"
    );
    assert_eq!(value(&text, "wxledger_projector_lag_events"), Some(0.0));
    assert!(value(&text, "wxledger_stream_last_seq_age_seconds").is_some());
    assert_eq!(value(&text, "wxledger_postgres_up"), Some(1.0));
    proxy.restore();
}

#[tokio::test]
async fn scrapes_within_a_second_share_one_refresh_so_clients_cannot_load_postgres() {
    let env = TestEnv::start_with(|s| s.outcomes.publish = false).await;
    let depth = |text: &str| value(text, "wxledger_outbox_depth").expect("outbox depth");
    let (_, first) = scrape(&env, &env.api).await;
    let refreshed = Instant::now();
    assert_eq!(depth(&first), 0.0);
    env.db()
        .await
        .execute(
            "INSERT INTO outbox (id, seq, kind, payload, occurred_at) \
             VALUES ('test:1', 1, 'order.paid', '{}', now())",
            &[],
        )
        .await
        .unwrap();
    let burst = futures::future::join_all((0..20).map(|_| scrape(&env, &env.api))).await;
    if refreshed.elapsed() < scrape_gap() - Duration::from_millis(100) {
        for (_, text) in &burst {
            assert_eq!(depth(text), 0.0, "a scrape within the gap refreshed again");
        }
    }
    tokio::time::sleep(scrape_gap()).await;
    let (_, later) = scrape(&env, &env.api).await;
    assert_eq!(depth(&later), 1.0, "a scrape after the gap refreshes");
}

fn scrape_gap() -> Duration {
    wxledger::daemon::metrics::scrape::REFRESH_GAP
}
