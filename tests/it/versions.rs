//! Versioning: an event type's newer version is read alongside the old one (upcasting).
//! `order.placed` v2 wraps the amount as `{total, currency}`; a stream holding a v1 written
//! by an older wxledger and a v2 written now folds both into the same books.

use reqwest::{Method, StatusCode};
use serde_json::json;
use wxledger::core::events::Envelope;

use crate::common::{books_of, TestEnv};

#[tokio::test]
async fn a_v1_and_a_v2_order_placed_in_one_stream_fold_alike() {
    let env = TestEnv::start().await;
    let (token, user_id) = env.login("o-versions").await;
    // Written as an older wxledger did: v1, amount an integer beside its currency.
    let legacy = "legacyv1order0001";
    let v1 = Envelope {
        id: uuid::Uuid::new_v4(),
        kind: "order.placed".into(),
        version: 1,
        occurred_at: chrono::Utc::now(),
        correlation_id: "test-v1".into(),
        data: json!({
            "out_trade_no": legacy, "user_id": user_id, "openid": "o-versions",
            "kind": "order", "amount": 700, "currency": "CNY", "description": "旧版订单 v1",
            "appid": wxledger::settings::SIM_APPID, "mchid": wxledger::sim::devkeys::MCHID,
            "expires_at": chrono::Utc::now() + chrono::Duration::hours(1)}),
    };
    env.log
        .append_envelope(&v1, &format!("order.placed:{legacy}"))
        .await
        .unwrap();
    // Written now: v2.
    let (status, order) = env.place_order(&token, json!(700)).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let current = order["out_trade_no"].as_str().unwrap().to_owned();

    let versions: Vec<(String, u64)> = env
        .events()
        .await
        .into_iter()
        .filter(|(_, e)| e["type"] == "order.placed")
        .map(|(_, e)| {
            let no = e["data"]["out_trade_no"].as_str().unwrap().to_owned();
            (no, e["version"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(versions, [(legacy.to_owned(), 1), (current.clone(), 2)]);
    env.assert_events_match_schemas().await;

    // Both are orders of 700 fen, and a payment of the v1 one books like any other.
    for no in [legacy, current.as_str()] {
        let order = env.wait_order_state(&token, no, "created").await;
        assert_eq!(
            (order["amount"].as_i64(), order["currency"].as_str()),
            (Some(700), Some("CNY"))
        );
    }
    env.sim_post(
        "/sim/pay/notify",
        json!({"notify_url": format!("{}/webhooks/wechatpay", env.api),
               "transaction": {
                   "appid": wxledger::settings::SIM_APPID, "mchid": wxledger::sim::devkeys::MCHID,
                   "out_trade_no": legacy, "transaction_id": "4200000000000000000000000777",
                   "trade_type": "JSAPI", "trade_state": "SUCCESS",
                   "amount": {"total": 700, "currency": "CNY"}}}),
    )
    .await;
    env.wait_order_state(&token, legacy, "paid").await;
    let (status, _) = env
        .call(
            Method::GET,
            &format!("/v1/orders/{current}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(env.failure_reasons().await.is_empty());
    assert_eq!(books_of(&env.books().await, "sales"), 700);
}
