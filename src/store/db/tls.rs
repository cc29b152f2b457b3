//! TLS to Postgres (`database.sslmode`, `database.ssl_root_cert`), with libpq's meanings,
//! on rustls: `disable`, `prefer` and `require` (encrypted, server not verified),
//! `verify-ca` (signed by a trusted CA) and `verify-full` (and for this host name).

use std::{path::PathBuf, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use super::sslmode::{SslMode, SYSTEM_ROOTS};
use crate::settings::database::DatabaseSettings;

/// True when `config` reaches a Postgres off this machine (a Unix socket, `localhost` or a
/// loopback address is not).
pub fn is_remote(config: &tokio_postgres::Config) -> bool {
    use tokio_postgres::config::Host;
    config.get_hosts().iter().any(|host| match host {
        Host::Tcp(name) => !is_loopback_host(name),
        #[cfg(unix)]
        Host::Unix(_) => false,
    })
}

/// `localhost` or a loopback address.
pub fn is_loopback_host(name: &str) -> bool {
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Warns when `config` reaches Postgres over a network without `verify-full`: the
/// password and the books would then cross it unprotected or to an unverified server.
pub fn warn_if_unverified_remote(config: &tokio_postgres::Config, mode: SslMode) {
    if is_remote(config) && mode != SslMode::VerifyFull {
        tracing::warn!(
            sslmode = mode.as_str(),
            "Postgres is reached over a network without database.sslmode = \"verify-full\""
        );
    }
}

/// The TLS connector for `settings`, and the `sslmode` tokio-postgres is to use.
pub fn connector(
    settings: &DatabaseSettings,
) -> Result<(MakeRustlsConnect, tokio_postgres::config::SslMode), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match settings.sslmode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Unverified(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = roots(settings.ssl_root_cert.as_ref())?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("database.ssl_root_cert: {e}"))?;
            if settings.sslmode == SslMode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mode = match settings.sslmode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    };
    Ok((MakeRustlsConnect::new(config), mode))
}

fn roots(path: Option<&PathBuf>) -> Result<RootCertStore, String> {
    let field = "database.ssl_root_cert";
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match path {
        Some(p) if p.as_os_str() == SYSTEM_ROOTS => rustls_native_certs::load_native_certs().certs,
        Some(p) => CertificateDer::pem_file_iter(p)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("{field}: {}: {e}", p.display()))?,
        None => return Err(format!("{field}: not set")),
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{field}: no usable CA certificate"));
    }
    Ok(roots)
}

/// `prefer` / `require`: encryption without authentication, as libpq does. Signatures
/// are still checked, so the session is at least bound to the presented key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not compared.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(toml: &str) -> Result<DatabaseSettings, String> {
        use figment::providers::Format;
        figment::Figment::new()
            .merge(figment::providers::Toml::string(toml))
            .extract::<DatabaseSettings>()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sslmode_parses_libpq_names_and_defaults_to_disable() {
        assert_eq!(db("").unwrap().sslmode, SslMode::Disable);
        for (name, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(db(&format!("sslmode = \"{name}\"")).unwrap().sslmode, mode);
        }
        let err = db("sslmode = \"verify_full\"").unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
    }

    #[test]
    fn verifying_modes_need_a_root_and_the_url_may_not_name_sslmode() {
        let mut s = db("sslmode = \"verify-full\"").unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("database.ssl_root_cert"), "{err}");
        s.ssl_root_cert = Some("/nonexistent/ca.pem".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("no such file"), "{err}");
        s.ssl_root_cert = Some(SYSTEM_ROOTS.into());
        s.validate().unwrap();
        assert_eq!(
            connector(&s).unwrap().1,
            tokio_postgres::config::SslMode::Require
        );
        s.url = "postgres://db.example:5432/wxledger?sslmode=require".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("database.sslmode"), "{err}");
    }

    #[test]
    fn a_root_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("wxl-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut s = db("sslmode = \"verify-ca\"").unwrap();
        s.ssl_root_cert = Some(path);
        s.validate().unwrap();
        let err = connector(&s).err().unwrap();
        assert!(err.contains("no usable CA certificate"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
