//! The shutdown signals: SIGINT, SIGTERM and SIGHUP each ask for the same graceful drain.

/// Resolves on SIGINT, SIGTERM or SIGHUP: each asks for the same graceful drain (stop
/// accepting, finish requests within the grace period, stop the projector after its batch).
/// SIGHUP does not reload: keys and certificates are read at start (platform certificates
/// are refreshed on their own schedule), so a supervisor's hangup drains and exits 0.
///
/// The handlers are installed when this is called, not when the future is first polled:
/// call it before announcing that the process serves. A signal sent between the two
/// would otherwise take its default action (SIGHUP and SIGTERM end the process at once).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, term, hangup) = {
        use tokio::signal::unix::{signal, SignalKind};
        let on = |kind: SignalKind| signal(kind).ok();
        (
            on(SignalKind::interrupt()),
            on(SignalKind::terminate()),
            on(SignalKind::hangup()),
        )
    };
    async move {
        #[cfg(unix)]
        let signal = {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(interrupt) => "SIGINT",
                _ = next(term) => "SIGTERM",
                _ = next(hangup) => "SIGHUP",
            }
        };
        #[cfg(not(unix))]
        let signal = {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        };
        tracing::info!(signal, "signal received");
    }
}
