//! `[wechat]`: the mini program's credentials and how the daemon reaches WeChat.

use secrecy::SecretString;
use serde::Deserialize;

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
    /// First back-off after a busy answer, doubled each try, in milliseconds.
    pub busy_backoff_ms: u64,
    /// The access token is refreshed this long before it expires, in seconds.
    pub token_refresh_margin_secs: u64,
    /// Timeout of one HTTP call to WeChat, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for WechatSettings {
    fn default() -> Self {
        Self {
            api_base: "https://api.weixin.qq.com".into(),
            appid: String::new(),
            app_secret: String::new().into(),
            busy_attempts: 3,
            busy_backoff_ms: 100,
            token_refresh_margin_secs: 300,
            timeout_ms: 4_000,
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
