//! WeChat's mini program server API: `jscode2session`, the access token (stable_token,
//! cached and refreshed once for all callers) and `getuserphonenumber`.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize};
use tokio::sync::Mutex;

use super::call;
use crate::{
    core::clock::Clock,
    daemon::metrics::{labels, Metrics},
    settings::WechatSettings,
};

/// What WeChat said no to, or why it could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    /// 40029 / 40163: the code is unknown, expired or used.
    #[error("code rejected by WeChat ({errcode})")]
    InvalidCode {
        /// WeChat's errcode.
        errcode: i64,
    },
    /// 45011: too many calls for this user.
    #[error("rate limited by WeChat")]
    RateLimited,
    /// 40226: WeChat flags this user as risky.
    #[error("WeChat refused a risky user")]
    RiskyUser,
    /// -1 after every retry.
    #[error("WeChat is busy")]
    Busy,
    /// No answer, or an answer that is not WeChat's JSON.
    #[error("WeChat unreachable: {0}")]
    Unavailable(String),
    /// Any other errcode.
    #[error("WeChat error {errcode}: {errmsg}")]
    Api {
        /// WeChat's errcode.
        errcode: i64,
        /// WeChat's errmsg.
        errmsg: String,
    },
}

/// A login's result. The session key stays inside the server.
pub struct Session {
    /// The user's openid under our app id.
    pub openid: String,
    /// The unionid, when the app is bound to an open platform account.
    pub unionid: Option<String>,
    /// The session key (base64), for decrypting the user's open data.
    pub session_key: SecretString,
}

/// A phone number as `getuserphonenumber` or `encryptedData` state it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneInfo {
    /// The national number.
    pub pure_phone_number: String,
    /// Country calling code without `+`.
    #[serde(deserialize_with = "string_or_number")]
    pub country_code: String,
    /// Which app WeChat vouched to.
    pub watermark: Watermark,
}

/// WeChat's watermark on open data.
#[derive(Debug, Clone, Deserialize)]
pub struct Watermark {
    /// The app id the data was issued for.
    pub appid: String,
    /// When, in Unix seconds.
    #[serde(default)]
    pub timestamp: i64,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(u64),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::N(n) => n.to_string(),
    })
}

#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

#[derive(Deserialize)]
struct Code2Session {
    openid: String,
    session_key: String,
    #[serde(default)]
    unionid: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

#[derive(Deserialize)]
struct PhoneAnswer {
    phone_info: PhoneInfo,
}

struct CachedToken {
    token: String,
    refresh_at: chrono::DateTime<chrono::Utc>,
}

/// The mini program API client; cheap to clone.
#[derive(Clone)]
pub struct MiniProgram {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    appid: String,
    secret: SecretString,
    busy_attempts: u32,
    busy_backoff: Duration,
    refresh_margin: chrono::Duration,
    clock: Clock,
    // Held across the refresh call: concurrent callers wait and then share one token.
    token: Mutex<Option<CachedToken>>,
    metrics: OnceLock<Metrics>,
}

/// Errcodes that mean "this access token is no good": 40001, 40014, 42001.
fn is_token_error(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

impl MiniProgram {
    /// A client for the app in `settings`.
    pub fn new(settings: &WechatSettings, clock: Clock) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .expect("the HTTP client builds with static settings");
        Self {
            inner: Arc::new(Inner {
                http,
                base: settings.api_base.trim_end_matches('/').to_owned(),
                appid: settings.appid.clone(),
                secret: settings.app_secret.clone(),
                busy_attempts: settings.busy_attempts,
                busy_backoff: settings.busy_backoff,
                refresh_margin: chrono::Duration::from_std(settings.token_refresh_margin)
                    .unwrap_or(chrono::Duration::seconds(300)),
                clock,
                token: Mutex::new(None),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Records every call's latency and errcode in `metrics` (once; later calls are
    /// ignored).
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// Our app id.
    pub fn appid(&self) -> &str {
        &self.inner.appid
    }

    /// Exchanges a `wx.login` code for the user's openid and session key.
    pub async fn code2session(&self, code: &str) -> Result<Session, WechatError> {
        let url = format!("{}/sns/jscode2session", self.inner.base);
        let answer: Code2Session = self
            .with_busy_retry("jscode2session", || {
                self.inner.http.get(&url).query(&[
                    ("appid", self.inner.appid.as_str()),
                    ("secret", self.inner.secret.expose_secret()),
                    ("js_code", code),
                    ("grant_type", "authorization_code"),
                ])
            })
            .await?;
        Ok(Session {
            openid: answer.openid,
            unionid: answer.unionid.filter(|u| !u.is_empty()),
            session_key: answer.session_key.into(),
        })
    }

    /// Exchanges a `getPhoneNumber` code for the phone number.
    pub async fn phone_number(&self, code: &str) -> Result<PhoneInfo, WechatError> {
        let url = format!("{}/wxa/business/getuserphonenumber", self.inner.base);
        let body = serde_json::json!({ "code": code });
        let mut retried = false;
        loop {
            let token = self.access_token().await?;
            let result: Result<PhoneAnswer, WechatError> = self
                .with_busy_retry("getuserphonenumber", || {
                    self.inner
                        .http
                        .post(&url)
                        .query(&[("access_token", token.as_str())])
                        .json(&body)
                })
                .await;
            match result {
                Err(WechatError::Api { errcode, .. }) if is_token_error(errcode) && !retried => {
                    self.expire_token(&token).await;
                    retried = true;
                }
                other => return other.map(|a| a.phone_info),
            }
        }
    }

    /// The current access token, fetched by `stable_token` when missing or near expiry.
    pub async fn access_token(&self) -> Result<String, WechatError> {
        let mut cached = self.inner.token.lock().await;
        let now = (self.inner.clock)();
        if let Some(token) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(token.token.clone());
        }
        let url = format!("{}/cgi-bin/stable_token", self.inner.base);
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": self.inner.appid,
            "secret": self.inner.secret.expose_secret(),
            "force_refresh": false,
        });
        let answer: TokenAnswer = self
            .with_busy_retry("stable_token", || self.inner.http.post(&url).json(&body))
            .await?;
        let lifetime = chrono::Duration::seconds(answer.expires_in.max(0));
        *cached = Some(CachedToken {
            token: answer.access_token.clone(),
            refresh_at: now + (lifetime - self.inner.refresh_margin).max(chrono::Duration::zero()),
        });
        Ok(answer.access_token)
    }

    /// Forgets the cached token, but only if it is still the one that failed (another
    /// caller may have refreshed it already).
    async fn expire_token(&self, failed: &str) {
        let mut cached = self.inner.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.token == failed) {
            *cached = None;
        }
    }

    /// One HTTP exchange with `endpoint` (a fixed name, never the URL: it carries the
    /// secret or the token), timed and counted by its errcode.
    async fn exchange(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(ErrorFields, bytes::Bytes), WechatError> {
        let call = async {
            let answer = call::send(request)
                .await
                .map_err(|e| WechatError::Unavailable(crate::core::causes::http(e)))?;
            if !answer.status.is_success() {
                return Err(WechatError::Unavailable(format!("HTTP {}", answer.status)));
            }
            let fields: ErrorFields = serde_json::from_slice(&answer.body)
                .map_err(|_| WechatError::Unavailable("answer is not JSON".into()))?;
            Ok((fields, answer.body))
        };
        call::measured(
            self.inner.metrics.get(),
            "wechat",
            endpoint,
            call,
            |result| match result {
                Ok((fields, _)) => labels::wechat_errcode(fields.errcode),
                Err(_) => "unavailable",
            },
        )
        .await
    }

    /// Sends the request, retrying WeChat's -1 (busy) with exponential back-off, and
    /// maps errcodes to errors.
    async fn with_busy_retry<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, WechatError> {
        let mut backoff = self.inner.busy_backoff;
        for attempt in 1..=self.inner.busy_attempts {
            let (fields, bytes) = self.exchange(endpoint, request()).await?;
            match fields.errcode {
                0 => {
                    return serde_json::from_slice(&bytes).map_err(|e| {
                        WechatError::Unavailable(format!("unexpected answer shape: {e}"))
                    })
                }
                -1 if attempt < self.inner.busy_attempts => {
                    tracing::debug!(attempt, "WeChat busy; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                -1 => return Err(WechatError::Busy),
                40029 | 40163 => {
                    return Err(WechatError::InvalidCode {
                        errcode: fields.errcode,
                    })
                }
                45011 => return Err(WechatError::RateLimited),
                40226 => return Err(WechatError::RiskyUser),
                errcode => {
                    return Err(WechatError::Api {
                        errcode,
                        errmsg: fields.errmsg,
                    })
                }
            }
        }
        Err(WechatError::Busy)
    }
}
