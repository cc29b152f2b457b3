//! Orders and recharges paid through the simulator: booked once, in balanced postings,
//! with every money problem in the failure log.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wxledger::wechat::pay::crypto::{pay_sign_message, SigningKey};

use crate::common::{books_of, TestEnv, ADMIN_TOKEN};

#[tokio::test]
async fn a_paid_recharge_credits_the_wallet_once_with_balanced_postings() {
    let env = TestEnv::start().await;
    let (token, user_id) = env.login("o-pay-1").await;
    let (status, body) = env
        .call(
            Method::POST,
            "/v1/recharges",
            Some(&token),
            Some(json!({"amount": 500})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let order = &body["order"];
    assert_eq!(order["kind"], "recharge");
    assert_eq!(order["state"], "prepay_issued");
    let no = order["out_trade_no"].as_str().unwrap();

    // Exactly wx.requestPayment's params, signed by the merchant key.
    let params = body["payment"].as_object().unwrap();
    let mut keys: Vec<&str> = params.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["nonceStr", "package", "paySign", "signType", "timeStamp"]
    );
    assert_eq!(params["signType"], "RSA");
    assert!(params["package"]
        .as_str()
        .unwrap()
        .starts_with("prepay_id=wx"));
    let merchant = SigningKey::from_pkcs8_pem(wxledger::sim::devkeys::MERCHANT_KEY_PEM).unwrap();
    merchant
        .verifying_key()
        .verify(
            &pay_sign_message(
                wxledger::settings::SIM_APPID,
                params["timeStamp"].as_str().unwrap(),
                params["nonceStr"].as_str().unwrap(),
                params["package"].as_str().unwrap(),
            ),
            params["paySign"].as_str().unwrap(),
        )
        .expect("paySign verifies with the merchant's public key");

    let paid = env.sim_pay(no, json!({})).await;
    env.wait_delivered(no, 204).await;
    let order = env.wait_order_state(&token, no, "paid").await;
    assert_eq!(order["transaction_id"], paid["transaction_id"]);
    assert_eq!(env.balance(&token).await, 500);

    let (_, ledger) = env
        .call(Method::GET, "/v1/me/ledger", Some(&token), None)
        .await;
    assert_eq!(ledger["balance"], 500);
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{ledger}");
    assert_eq!(entries[0]["amount"], 500);
    assert_eq!(entries[0]["out_trade_no"], no);

    let books = env.books().await;
    assert_eq!(books_of(&books, &format!("wallet:{user_id}")), 500);
    assert_eq!(books_of(&books, "wechat_clearing"), -500);
    assert!(env.failure_reasons().await.is_empty());
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn a_paid_order_books_sales_and_shows_paid() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-pay-2").await;
    let no = env.order_with_prepay(&token, 1999).await;
    let (_, order) = env
        .call(Method::GET, &format!("/v1/orders/{no}"), Some(&token), None)
        .await;
    assert_eq!(order["state"], "prepay_issued");
    env.sim_pay(&no, json!({})).await;
    env.wait_order_state(&token, &no, "paid").await;
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 1999);
    assert_eq!(books_of(&books, "wechat_clearing"), -1999);
    assert_eq!(env.balance(&token).await, 0, "an order is not a recharge");
    let (_, mine) = env
        .call(Method::GET, "/v1/me/orders", Some(&token), None)
        .await;
    assert_eq!(mine["orders"].as_array().unwrap().len(), 1);
    // Paying a paid order again is refused before WeChat is asked.
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/orders/{no}/wechat-pay"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "order_paid");
}

#[tokio::test]
async fn fifteen_concurrent_duplicates_and_a_query_book_the_transaction_once() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-pay-3").await;
    let no = env.recharge(&token, 300).await;
    env.sim_faults(json!({"duplicates": 14, "concurrent": true}))
        .await;
    env.sim_pay(&no, json!({})).await;
    env.wait_order_state(&token, &no, "paid").await;
    let (status, sync) = env
        .admin(Method::POST, &format!("/v1/admin/orders/{no}/sync"))
        .await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    assert_eq!(sync["wechat_trade_state"], "SUCCESS");
    assert_eq!(sync["recorded"], true);
    let deliveries = env.wait_delivered(&no, 204).await;
    assert!(deliveries.len() >= 15, "{deliveries:?}");
    assert_eq!(env.balance(&token).await, 300, "booked once");
    let db = env.db().await;
    let postings: i64 = db
        .query_one(
            "SELECT count(*) FROM ledger_entries WHERE out_trade_no = $1",
            &[&no],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(postings, 2, "one group of two postings");
    assert!(env.count_events("payment.queried").await == 1);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn amounts_must_be_positive_integer_fen_within_the_maximum() {
    let env = TestEnv::start_with(|s| s.pay.max_amount_fen = 100_000).await;
    let (token, _) = env.login("o-pay-4").await;
    let before = env.last_seq().await;
    for bad in [
        json!(0),
        json!(-5),
        json!(100_001),
        json!(1.5),
        json!(100.0),
        json!("100"),
        json!("1.00"),
        json!(null),
    ] {
        let (status, body) = env.place_order(&token, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{bad}");
        let (status, _) = env
            .call(
                Method::POST,
                "/v1/recharges",
                Some(&token),
                Some(json!({"amount": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(env.last_seq().await, before, "nothing appended");
    let (status, _) = env.place_order(&token, json!(100_000)).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn another_users_order_is_not_found() {
    let env = TestEnv::start().await;
    let (alice, _) = env.login("o-pay-5a").await;
    let (bob, _) = env.login("o-pay-5b").await;
    let no = env.order_with_prepay(&alice, 100).await;
    for (method, path) in [
        (Method::GET, format!("/v1/orders/{no}")),
        (Method::POST, format!("/v1/orders/{no}/wechat-pay")),
    ] {
        let (status, body) = env.call(method, &path, Some(&bob), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "order_not_found");
    }
    let (_, mine) = env
        .call(Method::GET, "/v1/me/orders", Some(&bob), None)
        .await;
    assert!(mine["orders"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_idempotency_key_places_one_order() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-pay-6").await;
    let post = |amount: i64| {
        env.http
            .post(format!("{}/v1/orders", env.api))
            .bearer_auth(&token)
            .header("Idempotency-Key", "order-key-1")
            .json(&json!({"amount": amount, "description": "tea"}))
            .send()
    };
    let first = post(100).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = post(100).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["out_trade_no"], again["out_trade_no"]);
    let other = post(200).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(env.count_events("order.placed").await, 1);
}

#[tokio::test]
async fn money_problems_land_in_the_failure_log_not_the_wallet() {
    let env = TestEnv::start().await;
    let (token, user_id) = env.login("o-pay-7").await;

    // Paid another amount than ordered: received, not credited.
    let short = env.recharge(&token, 1000).await;
    env.sim_pay(&short, json!({"amount": 1})).await;
    env.wait_delivered(&short, 204).await;

    // Paid twice: the second transaction is money received twice, flagged.
    let twice = env.recharge(&token, 200).await;
    env.sim_pay(&twice, json!({})).await;
    env.wait_order_state(&token, &twice, "paid").await;
    env.sim_pay(&twice, json!({})).await;
    env.wait_applied().await;

    // A notify for an order we never placed, and one for another merchant.
    let stranger = json!({
        "appid": wxledger::settings::SIM_APPID, "mchid": wxledger::sim::devkeys::MCHID,
        "out_trade_no": "nosuchorder0001", "transaction_id": "4200000000000000000000000001",
        "trade_type": "JSAPI", "trade_state": "SUCCESS", "success_time": "2026-11-21T10:00:00+08:00",
        "payer": {"openid": "o-x"}, "amount": {"total": 77, "payer_total": 77, "currency": "CNY", "payer_currency": "CNY"}
    });
    env.sim_post("/sim/pay/notify", json!({"transaction": stranger}))
        .await;
    let mine = env.recharge(&token, 50).await;
    let mut foreign = stranger.clone();
    foreign["out_trade_no"] = json!(mine);
    foreign["mchid"] = json!("1900009999");
    foreign["transaction_id"] = json!("4200000000000000000000000002");
    foreign["amount"]["total"] = json!(50);
    env.sim_post("/sim/pay/notify", json!({"transaction": foreign}))
        .await;

    let mut reasons = env.failure_reasons_once(4).await;
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "amount_mismatch",
            "double_payment",
            "merchant_mismatch",
            "unknown_order"
        ]
    );
    let books = env.books().await;
    assert_eq!(
        books_of(&books, &format!("wallet:{user_id}")),
        200,
        "only the good recharge"
    );
    assert_eq!(
        books_of(&books, "suspense"),
        1 + 200 + 77,
        "received, not credited"
    );
    assert_eq!(books_of(&books, "wechat_clearing"), -(200 + 1 + 200 + 77));
    let (_, order) = env
        .call(
            Method::GET,
            &format!("/v1/orders/{short}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        order["state"], "prepay_issued",
        "a short payment does not pay the order"
    );
}

#[tokio::test]
async fn an_expired_order_is_closed_at_wechat_and_a_late_payment_is_flagged_not_dropped() {
    let env = TestEnv::start_with(|s| s.pay.order_ttl = std::time::Duration::from_secs(60)).await;
    let (token, user_id) = env.login("o-pay-8").await;
    let no = env.recharge(&token, 400).await;
    env.clock_offset
        .store(120, std::sync::atomic::Ordering::Relaxed);
    env.wait_order_state(&token, &no, "closed").await;
    let stats = env.sim_get("/sim/pay/stats").await;
    assert!(
        stats["close"].as_u64().unwrap() >= 1,
        "closed at WeChat too: {stats}"
    );
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/orders/{no}/wechat-pay"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    env.sim_pay(&no, json!({})).await;
    env.wait_delivered(&no, 204).await;
    assert_eq!(env.failure_reasons_once(1).await, ["paid_after_close"]);
    let books = env.books().await;
    assert_eq!(
        books_of(&books, "suspense"),
        400,
        "booked as money received"
    );
    assert_eq!(books_of(&books, &format!("wallet:{user_id}")), 0);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn a_pay_error_is_learned_by_sync() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-pay-9").await;
    let no = env.order_with_prepay(&token, 100).await;
    env.sim_pay(&no, json!({"outcome": "payerror"})).await;
    let (status, sync) = env
        .admin(Method::POST, &format!("/v1/admin/orders/{no}/sync"))
        .await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    assert_eq!(sync["wechat_trade_state"], "PAYERROR");
    assert_eq!(sync["order"]["state"], "pay_error");
    // The admin endpoints want the admin credential, not a user's token.
    let (status, _) = env
        .call(Method::GET, "/v1/admin/failures", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = env
        .call(Method::GET, "/v1/admin/failures", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}
