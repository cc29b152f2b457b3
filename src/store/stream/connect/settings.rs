//! `[nats.auth]` and `[nats.tls]`: how wxledger proves who it is to NATS and how it uses
//! TLS, checked, with the errors of connecting. A leaf, so that the `[nats]` section can
//! hold these tables without importing the connect code, which reads `[nats]`.

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How wxledger proves who it is to NATS: at most one method. Each secret can be given
/// inline (best from the environment, e.g. `WXLEDGER__NATS__AUTH__PASSWORD`) or as a file
/// (`*_file`, e.g. a mounted secret); a file's trailing newline is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsAuthSettings {
    /// User name, with `password` or `password_file`.
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<SecretString>,
    /// File holding the user's password.
    pub password_file: Option<PathBuf>,
    /// A bearer token (`authorization { token = ... }` on the server).
    pub token: Option<SecretString>,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
    /// An NKey user seed (`SU...`); the server knows only its public key.
    pub nkey_seed: Option<SecretString>,
    /// File holding the NKey seed.
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and seed), for servers run in operator/JWT mode.
    pub creds_file: Option<PathBuf>,
}

/// TLS to NATS. A `tls://` URL or a server that requires TLS also turns it on; the
/// system's roots are trusted unless `ca_file` names others.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsTlsSettings {
    /// Refuse to talk to a server that does not offer TLS.
    pub required: bool,
    /// TLS before the server's INFO (`handshake_first` on the server, nats-server
    /// 2.10.4+); implies `required`.
    pub first: bool,
    /// PEM file of the CA(s) that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (`verify: true`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// Why no connection to NATS could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The settings name a credential or file that cannot be used.
    #[error("settings: {field}: {problem}")]
    Settings {
        /// The setting, e.g. `nats.auth.password_file`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The server refused our credentials (or wanted some): retrying cannot help.
    #[error(
        "nats.url {url}: authorization failed ({cause}); check nats.auth and the server's users"
    )]
    Unauthorized {
        /// The URL, without credentials.
        url: String,
        /// What the client or server said.
        cause: String,
    },
    /// The TLS handshake or its configuration failed: retrying cannot help.
    #[error("nats.url {url}: TLS failed ({cause}); check nats.tls")]
    Tls {
        /// The URL, without credentials.
        url: String,
        /// What failed.
        cause: String,
    },
    /// The URL does not parse.
    #[error("nats.url {url}: {cause}")]
    BadUrl {
        /// The URL, without credentials.
        url: String,
        /// Why it does not parse.
        cause: String,
    },
    /// Nothing answered within `nats.connect_timeout_secs`.
    #[error("nats.url {url}: {cause} (gave up after {waited_secs} s, nats.connect_timeout_secs)")]
    Unreachable {
        /// The URL, without credentials.
        url: String,
        /// The last failure: connection refused, DNS failure, timeout.
        cause: String,
        /// How long start-up waited.
        waited_secs: u64,
    },
}

impl NatsAuthSettings {
    /// Checks that at most one method is chosen and that each is complete.
    pub fn validate(&self) -> Result<(), ConnectError> {
        let methods = [
            self.user.is_some() || self.password.is_some() || self.password_file.is_some(),
            self.token.is_some() || self.token_file.is_some(),
            self.nkey_seed.is_some() || self.nkey_seed_file.is_some(),
            self.creds_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(invalid(
                "nats.auth",
                "choose one of user/password, token, nkey_seed or creds_file",
            ));
        }
        if self.user.is_some() != (self.password.is_some() || self.password_file.is_some()) {
            return Err(invalid(
                "nats.auth.user",
                "set nats.auth.user together with nats.auth.password or password_file",
            ));
        }
        both("nats.auth.password", &self.password, &self.password_file)?;
        both("nats.auth.token", &self.token, &self.token_file)?;
        both("nats.auth.nkey_seed", &self.nkey_seed, &self.nkey_seed_file)?;
        Ok(())
    }

    /// True when some method is configured.
    pub fn is_set(&self) -> bool {
        self.user.is_some()
            || self.token.is_some()
            || self.token_file.is_some()
            || self.nkey_seed.is_some()
            || self.nkey_seed_file.is_some()
            || self.creds_file.is_some()
    }

    /// Adds the configured credentials to `options`, reading files as needed.
    pub(super) async fn apply(
        &self,
        mut options: ConnectOptions,
    ) -> Result<ConnectOptions, ConnectError> {
        if let Some(user) = &self.user {
            let password = secret(
                "nats.auth.password_file",
                &self.password,
                &self.password_file,
            )?
            .unwrap_or_default();
            options = options.user_and_password(user.clone(), password.expose_secret().into());
        }
        if let Some(token) = secret("nats.auth.token_file", &self.token, &self.token_file)? {
            options = options.token(token.expose_secret().into());
        }
        if let Some(seed) = secret(
            "nats.auth.nkey_seed_file",
            &self.nkey_seed,
            &self.nkey_seed_file,
        )? {
            // Checked here so a bad seed is a settings error, not a failed handshake.
            nkeys::KeyPair::from_seed(seed.expose_secret())
                .map_err(|e| invalid("nats.auth.nkey_seed", format!("not an NKey seed: {e}")))?;
            options = options.nkey(seed.expose_secret().into());
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| invalid("nats.auth.creds_file", format!("{}: {e}", path.display())))?;
        }
        Ok(options)
    }
}

impl NatsTlsSettings {
    /// Checks that the files come in usable combinations and exist.
    pub fn validate(&self) -> Result<(), ConnectError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(invalid(
                "nats.tls.cert_file",
                "set nats.tls.cert_file and nats.tls.key_file together",
            ));
        }
        for (field, path) in [
            ("nats.tls.ca_file", &self.ca_file),
            ("nats.tls.cert_file", &self.cert_file),
            ("nats.tls.key_file", &self.key_file),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    return Err(invalid(field, format!("{}: no such file", path.display())));
                }
            }
        }
        Ok(())
    }

    pub(super) fn apply(&self, mut options: ConnectOptions) -> ConnectOptions {
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.required {
            options = options.require_tls(true);
        }
        if self.first {
            options = options.tls_first();
        }
        options
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConnectError {
    ConnectError::Settings {
        field,
        problem: problem.into(),
    }
}

fn both(
    field: &'static str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<(), ConnectError> {
    if inline.is_some() && file.is_some() {
        return Err(invalid(field, "set it or its _file, not both"));
    }
    Ok(())
}

/// A secret given inline or in a file (its trailing newline dropped). Public for the
/// settings tests; the content is never logged.
pub fn secret(
    file_field: &'static str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<Option<SecretString>, ConnectError> {
    if let Some(value) = inline {
        return Ok(Some(value.clone()));
    }
    let Some(path) = file else { return Ok(None) };
    let text = read_file(path).map_err(|e| invalid(file_field, e))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(invalid(file_field, format!("{} is empty", path.display())));
    }
    Ok(Some(SecretString::from(value)))
}

fn read_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}
