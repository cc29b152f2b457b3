//! Every refusal of the API answers the error envelope `{"error":{"code","message"}}`,
//! also those of the layers and extractors before a handler runs.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{TestEnv, ADMIN_TOKEN};

fn assert_envelope(status: StatusCode, body: &Value, want: (StatusCode, &str)) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (want.0, Some(want.1)),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_query_string_that_does_not_parse_is_400_invalid_query() {
    let env = TestEnv::start().await;
    let (status, body) = env.admin(Method::GET, "/v1/admin/failures?limit=abc").await;
    assert_envelope(status, &body, (StatusCode::BAD_REQUEST, "invalid_query"));

    // A parsed but out-of-range limit is still the handler's `invalid_field`.
    let (status, body) = env.admin(Method::GET, "/v1/admin/failures?limit=0").await;
    assert_envelope(status, &body, (StatusCode::BAD_REQUEST, "invalid_field"));
    let (status, body) = env.admin(Method::GET, "/v1/admin/failures?limit=5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_content_length_over_max_body_bytes_is_413_body_too_large() {
    let env = TestEnv::start_with(|s| s.http.max_body_bytes = 1024).await;
    // reqwest sends a String body with its Content-Length.
    let big = format!(r#"{{"amount": 100, "reason": "{}"}}"#, "a".repeat(2000));
    let resp = env
        .http
        .post(format!("{}/v1/admin/orders/nosuchorder01/refunds", env.api))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.expect("a JSON body");
    assert_envelope(
        status,
        &body,
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
    );

    // Unauthenticated too: the size is refused before any handler runs.
    let resp = env
        .http
        .post(format!("{}/v1/auth/login", env.api))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.expect("a JSON body");
    assert_envelope(
        status,
        &body,
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
    );
    assert_eq!(env.last_seq().await, 0, "nothing appended");
}
