//! Typed settings: built-in defaults (production's; development mode adds the simulator's
//! credentials), then an optional TOML file, then `WXLEDGER__...` environment variables
//! (`WXLEDGER__NATS__URL` sets `nats.url`), validated once at start.

mod auth;
mod check;
pub mod database;
pub(crate) mod duration;
mod env;
pub mod error;
mod http;
mod mode;
pub mod nats;
mod outcomes;
mod pay;
mod pay_v2;
mod projector;
mod sim;
mod wechat;

pub use auth::AuthSettings;
pub use database::DatabaseSettings;
pub use env::UnknownVariable;
pub use error::{Problem, SettingsError};
pub use http::HttpSettings;
pub use mode::{
    production_problems, require_production_credentials, require_production_pay_credentials, Mode,
    ModeSource,
};
pub use nats::{GroupCommit, NatsSettings, Storage};
pub use outcomes::OutcomeSettings;
pub use pay::{KeySourceError, PayApi, PaySettings};
pub use pay_v2::{PayV2Settings, V2SignType};
pub use projector::ProjectorSettings;
pub use sim::{SimSettings, SimSigning, SIM_APPID, SIM_APP_SECRET};
pub use wechat::WechatSettings;

use std::path::Path;

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
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
    pub limits: crate::daemon::limits::LimitSettings,
    /// Where `/metrics` is served.
    pub metrics: crate::daemon::metrics::MetricsSettings,
    /// The keys of erasable personal data (crypto-shredding).
    pub privacy: crate::store::privacy::PrivacySettings,
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

    /// Checks the values the types cannot, section by section (the first problem wins).
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.metrics.validate(self.http.listen)?;
        self.nats.validate()?;
        self.database.validate()?;
        self.wechat.validate()?;
        self.auth.validate()?;
        self.pay.validate()?;
        self.limits.validate()?;
        self.privacy.validate()?;
        self.sim.validate()?;
        self.projector.validate()?;
        self.outcomes.validate()
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

#[cfg(test)]
mod tests {
    use figment::providers::Toml;

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
        assert_eq!(settings.outcomes.poll, defaults.outcomes.poll);
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
