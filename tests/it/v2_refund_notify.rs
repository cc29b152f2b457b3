//! API v2 refund notifies are claims: their `req_info` (AES-256-ECB) authenticates
//! nothing, so the webhook asks WeChat (`refundquery`) and only the signed answer moves
//! money. A late replay changes nothing, a forged state is logged and moves nothing, and
//! a WeChat that cannot be asked gets a 5xx so it sends the notify again.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wxledger::{
    settings::{PayApi, SIM_APPID},
    tools::audit::{self, Options},
    wechat::pay::v2::{crypto, xml},
};

use crate::{
    common::{books_of, TestEnv},
    pay_v2::{assert_match_schemas, post_v2, sim_key},
};

/// A daemon whose merchant uses API v2.
async fn start() -> TestEnv {
    TestEnv::start_with(|s| s.pay.api = PayApi::V2).await
}

/// Shrinks this test's stream's duplicate window to a second, so a test can get past it.
async fn shrink_duplicate_window(env: &TestEnv) {
    let js = env.log.jetstream();
    let mut stream = js.get_stream(&env.stream).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.duplicate_window = Duration::from_secs(1);
    js.update_stream(&config).await.unwrap();
}

/// A paid order of `amount` fen (v2 prepay and notify); returns (token, out_trade_no).
async fn paid(env: &TestEnv, openid: &str, amount: i64) -> (String, String) {
    let (token, _) = env.login(openid).await;
    let no = env.order_with_prepay(&token, amount).await;
    env.sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
        .await;
    env.wait_order_state(&token, &no, "paid").await;
    (token, no)
}

/// An admin refund of `amount` fen, accepted by WeChat (`processing`).
async fn refund(env: &TestEnv, no: &str, out_refund_no: &str, amount: i64) -> Value {
    let (status, body) = env
        .refund(
            no,
            json!({"amount": amount, "out_refund_no": out_refund_no}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["refund"]["state"], "processing", "{body}");
    body["refund"].clone()
}

/// A refund notify for our merchant whose `req_info` decrypts under our key to `status`
/// for the refund `r` (a row of the refunds API): what splicing blocks of recorded
/// notifies aims at, made here with the key.
fn forged_notify(r: &Value, status: &str, total: i64) -> String {
    let amount = r["amount"].as_i64().unwrap().to_string();
    let inner = xml::write_root(
        "root",
        [
            ("out_refund_no", r["out_refund_no"].as_str().unwrap()),
            ("out_trade_no", r["out_trade_no"].as_str().unwrap()),
            ("refund_fee", &amount),
            ("settlement_refund_fee", &amount),
            (
                "refund_id",
                r["refund_id"].as_str().unwrap_or("50300000000000000000"),
            ),
            ("refund_status", status),
            ("total_fee", &total.to_string()),
            ("refund_recv_accout", "支付用户的零钱"),
        ],
    );
    xml::write([
        ("return_code", "SUCCESS"),
        ("appid", SIM_APPID),
        ("mch_id", wxledger::sim::devkeys::MCHID),
        ("nonce_str", &uuid::Uuid::new_v4().simple().to_string()),
        ("req_info", &crypto::encrypt(inner.as_bytes(), &sim_key())),
    ])
}

/// The order's refunds as the admin API lists them.
async fn refunds(env: &TestEnv, no: &str) -> Value {
    let (status, list) = env
        .admin(Method::GET, &format!("/v1/admin/orders/{no}/refunds"))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list
}

/// What a notify could change: the books, the failure log, the order's refunds.
async fn snapshot(env: &TestEnv, no: &str) -> (Vec<(String, i64)>, Vec<String>, Value) {
    (
        env.books().await,
        env.failure_reasons().await,
        refunds(env, no).await,
    )
}

/// `refund.queried` events, as (version, data).
async fn queried(env: &TestEnv) -> Vec<(u64, Value)> {
    env.events()
        .await
        .into_iter()
        .filter(|(_, e)| e["type"] == "refund.queried")
        .map(|(_, e)| (e["version"].as_u64().unwrap(), e["data"].clone()))
        .collect()
}

async fn audit_clean(env: &TestEnv) -> u64 {
    let options = Options {
        verify_signatures: true,
        ..Options::default()
    };
    let report = audit::run(&env.settings(), &options, |_| {})
        .await
        .expect("the audit runs");
    assert!(report.is_clean(), "{}", report.to_text());
    report.signatures.map_or(0, |s| s.checked)
}

#[tokio::test]
async fn notifies_settle_by_the_signed_query_answer_and_late_replays_change_nothing() {
    let env = start().await;
    shrink_duplicate_window(&env).await;
    let (token, no) = paid(&env, "o-v2-late", 1000).await;
    refund(&env, &no, "R-late-ok", 400).await;
    refund(&env, &no, "R-late-closed", 300).await;
    let asked = |stats: Value| stats["refundquery"].as_u64().unwrap();
    let before = asked(env.sim_get("/sim/pay/v2/stats").await);

    // WeChat pays one back and closes the other; each notify is confirmed by a query.
    for (out_refund_no, status) in [("R-late-ok", "SUCCESS"), ("R-late-closed", "REFUNDCLOSE")] {
        env.sim_post(
            "/sim/pay/v2/refund-notify",
            json!({"out_refund_no": out_refund_no, "status": status}),
        )
        .await;
    }
    env.wait_refund_state(&no, "R-late-ok", "succeeded").await;
    env.wait_refund_state(&no, "R-late-closed", "closed").await;
    let order = env
        .wait_order_state(&token, &no, "partially_refunded")
        .await;
    assert_eq!(order["refunded"], 400);
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 600);
    assert_eq!(books_of(&books, "wechat_clearing"), -600);
    assert_eq!(books_of(&books, "refunds_pending"), 0);
    assert!(asked(env.sim_get("/sim/pay/v2/stats").await) >= before + 2);
    // The signed answers are the facts; the notifies ride along as claims.
    assert_eq!(env.count_events("refund.notified").await, 0);
    let answers = queried(&env).await;
    let claims: Vec<(&str, &str)> = answers
        .iter()
        .filter(|(_, d)| d["reason"] == "notify")
        .map(|(_, d)| {
            (
                d["notify"]["refund"]["status"].as_str().unwrap(),
                d["refund"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(claims, [("SUCCESS", "SUCCESS"), ("CLOSED", "CLOSED")]);
    assert!(answers.iter().all(|(version, _)| *version == 2));
    assert!(answers
        .iter()
        .all(|(_, d)| d["evidence"]["body"].as_str().unwrap().contains("<sign>")));
    assert!(env.failure_reasons().await.is_empty());
    let books_then = snapshot(&env, &no).await;

    // Both notifies again, recorded bytes, past the duplicate window: appended as new
    // answers that change nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let recorded: Vec<String> = env
        .deliveries(&no)
        .await
        .into_iter()
        .filter(|d| d["status"] == 200 && d["body"].as_str().unwrap().contains("<req_info>"))
        .map(|d| d["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recorded.len(), 2, "one delivery of each notify");
    let seq = env.last_seq().await;
    for body in recorded {
        let (status, answer) = post_v2(&env, body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer.get("return_code"), Some("SUCCESS"));
    }
    assert_eq!(
        env.last_seq().await,
        seq + 2,
        "past the window, appended again"
    );
    assert_eq!(snapshot(&env, &no).await, books_then);
    assert_eq!(env.count_events("refund.notified").await, 0);

    assert_match_schemas(&env, &["refund.queried", "refund.accepted"]).await;
    assert!(audit_clean(&env).await >= 6);
}

#[tokio::test]
async fn a_forged_state_is_logged_moves_no_money_and_a_second_refund_is_still_refused() {
    let env = start().await;
    let (token, no) = paid(&env, "o-v2-forged", 1000).await;
    let r1 = refund(&env, &no, "R-forged", 400).await;
    let too_much = json!({"amount": 700, "out_refund_no": "R-second"});

    // CLOSED, under our key, while WeChat says PROCESSING: would release the reserve.
    let (status, answer) = post_v2(&env, forged_notify(&r1, "REFUNDCLOSE", 1000)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer.get("return_code"), Some("SUCCESS"));
    let books = env.books().await;
    assert_eq!(books_of(&books, "refunds_pending"), 400);
    assert_eq!(books_of(&books, "sales"), 600);
    let list = refunds(&env, &no).await;
    assert_eq!(list["refunds"][0]["state"], "processing", "{list}");
    let (status, body) = env.refund(&no, too_much.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "refund_exceeds_paid");
    assert_eq!(
        env.failure_reasons_once(1).await,
        ["refund_notify_unconfirmed"]
    );
    let (status, failures) = env.admin(Method::GET, "/v1/admin/failures").await;
    assert_eq!(status, StatusCode::OK);
    let logged = failures["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "refund_notify_unconfirmed")
        .unwrap();
    assert_eq!(logged["detail"]["got"]["status"], "CLOSED", "{logged}");
    assert_eq!(logged["detail"]["expected"]["status"], "PROCESSING");

    // WeChat really pays it back; a forged CLOSED after that books the answer again
    // (nothing new) and is logged once more.
    env.sim_post(
        "/sim/pay/v2/refund-notify",
        json!({"out_refund_no": "R-forged", "status": "SUCCESS"}),
    )
    .await;
    env.wait_refund_state(&no, "R-forged", "succeeded").await;
    let (status, _) = post_v2(&env, forged_notify(&r1, "REFUNDCLOSE", 1000)).await;
    assert_eq!(status, StatusCode::OK);
    let reasons = env.failure_reasons().await;
    assert_eq!(
        reasons
            .iter()
            .filter(|r| *r == "refund_notify_unconfirmed")
            .count(),
        2,
        "{reasons:?}"
    );
    let order = env
        .wait_order_state(&token, &no, "partially_refunded")
        .await;
    assert_eq!(
        (order["refunded"].as_i64(), order["refunding"].as_i64()),
        (Some(400), Some(0))
    );
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 600);
    assert_eq!(books_of(&books, "wechat_clearing"), -600);
    assert_eq!(books_of(&books, "refunds_pending"), 0);
    let (status, body) = env.refund(&no, too_much).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A claim for a refund WeChat does not know: refused, nothing appended.
    let seq = env.last_seq().await;
    let mut ghost = r1.clone();
    ghost["out_refund_no"] = json!("R-ghost");
    let (status, answer) = post_v2(&env, forged_notify(&ghost, "SUCCESS", 1000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.get("return_code"), Some("FAIL"));
    assert_eq!(env.last_seq().await, seq);

    assert_match_schemas(&env, &["refund.queried"]).await;
    audit_clean(&env).await;
}

#[tokio::test]
async fn a_refund_notify_wechat_cannot_be_asked_about_is_a_5xx_and_appends_nothing() {
    // A port nothing listens on: WeChat Pay unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = TestEnv::start_with(|s| {
        s.pay.api = PayApi::V2;
        s.pay.api_base = dead;
    })
    .await;
    let r = json!({"out_refund_no": "R-unasked", "out_trade_no": "o-unasked-000001",
                   "amount": 100, "refund_id": "50300000000000000001"});
    let seq = env.last_seq().await;
    for _ in 0..2 {
        let (status, answer) = post_v2(&env, forged_notify(&r, "SUCCESS", 100)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.get("return_code"), Some("FAIL"));
    }
    assert_eq!(env.last_seq().await, seq);
}

/// The `req_info` of the refund notify for `out_refund_no` that the daemon took (200).
async fn recorded_req_info(env: &TestEnv, no: &str, out_refund_no: &str) -> String {
    env.deliveries(no)
        .await
        .into_iter()
        .filter(|d| d["status"] == 200)
        .filter_map(|d| {
            let body = d["body"].as_str()?.to_owned();
            let fields = xml::parse(body.as_bytes(), 64 * 1024).ok()?;
            let req_info = fields.non_empty("req_info")?.to_owned();
            let (plain, _) = crypto::decrypt_refund(&req_info, &sim_key(), 64 * 1024).ok()?;
            plain.contains(out_refund_no).then_some(req_info)
        })
        .next()
        .unwrap_or_else(|| panic!("a recorded notify for {out_refund_no}"))
}

#[tokio::test]
async fn ecb_blocks_spliced_from_two_recorded_notifies_forge_nothing() {
    use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
    let env = start().await;
    let (_, no) = paid(&env, "o-v2-splice", 1000).await;
    refund(&env, &no, "R-splice-1", 400).await;
    refund(&env, &no, "R-splice-2", 400).await;
    // WeChat could not pay the first back (CHANGE: not final, its 400 stays set aside)
    // and closed the second.
    for (out_refund_no, status) in [("R-splice-1", "CHANGE"), ("R-splice-2", "REFUNDCLOSE")] {
        env.sim_post(
            "/sim/pay/v2/refund-notify",
            json!({"out_refund_no": out_refund_no, "status": status}),
        )
        .await;
    }
    env.wait_refund_state(&no, "R-splice-1", "abnormal").await;
    env.wait_refund_state(&no, "R-splice-2", "closed").await;

    // The first notify's blocks up to its status, the second's from there: a CLOSED for
    // the first refund, without the key. (The key is used here only to find the block
    // boundary, which an attacker reads off WeChat's documented layout.)
    let (a, b) = (
        recorded_req_info(&env, &no, "R-splice-1").await,
        recorded_req_info(&env, &no, "R-splice-2").await,
    );
    let plain = |req_info: &str| {
        crypto::decrypt_refund(req_info, &sim_key(), 4096)
            .unwrap()
            .0
    };
    let (plain_a, plain_b) = (plain(&a), plain(&b));
    let status_at = plain_a.find("<refund_status>").unwrap();
    assert_eq!(plain_b.find("<refund_status>"), Some(status_at));
    let id_end = plain_a.find("</refund_id>").unwrap() + "</refund_id>".len();
    let split = status_at / 16 * 16;
    assert!(
        split >= id_end,
        "a block boundary between the refund id and the status"
    );
    let (a, b) = (B64.decode(a).unwrap(), B64.decode(b).unwrap());
    let spliced = B64.encode([&a[..split], &b[split..]].concat());
    let (forged, fields) = crypto::decrypt_refund(&spliced, &sim_key(), 4096).unwrap();
    assert_eq!(fields.get("out_refund_no"), Some("R-splice-1"), "{forged}");
    assert_eq!(fields.get("refund_status"), Some("REFUNDCLOSE"), "{forged}");

    let body = xml::write([
        ("return_code", "SUCCESS"),
        ("appid", SIM_APPID),
        ("mch_id", wxledger::sim::devkeys::MCHID),
        ("nonce_str", "spliced0000000000000000000000000"),
        ("req_info", &spliced),
    ]);
    let (status, _) = post_v2(&env, body).await;
    assert_eq!(status, StatusCode::OK);
    let books = env.books().await;
    assert_eq!(
        books_of(&books, "refunds_pending"),
        400,
        "the first reserve holds"
    );
    assert_eq!(books_of(&books, "sales"), 600);
    let list = refunds(&env, &no).await;
    let first = list["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["out_refund_no"] == "R-splice-1")
        .unwrap();
    assert_eq!(first["state"], "abnormal", "{list}");
    let (status, body) = env
        .refund(&no, json!({"amount": 601, "out_refund_no": "R-splice-3"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"]["code"], "refund_exceeds_paid",
        "refused before WeChat"
    );
    assert_eq!(
        env.failure_reasons().await,
        ["refund_notify_unconfirmed", "refund_abnormal"]
    );
    audit_clean(&env).await;
}
