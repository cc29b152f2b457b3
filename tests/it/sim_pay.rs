//! The simulated WeChat Pay on its own, over HTTP with real RSA and AES-GCM: requests
//! signed with the development merchant key, answers and notifies verified with the
//! simulator's published keys, notifies received by a small axum server in the test.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use wxledger::{
    settings::{SimSettings, SimSigning},
    sim::{
        devkeys::{self, APIV3_KEY, MCHID, MERCHANT_SERIAL, PUBLIC_KEY_ID, PUBLIC_KEY_PEM},
        Simulator,
    },
    wechat::pay::crypto::{
        authorization, request_message, response_message, ApiV3Key, SigningKey, VerifyingKey,
    },
};

use crate::common::{eventually, sim_settings};

const WAIT: Duration = Duration::from_secs(10);

/// A simulator running in-process, stopped when dropped.
struct Sim {
    base: String,
    http: reqwest::Client,
    merchant: SigningKey,
    appid: String,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A signed answer of the simulator.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("answer has no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Checks the answer's serial and signature against `key`.
    fn verifies_with(&self, serial: &str, key: &VerifyingKey) -> bool {
        assert_eq!(
            self.header("Wechatpay-Signature-Type"),
            "WECHATPAY2-SHA256-RSA2048"
        );
        assert!(!self.header("Request-ID").is_empty());
        self.header("Wechatpay-Serial") == serial
            && signed_by(|n| Some(self.header(n)), &self.body, key)
    }
}

/// Whether `get`'s Wechatpay headers sign `body` under `key`.
fn signed_by(get: impl Fn(&str) -> Option<String>, body: &[u8], key: &VerifyingKey) -> bool {
    let (Some(ts), Some(nonce), Some(signature)) = (
        get("Wechatpay-Timestamp"),
        get("Wechatpay-Nonce"),
        get("Wechatpay-Signature"),
    ) else {
        return false;
    };
    key.verify(&response_message(&ts, &nonce, body), &signature)
        .is_ok()
}

fn public_key() -> VerifyingKey {
    VerifyingKey::from_public_key_pem(PUBLIC_KEY_PEM).unwrap()
}

fn platform_key(i: usize) -> VerifyingKey {
    VerifyingKey::from_certificate_pem(devkeys::PLATFORMS[i].certificate_pem)
        .unwrap()
        .1
}

async fn start_sim(adjust: impl FnOnce(&mut SimSettings)) -> Sim {
    let mut settings = sim_settings();
    settings.time_factor = 0.001;
    settings.notify_timeout = Duration::from_secs(2);
    adjust(&mut settings);
    let sim = Simulator::build(&settings).await.expect("simulator binds");
    let base = format!("http://{}", sim.local_addr());
    let stop = sim.stop_token();
    tokio::spawn(sim.run_until_stopped());
    Sim {
        base,
        http: reqwest::Client::new(),
        merchant: SigningKey::from_pkcs8_pem(devkeys::MERCHANT_KEY_PEM).unwrap(),
        appid: settings.appid,
        stop,
    }
}

impl Sim {
    /// A merchant request with the `Authorization` header that `auth` builds.
    async fn v3_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
        auth: Option<String>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .header("Accept", "application/json");
        if !body.is_empty() {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_vec());
        }
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().await.expect("simulator answers");
        Answer {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    /// The `Authorization` of a genuine merchant request.
    fn sign(&self, method: &Method, path_and_query: &str, body: &[u8]) -> String {
        let ts = chrono::Utc::now().timestamp();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let signature = self.merchant.sign(&request_message(
            method.as_str(),
            path_and_query,
            ts,
            &nonce,
            body,
        ));
        authorization(MCHID, &nonce, ts, MERCHANT_SERIAL, &signature)
    }

    /// A genuinely signed merchant request.
    async fn v3(&self, method: Method, path_and_query: &str, body: Option<Value>) -> Answer {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let auth = self.sign(&method, path_and_query, &bytes);
        self.v3_with(method, path_and_query, &bytes, Some(auth))
            .await
    }

    fn order(&self, out_trade_no: &str, total: i64, notify_url: &str) -> Value {
        json!({
            "appid": self.appid,
            "mchid": MCHID,
            "description": "wallet top-up",
            "out_trade_no": out_trade_no,
            "notify_url": notify_url,
            "amount": {"total": total, "currency": "CNY"},
            "payer": {"openid": "o-payer"},
        })
    }

    async fn prepay(&self, out_trade_no: &str, total: i64, notify_url: &str) -> Answer {
        let order = self.order(out_trade_no, total, notify_url);
        self.v3(Method::POST, "/v3/pay/transactions/jsapi", Some(order))
            .await
    }

    async fn query(&self, out_trade_no: &str) -> Answer {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={MCHID}");
        self.v3(Method::GET, &path, None).await
    }

    async fn close(&self, out_trade_no: &str) -> Answer {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        self.v3(Method::POST, &path, Some(json!({"mchid": MCHID})))
            .await
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        crate::common::sim_control(&self.http, &self.base, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "sim {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn arm(&self, faults: Value) {
        self.control("/sim/pay/faults", faults).await;
    }

    /// The user pays; answers `(transaction_id, notify_id)`.
    async fn pay(&self, out_trade_no: &str) -> (String, String) {
        let paid = self
            .control("/sim/pay/pay", json!({"out_trade_no": out_trade_no}))
            .await;
        (
            paid["transaction_id"].as_str().unwrap().to_owned(),
            paid["notify_id"].as_str().unwrap().to_owned(),
        )
    }

    async fn deliveries(&self, out_trade_no: &str) -> Vec<Value> {
        let list = self
            .get(&format!("/sim/pay/deliveries?out_trade_no={out_trade_no}"))
            .await;
        list.as_array().unwrap().clone()
    }

    /// Waits until `out_trade_no` has `n` deliveries recorded; answers them.
    async fn wait_deliveries(&self, out_trade_no: &str, n: usize) -> Vec<Value> {
        let reached = eventually(WAIT, || async {
            self.deliveries(out_trade_no).await.len() >= n
        })
        .await;
        let list = self.deliveries(out_trade_no).await;
        assert!(reached, "{out_trade_no}: {} of {n} deliveries", list.len());
        list
    }
}

/// One notify as the test's receiver got it.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        Some(self.headers.get(name)?.to_str().ok()?.to_owned())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The decrypted `resource` of the notify.
    fn transaction(&self) -> Value {
        decrypt_resource(&self.json()).expect("the resource decrypts")
    }
}

fn decrypt_resource(notify: &Value) -> Option<Value> {
    let r = &notify["resource"];
    let plain = ApiV3Key::new(APIV3_KEY)
        .unwrap()
        .decrypt(
            r["nonce"].as_str()?,
            r["associated_data"].as_str()?,
            r["ciphertext"].as_str()?,
        )
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// How the receiver answers.
#[derive(Default)]
struct Policy {
    /// 500 for the first n notifies.
    fail_first: usize,
    /// 401 unless signed under this serial with this key, less than 300 s ago.
    check: Option<(String, VerifyingKey)>,
    /// Time spent per notify, so overlapping requests can be seen.
    delay: Duration,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ReceiverState {
    receiver: Receiver,
    policy: Arc<Policy>,
}

async fn receive(State(s): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let r = &s.receiver;
    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    r.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(s.policy.delay).await;
    let seen = {
        let mut got = r.got.lock().unwrap();
        got.push(Received {
            headers: headers.clone(),
            body: body.clone(),
        });
        got.len()
    };
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    if seen <= s.policy.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some((serial, key)) = &s.policy.check {
        let get = |n: &str| Some(headers.get(n)?.to_str().ok()?.to_owned());
        let fresh = get("Wechatpay-Timestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
        if get("Wechatpay-Serial").as_deref() != Some(serial.as_str())
            || !fresh
            || !signed_by(get, &body, key)
        {
            return StatusCode::UNAUTHORIZED;
        }
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(policy: Policy) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/pay/notify", listener.local_addr().unwrap()),
            got: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        };
        let app = Router::new()
            .route("/pay/notify", post(receive))
            .with_state(ReceiverState {
                receiver: receiver.clone(),
                policy: Arc::new(policy),
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let reached = eventually(WAIT, || async { self.got().len() >= n }).await;
        assert!(reached, "received {} of {n} notifies", self.got().len());
        self.got()
    }
}

#[tokio::test]
async fn merchant_requests_without_a_valid_signature_get_a_signed_401() {
    let sim = start_sim(|_| {}).await;
    let path = "/v3/pay/transactions/jsapi";
    let body = sim
        .order("order-401", 100, "http://127.0.0.1:9/n")
        .to_string()
        .into_bytes();
    let ts = chrono::Utc::now().timestamp();
    let sign_with = |key: &SigningKey, ts: i64, body: &[u8]| {
        key.sign(&request_message("POST", path, ts, "nonce1", body))
    };
    let platform = SigningKey::from_pkcs8_pem(devkeys::PLATFORMS[0].key_pem).unwrap();
    let genuine = sign_with(&sim.merchant, ts, &body);
    let refused = [
        Some(authorization(
            MCHID,
            "nonce1",
            ts,
            MERCHANT_SERIAL,
            &sign_with(&platform, ts, &body),
        )),
        Some(authorization(
            MCHID,
            "nonce1",
            ts,
            devkeys::PLATFORMS[1].serial,
            &genuine,
        )),
        Some(authorization(
            "1230000109",
            "nonce1",
            ts,
            MERCHANT_SERIAL,
            &genuine,
        )),
        Some(authorization(
            MCHID,
            "nonce2",
            ts,
            MERCHANT_SERIAL,
            &genuine,
        )),
        Some(authorization(
            MCHID,
            "nonce1",
            ts - 301,
            MERCHANT_SERIAL,
            &sign_with(&sim.merchant, ts - 301, &body),
        )),
        Some(format!("Bearer {genuine}")),
        None,
    ];
    for auth in refused {
        let answer = sim.v3_with(Method::POST, path, &body, auth.clone()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(answer.json()["code"], "SIGN_ERROR");
        assert!(answer.json()["message"].is_string());
        assert!(answer.verifies_with(PUBLIC_KEY_ID, &public_key()));
    }
    // The body as signed, but altered on the way.
    let mut altered = body.clone();
    let at = altered.iter().position(|b| *b == b'1').unwrap();
    altered[at] = b'9';
    let auth = authorization(MCHID, "nonce1", ts, MERCHANT_SERIAL, &genuine);
    let answer = sim
        .v3_with(Method::POST, path, &altered, Some(auth.clone()))
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // Lower-case serial with leading zeros is the same serial.
    let padded = format!("00{}", MERCHANT_SERIAL.to_ascii_lowercase());
    let auth = authorization(MCHID, "nonce1", ts, &padded, &genuine);
    let answer = sim.v3_with(Method::POST, path, &body, Some(auth)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    assert!(answer.json()["prepay_id"]
        .as_str()
        .unwrap()
        .starts_with("wx"));
    assert_eq!(sim.get("/sim/pay/stats").await["jsapi"], 1);
}

#[tokio::test]
async fn public_key_mode_signs_answers_with_the_public_key_id() {
    let sim = start_sim(|s| s.pay_signing = SimSigning::PublicKey).await;
    let answer = sim.query("nobody-000").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["code"], "ORDER_NOT_EXIST");
    assert!(answer.verifies_with(PUBLIC_KEY_ID, &public_key()));
    assert!(!signed_by(
        |n| Some(answer.header(n)),
        &answer.body,
        &platform_key(0)
    ));
    // Rotating certificates does not change the public key.
    sim.control("/sim/pay/rotate-certificate", json!({})).await;
    let answer = sim.prepay("pk-mode-1", 1, "http://127.0.0.1:9/n").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.verifies_with(PUBLIC_KEY_ID, &public_key()));
}

/// `/v3/certificates` decrypted: `(serial_no, certificate PEM)` of each entry.
async fn certificates(sim: &Sim, signer: (&str, &VerifyingKey)) -> Vec<(String, String)> {
    let answer = sim.v3(Method::GET, "/v3/certificates", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.verifies_with(signer.0, signer.1));
    let key = ApiV3Key::new(APIV3_KEY).unwrap();
    answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let e = &c["encrypt_certificate"];
            assert_eq!(e["algorithm"], "AEAD_AES_256_GCM");
            assert_eq!(e["associated_data"], "certificate");
            assert_eq!(e["nonce"].as_str().unwrap().len(), 12);
            assert!(c["effective_time"].as_str().unwrap().ends_with("+08:00"));
            assert!(c["expire_time"].as_str().unwrap() > c["effective_time"].as_str().unwrap());
            let pem = key
                .decrypt(
                    e["nonce"].as_str().unwrap(),
                    "certificate",
                    e["ciphertext"].as_str().unwrap(),
                )
                .expect("certificate decrypts with the APIv3 key");
            (
                c["serial_no"].as_str().unwrap().to_owned(),
                String::from_utf8(pem).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn certificate_mode_signs_with_the_current_certificate_which_rotates() {
    let sim = start_sim(|s| s.pay_signing = SimSigning::Certificate).await;
    let [a, b] = [0, 1].map(|i| (devkeys::PLATFORMS[i].serial, platform_key(i)));
    let listed = certificates(&sim, (a.0, &a.1)).await;
    assert_eq!(listed.len(), 1);
    let (serial, key) = VerifyingKey::from_certificate_pem(&listed[0].1).unwrap();
    assert_eq!((serial.as_str(), &key), (a.0, &a.1));
    assert_eq!(listed[0].0, a.0);

    let receiver = Receiver::start(Policy {
        check: Some((b.0.to_owned(), b.1.clone())),
        ..Default::default()
    })
    .await;
    let answer = sim.prepay("rotate-001", 100, &receiver.url).await;
    assert!(answer.verifies_with(a.0, &a.1));
    assert!(!answer.verifies_with(b.0, &b.1));

    sim.control("/sim/pay/rotate-certificate", json!({})).await;
    let listed = certificates(&sim, (b.0, &b.1)).await;
    let serials: Vec<&str> = listed.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(serials, [a.0, b.0]);
    for (serial, pem) in &listed {
        assert_eq!(&VerifyingKey::from_certificate_pem(pem).unwrap().0, serial);
    }
    let answer = sim.query("rotate-001").await;
    assert_eq!(answer.json()["trade_state"], "NOTPAY");
    assert!(answer.verifies_with(b.0, &b.1));
    // Notifies too are signed by B now: the receiver only accepts B.
    sim.pay("rotate-001").await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].header("Wechatpay-Serial").as_deref(), Some(b.0));
    let list = sim.wait_deliveries("rotate-001", 1).await;
    assert_eq!(list[0]["status"], 204);
    assert_eq!(sim.get("/sim/pay/stats").await["certificates"], 2);
}

#[tokio::test]
async fn prepay_pay_and_a_notify_that_verifies_and_decrypts_to_the_transaction() {
    let sim = start_sim(|_| {}).await;
    let receiver = Receiver::start(Policy {
        check: Some((PUBLIC_KEY_ID.to_owned(), public_key())),
        ..Default::default()
    })
    .await;
    let first = sim.prepay("round-trip-1", 250, &receiver.url).await;
    assert_eq!(first.status, StatusCode::OK);
    let prepay_id = first.json()["prepay_id"].as_str().unwrap().to_owned();
    let again = sim.prepay("round-trip-1", 250, &receiver.url).await;
    assert_eq!(again.json()["prepay_id"], prepay_id.as_str());
    let other = sim.prepay("round-trip-1", 251, &receiver.url).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(other.json()["code"], "INVALID_REQUEST");
    assert!(other.verifies_with(PUBLIC_KEY_ID, &public_key()));
    let before = sim.query("round-trip-1").await.json();
    assert_eq!(before["trade_state"], "NOTPAY");
    assert!(before.get("transaction_id").is_none());

    let (transaction_id, notify_id) = sim.pay("round-trip-1").await;
    assert_eq!(transaction_id.len(), 28);
    assert!(
        transaction_id.starts_with("4200") && transaction_id.bytes().all(|b| b.is_ascii_digit())
    );
    let got = receiver.wait_for(1).await;
    let notify = got[0].json();
    assert_eq!(notify["id"], notify_id.as_str());
    assert_eq!(notify["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(notify["resource_type"], "encrypt-resource");
    assert_eq!(notify["resource"]["algorithm"], "AEAD_AES_256_GCM");
    assert_eq!(notify["resource"]["original_type"], "transaction");
    assert!(notify["create_time"].as_str().unwrap().ends_with("+08:00"));
    assert!(signed_by(|n| got[0].header(n), &got[0].body, &public_key()));
    let transaction = got[0].transaction();
    assert_eq!(transaction["out_trade_no"], "round-trip-1");
    assert_eq!(transaction["transaction_id"], transaction_id.as_str());
    assert_eq!(transaction["trade_state"], "SUCCESS");
    assert_eq!(transaction["amount"]["total"], 250);
    assert_eq!(transaction["payer"]["openid"], "o-payer");
    assert_eq!(transaction["mchid"], MCHID);
    assert!(transaction["success_time"]
        .as_str()
        .unwrap()
        .ends_with("+08:00"));

    let query = sim.query("round-trip-1").await;
    assert!(query.verifies_with(PUBLIC_KEY_ID, &public_key()));
    assert_eq!(
        query.json(),
        transaction,
        "the query shows what the notify told"
    );
    let list = sim.wait_deliveries("round-trip-1", 1).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], 204);
    assert_eq!(list[0]["attempt"], 1);
    assert_eq!(
        list[0]["body"].as_str().unwrap().as_bytes(),
        &got[0].body[..]
    );

    for answer in [
        sim.prepay("round-trip-1", 250, &receiver.url).await,
        sim.close("round-trip-1").await,
    ] {
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.json()["code"], "ORDERPAID");
    }

    // A double payment: a second transaction with its own notify.
    let (second, second_notify) = sim.pay("round-trip-1").await;
    assert_ne!(second, transaction_id);
    assert_ne!(second_notify, notify_id);
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].transaction()["transaction_id"], second.as_str());
    let stats = sim.get("/sim/pay/stats").await;
    assert_eq!(
        (stats["jsapi"].as_u64(), stats["notifies"].as_u64()),
        (Some(4), Some(2))
    );
}

#[tokio::test]
async fn invalid_prepays_are_param_errors() {
    let sim = start_sim(|_| {}).await;
    let good = sim.order("param-0001", 1, "http://127.0.0.1:9/n");
    let mut bad = Vec::new();
    for (field, value) in [
        ("appid", json!("wx0000000000000000")),
        ("mchid", json!("1230000109")),
        ("out_trade_no", json!("abc")),
        ("out_trade_no", json!("has space 123")),
        ("out_trade_no", json!("x".repeat(33))),
        ("amount", json!({"total": 0})),
        ("amount", json!({"total": 1, "currency": "USD"})),
        ("payer", json!({})),
    ] {
        let mut order = good.clone();
        order[field] = value;
        bad.push(order);
    }
    for order in bad {
        let answer = sim
            .v3(
                Method::POST,
                "/v3/pay/transactions/jsapi",
                Some(order.clone()),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{order}");
        assert_eq!(answer.json()["code"], "PARAM_ERROR", "{order}");
        assert!(answer.verifies_with(PUBLIC_KEY_ID, &public_key()));
    }
    let path = "/v3/pay/transactions/out-trade-no/param-0001";
    let answer = sim.v3(Method::GET, path, None).await;
    assert_eq!(
        answer.json()["code"],
        "PARAM_ERROR",
        "a query needs the mchid"
    );
    let answer = sim
        .v3(Method::POST, "/v3/pay/transactions/jsapi", Some(good))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
}

#[tokio::test]
async fn close_and_query_follow_the_trade_state() {
    let sim = start_sim(|_| {}).await;
    let receiver = Receiver::start(Policy::default()).await;
    for answer in [sim.query("nobody-001").await, sim.close("nobody-001").await] {
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.json()["code"], "ORDER_NOT_EXIST");
    }
    sim.prepay("close-0001", 300, &receiver.url).await;
    for _ in 0..2 {
        let closed = sim.close("close-0001").await;
        assert_eq!(closed.status, StatusCode::NO_CONTENT);
        assert!(closed.body.is_empty());
        assert!(closed.verifies_with(PUBLIC_KEY_ID, &public_key()));
    }
    let query = sim.query("close-0001").await.json();
    assert_eq!(query["trade_state"], "CLOSED");
    assert_eq!(query["amount"]["total"], 300);
    let again = sim.prepay("close-0001", 300, &receiver.url).await;
    assert_eq!(again.json()["code"], "ORDER_CLOSED");

    // A failed payment: PAYERROR, no notify.
    sim.prepay("payerror-01", 100, &receiver.url).await;
    let failed = sim
        .control(
            "/sim/pay/pay",
            json!({"out_trade_no": "payerror-01", "outcome": "payerror"}),
        )
        .await;
    assert!(failed["transaction_id"].is_null());
    assert_eq!(
        sim.query("payerror-01").await.json()["trade_state"],
        "PAYERROR"
    );

    // A late payment after close, of another amount by another payer, is still told.
    let paid = sim
        .control(
            "/sim/pay/pay",
            json!({"out_trade_no": "close-0001", "amount": 299, "openid": "o-late"}),
        )
        .await;
    let got = receiver.wait_for(1).await;
    let transaction = got[0].transaction();
    assert_eq!(transaction["transaction_id"], paid["transaction_id"]);
    assert_eq!(transaction["amount"]["total"], 299);
    assert_eq!(transaction["payer"]["openid"], "o-late");
    let query = sim.query("close-0001").await.json();
    assert_eq!(query["trade_state"], "SUCCESS");
    assert_eq!(query["amount"]["total"], 299);
    assert!(sim.deliveries("payerror-01").await.is_empty());
    assert_eq!(receiver.got().len(), 1);
    let stats = sim.get("/sim/pay/stats").await;
    assert_eq!(
        (stats["close"].as_u64(), stats["query"].as_u64()),
        (Some(3), Some(4))
    );
}

#[tokio::test]
async fn failed_notifies_are_retried_with_the_same_body_until_acknowledged() {
    let sim = start_sim(|_| {}).await;
    let receiver = Receiver::start(Policy {
        fail_first: 3,
        ..Default::default()
    })
    .await;
    sim.prepay("retry-0001", 100, &receiver.url).await;
    let (_, notify_id) = sim.pay("retry-0001").await;
    let list = sim.wait_deliveries("retry-0001", 4).await;
    let statuses: Vec<_> = list.iter().map(|d| d["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 500, 204]);
    let attempts: Vec<_> = list
        .iter()
        .map(|d| d["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let mut nonces = Vec::new();
    for d in &list {
        assert_eq!(d["notify_id"], notify_id.as_str());
        assert_eq!(
            d["body"], list[0]["body"],
            "every retry carries the same body"
        );
        let header = |n: &str| d["headers"][n].as_str().map(str::to_owned);
        assert!(signed_by(
            header,
            d["body"].as_str().unwrap().as_bytes(),
            &public_key()
        ));
        nonces.push(header("Wechatpay-Nonce").unwrap());
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "each attempt is signed afresh");
    // Acknowledged: no further attempts (the next would have come 3 min × 0.001 later).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.deliveries("retry-0001").await.len(), 4);
    assert_eq!(receiver.got().len(), 4);
}

#[tokio::test]
async fn a_notify_never_acknowledged_is_given_up_after_sixteen_attempts() {
    // 24 h of WeChat's schedule in under a second.
    let sim = start_sim(|s| s.time_factor = 0.000_01).await;
    let receiver = Receiver::start(Policy {
        fail_first: usize::MAX,
        ..Default::default()
    })
    .await;
    sim.prepay("giveup-001", 100, &receiver.url).await;
    sim.pay("giveup-001").await;
    sim.wait_deliveries("giveup-001", 16).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let list = sim.deliveries("giveup-001").await;
    assert_eq!(list.len(), 16);
    assert_eq!(list[15]["attempt"], 16);
    assert!(list.iter().all(|d| d["status"] == 500));
}

#[tokio::test]
async fn a_notify_to_nobody_is_a_transport_error_and_retried() {
    let sim = start_sim(|_| {}).await;
    // A port that was just free: nothing listens.
    let url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/n", l.local_addr().unwrap())
    };
    sim.prepay("nobody-002", 100, &url).await;
    sim.pay("nobody-002").await;
    let list = sim.wait_deliveries("nobody-002", 2).await;
    assert!(list[0]["status"].is_null());
    assert!(list[0]["error"].is_string());
    assert_eq!(list[1]["attempt"], 2);
}

#[tokio::test]
async fn duplicates_arrive_one_after_another_or_at_the_same_moment() {
    let sim = start_sim(|_| {}).await;
    let receiver = Receiver::start(Policy {
        delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    sim.prepay("dup-000001", 100, &receiver.url).await;
    sim.arm(json!({"duplicates": 2, "concurrent": true})).await;
    let (_, notify_id) = sim.pay("dup-000001").await;
    let got = receiver.wait_for(3).await;
    assert!(got.iter().all(|r| r.json()["id"] == notify_id.as_str()));
    assert_eq!(receiver.max_in_flight.load(Ordering::SeqCst), 3);
    let list = sim.wait_deliveries("dup-000001", 3).await;
    let mut copies: Vec<_> = list.iter().map(|d| d["copy"].as_u64().unwrap()).collect();
    copies.sort_unstable();
    assert_eq!(copies, [1, 2, 3]);
    assert!(list.iter().all(|d| d["attempt"] == 1));

    // Sequential copies: one after another, never overlapping.
    receiver.max_in_flight.store(0, Ordering::SeqCst);
    sim.arm(json!({"duplicates": 1})).await;
    sim.prepay("dup-000002", 100, &receiver.url).await;
    sim.pay("dup-000002").await;
    receiver.wait_for(5).await;
    let copies: Vec<_> = sim
        .wait_deliveries("dup-000002", 2)
        .await
        .iter()
        .map(|d| d["copy"].as_u64().unwrap())
        .collect();
    assert_eq!(copies, [1, 2]);
    assert_eq!(receiver.max_in_flight.load(Ordering::SeqCst), 1);

    // Faults are one-shot: the next notify goes out once.
    sim.prepay("dup-000003", 100, &receiver.url).await;
    sim.pay("dup-000003").await;
    receiver.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.deliveries("dup-000003").await.len(), 1);
    assert_eq!(receiver.got().len(), 6);
}

#[tokio::test]
async fn held_notifies_are_released_in_reverse_order() {
    let sim = start_sim(|_| {}).await;
    let receiver = Receiver::start(Policy::default()).await;
    let orders = ["hold-00001", "hold-00002", "hold-00003"];
    for no in orders {
        sim.prepay(no, 100, &receiver.url).await;
        sim.arm(json!({"hold": true})).await;
        sim.pay(no).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.got().is_empty(), "held notifies wait");
    let released = sim.control("/sim/pay/release", json!({})).await;
    assert_eq!(released["released"], 3);
    let got = receiver.wait_for(3).await;
    let order: Vec<_> = got
        .iter()
        .map(|r| r.transaction()["out_trade_no"].clone())
        .collect();
    assert_eq!(order, ["hold-00003", "hold-00002", "hold-00001"]);
}

#[tokio::test]
async fn signature_faults_spoil_the_first_attempts_then_heal() {
    let sim = start_sim(|_| {}).await;
    let key = public_key();
    let receiver = Receiver::start(Policy {
        check: Some((PUBLIC_KEY_ID.to_owned(), key.clone())),
        ..Default::default()
    })
    .await;
    for (i, fault) in [
        "bad_signature",
        "signtest",
        "stale_timestamp",
        "unknown_serial",
        "forged",
    ]
    .into_iter()
    .enumerate()
    {
        let no = format!("sigfault-{i}");
        sim.prepay(&no, 100, &receiver.url).await;
        sim.arm(json!({ fault: 1 })).await;
        sim.pay(&no).await;
        let list = sim.wait_deliveries(&no, 2).await;
        assert_eq!(
            list[0]["status"], 401,
            "{fault}: the receiver refuses attempt 1"
        );
        assert_eq!(list[1]["status"], 204, "{fault}: attempt 2 is genuine");
        let spoiled = |n: &str| list[0]["headers"][n].as_str().map(str::to_owned);
        let body = list[0]["body"].as_str().unwrap().as_bytes();
        let serial = spoiled("Wechatpay-Serial").unwrap();
        let signature = spoiled("Wechatpay-Signature").unwrap();
        let age = chrono::Utc::now().timestamp()
            - spoiled("Wechatpay-Timestamp")
                .unwrap()
                .parse::<i64>()
                .unwrap();
        match fault {
            "signtest" => assert!(signature.starts_with("WECHATPAY/SIGNTEST/")),
            "stale_timestamp" => {
                assert!(age > 86_000);
                assert!(signed_by(spoiled, body, &key), "stale but genuinely signed");
            }
            "unknown_serial" => assert!(serial != PUBLIC_KEY_ID && !serial.is_empty()),
            _ => {
                assert_eq!(serial, PUBLIC_KEY_ID, "{fault}");
                assert!(!signed_by(spoiled, body, &key), "{fault}");
            }
        }
    }
}

#[tokio::test]
async fn resource_faults_lost_and_delayed_notifies_and_notifies_of_any_transaction() {
    let sim = start_sim(|_| {}).await;
    let receiver = Receiver::start(Policy::default()).await;
    sim.prepay("resfault-1", 100, &receiver.url).await;
    sim.arm(json!({"wrong_algorithm": true})).await;
    sim.pay("resfault-1").await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["resource"]["algorithm"], "AEAD_AES_128_GCM");

    sim.prepay("resfault-2", 100, &receiver.url).await;
    sim.arm(json!({"undecryptable": true})).await;
    sim.pay("resfault-2").await;
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].json()["resource"]["algorithm"], "AEAD_AES_256_GCM");
    assert!(decrypt_resource(&got[1].json()).is_none());

    sim.prepay("resfault-3", 100, &receiver.url).await;
    sim.arm(json!({"lost": true})).await;
    let (_, lost_id) = sim.pay("resfault-3").await;
    sim.prepay("resfault-4", 100, &receiver.url).await;
    sim.arm(json!({"delay_ms": 300})).await;
    sim.pay("resfault-4").await;
    assert_eq!(receiver.got().len(), 2, "the delayed notify is not out yet");
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].transaction()["out_trade_no"], "resfault-4");
    assert!(sim.deliveries("resfault-3").await.is_empty());
    assert!(got.iter().all(|r| r.json()["id"] != lost_id.as_str()));

    // Any transaction, to the last notify_url seen.
    let odd = json!({"out_trade_no": "nobody-003", "mchid": "1230000109",
                     "trade_state": "SUCCESS", "amount": {"total": 7}});
    let sent = sim
        .control("/sim/pay/notify", json!({"transaction": odd}))
        .await;
    let got = receiver.wait_for(4).await;
    assert_eq!(got[3].json()["id"], sent["notify_id"]);
    assert_eq!(got[3].transaction(), odd);
    assert!(signed_by(|n| got[3].header(n), &got[3].body, &public_key()));

    let unknown = reqwest::Client::new()
        .post(format!("{}/sim/pay/faults", sim.base))
        .json(&json!({"duplicate": 1}))
        .send()
        .await
        .unwrap();
    assert!(
        unknown.status().is_client_error(),
        "a misspelt fault is refused"
    );
}
