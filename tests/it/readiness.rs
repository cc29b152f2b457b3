//! Readiness per role, against real servers taken away: Postgres down stops the API role
//! only; a frozen NATS (its socket still connected) stops both until it resumes; a
//! projector held back beyond `projector.ready_max_lag_events` stops the API role.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use wxledger::tools::harness::NatsNode;

use crate::{
    common::{eventually, TestEnv},
    operations::Doc,
    proxy::Proxy,
};

/// `GET {api}{path}`: its status and JSON body.
async fn ask(api: &str, path: &str) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{api}{path}")).await.unwrap();
    let status = r.status();
    (status, r.json::<Value>().await.unwrap())
}

/// [`ask`], holding the answer to what `/openapi.json` documents for it.
async fn ask_documented(env: &TestEnv, doc: &Doc, path: &str) -> (StatusCode, Value) {
    let (status, body) = ask(&env.api, path).await;
    doc.check_answer(&Method::GET, path, status, &body);
    (status, body)
}

/// Whether the body's reasons include one starting with `start`.
fn has_reason(body: &Value, start: &str) -> bool {
    body["reasons"].as_array().is_some_and(|r| {
        r.iter()
            .any(|r| r.as_str().is_some_and(|r| r.starts_with(start)))
    })
}

#[tokio::test]
async fn postgres_unreachable_shows_in_readyz() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let env = TestEnv::start_with(|s| {
        s.database.url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
        // Each answer checks afresh: the test asks right after cutting.
        s.http.ready_cache = Duration::ZERO;
    })
    .await;
    let doc = Doc::fetch(&env).await;
    let readyz = || ask_documented(&env, &doc, "/readyz");
    let (status, body) = readyz().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["postgres"], "up");

    proxy.cut();
    let (status, body) = readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["postgres"], "down");
    assert_eq!(body["checks"]["nats"], "up");
    assert!(has_reason(&body, "postgres: "), "{body}");
    let (status, api) = ask_documented(&env, &doc, "/readyz/api").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{api}");
    assert_eq!(api["role"], "api");
    let (status, webhooks) = ask_documented(&env, &doc, "/readyz/webhooks").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "notifies need only NATS: {webhooks}"
    );
    assert_eq!(webhooks["role"], "webhooks");
    let (status, body) = env.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "liveness does not depend on Postgres: {body}"
    );

    proxy.restore();
    assert!(
        eventually(Duration::from_secs(10), || async {
            readyz().await.0 == StatusCode::OK
        })
        .await
    );
}

#[tokio::test]
async fn a_frozen_nats_is_not_ready_though_connected_and_is_again_once_it_resumes() {
    let mut nats = NatsNode::start();
    nats.wait_listening().await;
    let env = TestEnv::start_with(|s| s.nats.url = nats.url()).await;
    let doc = Doc::fetch(&env).await;
    for path in ["/readyz/webhooks", "/readyz/api"] {
        let (status, body) = ask_documented(&env, &doc, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }

    nats.pause();
    let frozen = eventually(Duration::from_secs(10), || async {
        ask(&env.api, "/readyz/webhooks").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(frozen, "the webhook role notices NATS does not answer");
    let (_, last) = ask_documented(&env, &doc, "/readyz/webhooks").await;
    assert_eq!(last["checks"]["nats"], "down");
    assert!(has_reason(&last, "nats: "), "{last}");
    let (status, body) = ask_documented(&env, &doc, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(has_reason(&body, "nats: "), "{body}");
    let (status, _) = env.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on NATS");

    nats.resume();
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask(&env.api, "/readyz/webhooks").await.0 == StatusCode::OK
                && ask(&env.api, "/readyz").await.0 == StatusCode::OK
        })
        .await,
        "ready again once NATS answers"
    );
}

#[tokio::test]
async fn a_projector_held_back_beyond_the_lag_stops_the_api_role_only() {
    let env = TestEnv::start_with(|s| {
        s.projector.ready_max_lag_events = 1;
        s.projector.read_your_writes_timeout = Duration::from_millis(100);
    })
    .await;
    let doc = Doc::fetch(&env).await;
    env.login("o-ready-0").await;
    let (status, body) = ask_documented(&env, &doc, "/readyz/api").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["projector_lag"], 0);

    // The projector's commit waits behind this lock; reads of the checkpoint do not.
    let mut holder = env.db().await;
    let hold = holder.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE projector_checkpoints IN EXCLUSIVE MODE")
        .await
        .unwrap();
    for openid in ["o-ready-1", "o-ready-2", "o-ready-3"] {
        let code = env.login_code(openid).await;
        // Appended; not applied in time, so 503 `not_yet_applied`.
        env.post_login(code).await;
    }
    let behind = eventually(Duration::from_secs(10), || async {
        ask(&env.api, "/readyz/api").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(behind, "the API role notices the projector is behind");
    let (_, last) = ask_documented(&env, &doc, "/readyz/api").await;
    assert!(has_reason(&last, "projector lag "), "{last}");
    assert_eq!(last["checks"]["projector"], "behind");
    assert_eq!(last["checks"]["postgres"], "up");
    let (status, body) = ask_documented(&env, &doc, "/readyz/webhooks").await;
    assert_eq!(status, StatusCode::OK, "notifies need no projector: {body}");

    hold.rollback().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask(&env.api, "/readyz/api").await.0 == StatusCode::OK
        })
        .await,
        "ready again once the projector caught up"
    );
}
