//! The HTTP API: routes, shared state, and the layers every request passes through.

mod admin;
mod admin_users;
mod codes;
mod command_errors;
mod error;
mod extract;
mod health;
mod limited;
mod openapi;
mod operations;
mod orders;
pub mod server_timing;
mod user_view;
mod users;
mod webhook;
mod webhook_v2;

use std::sync::Arc;

use axum::{
    extract::{FromRef, Request},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use codes::ErrorCode;
pub use error::ApiError;
pub use extract::{ApiJson, ApiQuery, AuthUser, IdempotencyKey, RequestId};
pub use health::Readiness;

use crate::daemon::{auth::Tokens, commands::Ctx};

/// What every handler shares: the commands' context and the HTTP-only parts.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`]; derefs to the commands' [`Ctx`].
pub struct Shared {
    /// What the commands work with (log, pool, WeChat, clock...).
    pub commands: Ctx,
    /// Bearer tokens.
    pub tokens: Tokens,
    /// Set once migrations ran.
    pub migrated: bool,
    /// Largest notify body.
    pub max_notify_bytes: usize,
    /// The admin endpoints' bearer credential.
    pub admin_token: Option<secrecy::SecretString>,
    /// Deadlines and rate limits.
    pub limits: crate::daemon::limits::Limits,
    /// The readiness checks, shared briefly between requests.
    pub readiness: Readiness,
}

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::ops::Deref for Shared {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.commands
    }
}

impl FromRef<AppState> for Tokens {
    fn from_ref(state: &AppState) -> Tokens {
        state.tokens.clone()
    }
}

/// The API router with its layers.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = Router::new()
        .route("/v1/auth/login", post(users::login))
        .route("/v1/me", get(users::me))
        .route("/v1/me/phone", post(users::bind_phone))
        .route("/v1/me/profile", put(users::update_profile))
        .route("/v1/orders", post(orders::place_order))
        .route("/v1/orders/{out_trade_no}", get(orders::get_order))
        .route(
            "/v1/orders/{out_trade_no}/wechat-pay",
            post(orders::wechat_pay),
        )
        .route(
            "/v1/orders/{out_trade_no}/balance-pay",
            post(orders::balance_pay),
        )
        .route("/v1/me/orders", get(orders::my_orders))
        .route("/v1/me/ledger", get(orders::my_ledger))
        .route("/v1/recharges", post(orders::place_recharge))
        .route(
            "/v1/admin/orders/{out_trade_no}/sync",
            post(admin::sync_order),
        )
        .route(
            "/v1/admin/orders/{out_trade_no}/refunds",
            post(admin::refund_order).get(admin::order_refunds),
        )
        .route("/v1/admin/failures", get(admin::failures))
        .route("/v1/admin/users/{user_id}", get(admin_users::user))
        .route("/v1/admin/users/{user_id}/erase", post(admin_users::erase))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz_api))
        .route("/readyz/api", get(health::readyz_api))
        .route("/readyz/webhooks", get(health::readyz_webhooks))
        .route("/openapi.json", get(operations::openapi))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            max_body_bytes,
            limited::refuse_oversized_bodies,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limited::api_deadlines,
        ));
    // The webhook reads its body itself, with its own limit and WeChat's error shape.
    let webhooks = Router::new()
        .route("/webhooks/wechatpay", post(webhook::wechatpay))
        .route("/webhooks/wechatpay/v2", post(webhook_v2::wechatpay_v2))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limited::webhook_deadlines,
        ));
    api.merge(webhooks)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            operations::measure,
        ))
        .with_state(state)
        .layer(middleware::from_fn(server_timing::wechat_wait))
        .layer(middleware::from_fn(name_request_in_internal_errors))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            })
            .on_failure(crate::daemon::telemetry::on_server_error),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// `GET /metrics` alone: merged into the API router, or served on `metrics.listen`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(operations::metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::from_code(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::from_code(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// Rewrites an internal error's body to name the request, so support can find its logs.
async fn name_request_in_internal_errors(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let response = next.run(req).await;
    if response
        .extensions()
        .get::<error::InternalErrorMarker>()
        .is_some()
    {
        let body = serde_json::json!({"error": {
            "code": "internal",
            "message": format!("internal error (request {id})"),
        }});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    response
}
