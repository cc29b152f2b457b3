//! `database.sslmode`: how a connection to Postgres uses TLS, with libpq's names. A leaf,
//! so that the `[database]` section can name it without importing the TLS code.

use serde::Deserialize;

/// How a connection to Postgres uses TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plaintext only: the default, as before; fine on loopback or a Unix socket, never
    /// across a network.
    #[default]
    Disable,
    /// TLS when the server offers it, else plaintext; the server is not verified.
    Prefer,
    /// TLS or nothing; the server's certificate is not verified.
    Require,
    /// TLS with a certificate signed by `ssl_root_cert`; any host name.
    VerifyCa,
    /// TLS with a certificate signed by `ssl_root_cert` for the host connected to: what a
    /// remote Postgres should use.
    VerifyFull,
}

impl SslMode {
    /// The libpq name, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// `ssl_root_cert` value that means the operating system's trusted roots.
pub const SYSTEM_ROOTS: &str = "system";
