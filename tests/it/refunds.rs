//! Refunds (v3), paying from the wallet, and the reconciliation sweep, end to end: the
//! daemon, the simulator over HTTP, the real stream and Postgres.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{books_of, eventually, TestEnv, ADMIN_TOKEN};

#[tokio::test]
async fn partial_refunds_add_up_to_a_full_refund_with_balanced_books() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-1").await;
    let no = env.paid_order(&token, 1000).await;

    let (status, body) = env
        .refund(
            &no,
            json!({"amount": 300, "reason": "少了一杯", "out_refund_no": "R-part-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["refund"]["state"], "processing");
    assert!(body["refund"]["refund_id"]
        .as_str()
        .unwrap()
        .starts_with("50000"));
    assert_eq!(body["order"]["refunding"], 300);
    env.settle("R-part-1", "success").await;
    env.wait_refund_state(&no, "R-part-1", "succeeded").await;
    let order = env
        .wait_order_state(&token, &no, "partially_refunded")
        .await;
    assert_eq!(
        (order["refunded"].as_i64(), order["refunding"].as_i64()),
        (Some(300), Some(0))
    );

    let (status, body) = env
        .refund(&no, json!({"amount": 700, "out_refund_no": "R-part-2"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("R-part-2", "success").await;
    let order = env.wait_order_state(&token, &no, "refunded").await;
    assert_eq!(order["refunded"], 1000);

    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 0);
    assert_eq!(books_of(&books, "wechat_clearing"), 0);
    assert_eq!(books_of(&books, "refunds_pending"), 0);
    assert!(env.failure_reasons().await.is_empty());
    assert_eq!(env.count_events("refund.notified").await, 2);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn bad_refunds_get_a_4xx_and_append_nothing() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-2").await;
    let unpaid = env.order_with_prepay(&token, 500).await;
    let (status, body) = env.refund(&unpaid, json!({"amount": 100})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_paid")),
        "{body}"
    );

    let paid = env.paid_order(&token, 500).await;
    for (amount, code) in [
        (json!(501), "refund_exceeds_paid"),
        (json!(0), "invalid_field"),
        (json!(-100), "invalid_field"),
        (json!(1.5), "invalid_field"),
        (json!("100"), "invalid_field"),
    ] {
        let (status, body) = env.refund(&paid, json!({"amount": amount})).await;
        assert!(status.is_client_error(), "{amount}: {status} {body}");
        assert_eq!(body["error"]["code"], code, "{amount}: {body}");
    }
    let (status, body) = env.refund("nosuchorder01", json!({"amount": 1})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("order_not_found"))
    );
    let (status, _) = env
        .call(
            Method::POST,
            &format!("/v1/admin/orders/{paid}/refunds"),
            None,
            Some(json!({"amount": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    env.wait_applied().await;
    assert_eq!(env.count_events("refund.requested").await, 0);
    assert_eq!(env.sim_get("/sim/pay/stats").await["refund"], 0);
}

#[tokio::test]
async fn the_same_out_refund_no_twice_is_one_refund() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-3").await;
    let no = env.paid_order(&token, 800).await;
    let body = json!({"amount": 200, "out_refund_no": "R-twice"});
    let (first, a) = env.refund(&no, body.clone()).await;
    let (second, b) = env.refund(&no, body).await;
    assert_eq!(
        (first, second),
        (StatusCode::CREATED, StatusCode::OK),
        "{a} {b}"
    );
    assert_eq!(a["refund"]["refund_id"], b["refund"]["refund_id"]);
    let (status, c) = env
        .refund(&no, json!({"amount": 201, "out_refund_no": "R-twice"}))
        .await;
    assert_eq!(
        (status, c["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("out_refund_no_taken")
        )
    );
    // An Idempotency-Key names the refund when no out_refund_no is given.
    let keyed = |env: &TestEnv| {
        env.http
            .post(format!("{}/v1/admin/orders/{no}/refunds", env.api))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "refund-key-1")
            .json(&json!({"amount": 100}))
            .send()
    };
    let k1: Value = keyed(&env).await.unwrap().json().await.unwrap();
    let k2: Value = keyed(&env).await.unwrap().json().await.unwrap();
    assert_eq!(k1["refund"]["out_refund_no"], k2["refund"]["out_refund_no"]);
    env.wait_applied().await;
    assert_eq!(env.count_events("refund.requested").await, 2);
    let order = env.wait_order_state(&token, &no, "paid").await;
    assert_eq!(order["refunding"], 300);
}

#[tokio::test]
async fn abnormal_then_success_is_booked_once_even_with_duplicate_notifies() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-4").await;
    let no = env.paid_order(&token, 600).await;
    let (status, body) = env
        .refund(&no, json!({"amount": 600, "out_refund_no": "R-abn"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("R-abn", "abnormal").await;
    env.wait_refund_state(&no, "R-abn", "abnormal").await;
    assert_eq!(env.failure_reasons_once(1).await, ["refund_abnormal"]);
    env.sim_faults(json!({"duplicates": 3, "concurrent": true}))
        .await;
    env.settle("R-abn", "success").await;
    env.wait_refund_state(&no, "R-abn", "succeeded").await;
    env.wait_order_state(&token, &no, "refunded").await;
    let db = env.db().await;
    let lines: i64 = db
        .query_one(
            "SELECT count(*) FROM ledger_entries WHERE group_id = 'refund:R-abn:settle'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lines, 2, "one settle group of two lines");
    let books = env.books().await;
    assert_eq!(books_of(&books, "wechat_clearing"), 0);
    assert_eq!(books_of(&books, "refunds_pending"), 0);
}

#[tokio::test]
async fn a_refund_notify_for_an_unknown_refund_goes_to_the_failure_log() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-5").await;
    let no = env.paid_order(&token, 400).await;
    env.sim_post(
        "/sim/pay/notify",
        json!({"refund": {
            "mchid": wxledger::sim::devkeys::MCHID, "out_trade_no": no, "out_refund_no": "R-stranger",
            "refund_id": "50000000000000000000000000001", "refund_status": "SUCCESS",
            "amount": {"total": 400, "refund": 100, "payer_total": 400, "payer_refund": 100}}}),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            env.failure_reasons().await == ["unknown_refund"]
        })
        .await,
        "{:?}",
        env.failure_reasons().await
    );
    let books = env.books().await;
    assert_eq!(books_of(&books, "suspense"), -100);
    assert_eq!(books_of(&books, "wechat_clearing"), -300);
    // The order itself is untouched: nobody asked for this refund.
    let order = env.wait_order_state(&token, &no, "paid").await;
    assert_eq!(order["refunded"], 0);
}

#[tokio::test]
async fn a_recharge_refund_comes_out_of_the_wallet_and_a_closed_one_goes_back() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-6").await;
    let recharge = env.paid_recharge(&token, 500).await;
    let (status, body) = env
        .refund(&recharge, json!({"amount": 200, "out_refund_no": "R-rc-1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(env.balance(&token).await, 300, "set aside at once");
    env.settle("R-rc-1", "closed").await;
    env.wait_refund_state(&recharge, "R-rc-1", "closed").await;
    assert_eq!(env.balance(&token).await, 500, "a closed refund goes back");

    // Spend it, then the recharge can no longer be refunded.
    let (status, order) = env.place_order(&token, json!(450)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, paid) = env
        .balance_pay(&token, order["out_trade_no"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    let (status, body) = env.refund(&recharge, json!({"amount": 200})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("insufficient_balance")),
        "{body}"
    );
    assert_eq!(env.balance(&token).await, 50);
    assert_eq!(env.count_events("refund.requested").await, 1);
}

#[tokio::test]
async fn a_refund_wechat_refuses_is_rejected_and_releases_the_amount() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-7").await;
    let no = env.paid_order(&token, 900).await;
    env.sim_post(
        "/sim/pay/refund-reject",
        json!({"code": "NOT_ENOUGH", "message": "基本账户余额不足"}),
    )
    .await;
    let (status, body) = env
        .refund(&no, json!({"amount": 900, "out_refund_no": "R-rej"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("refund_rejected")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NOT_ENOUGH"));
    let r = env.wait_refund_state(&no, "R-rej", "rejected").await;
    assert_eq!(r["code"], "NOT_ENOUGH");
    let order = env.wait_order_state(&token, &no, "paid").await;
    assert_eq!(order["refunding"], 0);
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 900);
    assert_eq!(books_of(&books, "refunds_pending"), 0);
    // Refundable again.
    let (status, body) = env
        .refund(&no, json!({"amount": 900, "out_refund_no": "R-rej-2"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn paying_from_the_wallet_debits_it_or_answers_409() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-wallet-1").await;
    env.paid_recharge(&token, 500).await;
    let (_, order) = env.place_order(&token, json!(300)).await;
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let (status, paid) = env.balance_pay(&token, &no).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(
        (paid["state"].as_str(), paid["paid_with"].as_str()),
        (Some("paid"), Some("wallet"))
    );
    assert_eq!(env.balance(&token).await, 200);
    // Again: the same paid order, nothing more moved.
    let (status, again) = env.balance_pay(&token, &no).await;
    assert_eq!(
        (status, again["state"].as_str()),
        (StatusCode::OK, Some("paid"))
    );
    assert_eq!(env.balance(&token).await, 200);

    let (_, big) = env.place_order(&token, json!(300)).await;
    let (status, body) = env
        .balance_pay(&token, big["out_trade_no"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("insufficient_balance")),
        "{body}"
    );
    let (_, recharge) = env
        .call(
            Method::POST,
            "/v1/recharges",
            Some(&token),
            Some(json!({"amount": 100})),
        )
        .await;
    let (status, body) = env
        .balance_pay(&token, recharge["order"]["out_trade_no"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_payable_from_wallet"))
    );
    // Another user's order is not theirs to pay.
    let (other, _) = env.login("o-wallet-1b").await;
    let (status, _) = env.balance_pay(&other, &no).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A refund of a wallet-paid order goes back to the wallet at once.
    let (status, body) = env.refund(&no, json!({"amount": 100})).await;
    assert_eq!(
        (status, body["refund"]["state"].as_str()),
        (StatusCode::CREATED, Some("succeeded")),
        "{body}"
    );
    assert_eq!(env.balance(&token).await, 300);
    assert_eq!(env.count_events("order.balance_pay_requested").await, 1);
    let (status, ledger) = env
        .call(Method::GET, "/v1/me/ledger", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refund", "wallet_payment", "recharge"]);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn two_concurrent_wallet_payments_beyond_the_balance_exactly_one_succeeds() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-wallet-2").await;
    env.paid_recharge(&token, 500).await;
    let mut nos = Vec::new();
    for _ in 0..2 {
        let (_, order) = env.place_order(&token, json!(300)).await;
        nos.push(order["out_trade_no"].as_str().unwrap().to_owned());
    }
    // Both pass the handler's check against the same balance of 500: the fold decides.
    let [a, b] = env.balance_pay_racing(&token, &nos[0], &nos[1]).await;
    assert_eq!(env.count_events("order.balance_pay_requested").await, 2);
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{} {}",
        a.1,
        b.1
    );
    let loser = if a.0 == StatusCode::CONFLICT {
        &a.1
    } else {
        &b.1
    };
    assert_eq!(loser["error"]["code"], "insufficient_balance");
    assert_eq!(env.balance(&token).await, 200);
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 300);
    assert_eq!(env.failure_reasons_once(1).await, ["insufficient_balance"]);
}

#[tokio::test]
async fn the_sweep_books_a_payment_whose_notify_never_came() {
    let env = TestEnv::start_with(|s| {
        s.pay.reconcile_after = Duration::from_secs(1);
        s.pay.reconcile_sweep = Duration::from_millis(100);
    })
    .await;
    let (token, _) = env.login("o-sweep-1").await;
    let no = env.order_with_prepay(&token, 700).await;
    env.sim_faults(json!({"lost": true})).await;
    env.sim_pay(&no, json!({})).await;
    env.wait_order_state(&token, &no, "paid").await;
    assert!(env.deliveries(&no).await.is_empty(), "the notify was lost");
    let db = env.db().await;
    let source: String = db
        .query_one(
            "SELECT source FROM payments WHERE out_trade_no = $1",
            &[&no],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(source, "query");
    assert_eq!(env.count_events("payment.queried").await, 1);
    assert_eq!(books_of(&env.books().await, "sales"), 700);
}

#[tokio::test]
async fn sync_and_the_sweep_settle_a_refund_whose_notify_never_came() {
    let env = TestEnv::start_with(|s| {
        s.pay.reconcile_after = Duration::from_secs(1);
        s.pay.reconcile_sweep = Duration::from_millis(100);
    })
    .await;
    let (token, _) = env.login("o-sweep-2").await;
    let no = env.paid_order(&token, 500).await;
    let (status, body) = env
        .refund(&no, json!({"amount": 200, "out_refund_no": "R-sync"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.sim_faults(json!({"lost": true})).await;
    env.settle("R-sync", "success").await;
    let (status, synced) = env
        .admin(Method::POST, &format!("/v1/admin/orders/{no}/sync"))
        .await;
    assert_eq!(status, StatusCode::OK, "{synced}");
    assert_eq!(synced["refunds"][0]["state"], "succeeded", "{synced}");
    assert_eq!(synced["order"]["state"], "partially_refunded");

    // The sweep finds the next one by itself.
    let (status, body) = env
        .refund(&no, json!({"amount": 300, "out_refund_no": "R-sweep"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.sim_faults(json!({"lost": true})).await;
    env.settle("R-sweep", "success").await;
    env.wait_refund_state(&no, "R-sweep", "succeeded").await;
    env.wait_order_state(&token, &no, "refunded").await;
    assert_eq!(env.count_events("refund.queried").await, 2);
    assert_eq!(env.count_events("refund.notified").await, 0);
}

/// Asks for two refunds of `no` at once, holding the projector's writes to `orders` (reads
/// go on) until both requests are appended, so that both pass the pre-check against the
/// same order and the fold decides. The two answers.
async fn refunds_racing(env: &TestEnv, no: &str, bodies: [Value; 2]) -> Vec<(StatusCode, Value)> {
    let mut db = env.db().await;
    let hold = db.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE orders IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let before = env.count_events("refund.requested").await;
    let asks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let http = env.http.clone();
            let url = format!("{}/v1/admin/orders/{no}/refunds", env.api);
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || async {
            env.count_events("refund.requested").await == before + 2
        })
        .await,
        "both requests were appended"
    );
    hold.commit().await.unwrap();
    let mut answers = Vec::new();
    for ask in asks {
        answers.push(ask.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_refund_the_fold_refuses_is_answered_from_its_verdict_and_so_is_its_retry() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-refund-race").await;
    let no = env.paid_order(&token, 500).await;
    let bodies = [
        json!({"amount": 300, "out_refund_no": "R-race-1"}),
        json!({"amount": 300, "out_refund_no": "R-race-2"}),
    ];
    let answers = refunds_racing(&env, &no, bodies.clone()).await;
    let lost: Vec<usize> = (0..2)
        .filter(|&i| answers[i].0 == StatusCode::CONFLICT)
        .collect();
    assert_eq!(lost.len(), 1, "{answers:?}");
    let (won, lost) = (1 - lost[0], lost[0]);
    assert_eq!(answers[won].0, StatusCode::CREATED, "{}", answers[won].1);
    // The fold's refusal, not the pre-check's (which would say how much is left).
    let refused = json!({"code": "refund_exceeds_paid",
                         "message": "the refunds would exceed what was paid"});
    assert_eq!(answers[lost].1["error"], refused);
    let lost_no = bodies[lost]["out_refund_no"].as_str().unwrap();
    env.wait_refund_state(&no, lost_no, "refused").await;

    // The same request again: answered from the verdict of the event that refused it.
    let (status, again) = env.refund(&no, bodies[lost].clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"], refused);
    assert_eq!(env.count_events("refund.requested").await, 2);
    assert_eq!(env.failure_reasons_once(1).await, ["refund_exceeds_paid"]);

    // A projection built before verdicts were kept has none: the retry is still a 409.
    env.db()
        .await
        .batch_execute("DELETE FROM verdicts")
        .await
        .unwrap();
    let (status, again) = env.refund(&no, bodies[lost].clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "refund_refused");
    assert_eq!(env.count_events("refund.requested").await, 2);
}
