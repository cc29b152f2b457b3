//! Request extractors that turn edge input into types or a stable error: JSON bodies,
//! query strings, the bearer token's user, the request id and the `Idempotency-Key`.

use super::ErrorCode;
use axum::{
    extract::{rejection::JsonRejection, FromRef, FromRequest, FromRequestParts, Query, Request},
    http::{request::Parts, StatusCode},
    Json,
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::ApiError;
use crate::daemon::{auth::Tokens, limits::Principal};

/// A JSON body whose rejections are [`ApiError`]s with stable codes.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => {
                    ApiError::from_code(ErrorCode::InvalidField, e.body_text())
                }
                JsonRejection::MissingJsonContentType(_) => ApiError::from_code(
                    ErrorCode::UnsupportedMediaType,
                    "send the body as application/json",
                ),
                r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::from_code(ErrorCode::BodyTooLarge, "the body is too large")
                }
                r => ApiError::from_code(ErrorCode::MalformedJson, r.body_text()),
            }),
        }
    }
}

/// A query string whose rejection is 400 `invalid_query`, the message naming the problem.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::from_code(
                ErrorCode::InvalidQuery,
                rejection.body_text(),
            )),
        }
    }
}

/// The user a valid bearer token names.
pub struct AuthUser(pub Uuid);

impl<S> FromRequestParts<S> for AuthUser
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::from_code(
                    ErrorCode::MissingToken,
                    "send Authorization: Bearer <token> from /v1/auth/login",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::from_code(
                    ErrorCode::InvalidToken,
                    "the Authorization header is not a bearer token",
                )
            })?;
        let user = Tokens::from_ref(state).verify(token)?;
        // For the per-user rate limits (`Limited<_>`), which come after this extractor.
        parts.extensions.insert(Principal::User(user));
        Ok(AuthUser(user))
    }
}

/// The request id (`x-request-id`), set by the request-id layer.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned(),
        ))
    }
}

/// An optional `Idempotency-Key`: 1 to 128 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::from_code(
                    ErrorCode::InvalidIdempotencyKey,
                    "Idempotency-Key must be 1 to 128 visible ASCII characters",
                )
            })?;
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}
