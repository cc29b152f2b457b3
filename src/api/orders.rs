//! Orders and recharges: placing them, their WeChat Pay prepay (`wx.requestPayment`
//! params), reading them back, and the wallet's ledger.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    limited::{self, Limited},
    ApiError, ApiJson, AppState, AuthUser, IdempotencyKey, RequestId,
};
use crate::{
    db::{orders, users},
    domain::{Description, Fen, OutTradeNo},
    events::{BalancePayRequested, Event, OrderKind, OrderPlaced, PrepayIssued},
    fold::{wallet_account, LedgerEntry, Order, OrderState, PaidWith},
    wechat::pay::{PayParams, Prepay},
};

/// An order as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Order)]
pub struct OrderView {
    out_trade_no: String,
    #[schema(schema_with = super::openapi::order_kind)]
    kind: &'static str,
    #[schema(schema_with = super::openapi::order_state)]
    state: &'static str,
    /// Fen.
    #[schema(minimum = 1)]
    amount: i64,
    #[schema(schema_with = super::openapi::currency)]
    currency: String,
    description: String,
    #[schema(required)]
    transaction_id: Option<String>,
    #[schema(schema_with = super::openapi::paid_with, required)]
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
    let (status, order) = place(
        &app,
        user_id,
        &request_id,
        key.as_deref(),
        OrderKind::Order,
        amount,
        description,
    )
    .await?;
    Ok((status, Json(order.into())))
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
    let description = Description::parse("钱包充值 wallet recharge").expect("a valid constant");
    let (status, order) = place(
        &app,
        user_id,
        &request_id,
        key.as_deref(),
        OrderKind::Recharge,
        amount,
        description,
    )
    .await?;
    let payment = prepay(&app, &request_id, &order).await?;
    // Read back so the answer shows the order with its prepay.
    let order = orders::get(&**app.pool.get().await?, &order.out_trade_no)
        .await?
        .unwrap_or(order);
    Ok((
        status,
        Json(RechargeView {
            order: order.into(),
            payment,
        }),
    ))
}

async fn place(
    app: &AppState,
    user_id: Uuid,
    request_id: &str,
    key: Option<&str>,
    kind: OrderKind,
    amount: Fen,
    description: Description,
) -> Result<(StatusCode, Order), ApiError> {
    let out_trade_no = OutTradeNo::issue(user_id, kind.as_str(), key);
    let client = app.pool.get().await?;
    if let Some(existing) = orders::get(&**client, out_trade_no.as_str()).await? {
        return if existing.amount == amount.get() {
            Ok((StatusCode::OK, existing))
        } else {
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ))
        };
    }
    let user = users::get(&**client, user_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown_user", "log in again"))?;
    drop(client);
    let now = (app.clock)();
    let event = Event::OrderPlaced(OrderPlaced {
        out_trade_no: out_trade_no.as_str().to_owned(),
        user_id,
        openid: user.openid,
        kind,
        amount: amount.get(),
        currency: "CNY".into(),
        description: description.into_inner(),
        appid: app.pay.appid().to_owned(),
        mchid: app.pay.mchid().to_owned(),
        expires_at: now + app.order_ttl,
    });
    let appended = app.record(&event, request_id, &event.msg_id(None)).await?;
    app.projection
        .wait_for(appended.seq, app.read_your_writes)
        .await?;
    let order = orders::get(&**app.pool.get().await?, out_trade_no.as_str())
        .await?
        .ok_or_else(|| ApiError::internal("a placed order is missing after its event applied"))?;
    if order.user_id != user_id || order.amount != amount.get() {
        // Another request took this number first (same key, other body).
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ));
    }
    let status = if appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, order))
}

/// The caller's order, or 404 (also for another user's order: no probing).
async fn own_order(app: &AppState, user_id: Uuid, no: &str) -> Result<Order, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "order_not_found", "no such order");
    let no = OutTradeNo::parse(no).map_err(|_| not_found())?;
    orders::get(&**app.pool.get().await?, no.as_str())
        .await?
        .filter(|o| o.user_id == user_id)
        .ok_or_else(not_found)
}

/// `GET /v1/orders/{out_trade_no}`.
pub async fn get_order(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    Path(no): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(own_order(&app, user_id, &no).await?.into()))
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
    let list = orders::for_user(&**app.pool.get().await?, user_id, 100).await?;
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
    let order = own_order(&app, user_id, &no).await?;
    Ok(Json(prepay(&app, &request_id, &order).await?))
}

/// Gets WeChat's prepay id for a payable order, records it, and signs the params.
async fn prepay(app: &AppState, request_id: &str, order: &Order) -> Result<PayParams, ApiError> {
    payable(app, order)?;
    let prepay_id = app
        .jsapi_prepay(&Prepay {
            out_trade_no: &order.out_trade_no,
            description: &order.description,
            amount: order.amount,
            openid: &order.openid,
            time_expire: order.expires_at,
        })
        .await?;
    if order.prepay_id.as_deref() != Some(prepay_id.as_str()) {
        let event = Event::PrepayIssued(PrepayIssued {
            out_trade_no: order.out_trade_no.clone(),
            prepay_id: prepay_id.clone(),
        });
        let appended = app.record(&event, request_id, &event.msg_id(None)).await?;
        // The params do not depend on the fold; waiting keeps a following GET consistent.
        let _ = app
            .projection
            .wait_for(appended.seq, app.read_your_writes)
            .await;
    }
    Ok(app.pay_params(&prepay_id))
}

/// An order can still be paid: not paid, not closed, not expired.
fn payable(app: &AppState, order: &Order) -> Result<(), ApiError> {
    if order.state.is_paid() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_paid",
            "the order is already paid",
        ));
    }
    if order.state == OrderState::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_closed",
            "the order is closed",
        ));
    }
    if order.expires_at <= (app.clock)() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_expired",
            "the order expired; place a new one",
        ));
    }
    Ok(())
}

/// `POST /v1/orders/{out_trade_no}/balance-pay`: pays the order from the caller's wallet.
/// The fold decides, in stream order, so two payments racing for one balance cannot both
/// succeed; the answer waits for that decision: 200 with the paid order, or 409
/// `insufficient_balance` (nothing moved). Paying again an order this wallet paid is 200.
pub async fn balance_pay(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    _: Limited<limited::BalancePay>,
    RequestId(request_id): RequestId,
    Path(no): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order = own_order(&app, user_id, &no).await?;
    if order.state.is_paid() && order.paid_with == Some(PaidWith::Wallet) {
        return Ok(Json(order.into()));
    }
    if order.kind != OrderKind::Order {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_payable_from_wallet",
            "a recharge cannot be paid from the wallet",
        ));
    }
    payable(&app, &order)?;
    let client = app.pool.get().await?;
    let balance = orders::balance(&**client, &wallet_account(user_id)).await?;
    drop(client);
    if balance < order.amount {
        return Err(insufficient(balance, order.amount));
    }
    let event = Event::BalancePayRequested(BalancePayRequested {
        out_trade_no: order.out_trade_no.clone(),
        user_id,
        amount: order.amount,
    });
    // One request per HTTP request: a retry is a new decision, which finds the order paid.
    let msg_id = event.msg_id(Some(&request_id));
    let appended = app.record(&event, &request_id, &msg_id).await?;
    app.projection
        .wait_for(appended.seq, app.read_your_writes)
        .await?;
    let client = app.pool.get().await?;
    let after = orders::get(&**client, &order.out_trade_no)
        .await?
        .ok_or_else(|| ApiError::internal("an order disappeared"))?;
    if after.state.is_paid() && after.paid_with == Some(PaidWith::Wallet) {
        drop(client);
        if after.prepay_id.is_some() {
            close_prepay(&app, &after.out_trade_no, &request_id).await;
        }
        return Ok(Json(after.into()));
    }
    if after.state.is_paid() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_paid",
            "the order was paid through WeChat Pay meanwhile",
        ));
    }
    if after.state == OrderState::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_closed",
            "the order is closed",
        ));
    }
    let balance = orders::balance(&**client, &wallet_account(user_id)).await?;
    Err(insufficient(balance, order.amount))
}

/// After a wallet payment, closes the order's WeChat prepay so that it cannot be paid a
/// second time. If WeChat says it was paid already, its signed answer is recorded: the
/// fold books that money as a double payment, for a human to refund.
async fn close_prepay(app: &AppState, out_trade_no: &str, request_id: &str) {
    match app.close_order(out_trade_no).await {
        Ok(()) => {}
        Err(e) if e.code() == Some("ORDERPAID") => {
            let recorded = crate::reconcile::query_payment(
                app,
                out_trade_no,
                crate::events::QueryReason::Sync,
                request_id,
            )
            .await;
            if let Err(e) = recorded {
                tracing::warn!(out_trade_no, error = %e.code(), "paid twice; the sweep will record it");
            }
        }
        Err(e) => {
            tracing::warn!(out_trade_no, error = %e, "could not close the prepay of a wallet-paid order")
        }
    }
}

fn insufficient(balance: i64, needed: i64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "insufficient_balance",
        format!("the wallet holds {balance} fen; the order needs {needed}"),
    )
}

/// One posting of the wallet, as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LedgerEntry)]
pub struct EntryView {
    seq: i64,
    group_id: String,
    /// Fen: a credit is positive, a debit negative.
    amount: i64,
    #[schema(schema_with = super::openapi::entry_kind)]
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
    #[schema(schema_with = super::openapi::currency)]
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
    let balance = orders::balance(&**client, &account).await?;
    let entries = orders::ledger_for_account(&**client, &account, 100).await?;
    Ok(Json(LedgerView {
        balance,
        currency: "CNY",
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}
