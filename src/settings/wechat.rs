//! `[wechat]`: the mini program's credentials and how the daemon reaches WeChat.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::duration::{millis, seconds};
use super::error::{invalid, SettingsError};

/// The mini program's credentials and WeChat's base URL.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WechatSettings {
    /// Base URL of the mini program API (`https://api.weixin.qq.com`, or the simulator).
    pub api_base: String,
    /// The mini program's app id.
    pub appid: String,
    /// The mini program's app secret.
    pub app_secret: SecretString,
    /// Tries of a call that WeChat answered with -1 (busy), the first included.
    pub busy_attempts: u32,
    /// First back-off after a busy answer, doubled each try; `busy_backoff_ms`, in
    /// milliseconds.
    #[serde(rename = "busy_backoff_ms", deserialize_with = "millis")]
    pub busy_backoff: Duration,
    /// The access token is refreshed this long before it expires;
    /// `token_refresh_margin_secs`, in seconds.
    #[serde(rename = "token_refresh_margin_secs", deserialize_with = "seconds")]
    pub token_refresh_margin: Duration,
    /// Timeout of one HTTP call to WeChat; `timeout_ms`, in milliseconds.
    #[serde(rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
}

impl Default for WechatSettings {
    fn default() -> Self {
        Self {
            api_base: "https://api.weixin.qq.com".into(),
            appid: String::new(),
            app_secret: String::new().into(),
            busy_attempts: 3,
            busy_backoff: Duration::from_millis(100),
            token_refresh_margin: Duration::from_secs(300),
            timeout: Duration::from_secs(4),
        }
    }
}

impl WechatSettings {
    /// Checks the values the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            return Err(invalid("wechat.api_base", "must be an http(s) URL"));
        }
        if self.busy_attempts == 0 {
            return Err(invalid("wechat.busy_attempts", "must be at least 1"));
        }
        Ok(())
    }
}
