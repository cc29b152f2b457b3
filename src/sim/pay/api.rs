//! The `/v3/...` endpoints of the simulated WeChat Pay: JSAPI prepay, query by
//! `out_trade_no`, close, and the platform certificate list.

use axum::{
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::Response,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    orders::{JsapiBody, SimOrder, TradeState},
    random_alphanumeric,
    sign::MerchantRequest,
    Pay,
};

const NOT_EXIST: &str = "ORDER_NOT_EXIST";

impl Pay {
    fn param_error(&self, message: &str) -> Response {
        self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
    }

    fn not_exist(&self) -> Response {
        self.error(StatusCode::NOT_FOUND, NOT_EXIST, "订单不存在")
    }
}

/// `POST /v3/pay/transactions/jsapi` → `{"prepay_id"}`; the same `out_trade_no` with the
/// same parameters gets the same prepay id.
pub(super) async fn jsapi(
    State(pay): State<Pay>,
    MerchantRequest(body): MerchantRequest,
) -> Response {
    pay.count(|s| &mut s.jsapi).await;
    let parsed: JsapiBody = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => return pay.param_error(&format!("malformed request: {e}")),
    };
    let (out_trade_no, params) = match parsed.validate(&pay.config) {
        Ok(valid) => valid,
        Err(message) => return pay.param_error(&message),
    };
    let mut world = pay.world.lock().await;
    let prepay_id = match world.orders.get(&out_trade_no) {
        Some(order) if order.state == TradeState::Success => {
            return pay.error(StatusCode::BAD_REQUEST, "ORDERPAID", "该订单已支付");
        }
        Some(order) if order.state == TradeState::Closed => {
            return pay.error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "该订单已关闭");
        }
        Some(order) if order.params != params => {
            return pay.error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "商户订单号重复: the same out_trade_no with other parameters",
            );
        }
        Some(order) => order.prepay_id.clone(),
        None => {
            let order = SimOrder::new(out_trade_no.clone(), params);
            let prepay_id = order.prepay_id.clone();
            world.orders.insert(out_trade_no, order);
            prepay_id
        }
    };
    drop(world);
    pay.answer(StatusCode::OK, Some(&json!({ "prepay_id": prepay_id })))
}

/// The `mchid` of a query string, if it is there.
fn query_mchid(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("mchid=").map(str::to_owned))
}

/// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=...` → the transaction.
pub(super) async fn query(
    State(pay): State<Pay>,
    Path(out_trade_no): Path<String>,
    uri: Uri,
    MerchantRequest(_): MerchantRequest,
) -> Response {
    pay.count(|s| &mut s.query).await;
    if query_mchid(&uri).as_deref() != Some(pay.config.mchid.as_str()) {
        return pay.param_error("mchid is missing or not this merchant");
    }
    let world = pay.world.lock().await;
    let Some(order) = world.orders.get(&out_trade_no) else {
        drop(world);
        return pay.not_exist();
    };
    let transaction = order.query_json(&pay.config);
    drop(world);
    pay.answer(StatusCode::OK, Some(&transaction))
}

#[derive(Deserialize)]
struct CloseBody {
    mchid: String,
}

/// `POST /v3/pay/transactions/out-trade-no/{no}/close {mchid}` → 204.
pub(super) async fn close(
    State(pay): State<Pay>,
    Path(out_trade_no): Path<String>,
    MerchantRequest(body): MerchantRequest,
) -> Response {
    pay.count(|s| &mut s.close).await;
    match serde_json::from_slice::<CloseBody>(&body) {
        Ok(close) if close.mchid == pay.config.mchid => {}
        Ok(_) => return pay.param_error("mchid is not this merchant"),
        Err(e) => return pay.param_error(&format!("malformed request: {e}")),
    }
    let mut world = pay.world.lock().await;
    let outcome = match world.orders.get_mut(&out_trade_no) {
        None => Err(None),
        Some(order) if order.state == TradeState::Success => Err(Some("ORDERPAID")),
        Some(order) => {
            order.state = TradeState::Closed;
            Ok(())
        }
    };
    drop(world);
    match outcome {
        Ok(()) => pay.answer(StatusCode::NO_CONTENT, None),
        Err(None) => pay.not_exist(),
        Err(Some(code)) => pay.error(StatusCode::BAD_REQUEST, code, "该订单已支付"),
    }
}

/// `GET /v3/certificates` → the platform certificates, each encrypted with the APIv3 key.
pub(super) async fn certificates(
    State(pay): State<Pay>,
    MerchantRequest(_): MerchantRequest,
) -> Response {
    pay.count(|s| &mut s.certificates).await;
    let delay = pay.world.lock().await.certificates_delay;
    tokio::time::sleep(delay).await;
    let data: Vec<Value> = pay
        .published()
        .iter()
        .map(|p| {
            let nonce = random_alphanumeric(12);
            let ciphertext =
                pay.config
                    .apiv3
                    .encrypt(&nonce, "certificate", p.certificate_pem.as_bytes());
            json!({
                "serial_no": p.serial,
                "effective_time": p.effective_time,
                "expire_time": p.expire_time,
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": nonce,
                    "associated_data": "certificate",
                    "ciphertext": ciphertext,
                },
            })
        })
        .collect();
    pay.answer(StatusCode::OK, Some(&json!({ "data": data })))
}
