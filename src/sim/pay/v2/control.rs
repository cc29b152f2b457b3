//! The simulator's API v2 controls: pay a v2 order and send its XML notify, send any v2
//! notify, settle a refund with an encrypted refund notify, and count the calls.

use super::*;

/// Signs the `sign: "wrong"` fault and encrypts the `req_info: "wrong_key"` one: a key
/// of the right form that is not the merchant's.
const WRONG_KEY: &str = "NotTheMerchantsApiV2Key000000000";

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
        let notify = SimNotify::v2(
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
pub(super) struct PayBody {
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
pub(super) async fn control_pay(
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
    let payment = V2Payment {
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
        ("nonce_str", &random_alphanumeric(32)),
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
pub(super) struct NotifyBody {
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
pub(super) async fn control_notify(
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
pub(super) struct RefundNotifyBody {
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
pub(super) async fn control_refund_notify(
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
        ("nonce_str", &random_alphanumeric(32)),
        ("req_info", &crypto::encrypt(inner.as_bytes(), &key)),
    ]);
    let (no, url) = (refund.out_trade_no.clone(), refund.notify_url.clone());
    tracing::debug!(out_refund_no = %body.out_refund_no, reason = %refund.refund_desc, status, "sim pay v2: refund settled");
    drop(guard);
    let notify_id = pay.v2_dispatch(Some(no), outer, url).await;
    Ok(Json(json!({ "notify_id": notify_id })))
}

/// `GET /sim/pay/v2/stats`: calls whose sign verified, per endpoint, and sign refusals.
pub(super) async fn stats(State(pay): State<Pay>) -> Json<V2Stats> {
    Json(pay.v2.world.lock().await.stats.clone())
}
