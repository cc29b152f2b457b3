//! `[database]`: the Postgres that holds the projections.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::duration::seconds;
use super::error::{invalid, SettingsError};
use crate::store::db::{
    schema_name::check_schema_name,
    sslmode::{SslMode, SYSTEM_ROOTS},
};

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
    /// How long start-up waits for Postgres before giving up; `connect_timeout_secs`, in
    /// seconds.
    #[serde(rename = "connect_timeout_secs", deserialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// TLS to Postgres, as libpq's `sslmode`: `disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full` (what a remote Postgres should use).
    pub sslmode: SslMode,
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
            connect_timeout: Duration::from_secs(30),
            sslmode: Default::default(),
            ssl_root_cert: None,
        }
    }
}

impl DatabaseSettings {
    /// Checks the values the types cannot, TLS included.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_tls()?;
        check_schema_name(&self.schema).map_err(|problem| invalid("database.schema", problem))?;
        if self.pool_size < 2 {
            return Err(invalid(
                "database.pool_size",
                "must be at least 2 (the projector holds one connection)",
            ));
        }
        Ok(())
    }

    /// Checks `database.sslmode` and `database.ssl_root_cert`.
    fn validate_tls(&self) -> Result<(), SettingsError> {
        if self
            .url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|kv| kv.starts_with("sslmode=")))
        {
            return Err(invalid(
                "database.url",
                "names sslmode: set database.sslmode instead",
            ));
        }
        match (&self.ssl_root_cert, self.sslmode) {
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => Err(invalid(
                "database.ssl_root_cert",
                format!(
                    "sslmode {} verifies the server: set the CA's PEM file, or \"{SYSTEM_ROOTS}\"",
                    self.sslmode.as_str()
                ),
            )),
            (Some(path), _) if path.as_os_str() != SYSTEM_ROOTS && !path.is_file() => Err(invalid(
                "database.ssl_root_cert",
                format!("{}: no such file", path.display()),
            )),
            _ => Ok(()),
        }
    }
}
