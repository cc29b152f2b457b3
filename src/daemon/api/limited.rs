//! The limits at the HTTP edge: `Limited<A>` counts a request against action `A`'s rate
//! limits before its handler calls WeChat or appends (429 `rate_limited` with
//! `Retry-After` when over), and the deadline layers bound body reading and handling.

use super::ErrorCode;
use std::{marker::PhantomData, net::SocketAddr, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ApiError, AppState};
use crate::daemon::limits::{Action, DeadlineBody, Expired, Principal, RateLimited as Refused};

/// An action with its own rate limits.
pub trait LimitedAction {
    /// Which.
    const ACTION: Action;
}

macro_rules! actions {
    ($($name:ident => $action:ident, $doc:literal;)*) => {$(
        #[doc = $doc]
        pub struct $name;
        impl LimitedAction for $name {
            const ACTION: Action = Action::$action;
        }
    )*};
}

actions! {
    Login => Login, "Login: limited per client address.";
    Phone => Phone, "Phone binding: per address and per user.";
    Prepay => Prepay, "WeChat Pay prepay: per address and per user.";
    Recharge => Recharge, "Recharges: per address and per user.";
    BalancePay => BalancePay, "Balance payments: per address and per user.";
    Refund => Refund, "Admin refunds: per address and for the admin credential.";
    Webhook => Webhook, "WeChat Pay notifies: per address, generously.";
}

/// A request within `A`'s rate limits. An action limited per user must be extracted
/// after the extractor that authenticates (`AuthUser` or `Admin`), which records the
/// [`Principal`].
pub struct Limited<A>(PhantomData<A>);

impl<A: LimitedAction + Send> FromRequestParts<AppState> for Limited<A> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let rates = &app.limits.rates;
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| rates.client_ip(peer.ip(), &parts.headers));
        let principal = parts.extensions.get::<Principal>().copied();
        if principal.is_none() && rates.is_per_principal(A::ACTION) {
            return Err(ApiError::internal(format!(
                "{:?} is limited per user but was checked before authentication",
                A::ACTION
            ))
            .into_response());
        }
        rates
            .check(A::ACTION, client, principal)
            .map_err(rate_limited)?;
        Ok(Limited(PhantomData))
    }
}

/// 429 `rate_limited` with `Retry-After`.
fn rate_limited(refused: Refused) -> Response {
    let secs = refused.retry_after_secs();
    let mut response = ApiError::from_code(
        ErrorCode::RateLimited,
        format!("too many requests; retry in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Refuses a body whose `Content-Length` is over `http.max_body_bytes` with 413
/// `body_too_large` before reading it. A body without a length is cut at the limit by
/// `RequestBodyLimitLayer`, and [`super::ApiJson`] answers the same.
pub async fn refuse_oversized_bodies(
    State(max_body_bytes): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > max_body_bytes as u64) {
        return ApiError::from_code(
            ErrorCode::BodyTooLarge,
            format!("the body is over {max_body_bytes} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Bounds an API request: its body must arrive within `limits.body_read_timeout_ms`
/// and its answer within `limits.request_timeout_ms`.
pub async fn api_deadlines(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &app.limits;
    deadlines(limits.body_read_timeout, limits.request_timeout, req, next).await
}

/// Bounds a WeChat Pay notify within `limits.webhook_timeout_ms`, body included.
pub async fn webhook_deadlines(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &app.limits;
    let body = limits.body_read_timeout.min(limits.webhook_timeout);
    deadlines(body, limits.webhook_timeout, req, next).await
}

async fn deadlines(body: Duration, whole: Duration, req: Request, next: Next) -> Response {
    let expired = Expired::default();
    let deadline = tokio::time::Instant::now() + body;
    let req = req.map(|b| Body::new(DeadlineBody::new(b, deadline, expired.clone())));
    let (code, message) = match tokio::time::timeout(whole, next.run(req)).await {
        Ok(_) if expired.is_set() => (
            ErrorCode::BodyTimeout,
            "the request body did not arrive in time; nothing was recorded",
        ),
        Ok(response) => return response,
        Err(_) => {
            tracing::warn!(after_ms = whole.as_millis() as u64, "request timed out");
            (
                ErrorCode::Timeout,
                "the request took too long; it may have been recorded: retrying with the \
                 same Idempotency-Key is safe",
            )
        }
    };
    let mut response = ApiError::from_code(code, message).into_response();
    // The client may still be sending: the connection cannot be reused.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
