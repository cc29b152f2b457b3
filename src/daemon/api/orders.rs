//! Orders and recharges: placing them, their WeChat Pay prepay (`wx.requestPayment`
//! params), reading them back, and the wallet's ledger.

use super::{
    limited::{self, Limited},
    ApiError, ApiJson, AppState, AuthUser, IdempotencyKey, RequestId,
};
use crate::{
    core::{
        domain::{Description, Fen},
        events::OrderKind,
        fold::{wallet_account, LedgerEntry, Order, PaidWith},
    },
    daemon::commands::{
        self,
        orders::{self, NewOrder},
    },
    store::db,
    wechat::pay::PayParams,
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An order as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Order)]
pub struct OrderView {
    out_trade_no: String,
    #[schema(schema_with = super::openapi::enums::order_kind)]
    kind: &'static str,
    #[schema(schema_with = super::openapi::enums::order_state)]
    state: &'static str,
    /// Fen.
    #[schema(minimum = 1)]
    amount: i64,
    #[schema(schema_with = super::openapi::enums::currency)]
    currency: String,
    description: String,
    #[schema(required)]
    transaction_id: Option<String>,
    #[schema(schema_with = super::openapi::enums::paid_with, required)]
    paid_with: Option<&'static str>,
    /// Fen refunded (settled).
    #[schema(minimum = 0)]
    refunded: i64,
    /// Fen set aside for refunds in flight.
    #[schema(minimum = 0)]
    refunding: i64,
    placed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    #[schema(required)]
    paid_at: Option<DateTime<Utc>>,
    #[schema(required)]
    closed_at: Option<DateTime<Utc>>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        Self {
            out_trade_no: o.out_trade_no,
            kind: o.kind.as_str(),
            state: o.state.as_str(),
            amount: o.amount,
            currency: o.currency,
            description: o.description,
            transaction_id: o.transaction_id,
            paid_with: o.paid_with.map(PaidWith::as_str),
            refunded: o.refunded,
            refunding: o.refunding,
            placed_at: o.placed_at,
            expires_at: o.expires_at,
            paid_at: o.paid_at,
            closed_at: o.closed_at,
        }
    }
}

/// `POST /v1/orders` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Fen: a JSON integer (no fraction, no exponent, no string), 1 to `pay.max_amount_fen`.
    #[schema(value_type = i64, minimum = 1)]
    amount: Value,
    /// What WeChat's payment sheet shows: 1 to 127 characters after trimming; no
    /// control characters.
    #[schema(
        min_length = 1,
        max_length = 127,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    description: String,
}

/// `POST /v1/recharges` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceRecharge {
    /// Fen: a JSON integer (no fraction, no exponent, no string), 1 to `pay.max_amount_fen`.
    #[schema(value_type = i64, minimum = 1)]
    amount: Value,
}

/// `POST /v1/recharges` answer: the order and what `wx.requestPayment` needs.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Recharge)]
pub struct RechargeView {
    order: OrderView,
    payment: PayParams,
}

/// Places an order (201; 200 with the same order when the `Idempotency-Key` was seen).
pub async fn place_order(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<PlaceOrder>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let amount = Fen::parse(&body.amount, app.max_amount_fen)
        .map_err(|p| ApiError::invalid_field("amount", &p))?;
    let description = Description::parse(&body.description)
        .map_err(|p| ApiError::invalid_field("description", p))?;
    let new = NewOrder {
        user_id,
        key: key.as_deref(),
        kind: OrderKind::Order,
        amount,
        description,
    };
    let placed = orders::place(&app, new, &request_id).await?;
    Ok((created(placed.created), Json(placed.order.into())))
}

/// 201 for what was created now, 200 for what a retry found.
fn created(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Places a recharge and returns its payment params.
pub async fn place_recharge(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    _: Limited<limited::Recharge>,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<PlaceRecharge>,
) -> Result<(StatusCode, Json<RechargeView>), ApiError> {
    let amount = Fen::parse(&body.amount, app.max_amount_fen)
        .map_err(|p| ApiError::invalid_field("amount", &p))?;
    let (placed, payment) =
        orders::place_recharge(&app, user_id, key.as_deref(), amount, &request_id).await?;
    Ok((
        created(placed.created),
        Json(RechargeView {
            order: placed.order.into(),
            payment,
        }),
    ))
}

/// `GET /v1/orders/{out_trade_no}`.
pub async fn get_order(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    Path(no): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(orders::own_order(&app, user_id, &no).await?.into()))
}

/// `GET /v1/me/orders` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderList {
    orders: Vec<OrderView>,
}

/// `GET /v1/me/orders`: the newest 100.
pub async fn my_orders(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
) -> Result<Json<OrderList>, ApiError> {
    let list = db::orders::for_user(&**app.pool.get().await?, user_id, 100).await?;
    Ok(Json(OrderList {
        orders: list.into_iter().map(Into::into).collect(),
    }))
}

/// `POST /v1/orders/{out_trade_no}/wechat-pay`: exactly `wx.requestPayment`'s params.
pub async fn wechat_pay(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    _: Limited<limited::Prepay>,
    RequestId(request_id): RequestId,
    Path(no): Path<String>,
) -> Result<Json<PayParams>, ApiError> {
    let order = orders::own_order(&app, user_id, &no).await?;
    Ok(Json(orders::wechat_pay(&app, &order, &request_id).await?))
}

/// `POST /v1/orders/{out_trade_no}/balance-pay`: pays the order from the caller's wallet.
/// The fold decides, in stream order, so two payments racing for one balance cannot both
/// succeed; the answer is its verdict: 200 with the paid order, or 409
/// `insufficient_balance` (nothing moved), `order_paid` or `order_closed`. Paying again an
/// order this wallet paid is 200.
pub async fn balance_pay(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    _: Limited<limited::BalancePay>,
    RequestId(request_id): RequestId,
    Path(no): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let paid = commands::wallet_pay(&app, user_id, &no, &request_id).await?;
    Ok(Json(paid.into()))
}

/// One posting of the wallet, as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LedgerEntry)]
pub struct EntryView {
    seq: i64,
    group_id: String,
    /// Fen: a credit is positive, a debit negative.
    amount: i64,
    #[schema(schema_with = super::openapi::enums::entry_kind)]
    kind: String,
    out_trade_no: String,
    #[schema(required)]
    transaction_id: Option<String>,
    occurred_at: DateTime<Utc>,
}

impl From<LedgerEntry> for EntryView {
    fn from(e: LedgerEntry) -> Self {
        Self {
            seq: e.seq,
            group_id: e.group_id,
            amount: e.amount,
            kind: e.kind.as_str().to_owned(),
            out_trade_no: e.out_trade_no,
            transaction_id: e.transaction_id,
            occurred_at: e.occurred_at,
        }
    }
}

/// `GET /v1/me/ledger` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Ledger)]
pub struct LedgerView {
    /// Fen.
    #[schema(minimum = 0)]
    balance: i64,
    #[schema(schema_with = super::openapi::enums::currency)]
    currency: &'static str,
    entries: Vec<EntryView>,
}

/// `GET /v1/me/ledger`: the wallet's balance and its newest 100 postings.
pub async fn my_ledger(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
) -> Result<Json<LedgerView>, ApiError> {
    let client = app.pool.get().await?;
    let account = wallet_account(user_id);
    let balance = db::orders::balance(&**client, &account).await?;
    let entries = db::orders::ledger_for_account(&**client, &account, 100).await?;
    Ok(Json(LedgerView {
        balance,
        currency: "CNY",
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}
