//! TLS to Postgres against the machine's server, which runs with Debian's self-signed
//! "snakeoil" certificate (CN and SAN `localhost`): each sslmode connects, or refuses,
//! as libpq's would.

use wxledger::store::db::{self, tls::SslMode};

use crate::common::database_url;

/// The certificate the local Postgres presents (`SHOW ssl_cert_file`).
pub const SERVER_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn settings(
    url: String,
    mode: SslMode,
    root: Option<&str>,
) -> wxledger::settings::DatabaseSettings {
    wxledger::settings::DatabaseSettings {
        url,
        sslmode: mode,
        ssl_root_cert: root.map(Into::into),
        ..Default::default()
    }
}

/// Whether a connection with these settings is up, and encrypted.
async fn connect(s: &wxledger::settings::DatabaseSettings) -> Result<bool, String> {
    let config = db::pg_config(s).map_err(|e| e.to_string())?;
    let client = db::connect_dedicated(&config)
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn each_sslmode_encrypts_and_verifies_as_libpq_would() {
    let url = database_url();
    let by_name = url.replace("127.0.0.1", "localhost");
    assert!(!connect(&settings(url.clone(), SslMode::Disable, None))
        .await
        .unwrap());
    assert!(connect(&settings(url.clone(), SslMode::Prefer, None))
        .await
        .unwrap());
    assert!(connect(&settings(url.clone(), SslMode::Require, None))
        .await
        .unwrap());
    // Signed by the given root; the name (127.0.0.1) is not checked.
    assert!(
        connect(&settings(url.clone(), SslMode::VerifyCa, Some(SERVER_CERT)))
            .await
            .unwrap()
    );
    // verify-full checks the name too: right for "localhost", wrong for 127.0.0.1.
    assert!(
        connect(&settings(by_name, SslMode::VerifyFull, Some(SERVER_CERT)))
            .await
            .unwrap()
    );
    let err = connect(&settings(
        url.clone(),
        SslMode::VerifyFull,
        Some(SERVER_CERT),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    // A root that did not sign the server's certificate (a public CA): refused, even by
    // verify-ca.
    let bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
    let end = "-----END CERTIFICATE-----";
    let other_ca =
        &bundle[bundle.find("-----BEGIN").unwrap()..bundle.find(end).unwrap() + end.len()];
    let dir = std::env::temp_dir().join(format!("wxl-pgtls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other-ca.pem");
    std::fs::write(&other, other_ca).unwrap();
    let result = connect(&settings(url, SslMode::VerifyCa, other.to_str())).await;
    std::fs::remove_dir_all(&dir).unwrap();
    let err = result.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
}
