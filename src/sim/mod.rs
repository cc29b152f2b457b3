//! `wxledger sim`: a WeChat stand-in for development, demos and tests. It speaks the
//! mini program and WeChat Pay API v3 endpoints with real crypto, and has control
//! endpoints under `/sim/...` to mint codes, pay, arm faults and read what it was asked.

pub mod devkeys;
mod mini;
mod pay;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    routing::{get, post},
    Router,
};
use tokio::{net::TcpListener, sync::Mutex};
use tokio_util::sync::CancellationToken;

use crate::settings::SimSettings;

/// The simulator, bound, not yet serving.
pub struct Simulator {
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
}

#[derive(Clone)]
struct SimState {
    settings: Arc<SimConfig>,
    world: Arc<Mutex<mini::World>>,
    pay: pay::Pay,
}

struct SimConfig {
    appid: String,
    app_secret: String,
    access_token_ttl_secs: i64,
}

impl Simulator {
    /// Binds the simulator's listener.
    pub async fn build(settings: &SimSettings) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let state = SimState {
            settings: Arc::new(SimConfig {
                appid: settings.appid.clone(),
                app_secret: settings.app_secret.clone(),
                access_token_ttl_secs: i64::try_from(settings.access_token_ttl.as_secs())
                    .unwrap_or(7200),
            }),
            world: Arc::new(Mutex::new(mini::World::default())),
            pay: pay::Pay::new(settings, stop.clone())?,
        };
        let router = Router::new()
            .route("/sns/jscode2session", get(mini::jscode2session))
            .route("/cgi-bin/stable_token", post(mini::stable_token))
            .route("/cgi-bin/token", get(mini::token))
            .route(
                "/wxa/business/getuserphonenumber",
                post(mini::getuserphonenumber),
            )
            .route("/sim/mini/login-codes", post(mini::mint_login_code))
            .route("/sim/mini/phone-codes", post(mini::mint_phone_code))
            .route("/sim/mini/encrypted-phone", post(mini::encrypt_phone))
            .route("/sim/mini/faults", post(mini::arm_fault))
            .route("/sim/mini/revoke-tokens", post(mini::revoke_tokens))
            .route("/sim/mini/stats", get(mini::stats))
            .route("/sim/mini/session-key", get(mini::session_key))
            .merge(pay::routes())
            .with_state(state);
        Ok(Self {
            listener: TcpListener::bind(settings.listen).await?,
            router,
            stop,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Cancelling this token stops it.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(self.stop.cancelled_owned())
            .await
    }
}
