//! Building and running the daemon: `App::build(settings)` connects, migrates and binds;
//! `run_until_stopped` serves until the shutdown token fires, then drains.

use std::{net::SocketAddr, time::Duration};

use rand::RngCore;
use secrecy::ExposeSecret;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

use crate::{
    core::{
        clock::{self, Clock},
        crypto::{decode_aes256_key, Sealer},
    },
    daemon::{
        api::{self, AppState, Shared},
        auth::Tokens,
        commands::{Ctx, Parts},
        metrics::Metrics,
    },
    settings::{Mode, PayApi, Settings, SettingsError},
    store::{
        db::{self, DbError},
        outcomes::{OutcomeStream, Publisher},
        projector::{ProjectionWatch, Projector},
        stream::{EventLog, LogError},
    },
    wechat::{pay::v2::V2Client, MiniProgram, PayClient},
};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// NATS or the stream.
    #[error("event log: {0}")]
    Log(LogError),
    /// Postgres or a migration.
    #[error("database: {0}")]
    Db(DbError),
    /// The listener could not be bound (address in use, not ours, no permission).
    #[error("http.listen {addr}: {}", bind_cause(.source))]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The metrics listener.
    #[error("metrics.listen: {}", bind_cause(.0))]
    BindMetrics(std::io::Error),
    /// WeChat Pay's keys.
    #[error("pay: {0}")]
    Pay(String),
    /// Production settings without their credentials, or with development ones.
    #[error("{0}")]
    Settings(SettingsError),
}

/// "address in use" rather than "Address already in use (os error 98)".
fn bind_cause(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "no such local address".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

impl From<LogError> for StartError {
    fn from(e: LogError) -> Self {
        StartError::Log(e)
    }
}

impl From<DbError> for StartError {
    fn from(e: DbError) -> Self {
        StartError::Db(e)
    }
}

/// The daemon, built and bound, not yet serving.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    /// `metrics.listen` and its router, when /metrics has a listener of its own.
    metrics_listener: Option<(TcpListener, axum::Router)>,
    projector: Option<Projector>,
    publisher: Option<Publisher>,
    log: EventLog,
    stop: CancellationToken,
    grace: Duration,
    state: AppState,
    expiry_every: Duration,
    reconcile_every: Duration,
    reconcile_after: Duration,
    certificates_every: Duration,
    connections: crate::daemon::limits::ConnectionLimits,
}

impl App {
    /// Connects to NATS and Postgres (waiting for them), migrates, binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_clock(settings, clock::system()).await
    }

    /// [`App::build`] with an injected clock.
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> Result<Self, StartError> {
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: settings.http.listen,
                source,
            })?;
        Self::build_on(settings, clock, listener).await
    }

    /// [`App::build_with_clock`] on a listener bound by the caller (who may need its
    /// address first, e.g. for `pay.notify_url`).
    pub async fn build_on(
        settings: Settings,
        clock: Clock,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        settings
            .require_production_credentials()
            .map_err(StartError::Settings)?;
        match settings.mode {
            Mode::Production => tracing::info!(
                mode = %settings.mode,
                chosen_by = %settings.mode_source,
                "production mode: every credential configured, no development key material"
            ),
            Mode::Development => tracing::warn!(
                mode = %settings.mode,
                chosen_by = %settings.mode_source,
                wechat_api_base = %settings.wechat.api_base,
                pay_api_base = %settings.pay.api_base,
                "DEVELOPMENT MODE: the simulator's credentials and the public development keys \
                 may be trusted; never expose this daemon to the internet or real money"
            ),
        }
        let metrics = Metrics::new();
        metrics.configure(&settings.metrics);
        let metrics_listener = match settings.metrics.listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(StartError::BindMetrics)?;
                tracing::info!(%addr, "/metrics is served on metrics.listen only");
                Some(listener)
            }
            None => None,
        };
        let pool = db::pool(&settings.database)?;
        db::wait_until_up(
            &pool,
            &db::pg_config(&settings.database)?.target(),
            settings.database.connect_timeout,
        )
        .await?;
        db::migrate(&pool, &settings.database.schema).await?;
        let log = EventLog::dial(&settings.nats).await?;
        log.record_group_commit_into(&metrics);
        if settings.mode == Mode::Production && !log.server_requires_auth() {
            // Whoever reaches such a server could append a payment.notified of their own.
            return Err(StartError::Settings(SettingsError::Production(vec![
                crate::settings::Problem {
                    field: "nats.auth",
                    problem: "the NATS server accepts anonymous clients: production needs one \
                              with users and permissions (config/nats/auth.conf), so that only \
                              the daemon can append events"
                        .into(),
                },
            ])));
        }
        log.ensure_stream(&settings.nats).await?;
        let outcome_stream = OutcomeStream::ensure(&log, &settings.nats).await?;

        let (applied_tx, applied_rx) = watch::channel(0);
        let demand = crate::store::projector::Demand::default();
        let projector = settings.projector.enabled.then(|| {
            Projector::new(
                db::pg_config(&settings.database).expect("the pool was built from the same URL"),
                &settings.database.schema,
                log.clone(),
                settings.projector.batch_size,
                settings.projector.batch_linger,
                applied_tx,
            )
            .with_demand(demand.clone())
            .with_metrics(metrics.clone())
        });

        let pay = PayClient::new(&settings.pay, &settings.wechat.appid, clock.clone())
            .map_err(|e| StartError::Pay(e.to_string()))?
            .with_metrics(metrics.clone());
        if settings.pay.platform_certificates {
            // WeChat Pay may be down at start; verification then downloads on demand.
            if let Err(e) = pay.refresh_certificates().await {
                tracing::warn!(error = %e, "platform certificates not downloaded at start");
            }
        }
        let pay_v2 = V2Client::new(&settings.pay, &settings.wechat.appid, clock.clone())
            .map_err(|e| StartError::Pay(e.to_string()))?
            .map(|v2| v2.with_metrics(metrics.clone()));
        if settings.pay.api == PayApi::V2 {
            tracing::info!("WeChat Pay API v2: new prepays use unifiedorder");
        }
        let publisher = settings.outcomes.publish.then(|| {
            Publisher::new(
                db::pg_config(&settings.database).expect("the pool was built from the same URL"),
                &settings.database.schema,
                outcome_stream,
                applied_rx.clone(),
                settings.outcomes.poll,
                settings.outcomes.batch_size,
                metrics.clone(),
            )
        });
        // When the projector last committed, for the lag gauge of /metrics.
        let mut committed = applied_rx.clone();
        let commit_clock = clock.clone();
        let commit_metrics = metrics.clone();
        tokio::spawn(async move {
            while committed.changed().await.is_ok() {
                let now = commit_clock().timestamp_micros() as f64 / 1e6;
                commit_metrics.projector_committed(now);
            }
        });
        for field in settings.privacy.development_keys_in_use() {
            tracing::warn!(
                field,
                "not set: personal data uses the public development key"
            );
        }
        let commands = Ctx::new(Parts {
            log: log.clone(),
            pool: pool.clone(),
            wechat: MiniProgram::new(&settings.wechat, clock.clone()).with_metrics(metrics.clone()),
            sealer: Sealer::new(&session_key_encryption_key(&settings)),
            vault: crate::store::privacy::Vault::new(&settings.privacy),
            projection: ProjectionWatch::new(applied_rx, pool.clone())
                .with_demand(demand)
                .with_metrics(metrics.clone()),
            clock,
            read_your_writes: settings.projector.read_your_writes_timeout,
            pay,
            pay_v2,
            pay_api: settings.pay.api,
            metrics: metrics.clone(),
            max_amount_fen: settings.pay.max_amount_fen,
            order_ttl: chrono::Duration::from_std(settings.pay.order_ttl)
                .expect("validated: at most 7 days"),
        });
        let state = AppState::new(Shared {
            commands,
            tokens: tokens(&settings),
            migrated: true,
            max_notify_bytes: settings.pay.max_notify_bytes,
            admin_token: (!settings.auth.admin_disabled)
                .then(|| settings.auth.admin_token.clone())
                .flatten(),
            limits: crate::daemon::limits::Limits::new(&settings.limits),
            readiness: api::Readiness::new(
                settings.http.ready_cache,
                settings.projector.ready_max_lag_events,
            ),
        });
        let router = api::router(state.clone(), settings.http.max_body_bytes);
        // With a listener of its own, /metrics is not on the public API listener.
        let (router, metrics_listener) = match metrics_listener {
            Some(l) => (router, Some((l, api::metrics_router(state.clone())))),
            None => (router.merge(api::metrics_router(state.clone())), None),
        };
        Ok(Self {
            listener,
            router,
            metrics_listener,
            projector,
            publisher,
            log,
            stop: CancellationToken::new(),
            grace: settings.http.shutdown_grace,
            state,
            expiry_every: settings.pay.expiry_sweep,
            reconcile_every: settings.pay.reconcile_sweep,
            reconcile_after: settings.pay.reconcile_after,
            certificates_every: if settings.pay.platform_certificates {
                settings.pay.certificate_refresh
            } else {
                Duration::MAX
            },
            connections: crate::daemon::limits::ConnectionLimits::new(&settings.limits),
        })
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` listens when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|(l, _)| l.local_addr().expect("a bound listener has an address"))
    }

    /// Cancelling this token stops the daemon gracefully.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until stopped: stops accepting, drains requests (up to the grace period),
    /// lets the projector finish its batch and the outcome publisher its message, flushes
    /// NATS.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stop = self.stop.clone();
        // The projector runs on a runtime of its own, so the requests' tasks never queue
        // ahead of a batch: every caller that waits for its own event waits on it.
        let projector_runtime = match self.projector {
            Some(_) => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("wxledger-projector")
                    .enable_all()
                    .build()?,
            ),
            None => None,
        };
        let projector = self
            .projector
            .zip(projector_runtime.as_ref())
            .map(|(p, runtime)| runtime.spawn(p.run(stop.child_token())));
        let publisher = self
            .publisher
            .map(|p| tokio::spawn(p.run(stop.child_token())));
        let expiry = tokio::spawn(crate::daemon::jobs::expiry::run(
            self.state.commands.clone(),
            self.expiry_every,
            stop.child_token(),
        ));
        let settle = tokio::spawn(crate::daemon::jobs::settle::run(
            self.state.commands.clone(),
            self.reconcile_every,
            self.reconcile_after,
            stop.child_token(),
        ));
        let certificates = tokio::spawn(refresh_certificates(
            self.state.commands.clone(),
            self.certificates_every,
            stop.child_token(),
        ));
        let serve = crate::daemon::limits::serve(
            self.listener,
            self.router,
            self.connections.clone(),
            stop.clone(),
        );
        let served = tokio::spawn(serve);
        // The metrics listener is bounded like the API's (header timeout, connections).
        let metrics_served = self.metrics_listener.map(|(listener, router)| {
            tokio::spawn(crate::daemon::limits::serve(
                listener,
                router,
                self.connections.clone(),
                stop.clone(),
            ))
        });
        stop.cancelled().await;
        let result = match tokio::time::timeout(self.grace, served).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => {
                tracing::warn!("requests still in flight after the grace period; closing");
                Ok(())
            }
        };
        if let Some(task) = metrics_served {
            let _ = tokio::time::timeout(self.grace, task).await;
        }
        // Each background task gets the grace period to finish what it holds; one still
        // running then is aborted, not left behind detached (with its locks).
        let tasks = [projector, publisher, Some(expiry), Some(settle)];
        for mut task in tasks.into_iter().flatten() {
            if tokio::time::timeout(self.grace, &mut task).await.is_err() {
                task.abort();
            }
        }
        certificates.abort();
        if let Some(runtime) = projector_runtime {
            runtime.shutdown_background();
        }
        self.log.close().await;
        result
    }
}

async fn refresh_certificates(app: Ctx, every: Duration, stop: CancellationToken) {
    if every == Duration::MAX {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = app.pay.refresh_certificates().await {
            tracing::warn!(error = %e, "platform certificate refresh failed; keeping the ones held");
        }
    }
}

/// The bearer tokens' keys; a random one only in development mode (production requires
/// `auth.jwt_secret`, checked before).
fn tokens(settings: &Settings) -> Tokens {
    let auth = &settings.auth;
    let secret = match &auth.jwt_secret {
        Some(secret) => secret.expose_secret().as_bytes().to_vec(),
        None => {
            assert_eq!(settings.mode, Mode::Development, "production requires it");
            tracing::warn!(
                "auth.jwt_secret is not set (development mode): tokens use a random key and \
                 die with this process"
            );
            random_key().to_vec()
        }
    };
    let tokens = Tokens::new(&auth.jwt_kid, &secret, auth.token_ttl.as_secs());
    match (&auth.jwt_previous_kid, &auth.jwt_previous_secret) {
        (Some(kid), Some(previous)) => {
            tokens.with_previous(kid, previous.expose_secret().as_bytes())
        }
        _ => tokens,
    }
}

fn session_key_encryption_key(settings: &Settings) -> [u8; 32] {
    match &settings.auth.session_key_encryption_key {
        Some(key) => decode_aes256_key(key.expose_secret()).expect("validated at load"),
        None => {
            assert_eq!(settings.mode, Mode::Development, "production requires it");
            tracing::warn!(
                "auth.session_key_encryption_key is not set: session keys sealed now cannot be \
                 opened after a restart (users log in again)"
            );
            random_key()
        }
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    key
}
