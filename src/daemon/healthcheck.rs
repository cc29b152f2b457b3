//! `wxledger healthcheck`: asks a running daemon's `/readyz` and answers with the exit
//! status, for container healthchecks in images that have no curl. `/readyz` is the
//! readiness of everything the daemon serves (the API role's, which needs all the webhook
//! role needs and more), so a healthy container serves every route; `--url` asks another
//! (`/readyz/webhooks` for an instance that only takes notifies).

use std::{net::SocketAddr, time::Duration};

/// The URL of the daemon's readiness endpoint (`/readyz`: every role) on `listen`,
/// reached over loopback when it listens on every interface.
pub fn readyz_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{host}:{}/readyz", listen.port())
}

/// Why the daemon is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// No answer within the timeout, or no connection.
    #[error("{url}: no answer: {cause}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The error and its causes.
        cause: String,
    },
    /// An answer other than 200.
    #[error("{url}: {status}: {body}")]
    NotReady {
        /// The URL asked.
        url: String,
        /// Its status.
        status: reqwest::StatusCode,
        /// The start of its body (the reason).
        body: String,
    },
}

/// Asks `url` once, within `timeout`; `Ok` on 200.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), Unhealthy> {
    let unreachable = |e: reqwest::Error| Unhealthy::Unreachable {
        url: url.to_owned(),
        cause: crate::core::causes::http(e),
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(unreachable)?;
    let response = client.get(url).send().await.map_err(unreachable)?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body = body.chars().take(200).collect();
    Err(Unhealthy::NotReady {
        url: url.to_owned(),
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_is_asked_over_loopback() {
        let url = |s: &str| readyz_url(s.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/readyz");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/readyz");
        assert_eq!(url("10.1.2.3:9000"), "http://10.1.2.3:9000/readyz");
        assert_eq!(url("[::1]:80"), "http://[::1]:80/readyz");
    }

    #[tokio::test]
    async fn a_closed_port_is_unhealthy_with_its_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = probe(&readyz_url(addr), Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no answer"), "{err}");
        assert!(
            err.to_lowercase().contains("refused"),
            "the cause is kept: {err}"
        );
    }
}
