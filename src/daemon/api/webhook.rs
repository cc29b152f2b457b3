//! `POST /webhooks/wechatpay`: WeChat Pay's v3 notifies (payments and refunds). Verified (serial → key,
//! signature over the raw body, timestamp), decrypted, appended with their evidence,
//! and only then answered 204. Anything that does not verify is refused with a 4xx
//! and appends nothing; a log that cannot take the event gets a 5xx, so WeChat retries.

use super::{
    limited::{self, Limited},
    AppState,
};
use crate::{
    core::events::{Event, PaymentNotified, Refund, RefundEvidence, RefundNotified, Transaction},
    wechat::pay::{
        client::{evidence_from_headers, Unbelieved},
        keys::NoKey,
        notify::{self, Doubt, Freshness},
    },
};
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

/// Our answer refusing a WeChat Pay notify (a non-2xx, so WeChat sends it again);
/// `outcome` labels the metric and the log line.
pub(super) struct NotifyRefusal {
    pub(super) status: StatusCode,
    pub(super) outcome: &'static str,
    pub(super) message: String,
}

impl NotifyRefusal {
    pub(super) fn new(
        status: StatusCode,
        outcome: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            outcome,
            message: message.into(),
        }
    }
}

/// The webhook.
pub async fn wechatpay(
    _: Limited<limited::Webhook>,
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = accept(&app, &headers, body).await;
    tally(&app, false, &result);
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => {
            let body = serde_json::json!({"code": "FAIL", "message": refusal.message});
            (refusal.status, Json(body)).into_response()
        }
    }
}

/// Counts a notify's outcome (API `v2`, else v3) and logs a refusal (both webhooks).
pub(super) fn tally(app: &AppState, v2: bool, result: &Result<&'static str, NotifyRefusal>) {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(refusal) => refusal.outcome,
    };
    app.metrics.notify(v2, outcome);
    let metric = if v2 {
        "wxledger_notifies_v2_total"
    } else {
        "wxledger_notifies_total"
    };
    match result {
        Err(r) if r.status.is_server_error() => {
            crate::daemon::telemetry::warn_expected!("notify_not_recorded", metric, outcome = r.outcome, message = %r.message, "notify not recorded; WeChat will retry")
        }
        Err(r) => {
            tracing::warn!(metric, outcome = r.outcome, message = %r.message, "notify refused")
        }
        Ok(_) => {}
    }
}

/// The body, at most `pay.max_notify_bytes` (413 beyond).
pub(super) async fn read_body(app: &AppState, body: Body) -> Result<bytes::Bytes, NotifyRefusal> {
    axum::body::to_bytes(body, app.max_notify_bytes)
        .await
        .map_err(|_| {
            NotifyRefusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body over {} bytes", app.max_notify_bytes),
            )
        })
}

/// Appends a verified notify's event; only an acknowledged append may be answered as
/// success (503 otherwise, so WeChat retries).
pub(super) async fn record(
    app: &AppState,
    event: &Event,
    correlation_id: &str,
    msg_id: &str,
) -> Result<&'static str, NotifyRefusal> {
    let appended = app
        .record(event, correlation_id, msg_id)
        .await
        .map_err(|_| {
            NotifyRefusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log_unavailable",
                "the event log is unavailable; retry",
            )
        })?;
    Ok(if appended.duplicate {
        "duplicate"
    } else {
        "recorded"
    })
}

fn unbelieved(e: Unbelieved) -> NotifyRefusal {
    let (status, outcome) = match e {
        Unbelieved::Probe => (StatusCode::UNAUTHORIZED, "signtest"),
        Unbelieved::Timestamp => (StatusCode::BAD_REQUEST, "malformed"),
        Unbelieved::Stale(_) => (StatusCode::BAD_REQUEST, "stale_timestamp"),
        Unbelieved::Signature => (StatusCode::UNAUTHORIZED, "bad_signature"),
    };
    NotifyRefusal::new(status, outcome, e.to_string())
}

fn no_key(e: NoKey) -> NotifyRefusal {
    let (status, outcome) = match e {
        NoKey::Unknown(_) => (StatusCode::UNAUTHORIZED, "unknown_serial"),
        NoKey::OutsideValidity { .. } => (StatusCode::UNAUTHORIZED, "certificate_not_valid"),
        // Not known to be bad: WeChat retries a 5xx, by when the download has finished.
        NoKey::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable"),
    };
    NotifyRefusal::new(status, outcome, e.to_string())
}

fn doubt(e: Doubt) -> NotifyRefusal {
    match e {
        Doubt::Unbelieved(e) => unbelieved(e),
        Doubt::SignatureType(kind) => NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "wrong_algorithm",
            format!("signature type {kind} is not supported"),
        ),
        Doubt::NoKey(e) => no_key(e),
        Doubt::Body(e) => NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("notify body: {e}"),
        ),
        Doubt::Algorithm(algorithm) => NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "wrong_algorithm",
            format!("resource algorithm {algorithm} is not supported"),
        ),
        Doubt::Undecryptable(e) => {
            NotifyRefusal::new(StatusCode::BAD_REQUEST, "undecryptable", e.to_string())
        }
    }
}

async fn accept(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<&'static str, NotifyRefusal> {
    let raw = read_body(app, body).await?;
    let evidence = evidence_from_headers(headers, &raw).ok_or_else(|| {
        NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "missing Wechatpay-* headers or a body that is not UTF-8",
        )
    })?;
    let (notify, plain) = notify::believe(&app.pay, &evidence, Freshness::Now)
        .await
        .map_err(doubt)?;
    let malformed = |what: &str, e: serde_json::Error| {
        NotifyRefusal::new(StatusCode::BAD_REQUEST, "malformed", format!("{what}: {e}"))
    };
    let event = match notify.event_type.as_str() {
        "TRANSACTION.SUCCESS" => {
            let transaction: Transaction =
                serde_json::from_slice(&plain).map_err(|e| malformed("transaction", e))?;
            Event::PaymentNotified(PaymentNotified {
                notify_id: notify.id.clone(),
                event_type: notify.event_type.clone(),
                transaction,
                evidence,
            })
        }
        "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED" => {
            let refund: Refund =
                serde_json::from_slice(&plain).map_err(|e| malformed("refund", e))?;
            Event::RefundNotified(RefundNotified {
                notify_id: Some(notify.id.clone()),
                event_type: notify.event_type.clone(),
                refund,
                evidence: RefundEvidence::V3(evidence),
            })
        }
        other => {
            return Err(NotifyRefusal::new(
                StatusCode::BAD_REQUEST,
                "unsupported_event",
                format!("event type {other} is not handled"),
            ))
        }
    };
    record(app, &event, &notify.id, &event.msg_id(None)).await
}
