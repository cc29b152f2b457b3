//! Control endpoints of the simulated WeChat Pay, under `/sim/pay/...`: the user pays,
//! notifies are sent and faulted, deliveries and call counts are read back.

use std::sync::atomic::Ordering;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    notify::{self, Delivery, NotifyFaults, SimNotify},
    orders::{SimPayment, TradeState},
    Pay, PayStats,
};

type ControlError = (StatusCode, Json<Value>);

fn control_error(status: StatusCode, message: &str) -> ControlError {
    (status, Json(json!({ "error": message })))
}

/// How the simulated user's payment ends (the `outcome` field of `/sim/pay/pay`).
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum PayResult {
    #[default]
    Success,
    Payerror,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    out_trade_no: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    outcome: PayResult,
    #[serde(default)]
    openid: Option<String>,
}

/// `POST /sim/pay/pay {out_trade_no, amount?, outcome?, openid?}` → `{transaction_id,
/// notify_id}`: the user pays, as `wx.requestPayment` would. Paying a paid order is a
/// double payment (a second transaction and notify); paying a closed one a late payment.
/// `outcome: "payerror"` fails the payment: PAYERROR, no notify, both ids null.
pub(super) async fn pay(
    State(pay): State<Pay>,
    Json(body): Json<PayBody>,
) -> Result<Json<Value>, ControlError> {
    let mut world = pay.world.lock().await;
    let faults = world.faults.take();
    let Some(order) = world.orders.get_mut(&body.out_trade_no) else {
        world.faults = faults;
        return Err(control_error(StatusCode::NOT_FOUND, "no such out_trade_no"));
    };
    if body.outcome == PayResult::Payerror {
        if matches!(order.state, TradeState::NotPay | TradeState::PayError) {
            order.state = TradeState::PayError;
        }
        world.faults = faults;
        return Ok(Json(json!({"transaction_id": null, "notify_id": null})));
    }
    let payment = SimPayment::new(
        body.amount.unwrap_or(order.params.total),
        body.openid.unwrap_or_else(|| order.params.openid.clone()),
    );
    order.state = TradeState::Success;
    order.paid.get_or_insert_with(|| payment.clone());
    let transaction = order.transaction_json(&pay.config, &payment);
    let url = order.params.notify_url.clone();
    drop(world);
    let notify = SimNotify::new(&pay, &transaction, url, faults.unwrap_or_default());
    let notify_id = notify.id.clone();
    notify::dispatch(&pay, notify).await;
    Ok(Json(json!({
        "transaction_id": payment.transaction_id(),
        "notify_id": notify_id,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    #[serde(default)]
    transaction: Option<Value>,
    /// A refund resource instead of a transaction; `event_type` says which REFUND.*.
    #[serde(default)]
    refund: Option<Value>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    notify_url: Option<String>,
}

/// `POST /sim/pay/notify {transaction | refund, event_type?, notify_url?}` →
/// `{notify_id}`: a notify whose resource is exactly `transaction` (unknown orders, other
/// merchants, odd amounts) or `refund` (event type `REFUND.SUCCESS` unless given), to
/// `notify_url` or the last one seen.
pub(super) async fn send(
    State(pay): State<Pay>,
    Json(body): Json<SendBody>,
) -> Result<Json<Value>, ControlError> {
    let (resource, event_type, original_type) = match (&body.transaction, &body.refund) {
        (Some(t), None) if t.is_object() => (
            t,
            body.event_type.as_deref().unwrap_or("TRANSACTION.SUCCESS"),
            "transaction",
        ),
        (None, Some(r)) if r.is_object() => (
            r,
            body.event_type.as_deref().unwrap_or("REFUND.SUCCESS"),
            "refund",
        ),
        _ => {
            return Err(control_error(
                StatusCode::BAD_REQUEST,
                "give one of transaction or refund, a JSON object",
            ))
        }
    };
    let (url, faults) = {
        let mut world = pay.world.lock().await;
        let Some(url) = body.notify_url.or_else(|| world.last_notify_url.clone()) else {
            return Err(control_error(
                StatusCode::BAD_REQUEST,
                "no notify_url given and none seen yet",
            ));
        };
        (url, world.faults.take().unwrap_or_default())
    };
    let notify = SimNotify::v3(&pay, event_type, original_type, "", resource, url, faults);
    let notify_id = notify.id.clone();
    notify::dispatch(&pay, notify).await;
    Ok(Json(json!({ "notify_id": notify_id })))
}

/// `POST /sim/pay/faults {duplicates?, concurrent?, delay_ms?, hold?, bad_signature?,
/// signtest?, stale_timestamp?, unknown_serial?, forged?, wrong_algorithm?,
/// undecryptable?, lost?}` → `{"armed": {...}}`: faults for the next notify created.
pub(super) async fn arm_faults(
    State(pay): State<Pay>,
    Json(faults): Json<NotifyFaults>,
) -> Json<Value> {
    let armed = json!({ "armed": faults });
    pay.world.lock().await.faults = Some(faults);
    Json(armed)
}

/// `POST /sim/pay/release` → `{"released": n}`: delivers the held notifies, newest first.
pub(super) async fn release(State(pay): State<Pay>) -> Json<Value> {
    Json(json!({ "released": notify::release(&pay).await }))
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    #[serde(default)]
    out_trade_no: Option<String>,
    #[serde(default)]
    notify_id: Option<String>,
}

/// `GET /sim/pay/deliveries?out_trade_no=..&notify_id=..` → every attempt so far, in the
/// order their answers came back.
pub(super) async fn deliveries(
    State(pay): State<Pay>,
    Query(q): Query<DeliveriesQuery>,
) -> Json<Vec<Delivery>> {
    let world = pay.world.lock().await;
    Json(
        world
            .deliveries
            .iter()
            .filter(|d| {
                q.out_trade_no
                    .as_ref()
                    .is_none_or(|no| d.out_trade_no.as_ref() == Some(no))
                    && q.notify_id.as_ref().is_none_or(|id| &d.notify_id == id)
            })
            .cloned()
            .collect(),
    )
}

/// `POST /sim/pay/rotate-certificate` → `{"current_serial"}`: platform certificate B
/// becomes current (in place of one issued on request); `/v3/certificates` lists A and B.
pub(super) async fn rotate_certificate(State(pay): State<Pay>) -> Json<Value> {
    pay.platform.store(1, Ordering::Release);
    *pay.issued
        .lock()
        .expect("the issued-certificate lock is never poisoned") = None;
    Json(json!({ "current_serial": pay.config.platforms[1].serial }))
}

/// `GET /sim/pay/stats`: how often each API was called, notifies created and sent.
pub(super) async fn stats(State(pay): State<Pay>) -> Json<PayStats> {
    Json(pay.world.lock().await.stats.clone())
}
