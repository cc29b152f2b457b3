//! Profiles and bearer tokens.

use chrono::Utc;
use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{TestEnv, JWT_SECRET};

#[tokio::test]
async fn sets_a_profile_and_reads_it_back() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-prof").await;
    let (status, body) = env
        .call(
            Method::PUT,
            "/v1/me/profile",
            Some(&token),
            Some(json!({"nickname": " 小明 ", "avatar_url": "https://cdn.example/a.png"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nickname"], "小明");
    let (_, me) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(me["avatar_url"], "https://cdn.example/a.png");

    let seq = env.last_seq().await;
    for bad in [
        json!({"nickname": ""}),
        json!({"nickname": "x".repeat(65)}),
        json!({"nickname": "ok", "avatar_url": "javascript:alert(1)"}),
        json!({"avatar_url": "https://a/b"}),
    ] {
        let (status, body) = env
            .call(
                Method::PUT,
                "/v1/me/profile",
                Some(&token),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field");
    }
    assert_eq!(env.last_seq().await, seq);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_append_nothing() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-idem").await;
    let send = || {
        env.http
            .put(format!("{}/v1/me/profile", env.api))
            .bearer_auth(&token)
            .header("Idempotency-Key", "profile-1")
            .json(&json!({"nickname": "once"}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::OK);
    let seq = env.last_seq().await;
    assert_eq!(send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(env.last_seq().await, seq);
}

#[derive(serde::Serialize)]
struct Claims {
    sub: String,
    iss: String,
    iat: i64,
    exp: i64,
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_401() {
    let env = TestEnv::start().await;
    let (_, user_id) = env.login("o-tokens").await;
    let now = Utc::now().timestamp();
    let sign = |secret: &[u8], exp: i64| {
        encode(
            &Header::default(),
            &Claims {
                sub: user_id.clone(),
                iss: "wxledger".into(),
                iat: now - 10,
                exp,
            },
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let forged = sign(b"some-other-secret-some-other-secret!!", now + 3600);
    let expired = sign(JWT_SECRET.as_bytes(), now - 60);
    let valid = sign(JWT_SECRET.as_bytes(), now + 3600);

    let (status, body) = env.call(Method::GET, "/v1/me", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );
    for (token, code) in [
        (forged.as_str(), "invalid_token"),
        ("garbage", "invalid_token"),
        (expired.as_str(), "token_expired"),
    ] {
        let (status, body) = env.call(Method::GET, "/v1/me", Some(token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(body["error"]["code"], code);
        let (status, _) = env
            .call(
                Method::PUT,
                "/v1/me/profile",
                Some(token),
                Some(json!({"nickname": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = env.call(Method::GET, "/v1/me", Some(&valid), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same claims signed with our key pass"
    );
    assert_eq!(env.event_types().await, ["user.registered"]);
}
