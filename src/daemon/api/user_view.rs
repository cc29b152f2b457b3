//! The user as the API shows them: sealed personal data opened with the user's data key
//! at read time, or shown as erased once that key is destroyed.

use super::ErrorCode;
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::{
    core::fold::{BoundPhone, Phone, User},
    store::privacy::{keys, DataKey, KeyError, UserKey},
};

/// The user as the API shows them.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserView {
    user_id: Uuid,
    #[schema(required)]
    unionid: Option<String>,
    has_phone: bool,
    #[schema(required)]
    phone: Option<PhoneView>,
    #[schema(required)]
    nickname: Option<String>,
    #[schema(required)]
    avatar_url: Option<String>,
    registered_at: chrono::DateTime<chrono::Utc>,
    last_login_at: chrono::DateTime<chrono::Utc>,
    login_count: i64,
    /// The user was erased: their personal data is gone for good.
    erased: bool,
    /// The wallet balance in fen (on `GET /v1/me`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub balance: Option<i64>,
}

/// A phone, masked.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Phone)]
pub struct PhoneView {
    country_code: String,
    masked: String,
}

impl From<Phone> for PhoneView {
    fn from(p: Phone) -> Self {
        Self {
            masked: p.masked(),
            country_code: p.country_code,
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Erased => user_erased(),
            KeyError::Unopenable(_) => ApiError::internal(e),
            KeyError::Db(e) => e.into(),
        }
    }
}

/// 403 `user_erased`.
pub fn user_erased() -> ApiError {
    ApiError::from_code(
        ErrorCode::UserErased,
        "this user was erased at their request",
    )
}

/// Renders `user`, opening what is sealed with their data key.
pub async fn user_view(
    app: &AppState,
    client: &impl GenericClient,
    user: User,
) -> Result<UserView, ApiError> {
    let state = keys::load(client, &app.vault, user.user_id).await?;
    Ok(view_of(user, state))
}

/// Renders `user` under `state`, their data key as [`keys::load`] found it.
pub fn view_of(user: User, state: UserKey) -> UserView {
    let erased = user.erased_at.is_some() || matches!(state, UserKey::Erased);
    // (A sealed value under a missing key cannot be: shown as absent, and logged.)
    if erased {
        // The key is gone (perhaps before the projector applied `user.erased`): nothing
        // personal is shown, in clear or not.
        return UserView::from_erased(user);
    }
    let key = match state {
        UserKey::Live(key) => Some(*key),
        UserKey::Erased | UserKey::Missing => None,
    };
    let phone = match user.phone {
        Some(BoundPhone::Plain(p)) => Some(p),
        Some(BoundPhone::Sealed { phone, .. }) => {
            open(key.as_ref(), user.user_id, |k| k.open_phone(&phone))
        }
        None => None,
    };
    let (nickname, avatar_url) = match &user.profile_sealed {
        Some(sealed) => open(key.as_ref(), user.user_id, |k| k.open_profile(sealed))
            .map_or((None, None), |p| (Some(p.nickname), p.avatar_url)),
        None => (user.nickname, user.avatar_url),
    };
    let unionid = match &user.unionid_sealed {
        Some(sealed) => open(key.as_ref(), user.user_id, |k| k.open_unionid(sealed)),
        None => user.unionid,
    };
    UserView {
        user_id: user.user_id,
        unionid,
        has_phone: phone.is_some(),
        phone: phone.map(PhoneView::from),
        nickname,
        avatar_url,
        registered_at: user.registered_at,
        last_login_at: user.last_login_at,
        login_count: user.login_count,
        erased: false,
        balance: None,
    }
}

impl UserView {
    fn from_erased(user: User) -> Self {
        Self {
            user_id: user.user_id,
            unionid: None,
            has_phone: false,
            phone: None,
            nickname: None,
            avatar_url: None,
            registered_at: user.registered_at,
            last_login_at: user.last_login_at,
            login_count: user.login_count,
            erased: true,
            balance: None,
        }
    }
}

/// Opens a sealed value; `None` once the key is destroyed. A value that does not open
/// under a live key is logged (never its content) and shown as absent.
fn open<T, E>(
    key: Option<&DataKey>,
    user_id: Uuid,
    f: impl FnOnce(&DataKey) -> Result<T, E>,
) -> Option<T> {
    let key = key?;
    match f(key) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::error!(%user_id, "sealed personal data does not open under the user's key");
            None
        }
    }
}
