//! The accept loop: at most `max_connections` served at once (the rest wait in the
//! listen backlog), a header read timeout that also ends idle keep-alive connections,
//! the peer's address for the rate limits, and graceful shutdown. `axum::serve` offers
//! neither the header timeout nor the connection limit.
//!
//! While every slot is taken, idle connections make room, as nginx reuses its idle ones:
//! up to [`RELIEF`] of them are closed each [`RELIEF_EVERY`] that a client waits. Idle is
//! a keep-alive connection between requests, or one that has sent nothing yet. A request
//! in progress, or one whose first bytes have arrived, is never cut. Without this, a
//! client past the limit waited for an idle connection's header timeout (10 s), though
//! the daemon had nothing to do: the load bench saw notifies unanswered for 10 s at
//! 5,000/s, when its client's pool outgrew the limit.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{extract::ConnectInfo, Router};
use hyper::{body::Incoming, server::conn::http1, Request};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Notify, Semaphore},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::settings::LimitSettings;

/// Idle connections closed at most per call for room.
pub const RELIEF: usize = 32;
/// How often a client waiting for a slot calls for room again.
pub const RELIEF_EVERY: Duration = Duration::from_millis(50);
/// At most one WARN this often while clients wait for a slot.
const WARN_EVERY: Duration = Duration::from_secs(60);

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

/// The accept loop's call for room, heard by every connection.
#[derive(Default)]
struct Crowding {
    call: Notify,
    /// How many more idle connections may close for the last call.
    quota: AtomicUsize,
}

impl Crowding {
    /// Asks up to [`RELIEF`] idle connections to close.
    fn call_for_room(&self) {
        self.quota.store(RELIEF, Ordering::SeqCst);
        self.call.notify_waiters();
    }

    /// Resolves once a call for room finds `activity` idle and within the quota.
    async fn asked_to_leave(&self, activity: &Activity) {
        loop {
            self.call.notified().await;
            if activity.is_idle()
                && self
                    .quota
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| q.checked_sub(1))
                    .is_ok()
            {
                return;
            }
        }
    }
}

/// What a connection is doing, as far as closing it for room goes: requests handed to
/// the router and not answered yet. One with none is asked to close; hyper then closes
/// it only if it is between requests or has received nothing yet, and lets a request
/// whose first bytes it has read finish first.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
}

impl Activity {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
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
    let crowding = Arc::new(Crowding::default());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(limits.keep_alive);
    let mut warned: Option<Instant> = None;
    loop {
        // Take a permit before accepting: past the limit, clients wait in the backlog,
        // and idle connections are asked to make room.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "every connection slot is taken (limits.max_connections): closing \
                         idle connections to make room"
                    );
                }
                let waited = async {
                    loop {
                        crowding.call_for_room();
                        tokio::select! {
                            permit = permits.clone().acquire_owned() => {
                                return permit.expect("the semaphore is never closed");
                            }
                            _ = tokio::time::sleep(RELIEF_EVERY) => {}
                        }
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    permit = waited => permit,
                }
            }
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
        let activity = Arc::new(Activity::default());
        let (started, answered) = (activity.clone(), activity.clone());
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                started.in_flight.fetch_add(1, Ordering::SeqCst);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            })
            .map_response(move |response| {
                answered.in_flight.fetch_sub(1, Ordering::SeqCst);
                response
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let (stop, crowding) = (stop.clone(), crowding.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                () = crowding.asked_to_leave(&activity) => {
                    tracing::debug!("idle connection closed to make room");
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it has closed.
    let all = u32::try_from(limits.max_connections).expect("validated: at most MAX_CONNECTIONS");
    let _ = permits.acquire_many(all).await;
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
