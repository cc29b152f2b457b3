//! Platform certificates on request, for tests of the daemon's key store: one issued with
//! a chosen validity (for platform B's key) that then signs the notifies, and a delay on
//! `/v3/certificates` (a slow WeChat).

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{cst, signing_key, Pay};
use crate::{sim::devkeys, wechat::pay::certificate};

/// A certificate as `/v3/certificates` lists it.
#[derive(Clone)]
pub(super) struct Listed {
    pub serial: String,
    pub certificate_pem: String,
    pub effective_time: String,
    pub expire_time: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssueRequest {
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

/// `POST /sim/pay/issue-certificate {not_before, not_after}` → `{"serial"}`: a new
/// certificate for platform B's key with a fresh serial and that validity, listed from
/// now on and signing notifies (in certificate mode) until the next issue or rotation.
pub(super) async fn issue(
    State(pay): State<Pay>,
    Json(req): Json<IssueRequest>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    // 20 bytes, the first in 0x10..0x80: a positive serial of WeChat's length.
    let mut serial = [0u8; 20];
    rand::thread_rng().fill(&mut serial);
    serial[0] = rand::thread_rng().gen_range(0x10..0x80);
    let serial = hex::encode_upper(serial);
    let key = signing_key(devkeys::PLATFORMS[1].key_pem, "platform key")
        .map_err(|e| bad(e.to_string()))?;
    let pem = certificate::issue(
        &key,
        &serial,
        "sim platform issued",
        req.not_before,
        req.not_after,
    )
    .map_err(bad)?;
    *pay.issued
        .lock()
        .expect("the issued-certificate lock is never poisoned") = Some(Listed {
        serial: serial.clone(),
        certificate_pem: pem,
        effective_time: cst(req.not_before),
        expire_time: cst(req.not_after),
    });
    Ok(Json(json!({ "serial": serial })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DelayRequest {
    delay_ms: u64,
}

/// `POST /sim/pay/certificate-delay {delay_ms}`: `/v3/certificates` answers that much
/// later from now on (0 restores).
pub(super) async fn delay(State(pay): State<Pay>, Json(req): Json<DelayRequest>) -> Json<Value> {
    pay.world.lock().await.certificates_delay = Duration::from_millis(req.delay_ms);
    Json(json!({}))
}
