//! A refund sent again after its first answer was lost, refused by WeChat on the resend
//! while WeChat carries out (and pays) the first request: the refusal is checked by a
//! query, so the refund is booked once and never recorded `refund.rejected`, through the
//! admin's retry or the settlement sweep, on API v3 and v2.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use wxledger::settings::PayApi;

use crate::common::{books_of, TestEnv};

/// A paid order of `amount` fen on `api`; returns (token, out_trade_no).
async fn paid(env: &TestEnv, api: PayApi, openid: &str, amount: i64) -> (String, String) {
    let (token, _) = env.login(openid).await;
    let no = env.order_with_prepay(&token, amount).await;
    let pay = match api {
        PayApi::V2 => "/sim/pay/v2/pay",
        PayApi::V3 => "/sim/pay/pay",
    };
    env.sim_post(pay, json!({"out_trade_no": no})).await;
    env.wait_order_state(&token, &no, "paid").await;
    (token, no)
}

/// The admin's refund request of `amount` fen as `out_refund_no`.
async fn send(env: &TestEnv, no: &str, out_refund_no: &str, amount: i64) -> (StatusCode, Value) {
    let body = json!({"amount": amount, "out_refund_no": out_refund_no});
    env.refund(no, body).await
}

/// The admin's refund request, unanswered: a 5xx, and the refund stays requested.
async fn unanswered(env: &TestEnv, no: &str, out_refund_no: &str, amount: i64) {
    let (status, body) = send(env, no, out_refund_no, amount).await;
    assert!(status.is_server_error(), "{status} {body}");
    env.wait_refund_state(no, out_refund_no, "requested").await;
}

/// The admin's refund request, answered: the refund in flight at WeChat.
async fn in_flight(env: &TestEnv, no: &str, out_refund_no: &str, amount: i64) {
    let (status, body) = send(env, no, out_refund_no, amount).await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(body["refund"]["state"], "processing", "{body}");
}

/// Sends an admin refund of all `amount` fen whose answer WeChat loses after taking it.
async fn refund_with_lost_answer(env: &TestEnv, no: &str, out_refund_no: &str, amount: i64) {
    env.sim_post("/sim/pay/refund-lose", json!({})).await;
    unanswered(env, no, out_refund_no, amount).await;
}

/// WeChat refuses the next refund request with a signed 4xx that is not a "try again".
async fn refuse_next_refund(env: &TestEnv) {
    env.sim_post(
        "/sim/pay/refund-reject",
        json!({"code": "INVALID_REQUEST", "message": "退款申请已受理"}),
    )
    .await;
}

/// The resent refund was refused, and the query that followed recorded it in flight.
async fn queried_not_rejected(env: &TestEnv, no: &str, out_refund_no: &str) {
    env.wait_refund_state(no, out_refund_no, "processing").await;
    assert_eq!(env.count_events("refund.queried").await, 1);
    assert_eq!(env.count_events("refund.rejected").await, 0);
}

/// The admin's resent refund request, refused by WeChat: in flight all the same.
async fn resend(env: &TestEnv, no: &str, out_refund_no: &str, amount: i64) {
    in_flight(env, no, out_refund_no, amount).await;
    queried_not_rejected(env, no, out_refund_no).await;
}

/// The refund of all of `no`'s `amount` booked exactly once: no rejection, no conflict,
/// balanced books, and nothing more can be refunded.
async fn booked_once(env: &TestEnv, token: &str, no: &str, amount: i64) {
    env.wait_order_state(token, no, "refunded").await;
    assert_eq!(env.count_events("refund.rejected").await, 0);
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 0, "{books:?}");
    assert_eq!(books_of(&books, "wechat_clearing"), 0, "{books:?}");
    assert_eq!(books_of(&books, "refunds_pending"), 0, "{books:?}");
    assert_eq!(env.failure_reasons().await, Vec::<String>::new());
    let (status, body) = send(env, no, "R-again", amount).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(env.count_events("refund.requested").await, 1);
}

#[tokio::test]
async fn an_admin_resend_refused_after_a_lost_answer_books_the_refund_once() {
    let env = TestEnv::start().await;
    let (token, _) = env.login("o-resend-1").await;
    let no = env.paid_order(&token, 900).await;
    refund_with_lost_answer(&env, &no, "R-lost", 900).await;
    refuse_next_refund(&env).await;
    resend(&env, &no, "R-lost", 900).await;
    env.settle("R-lost", "success").await;
    env.wait_refund_state(&no, "R-lost", "succeeded").await;
    booked_once(&env, &token, &no, 900).await;
}

#[tokio::test]
async fn a_sweep_resend_refused_after_a_lost_answer_books_the_refund_once() {
    let env = TestEnv::start_with(|s| {
        s.pay.reconcile_after = Duration::from_secs(1);
        s.pay.reconcile_sweep = Duration::from_millis(100);
    })
    .await;
    let (token, _) = env.login("o-resend-2").await;
    let no = env.paid_order(&token, 700).await;
    refund_with_lost_answer(&env, &no, "R-lost", 700).await;
    refuse_next_refund(&env).await;
    queried_not_rejected(&env, &no, "R-lost").await;
    env.settle("R-lost", "success").await;
    env.wait_refund_state(&no, "R-lost", "succeeded").await;
    booked_once(&env, &token, &no, 700).await;
}

#[tokio::test]
async fn a_v2_resend_refused_after_a_lost_answer_books_the_refund_once() {
    let env = TestEnv::start_with(|s| s.pay.api = PayApi::V2).await;
    let (token, no) = paid(&env, PayApi::V2, "o-resend-3", 600).await;
    refund_with_lost_answer(&env, &no, "R-lost", 600).await;
    refuse_next_refund(&env).await;
    resend(&env, &no, "R-lost", 600).await;
    env.sim_post(
        "/sim/pay/v2/refund-notify",
        json!({"out_refund_no": "R-lost"}),
    )
    .await;
    env.wait_refund_state(&no, "R-lost", "succeeded").await;
    booked_once(&env, &token, &no, 600).await;
}

#[tokio::test]
async fn a_refused_resend_wechat_cannot_be_asked_about_records_nothing_until_asked_again() {
    for api in [PayApi::V3, PayApi::V2] {
        let env = TestEnv::start_with(|s| s.pay.api = api).await;
        let (_, no) = paid(&env, api, "o-resend-4", 500).await;
        refund_with_lost_answer(&env, &no, "R-lost", 500).await;
        refuse_next_refund(&env).await;
        env.sim_post("/sim/pay/refund-query-fail", json!({})).await;
        unanswered(&env, &no, "R-lost", 500).await;
        assert_eq!(env.count_events("refund.rejected").await, 0);
        assert_eq!(env.count_events("refund.queried").await, 0);
        // Sent again with WeChat answering: the refund WeChat took, in flight.
        in_flight(&env, &no, "R-lost", 500).await;
        assert_eq!(env.count_events("refund.rejected").await, 0);
    }
}
