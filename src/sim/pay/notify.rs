//! Notify delivery: the encrypted `TRANSACTION.SUCCESS` body, signed afresh on every
//! attempt, POSTed to the merchant's `notify_url` with WeChat's retry schedule (scaled by
//! `time_factor`), every attempt recorded, and the one-shot faults a test armed.

use std::{sync::Arc, time::Duration};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    now_cst, random_alphanumeric,
    sign::{signature_headers, signed_with},
    Pay, UNKNOWN_SERIAL,
};
use crate::wechat::pay::crypto::{response_message, ApiV3Key};

/// WeChat's waits before retries 1..=15, in seconds: 16 attempts over about 24 h.
const RETRY_SCHEDULE_SECS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

/// What WeChat prefixes a probe signature with; a merchant must refuse it.
const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// Faults for one notify, armed by `POST /sim/pay/faults`. Counts apply to the first n
/// attempts (1-based), after which attempts are genuine.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct NotifyFaults {
    /// Each attempt is sent 1 + n times.
    pub duplicates: u32,
    /// The copies of an attempt go out at the same moment instead of one after another.
    pub concurrent: bool,
    /// Wait before the first attempt.
    pub delay_ms: u64,
    /// Queue the notify until `POST /sim/pay/release`.
    pub hold: bool,
    pub bad_signature: u32,
    pub signtest: u32,
    pub stale_timestamp: u32,
    pub unknown_serial: u32,
    pub forged: u32,
    pub wrong_algorithm: bool,
    pub undecryptable: bool,
    pub lost: bool,
}

/// How a notify is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// API v3: JSON, signed in `Wechatpay-*` headers; acknowledged by 200 or 204.
    V3,
    /// API v2: XML carrying its own `sign` (or an encrypted `req_info`); acknowledged by a
    /// 200 whose body has `<return_code>SUCCESS</return_code>`.
    V2,
}

/// One notify the simulator sends: the same id and body on every attempt.
pub(super) struct SimNotify {
    pub id: String,
    out_trade_no: Option<String>,
    url: String,
    body: String,
    faults: NotifyFaults,
    wire: Wire,
}

/// One attempt (or copy of one), as `GET /sim/pay/deliveries` lists it.
#[derive(Clone, Serialize)]
pub(super) struct Delivery {
    pub notify_id: String,
    pub out_trade_no: Option<String>,
    /// 1-based.
    pub attempt: u32,
    /// 1-based: copy 1 is the attempt itself, later copies the `duplicates` fault.
    pub copy: u32,
    pub sent_at: String,
    /// The daemon's HTTP status; `None` on a transport error or timeout.
    pub status: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub headers: Map<String, Value>,
    pub body: String,
}

impl SimNotify {
    /// A `TRANSACTION.SUCCESS` notify whose resource encrypts `transaction`.
    pub(super) fn new(pay: &Pay, transaction: &Value, url: String, faults: NotifyFaults) -> Self {
        Self::v3(
            pay,
            "TRANSACTION.SUCCESS",
            "transaction",
            "支付成功",
            transaction,
            url,
            faults,
        )
    }

    /// A v3 notify of `event_type` whose resource (`original_type`, also the associated
    /// data) encrypts `resource`.
    pub(super) fn v3(
        pay: &Pay,
        event_type: &str,
        original_type: &str,
        summary: &str,
        resource: &Value,
        url: String,
        faults: NotifyFaults,
    ) -> Self {
        let plaintext = serde_json::to_vec(resource).expect("JSON values serialize");
        let nonce = random_alphanumeric(12);
        let ciphertext = if faults.undecryptable {
            ApiV3Key::new("thisIsNotTheMerchantsApiV3Key!!!")
                .expect("32 characters")
                .encrypt(&nonce, original_type, &plaintext)
        } else {
            pay.config.apiv3.encrypt(&nonce, original_type, &plaintext)
        };
        let algorithm = if faults.wrong_algorithm {
            "AEAD_AES_128_GCM"
        } else {
            "AEAD_AES_256_GCM"
        };
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "id": id,
            "create_time": now_cst(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": algorithm,
                "ciphertext": ciphertext,
                "associated_data": original_type,
                "nonce": nonce,
            },
        });
        Self {
            id,
            out_trade_no: resource["out_trade_no"].as_str().map(str::to_owned),
            url,
            body: body.to_string(),
            faults,
            wire: Wire::V3,
        }
    }

    /// An API v2 notify: `body` is the complete XML, signed or encrypted by the caller.
    /// Only the delivery faults (duplicates, delay, hold, lost) apply.
    pub(super) fn v2(
        id: String,
        out_trade_no: Option<String>,
        body: String,
        url: String,
        faults: NotifyFaults,
    ) -> Self {
        Self {
            id,
            out_trade_no,
            url,
            body,
            faults,
            wire: Wire::V2,
        }
    }

    /// The headers of one copy of attempt `attempt`, with the armed signature faults.
    fn headers(&self, pay: &Pay, attempt: u32) -> Vec<(&'static str, String)> {
        if self.wire == Wire::V2 {
            return Vec::new();
        }
        let f = &self.faults;
        let now = chrono::Utc::now().timestamp();
        let timestamp = if attempt <= f.stale_timestamp {
            now - 86_400
        } else {
            now
        };
        let (current_key, current_serial) = pay.notify_signer();
        let (key, serial) = if attempt <= f.unknown_serial {
            (&pay.config.stranger, UNKNOWN_SERIAL)
        } else if attempt <= f.forged {
            (pay.forger(), current_serial.as_str())
        } else {
            (current_key, current_serial.as_str())
        };
        let mut headers = signature_headers(key, serial, timestamp, self.body.as_bytes());
        if attempt <= f.bad_signature || attempt <= f.signtest {
            let (ts, nonce) = (
                header(&headers, "Wechatpay-Timestamp"),
                header(&headers, "Wechatpay-Nonce"),
            );
            let signature = if attempt <= f.signtest {
                format!("{SIGNTEST_PREFIX}{}", B64.encode(random_alphanumeric(48)))
            } else {
                // A genuine signature of other bytes: well-formed, but not over this body.
                let mut message = response_message(&ts, &nonce, self.body.as_bytes());
                message.insert(0, b'X');
                key.sign(&message)
            };
            headers = signed_with(serial, &ts, &nonce, signature);
        }
        headers
    }
}

fn header(headers: &[(&'static str, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
        .expect("signature_headers sets every Wechatpay header")
}

/// Starts delivering `notify` in the background (or holds or loses it, as armed).
pub(super) async fn dispatch(pay: &Pay, notify: SimNotify) {
    let notify = Arc::new(notify);
    {
        let mut world = pay.world.lock().await;
        world.stats.notifies += 1;
        world.last_notify_url = Some(notify.url.clone());
        if notify.faults.lost {
            tracing::info!(notify_id = %notify.id, "sim pay: notify lost, as armed");
            return;
        }
        if notify.faults.hold {
            world.held.push(notify);
            return;
        }
    }
    let pay = pay.clone();
    tokio::spawn(async move {
        let stop = pay.stop.clone();
        tokio::select! {
            () = stop.cancelled() => {}
            () = deliver(&pay, notify) => {}
        }
    });
}

/// Delivers every held notify, newest first: the first attempts one after another in that
/// order (so they arrive reordered), the retries of each on its own schedule.
pub(super) async fn release(pay: &Pay) -> usize {
    let held = std::mem::take(&mut pay.world.lock().await.held);
    let count = held.len();
    let pay = pay.clone();
    tokio::spawn(async move {
        let stop = pay.stop.clone();
        tokio::select! {
            () = stop.cancelled() => {}
            () = async {
                for notify in held.into_iter().rev() {
                    delay(&notify).await;
                    if !attempt(&pay, &notify, 1).await {
                        let (pay, stop) = (pay.clone(), pay.stop.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = retry(&pay, &notify, 1) => {}
                            }
                        });
                    }
                }
            } => {}
        }
    });
    count
}

/// The armed `delay_ms` before the first attempt.
async fn delay(notify: &SimNotify) {
    if notify.faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(notify.faults.delay_ms)).await;
    }
}

async fn deliver(pay: &Pay, notify: Arc<SimNotify>) {
    delay(&notify).await;
    if !attempt(pay, &notify, 1).await {
        retry(pay, &notify, 1).await;
    }
}

/// Retries after attempt `failed` failed, until one succeeds or the schedule ends.
async fn retry(pay: &Pay, notify: &SimNotify, mut failed: u32) {
    while let Some(secs) = RETRY_SCHEDULE_SECS.get(failed as usize - 1) {
        let scaled = Duration::from_secs_f64(*secs as f64 * pay.config.time_factor);
        tokio::time::sleep(scaled).await;
        failed += 1;
        if attempt(pay, notify, failed).await {
            return;
        }
    }
    tracing::warn!(notify_id = %notify.id, attempts = failed, "sim pay: notify given up");
}

/// Sends attempt `n` (with its copies); true when the daemon acknowledged any copy.
async fn attempt(pay: &Pay, notify: &SimNotify, n: u32) -> bool {
    let copies = 1 + notify.faults.duplicates;
    // Signed before sending, so concurrent copies leave at the same moment.
    let signed: Vec<_> = (1..=copies).map(|c| (c, notify.headers(pay, n))).collect();
    let mut acknowledged = false;
    if notify.faults.concurrent {
        let sends = signed
            .into_iter()
            .map(|(copy, headers)| send(pay, notify, n, copy, headers));
        for ok in futures::future::join_all(sends).await {
            acknowledged |= ok;
        }
    } else {
        for (copy, headers) in signed {
            acknowledged |= send(pay, notify, n, copy, headers).await;
        }
    }
    acknowledged
}

async fn send(
    pay: &Pay,
    notify: &SimNotify,
    attempt: u32,
    copy: u32,
    headers: Vec<(&'static str, String)>,
) -> bool {
    let content_type = match notify.wire {
        Wire::V3 => "application/json",
        Wire::V2 => "text/xml",
    };
    let mut request = pay
        .http
        .post(&notify.url)
        .header("Content-Type", content_type)
        .body(notify.body.clone());
    let mut sent = Map::new();
    sent.insert("Content-Type".into(), content_type.into());
    for (name, value) in headers {
        request = request.header(name, &value);
        sent.insert(name.into(), value.into());
    }
    let sent_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, response_body, error) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(text) => (Some(status), Some(text), None),
                Err(e) => (Some(status), None, Some(crate::core::causes::http(e))),
            }
        }
        Err(e) => (None, None, Some(crate::core::causes::http(e))),
    };
    let acknowledged = match notify.wire {
        Wire::V3 => matches!(status, Some(200 | 204)),
        Wire::V2 => {
            status == Some(200)
                && response_body.as_deref().is_some_and(|b| {
                    b.contains("<return_code><![CDATA[SUCCESS]]></return_code>")
                        || b.contains("<return_code>SUCCESS</return_code>")
                })
        }
    };
    tracing::debug!(notify_id = %notify.id, attempt, copy, ?status, "sim pay: notify sent");
    let mut world = pay.world.lock().await;
    world.stats.deliveries += 1;
    world.deliveries.push(Delivery {
        notify_id: notify.id.clone(),
        out_trade_no: notify.out_trade_no.clone(),
        attempt,
        copy,
        sent_at,
        status,
        response_body,
        error,
        headers: sent,
        body: notify.body.clone(),
    });
    acknowledged
}
