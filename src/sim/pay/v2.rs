//! The simulator's WeChat Pay API v2 (legacy merchants): `unifiedorder`, `orderquery`,
//! `closeorder`, `/secapi/pay/refund` and `refundquery`, each checking the request's
//! `sign` with the merchant's API v2 key and signing its answer the same way; and the
//! controls that pay a v2 order and send its XML notify, send any v2 notify, and settle a
//! refund with an encrypted refund notify. Notifies go through the same delivery as v3
//! (retry schedule, the one-shot faults of `/sim/pay/faults`), framed as v2.
//!
//! v2 orders are kept here, apart from the v3 orders: their records (sign type, refunds)
//! differ, and the v3 store's constructors are private to its module.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{
    super::SimState,
    notify::{self, Notify},
    random_alnum, Pay,
};
use crate::{
    settings::SimSettings,
    wechat::pay::v2::{
        crypto,
        sign::{self, ApiKey, SignType},
        xml::{self, Fields},
    },
};

/// Requests the simulator reads are small.
const MAX_REQUEST: usize = 64 * 1024;

/// Signs the `sign: "wrong"` fault and encrypts the `req_info: "wrong_key"` one: a key
/// of the right form that is not the merchant's.
const WRONG_KEY: &str = "NotTheMerchantsApiV2Key000000000";

/// The `/pay/...`, `/secapi/...` endpoints and their `/sim/pay/v2/...` controls.
pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route("/pay/unifiedorder", post(unifiedorder))
        .route("/pay/orderquery", post(orderquery))
        .route("/pay/closeorder", post(closeorder))
        .route("/secapi/pay/refund", post(refund))
        .route("/pay/refundquery", post(refundquery))
        .route("/sim/pay/v2/pay", post(control_pay))
        .route("/sim/pay/v2/notify", post(control_notify))
        .route("/sim/pay/v2/refund-notify", post(control_refund_notify))
        .route("/sim/pay/v2/stats", get(stats))
}

/// The simulated API v2: the merchant's key and what it remembers.
pub(super) struct V2 {
    key: ApiKey,
    world: Mutex<V2World>,
}

impl V2 {
    /// The API v2 side for `settings`.
    pub(super) fn new(settings: &SimSettings) -> std::io::Result<Self> {
        let key = ApiKey::new(&settings.v2_api_key).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "sim.v2_api_key must be 32 ASCII letters or digits",
            )
        })?;
        Ok(Self {
            key,
            world: Mutex::new(V2World::default()),
        })
    }
}

/// Calls whose sign verified, per endpoint.
#[derive(Default, Clone, Serialize)]
struct V2Stats {
    unifiedorder: u64,
    orderquery: u64,
    closeorder: u64,
    refund: u64,
    refundquery: u64,
    /// Requests refused for their sign.
    bad_sign: u64,
}

#[derive(Default)]
struct V2World {
    orders: HashMap<String, V2Order>,
    /// By `out_refund_no`.
    refunds: HashMap<String, V2Refund>,
    stats: V2Stats,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State2 {
    NotPay,
    Success,
    Closed,
}

/// What must be equal for a repeated `unifiedorder` to be the same order.
#[derive(Clone, PartialEq, Eq)]
struct OrderParams {
    body: String,
    total_fee: i64,
    openid: String,
    notify_url: String,
}

struct Payment {
    transaction_id: String,
    total_fee: i64,
    openid: String,
    time_end: String,
}

struct V2Order {
    params: OrderParams,
    prepay_id: String,
    sign_type: SignType,
    state: State2,
    /// The first payment (a second one is a double payment, told only by its notify).
    paid: Option<Payment>,
    /// Fen refunded or being refunded.
    refunded: i64,
}

struct V2Refund {
    out_trade_no: String,
    refund_id: String,
    refund_fee: i64,
    /// API v2's words: PROCESSING, SUCCESS, REFUNDCLOSE, CHANGE.
    status: &'static str,
    success_time: Option<String>,
    notify_url: String,
    refund_desc: String,
}

/// A request whose sign verified.
struct Request {
    fields: Fields,
    sign_type: SignType,
}

fn xml_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `return_code` FAIL: WeChat refused the call itself; such answers are not signed.
fn refused(message: &str) -> Response {
    xml_response(xml::write([
        ("return_code", "FAIL"),
        ("return_msg", message),
    ]))
}

fn now_compact() -> String {
    beijing().format("%Y%m%d%H%M%S").to_string()
}

fn now_dashed() -> String {
    beijing().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn beijing() -> chrono::DateTime<chrono::FixedOffset> {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    chrono::Utc::now().with_timezone(&china)
}

fn digits(prefix: &str, n: usize) -> String {
    let mut rng = rand::thread_rng();
    let tail: String = (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    format!("{prefix}{tail}")
}

fn fen(value: Option<&str>) -> Option<i64> {
    value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .filter(|&f| f >= 1)
}

impl Pay {
    /// Reads and checks a merchant's request: XML, our appid and mch_id, a known sign
    /// type, a sign that verifies.
    async fn v2_request(&self, body: &[u8]) -> Result<Request, Response> {
        let fields = xml::parse(body, MAX_REQUEST).map_err(|e| {
            tracing::info!(error = %e, "sim pay v2: request XML refused");
            refused("XML格式错误")
        })?;
        if fields.get("appid") != Some(self.config.appid.as_str())
            || fields.get("mch_id") != Some(self.config.mchid.as_str())
        {
            return Err(refused("appid和mch_id不匹配"));
        }
        let sign_type = match fields.non_empty("sign_type") {
            None => SignType::Md5,
            Some(name) => SignType::parse(name).ok_or_else(|| refused("签名类型错误"))?,
        };
        let given = fields.get("sign").unwrap_or_default();
        if sign::verify(fields.iter(), &self.v2.key, sign_type, given).is_err() {
            self.v2.world.lock().await.stats.bad_sign += 1;
            tracing::info!("sim pay v2: request sign refused");
            return Err(refused("签名错误"));
        }
        Ok(Request { fields, sign_type })
    }

    /// A signed answer: `result_code` SUCCESS with `extra`, or FAIL with `err`.
    fn v2_answer(
        &self,
        sign_type: SignType,
        outcome: Result<Vec<(&str, String)>, (&str, &str)>,
    ) -> Response {
        let mut fields: Fields = [
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", self.config.appid.as_str()),
            ("mch_id", self.config.mchid.as_str()),
            ("nonce_str", &random_alnum(32)),
        ]
        .into_iter()
        .collect();
        match outcome {
            Ok(extra) => {
                fields.set("result_code", "SUCCESS");
                for (k, v) in extra {
                    fields.set(k, v);
                }
            }
            Err((code, message)) => {
                fields.set("result_code", "FAIL");
                fields.set("err_code", code);
                fields.set("err_code_des", message);
            }
        }
        let sign = sign::sign(fields.iter(), &self.v2.key, sign_type);
        fields.set("sign", sign);
        xml_response(fields.to_xml())
    }
}

/// `POST /pay/unifiedorder` (JSAPI) → `prepay_id`; the same `out_trade_no` with the same
/// parameters gets the same prepay id.
async fn unifiedorder(State(pay): State<Pay>, body: Bytes) -> Response {
    let req = match pay.v2_request(&body).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let f = &req.fields;
    let out_trade_no = f.get("out_trade_no").unwrap_or_default().to_owned();
    let Some(total_fee) = fen(f.get("total_fee")) else {
        return refused("total_fee 参数格式错误");
    };
    let notify_url = f.get("notify_url").unwrap_or_default();
    let checks = [
        (
            super::orders::valid_out_trade_no(&out_trade_no),
            "out_trade_no 参数格式错误",
        ),
        (
            f.non_empty("body").is_some_and(|b| b.len() <= 128),
            "body 参数格式错误",
        ),
        (
            f.get("trade_type") == Some("JSAPI"),
            "trade_type 只支持 JSAPI",
        ),
        (f.non_empty("openid").is_some(), "JSAPI 支付必须传 openid"),
        (
            f.non_empty("spbill_create_ip").is_some(),
            "缺少参数 spbill_create_ip",
        ),
        (
            notify_url.starts_with("http://") || notify_url.starts_with("https://"),
            "notify_url 参数格式错误",
        ),
        (
            f.get("fee_type").is_none_or(|c| c == "CNY"),
            "fee_type 只支持 CNY",
        ),
    ];
    if let Some((_, message)) = checks.iter().find(|(ok, _)| !ok) {
        return refused(message);
    }
    let params = OrderParams {
        body: f.get("body").unwrap_or_default().to_owned(),
        total_fee,
        openid: f.get("openid").unwrap_or_default().to_owned(),
        notify_url: notify_url.to_owned(),
    };
    let mut world = pay.v2.world.lock().await;
    world.stats.unifiedorder += 1;
    let outcome = match world.orders.get(&out_trade_no) {
        Some(o) if o.state == State2::Success => Err(("ORDERPAID", "该订单已支付")),
        Some(o) if o.state == State2::Closed => Err(("ORDERCLOSED", "该订单已关闭")),
        Some(o) if o.params != params => Err(("INVALID_REQUEST", "商户订单号重复")),
        Some(o) => Ok(o.prepay_id.clone()),
        None => {
            let prepay_id = format!(
                "wx{}{}",
                chrono::Utc::now().format("%Y%m%d%H%M%S"),
                random_alnum(20).to_ascii_lowercase()
            );
            world.orders.insert(
                out_trade_no,
                V2Order {
                    params,
                    prepay_id: prepay_id.clone(),
                    sign_type: req.sign_type,
                    state: State2::NotPay,
                    paid: None,
                    refunded: 0,
                },
            );
            Ok(prepay_id)
        }
    };
    drop(world);
    pay.v2_answer(
        req.sign_type,
        outcome.map(|prepay_id| vec![("trade_type", "JSAPI".into()), ("prepay_id", prepay_id)]),
    )
}

/// `POST /pay/orderquery` by `out_trade_no` → the order's state (and payment).
async fn orderquery(State(pay): State<Pay>, body: Bytes) -> Response {
    let req = match pay.v2_request(&body).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let no = req.fields.get("out_trade_no").unwrap_or_default();
    let mut world = pay.v2.world.lock().await;
    world.stats.orderquery += 1;
    let outcome = world
        .orders
        .get(no)
        .map(|o| order_fields(no, o))
        .ok_or(("ORDERNOTEXIST", "此交易订单号不存在"));
    drop(world);
    pay.v2_answer(req.sign_type, outcome)
}

/// An order as `orderquery` shows it.
fn order_fields(no: &str, o: &V2Order) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("out_trade_no", no.to_owned()),
        ("trade_type", "JSAPI".to_owned()),
        ("openid", o.params.openid.clone()),
        ("total_fee", o.params.total_fee.to_string()),
        ("fee_type", "CNY".to_owned()),
    ];
    let (state, desc) = match (o.state, &o.paid) {
        (State2::Success, Some(p)) => {
            fields.retain(|(k, _)| !matches!(*k, "openid" | "total_fee"));
            fields.extend([
                ("openid", p.openid.clone()),
                ("is_subscribe", "N".to_owned()),
                ("bank_type", "OTHERS".to_owned()),
                ("total_fee", p.total_fee.to_string()),
                ("cash_fee", p.total_fee.to_string()),
                ("transaction_id", p.transaction_id.clone()),
                ("time_end", p.time_end.clone()),
            ]);
            if o.refunded > 0 {
                ("REFUND", "转入退款")
            } else {
                ("SUCCESS", "支付成功")
            }
        }
        (State2::Closed, _) => ("CLOSED", "订单已关闭"),
        _ => ("NOTPAY", "订单未支付"),
    };
    fields.push(("trade_state", state.to_owned()));
    fields.push(("trade_state_desc", desc.to_owned()));
    fields
}

/// `POST /pay/closeorder` → closed (again: still closed); a paid order is `ORDERPAID`.
async fn closeorder(State(pay): State<Pay>, body: Bytes) -> Response {
    let req = match pay.v2_request(&body).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let no = req.fields.get("out_trade_no").unwrap_or_default();
    let mut world = pay.v2.world.lock().await;
    world.stats.closeorder += 1;
    let outcome = match world.orders.get_mut(no) {
        None => Err(("ORDERNOTEXIST", "订单不存在")),
        Some(o) if o.state == State2::Success => Err(("ORDERPAID", "订单已支付，不能发起关单")),
        Some(o) => {
            o.state = State2::Closed;
            Ok(Vec::new())
        }
    };
    drop(world);
    pay.v2_answer(req.sign_type, outcome)
}

/// `POST /secapi/pay/refund` → accepted (the refund stays PROCESSING until
/// `/sim/pay/v2/refund-notify` settles it); a repeated `out_refund_no` is the same refund.
async fn refund(State(pay): State<Pay>, body: Bytes) -> Response {
    let req = match pay.v2_request(&body).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let f = &req.fields;
    let no = f.get("out_trade_no").unwrap_or_default().to_owned();
    let out_refund_no = f.get("out_refund_no").unwrap_or_default().to_owned();
    let (Some(total_fee), Some(refund_fee)) = (fen(f.get("total_fee")), fen(f.get("refund_fee")))
    else {
        return refused("total_fee 或 refund_fee 参数格式错误");
    };
    if !(1..=64).contains(&out_refund_no.len()) {
        return refused("out_refund_no 参数格式错误");
    }
    let mut world = pay.v2.world.lock().await;
    world.stats.refund += 1;
    let outcome = settle_refund_request(&mut world, &no, &out_refund_no, total_fee, refund_fee, f);
    drop(world);
    pay.v2_answer(req.sign_type, outcome)
}

fn settle_refund_request(
    world: &mut V2World,
    no: &str,
    out_refund_no: &str,
    total_fee: i64,
    refund_fee: i64,
    f: &Fields,
) -> Result<Vec<(&'static str, String)>, (&'static str, &'static str)> {
    let Some(order) = world.orders.get_mut(no) else {
        return Err(("ORDERNOTEXIST", "订单不存在"));
    };
    let Some(paid) = &order.paid else {
        return Err(("TRADE_STATE_ERROR", "订单状态错误"));
    };
    if total_fee != paid.total_fee {
        return Err(("INVALID_REQUEST", "订单金额与支付金额不一致"));
    }
    let answer = |refund: &V2Refund, paid: &Payment| {
        vec![
            ("transaction_id", paid.transaction_id.clone()),
            ("out_trade_no", no.to_owned()),
            ("out_refund_no", out_refund_no.to_owned()),
            ("refund_id", refund.refund_id.clone()),
            ("refund_fee", refund.refund_fee.to_string()),
            ("total_fee", paid.total_fee.to_string()),
            ("cash_fee", paid.total_fee.to_string()),
            ("cash_refund_fee", refund.refund_fee.to_string()),
        ]
    };
    if let Some(existing) = world.refunds.get(out_refund_no) {
        return if existing.out_trade_no == no && existing.refund_fee == refund_fee {
            Ok(answer(existing, paid))
        } else {
            Err(("INVALID_REQUEST", "退款单号重复，参数不一致"))
        };
    }
    if refund_fee > paid.total_fee - order.refunded {
        return Err(("INVALID_REQUEST", "退款金额大于支付金额"));
    }
    order.refunded += refund_fee;
    let refund = V2Refund {
        out_trade_no: no.to_owned(),
        refund_id: digits("5030", 25),
        refund_fee,
        status: "PROCESSING",
        success_time: None,
        notify_url: f
            .non_empty("notify_url")
            .unwrap_or(&order.params.notify_url)
            .to_owned(),
        refund_desc: f.get("refund_desc").unwrap_or_default().to_owned(),
    };
    let fields = answer(&refund, paid);
    world.refunds.insert(out_refund_no.to_owned(), refund);
    Ok(fields)
}

/// `POST /pay/refundquery` by `out_refund_no` → that refund at index 0.
async fn refundquery(State(pay): State<Pay>, body: Bytes) -> Response {
    let req = match pay.v2_request(&body).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let out_refund_no = req.fields.get("out_refund_no").unwrap_or_default();
    let mut world = pay.v2.world.lock().await;
    world.stats.refundquery += 1;
    let outcome = world
        .refunds
        .get(out_refund_no)
        .and_then(|r| {
            let order = world.orders.get(&r.out_trade_no)?;
            let paid = order.paid.as_ref()?;
            let mut fields = vec![
                ("out_trade_no", r.out_trade_no.clone()),
                ("transaction_id", paid.transaction_id.clone()),
                ("total_fee", paid.total_fee.to_string()),
                ("cash_fee", paid.total_fee.to_string()),
                ("refund_count", "1".to_owned()),
                ("out_refund_no_0", out_refund_no.to_owned()),
                ("refund_id_0", r.refund_id.clone()),
                ("refund_channel_0", "ORIGINAL".to_owned()),
                ("refund_fee_0", r.refund_fee.to_string()),
                ("refund_status_0", r.status.to_owned()),
                ("refund_recv_accout_0", "支付用户的零钱".to_owned()),
            ];
            if let Some(t) = &r.success_time {
                fields.push(("refund_success_time_0", t.clone()));
            }
            Some(fields)
        })
        .ok_or(("REFUNDNOTEXIST", "退款订单查询失败"));
    drop(world);
    pay.v2_answer(req.sign_type, outcome)
}

/// A fault on a notify's `sign`.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum SignFault {
    /// Signed with the merchant's key.
    #[default]
    Valid,
    /// Signed with another key: well-formed, but does not verify.
    Wrong,
    /// No `sign` at all.
    Missing,
}

impl Pay {
    /// `fields` with their `sign` (or the armed fault), as XML.
    fn v2_signed(&self, mut fields: Fields, sign_type: SignType, fault: SignFault) -> String {
        let key = match fault {
            SignFault::Valid => Some(self.v2.key.clone()),
            SignFault::Wrong => Some(ApiKey::new(WRONG_KEY).expect("a 32-character key")),
            SignFault::Missing => None,
        };
        if let Some(key) = key {
            let sign = sign::sign(fields.iter(), &key, sign_type);
            fields.set("sign", sign);
        }
        fields.to_xml()
    }

    /// Queues an XML notify with the faults armed for the next notify.
    async fn v2_dispatch(&self, out_trade_no: Option<String>, body: String, url: String) -> String {
        let faults = self.world.lock().await.faults.take().unwrap_or_default();
        let notify = Notify::v2(
            uuid::Uuid::new_v4().to_string(),
            out_trade_no,
            body,
            url,
            faults,
        );
        let id = notify.id.clone();
        notify::dispatch(self, notify).await;
        id
    }
}

type ControlError = (StatusCode, Json<Value>);

fn control_error(status: StatusCode, message: &str) -> ControlError {
    (status, Json(json!({ "error": message })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayBody {
    out_trade_no: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    sign: SignFault,
}

/// `POST /sim/pay/v2/pay {out_trade_no, amount?, openid?, sign?: "wrong"|"missing"}` →
/// `{transaction_id, notify_id}`: the user pays a v2 order; its XML notify is delivered to
/// the order's `notify_url`, signed as the order was (or faulted). Paying a paid order is
/// a double payment with its own transaction.
async fn control_pay(
    State(pay): State<Pay>,
    Json(body): Json<PayBody>,
) -> Result<Json<Value>, ControlError> {
    let mut world = pay.v2.world.lock().await;
    let Some(order) = world.orders.get_mut(&body.out_trade_no) else {
        return Err(control_error(
            StatusCode::NOT_FOUND,
            "no such v2 out_trade_no",
        ));
    };
    let payment = Payment {
        transaction_id: digits("4200", 24),
        total_fee: body.amount.unwrap_or(order.params.total_fee),
        openid: body.openid.unwrap_or_else(|| order.params.openid.clone()),
        time_end: now_compact(),
    };
    order.state = State2::Success;
    let mut fields: Fields = [
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", pay.config.appid.as_str()),
        ("mch_id", pay.config.mchid.as_str()),
        ("nonce_str", &random_alnum(32)),
        ("result_code", "SUCCESS"),
        ("openid", &payment.openid),
        ("is_subscribe", "N"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("total_fee", &payment.total_fee.to_string()),
        ("fee_type", "CNY"),
        ("cash_fee", &payment.total_fee.to_string()),
        ("transaction_id", &payment.transaction_id),
        ("out_trade_no", &body.out_trade_no),
        ("time_end", &payment.time_end),
    ]
    .into_iter()
    .collect();
    if order.sign_type == SignType::HmacSha256 {
        fields.set("sign_type", "HMAC-SHA256");
    }
    let (sign_type, url) = (order.sign_type, order.params.notify_url.clone());
    let transaction_id = payment.transaction_id.clone();
    order.paid.get_or_insert(payment);
    drop(world);
    let xml = pay.v2_signed(fields, sign_type, body.sign);
    let notify_id = pay.v2_dispatch(Some(body.out_trade_no), xml, url).await;
    Ok(Json(
        json!({"transaction_id": transaction_id, "notify_id": notify_id}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyBody {
    /// Fields to sign and send.
    #[serde(default)]
    fields: Option<serde_json::Map<String, Value>>,
    /// A body sent exactly as given (hostile XML, another encoding: base64 with `raw_base64`).
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    raw_base64: Option<String>,
    #[serde(default)]
    notify_url: Option<String>,
    #[serde(default)]
    sign: SignFault,
    #[serde(default)]
    sign_type: Option<String>,
}

/// `POST /sim/pay/v2/notify {fields | raw, notify_url?, sign?, sign_type?}` →
/// `{notify_id}`: a v2 notify of exactly these fields (signed unless told otherwise), or
/// exactly this body, to `notify_url` or the last one seen.
async fn control_notify(
    State(pay): State<Pay>,
    Json(body): Json<NotifyBody>,
) -> Result<Json<Value>, ControlError> {
    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    let last = pay.world.lock().await.last_notify_url.clone();
    let Some(url) = body.notify_url.or(last) else {
        return Err(control_error(
            StatusCode::BAD_REQUEST,
            "no notify_url given and none seen yet",
        ));
    };
    let sign_type = match body.sign_type.as_deref() {
        None => SignType::Md5,
        Some(name) => SignType::parse(name).ok_or_else(|| {
            control_error(StatusCode::BAD_REQUEST, "sign_type: MD5 or HMAC-SHA256")
        })?,
    };
    let (xml, out_trade_no) = match (body.fields, body.raw, body.raw_base64) {
        (Some(map), None, None) => {
            let fields: Fields = map
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect();
            let no = fields.get("out_trade_no").map(str::to_owned);
            (pay.v2_signed(fields, sign_type, body.sign), no)
        }
        (None, Some(raw), None) => (raw, None),
        (None, None, Some(b64)) => {
            let bytes = B64
                .decode(b64)
                .map_err(|_| control_error(StatusCode::BAD_REQUEST, "raw_base64 is not base64"))?;
            // The delivery sends text; bytes that are not UTF-8 go out as they are.
            (String::from_utf8_lossy(&bytes).into_owned(), None)
        }
        _ => {
            return Err(control_error(
                StatusCode::BAD_REQUEST,
                "give exactly one of fields, raw, raw_base64",
            ))
        }
    };
    let notify_id = pay.v2_dispatch(out_trade_no, xml, url).await;
    Ok(Json(json!({ "notify_id": notify_id })))
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
enum ReqInfoFault {
    #[default]
    Valid,
    /// Encrypted with a key that is not the merchant's.
    WrongKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundNotifyBody {
    out_refund_no: String,
    /// `SUCCESS` (default), `REFUNDCLOSE` or `CHANGE`.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    req_info: ReqInfoFault,
}

/// `POST /sim/pay/v2/refund-notify {out_refund_no, status?, req_info?: "wrong_key"}` →
/// `{notify_id}`: the refund ends in `status`, and its refund notify (no `sign`, an
/// AES-256-ECB `req_info`) goes to the refund's `notify_url`.
async fn control_refund_notify(
    State(pay): State<Pay>,
    Json(body): Json<RefundNotifyBody>,
) -> Result<Json<Value>, ControlError> {
    let status: &'static str = match body.status.as_deref().unwrap_or("SUCCESS") {
        "SUCCESS" => "SUCCESS",
        "REFUNDCLOSE" => "REFUNDCLOSE",
        "CHANGE" => "CHANGE",
        _ => {
            return Err(control_error(
                StatusCode::BAD_REQUEST,
                "status: SUCCESS, REFUNDCLOSE or CHANGE",
            ))
        }
    };
    let mut guard = pay.v2.world.lock().await;
    let world = &mut *guard;
    let Some(refund) = world.refunds.get_mut(&body.out_refund_no) else {
        return Err(control_error(
            StatusCode::NOT_FOUND,
            "no such out_refund_no",
        ));
    };
    let Some(order) = world.orders.get_mut(&refund.out_trade_no) else {
        return Err(control_error(
            StatusCode::NOT_FOUND,
            "the refund's order is gone",
        ));
    };
    let Some(paid) = &order.paid else {
        return Err(control_error(
            StatusCode::CONFLICT,
            "the refund's order is unpaid",
        ));
    };
    if refund.status == "PROCESSING" && status == "REFUNDCLOSE" {
        order.refunded -= refund.refund_fee;
    }
    refund.status = status;
    let success_time = now_dashed();
    refund.success_time = (status == "SUCCESS").then(|| success_time.clone());
    let inner = xml::write_root(
        "root",
        [
            ("out_refund_no", body.out_refund_no.as_str()),
            ("out_trade_no", refund.out_trade_no.as_str()),
            ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
            ("refund_fee", &refund.refund_fee.to_string()),
            ("refund_id", &refund.refund_id),
            ("refund_recv_accout", "支付用户的零钱"),
            ("refund_request_source", "API"),
            ("refund_status", status),
            ("settlement_refund_fee", &refund.refund_fee.to_string()),
            ("settlement_total_fee", &paid.total_fee.to_string()),
            (
                "success_time",
                if status == "SUCCESS" {
                    &success_time
                } else {
                    ""
                },
            ),
            ("total_fee", &paid.total_fee.to_string()),
            ("transaction_id", &paid.transaction_id),
        ],
    );
    let key = match body.req_info {
        ReqInfoFault::Valid => pay.v2.key.clone(),
        ReqInfoFault::WrongKey => ApiKey::new(WRONG_KEY).expect("a 32-character key"),
    };
    let outer = xml::write([
        ("return_code", "SUCCESS"),
        ("appid", pay.config.appid.as_str()),
        ("mch_id", pay.config.mchid.as_str()),
        ("nonce_str", &random_alnum(32)),
        ("req_info", &crypto::encrypt(inner.as_bytes(), &key)),
    ]);
    let (no, url) = (refund.out_trade_no.clone(), refund.notify_url.clone());
    tracing::debug!(out_refund_no = %body.out_refund_no, reason = %refund.refund_desc, status, "sim pay v2: refund settled");
    drop(guard);
    let notify_id = pay.v2_dispatch(Some(no), outer, url).await;
    Ok(Json(json!({ "notify_id": notify_id })))
}

/// `GET /sim/pay/v2/stats`: calls whose sign verified, per endpoint, and sign refusals.
async fn stats(State(pay): State<Pay>) -> Json<V2Stats> {
    Json(pay.v2.world.lock().await.stats.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_integers_in_fen() {
        assert_eq!(fen(Some("1")), Some(1));
        assert_eq!(fen(Some("0")), None);
        assert_eq!(fen(Some("1.00")), None);
        assert_eq!(fen(Some("-1")), None);
        assert_eq!(fen(Some("")), None);
        assert_eq!(fen(None), None);
    }
}
