//! NATS going away: 503, nothing appended, recovery without restart. (Readiness with
//! Postgres or NATS away: `readiness.rs`.)

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    common::{eventually, TestEnv},
    proxy::Proxy,
};

#[tokio::test]
async fn nats_unreachable_is_503_appends_nothing_and_recovers_without_restart() {
    let proxy = Proxy::start("127.0.0.1:4222").await;
    let env =
        TestEnv::start_with(|s| s.nats.url = format!("nats://127.0.0.1:{}", proxy.port)).await;
    let (token, _) = env.login("o-n1").await;
    let seq = env.last_seq().await;

    proxy.cut();
    let api = env.api.clone();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let r = reqwest::get(format!("{api}/readyz")).await.unwrap();
            r.status() == StatusCode::SERVICE_UNAVAILABLE
        })
        .await,
        "readyz notices NATS is gone"
    );
    let code = env.login_code("o-n2").await;
    let (status, body) = env.post_login(code).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = env
        .call(
            Method::PUT,
            "/v1/me/profile",
            Some(&token),
            Some(json!({"nickname": "offline"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        env.last_seq().await,
        seq,
        "nothing appended while NATS was away"
    );

    proxy.restore();
    let env_ref = &env;
    assert!(
        eventually(Duration::from_secs(20), || async move {
            let code = env_ref.login_code("o-n2").await;
            let (status, _) = env_ref.post_login(code).await;
            status == StatusCode::OK
        })
        .await,
        "logins work again once NATS is back"
    );
    assert_eq!(env.last_seq().await, seq + 1);
    let (_, me) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(
        me["nickname"],
        serde_json::Value::Null,
        "the refused update never happened"
    );
}
