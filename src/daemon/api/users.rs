//! Login, phone binding, profile and `GET /v1/me`.

use axum::{extract::State, Json};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    limited::{self, Limited},
    user_view::{user_view, view_of, UserView},
    ApiError, ApiJson, AppState, AuthUser, IdempotencyKey, RequestId,
};
use crate::{
    core::domain::{AvatarUrl, Nickname, WxCode},
    daemon::commands::{
        users::{self, LoggedIn, PhoneProof},
        CommandError,
    },
    store::{db, privacy::keys},
};

/// `POST /v1/auth/login` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// From `wx.login`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_-]{1,128}$")]
    code: String,
}

/// `POST /v1/auth/login` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// The bearer token.
    token: String,
    /// Seconds until the token expires.
    expires_in: i64,
    user_id: Uuid,
    /// Whether a phone number is bound.
    has_phone: bool,
}

/// Exchanges a `wx.login` code for a bearer token; registers the user on first login.
pub async fn login(
    _: Limited<limited::Login>,
    State(app): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let code = WxCode::parse(&body.code).map_err(|p| ApiError::invalid_field("code", p))?;
    let LoggedIn { user_id, has_phone } = users::login(&app, &code, &request_id).await?;
    let (token, expires_in) = app.tokens.issue(user_id, (app.clock)());
    Ok(Json(LoginResponse {
        token,
        expires_in,
        user_id,
        has_phone,
    }))
}

/// `POST /v1/me/phone` body: `{code}` or `{encrypted_data, iv}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneRequest {
    code: Option<String>,
    encrypted_data: Option<String>,
    iv: Option<String>,
}

/// Binds the phone number WeChat vouches for; 409 when another user holds it.
pub async fn bind_phone(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    _: Limited<limited::Phone>,
    RequestId(request_id): RequestId,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    ApiJson(body): ApiJson<PhoneRequest>,
) -> Result<Json<UserView>, ApiError> {
    let proof = match (body.code, body.encrypted_data, body.iv) {
        (Some(code), None, None) => {
            PhoneProof::Code(WxCode::parse(&code).map_err(|p| ApiError::invalid_field("code", p))?)
        }
        (None, Some(data), Some(iv)) => PhoneProof::EncryptedData { data, iv },
        _ => {
            return Err(ApiError::invalid_field(
                "body",
                "send either {code} or {encrypted_data, iv}",
            ))
        }
    };
    let user = users::bind_phone(
        &app,
        user_id,
        proof,
        idempotency_key.as_deref(),
        &request_id,
    )
    .await?;
    Ok(Json(user_view(&app, &**app.pool.get().await?, user).await?))
}

/// `PUT /v1/me/profile` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// 1 to 64 characters after trimming; no control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    nickname: String,
    /// An `http(s)://` URL of at most 1024 bytes, without whitespace.
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^https?://[^\s\x00-\x1F\x7F-\x9F]+$")]
    avatar_url: Option<String>,
}

/// Sets the user's nickname and avatar.
pub async fn update_profile(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
    RequestId(request_id): RequestId,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    ApiJson(body): ApiJson<ProfileRequest>,
) -> Result<Json<UserView>, ApiError> {
    let nickname =
        Nickname::parse(&body.nickname).map_err(|p| ApiError::invalid_field("nickname", p))?;
    let avatar_url = body
        .avatar_url
        .as_deref()
        .map(AvatarUrl::parse)
        .transpose()
        .map_err(|p| ApiError::invalid_field("avatar_url", p))?;
    let user = users::update_profile(
        &app,
        user_id,
        nickname,
        avatar_url,
        idempotency_key.as_deref(),
        &request_id,
    )
    .await?;
    Ok(Json(user_view(&app, &**app.pool.get().await?, user).await?))
}

/// The caller's user.
pub async fn me(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
) -> Result<Json<UserView>, ApiError> {
    let client = app.pool.get().await?;
    let wallet = crate::core::fold::wallet_account(user_id);
    // The three reads in one round trip (one connection pipelines what is polled at once).
    let (user, balance, key) = futures::try_join!(
        async { Ok::<_, ApiError>(db::users::get(&**client, user_id).await?) },
        async { Ok(db::orders::balance(&**client, &wallet).await?) },
        async { Ok(keys::load(&**client, &app.vault, user_id).await?) },
    )?;
    let user = user.ok_or(CommandError::UserNotFound)?;
    let mut view = view_of(user, key);
    view.balance = Some(balance);
    Ok(Json(view))
}
