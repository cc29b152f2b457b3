//! Admin endpoints on users (bearer `auth.admin_token`): read a user as support sees them,
//! and erase a user (crypto-shredding, see [`crate::store::privacy::erase`]).

use super::ErrorCode;
use axum::{
    extract::{Path, State},
    Json,
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    admin::Admin,
    user_view::{user_view, UserView},
    ApiError, AppState, RequestId,
};
use crate::{
    daemon::commands::{erasure, CommandError},
    store::db::users,
};

fn parse_user_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid_field("user_id", "must be a UUID"))
}

fn not_found() -> ApiError {
    ApiError::from_code(ErrorCode::UserNotFound, "no such user")
}

/// `GET /v1/admin/users/{user_id}`: the user, phone masked, `erased` once erased.
pub async fn user(
    _: Admin,
    State(app): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let user_id = parse_user_id(&user_id)?;
    let client = app.pool.get().await?;
    let user = users::get(&**client, user_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(user_view(&app, &**client, user).await?))
}

/// `POST /v1/admin/users/{user_id}/erase` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Erasure)]
pub struct ErasureView {
    /// The `user.erased` event's sequence; `null` when the user was already erased.
    #[schema(required)]
    seq: Option<u64>,
    /// The data key had been destroyed before this request.
    key_already_destroyed: bool,
    /// The user after the erasure applied.
    user: UserView,
}

/// Erases a user: destroys their data key, then records `user.erased` and waits until
/// the projection applied it. Idempotent: a repeat answers 200 with `seq: null`.
pub async fn erase(
    _: Admin,
    State(app): State<AppState>,
    RequestId(request_id): RequestId,
    Path(user_id): Path<String>,
) -> Result<Json<ErasureView>, ApiError> {
    let user_id = parse_user_id(&user_id)?;
    let erased = erasure::erase(&app, user_id, &request_id)
        .await
        .map_err(|e| match e {
            // An admin is told plainly, not asked to log in again.
            CommandError::UserNotFound => not_found(),
            other => other.into(),
        })?;
    let client = app.pool.get().await?;
    Ok(Json(ErasureView {
        seq: erased.seq,
        key_already_destroyed: erased.key_already_destroyed,
        user: user_view(&app, &**client, erased.user).await?,
    }))
}
