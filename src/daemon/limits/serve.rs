//! The accept loop: at most `max_connections` served at once (the rest wait in the
//! listen backlog), a header read timeout that also ends idle keep-alive connections,
//! the peer's address for the rate limits, and graceful shutdown. `axum::serve` offers
//! neither the header timeout nor the connection limit.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ConnectInfo, Router};
use hyper::{body::Incoming, server::conn::http1, Request};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::settings::LimitSettings;

/// What the accept loop needs of [`LimitSettings`].
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    max_connections: usize,
    header_read_timeout: Duration,
    keep_alive: bool,
}

impl ConnectionLimits {
    /// The connection limits of `settings`.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            max_connections: settings.max_connections,
            header_read_timeout: settings.header_read_timeout,
            keep_alive: settings.keep_alive,
        }
    }
}

/// Serves `router` on `listener` until `stop` fires; then stops accepting, lets each
/// connection finish the request it is serving (idle ones close at once), and returns
/// when all have closed. The caller bounds that wait with its grace period.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(limits.keep_alive);
    loop {
        // Take a permit before accepting: past the limit, clients wait in the backlog.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: a connection that died in the backlog is nothing; running out of
/// file descriptors needs a pause, or the loop would spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; pausing before the next");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
