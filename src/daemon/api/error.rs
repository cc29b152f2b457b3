//! One error type for every handler: a status, a stable code and a message, rendered as
//! `{"error":{"code","message"}}`. Business rejections are 4xx; infrastructure is 503.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use super::codes::ErrorCode;
use crate::{
    daemon::{auth::TokenError, telemetry::warn_expected},
    store::{db::DbError, projector::NotYetApplied, stream::LogError},
    wechat::WechatError,
};

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// Marks a response as the internal error, so the request-id layer can name the request.
#[derive(Clone, Copy)]
pub struct InternalErrorMarker;

impl ApiError {
    /// An error with a status, a stable code and a message for humans; every caller
    /// goes through [`Self::from_code`], so each code is in the table with its status.
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// An error from the table of codes, answered with the code's status.
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code.status(), code.as_str(), message)
    }

    /// 400 with code `invalid_field`, naming the field.
    pub fn invalid_field(field: &str, problem: &str) -> Self {
        Self::from_code(ErrorCode::InvalidField, format!("{field}: {problem}"))
    }

    /// 503 `unavailable`: a dependency is down; nothing was recorded; retry.
    pub fn unavailable(what: &str) -> Self {
        Self::from_code(
            ErrorCode::Unavailable,
            format!("{what} is unavailable; nothing was recorded; retry later"),
        )
    }

    /// 500: a bug. Logged at ERROR; the body names only the request id.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::from_code(ErrorCode::Internal, "internal error")
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            response.extensions_mut().insert(InternalErrorMarker);
        }
        response
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        warn_expected!("event_log", error = %e, "event log append failed");
        match e {
            LogError::NotAcknowledged(_) => Self::from_code(
                ErrorCode::Unavailable,
                "the event log did not confirm the write; retrying with the same \
                 Idempotency-Key is safe",
            ),
            _ => ApiError::unavailable("the event log"),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Query(q) => q.into(),
            DbError::Pool(p) => {
                warn_expected!("postgres", error = %p, "postgres unavailable");
                ApiError::unavailable("the database")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Pool(e).into()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        // A SQL state means the server answered: that is our bug. No state means the
        // connection failed: infrastructure.
        if e.code().is_some() {
            ApiError::internal(e)
        } else {
            warn_expected!("postgres", error = %e, "postgres connection failed");
            ApiError::unavailable("the database")
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => Self::from_code(
                ErrorCode::TokenExpired,
                "the token has expired; log in again",
            ),
            TokenError::Invalid => Self::from_code(ErrorCode::InvalidToken, "the token is invalid"),
        }
    }
}

impl From<NotYetApplied> for ApiError {
    fn from(e: NotYetApplied) -> Self {
        Self::from_code(
            ErrorCode::NotYetApplied,
            format!("{e}; it was recorded and will apply: read it back later"),
        )
    }
}

impl From<WechatError> for ApiError {
    fn from(e: WechatError) -> Self {
        match e {
            WechatError::InvalidCode { .. } => Self::from_code(
                ErrorCode::InvalidCode,
                "the login code is invalid, expired or already used",
            ),
            WechatError::RateLimited => Self::from_code(
                ErrorCode::RateLimited,
                "WeChat rate-limited this user; retry later",
            ),
            WechatError::RiskyUser => {
                Self::from_code(ErrorCode::RiskyUser, "WeChat refused this user as risky")
            }
            WechatError::Busy => {
                Self::from_code(ErrorCode::WechatBusy, "WeChat is busy; retry later")
            }
            WechatError::Unavailable(why) => {
                warn_expected!("wechat", error = %why, "WeChat unreachable");
                Self::from_code(
                    ErrorCode::WechatUnavailable,
                    "WeChat could not be reached; retry later",
                )
            }
            WechatError::Api { errcode, errmsg } => {
                tracing::warn!(errcode, errmsg, "WeChat error");
                Self::from_code(
                    ErrorCode::WechatError,
                    format!("WeChat answered errcode {errcode}"),
                )
            }
        }
    }
}

impl From<crate::wechat::PayError> for ApiError {
    fn from(e: crate::wechat::PayError) -> Self {
        use crate::wechat::PayError;
        match e {
            PayError::Api { code, message, .. } => match code.as_str() {
                "ORDERPAID" => Self::from_code(
                    ErrorCode::OrderPaid,
                    "WeChat Pay says the order is already paid",
                ),
                "ORDER_CLOSED" => Self::from_code(
                    ErrorCode::OrderClosed,
                    "WeChat Pay says the order is closed",
                ),
                _ => {
                    tracing::warn!(code, message, "WeChat Pay refused a request");
                    Self::from_code(
                        ErrorCode::WechatPayError,
                        format!("WeChat Pay answered {code}: {message}"),
                    )
                }
            },
            PayError::Unavailable(why) => {
                warn_expected!("wechat_pay", error = %why, "WeChat Pay unreachable");
                Self::from_code(
                    ErrorCode::WechatPayUnavailable,
                    "WeChat Pay could not be reached; retry later",
                )
            }
            PayError::Unverified(why) => {
                tracing::warn!(error = %why, "WeChat Pay answer failed verification");
                Self::from_code(
                    ErrorCode::WechatPayUnverified,
                    "WeChat Pay's answer did not verify; nothing was recorded",
                )
            }
            PayError::Malformed(why) => {
                tracing::warn!(error = %why, "WeChat Pay answer unreadable");
                Self::from_code(
                    ErrorCode::WechatPayError,
                    "WeChat Pay's answer could not be read",
                )
            }
        }
    }
}
