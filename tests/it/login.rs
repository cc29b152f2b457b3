//! Login: registration, recorded logins, WeChat's error codes, bad input.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestEnv;

#[tokio::test]
async fn first_login_registers_and_later_logins_are_recorded() {
    let env = TestEnv::start().await;
    let code = env.login_code("o-alice").await;
    let (status, body) = env.post_login(code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["has_phone"], false);
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    let user_id = body["user_id"].as_str().unwrap().to_owned();

    let (token, again) = env.login("o-alice").await;
    assert_eq!(again, user_id, "the same openid keeps its user id");
    assert_eq!(
        env.event_types().await,
        ["user.registered", "user.logged_in"]
    );
    let (status, me) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user_id"], user_id.as_str());
    assert_eq!(me["login_count"], 2);
    assert_eq!(me["has_phone"], false);

    let (_, bob) = env.login("o-bob").await;
    assert_ne!(bob, user_id);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn the_session_key_never_leaves_the_server() {
    let env = TestEnv::start().await;
    let code = env.login_code("o-secret").await;
    let resp = env
        .http
        .post(format!("{}/v1/auth/login", env.api))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    let response_text = resp.text().await.unwrap();
    let session_key = env.sim_get("/sim/mini/session-key?openid=o-secret").await["session_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!response_text.contains(&session_key));
    for (_, event) in env.events().await {
        assert!(!event.to_string().contains(&session_key), "{event}");
    }
    // At rest it is sealed: neither the key nor its bytes appear in the row.
    let row = env
        .db()
        .await
        .query_one("SELECT sealed_session_key FROM wx_sessions", &[])
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get(0);
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&session_key)
        .unwrap();
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert!(!sealed
        .windows(session_key.len())
        .any(|w| w == session_key.as_bytes()));
}

#[tokio::test]
async fn malformed_requests_get_stable_codes_and_append_nothing() {
    let env = TestEnv::start().await;
    let cases: Vec<(Option<&str>, &str, StatusCode, &str)> = vec![
        (
            Some("application/json"),
            "",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Some("application/json"),
            "{",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Some("application/json"),
            "[]",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Some("application/json"),
            "{}",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Some("application/json"),
            r#"{"code": 42}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Some("application/json"),
            r#"{"code": ""}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Some("application/json"),
            r#"{"code": "a b"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Some("application/json"),
            r#"{"code": "abc", "x": 1}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Some("text/plain"),
            r#"{"code": "abc"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            None,
            r#"{"code": "abc"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (content_type, body, want_status, want_code) in cases {
        let mut req = env
            .http
            .post(format!("{}/v1/auth/login", env.api))
            .body(body.to_owned());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, want_status, "{body:?}: {v}");
        assert_eq!(v["error"]["code"], want_code, "{body:?}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let huge = format!(r#"{{"code": "{}"}}"#, "a".repeat(100_000));
    let resp = env
        .http
        .post(format!("{}/v1/auth/login", env.api))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, v) = env.call(Method::GET, "/v1/nope", None, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(env.last_seq().await, 0, "nothing appended");
    assert_eq!(
        env.sim_get("/sim/mini/stats").await["jscode2session"],
        0,
        "bad input never reaches WeChat"
    );
}

#[tokio::test]
async fn used_or_unknown_codes_are_401_and_append_nothing() {
    let env = TestEnv::start().await;
    let code = env.login_code("o-once").await;
    let (status, _) = env.post_login(&code).await;
    assert_eq!(status, StatusCode::OK);
    let before = env.last_seq().await;
    for code in [code.as_str(), "neverissued0000000000000000000000"] {
        let (status, body) = env.post_login(code).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "invalid_code");
    }
    assert_eq!(env.last_seq().await, before);
}

async fn login_with_fault(env: &TestEnv, errcode: i64, times: u32) -> (StatusCode, Value) {
    env.sim_post(
        "/sim/mini/faults",
        json!({"api": "jscode2session", "errcode": errcode, "times": times}),
    )
    .await;
    let code = env.login_code("o-fault").await;
    env.post_login(code).await
}

#[tokio::test]
async fn wechat_errors_map_to_clear_statuses() {
    let env = TestEnv::start().await;
    // Busy twice, then fine: retried with back-off inside one request.
    let (status, body) = login_with_fault(&env, -1, 2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(env.sim_get("/sim/mini/stats").await["jscode2session"], 3);
    let seq = env.last_seq().await;

    // Busy on every try (3 attempts): 503.
    let (status, body) = login_with_fault(&env, -1, 3).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "wechat_busy");
    assert_eq!(env.sim_get("/sim/mini/stats").await["jscode2session"], 6);

    for (errcode, want, code) in [
        (45011, StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        (40226, StatusCode::FORBIDDEN, "risky_user"),
    ] {
        let (status, body) = login_with_fault(&env, errcode, 1).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error"]["code"], code);
    }
    assert_eq!(env.last_seq().await, seq, "failed logins append nothing");
}

#[tokio::test]
async fn an_answer_that_waited_on_wechat_says_how_long_in_server_timing() {
    use wxledger::daemon::api::server_timing::wechat_millis;
    let env = TestEnv::start().await;
    let code = env.login_code("o-timing").await;
    let resp = env
        .http
        .post(format!("{}/v1/auth/login", env.api))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let timing = resp
        .headers()
        .get("server-timing")
        .expect("login waited on code2session")
        .to_str()
        .unwrap()
        .to_owned();
    let waited = wechat_millis(&timing).unwrap_or_else(|| panic!("no wechat;dur in {timing:?}"));
    assert!(waited > 0.0, "{timing}");
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A request that never called WeChat says nothing of it.
    let me = env
        .http
        .get(format!("{}/v1/me", env.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert!(me.headers().get("server-timing").is_none());
}
