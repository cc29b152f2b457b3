//! Users: logging in (registering on first login), binding the phone number WeChat
//! vouches for, setting the profile. Personal fields travel sealed under the user's data
//! key.

use secrecy::ExposeSecret;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{CommandError, Ctx};
use crate::{
    core::{
        crypto::decrypt_open_data,
        domain::{valid_phone, AvatarUrl, Nickname, WxCode},
        events::{
            Event, LoggedInSealed, PhoneSealed, PhoneSource, ProfileSealed, RegisteredSealed,
        },
        fold::{bidx_owner_key, Phone, Refusal, User, Verdict},
    },
    daemon::auth::user_id_for,
    store::{
        db::users,
        privacy::{keys, Profile, UserKey},
    },
    wechat::{PhoneInfo, WechatError},
};

/// A login that went through.
pub struct LoggedIn {
    /// The user (registered now, on a first login).
    pub user_id: Uuid,
    /// Whether the user had bound a phone before.
    pub has_phone: bool,
}

/// Exchanges a `wx.login` code for WeChat's session: records `user.registered` (first
/// login) or `user.logged_in`, and keeps the session key sealed for decrypting
/// `wx.getPhoneNumber` data later.
pub async fn login(ctx: &Ctx, code: &WxCode, request_id: &str) -> Result<LoggedIn, CommandError> {
    let session = ctx.wechat.code2session(code.as_str()).await?;
    let user_id = user_id_for(ctx.wechat.appid(), &session.openid);

    let (known, unionid) = {
        let client = ctx.pool.get().await?;
        let known = users::get(&**client, user_id).await?;
        if let Some(user) = &known {
            if is_erased(ctx, &**client, user).await? {
                return Err(CommandError::UserErased);
            }
        }
        // The unionid (a cross-app id) travels sealed, like every personal field.
        let unionid = match &session.unionid {
            Some(u) => Some(
                keys::for_writing(&**client, &ctx.vault, user_id, ctx.now())
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
    let appended = ctx.record(&event, request_id, &event.msg_id(None)).await?;

    let sealed = ctx.sealer.seal(
        user_id.as_bytes(),
        session.session_key.expose_secret().as_bytes(),
    );
    users::put_session_key(&**ctx.pool.get().await?, user_id, &sealed, ctx.now()).await?;

    // The answer does not depend on the fold; waiting only makes an immediate
    // GET /v1/me consistent, so a slow projector does not fail the login.
    let _ = ctx.wait_for(appended.seq).await;
    Ok(LoggedIn {
        user_id,
        has_phone: known.is_some_and(|u| u.phone.is_some()),
    })
}

/// Whether the user was erased, by the projection or by their destroyed key (which
/// comes first: `user.erased` is appended only after the key is gone).
async fn is_erased(
    ctx: &Ctx,
    client: &impl GenericClient,
    user: &User,
) -> Result<bool, CommandError> {
    Ok(user.erased_at.is_some()
        || matches!(
            keys::load(client, &ctx.vault, user.user_id).await?,
            UserKey::Erased
        ))
}

/// How the caller proves their phone number.
pub enum PhoneProof {
    /// A `getPhoneNumber` code, exchanged with WeChat.
    Code(WxCode),
    /// `wx.getPhoneNumber`'s `encrypted_data` and `iv`, opened with the session key.
    EncryptedData {
        /// Base64 ciphertext.
        data: String,
        /// Base64 IV.
        iv: String,
    },
}

/// Binds the phone number WeChat vouches for; `PhoneTaken` when another user holds it.
/// Returns the user after the binding applied.
pub async fn bind_phone(
    ctx: &Ctx,
    user_id: Uuid,
    proof: PhoneProof,
    idempotency_key: Option<&str>,
    request_id: &str,
) -> Result<User, CommandError> {
    let (info, source) = match proof {
        PhoneProof::Code(code) => {
            let info = ctx
                .wechat
                .phone_number(code.as_str())
                .await
                .map_err(|e| match e {
                    WechatError::InvalidCode { .. } => CommandError::InvalidPhoneCode,
                    other => other.into(),
                })?;
            (info, PhoneSource::PhoneCode)
        }
        PhoneProof::EncryptedData { data, iv } => (
            open_phone(ctx, user_id, &data, &iv).await?,
            PhoneSource::EncryptedData,
        ),
    };
    if info.watermark.appid != ctx.wechat.appid() {
        return Err(CommandError::WatermarkMismatch);
    }
    if !valid_phone(&info.country_code, &info.pure_phone_number) {
        return Err(CommandError::MalformedPhone);
    }
    let phone = Phone::new(&info.country_code, &info.pure_phone_number);
    let bidx = ctx.vault.blind_index(&phone);
    let owner_key = bidx_owner_key(&bidx);

    let client = ctx.pool.get().await?;
    // Under its blind index (bound by a v2 event) or in clear (by a v1 event).
    match users::phone_owner(&**client, &[owner_key.clone(), phone.key()]).await? {
        Some(owner) if owner != user_id => return Err(CommandError::PhoneTaken),
        Some(_) => {
            // Already this user's: nothing to record.
            return users::get(&**client, user_id)
                .await?
                .ok_or(CommandError::UserNotFound);
        }
        None => {}
    }
    let key = keys::for_writing(&**client, &ctx.vault, user_id, ctx.now()).await?;
    drop(client);

    let event = Event::PhoneSealed(PhoneSealed {
        user_id,
        phone: key.seal_phone(&phone),
        phone_bidx: bidx,
        source,
    });
    // Whether the number is ours is the fold's decision (another user may have bound it
    // a moment ago): record, and answer from its verdict.
    let appended = ctx
        .record(&event, request_id, &event.msg_id(idempotency_key))
        .await?;
    match ctx.wait_for_verdict(appended.seq).await? {
        Verdict::Applied(_) => {}
        Verdict::Refused(Refusal::PhoneTaken) => return Err(CommandError::PhoneTaken),
        Verdict::Refused(Refusal::UserErased) => return Err(CommandError::UserErased),
        Verdict::Refused(Refusal::UnknownUser) => return Err(CommandError::UserNotFound),
        Verdict::Refused(refusal) => {
            return Err(CommandError::internal(format!(
                "the fold refused a phone binding for a reason it has not: {refusal}"
            )))
        }
        Verdict::AlreadyApplied => {
            return Err(CommandError::internal(
                "a phone binding's event was applied before it was appended",
            ))
        }
    }
    let user = users::get(&**ctx.pool.get().await?, user_id)
        .await?
        .ok_or(CommandError::UserNotFound)?;
    // A duplicate's verdict is on the first request with this `Idempotency-Key`, which may
    // have bound another number: then this one is not bound.
    if appended.duplicate && user.phone.as_ref().map(|p| p.owner_key()) != Some(owner_key) {
        return Err(CommandError::PhoneTaken);
    }
    Ok(user)
}

/// Opens `wx.getPhoneNumber`'s encrypted data with the user's stored session key.
async fn open_phone(
    ctx: &Ctx,
    user_id: Uuid,
    data: &str,
    iv: &str,
) -> Result<PhoneInfo, CommandError> {
    let sealed = users::session_key(&**ctx.pool.get().await?, user_id)
        .await?
        .ok_or(CommandError::NoSession)?;
    let session_key = ctx
        .sealer
        .open(user_id.as_bytes(), &sealed)
        .map_err(|_| CommandError::SessionUnusable)?;
    let session_key = String::from_utf8(session_key).map_err(CommandError::internal)?;
    let plain = decrypt_open_data(&session_key, data, iv)
        .map_err(|_| CommandError::InvalidEncryptedData)?;
    serde_json::from_slice(&plain).map_err(|_| CommandError::InvalidEncryptedData)
}

/// Sets the user's nickname and avatar. Returns the user after the change applied.
pub async fn update_profile(
    ctx: &Ctx,
    user_id: Uuid,
    nickname: Nickname,
    avatar_url: Option<AvatarUrl>,
    idempotency_key: Option<&str>,
    request_id: &str,
) -> Result<User, CommandError> {
    let client = ctx.pool.get().await?;
    if users::get(&**client, user_id).await?.is_none() {
        return Err(CommandError::UserNotFound);
    }
    let key = keys::for_writing(&**client, &ctx.vault, user_id, ctx.now()).await?;
    drop(client);
    let profile = Profile {
        nickname: nickname.into_inner(),
        avatar_url: avatar_url.map(AvatarUrl::into_inner),
    };
    let event = Event::ProfileSealed(ProfileSealed {
        user_id,
        profile: key.seal_profile(&profile),
    });
    record_and_read_back(ctx, &event, user_id, request_id, idempotency_key).await
}

/// Appends a user's event (deduplicated by their `Idempotency-Key`, when given), waits
/// until the projector has applied it, and reads the user back.
async fn record_and_read_back(
    ctx: &Ctx,
    event: &Event,
    user_id: Uuid,
    request_id: &str,
    idempotency_key: Option<&str>,
) -> Result<User, CommandError> {
    let msg_id = event.msg_id(idempotency_key);
    ctx.record_and_wait(event, request_id, &msg_id).await?;
    users::get(&**ctx.pool.get().await?, user_id)
        .await?
        .ok_or(CommandError::UserNotFound)
}
