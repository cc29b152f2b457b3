//! The webhook against hostile input: extreme numbers in headers, floods of made-up
//! certificate serials, and certificates outside their validity.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestEnv;

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
            .header("Wechatpay-Serial", wxledger::devkeys::PUBLIC_KEY_ID)
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
            wxledger::devkeys::MCHID,
            wxledger::devkeys::MERCHANT_SERIAL,
        );
        let response = env
            .http
            .get(format!("{}/v3/certificates", env.sim))
            .header("Authorization", authorization)
            .send()
            .await
            .expect("the simulator answers (no panic dropped the connection)");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "timestamp {ts}");
    }
}
