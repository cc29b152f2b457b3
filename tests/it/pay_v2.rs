//! WeChat Pay API v2 (legacy merchants): the v2 client against the simulator, XML
//! notifies through `POST /webhooks/wechatpay/v2` booked by the same fold as v3, and every
//! hostile or unsigned notify refused with a 4xx and nothing appended.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wxledger::{
    core::events::{Event, LegacyPaymentQueried, QueryReason},
    settings::{PayApi, PaySettings, V2SignType, SIM_APPID},
    store::stream::log::Draft,
    wechat::pay::{
        v2::{
            sign::{self, ApiKey, SignType},
            xml, RefundRequest, V2Client, V2Error,
        },
        Prepay,
    },
};

use crate::common::{books_of, eventually, SchemaSet, TestEnv};

/// A daemon whose merchant uses API v2, signing with `sign_type`.
async fn start(sign_type: V2SignType) -> TestEnv {
    TestEnv::start_with(|s| {
        s.pay.api = PayApi::V2;
        s.pay.v2.sign_type = sign_type;
    })
    .await
}

/// A v2 client like the daemon's: the simulator's merchant, notifies to the daemon.
fn client(env: &TestEnv, sign_type: V2SignType) -> V2Client {
    let mut pay = PaySettings {
        api_base: env.sim.clone(),
        notify_url: format!("{}/webhooks/wechatpay", env.api),
        ..wxledger::Settings::development().pay
    };
    pay.v2.sign_type = sign_type;
    V2Client::new(&pay, SIM_APPID, wxledger::core::clock::system())
        .unwrap()
        .expect("the simulator's merchant has a v2 key")
}

/// Places an order of `amount` fen for `openid` and gets its v2 prepay at the simulator;
/// returns (token, out_trade_no, wx.requestPayment params).
async fn v2_order(
    env: &TestEnv,
    v2: &V2Client,
    openid: &str,
    amount: i64,
) -> (String, String, wxledger::wechat::pay::PayParams) {
    let (token, _) = env.login(openid).await;
    let (status, order) = env.place_order(&token, json!(amount)).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let (_, params) = v2
        .jsapi(&Prepay {
            out_trade_no: &no,
            description: order["description"].as_str().unwrap(),
            amount,
            openid,
            time_expire: chrono::Utc::now() + chrono::Duration::minutes(30),
        })
        .await
        .expect("unifiedorder at the simulator");
    (token, no, params)
}

/// POSTs a body to the v2 webhook; answers the status and the parsed XML answer.
pub(crate) async fn post_v2(
    env: &TestEnv,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, xml::Fields) {
    let response = env
        .http
        .post(format!("{}/webhooks/wechatpay/v2", env.api))
        .header("Content-Type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.bytes().await.unwrap();
    let fields = xml::parse(&text, 4096).expect("the webhook answers WeChat's XML");
    (status, fields)
}

pub(crate) fn sim_key() -> ApiKey {
    ApiKey::new(wxledger::sim::devkeys::V2_API_KEY).unwrap()
}

/// A genuine-looking pay notify for `no`, signed with `key` (or unsigned).
fn pay_notify(no: &str, transaction_id: &str, total: i64, key: Option<&ApiKey>) -> String {
    let mut fields: xml::Fields = [
        ("return_code", "SUCCESS"),
        ("appid", SIM_APPID),
        ("mch_id", wxledger::sim::devkeys::MCHID),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("result_code", "SUCCESS"),
        ("openid", "o-v2-direct"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("total_fee", &total.to_string()),
        ("fee_type", "CNY"),
        ("transaction_id", transaction_id),
        ("out_trade_no", no),
        ("time_end", "20250301163105"),
    ]
    .into_iter()
    .collect();
    if let Some(key) = key {
        let sign = sign::sign(fields.iter(), key, SignType::HmacSha256);
        fields.set("sign", sign);
    }
    fields.to_xml()
}

/// Checks the events of the given types against `schema/`.
pub(crate) async fn assert_match_schemas(env: &TestEnv, types: &[&str]) {
    let schemas = SchemaSet::load();
    for (seq, event) in env.events().await {
        if types.contains(&event["type"].as_str().unwrap()) {
            schemas.check(seq, &event);
        }
    }
}

#[tokio::test]
async fn a_v2_notify_from_the_simulator_is_booked_like_a_v3_one() {
    for sign_type in [V2SignType::HmacSha256, V2SignType::Md5] {
        let env = start(sign_type).await;
        let v2 = client(&env, sign_type);
        let (token, no, params) = v2_order(&env, &v2, "o-v2-1", 1800).await;
        assert_eq!(params.sign_type, SignType::from(sign_type).as_str());
        assert!(params.package.starts_with("prepay_id=wx"));

        let paid = env
            .sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
            .await;
        let deliveries = env.wait_delivered(&no, 200).await;
        let answer = deliveries[0]["response_body"].as_str().unwrap();
        let answer = xml::parse(answer.as_bytes(), 4096).unwrap();
        assert_eq!(answer.get("return_code"), Some("SUCCESS"));

        let order = env.wait_order_state(&token, &no, "paid").await;
        assert_eq!(order["transaction_id"], paid["transaction_id"]);
        let books = env.books().await;
        assert_eq!(books_of(&books, "sales"), 1800);
        assert_eq!(books_of(&books, "wechat_clearing"), -1800);
        assert_eq!(env.count_events("payment.legacy_notified").await, 1);

        let events = env.events().await;
        let (_, notified) = events
            .iter()
            .find(|(_, e)| e["type"] == "payment.legacy_notified")
            .unwrap();
        let data = &notified["data"];
        assert_eq!(data["transaction"]["trade_state"], "SUCCESS");
        assert_eq!(data["transaction"]["amount"]["total"], 1800);
        assert_eq!(data["transaction"]["payer"]["openid"], "o-v2-1");
        assert!(data["transaction"]["success_time"]
            .as_str()
            .unwrap()
            .ends_with("+08:00"));
        assert_eq!(
            data["evidence"]["sign_type"],
            SignType::from(sign_type).as_str()
        );
        // The evidence is the XML as sent, and its sign checks with the merchant's key.
        let evidence = data["evidence"]["body"].as_str().unwrap();
        assert_eq!(evidence, deliveries[0]["body"].as_str().unwrap());
        let fields = xml::parse(evidence.as_bytes(), 16 * 1024).unwrap();
        sign::verify(
            fields.iter(),
            &sim_key(),
            sign_type.into(),
            fields.get("sign").unwrap(),
        )
        .expect("the recorded notify's sign verifies");
        assert_match_schemas(&env, &["payment.legacy_notified", "order.placed"]).await;
    }
}

#[tokio::test]
async fn wrong_and_missing_signs_are_refused_every_retry_and_append_nothing() {
    let env = start(V2SignType::HmacSha256).await;
    let v2 = client(&env, V2SignType::HmacSha256);
    for (fault, status) in [("wrong", 401), ("missing", 401)] {
        let (token, no, _) = v2_order(&env, &v2, &format!("o-v2-{fault}"), 300).await;
        env.sim_post(
            "/sim/pay/v2/pay",
            json!({"out_trade_no": no, "sign": fault}),
        )
        .await;
        let retried = eventually(Duration::from_secs(10), || async {
            env.deliveries(&no).await.len() >= 3
        })
        .await;
        assert!(retried, "{fault}: WeChat retries a refused notify");
        let deliveries = env.deliveries(&no).await;
        for d in &deliveries {
            assert_eq!(d["status"], status, "{fault}: {d}");
            let answer = xml::parse(d["response_body"].as_str().unwrap().as_bytes(), 4096).unwrap();
            assert_eq!(answer.get("return_code"), Some("FAIL"), "{fault}");
        }
        let (_, order) = env
            .call(Method::GET, &format!("/v1/orders/{no}"), Some(&token), None)
            .await;
        assert_eq!(order["state"], "created", "{fault}");
    }
    assert_eq!(env.count_events("payment.legacy_notified").await, 0);
    let metrics = env
        .http
        .get(format!("{}/metrics", env.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["bad_signature", "missing_sign"] {
        assert!(
            metrics.contains(&format!(
                "wxledger_notifies_v2_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome} counted"
        );
    }
}

#[tokio::test]
async fn hostile_and_malformed_xml_is_refused_with_a_4xx_and_appends_nothing() {
    let env = start(V2SignType::HmacSha256).await;
    let key = sim_key();
    let genuine = pay_notify(
        "v2hostile0001",
        "4200000000000000000000000001",
        100,
        Some(&key),
    );
    let xxe = genuine.replacen(
        "<xml>",
        "<!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><xml>",
        1,
    );
    let xxe_entity_only = genuine.replace("<![CDATA[o-v2-direct]]>", "&xxe;");
    let mut laughs = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..=9 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        laughs.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    laughs.push_str("]><xml><return_code>&lol9;</return_code></xml>");
    let mut gbk = genuine.replace("o-v2-direct", "XXXX").into_bytes();
    let at = gbk.windows(4).position(|w| w == b"XXXX").unwrap();
    gbk.splice(at..at + 4, [0xB2, 0xE2, 0xCA, 0xD4]); // "测试" in GBK
    let gbk_declared = format!("<?xml version=\"1.0\" encoding=\"GBK\"?>{}", genuine);
    let nested = genuine.replace(
        "<![CDATA[o-v2-direct]]>",
        "<id><![CDATA[o-v2-direct]]></id>",
    );
    let duplicate = genuine.replace("</xml>", "<total_fee>1</total_fee></xml>");
    let trailing = format!("{genuine}<xml></xml>");
    let pi = genuine.replacen("<xml>", "<?evil x?><xml>", 1);
    let other_root = genuine
        .replace("<xml>", "<root>")
        .replace("</xml>", "</root>");
    let oversize = genuine.replace(
        "</xml>",
        &format!("<attach><![CDATA[{}]]></attach></xml>", "x".repeat(20_000)),
    );
    let hmac_named_md5 = {
        let mut f = xml::parse(genuine.as_bytes(), 4096).unwrap();
        f.set("sign_type", "MD5");
        f.remove("sign");
        let s = sign::sign(f.iter(), &key, SignType::Md5);
        f.set("sign", s);
        f.to_xml()
    };
    let before = env.last_seq().await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("xxe", xxe.into_bytes(), 400, "doctype_refused"),
        (
            "xxe without dtd",
            xxe_entity_only.into_bytes(),
            400,
            "entity_refused",
        ),
        (
            "billion laughs",
            laughs.into_bytes(),
            400,
            "doctype_refused",
        ),
        (
            "invalid",
            b"<xml><return_code>SUCCESS</xml>".to_vec(),
            400,
            "malformed",
        ),
        (
            "not xml",
            b"{\"return_code\":\"SUCCESS\"}".to_vec(),
            400,
            "malformed",
        ),
        ("empty", Vec::new(), 400, "malformed"),
        ("gbk bytes", gbk, 400, "not_utf8"),
        (
            "gbk declared",
            gbk_declared.into_bytes(),
            400,
            "unsupported_encoding",
        ),
        ("nested", nested.into_bytes(), 400, "nested_element"),
        ("duplicate", duplicate.into_bytes(), 400, "duplicate_key"),
        ("trailing", trailing.into_bytes(), 400, "trailing_content"),
        (
            "processing instruction",
            pi.into_bytes(),
            400,
            "processing_instruction_refused",
        ),
        ("other root", other_root.into_bytes(), 400, "wrong_root"),
        ("oversize", oversize.into_bytes(), 413, "too_large"),
        (
            "sign type not ours",
            hmac_named_md5.into_bytes(),
            400,
            "wrong_sign_type",
        ),
        (
            "unsigned",
            pay_notify("v2hostile0001", "4200000000000000000000000001", 100, None).into_bytes(),
            401,
            "missing_sign",
        ),
        (
            "other key",
            pay_notify(
                "v2hostile0001",
                "4200000000000000000000000001",
                100,
                Some(&ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap()),
            )
            .into_bytes(),
            401,
            "bad_signature",
        ),
        (
            "tampered amount",
            genuine
                .replace("<![CDATA[100]]>", "<![CDATA[1]]>")
                .into_bytes(),
            401,
            "bad_signature",
        ),
    ];
    for (case, body, status, outcome) in cases {
        let (got, answer) = post_v2(&env, body).await;
        assert_eq!(got.as_u16(), status, "{case}: {answer:?}");
        assert_eq!(answer.get("return_code"), Some("FAIL"), "{case}");
        let metrics = env
            .http
            .get(format!("{}/metrics", env.api))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(&format!(
                "wxledger_notifies_v2_total{{outcome=\"{outcome}\"}}"
            )),
            "{case}: counted as {outcome}"
        );
    }
    assert_eq!(env.last_seq().await, before, "nothing appended");

    // The same notify, genuine, is recorded (an unknown order: booked to suspense).
    let (status, answer) = post_v2(&env, genuine).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer.get("return_code"), Some("SUCCESS"));
    assert_eq!(answer.get("return_msg"), Some("OK"));
    assert_eq!(env.count_events("payment.legacy_notified").await, 1);
    assert_eq!(env.failure_reasons_once(1).await, ["unknown_order"]);
}

#[tokio::test]
async fn a_replayed_or_duplicated_notify_books_once() {
    let env = start(V2SignType::HmacSha256).await;
    let v2 = client(&env, V2SignType::HmacSha256);
    let (token, no, _) = v2_order(&env, &v2, "o-v2-replay", 700).await;
    env.sim_faults(json!({"duplicates": 3, "concurrent": true}))
        .await;
    env.sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
        .await;
    let deliveries = env.wait_delivered(&no, 200).await;
    env.wait_order_state(&token, &no, "paid").await;
    let genuine = deliveries[0]["body"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (status, answer) = post_v2(&env, genuine.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer.get("return_code"), Some("SUCCESS"));
    }
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 700, "booked once");
    assert_eq!(
        env.count_events("payment.legacy_notified").await,
        1,
        "copies inside the duplicate window append nothing"
    );
    assert!(env.failure_reasons().await.is_empty());
}

#[tokio::test]
async fn a_lost_notify_is_found_by_orderquery_and_booked_from_the_answer() {
    let env = start(V2SignType::Md5).await;
    let v2 = client(&env, V2SignType::Md5);
    let (token, no, _) = v2_order(&env, &v2, "o-v2-lost", 900).await;
    let (unpaid, _) = v2.orderquery(&no).await.unwrap();
    assert_eq!(unpaid.trade_state, "NOTPAY");

    env.sim_faults(json!({"lost": true})).await;
    let paid = env
        .sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(env.deliveries(&no).await.is_empty(), "the notify was lost");
    assert_eq!(env.count_events("payment.legacy_notified").await, 0);

    // What the admin sync does under v2 once wired: ask, append the signed answer.
    let (transaction, evidence) = v2.orderquery(&no).await.unwrap();
    assert_eq!(transaction.trade_state, "SUCCESS");
    assert_eq!(
        transaction.transaction_id.as_deref(),
        paid["transaction_id"].as_str()
    );
    assert_eq!(transaction.amount.as_ref().unwrap().total, Some(900));
    assert_eq!(evidence.sign_type.as_deref(), Some("MD5"));
    let queried = Event::LegacyPaymentQueried(LegacyPaymentQueried {
        reason: QueryReason::Sync,
        transaction,
        evidence,
    });
    env.log
        .append(Draft {
            event: &queried,
            correlation_id: "test-sync",
            msg_id: &format!("payment.legacy_queried:{no}"),
            occurred_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    env.wait_order_state(&token, &no, "paid").await;
    assert_eq!(books_of(&env.books().await, "sales"), 900);
    assert_match_schemas(&env, &["payment.legacy_queried"]).await;
}

#[tokio::test]
async fn the_v2_client_and_the_simulator_agree_on_close_and_errors() {
    let env = start(V2SignType::HmacSha256).await;
    let v2 = client(&env, V2SignType::HmacSha256);
    let (_, no, _) = v2_order(&env, &v2, "o-v2-close", 500).await;
    v2.closeorder(&no).await.unwrap();
    let (closed, _) = v2.orderquery(&no).await.unwrap();
    assert_eq!(closed.trade_state, "CLOSED");
    let again = v2
        .unifiedorder(&Prepay {
            out_trade_no: &no,
            description: "一杯咖啡 coffee",
            amount: 500,
            openid: "o-v2-close",
            time_expire: chrono::Utc::now() + chrono::Duration::minutes(30),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("ORDERCLOSED"));
    let v3: wxledger::wechat::PayError = again.into();
    assert_eq!(v3.code(), Some("ORDER_CLOSED"));

    let missing = v2.orderquery("nosuchorder0001").await.unwrap_err();
    assert_eq!(missing.code(), Some("ORDERNOTEXIST"));

    // A paid order cannot be closed.
    let (_, paid_no, _) = v2_order(&env, &v2, "o-v2-close2", 500).await;
    env.sim_post("/sim/pay/v2/pay", json!({"out_trade_no": paid_no}))
        .await;
    let refused = v2.closeorder(&paid_no).await.unwrap_err();
    assert_eq!(refused.code(), Some("ORDERPAID"));

    // Requests signed with another key, or the other algorithm's answers, are refused.
    let mut other = PaySettings {
        api_base: env.sim.clone(),
        ..wxledger::Settings::development().pay
    };
    other.v2.api_key = Some("192006250b4c09247ec02edce69f6a2d".into());
    let forger = V2Client::new(&other, SIM_APPID, wxledger::core::clock::system())
        .unwrap()
        .unwrap();
    assert!(matches!(
        forger.orderquery(&no).await,
        Err(V2Error::Refused(m)) if m.contains("签名错误")
    ));
    let stats = env.sim_get("/sim/pay/v2/stats").await;
    assert_eq!(stats["bad_sign"], 1);
    assert!(stats["unifiedorder"].as_u64().unwrap() >= 3);
}

#[tokio::test]
async fn a_v2_refund_notify_is_decrypted_and_appended() {
    let env = start(V2SignType::HmacSha256).await;
    let v2 = client(&env, V2SignType::HmacSha256);
    let (token, no, _) = v2_order(&env, &v2, "o-v2-refund", 1000).await;
    let paid = env
        .sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
        .await;
    env.wait_order_state(&token, &no, "paid").await;

    let request = RefundRequest {
        out_trade_no: &no,
        out_refund_no: "r-v2-0001",
        total: 1000,
        refund: 400,
        reason: "不想要了",
    };
    let (accepted, evidence) = v2.refund(&request).await.unwrap();
    assert_eq!(accepted.status, "PROCESSING");
    assert_eq!(accepted.amount.as_ref().unwrap().refund, Some(400));
    assert!(evidence.body.contains("r-v2-0001"));
    let (again, _) = v2.refund(&request).await.unwrap();
    assert_eq!(again.refund_id, accepted.refund_id, "the same refund");
    let too_much = v2
        .refund(&RefundRequest {
            out_refund_no: "r-v2-0002",
            refund: 700,
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), Some("INVALID_REQUEST"));

    // A req_info under another key is refused on every attempt.
    let before = env.last_seq().await;
    env.sim_post(
        "/sim/pay/v2/refund-notify",
        json!({"out_refund_no": "r-v2-0001", "req_info": "wrong_key"}),
    )
    .await;
    let refused = eventually(Duration::from_secs(10), || async {
        env.deliveries(&no)
            .await
            .iter()
            .filter(|d| d["status"] == 400)
            .count()
            >= 2
    })
    .await;
    assert!(refused, "{:?}", env.deliveries(&no).await);
    assert_eq!(env.last_seq().await, before);

    let notified = env
        .sim_post(
            "/sim/pay/v2/refund-notify",
            json!({"out_refund_no": "r-v2-0001"}),
        )
        .await;
    let ok = eventually(Duration::from_secs(10), || async {
        env.deliveries(&no)
            .await
            .iter()
            .any(|d| d["notify_id"] == notified["notify_id"] && d["status"] == 200)
    })
    .await;
    assert!(ok, "{:?}", env.deliveries(&no).await);
    // Recorded as WeChat's signed refundquery answer, with the notify as its claim.
    assert_eq!(env.count_events("refund.notified").await, 0);
    let events = env.events().await;
    let answers: Vec<&Value> = events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["type"] == "refund.queried")
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["version"], 2);
    let data = &answers[0]["data"];
    assert_eq!(data["reason"], "notify");
    assert_eq!(data["refund"]["status"], "SUCCESS");
    assert_eq!(data["refund"]["out_refund_no"], "r-v2-0001");
    assert_eq!(data["refund"]["out_trade_no"], no);
    assert_eq!(data["refund"]["transaction_id"], paid["transaction_id"]);
    assert_eq!(data["refund"]["amount"]["refund"], 400);
    assert_eq!(data["refund"]["amount"]["total"], 1000);
    assert_eq!(data["evidence"]["sign_type"], "HMAC-SHA256");
    assert!(data["evidence"]["body"]
        .as_str()
        .unwrap()
        .contains("<sign>"));
    let claim = &data["notify"];
    assert_eq!(claim["refund"]["status"], "SUCCESS");
    assert_eq!(claim["refund"]["refund_id"], data["refund"]["refund_id"]);
    assert!(claim["evidence"].get("sign_type").is_none());
    let decrypted = claim["evidence"]["decrypted"].as_str().unwrap();
    assert!(decrypted.starts_with("<root>") && decrypted.contains("r-v2-0001"));
    assert!(claim["evidence"]["body"]
        .as_str()
        .unwrap()
        .contains("<req_info>"));
    let decoded = Event::decode("refund.queried", 2, data.clone()).expect("reads back");
    assert!(matches!(decoded, Event::RefundQueried(_)));

    // Replayed inside the duplicate window: answered SUCCESS, appended once.
    let delivered = env
        .deliveries(&no)
        .await
        .into_iter()
        .find(|d| d["notify_id"] == notified["notify_id"])
        .unwrap();
    let (status, answer) = post_v2(&env, delivered["body"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer.get("return_code"), Some("SUCCESS"));
    assert_eq!(env.count_events("refund.queried").await, 1);

    let (queried, _) = v2.refundquery("r-v2-0001").await.unwrap();
    assert_eq!(queried.status, "SUCCESS");
    assert!(queried.success_time.unwrap().ends_with("+08:00"));
    assert_match_schemas(&env, &["refund.queried", "payment.legacy_notified"]).await;
}

#[test]
fn the_schema_examples_are_valid_events_whose_signs_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    for kind in ["payment.legacy_notified", "payment.legacy_queried"] {
        let text = std::fs::read_to_string(dir.join(format!("{kind}.v1.json"))).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for example in schema["examples"].as_array().unwrap() {
            let errors: Vec<String> = validator
                .iter_errors(example)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{kind}: {errors:?}");
            Event::decode(kind, 1, example.clone()).expect("the example is a valid event");
            let body = example["evidence"]["body"].as_str().unwrap();
            let fields = xml::parse(body.as_bytes(), 16 * 1024).unwrap();
            let sign_type =
                SignType::parse(example["evidence"]["sign_type"].as_str().unwrap()).unwrap();
            sign::verify(
                fields.iter(),
                &sim_key(),
                sign_type,
                fields.get("sign").unwrap(),
            )
            .unwrap_or_else(|_| panic!("{kind}: the example's sign checks"));
        }
    }
}

/// The three call sites go through the pay calls of `src/daemon/commands/pay_api.rs`
/// (`commands::orders::wechat_pay`, `commands::refunds::sync_order`, `jobs::expiry`).
#[tokio::test]
async fn under_pay_api_v2_the_order_api_prepays_syncs_and_expires_with_api_v2() {
    let env = TestEnv::start_with(|s| {
        s.pay.api = PayApi::V2;
        s.pay.v2.sign_type = V2SignType::HmacSha256;
        s.pay.order_ttl = Duration::from_secs(60);
    })
    .await;
    let (token, user_id) = env.login("o-v2-api").await;
    let (status, order) = env.place_order(&token, json!(1200)).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let (status, params) = env
        .call(
            Method::POST,
            &format!("/v1/orders/{no}/wechat-pay"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{params}");
    let mut keys: Vec<&str> = params
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["nonceStr", "package", "paySign", "signType", "timeStamp"]
    );
    assert_eq!(params["signType"], "HMAC-SHA256");
    let field = |k: &str| params[k].as_str().unwrap().to_owned();
    sign::verify(
        [
            ("appId", SIM_APPID),
            ("timeStamp", &field("timeStamp")),
            ("nonceStr", &field("nonceStr")),
            ("package", &field("package")),
            ("signType", &field("signType")),
        ],
        &sim_key(),
        SignType::HmacSha256,
        &field("paySign"),
    )
    .expect("paySign is the v2 sign of the five params");
    env.wait_order_state(&token, &no, "prepay_issued").await;
    let stats = env.sim_get("/sim/pay/v2/stats").await;
    assert_eq!(stats["unifiedorder"], 1, "{stats}");

    // A lost notify, found by the admin sync: recorded as payment.legacy_queried.
    env.sim_faults(json!({"lost": true})).await;
    env.sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
        .await;
    let (status, sync) = env
        .admin(Method::POST, &format!("/v1/admin/orders/{no}/sync"))
        .await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    assert_eq!(sync["wechat_trade_state"], "SUCCESS");
    assert_eq!(sync["recorded"], true);
    assert_eq!(sync["order"]["state"], "paid");
    assert_eq!(env.count_events("payment.legacy_queried").await, 1);

    // A recharge paid by its v2 notify credits the wallet.
    let recharge = env.recharge(&token, 500).await;
    env.sim_post("/sim/pay/v2/pay", json!({"out_trade_no": recharge}))
        .await;
    env.wait_order_state(&token, &recharge, "paid").await;
    assert_eq!(env.balance(&token).await, 500);

    // An order unpaid past its time is closed at WeChat with closeorder.
    let late = env.order_with_prepay(&token, 300).await;
    env.clock_offset
        .store(120, std::sync::atomic::Ordering::Relaxed);
    env.wait_order_state(&token, &late, "closed").await;
    assert!(
        env.sim_get("/sim/pay/v2/stats").await["closeorder"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let (closed, _) = client(&env, V2SignType::HmacSha256)
        .orderquery(&late)
        .await
        .unwrap();
    assert_eq!(closed.trade_state, "CLOSED");
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 1200);
    assert_eq!(books_of(&books, &format!("wallet:{user_id}")), 500);
    assert_match_schemas(
        &env,
        &[
            "order.placed",
            "order.prepay_issued",
            "order.closed",
            "payment.legacy_notified",
            "payment.legacy_queried",
        ],
    )
    .await;
}

#[tokio::test]
async fn under_pay_api_v2_a_refund_goes_through_secapi_and_its_confirmed_notify_settles_it() {
    let env = TestEnv::start_with(|s| {
        s.pay.api = PayApi::V2;
        s.pay.v2.sign_type = V2SignType::Md5;
    })
    .await;
    let (token, _) = env.login("o-v2-refund").await;
    let no = env.order_with_prepay(&token, 1000).await;
    env.sim_post("/sim/pay/v2/pay", json!({"out_trade_no": no}))
        .await;
    env.wait_order_state(&token, &no, "paid").await;

    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/admin/orders/{no}/refunds"),
            Some(crate::common::ADMIN_TOKEN),
            Some(json!({"amount": 400, "out_refund_no": "R-v2-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["refund"]["state"], "processing");
    assert_eq!(env.sim_get("/sim/pay/v2/stats").await["refund"], 1);
    env.sim_post(
        "/sim/pay/v2/refund-notify",
        json!({"out_refund_no": "R-v2-1", "status": "SUCCESS"}),
    )
    .await;
    let order = env
        .wait_order_state(&token, &no, "partially_refunded")
        .await;
    assert_eq!(order["refunded"], 400);
    let books = env.books().await;
    assert_eq!(books_of(&books, "sales"), 600);
    assert_eq!(books_of(&books, "wechat_clearing"), -600);
    assert_eq!(books_of(&books, "refunds_pending"), 0);
    // Settled by WeChat's signed refundquery answer, asked for by the notify.
    assert_eq!(env.count_events("refund.notified").await, 0);
    assert!(env.sim_get("/sim/pay/v2/stats").await["refundquery"]
        .as_u64()
        .is_some_and(|n| n >= 1));
    // The signed v2 answer is the refund's evidence.
    let accepted = env
        .events()
        .await
        .into_iter()
        .find(|(_, e)| e["type"] == "refund.accepted")
        .expect("refund.accepted appended")
        .1;
    assert!(accepted["data"]["evidence"]["body"]
        .as_str()
        .unwrap()
        .starts_with("<xml>"));
    assert_match_schemas(&env, &["refund.accepted", "refund.queried"]).await;
}
