//! The simulator's WeChat Pay side (API v3): JSAPI prepay, query and close, platform
//! certificates, all with real merchant-signature checks and signed answers; "paying" a
//! prepay on request and delivering the signed, AES-GCM encrypted notify with WeChat's
//! retry schedule (time-scaled) and the faults a test arms.

mod api;
mod bill;
mod certs;
mod control;
mod notify;
mod orders;
mod refunds;
mod sign;
mod v2;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::FromRef,
    routing::{get, post},
    Router,
};
use rand::Rng;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use x509_cert::{der::Decode, Certificate};

use self::{notify::NotifyFaults, orders::SimOrder};
use super::SimState;
use crate::{
    core::crypto::random_alphanumeric,
    settings::{SimSettings, SimSigning},
    sim::devkeys::{self, PUBLIC_KEY_ID, PUBLIC_KEY_MODE_KEY_PEM},
    wechat::pay::crypto::{normalize_serial, ApiV3Key, SigningKey, VerifyingKey},
};

/// The `/v3/...` endpoints and their `/sim/pay/...` controls.
pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route("/v3/pay/transactions/jsapi", post(api::jsapi))
        .route("/v3/pay/transactions/out-trade-no/{no}", get(api::query))
        .route(
            "/v3/pay/transactions/out-trade-no/{no}/close",
            post(api::close),
        )
        .route("/v3/certificates", get(api::certificates))
        .route("/v3/refund/domestic/refunds", post(refunds::refund))
        .route("/v3/refund/domestic/refunds/{no}", get(refunds::query))
        .route("/sim/pay/refund", post(refunds::settle))
        .route("/sim/pay/refund-reject", post(refunds::arm_reject))
        .route("/sim/pay/refund-lose", post(refunds::arm_lose))
        .route("/sim/pay/refund-query-fail", post(refunds::arm_query_fail))
        .route("/v3/bill/tradebill", get(bill::tradebill))
        .route("/v3/billdownload/file", get(bill::download))
        .route("/sim/pay/bill/faults", post(bill::arm_faults))
        .route("/sim/pay/pay", post(control::pay))
        .route("/sim/pay/notify", post(control::send))
        .route("/sim/pay/faults", post(control::arm_faults))
        .route("/sim/pay/release", post(control::release))
        .route("/sim/pay/deliveries", get(control::deliveries))
        .route(
            "/sim/pay/rotate-certificate",
            post(control::rotate_certificate),
        )
        .route("/sim/pay/stats", get(control::stats))
        .route("/sim/pay/issue-certificate", post(certs::issue))
        .route("/sim/pay/certificate-delay", post(certs::delay))
        .merge(v2::routes())
}

/// A serial no WeChat publishes: notifies under it test the daemon's unknown-serial path.
const UNKNOWN_SERIAL: &str = "7E57DEADBEEF00000000000000000000000000FF";

/// The simulated WeChat Pay: configuration, keys, and what it remembers.
#[derive(Clone)]
pub(super) struct Pay {
    config: Arc<PayConfig>,
    world: Arc<Mutex<PayWorld>>,
    /// Index into `config.platforms` of the current platform certificate (0 = A, 1 = B).
    platform: Arc<AtomicUsize>,
    http: reqwest::Client,
    /// Cancelled when the simulator stops: pending notify deliveries end with it.
    stop: CancellationToken,
    /// API v2 (legacy merchants).
    v2: Arc<v2::V2>,
    /// A certificate issued on request for platform B's key; current while set.
    issued: Arc<std::sync::Mutex<Option<certs::Listed>>>,
}

impl FromRef<SimState> for Pay {
    fn from_ref(sim: &SimState) -> Self {
        sim.pay.clone()
    }
}

struct PayConfig {
    appid: String,
    mchid: String,
    merchant_serial: String,
    merchant_key: VerifyingKey,
    apiv3: ApiV3Key,
    signing: SimSigning,
    public_key_mode: SigningKey,
    platforms: [PlatformKey; 2],
    /// Signs the notifies sent under [`UNKNOWN_SERIAL`] (any key WeChat does not publish).
    stranger: SigningKey,
    time_factor: f64,
    notify_timeout: Duration,
}

struct PlatformKey {
    serial: &'static str,
    certificate_pem: &'static str,
    key: SigningKey,
    effective_time: String,
    expire_time: String,
}

/// Counts of authenticated calls (and of notifies created and attempts sent), for tests that check caching and retries.
#[derive(Default, Clone, Serialize)]
pub(super) struct PayStats {
    jsapi: u64,
    query: u64,
    close: u64,
    certificates: u64,
    refund: u64,
    refund_query: u64,
    notifies: u64,
    deliveries: u64,
}

#[derive(Default)]
struct PayWorld {
    orders: HashMap<String, SimOrder>,
    refunds: HashMap<String, refunds::SimRefund>,
    /// `(code, message)` refusing the next refund request (one-shot).
    refund_reject: Option<(String, String)>,
    /// The next refund request is carried out but its answer is lost (one-shot).
    refund_lose: bool,
    /// The next refund query fails with a 5xx (one-shot).
    refund_query_fail: bool,
    /// Faults for the next notify created (one-shot).
    faults: Option<NotifyFaults>,
    /// Notifies queued by the `hold` fault until `/sim/pay/release`.
    held: Vec<Arc<notify::SimNotify>>,
    deliveries: Vec<notify::Delivery>,
    last_notify_url: Option<String>,
    stats: PayStats,
    bills: bill::Bills,
    /// How long `/v3/certificates` takes to answer.
    certificates_delay: Duration,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned())
}

fn signing_key(pem: &str, what: &str) -> std::io::Result<SigningKey> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| invalid(&format!("{what}: {e}")))
}

/// RFC 3339 in China Standard Time, as WeChat writes times.
fn cst(time: chrono::DateTime<chrono::Utc>) -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    time.with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn now_cst() -> String {
    cst(chrono::Utc::now())
}

fn random_digits(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// A certificate's validity (`notBefore`, `notAfter`) as WeChat lists it.
fn validity(certificate_pem: &str) -> std::io::Result<(String, String)> {
    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    let body: String = certificate_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = B64
        .decode(body)
        .map_err(|_| invalid("platform certificate PEM"))?;
    let cert = Certificate::from_der(&der).map_err(|_| invalid("platform certificate DER"))?;
    let at = |t: x509_cert::time::Time| {
        let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
        chrono::DateTime::from_timestamp(secs, 0).map(cst)
    };
    let v = cert.tbs_certificate.validity;
    Ok((
        at(v.not_before).ok_or_else(|| invalid("certificate notBefore"))?,
        at(v.not_after).ok_or_else(|| invalid("certificate notAfter"))?,
    ))
}

impl Pay {
    /// The simulated WeChat Pay for `settings`, with the public development keys.
    pub(super) fn new(settings: &SimSettings, stop: CancellationToken) -> std::io::Result<Self> {
        let apiv3 = ApiV3Key::new(&settings.apiv3_key)
            .ok_or_else(|| invalid("sim.apiv3_key must be 32 ASCII characters"))?;
        let merchant = signing_key(devkeys::MERCHANT_KEY_PEM, "merchant key")?;
        let platform = |p: &devkeys::Platform| -> std::io::Result<PlatformKey> {
            let (effective_time, expire_time) = validity(p.certificate_pem)?;
            Ok(PlatformKey {
                serial: p.serial,
                certificate_pem: p.certificate_pem,
                key: signing_key(p.key_pem, "platform key")?,
                effective_time,
                expire_time,
            })
        };
        let config = PayConfig {
            appid: settings.appid.clone(),
            mchid: settings.mchid.clone(),
            merchant_serial: normalize_serial(&settings.merchant_serial),
            merchant_key: merchant.verifying_key(),
            apiv3,
            signing: settings.pay_signing,
            public_key_mode: signing_key(PUBLIC_KEY_MODE_KEY_PEM, "public key mode key")?,
            platforms: [
                platform(&devkeys::PLATFORMS[0])?,
                platform(&devkeys::PLATFORMS[1])?,
            ],
            stranger: merchant,
            time_factor: settings.time_factor,
            notify_timeout: settings.notify_timeout,
        };
        let http = reqwest::Client::builder()
            .timeout(config.notify_timeout)
            .build()
            .map_err(|e| std::io::Error::other(format!("notify HTTP client: {e}")))?;
        Ok(Self {
            config: Arc::new(config),
            world: Arc::new(Mutex::new(PayWorld::default())),
            platform: Arc::new(AtomicUsize::new(0)),
            http,
            stop,
            v2: Arc::new(v2::V2::new(settings)?),
            issued: Arc::default(),
        })
    }

    /// Counts one authenticated call of a `/v3/...` endpoint.
    async fn count(&self, api: impl FnOnce(&mut PayStats) -> &mut u64) {
        *api(&mut self.world.lock().await.stats) += 1;
    }

    /// The key and serial that sign answers and notifies now.
    fn signer(&self) -> (&SigningKey, &str) {
        match self.config.signing {
            SimSigning::PublicKey => (&self.config.public_key_mode, PUBLIC_KEY_ID),
            SimSigning::Certificate => {
                let p = &self.config.platforms[self.platform.load(Ordering::Acquire)];
                (&p.key, p.serial)
            }
        }
    }

    /// The key and serial that sign notifies: [`Pay::signer`]'s, or the certificate
    /// issued on request (answers stay signed by a listed development certificate, so
    /// that a certificate issued outside its validity cannot stop downloads).
    fn notify_signer(&self) -> (&SigningKey, String) {
        match self.issued() {
            Some(issued) if self.config.signing == SimSigning::Certificate => {
                (&self.config.platforms[1].key, issued.serial)
            }
            _ => {
                let (key, serial) = self.signer();
                (key, serial.to_owned())
            }
        }
    }

    /// The certificate issued on request, if any.
    fn issued(&self) -> Option<certs::Listed> {
        self.issued
            .lock()
            .expect("the issued-certificate lock is never poisoned")
            .clone()
    }

    /// A key that is not the one the current serial names: platform B's, or A's once B is
    /// current (a forger who knows the serial but not the key).
    fn forger(&self) -> &SigningKey {
        let current_is_b = self.config.signing == SimSigning::Certificate
            && (self.platform.load(Ordering::Acquire) == 1 || self.issued().is_some());
        &self.config.platforms[usize::from(!current_is_b)].key
    }

    /// The platform certificates WeChat lists now: A, B too after a rotation, and the
    /// one issued on request.
    fn published(&self) -> Vec<certs::Listed> {
        self.config.platforms[..=self.platform.load(Ordering::Acquire)]
            .iter()
            .map(|p| certs::Listed {
                serial: p.serial.into(),
                certificate_pem: p.certificate_pem.into(),
                effective_time: p.effective_time.clone(),
                expire_time: p.expire_time.clone(),
            })
            .chain(self.issued())
            .collect()
    }
}
