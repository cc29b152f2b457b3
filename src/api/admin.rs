//! Admin endpoints (bearer `auth.admin_token`): refund an order, sync an order and its
//! refunds with WeChat, read the failure log.

use axum::{
    extract::{FromRequestParts, Path, State},
    http::{request::Parts, StatusCode},
    Json,
};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use serde_json::Value;

use super::{
    limited::{self, Limited},
    orders::OrderView,
    ApiError, ApiJson, ApiQuery, AppState, IdempotencyKey, RequestId,
};
use crate::{
    db::{orders, refunds},
    domain::{Fen, OutRefundNo, OutTradeNo, RefundReason},
    events::{Event, OrderKind, QueryReason, RefundRequested},
    fold::{wallet_account, Failure, Order, PaidWith, RefundRow, RefundState},
    limits::Principal,
    reconcile::{self, Submitted},
};

/// A request that presented the admin credential.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &app.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "admin endpoints are disabled: set auth.admin_token",
            ));
        };
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Digests compare in time independent of where the tokens differ.
        if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.expose_secret().as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_admin_token",
                "send Authorization: Bearer <auth.admin_token>",
            ));
        }
        parts.extensions.insert(Principal::Admin);
        Ok(Admin)
    }
}

/// `POST /v1/admin/orders/{no}/sync` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Sync)]
pub struct SyncView {
    /// WeChat's trade state, or `ORDER_NOT_EXIST`.
    wechat_trade_state: String,
    /// Whether the answer was appended as `payment.queried`.
    recorded: bool,
    /// The order after the answer applied.
    order: OrderView,
    /// Its refunds after their answers applied.
    refunds: Vec<RefundView>,
}

/// Asks WeChat about an order (recording a final answer as `payment.queried`) and
/// brings its refunds up to date (sending a refund whose answer was lost, recording a
/// changed status as `refund.queried`).
pub async fn sync_order(
    _: Admin,
    State(app): State<AppState>,
    RequestId(request_id): RequestId,
    Path(no): Path<String>,
) -> Result<Json<SyncView>, ApiError> {
    let order = admin_order(&app, &no).await?;
    let word =
        reconcile::query_payment(&app, &order.out_trade_no, QueryReason::Sync, &request_id).await?;
    let mut newest = word.seq;
    let open = refunds::for_order(&**app.pool.get().await?, &order.out_trade_no).await?;
    for refund in open.iter().filter(|r| !r.state.is_final()) {
        let seq =
            reconcile::sync_refund(&app, refund, order.amount, QueryReason::Sync, &request_id)
                .await?;
        newest = newest.max(seq);
    }
    if let Some(seq) = newest {
        app.projection.wait_for(seq, app.read_your_writes).await?;
    }
    let client = app.pool.get().await?;
    let order = orders::get(&**client, &order.out_trade_no)
        .await?
        .ok_or_else(order_not_found)?;
    let refunds = refunds::for_order(&**client, &order.out_trade_no).await?;
    Ok(Json(SyncView {
        recorded: word.seq.is_some(),
        wechat_trade_state: word.trade_state,
        order: order.into(),
        refunds: refunds.into_iter().map(Into::into).collect(),
    }))
}

fn order_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "order_not_found", "no such order")
}

async fn admin_order(app: &AppState, no: &str) -> Result<Order, ApiError> {
    let no = OutTradeNo::parse(no).map_err(|_| order_not_found())?;
    orders::get(&**app.pool.get().await?, no.as_str())
        .await?
        .ok_or_else(order_not_found)
}

/// A refund as an admin sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Refund)]
pub struct RefundView {
    out_refund_no: String,
    out_trade_no: String,
    /// Fen.
    #[schema(minimum = 1)]
    amount: i64,
    reason: String,
    #[schema(schema_with = super::openapi::refund_state)]
    state: &'static str,
    /// False for a refund WeChat reported that wxledger never requested.
    requested: bool,
    #[schema(required)]
    refund_id: Option<String>,
    #[schema(required)]
    wechat_status: Option<String>,
    #[schema(required)]
    code: Option<String>,
    #[schema(required)]
    message: Option<String>,
    requested_at: DateTime<Utc>,
    #[schema(required)]
    settled_at: Option<DateTime<Utc>>,
}

impl From<RefundRow> for RefundView {
    fn from(r: RefundRow) -> Self {
        Self {
            out_refund_no: r.out_refund_no,
            out_trade_no: r.out_trade_no,
            amount: r.amount,
            reason: r.reason,
            state: r.state.as_str(),
            requested: r.requested,
            refund_id: r.refund_id,
            wechat_status: r.wechat_status,
            code: r.code,
            message: r.message,
            requested_at: r.requested_at,
            settled_at: r.settled_at,
        }
    }
}

/// `POST /v1/admin/orders/{no}/refunds` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Fen: a JSON integer (no fraction, no exponent, no string), 1 to `pay.max_amount_fen`.
    #[schema(value_type = i64, minimum = 1)]
    amount: Value,
    /// Shown to the payer: at most 80 characters after trimming, no control characters;
    /// may be empty.
    #[serde(default)]
    #[schema(max_length = 80, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    reason: Option<String>,
    /// The merchant's refund number; issued from the order (and `Idempotency-Key`) when
    /// absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_|*@-]{1,64}$")]
    out_refund_no: Option<String>,
}

/// `POST /v1/admin/orders/{no}/refunds` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefundAnswer {
    refund: RefundView,
    order: OrderView,
}

/// Refunds part or all of a paid order. The request is checked here and again by the
/// fold (which sets the amount aside), then sent to WeChat; WeChat's answer is recorded.
/// 201 with the refund (usually `processing`; `succeeded` at once for an order paid from
/// the wallet); 200 when this `out_refund_no` was seen with the same request.
pub async fn refund_order(
    _: Admin,
    _: Limited<limited::Refund>,
    State(app): State<AppState>,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    Path(no): Path<String>,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<(StatusCode, Json<RefundAnswer>), ApiError> {
    let amount = Fen::parse(&body.amount, app.max_amount_fen)
        .map_err(|p| ApiError::invalid_field("amount", &p))?
        .get();
    let reason = RefundReason::parse(body.reason.as_deref().unwrap_or(""))
        .map_err(|p| ApiError::invalid_field("reason", p))?
        .into_inner();
    let order = admin_order(&app, &no).await?;
    let out_refund_no = match &body.out_refund_no {
        Some(given) => {
            OutRefundNo::parse(given).map_err(|p| ApiError::invalid_field("out_refund_no", p))?
        }
        None => OutRefundNo::issue(&order.out_trade_no, key.as_deref()),
    };
    let existing = refunds::get(&**app.pool.get().await?, out_refund_no.as_str()).await?;
    let status = match existing {
        Some(r) if r.out_trade_no == order.out_trade_no && r.amount == amount && r.requested => {
            StatusCode::OK
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "out_refund_no_taken",
                "this out_refund_no was used for a different refund",
            ))
        }
        None => {
            check_refundable(&app, &order, amount).await?;
            let event = Event::RefundRequested(RefundRequested {
                out_refund_no: out_refund_no.as_str().to_owned(),
                out_trade_no: order.out_trade_no.clone(),
                amount,
                reason,
            });
            let appended = app.record(&event, &request_id, &event.msg_id(None)).await?;
            app.projection
                .wait_for(appended.seq, app.read_your_writes)
                .await?;
            if appended.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            }
        }
    };
    let refund = refunds::get(&**app.pool.get().await?, out_refund_no.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::internal("a requested refund is missing after its event applied")
        })?;
    if refund.out_trade_no != order.out_trade_no || refund.amount != amount {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_refund_no_taken",
            "this out_refund_no was used for a different refund",
        ));
    }
    match refund.state {
        RefundState::Refused => return Err(refused(refund.code.as_deref())),
        RefundState::Requested => {
            // Sent now; if WeChat cannot be reached the refund stays requested and the
            // reconciliation sweep sends it again.
            let sent = reconcile::submit_refund(&app, &refund, order.amount, &request_id).await?;
            let seq = match sent {
                Submitted::Accepted(seq) | Submitted::Rejected(seq) => seq,
            };
            app.projection.wait_for(seq, app.read_your_writes).await?;
        }
        _ => {}
    }
    let client = app.pool.get().await?;
    let refund = refunds::get(&**client, out_refund_no.as_str())
        .await?
        .ok_or_else(|| ApiError::internal("a refund row disappeared"))?;
    if refund.state == RefundState::Rejected {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "refund_rejected",
            format!(
                "WeChat Pay refused the refund: {}: {}",
                refund.code.as_deref().unwrap_or("-"),
                refund.message.as_deref().unwrap_or("-")
            ),
        ));
    }
    let order = orders::get(&**client, &order.out_trade_no)
        .await?
        .ok_or_else(order_not_found)?;
    Ok((
        status,
        Json(RefundAnswer {
            refund: refund.into(),
            order: order.into(),
        }),
    ))
}

/// The checks made before appending (the fold makes them again, in stream order).
async fn check_refundable(app: &AppState, order: &Order, amount: i64) -> Result<(), ApiError> {
    if !order.state.is_paid() {
        return Err(refused(Some("not_paid")));
    }
    let left = order.refundable();
    if amount > left {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "refund_exceeds_paid",
            format!("at most {left} fen of this order can still be refunded"),
        ));
    }
    if order.kind == OrderKind::Recharge && order.paid_with == Some(PaidWith::Wechat) {
        let balance =
            orders::balance(&**app.pool.get().await?, &wallet_account(order.user_id)).await?;
        if balance < amount {
            return Err(refused(Some("insufficient_balance")));
        }
    }
    Ok(())
}

/// The API error for a refund the fold (or the pre-check) refused with `code`.
fn refused(code: Option<&str>) -> ApiError {
    match code {
        Some("not_paid") => ApiError::new(
            StatusCode::CONFLICT,
            "order_not_paid",
            "only a paid order can be refunded",
        ),
        Some("refund_exceeds_paid") => ApiError::new(
            StatusCode::CONFLICT,
            "refund_exceeds_paid",
            "the refunds would exceed what was paid",
        ),
        Some("insufficient_balance") => ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_balance",
            "the wallet no longer holds the amount to refund",
        ),
        _ => ApiError::new(
            StatusCode::CONFLICT,
            "refund_refused",
            format!("the refund was refused: {}", code.unwrap_or("-")),
        ),
    }
}

/// `GET /v1/admin/orders/{no}/refunds` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefundList {
    refunds: Vec<RefundView>,
}

/// An order's refunds, oldest first.
pub async fn order_refunds(
    _: Admin,
    State(app): State<AppState>,
    Path(no): Path<String>,
) -> Result<Json<RefundList>, ApiError> {
    let order = admin_order(&app, &no).await?;
    let rows = refunds::for_order(&**app.pool.get().await?, &order.out_trade_no).await?;
    Ok(Json(RefundList {
        refunds: rows.into_iter().map(Into::into).collect(),
    }))
}

/// `GET /v1/admin/failures` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FailureQuery {
    /// How many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One failure row.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Failure)]
pub struct FailureView {
    seq: i64,
    reason: String,
    #[schema(required)]
    out_trade_no: Option<String>,
    #[schema(required)]
    transaction_id: Option<String>,
    /// Fen.
    #[schema(required)]
    amount: Option<i64>,
    #[schema(value_type = Object)]
    detail: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

impl From<Failure> for FailureView {
    fn from(f: Failure) -> Self {
        Self {
            seq: f.seq,
            reason: f.reason.to_string(),
            out_trade_no: f.out_trade_no,
            transaction_id: f.transaction_id,
            amount: f.amount,
            detail: f.detail,
            occurred_at: f.occurred_at,
        }
    }
}

/// `GET /v1/admin/failures` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FailureList {
    failures: Vec<FailureView>,
}

/// The failure log, newest first (`?limit=`, 1 to 1000, default 100).
pub async fn failures(
    _: Admin,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<FailureQuery>,
) -> Result<Json<FailureList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 1000",
        ));
    }
    let rows = orders::failures(&**app.pool.get().await?, limit).await?;
    Ok(Json(FailureList {
        failures: rows.into_iter().map(Into::into).collect(),
    }))
}
