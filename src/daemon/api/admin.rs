//! Admin endpoints (bearer `auth.admin_token`): refund an order, sync an order and its
//! refunds with WeChat, read the failure log.

use super::ErrorCode;
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
    core::{
        domain::{Fen, OutRefundNo, RefundReason},
        fold::{Failure, RefundRow},
    },
    daemon::{
        commands::{
            orders,
            refunds::{self, NewRefund},
        },
        limits::Principal,
    },
    store::db,
};

/// A request that presented the admin credential.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &app.admin_token else {
            return Err(ApiError::from_code(
                ErrorCode::AdminDisabled,
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
            return Err(ApiError::from_code(
                ErrorCode::InvalidAdminToken,
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
    let order = orders::order(&app, &no).await?;
    let synced = refunds::sync_order(&app, &order, &request_id).await?;
    Ok(Json(SyncView {
        recorded: synced.recorded,
        wechat_trade_state: synced.trade_state,
        order: synced.order.into(),
        refunds: synced.refunds.into_iter().map(Into::into).collect(),
    }))
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
    #[schema(schema_with = super::openapi::enums::refund_state)]
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
        .map_err(|p| ApiError::invalid_field("amount", &p))?;
    let reason = RefundReason::parse(body.reason.as_deref().unwrap_or(""))
        .map_err(|p| ApiError::invalid_field("reason", p))?
        .into_inner();
    let order = orders::order(&app, &no).await?;
    let out_refund_no = match &body.out_refund_no {
        Some(given) => {
            OutRefundNo::parse(given).map_err(|p| ApiError::invalid_field("out_refund_no", p))?
        }
        None => OutRefundNo::issue(&order.out_trade_no, key.as_deref()),
    };
    let new = NewRefund {
        out_refund_no,
        amount,
        reason,
    };
    let refunded = refunds::refund(&app, &order, new, &request_id).await?;
    let status = if refunded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RefundAnswer {
            refund: refunded.refund.into(),
            order: refunded.order.into(),
        }),
    ))
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
    let order = orders::order(&app, &no).await?;
    let rows = db::refunds::for_order(&**app.pool.get().await?, &order.out_trade_no).await?;
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
    let rows = db::orders::failures(&**app.pool.get().await?, limit).await?;
    Ok(Json(FailureList {
        failures: rows.into_iter().map(Into::into).collect(),
    }))
}
