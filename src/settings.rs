//! Typed settings: built-in defaults (production's; development mode adds the simulator's
//! credentials), then an optional TOML file, then `WXLEDGER__...` environment variables
//! (`WXLEDGER__NATS__URL` sets `nats.url`), validated once at start.

mod env;
mod mode;

pub use env::UnknownVariable;
pub use mode::{
    production_problems, require_production_credentials, require_production_pay_credentials, Mode,
    ModeSource, Problem,
};

use std::{
    borrow::Cow,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Every setting of the daemon and the simulator.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `production` (the default: every credential configured, no development key
    /// material) or `development` (the simulator and the public development keys).
    pub mode: Mode,
    /// What chose the mode (not a setting).
    #[serde(skip)]
    pub mode_source: ModeSource,
    /// The API and webhook listener.
    pub http: HttpSettings,
    /// The JetStream event log.
    pub nats: NatsSettings,
    /// The Postgres that holds the projections.
    pub database: DatabaseSettings,
    /// How the daemon reaches WeChat (or the simulator).
    pub wechat: WechatSettings,
    /// WeChat Pay (API v3, and v2 for legacy merchants): the merchant, its keys, orders
    /// and notifies.
    pub pay: PaySettings,
    /// Bearer tokens and the at-rest key for session keys.
    pub auth: AuthSettings,
    /// The projector that folds the stream into Postgres.
    pub projector: ProjectorSettings,
    /// The outcome stream: the projector's decisions, published after commit.
    pub outcomes: OutcomeSettings,
    /// The WeChat simulator (`wxledger sim`).
    pub sim: SimSettings,
    /// Timeouts, the connection limit and rate limits of the HTTP listener.
    pub limits: crate::limits::LimitSettings,
    /// Where `/metrics` is served.
    pub metrics: crate::metrics::MetricsSettings,
    /// The keys of erasable personal data (crypto-shredding).
    pub privacy: crate::privacy::PrivacySettings,
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
    /// Credentials (`[nats.auth]`): user/password, token, NKey seed or `.creds` file.
    pub auth: crate::events::connect::NatsAuthSettings,
    /// TLS to NATS (`[nats.tls]`).
    pub tls: crate::events::connect::NatsTlsSettings,
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
            auth: Default::default(),
            tls: Default::default(),
        }
    }
}

impl NatsSettings {
    /// The stream of outcomes (the projector's decisions): `<stream>_OUTCOMES`.
    pub fn outcome_stream(&self) -> String {
        format!("{}_OUTCOMES", self.stream)
    }

    /// First token(s) of every outcome subject: `<prefix>_outcome`, outside the event
    /// stream's `<prefix>.>`.
    pub fn outcome_subject_prefix(&self) -> String {
        format!("{}_outcome", self.subject_prefix)
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
    /// TLS to Postgres, as libpq's `sslmode`: `disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full` (what a remote Postgres should use).
    pub sslmode: crate::db::tls::SslMode,
    /// PEM file of the CA that signed the server's certificate (for `verify-ca` and
    /// `verify-full`), or `"system"` for the operating system's roots.
    pub ssl_root_cert: Option<PathBuf>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/wxledger".into(),
            schema: "public".into(),
            pool_size: 16,
            connect_timeout_secs: 30,
            sslmode: Default::default(),
            ssl_root_cert: None,
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

/// WeChat Pay API v3 for the merchant. Production requires every credential; development
/// mode fills unset ones with the simulator's public credentials (`config/dev-keys/`).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaySettings {
    /// Base URL of WeChat Pay (`https://api.mch.weixin.qq.com`, or the simulator).
    pub api_base: String,
    /// The merchant id (`mchid`).
    pub mchid: String,
    /// Serial of the merchant's API certificate (`serial_no` in request signatures).
    pub merchant_serial: String,
    /// The merchant's private key (`apiclient_key.pem`, PKCS#8 PEM) inline. Secret: set
    /// it in the environment, or use `merchant_private_key_file`.
    pub merchant_private_key: Option<SecretString>,
    /// Path of the merchant's private key file.
    pub merchant_private_key_file: Option<PathBuf>,
    /// The 32-character APIv3 key. Secret: set it in the environment.
    pub apiv3_key: SecretString,
    /// WeChat Pay public key id (`PUB_KEY_ID_...`), for public key mode. Unset: the
    /// merchant uses platform certificates only.
    pub public_key_id: Option<String>,
    /// The WeChat Pay public key (SPKI PEM) inline.
    pub public_key: Option<String>,
    /// Path of the WeChat Pay public key (`pub_key.pem`).
    pub public_key_file: Option<PathBuf>,
    /// Download platform certificates from `/v3/certificates` (certificate mode, or both
    /// during a switch-over).
    pub platform_certificates: bool,
    /// How often the platform certificates are downloaded again, in seconds (an unknown
    /// serial also triggers a download).
    pub certificate_refresh_secs: u64,
    /// The URL WeChat Pay sends notifies to: this daemon's `/webhooks/wechatpay`.
    pub notify_url: String,
    /// Largest amount of one order or recharge, in fen.
    pub max_amount_fen: i64,
    /// An order unpaid this long after it was placed is closed, in seconds.
    pub order_ttl_secs: u64,
    /// How often the expiry sweep looks for unpaid orders past their time, in ms.
    pub expiry_sweep_ms: u64,
    /// An order with a prepay but no notify, or a refund not settled, this long is asked
    /// about at WeChat by the reconciliation sweep (and at most once per this long), in s.
    pub reconcile_after_secs: u64,
    /// How often the reconciliation sweep runs, in ms.
    pub reconcile_sweep_ms: u64,
    /// Largest notify body accepted, in bytes.
    pub max_notify_bytes: usize,
    /// A notify or answer whose `Wechatpay-Timestamp` is further off than this is
    /// refused, in seconds.
    pub timestamp_tolerance_secs: i64,
    /// Timeout of one HTTP call to WeChat Pay, in milliseconds.
    pub timeout_ms: u64,
    /// Which WeChat Pay API new prepays use: `v3` (JSON, RSA) or `v2` (XML, MD5 or
    /// HMAC-SHA256, for legacy merchants).
    pub api: PayApi,
    /// WeChat Pay API v2 (legacy merchants).
    pub v2: PayV2Settings,
}

/// Which WeChat Pay API the merchant uses for new prepays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayApi {
    /// API v3: JSON, RSA signatures, AES-GCM notifies.
    #[default]
    V3,
    /// API v2: XML, MD5 or HMAC-SHA256 signatures with the API key.
    V2,
}

/// How API v2 messages are signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum V2SignType {
    /// `MD5`: WeChat's default.
    #[serde(rename = "MD5")]
    Md5,
    /// `HMAC-SHA256`, keyed with the API key.
    #[default]
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

/// WeChat Pay API v2 for the merchant. Its key also verifies the notifies of
/// `POST /webhooks/wechatpay/v2`, whichever API new prepays use.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayV2Settings {
    /// The 32-character API key (商户平台 → API安全 → API密钥). Secret: set it in the
    /// environment. Unset: API v2 is off (development mode: the simulator's public key).
    pub api_key: Option<SecretString>,
    /// How requests are signed and notifies must be signed: `MD5` or `HMAC-SHA256`.
    pub sign_type: V2SignType,
    /// The URL WeChat Pay sends v2 notifies to. Unset: `pay.notify_url` + `/v2`.
    pub notify_url: Option<String>,
    /// The merchant's API client certificate (`apiclient_cert.pem`), which WeChat's
    /// `/secapi/...` calls (refunds) require as a TLS client certificate.
    pub client_cert_file: Option<PathBuf>,
    /// Its private key (`apiclient_key.pem`, PKCS#8 PEM).
    pub client_key_file: Option<PathBuf>,
    /// `spbill_create_ip` of unified orders: the IP WeChat is told the payment came from
    /// (WeChat accepts the server's own for JSAPI).
    pub spbill_create_ip: String,
}

impl Default for PayV2Settings {
    fn default() -> Self {
        Self {
            api_key: None,
            sign_type: V2SignType::default(),
            notify_url: None,
            client_cert_file: None,
            client_key_file: None,
            spbill_create_ip: "127.0.0.1".into(),
        }
    }
}

impl Default for PaySettings {
    fn default() -> Self {
        Self {
            api_base: "https://api.mch.weixin.qq.com".into(),
            mchid: String::new(),
            merchant_serial: String::new(),
            merchant_private_key: None,
            merchant_private_key_file: None,
            apiv3_key: String::new().into(),
            public_key_id: None,
            public_key: None,
            public_key_file: None,
            platform_certificates: true,
            certificate_refresh_secs: 12 * 3600,
            notify_url: String::new(),
            max_amount_fen: 10_000_000,
            order_ttl_secs: 1800,
            expiry_sweep_ms: 10_000,
            reconcile_after_secs: 300,
            reconcile_sweep_ms: 30_000,
            max_notify_bytes: 16 * 1024,
            timestamp_tolerance_secs: 300,
            timeout_ms: 4_000,
            api: PayApi::V3,
            v2: PayV2Settings::default(),
        }
    }
}

/// A key named by the settings could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct KeySourceError {
    /// The setting.
    pub field: &'static str,
    /// What went wrong.
    pub problem: String,
}

impl PaySettings {
    /// The merchant's private key PEM, inline or from its file; `None` when neither is set.
    pub fn merchant_key_pem(&self) -> Result<Option<Cow<'_, str>>, KeySourceError> {
        read_key(
            "pay.merchant_private_key",
            self.merchant_private_key
                .as_ref()
                .map(|k| k.expose_secret()),
            self.merchant_private_key_file.as_deref(),
        )
    }

    /// The merchant's private key PEM, which every WeChat Pay call needs.
    pub fn required_merchant_key_pem(&self) -> Result<Cow<'_, str>, KeySourceError> {
        self.merchant_key_pem()?.ok_or_else(|| KeySourceError {
            field: "pay.merchant_private_key",
            problem: "set it or pay.merchant_private_key_file".into(),
        })
    }

    /// The API v2 key; `None` turns API v2 off.
    pub fn v2_api_key(&self) -> Option<&str> {
        self.v2.api_key.as_ref().map(|key| key.expose_secret())
    }

    /// Where WeChat Pay sends API v2 notifies.
    pub fn v2_notify_url(&self) -> String {
        match &self.v2.notify_url {
            Some(url) => url.clone(),
            None => format!("{}/v2", self.notify_url.trim_end_matches('/')),
        }
    }

    /// The WeChat Pay public key PEM, when a public key id is set.
    pub fn public_key_pem(&self) -> Result<Option<Cow<'_, str>>, KeySourceError> {
        if self.public_key_id.is_none() {
            return Ok(None);
        }
        let pem = read_key(
            "pay.public_key",
            self.public_key.as_deref(),
            self.public_key_file.as_deref(),
        )?;
        pem.map(Some).ok_or_else(|| KeySourceError {
            field: "pay.public_key",
            problem: "pay.public_key_id is set: set pay.public_key or pay.public_key_file".into(),
        })
    }
}

fn read_key<'a>(
    field: &'static str,
    inline: Option<&'a str>,
    file: Option<&Path>,
) -> Result<Option<Cow<'a, str>>, KeySourceError> {
    if let Some(pem) = inline {
        return Ok(Some(Cow::Borrowed(pem)));
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|s| Some(Cow::Owned(s)))
            .map_err(|e| KeySourceError {
                field,
                problem: format!("cannot read {}: {e}", path.display()),
            });
    }
    Ok(None)
}

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
    /// Lifetime of a bearer token, in seconds.
    pub token_ttl_secs: u64,
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
            token_ttl_secs: 2 * 3600,
            session_key_encryption_key: None,
            admin_token: None,
            admin_disabled: false,
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

/// The publisher of the outcome stream (`<stream>_OUTCOMES`). The projector always
/// writes outcomes to the `outbox` table in its own transactions; this publishes them.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomeSettings {
    /// Publish the outbox from this process (one publisher per schema is active at a
    /// time; others stand by).
    pub publish: bool,
    /// How often the outbox is checked besides each local commit (a projector in
    /// another process commits too), in milliseconds.
    pub poll_ms: u64,
    /// Most outcomes read from the outbox at a time.
    pub batch_size: usize,
}

impl Default for OutcomeSettings {
    fn default() -> Self {
        Self {
            publish: true,
            poll_ms: 1_000,
            batch_size: 256,
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
    /// The merchant id the simulated WeChat Pay serves.
    pub mchid: String,
    /// That merchant's APIv3 key (32 characters).
    pub apiv3_key: String,
    /// Serial of the merchant certificate whose key must sign requests.
    pub merchant_serial: String,
    /// Which key signs answers and notifies: `public_key` (with the public key id as
    /// serial) or `certificate` (the current platform certificate).
    pub pay_signing: SimSigning,
    /// Scales WeChat's notify retry schedule (15 s, 15 s, 30 s, 3 min, ...): 1.0 is real
    /// time, 0.001 turns 15 s into 15 ms.
    pub time_factor: f64,
    /// How long the simulator waits for the daemon's answer to a notify, in ms.
    pub notify_timeout_ms: u64,
    /// That merchant's API v2 key (32 characters): checks request signs, signs answers
    /// and notifies, and encrypts refund notifies' `req_info`.
    pub v2_api_key: String,
}

/// Which key the simulated WeChat Pay signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimSigning {
    /// The WeChat Pay public key (`Wechatpay-Serial: PUB_KEY_ID_...`).
    PublicKey,
    /// The current platform certificate (`Wechatpay-Serial: <certificate serial>`).
    Certificate,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8090).into(),
            appid: SIM_APPID.into(),
            app_secret: SIM_APP_SECRET.into(),
            access_token_ttl_secs: 7200,
            mchid: crate::devkeys::MCHID.into(),
            apiv3_key: crate::devkeys::APIV3_KEY.into(),
            merchant_serial: crate::devkeys::MERCHANT_SERIAL.into(),
            pay_signing: SimSigning::PublicKey,
            time_factor: 1.0,
            notify_timeout_ms: 5_000,
            v2_api_key: crate::devkeys::V2_API_KEY.into(),
        }
    }
}

/// A setting that could not be read or does not make sense; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or environment did not parse into the settings' types.
    #[error("settings: {0}")]
    Parse(Box<figment::Error>),
    /// A `WXLEDGER_...` environment variable that names no setting.
    #[error("settings: the environment variable {} names no setting; did you mean {}?", .0.name, .0.suggestion)]
    UnknownVariable(UnknownVariable),
    /// A key of the file or the environment that names no setting.
    #[error("settings: {path} ({variable}) names no setting{}", .suggestion.as_ref().map(|s| format!("; did you mean {s}?")).unwrap_or_default())]
    UnknownSetting {
        /// Dotted path, e.g. `pay.mchdi`.
        path: String,
        /// Its environment variable, e.g. `WXLEDGER__PAY__MCHDI`.
        variable: String,
        /// The nearest valid setting, with its variable.
        suggestion: Option<String>,
    },
    /// Production mode and credentials missing or from development.
    #[error("settings: production mode refuses to start ({} problem(s); development mode must be chosen explicitly with --dev or mode = \"development\"):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Production(Vec<Problem>),
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
        Self::load_as(file, None)
    }

    /// [`Settings::load`], in development mode when `development` says what chose it (the
    /// `--dev` flag, or a command that exists only for development); otherwise in the mode
    /// the `mode` setting names, production by default. Development mode adds the
    /// simulator's credentials and the development keys below the file and environment.
    pub fn load_as(
        file: Option<&Path>,
        development: Option<ModeSource>,
    ) -> Result<Self, SettingsError> {
        let environment = env::RawEnv::read().map_err(SettingsError::UnknownVariable)?;
        let mut layers = Figment::new();
        if let Some(file) = file {
            layers = layers.merge(Toml::file_exact(file));
        }
        layers = layers.merge(environment);
        let (mode, source) = match development {
            Some(source) => (Mode::Development, source),
            None => match layers.find_value("mode") {
                Ok(value) => (
                    value
                        .deserialize::<Mode>()
                        .map_err(|e| SettingsError::Invalid {
                            field: "mode",
                            problem: format!("{e} (WXLEDGER__MODE)"),
                        })?,
                    ModeSource::Setting,
                ),
                Err(_) => (Mode::Production, ModeSource::Default),
            },
        };
        let mut figment = Figment::new();
        if mode == Mode::Development {
            figment = figment.merge(mode::development_defaults());
        }
        figment = figment
            .merge(layers)
            .merge(Serialized::default("mode", mode.to_string()));
        let mut settings: Settings = figment.extract_lossy().map_err(parse_error)?;
        settings.mode_source = source;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings of development mode with nothing configured: the simulator's app and
    /// merchant with the development keys (for tests and tools that build settings in code).
    pub fn development() -> Self {
        let mut settings: Settings = Figment::from(mode::development_defaults())
            .merge(Serialized::default("mode", Mode::Development.to_string()))
            .extract_lossy()
            .expect("the development defaults are valid settings");
        settings.mode_source = ModeSource::Command("settings built for development in code");
        settings
    }

    /// Refuses production settings that miss a credential or carry development key
    /// material, naming every offending field (nothing to refuse in development mode).
    pub fn require_production_credentials(&self) -> Result<(), SettingsError> {
        require_production_credentials(self)
    }

    /// Checks the values the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        fn invalid(field: &'static str, problem: impl Into<String>) -> SettingsError {
            SettingsError::Invalid {
                field,
                problem: problem.into(),
            }
        }
        self.metrics.validate(self.http.listen)?;
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
        crate::events::connect::validate(&self.nats)?;
        crate::db::tls::validate(&self.database)?;
        crate::db::check_schema_name(&self.database.schema)
            .map_err(|problem| invalid("database.schema", problem))?;
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
        if self.wechat.busy_attempts == 0 {
            return Err(invalid("wechat.busy_attempts", "must be at least 1"));
        }
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.expose_secret().len() < 32 {
                return Err(invalid("auth.jwt_secret", "must be at least 32 bytes"));
            }
        }
        if !is_token(&self.auth.jwt_kid) || self.auth.jwt_kid.len() > 64 {
            return Err(invalid(
                "auth.jwt_kid",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        match (&self.auth.jwt_previous_secret, &self.auth.jwt_previous_kid) {
            (Some(secret), Some(kid)) => {
                if secret.expose_secret().len() < 32 {
                    return Err(invalid(
                        "auth.jwt_previous_secret",
                        "must be at least 32 bytes",
                    ));
                }
                if kid == &self.auth.jwt_kid {
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
        if let Some(token) = &self.auth.admin_token {
            if token.expose_secret().len() < 32 {
                return Err(invalid("auth.admin_token", "must be at least 32 bytes"));
            }
        }
        self.validate_pay()?;
        self.limits.validate()?;
        self.privacy.validate()?;
        if !(self.sim.time_factor > 0.0 && self.sim.time_factor <= 1000.0) {
            return Err(invalid(
                "sim.time_factor",
                "must be above 0 and at most 1000",
            ));
        }
        if self.sim.apiv3_key.len() != 32 {
            return Err(invalid("sim.apiv3_key", "must be 32 characters"));
        }
        if !is_v2_key(&self.sim.v2_api_key) {
            return Err(invalid(
                "sim.v2_api_key",
                "must be 32 ASCII letters or digits",
            ));
        }
        if self.projector.batch_size == 0 {
            return Err(invalid("projector.batch_size", "must be positive"));
        }
        if self.outcomes.poll_ms == 0 {
            return Err(invalid("outcomes.poll_ms", "must be positive"));
        }
        if self.outcomes.batch_size == 0 {
            return Err(invalid("outcomes.batch_size", "must be positive"));
        }
        Ok(())
    }

    fn validate_pay(&self) -> Result<(), SettingsError> {
        fn invalid(field: &'static str, problem: impl Into<String>) -> SettingsError {
            SettingsError::Invalid {
                field,
                problem: problem.into(),
            }
        }
        let pay = &self.pay;
        if !(pay.api_base.starts_with("http://") || pay.api_base.starts_with("https://")) {
            return Err(invalid("pay.api_base", "must be an http(s) URL"));
        }
        // Unset credentials are production's concern (`mode::production_problems`); a set
        // one must have its form in either mode.
        let url = &pay.notify_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("pay.notify_url", "must be an http(s) URL"));
        }
        if !pay.mchid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("pay.mchid", "must be the merchant's digits"));
        }
        if !pay.merchant_serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("pay.merchant_serial", "must be a hex serial"));
        }
        let apiv3 = pay.apiv3_key.expose_secret();
        if !apiv3.is_empty() && apiv3.len() != 32 {
            return Err(invalid("pay.apiv3_key", "must be exactly 32 characters"));
        }
        if let Some(merchant) = pay
            .merchant_key_pem()
            .map_err(|e| invalid(e.field, e.problem))?
        {
            crate::wechat::pay::crypto::SigningKey::from_pkcs8_pem(&merchant)
                .map_err(|e| invalid("pay.merchant_private_key", e.to_string()))?;
        }
        // A public key id without its key is named with the other missing credentials
        // (`mode::production_problems`); a key that is there must parse.
        if let Ok(Some(pem)) = pay.public_key_pem() {
            crate::wechat::pay::crypto::VerifyingKey::from_public_key_pem(&pem)
                .map_err(|e| invalid("pay.public_key", e.to_string()))?;
        }
        if pay.public_key_id.is_none() && !pay.platform_certificates {
            return Err(invalid(
                "pay.platform_certificates",
                "with no pay.public_key_id, platform certificates are the only way to verify WeChat",
            ));
        }
        if pay.max_amount_fen < 1 {
            return Err(invalid("pay.max_amount_fen", "must be at least 1"));
        }
        if pay.order_ttl_secs < 60 || pay.order_ttl_secs > 7 * 24 * 3600 {
            return Err(invalid(
                "pay.order_ttl_secs",
                "must be between 60 s and 7 days",
            ));
        }
        if pay.certificate_refresh_secs < 60 {
            return Err(invalid(
                "pay.certificate_refresh_secs",
                "must be at least 60",
            ));
        }
        if !(1..=300).contains(&pay.timestamp_tolerance_secs) {
            return Err(invalid(
                "pay.timestamp_tolerance_secs",
                "must be between 1 and 300 (WeChat's rule)",
            ));
        }
        if pay.max_notify_bytes < 1024 {
            return Err(invalid("pay.max_notify_bytes", "must be at least 1024"));
        }
        if pay.expiry_sweep_ms == 0 {
            return Err(invalid("pay.expiry_sweep_ms", "must be positive"));
        }
        if pay.reconcile_after_secs == 0 || pay.reconcile_sweep_ms == 0 {
            return Err(invalid(
                "pay.reconcile_after_secs",
                "reconcile_after_secs and reconcile_sweep_ms must be positive",
            ));
        }
        self.validate_pay_v2()
    }

    fn validate_pay_v2(&self) -> Result<(), SettingsError> {
        fn invalid(field: &'static str, problem: impl Into<String>) -> SettingsError {
            SettingsError::Invalid {
                field,
                problem: problem.into(),
            }
        }
        let pay = &self.pay;
        match pay.v2_api_key() {
            Some(key) if !is_v2_key(key) => {
                return Err(invalid(
                    "pay.v2.api_key",
                    "must be 32 ASCII letters or digits",
                ))
            }
            None if pay.api == PayApi::V2 => {
                return Err(invalid(
                    "pay.v2.api_key",
                    "pay.api is \"v2\": set the merchant's API v2 key",
                ))
            }
            _ => {}
        }
        let url = pay.v2_notify_url();
        if (pay.v2.notify_url.is_some() || !pay.notify_url.is_empty())
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("pay.v2.notify_url", "must be an http(s) URL"));
        }
        if pay.v2.client_cert_file.is_some() != pay.v2.client_key_file.is_some() {
            return Err(invalid(
                "pay.v2.client_cert_file",
                "set both pay.v2.client_cert_file and pay.v2.client_key_file, or neither",
            ));
        }
        if pay.v2.spbill_create_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid("pay.v2.spbill_create_ip", "must be an IP address"));
        }
        Ok(())
    }

    /// The read-your-writes timeout as a duration.
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.projector.read_your_writes_timeout_ms)
    }
}

/// A figment error, with a key that names no setting turned into the nearest valid one.
fn parse_error(e: figment::Error) -> SettingsError {
    if let figment::error::Kind::UnknownField(name, expected) = &e.kind {
        let mut path = e.path.clone();
        if path.last() != Some(name) {
            path.push(name.clone());
        }
        let variable = |path: &[String]| {
            format!(
                "{}{}",
                env::PREFIX,
                path.iter()
                    .map(|p| p.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join("__")
            )
        };
        let suggestion = env::nearest(name, expected).map(|near| {
            let mut near_path = path.clone();
            *near_path.last_mut().expect("the path holds the name") = near.to_owned();
            format!("{} ({})", near_path.join("."), variable(&near_path))
        });
        return SettingsError::UnknownSetting {
            path: path.join("."),
            variable: variable(&path),
            suggestion,
        };
    }
    SettingsError::Parse(Box::new(e))
}

/// WeChat's API v2 keys are 32 letters and digits (they go into a signed string as is).
fn is_v2_key(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric())
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
        assert_eq!(settings.outcomes.publish, defaults.outcomes.publish);
        assert_eq!(settings.outcomes.poll_ms, defaults.outcomes.poll_ms);
    }

    #[test]
    fn the_outcome_stream_and_subjects_lie_outside_the_event_stream() {
        let mut s = Settings::default();
        assert_eq!(s.nats.outcome_stream(), "WXLEDGER_OUTCOMES");
        assert_eq!(s.nats.outcome_subject_prefix(), "wxledger_outcome");
        s.nats.subject_prefix = "acme.wxledger".into();
        // `acme.wxledger_outcome.order.paid` is not matched by `acme.wxledger.>`.
        assert_eq!(s.nats.outcome_subject_prefix(), "acme.wxledger_outcome");
        s.validate().expect("derived names are valid tokens");
        s.outcomes.poll_ms = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("outcomes.poll_ms"), "{err}");
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
    fn api_v2_needs_a_key_of_wechats_form_outside_the_simulator() {
        let mut s = Settings::development();
        s.pay.api = PayApi::V2;
        s.validate()
            .expect("the simulator's merchant has the public v2 key");
        assert_eq!(s.pay.v2_api_key(), Some(crate::devkeys::V2_API_KEY));
        assert_eq!(
            s.pay.v2_notify_url(),
            "http://127.0.0.1:8080/webhooks/wechatpay/v2"
        );

        // Another merchant: the public key is never used, v2 is off unless configured.
        let mut s = Settings::default();
        s.pay.mchid = "1234567890".into();
        s.pay.merchant_private_key = Some(crate::devkeys::MERCHANT_KEY_PEM.into());
        s.validate().expect("v3 needs no v2 key");
        assert_eq!(s.pay.v2_api_key(), None);
        s.pay.api = PayApi::V2;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.api_key"), "{err}");
        s.pay.v2.api_key = Some("too short".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.api_key"), "{err}");
        s.pay.v2.api_key = Some("192006250b4c09247ec02edce69f6a2d".into());
        s.validate().expect("a 32-character key");

        s.pay.v2.client_cert_file = Some("/run/secrets/apiclient_cert.pem".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.client_cert_file"), "{err}");
        s.pay.v2.client_cert_file = None;
        s.pay.v2.spbill_create_ip = "localhost".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("pay.v2.spbill_create_ip"), "{err}");

        let mut s = Settings::default();
        s.sim.v2_api_key = "x".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("sim.v2_api_key"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn the_v2_key_and_sign_type_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WXLEDGER__PAY__API", "v2");
            jail.set_env(
                "WXLEDGER__PAY__V2__API_KEY",
                "192006250b4c09247ec02edce69f6a2d",
            );
            jail.set_env("WXLEDGER__PAY__V2__SIGN_TYPE", "MD5");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.pay.api, PayApi::V2);
            assert_eq!(s.pay.v2.sign_type, V2SignType::Md5);
            assert_eq!(s.pay.v2_api_key(), Some("192006250b4c09247ec02edce69f6a2d"));
            assert!(!format!("{s:?}").contains("192006250b4c09247ec02edce69f6a2d"));
            jail.set_env("WXLEDGER__PAY__V2__SIGN_TYPE", "SHA1");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("pay.v2.sign_type"), "{err}");
            Ok(())
        });
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
