//! Admin endpoints (bearer `auth.admin_token`): sync an order with WeChat, read the
//! failure log.

use axum::{
    extract::{FromRequestParts, Path, Query, State},
    http::{request::Parts, StatusCode},
    Json,
};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{orders::OrderView, ApiError, AppState, RequestId};
use crate::{
    db::orders,
    domain::OutTradeNo,
    events::{Event, PaymentQueried, QueryReason},
    fold::Failure,
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
        Ok(Admin)
    }
}

/// `POST /v1/admin/orders/{no}/sync` answer.
#[derive(Serialize)]
pub struct SyncView {
    /// WeChat's trade state, or `ORDER_NOT_EXIST`.
    wechat_trade_state: String,
    /// Whether the answer was appended as `payment.queried`.
    recorded: bool,
    /// The order after the answer applied.
    order: OrderView,
}

/// Asks WeChat about an order and records a final answer as `payment.queried`.
pub async fn sync_order(
    _: Admin,
    State(app): State<AppState>,
    RequestId(request_id): RequestId,
    Path(no): Path<String>,
) -> Result<Json<SyncView>, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "order_not_found", "no such order");
    let no = OutTradeNo::parse(&no).map_err(|_| not_found())?;
    let order = orders::get(&**app.pool.get().await?, no.as_str())
        .await?
        .ok_or_else(not_found)?;
    let (state, recorded) = match app.pay.query(&order.out_trade_no).await {
        Ok((transaction, evidence)) => {
            let state = transaction.trade_state.clone();
            // NOTPAY and USERPAYING change nothing; the stream need not hear them.
            let recorded = !matches!(state.as_str(), "NOTPAY" | "USERPAYING");
            if recorded {
                let queried = PaymentQueried {
                    reason: QueryReason::Sync,
                    transaction,
                    evidence,
                };
                let msg_id = queried.msg_id();
                let event = Event::PaymentQueried(queried);
                let appended = app.record(&event, &request_id, &msg_id).await?;
                app.projection
                    .wait_for(appended.seq, app.read_your_writes)
                    .await?;
            }
            (state, recorded)
        }
        Err(e) if e.code() == Some("ORDER_NOT_EXIST") => ("ORDER_NOT_EXIST".to_owned(), false),
        Err(e) => return Err(e.into()),
    };
    let order = orders::get(&**app.pool.get().await?, no.as_str())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(SyncView {
        wechat_trade_state: state,
        recorded,
        order: order.into(),
    }))
}

/// `GET /v1/admin/failures` query.
#[derive(Deserialize)]
pub struct FailureQuery {
    limit: Option<i64>,
}

/// One failure row.
#[derive(Serialize)]
pub struct FailureView {
    seq: i64,
    reason: String,
    out_trade_no: Option<String>,
    transaction_id: Option<String>,
    amount: Option<i64>,
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
#[derive(Serialize)]
pub struct FailureList {
    failures: Vec<FailureView>,
}

/// The failure log, newest first (`?limit=`, 1 to 1000, default 100).
pub async fn failures(
    _: Admin,
    State(app): State<AppState>,
    Query(q): Query<FailureQuery>,
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
