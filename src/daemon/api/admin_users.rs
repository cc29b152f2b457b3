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
use crate::store::{
    db::users,
    privacy::{erase_user, EraseError},
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
    let started = std::time::Instant::now();
    let erasure = erase_user(&app.pool, &app.log, user_id, &request_id, (app.clock)())
        .await
        .map_err(|e| match e {
            EraseError::UnknownUser(_) => not_found(),
            EraseError::Db(e) => e.into(),
            EraseError::Log(e) => e.into(),
        })?;
    if let Some(appended) = erasure.appended {
        app.metrics.appended(
            "user.erased",
            appended.duplicate,
            started.elapsed().as_secs_f64(),
        );
        app.projection
            .wait_for(appended.seq, app.read_your_writes)
            .await?;
    }
    let client = app.pool.get().await?;
    let user = users::get(&**client, user_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(ErasureView {
        seq: erasure.appended.map(|a| a.seq),
        key_already_destroyed: erasure.key_already_destroyed,
        user: user_view(&app, &**client, user).await?,
    }))
}
