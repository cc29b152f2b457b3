//! The one way to reach NATS: credentials (`nats.auth`), TLS (`nats.tls`), a start-up wait
//! bounded by `nats.connect_timeout_secs`, and errors that name the cause and the URL
//! (without its credentials). The daemon, replay, audit, `events tail` and the benches
//! all connect through [`connect`].

pub mod settings;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use tokio::sync::watch;

pub use settings::{secret, ConnectError, NatsAuthSettings, NatsTlsSettings};

use crate::{core::causes::chain, settings::nats::NatsSettings};

/// `url` with any `user:password@` or `token@` replaced by `***@`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = match one.find("://") {
                Some(i) => one.split_at(i + 3),
                None => ("", one),
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}***{}", &rest[at..]),
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The longest pause between two reconnection attempts: a server back from a restart is
/// reached within it (the client's own default grows to 4 s).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// Counts the client's reconnections: a reader whose consumer lives in the server's
/// memory watches it to make the consumer again at once, since a restarted server has
/// forgotten it.
pub type Reconnections = watch::Receiver<u64>;

/// What the event callback keeps: whether the connection was lost, and the count of
/// connections made again since.
#[derive(Default)]
struct Reconnecting {
    lost: AtomicBool,
    count: watch::Sender<u64>,
}

/// The servers of `url`, a comma-separated list (`nats://a:4222,nats://b:4222`): the
/// client connects to one and fails over to the others. async-nats parses a `&str` as one
/// URL, so the list is split here.
pub fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .collect()
}

/// Connects to `settings.url` as `name` with the configured credentials and TLS.
/// Failures that retrying cannot fix (credentials refused, TLS, a bad URL or settings)
/// return at once; an unreachable server (refused, DNS, timeout) is logged at once and
/// retried until `connect_timeout_secs`. Once connected, the client reconnects forever,
/// at most [`MAX_RECONNECT_DELAY`] apart.
pub async fn connect(
    settings: &NatsSettings,
    name: &str,
) -> Result<async_nats::Client, ConnectError> {
    Ok(connect_watched(settings, name).await?.0)
}

/// [`connect`], also answering the client's [`Reconnections`].
pub async fn connect_watched(
    settings: &NatsSettings,
    name: &str,
) -> Result<(async_nats::Client, Reconnections), ConnectError> {
    let reconnecting = Arc::new(Reconnecting::default());
    let reconnections = reconnecting.count.subscribe();
    let url = redact_url(&settings.url);
    let started = tokio::time::Instant::now();
    let deadline = started + settings.connect_timeout;
    let mut logged = false;
    loop {
        let options = options(settings, name, reconnecting.clone()).await?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = tokio::time::timeout(
            remaining.max(Duration::from_millis(100)),
            options.connect(servers(&settings.url)),
        )
        .await;
        let cause = match attempt {
            Ok(Ok(client)) => {
                if logged {
                    tracing::info!(url = %url, "connected to NATS");
                }
                return Ok((client, reconnections));
            }
            Ok(Err(e)) => match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    return Err(ConnectError::Unauthorized {
                        url,
                        cause: chain(&e),
                    })
                }
                ConnectErrorKind::Tls => {
                    return Err(ConnectError::Tls {
                        url,
                        cause: chain(&e),
                    })
                }
                ConnectErrorKind::ServerParse => {
                    return Err(ConnectError::BadUrl {
                        url,
                        cause: chain(&e),
                    })
                }
                _ if is_tls_failure(&e) => {
                    return Err(ConnectError::Tls {
                        url,
                        cause: chain(&e),
                    })
                }
                _ => network_cause(&e),
            },
            Err(_) => "no answer (timed out)".to_owned(),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ConnectError::Unreachable {
                url,
                cause,
                waited_secs: (now - started).as_secs(),
            });
        }
        if !logged {
            tracing::warn!(
                url = %url,
                error = %cause,
                timeout_secs = settings.connect_timeout.as_secs(),
                "NATS is not reachable; waiting for it (nats.connect_timeout_secs)"
            );
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(250).min(deadline - now)).await;
    }
}

async fn options(
    settings: &NatsSettings,
    name: &str,
    reconnecting: Arc<Reconnecting>,
) -> Result<ConnectOptions, ConnectError> {
    let options = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .connection_timeout(
            Duration::from_secs(2).min(settings.connect_timeout.max(Duration::from_secs(1))),
        )
        .event_callback(move |event| {
            let reconnecting = reconnecting.clone();
            async move { on_event(event, &reconnecting) }
        });
    let options = settings.auth.apply(options).await?;
    Ok(settings.tls.apply(options))
}

/// The pause before reconnection attempt `attempts` (counted from 1): none for the
/// first, then doubling from 10 ms up to [`MAX_RECONNECT_DELAY`].
fn reconnect_delay(attempts: usize) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(2)).unwrap_or(u32::MAX);
    match attempts {
        0 | 1 => Duration::ZERO,
        _ => Duration::from_millis(10u64.saturating_mul(2u64.saturating_pow(doublings)))
            .min(MAX_RECONNECT_DELAY),
    }
}

/// Logs a connection event, and counts each connection made again after one was lost.
fn on_event(event: Event, reconnecting: &Reconnecting) {
    match event {
        Event::Connected => {
            if reconnecting.lost.swap(false, Ordering::SeqCst) {
                reconnecting.count.send_modify(|n| *n += 1);
            }
            tracing::info!("NATS connection (re)established");
        }
        Event::Disconnected => {
            reconnecting.lost.store(true, Ordering::SeqCst);
            tracing::warn!("NATS connection lost; reconnecting");
        }
        // Permission violations and the like: the server refused something.
        Event::ServerError(e) => tracing::error!(error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
        other => tracing::debug!(event = %other, "NATS event"),
    }
}

/// A handshake rustls refused (unknown issuer, wrong name, ...): the client reports it as
/// an I/O error wrapping the rustls error.
fn is_tls_failure(e: &async_nats::ConnectError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// "connection refused", "DNS lookup failed: ...", and the like, from the error's chain.
fn network_cause(e: &async_nats::ConnectError) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ if e.kind() == ConnectErrorKind::Dns => format!("DNS lookup failed: {io}"),
                _ => io.to_string(),
            };
        }
        source = cause.source();
    }
    match e.kind() {
        ConnectErrorKind::Dns => format!("DNS lookup failed: {}", chain(e)),
        ConnectErrorKind::TimedOut => "no answer (timed out)".to_owned(),
        _ => chain(e),
    }
}

#[cfg(test)]
mod tests;
