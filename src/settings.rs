//! Typed settings: built-in defaults, then an optional TOML file, then `WXLEDGER__...`
//! environment variables (`WXLEDGER__NATS__URL` sets `nats.url`), validated once at start.

use std::{net::SocketAddr, path::Path, time::Duration};

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Every setting of the daemon and the simulator.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The API and webhook listener.
    pub http: HttpSettings,
    /// The JetStream event log.
    pub nats: NatsSettings,
    /// The Postgres that holds the projections.
    pub database: DatabaseSettings,
    /// How the daemon reaches WeChat (or the simulator).
    pub wechat: WechatSettings,
    /// Bearer tokens and the at-rest key for session keys.
    pub auth: AuthSettings,
    /// The projector that folds the stream into Postgres.
    pub projector: ProjectorSettings,
    /// The WeChat simulator (`wxledger sim`).
    pub sim: SimSettings,
}

/// The daemon's HTTP listener.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address the API listens on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long shutdown waits for requests in flight, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            max_body_bytes: 64 * 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Where events live.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS server URL.
    pub url: String,
    /// JetStream stream name.
    pub stream: String,
    /// First token of every subject: `<prefix>.<aggregate>.<event>`.
    pub subject_prefix: String,
    /// Stream replicas: 1 on a single server, 3 on a cluster.
    pub replicas: usize,
    /// `file` (durable) or `memory`.
    pub storage: Storage,
    /// Window in which a repeated `Nats-Msg-Id` appends nothing, in seconds.
    pub duplicate_window_secs: u64,
    /// How long an append waits for the stream's acknowledgement, in milliseconds.
    pub ack_timeout_ms: u64,
    /// How long start-up waits for NATS before giving up, in seconds.
    pub connect_timeout_secs: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "WXLEDGER".into(),
            subject_prefix: "wxledger".into(),
            replicas: 1,
            storage: Storage::File,
            duplicate_window_secs: 120,
            ack_timeout_ms: 3_000,
            connect_timeout_secs: 30,
        }
    }
}

/// Where JetStream keeps the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk: survives a server restart.
    File,
    /// In memory: for throwaway streams only.
    Memory,
}

/// The projections' Postgres.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// libpq-style URL, e.g. `postgres://postgres@127.0.0.1:5432/wxledger`.
    pub url: String,
    /// Schema that holds every table; created when missing.
    pub schema: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long start-up waits for Postgres before giving up, in seconds.
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/wxledger".into(),
            schema: "public".into(),
            pool_size: 16,
            connect_timeout_secs: 30,
        }
    }
}

/// The app id and secret of the simulator; a daemon that still uses them says so loudly.
pub const SIM_APPID: &str = "wx00000000simulator";
/// See [`SIM_APPID`].
pub const SIM_APP_SECRET: &str = "sim-app-secret-not-for-production";

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
            api_base: "http://127.0.0.1:8090".into(),
            appid: SIM_APPID.into(),
            app_secret: SIM_APP_SECRET.into(),
            busy_attempts: 3,
            busy_backoff_ms: 100,
            token_refresh_margin_secs: 300,
            timeout_ms: 4_000,
        }
    }
}

impl WechatSettings {
    /// True while the daemon talks to the simulator's credentials rather than a real app.
    pub fn uses_simulator(&self) -> bool {
        self.appid == SIM_APPID
    }
}

/// Bearer tokens and the key that seals session keys at rest.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 key of the bearer tokens, at least 32 bytes. Unset: a random one per start.
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of a bearer token, in seconds.
    pub token_ttl_secs: u64,
    /// Base64 of the 32-byte AES-256-GCM key for session keys. Unset: a random one per start.
    pub session_key_encryption_key: Option<SecretString>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_ttl_secs: 2 * 3600,
            session_key_encryption_key: None,
        }
    }
}

/// The projector.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorSettings {
    /// Run the projector in this process (another instance may hold the lock).
    pub enabled: bool,
    /// Most events applied in one Postgres transaction.
    pub batch_size: usize,
    /// A batch is applied once no event arrived for this long, in milliseconds.
    pub batch_linger_ms: u64,
    /// How long a handler waits for the projector to apply its event, in milliseconds.
    pub read_your_writes_timeout_ms: u64,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 500,
            batch_linger_ms: 5,
            read_your_writes_timeout_ms: 5_000,
        }
    }
}

/// The simulator's own settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSettings {
    /// Address the simulator listens on.
    pub listen: SocketAddr,
    /// The app id the simulator accepts and writes into watermarks.
    pub appid: String,
    /// The app secret the simulator accepts.
    pub app_secret: String,
    /// Lifetime of an access token it issues, in seconds.
    pub access_token_ttl_secs: u64,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8090).into(),
            appid: SIM_APPID.into(),
            app_secret: SIM_APP_SECRET.into(),
            access_token_ttl_secs: 7200,
        }
    }
}

/// A setting that could not be read or does not make sense; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or environment did not parse into the settings' types.
    #[error("settings: {0}")]
    Parse(Box<figment::Error>),
    /// A value parsed but is not acceptable.
    #[error("settings: {field}: {problem}")]
    Invalid {
        /// Dotted path of the field, e.g. `nats.replicas`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl Settings {
    /// Defaults, then `file` if given, then `WXLEDGER__*` variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed("WXLEDGER__").split("__"));
        let settings: Settings = figment
            .extract()
            .map_err(|e| SettingsError::Parse(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the values the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        fn invalid(field: &'static str, problem: impl Into<String>) -> SettingsError {
            SettingsError::Invalid {
                field,
                problem: problem.into(),
            }
        }
        if !(1..=5).contains(&self.nats.replicas) {
            return Err(invalid("nats.replicas", "must be between 1 and 5"));
        }
        if !is_token(&self.nats.stream) {
            return Err(invalid(
                "nats.stream",
                "must be letters, digits, '-' or '_' only",
            ));
        }
        if !self.nats.subject_prefix.split('.').all(is_token) {
            return Err(invalid(
                "nats.subject_prefix",
                "must be dot-separated tokens of letters, digits, '-' or '_'",
            ));
        }
        if self.nats.duplicate_window_secs == 0 {
            return Err(invalid("nats.duplicate_window_secs", "must be positive"));
        }
        if !is_token(&self.database.schema)
            || self.database.schema.contains('-')
            || self
                .database
                .schema
                .starts_with(|c: char| c.is_ascii_digit())
            || self.database.schema.len() > 63
        {
            return Err(invalid(
                "database.schema",
                "must be at most 63 letters, digits or '_', not starting with a digit",
            ));
        }
        if self.database.pool_size < 2 {
            return Err(invalid(
                "database.pool_size",
                "must be at least 2 (the projector holds one connection)",
            ));
        }
        if !(self.wechat.api_base.starts_with("http://")
            || self.wechat.api_base.starts_with("https://"))
        {
            return Err(invalid("wechat.api_base", "must be an http(s) URL"));
        }
        if self.wechat.appid.is_empty() {
            return Err(invalid("wechat.appid", "must not be empty"));
        }
        if self.wechat.app_secret.expose_secret().is_empty() {
            return Err(invalid("wechat.app_secret", "must not be empty"));
        }
        if self.wechat.busy_attempts == 0 {
            return Err(invalid("wechat.busy_attempts", "must be at least 1"));
        }
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.expose_secret().len() < 32 {
                return Err(invalid("auth.jwt_secret", "must be at least 32 bytes"));
            }
        }
        if let Some(key) = &self.auth.session_key_encryption_key {
            if crate::crypto::decode_aes256_key(key.expose_secret()).is_none() {
                return Err(invalid(
                    "auth.session_key_encryption_key",
                    "must be the base64 of exactly 32 bytes",
                ));
            }
        }
        if self.auth.token_ttl_secs < 60 {
            return Err(invalid("auth.token_ttl_secs", "must be at least 60"));
        }
        if self.projector.batch_size == 0 {
            return Err(invalid("projector.batch_size", "must be positive"));
        }
        Ok(())
    }

    /// The read-your-writes timeout as a duration.
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.projector.read_your_writes_timeout_ms)
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn the_example_file_lists_every_field_and_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/wxledger.example.toml");
        let text = std::fs::read_to_string(&path).expect("example exists");
        let settings: Settings = Figment::new()
            .merge(Toml::string(&text))
            .extract()
            .expect("the example parses (unknown fields are refused)");
        settings.validate().expect("the example validates");
        let defaults = Settings::default();
        assert_eq!(settings.http.listen, defaults.http.listen);
        assert_eq!(settings.nats.stream, defaults.nats.stream);
        assert_eq!(settings.projector.batch_size, defaults.projector.batch_size);
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = Settings::default();
        s.nats.replicas = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("nats.replicas"), "{err}");

        let mut s = Settings::default();
        s.auth.jwt_secret = Some("short".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");

        let mut s = Settings::default();
        s.database.schema = "drop table;".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("database.schema"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn file_then_environment_with_named_type_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "w.toml",
                "[nats]\nstream = \"FROMFILE\"\nreplicas = 1\n[http]\nlisten = \"127.0.0.1:9999\"\n",
            )?;
            jail.set_env("WXLEDGER__NATS__STREAM", "FROMENV");
            let s = Settings::load(Some(Path::new("w.toml"))).expect("loads");
            assert_eq!(s.nats.stream, "FROMENV");
            assert_eq!(s.http.listen.port(), 9999);

            jail.set_env("WXLEDGER__NATS__REPLICAS", "three");
            let err = Settings::load(Some(Path::new("w.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.to_lowercase().contains("nats.replicas"), "{err}");
            Ok(())
        });
    }
}
