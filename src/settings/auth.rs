//! `[auth]`: bearer tokens, the admin credential and the key that seals session keys.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::check::is_token;
use super::duration::seconds;
use super::error::{invalid, SettingsError};

/// Bearer tokens and the key that seals session keys at rest.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 key of the bearer tokens, at least 32 bytes. Required in production;
    /// unset in development mode: a random one per start.
    pub jwt_secret: Option<SecretString>,
    /// The id (`kid` header) of tokens signed with `jwt_secret`.
    pub jwt_kid: String,
    /// The key before the last rotation: tokens it signed (with `jwt_previous_kid`) are
    /// still accepted until they expire, none are issued with it.
    pub jwt_previous_secret: Option<SecretString>,
    /// The `kid` of `jwt_previous_secret`.
    pub jwt_previous_kid: Option<String>,
    /// Lifetime of a bearer token; `token_ttl_secs`, in seconds.
    #[serde(rename = "token_ttl_secs", deserialize_with = "seconds")]
    pub token_ttl: Duration,
    /// Base64 of the 32-byte AES-256-GCM key for session keys. Required in production;
    /// unset in development mode: a random one per start.
    pub session_key_encryption_key: Option<SecretString>,
    /// The bearer credential of the admin endpoints (`/v1/admin/...`), at least 32 bytes.
    /// Production requires it unless `admin_disabled`; unset: the admin endpoints answer 403.
    pub admin_token: Option<SecretString>,
    /// Turns the admin endpoints off on purpose (they answer 403), so production needs no
    /// `admin_token`.
    pub admin_disabled: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_kid: "1".into(),
            jwt_previous_secret: None,
            jwt_previous_kid: None,
            token_ttl: Duration::from_secs(2 * 3600),
            session_key_encryption_key: None,
            admin_token: None,
            admin_disabled: false,
        }
    }
}

impl AuthSettings {
    /// Checks the values the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(secret) = &self.jwt_secret {
            if secret.expose_secret().len() < 32 {
                return Err(invalid("auth.jwt_secret", "must be at least 32 bytes"));
            }
        }
        if !is_token(&self.jwt_kid) || self.jwt_kid.len() > 64 {
            return Err(invalid(
                "auth.jwt_kid",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        match (&self.jwt_previous_secret, &self.jwt_previous_kid) {
            (Some(secret), Some(kid)) => {
                if secret.expose_secret().len() < 32 {
                    return Err(invalid(
                        "auth.jwt_previous_secret",
                        "must be at least 32 bytes",
                    ));
                }
                if kid == &self.jwt_kid {
                    return Err(invalid(
                        "auth.jwt_previous_kid",
                        "must differ from auth.jwt_kid (the kid picks the key)",
                    ));
                }
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "auth.jwt_previous_secret",
                    "set both auth.jwt_previous_secret and auth.jwt_previous_kid, or neither",
                ))
            }
        }
        if let Some(key) = &self.session_key_encryption_key {
            if crate::core::crypto::decode_aes256_key(key.expose_secret()).is_none() {
                return Err(invalid(
                    "auth.session_key_encryption_key",
                    "must be the base64 of exactly 32 bytes",
                ));
            }
        }
        if self.token_ttl < Duration::from_secs(60) {
            return Err(invalid("auth.token_ttl_secs", "must be at least 60"));
        }
        if let Some(token) = &self.admin_token {
            if token.expose_secret().len() < 32 {
                return Err(invalid("auth.admin_token", "must be at least 32 bytes"));
            }
        }
        Ok(())
    }
}
