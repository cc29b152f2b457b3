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
    notify::{self, SimNotify},
    random_alphanumeric, Pay,
};
use crate::{
    settings::SimSettings,
    wechat::pay::v2::{
        crypto,
        sign::{self, ApiKey, SignType},
        xml::{self, Fields},
    },
};

mod control;
mod refund;
mod wire;

use control::{control_notify, control_pay, control_refund_notify, stats};
use wire::{digits, fen, now_compact, now_dashed, refused, xml_response};

/// Requests the simulator reads are small.
const MAX_REQUEST: usize = 64 * 1024;

/// The `/pay/...`, `/secapi/...` endpoints and their `/sim/pay/v2/...` controls.
pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route("/pay/unifiedorder", post(unifiedorder))
        .route("/pay/orderquery", post(orderquery))
        .route("/pay/closeorder", post(closeorder))
        .route("/secapi/pay/refund", post(refund::refund))
        .route("/pay/refundquery", post(refund::refundquery))
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

/// One successful v2 payment of an order.
struct V2Payment {
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
    paid: Option<V2Payment>,
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
            ("nonce_str", &random_alphanumeric(32)),
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
                random_alphanumeric(20).to_ascii_lowercase()
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
