//! Phone binding: by phone code and by legacy encryptedData; one user per number;
//! tampering, watermarks and reused codes; the shared access token.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestEnv;

/// Logs in `openids`, then binds each user's phone code at once (concurrently).
async fn bind_concurrently(
    env: &TestEnv,
    openids: &[String],
    phones: &[String],
) -> Vec<(StatusCode, Value)> {
    let mut tokens = Vec::new();
    let mut codes = Vec::new();
    for (openid, phone) in openids.iter().zip(phones) {
        tokens.push(env.login(openid).await.0);
        codes.push(env.phone_code(phone).await);
    }
    futures::future::join_all(
        tokens
            .iter()
            .zip(&codes)
            .map(|(t, c)| bind(env, t, json!({"code": c}))),
    )
    .await
}

async fn bind(env: &TestEnv, token: &str, body: Value) -> (StatusCode, Value) {
    env.call(Method::POST, "/v1/me/phone", Some(token), Some(body))
        .await
}

#[tokio::test]
async fn binds_a_phone_by_code_and_masks_it() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-p1").await;
    let code = env.phone_code("13800138000").await;
    let (status, body) = bind(&env, &token, json!({"code": code})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phone"]["masked"], "138****8000");
    assert_eq!(body["has_phone"], true);
    assert!(!body.to_string().contains("13800138000"), "never unmasked");

    let (_, me) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(me["phone"]["masked"], "138****8000");
    let (_, login) = env.post_login(env.login_code("o-p1").await).await;
    assert_eq!(login["has_phone"], true);

    let events = env.events().await;
    let bound = &events[1].1;
    assert_eq!(bound["type"], "user.phone_bound");
    assert_eq!(bound["data"]["source"], "phone_code");
    // Version 2: the number sealed under the user's data key, with its blind index.
    assert_eq!(bound["version"], 2);
    assert!(!bound.to_string().contains("13800138000"), "never in clear");
    assert!(bound["data"]["phone_bidx"].as_str().unwrap().len() == 64);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn a_phone_code_works_once() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-p2").await;
    let code = env.phone_code("13800138001").await;
    let (status, _) = bind(&env, &token, json!({"code": code})).await;
    assert_eq!(status, StatusCode::OK);
    let seq = env.last_seq().await;
    let (status, body) = bind(&env, &token, json!({"code": code})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_phone_code");
    assert_eq!(env.last_seq().await, seq);
}

#[tokio::test]
async fn a_phone_bound_to_another_user_is_409_and_appends_nothing() {
    let env = TestEnv::start().await;
    let (alice, _) = env.login("o-alice").await;
    let (bob, _) = env.login("o-bob").await;
    let (status, _) = bind(
        &env,
        &alice,
        json!({"code": env.phone_code("13900000000").await}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seq = env.last_seq().await;
    let (status, body) = bind(
        &env,
        &bob,
        json!({"code": env.phone_code("13900000000").await}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "phone_taken");
    assert_eq!(env.last_seq().await, seq);
    // Binding the same number again to its owner records nothing new.
    let (status, _) = bind(
        &env,
        &alice,
        json!({"code": env.phone_code("13900000000").await}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(env.last_seq().await, seq);
}

#[tokio::test]
async fn racing_binds_of_one_number_leave_it_with_exactly_one_user() {
    let env = TestEnv::start().await;
    let openids: Vec<String> = (0..6).map(|i| format!("o-race-{i}")).collect();
    let results = bind_concurrently(&env, &openids, &vec!["13700000000".into(); 6]).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let taken = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"]["code"] == "phone_taken")
        .count();
    assert_eq!((ok, taken), (1, openids.len() - 1), "{results:?}");
    let holders: i64 = env
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE phone_key IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(holders, 1);
}

async fn encrypted(env: &TestEnv, openid: &str, phone: &str, appid: Option<&str>) -> Value {
    let mut body = json!({"openid": openid, "phone_number": phone});
    if let Some(appid) = appid {
        body["watermark_appid"] = appid.into();
    }
    env.sim_post("/sim/mini/encrypted-phone", body).await
}

#[tokio::test]
async fn binds_a_phone_from_legacy_encrypted_data() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-legacy").await;
    let enc = encrypted(&env, "o-legacy", "13600000000", None).await;
    let (status, body) = bind(
        &env,
        &token,
        json!({"encrypted_data": enc["encrypted_data"], "iv": enc["iv"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phone"]["masked"], "136****0000");
    let events = env.events().await;
    assert_eq!(events[1].1["data"]["source"], "encrypted_data");
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn tampered_data_wrong_iv_and_foreign_watermarks_are_400_and_append_nothing() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-tamper").await;
    let seq = env.last_seq().await;
    let enc = encrypted(&env, "o-tamper", "13500000000", None).await;
    let data = B64.decode(enc["encrypted_data"].as_str().unwrap()).unwrap();

    let mut flipped_last = data.clone();
    *flipped_last.last_mut().unwrap() ^= 0x55;
    let mut flipped_first = data.clone();
    flipped_first[3] ^= 0x01;
    let wrong_iv = B64.encode([0x11u8; 16]);
    let cases = [
        json!({"encrypted_data": B64.encode(&flipped_last), "iv": enc["iv"]}),
        json!({"encrypted_data": B64.encode(&flipped_first), "iv": enc["iv"]}),
        json!({"encrypted_data": enc["encrypted_data"], "iv": wrong_iv}),
        json!({"encrypted_data": "not base64 at all", "iv": enc["iv"]}),
        json!({"encrypted_data": enc["encrypted_data"], "iv": "short"}),
    ];
    for case in cases {
        let (status, body) = bind(&env, &token, case.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert_eq!(body["error"]["code"], "invalid_encrypted_data", "{case}");
    }

    let foreign = encrypted(&env, "o-tamper", "13500000000", Some("wx-other-app")).await;
    let (status, body) = bind(
        &env,
        &token,
        json!({"encrypted_data": foreign["encrypted_data"], "iv": foreign["iv"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "watermark_mismatch");

    let code = env
        .sim_post(
            "/sim/mini/phone-codes",
            json!({"phone_number": "13500000000", "watermark_appid": "wx-other-app"}),
        )
        .await["code"]
        .clone();
    let (status, body) = bind(&env, &token, json!({"code": code})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "watermark_mismatch");

    for bad in [
        json!({}),
        json!({"code": "abc", "iv": "x"}),
        json!({"encrypted_data": "abc"}),
        json!({"code": ""}),
    ] {
        let (status, body) = bind(&env, &token, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{bad}");
    }
    assert_eq!(env.last_seq().await, seq, "nothing appended");
}

#[tokio::test]
async fn encrypted_data_from_an_older_session_is_refused() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-rotate").await;
    let old = encrypted(&env, "o-rotate", "13400000000", None).await;
    // A new login rotates the session key; data sealed under the old one no longer opens.
    let (token2, _) = env.login("o-rotate").await;
    for t in [&token, &token2] {
        let (status, body) = bind(
            &env,
            t,
            json!({"encrypted_data": old["encrypted_data"], "iv": old["iv"]}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn one_access_token_serves_concurrent_callers_and_is_renewed_once_when_revoked() {
    let env = TestEnv::start().await;
    let openids: Vec<String> = (0..8).map(|i| format!("o-tok-{i}")).collect();
    let phones: Vec<String> = (0..8).map(|i| format!("1330000000{i}")).collect();
    let results = bind_concurrently(&env, &openids, &phones).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::OK),
        "{results:?}"
    );
    let stats = env.sim_get("/sim/mini/stats").await;
    assert_eq!(
        stats["stable_token"], 1,
        "one token fetch for all callers: {stats}"
    );

    // WeChat revokes the token: the next call gets 40001, expires it, fetches once, retries.
    env.sim_post("/sim/mini/revoke-tokens", json!({})).await;
    let (t, _) = env.login("o-tok-late").await;
    let (status, body) = bind(
        &env,
        &t,
        json!({"code": env.phone_code("13300000099").await}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = env.sim_get("/sim/mini/stats").await;
    assert_eq!(stats["stable_token"], 2, "{stats}");
    assert_eq!(
        stats["getuserphonenumber"], 10,
        "8 + a failed try + its retry: {stats}"
    );
}
