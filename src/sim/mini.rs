//! The simulator's mini program side: single-use login and phone codes, session keys,
//! stable access tokens, phone numbers (by code and as legacy `encryptedData`), faults.

use std::collections::{HashMap, VecDeque};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    Json,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SimState;
use crate::core::crypto::{encrypt_open_data, random_alphanumeric};

struct LoginGrant {
    openid: String,
    unionid: Option<String>,
    used: bool,
}

struct PhoneGrant {
    country_code: String,
    pure_phone_number: String,
    watermark_appid: Option<String>,
    used: bool,
}

/// Counts of calls, for tests that check caching and retries.
#[derive(Default, Clone, Serialize)]
pub struct Stats {
    jscode2session: u64,
    stable_token: u64,
    token: u64,
    getuserphonenumber: u64,
}

/// Everything the simulator remembers.
#[derive(Default)]
pub struct World {
    login_codes: HashMap<String, LoginGrant>,
    phone_codes: HashMap<String, PhoneGrant>,
    session_keys: HashMap<String, [u8; 16]>,
    current_token: Option<String>,
    tokens: HashMap<String, i64>,
    faults: HashMap<String, VecDeque<i64>>,
    stats: Stats,
}

impl World {
    fn fault(&mut self, api: &str) -> Option<Json<Value>> {
        let errcode = self.faults.get_mut(api)?.pop_front()?;
        let errmsg = match errcode {
            -1 => "system error",
            45011 => "api minute-quota reach limit",
            40226 => "high risk user",
            _ => "simulated fault",
        };
        Some(Json(json!({"errcode": errcode, "errmsg": errmsg})))
    }
}

fn err(errcode: i64, errmsg: &str) -> Json<Value> {
    Json(json!({"errcode": errcode, "errmsg": errmsg}))
}

fn random_code() -> String {
    random_alphanumeric(32)
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Deserialize)]
pub struct Code2SessionQuery {
    appid: String,
    secret: String,
    js_code: String,
    grant_type: String,
}

/// `GET /sns/jscode2session`.
pub async fn jscode2session(
    State(sim): State<SimState>,
    Query(q): Query<Code2SessionQuery>,
) -> Json<Value> {
    let mut world = sim.world.lock().await;
    world.stats.jscode2session += 1;
    if let Some(fault) = world.fault("jscode2session") {
        return fault;
    }
    if q.appid != sim.settings.appid {
        return err(40013, "invalid appid");
    }
    if q.secret != sim.settings.app_secret {
        return err(40125, "invalid appsecret");
    }
    if q.grant_type != "authorization_code" {
        return err(40002, "invalid grant_type");
    }
    let Some(grant) = world.login_codes.get_mut(&q.js_code) else {
        return err(40029, "invalid code");
    };
    if grant.used {
        return err(40163, "code been used");
    }
    grant.used = true;
    let (openid, unionid) = (grant.openid.clone(), grant.unionid.clone());
    let mut key = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut key);
    world.session_keys.insert(openid.clone(), key);
    let mut answer = json!({"openid": openid, "session_key": B64.encode(key)});
    if let Some(unionid) = unionid {
        answer["unionid"] = unionid.into();
    }
    Json(answer)
}

#[derive(Deserialize)]
pub struct StableTokenBody {
    grant_type: String,
    appid: String,
    secret: String,
    #[serde(default)]
    force_refresh: bool,
}

fn issue_token(sim: &SimState, world: &mut World, force: bool) -> Json<Value> {
    let now = now_unix();
    if !force {
        if let Some(token) = &world.current_token {
            if let Some(expires) = world.tokens.get(token).filter(|e| **e > now) {
                return Json(json!({"access_token": token, "expires_in": expires - now}));
            }
        }
    }
    let token = format!("SIMTOKEN_{}", random_code());
    let ttl = sim.settings.access_token_ttl_secs;
    world.tokens.insert(token.clone(), now + ttl);
    world.current_token = Some(token.clone());
    Json(json!({"access_token": token, "expires_in": ttl}))
}

/// `POST /cgi-bin/stable_token`: the same token until it expires or is forced.
pub async fn stable_token(
    State(sim): State<SimState>,
    Json(body): Json<StableTokenBody>,
) -> Json<Value> {
    let mut world = sim.world.lock().await;
    world.stats.stable_token += 1;
    if let Some(fault) = world.fault("stable_token") {
        return fault;
    }
    if body.grant_type != "client_credential" {
        return err(40002, "invalid grant_type");
    }
    if body.appid != sim.settings.appid {
        return err(40013, "invalid appid");
    }
    if body.secret != sim.settings.app_secret {
        return err(40125, "invalid appsecret");
    }
    issue_token(&sim, &mut world, body.force_refresh)
}

#[derive(Deserialize)]
pub struct TokenQuery {
    grant_type: String,
    appid: String,
    secret: String,
}

/// `GET /cgi-bin/token`: a new token on every call.
pub async fn token(State(sim): State<SimState>, Query(q): Query<TokenQuery>) -> Json<Value> {
    let mut world = sim.world.lock().await;
    world.stats.token += 1;
    if q.grant_type != "client_credential" {
        return err(40002, "invalid grant_type");
    }
    if q.appid != sim.settings.appid {
        return err(40013, "invalid appid");
    }
    if q.secret != sim.settings.app_secret {
        return err(40125, "invalid appsecret");
    }
    issue_token(&sim, &mut world, true)
}

#[derive(Deserialize)]
pub struct AccessTokenQuery {
    #[serde(default)]
    access_token: String,
}

#[derive(Deserialize)]
pub struct PhoneCodeBody {
    code: String,
}

fn phone_info(country_code: &str, pure: &str, appid: &str) -> Value {
    let phone_number = if country_code == "86" {
        pure.to_owned()
    } else {
        format!("+{country_code}{pure}")
    };
    json!({
        "phoneNumber": phone_number,
        "purePhoneNumber": pure,
        "countryCode": country_code,
        "watermark": {"timestamp": now_unix(), "appid": appid},
    })
}

/// `POST /wxa/business/getuserphonenumber?access_token=...`.
pub async fn getuserphonenumber(
    State(sim): State<SimState>,
    Query(q): Query<AccessTokenQuery>,
    Json(body): Json<PhoneCodeBody>,
) -> Json<Value> {
    let mut world = sim.world.lock().await;
    world.stats.getuserphonenumber += 1;
    if let Some(fault) = world.fault("getuserphonenumber") {
        return fault;
    }
    match world.tokens.get(&q.access_token) {
        None => {
            return err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )
        }
        Some(expires) if *expires <= now_unix() => return err(42001, "access_token expired"),
        Some(_) => {}
    }
    let Some(grant) = world.phone_codes.get_mut(&body.code) else {
        return err(40029, "invalid code");
    };
    if grant.used {
        return err(40029, "invalid code");
    }
    grant.used = true;
    let appid = grant
        .watermark_appid
        .clone()
        .unwrap_or_else(|| sim.settings.appid.clone());
    let info = phone_info(&grant.country_code, &grant.pure_phone_number, &appid);
    Json(json!({"errcode": 0, "errmsg": "ok", "phone_info": info}))
}

#[derive(Deserialize)]
pub struct MintLogin {
    openid: String,
    #[serde(default)]
    unionid: Option<String>,
}

/// `POST /sim/mini/login-codes {openid, unionid?}` → `{code}`: what `wx.login` would give.
pub async fn mint_login_code(
    State(sim): State<SimState>,
    Json(body): Json<MintLogin>,
) -> Json<Value> {
    let code = random_code();
    sim.world.lock().await.login_codes.insert(
        code.clone(),
        LoginGrant {
            openid: body.openid,
            unionid: body.unionid,
            used: false,
        },
    );
    Json(json!({"code": code}))
}

#[derive(Deserialize)]
pub struct MintPhone {
    phone_number: String,
    #[serde(default = "default_country")]
    country_code: String,
    #[serde(default)]
    watermark_appid: Option<String>,
}

fn default_country() -> String {
    "86".into()
}

/// `POST /sim/mini/phone-codes {phone_number, country_code?, watermark_appid?}` → `{code}`:
/// what `getPhoneNumber` would give.
pub async fn mint_phone_code(
    State(sim): State<SimState>,
    Json(body): Json<MintPhone>,
) -> Json<Value> {
    let code = random_code();
    sim.world.lock().await.phone_codes.insert(
        code.clone(),
        PhoneGrant {
            country_code: body.country_code,
            pure_phone_number: body.phone_number,
            watermark_appid: body.watermark_appid,
            used: false,
        },
    );
    Json(json!({"code": code}))
}

#[derive(Deserialize)]
pub struct EncryptPhone {
    openid: String,
    phone_number: String,
    #[serde(default = "default_country")]
    country_code: String,
    #[serde(default)]
    watermark_appid: Option<String>,
}

/// `POST /sim/mini/encrypted-phone {openid, phone_number, ...}` → `{encrypted_data, iv}`
/// under that user's current session key, as the legacy `getPhoneNumber` gave them.
pub async fn encrypt_phone(
    State(sim): State<SimState>,
    Json(body): Json<EncryptPhone>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let world = sim.world.lock().await;
    let key = world.session_keys.get(&body.openid).ok_or((
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no session for this openid; log in first"})),
    ))?;
    let appid = body
        .watermark_appid
        .unwrap_or_else(|| sim.settings.appid.clone());
    let info = phone_info(&body.country_code, &body.phone_number, &appid);
    let plaintext = serde_json::to_vec(&info).expect("JSON values serialize");
    let (encrypted_data, iv) = encrypt_open_data(key, &plaintext);
    Ok(Json(json!({"encrypted_data": encrypted_data, "iv": iv})))
}

#[derive(Deserialize)]
pub struct ArmFault {
    api: String,
    errcode: i64,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

/// `POST /sim/mini/faults {api, errcode, times?}`: the next `times` calls of `api`
/// (`jscode2session`, `stable_token`, `getuserphonenumber`) answer `errcode`
/// (-1 busy, 45011 rate limit, 40226 risky user, ...).
pub async fn arm_fault(
    State(sim): State<SimState>,
    Json(body): Json<ArmFault>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    if !matches!(
        body.api.as_str(),
        "jscode2session" | "stable_token" | "getuserphonenumber"
    ) {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unknown api"})),
        ));
    }
    let mut world = sim.world.lock().await;
    let queue = world.faults.entry(body.api).or_default();
    queue.extend(std::iter::repeat_n(body.errcode, body.times as usize));
    Ok(Json(json!({"armed": queue.len()})))
}

/// `POST /sim/mini/revoke-tokens`: every access token becomes invalid (40001 on use).
pub async fn revoke_tokens(State(sim): State<SimState>) -> Json<Value> {
    let mut world = sim.world.lock().await;
    let revoked = world.tokens.len();
    world.tokens.clear();
    world.current_token = None;
    Json(json!({"revoked": revoked}))
}

/// `GET /sim/mini/stats`: how often each API was called.
pub async fn stats(State(sim): State<SimState>) -> Json<Stats> {
    Json(sim.world.lock().await.stats.clone())
}

#[derive(Deserialize)]
pub struct OpenidQuery {
    openid: String,
}

/// `GET /sim/mini/session-key?openid=...`: the session key WeChat holds for that user,
/// so tests can prove it never leaves wxledger.
pub async fn session_key(
    State(sim): State<SimState>,
    Query(q): Query<OpenidQuery>,
) -> Result<Json<Value>, StatusCode> {
    let world = sim.world.lock().await;
    let key = world
        .session_keys
        .get(&q.openid)
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(json!({"session_key": B64.encode(key)})))
}
