//! The simulated WeChat Pay's refunds: `POST /v3/refund/domestic/refunds` (answered
//! PROCESSING, as WeChat usually does), `GET /v3/refund/domestic/refunds/{no}`, and the
//! controls that settle a refund (SUCCESS, ABNORMAL or CLOSED) and send its notify with
//! the same delivery, retry and fault machinery as payment notifies. One-shot faults,
//! for v3 and v2 alike: the next refund request refused with a code, or carried out with
//! its answer lost; the next refund query failing with a 5xx.

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    notify::{self, SimNotify},
    now_cst,
    orders::TradeState,
    sign::MerchantRequest,
    Pay,
};

/// Where a simulated refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RefundStatus {
    Processing,
    Success,
    Abnormal,
    Closed,
}

impl RefundStatus {
    fn code(self) -> &'static str {
        match self {
            Self::Processing => "PROCESSING",
            Self::Success => "SUCCESS",
            Self::Abnormal => "ABNORMAL",
            Self::Closed => "CLOSED",
        }
    }

    /// The notify's `event_type` and `summary` for a refund that reached this status.
    fn notify(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Success => Some(("REFUND.SUCCESS", "退款成功")),
            Self::Abnormal => Some(("REFUND.ABNORMAL", "退款异常")),
            Self::Closed => Some(("REFUND.CLOSED", "退款关闭")),
            Self::Processing => None,
        }
    }
}

/// One refund the merchant asked for.
pub(super) struct SimRefund {
    out_refund_no: String,
    out_trade_no: String,
    transaction_id: String,
    refund_id: String,
    refund: i64,
    total: i64,
    status: RefundStatus,
    create_time: String,
    success_time: Option<String>,
    notify_url: Option<String>,
}

impl SimRefund {
    /// As the refund API's answer and a refund query show it.
    fn answer_json(&self) -> Value {
        let mut v = json!({
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": self.create_time,
            "status": self.status.code(),
            "funds_account": "AVAILABLE",
            "amount": {
                "total": self.total, "refund": self.refund,
                "payer_total": self.total, "payer_refund": self.refund,
                "settlement_total": self.total, "settlement_refund": self.refund,
                "discount_refund": 0, "currency": "CNY",
            },
        });
        if let Some(t) = &self.success_time {
            v["success_time"] = t.clone().into();
        }
        v
    }

    /// As a refund notify's decrypted resource shows it, with `refund` paid out.
    fn notify_json(&self, mchid: &str, refund: i64) -> Value {
        let mut v = json!({
            "mchid": mchid,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "refund_status": self.status.code(),
            "user_received_account": "支付用户零钱",
            "amount": {"total": self.total, "refund": refund,
                       "payer_total": self.total, "payer_refund": refund},
        });
        if let Some(t) = &self.success_time {
            v["success_time"] = t.clone().into();
        }
        v
    }
}

#[derive(Deserialize)]
struct RefundBody {
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    out_trade_no: Option<String>,
    out_refund_no: String,
    #[serde(default)]
    notify_url: Option<String>,
    amount: RefundBodyAmount,
}

#[derive(Deserialize)]
struct RefundBodyAmount {
    refund: i64,
    total: i64,
    currency: String,
}

/// A refund API error, as `(status, code, message)`.
type RefundApiError = (StatusCode, &'static str, String);

fn invalid(message: impl Into<String>) -> RefundApiError {
    (StatusCode::BAD_REQUEST, "INVALID_REQUEST", message.into())
}

/// `POST /v3/refund/domestic/refunds` → the refund, PROCESSING. The same `out_refund_no`
/// with the same parameters is the same refund; the refundable amount is what was paid
/// less every refund not closed.
pub(super) async fn refund(
    State(pay): State<Pay>,
    MerchantRequest(body): MerchantRequest,
) -> Response {
    pay.count(|s| &mut s.refund).await;
    let body: RefundBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return pay.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                &format!("malformed request: {e}"),
            )
        }
    };
    let fault = take_fault(&pay).await;
    if let Some(RefundFault::Reject(code, message)) = &fault {
        return pay.error(StatusCode::FORBIDDEN, code, message);
    }
    let mut world = pay.world.lock().await;
    let answer = open_refund(&mut world, body).map(|r| r.answer_json());
    drop(world);
    if let Some(RefundFault::Lose) = fault {
        return lost_answer();
    }
    match answer {
        Ok(refund) => pay.answer(StatusCode::OK, Some(&refund)),
        Err((status, code, message)) => pay.error(status, code, &message),
    }
}

fn open_refund(
    world: &mut super::PayWorld,
    body: RefundBody,
) -> Result<&SimRefund, RefundApiError> {
    if body.amount.currency != "CNY" {
        return Err((
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "amount.currency must be CNY".into(),
        ));
    }
    if body.amount.refund < 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "amount.refund must be at least 1".into(),
        ));
    }
    let order = match (&body.out_trade_no, &body.transaction_id) {
        (Some(no), _) => world.orders.get(no),
        (None, Some(id)) => world
            .orders
            .values()
            .find(|o| o.paid.as_ref().is_some_and(|p| p.transaction_id() == id)),
        (None, None) => None,
    };
    let Some(order) = order else {
        return Err((
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_EXISTS",
            "订单不存在".into(),
        ));
    };
    let (Some(payment), TradeState::Success) = (&order.paid, order.state) else {
        return Err(invalid("订单未支付"));
    };
    if body.amount.total != order.params.total {
        return Err((
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "amount.total is not the order's total".into(),
        ));
    }
    let (out_trade_no, transaction_id, total) = (
        order.out_trade_no.clone(),
        payment.transaction_id().to_owned(),
        order.params.total,
    );
    if let Some(existing) = world.refunds.get(&body.out_refund_no) {
        if existing.out_trade_no != out_trade_no || existing.refund != body.amount.refund {
            return Err(invalid("out_refund_no already used with other parameters"));
        }
    } else {
        let refunded: i64 = world
            .refunds
            .values()
            .filter(|r| r.out_trade_no == out_trade_no && r.status != RefundStatus::Closed)
            .map(|r| r.refund)
            .sum();
        // Checked: the amounts are the caller's, and an overflow must be a refusal.
        if refunded
            .checked_add(body.amount.refund)
            .is_none_or(|sum| sum > total)
        {
            return Err(invalid("申请退款金额超过订单可退金额"));
        }
        let refund_id = format!("50000{}", super::random_digits(24));
        world.refunds.insert(
            body.out_refund_no.clone(),
            SimRefund {
                out_refund_no: body.out_refund_no.clone(),
                out_trade_no,
                transaction_id,
                refund_id,
                refund: body.amount.refund,
                total,
                status: RefundStatus::Processing,
                create_time: now_cst(),
                success_time: None,
                notify_url: body.notify_url,
            },
        );
    }
    Ok(&world.refunds[&body.out_refund_no])
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}` → the refund.
pub(super) async fn query(
    State(pay): State<Pay>,
    Path(out_refund_no): Path<String>,
    MerchantRequest(_): MerchantRequest,
) -> Response {
    pay.count(|s| &mut s.refund_query).await;
    if take_query_fault(&pay).await {
        return pay.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYSTEM_ERROR",
            "系统错误",
        );
    }
    let world = pay.world.lock().await;
    let answer = world
        .refunds
        .get(&out_refund_no)
        .map(SimRefund::answer_json);
    drop(world);
    match answer {
        Some(refund) => pay.answer(StatusCode::OK, Some(&refund)),
        None => pay.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在"),
    }
}

type ControlError = (StatusCode, Json<Value>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleBody {
    out_refund_no: String,
    outcome: RefundStatus,
    /// Pay out another amount than asked (the notify says so).
    #[serde(default)]
    amount: Option<i64>,
}

/// `POST /sim/pay/refund {out_refund_no, outcome: success|abnormal|closed, amount?}` →
/// `{notify_id}`: WeChat settles the refund and sends its notify (with the armed faults).
pub(super) async fn settle(
    State(pay): State<Pay>,
    Json(body): Json<SettleBody>,
) -> Result<Json<Value>, ControlError> {
    let fail = |status, message: &str| (status, Json(json!({ "error": message })));
    let Some((event_type, summary)) = body.outcome.notify() else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "outcome must be success, abnormal or closed",
        ));
    };
    let mut world = pay.world.lock().await;
    let faults = world.faults.take().unwrap_or_default();
    let fallback = world.last_notify_url.clone();
    let Some(refund) = world.refunds.get_mut(&body.out_refund_no) else {
        return Err(fail(StatusCode::NOT_FOUND, "no such out_refund_no"));
    };
    refund.status = body.outcome;
    if body.outcome == RefundStatus::Success {
        refund.success_time = Some(now_cst());
    }
    let resource = refund.notify_json(&pay.config.mchid, body.amount.unwrap_or(refund.refund));
    let Some(url) = refund.notify_url.clone().or(fallback) else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "the refund has no notify_url and none was seen",
        ));
    };
    drop(world);
    let notify = SimNotify::v3(&pay, event_type, "refund", summary, &resource, url, faults);
    let notify_id = notify.id.clone();
    notify::dispatch(&pay, notify).await;
    Ok(Json(json!({ "notify_id": notify_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    code: String,
    message: String,
}

/// `POST /sim/pay/refund-reject {code, message}`: the next refund request is refused with
/// this code (403, or a signed v2 FAIL), e.g. `NOT_ENOUGH` when the merchant's balance is
/// short.
pub(super) async fn arm_reject(
    State(pay): State<Pay>,
    Json(body): Json<RejectBody>,
) -> Json<Value> {
    pay.world.lock().await.refund_reject = Some((body.code.clone(), body.message.clone()));
    Json(json!({ "armed": {"code": body.code, "message": body.message} }))
}

/// `POST /sim/pay/refund-lose`: the next refund request is carried out, but its answer
/// breaks off after its first bytes, as when the connection drops on the way back; the
/// merchant cannot tell whether WeChat took the refund.
pub(super) async fn arm_lose(State(pay): State<Pay>) -> Json<Value> {
    pay.world.lock().await.refund_lose = true;
    Json(json!({ "armed": {"lose": true} }))
}

/// An answer that breaks off: a 200 whose body fails after its first bytes, so the
/// connection is dropped before the answer is whole.
pub(super) fn lost_answer() -> Response {
    let cut: [Result<Bytes, std::io::Error>; 2] = [
        Ok(Bytes::from_static(b"{")),
        Err(std::io::Error::other("the answer is lost")),
    ];
    (
        StatusCode::OK,
        Body::from_stream(futures::stream::iter(cut)),
    )
        .into_response()
}

/// A fault armed for the next refund request.
pub(super) enum RefundFault {
    /// Refused with this `(code, message)`, nothing done.
    Reject(String, String),
    /// Carried out, the answer lost.
    Lose,
}

/// Takes the fault armed for this refund request: a refusal first, else a lost answer.
pub(super) async fn take_fault(pay: &Pay) -> Option<RefundFault> {
    let mut world = pay.world.lock().await;
    match world.refund_reject.take() {
        Some((code, message)) => Some(RefundFault::Reject(code, message)),
        None => std::mem::take(&mut world.refund_lose).then_some(RefundFault::Lose),
    }
}

/// `POST /sim/pay/refund-query-fail`: the next refund query fails with a 5xx (WeChat
/// cannot answer now).
pub(super) async fn arm_query_fail(State(pay): State<Pay>) -> Json<Value> {
    pay.world.lock().await.refund_query_fail = true;
    Json(json!({ "armed": {"query_fail": true} }))
}

/// Whether this refund query is to fail, taking the fault.
pub(super) async fn take_query_fault(pay: &Pay) -> bool {
    std::mem::take(&mut pay.world.lock().await.refund_query_fail)
}
