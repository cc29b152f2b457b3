//! Why settings were refused: [`SettingsError`], naming the field, and the credentials
//! production refuses ([`Problem`]). A leaf: the sections, and the modules that keep
//! their own settings beside their code (db, events, limits, metrics, privacy), import
//! it without importing the settings root.

use std::fmt;

use super::env::UnknownVariable;

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

/// One credential that production refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the setting, e.g. `pay.apiv3_key`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// A [`SettingsError::Invalid`] naming `field`.
pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field,
        problem: problem.into(),
    }
}
