//! Where the URLs of the settings point: NATS on this machine or with credentials, Postgres
//! off it.

/// Every server of a (comma-separated) NATS URL is on this machine.
pub(super) fn nats_url_is_loopback(url: &str) -> bool {
    url.split(',').all(|one| {
        let rest = one.trim().split_once("://").map_or(one.trim(), |(_, r)| r);
        let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host_port.split(':').next().unwrap_or_default(),
        };
        crate::store::db::tls::is_loopback_host(host)
    })
}

/// The Postgres URL names a host off this machine (a Unix socket or loopback is not).
pub(super) fn postgres_is_remote(url: &str) -> bool {
    url.parse::<tokio_postgres::Config>()
        .is_ok_and(|config| crate::store::db::tls::is_remote(&config))
}

pub(super) fn nats_url_has_credentials(url: &str) -> bool {
    url.split(',').all(|one| {
        let rest = one.trim().split_once("://").map_or(one.trim(), |(_, r)| r);
        rest.contains('@')
    })
}
