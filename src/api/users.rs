//! Login, phone binding, profile and `GET /v1/me`.

use axum::{extract::State, http::StatusCode, Json};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    limited::{self, Limited},
    user_view::{is_erased, user_erased, user_view, UserView},
    ApiError, ApiJson, AppState, AuthUser, IdempotencyKey, RequestId,
};
use crate::{
    auth::user_id_for,
    crypto::decrypt_open_data,
    db::users,
    domain::{valid_phone, AvatarUrl, Nickname, WxCode},
    events::{Event, LoggedInSealed, PhoneSealed, PhoneSource, ProfileSealed, RegisteredSealed},
    fold::{bidx_owner_key, Phone, User},
    privacy::{keys, Profile},
    wechat::{PhoneInfo, WechatError},
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
    let session = app.wechat.code2session(code.as_str()).await?;
    let user_id = user_id_for(app.wechat.appid(), &session.openid);

    let (known, unionid) = {
        let client = app.pool.get().await?;
        let known = users::get(&**client, user_id).await?;
        if let Some(user) = &known {
            if is_erased(&app, &**client, user).await? {
                return Err(user_erased());
            }
        }
        // The unionid (a cross-app id) travels sealed, like every personal field.
        let unionid = match &session.unionid {
            Some(u) => Some(
                keys::for_writing(&**client, &app.vault, user_id, (app.clock)())
                    .await?
                    .seal_unionid(u),
            ),
            None => None,
        };
        (known, unionid)
    };
    let event = match &known {
        None => Event::RegisteredSealed(RegisteredSealed {
            user_id,
            openid: session.openid.clone(),
            unionid,
        }),
        Some(_) => Event::LoggedInSealed(LoggedInSealed { user_id, unionid }),
    };
    let appended = app.record(&event, &request_id, &event.msg_id(None)).await?;

    let sealed = app.sealer.seal(
        user_id.as_bytes(),
        session.session_key.expose_secret().as_bytes(),
    );
    users::put_session_key(&**app.pool.get().await?, user_id, &sealed, (app.clock)()).await?;

    // The answer does not depend on the fold; waiting only makes an immediate
    // GET /v1/me consistent, so a slow projector does not fail the login.
    let _ = app
        .projection
        .wait_for(appended.seq, app.read_your_writes)
        .await;
    let has_phone = known.is_some_and(|u| u.phone.is_some());
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

fn bad_encrypted_data() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_encrypted_data",
        "encrypted_data and iv do not decrypt to a phone number under this session",
    )
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
    let (info, source) = match (body.code, body.encrypted_data, body.iv) {
        (Some(code), None, None) => {
            let code = WxCode::parse(&code).map_err(|p| ApiError::invalid_field("code", p))?;
            let info = app
                .wechat
                .phone_number(code.as_str())
                .await
                .map_err(|e| match e {
                    WechatError::InvalidCode { .. } => ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_phone_code",
                        "the phone code is invalid, expired or already used",
                    ),
                    other => other.into(),
                })?;
            (info, PhoneSource::PhoneCode)
        }
        (None, Some(data), Some(iv)) => {
            let sealed = users::session_key(&**app.pool.get().await?, user_id)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "session_expired",
                        "no WeChat session for this user; log in again",
                    )
                })?;
            let session_key = app.sealer.open(user_id.as_bytes(), &sealed).map_err(|_| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_expired",
                    "the WeChat session cannot be used; log in again",
                )
            })?;
            let session_key = String::from_utf8(session_key).map_err(ApiError::internal)?;
            let plain =
                decrypt_open_data(&session_key, &data, &iv).map_err(|_| bad_encrypted_data())?;
            let info: PhoneInfo =
                serde_json::from_slice(&plain).map_err(|_| bad_encrypted_data())?;
            (info, PhoneSource::EncryptedData)
        }
        _ => {
            return Err(ApiError::invalid_field(
                "body",
                "send either {code} or {encrypted_data, iv}",
            ))
        }
    };
    if info.watermark.appid != app.wechat.appid() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "watermark_mismatch",
            "the phone data was issued to another app",
        ));
    }
    if !valid_phone(&info.country_code, &info.pure_phone_number) {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "wechat_error",
            "WeChat returned a phone number in an unexpected form",
        ));
    }
    let phone = Phone::new(&info.country_code, &info.pure_phone_number);
    let bidx = app.vault.blind_index(&phone);
    let owner_key = bidx_owner_key(&bidx);

    let client = app.pool.get().await?;
    // Under its blind index (bound by a v2 event) or in clear (by a v1 event).
    match users::phone_owner(&**client, &[owner_key.clone(), phone.key()]).await? {
        Some(owner) if owner != user_id => return Err(phone_taken()),
        Some(_) => {
            // Already this user's: nothing to record.
            let user = users::get(&**client, user_id)
                .await?
                .ok_or_else(unknown_user)?;
            return Ok(Json(user_view(&app, &**client, user).await?));
        }
        None => {}
    }
    let key = keys::for_writing(&**client, &app.vault, user_id, (app.clock)()).await?;
    drop(client);

    let event = Event::PhoneSealed(PhoneSealed {
        user_id,
        phone: key.seal_phone(&phone),
        phone_bidx: bidx,
        source,
    });
    // Whether the number is ours is the fold's decision (another user may have bound it
    // a moment ago): record, wait for the fold, read back.
    let user = record_and_read_back(&app, &event, user_id, &request_id, idempotency_key).await?;
    if user.phone.as_ref().map(|p| p.owner_key()) != Some(owner_key) {
        return Err(phone_taken());
    }
    Ok(Json(user_view(&app, &**app.pool.get().await?, user).await?))
}

/// Appends a user's event (deduplicated by their `Idempotency-Key`, when given), waits
/// until the projector has applied it, and reads the user back.
async fn record_and_read_back(
    app: &AppState,
    event: &Event,
    user_id: Uuid,
    request_id: &str,
    idempotency_key: Option<String>,
) -> Result<User, ApiError> {
    let msg_id = event.msg_id(idempotency_key.as_deref());
    let appended = app.record(event, request_id, &msg_id).await?;
    app.projection
        .wait_for(appended.seq, app.read_your_writes)
        .await?;
    users::get(&**app.pool.get().await?, user_id)
        .await?
        .ok_or_else(unknown_user)
}

fn phone_taken() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "phone_taken",
        "this phone number is bound to another user",
    )
}

fn unknown_user() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "user_not_found",
        "no such user; log in again",
    )
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
    let client = app.pool.get().await?;
    if users::get(&**client, user_id).await?.is_none() {
        return Err(unknown_user());
    }
    let key = keys::for_writing(&**client, &app.vault, user_id, (app.clock)()).await?;
    drop(client);
    let profile = Profile {
        nickname: nickname.into_inner(),
        avatar_url: avatar_url.map(AvatarUrl::into_inner),
    };
    let event = Event::ProfileSealed(ProfileSealed {
        user_id,
        profile: key.seal_profile(&profile),
    });
    let user = record_and_read_back(&app, &event, user_id, &request_id, idempotency_key).await?;
    Ok(Json(user_view(&app, &**app.pool.get().await?, user).await?))
}

/// The caller's user.
pub async fn me(
    State(app): State<AppState>,
    AuthUser(user_id): AuthUser,
) -> Result<Json<UserView>, ApiError> {
    let client = app.pool.get().await?;
    let user = users::get(&**client, user_id)
        .await?
        .ok_or_else(unknown_user)?;
    let balance =
        crate::db::orders::balance(&**client, &crate::fold::wallet_account(user_id)).await?;
    let mut view = user_view(&app, &**client, user).await?;
    view.balance = Some(balance);
    Ok(Json(view))
}
