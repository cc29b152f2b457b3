//! `POST /webhooks/wechatpay/v2`: WeChat Pay API v2's XML notifies. A payment notify is
//! believed once its `sign` verifies under our API key and sign type; a refund notify
//! (no `sign`) once its `req_info` decrypts under our key into our merchant's refund.
//! Either is appended with the XML as evidence and only then answered `SUCCESS`. Anything
//! else gets an XML `FAIL` with a 4xx and appends nothing; a log that cannot take the event
//! gets a 5xx, so WeChat retries.

use axum::{
    body::Body,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

use super::{
    limited::{self, Limited},
    webhook::{read_body, record, tally, Refusal},
    AppState,
};
use crate::{
    events::{Event, LegacyEvidence, LegacyPaymentNotified, RefundEvidence, RefundNotified},
    wechat::pay::v2::{crypto, map, xml, V2Client},
};

fn xml_answer(status: StatusCode, return_code: &str, return_msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        xml::write([("return_code", return_code), ("return_msg", return_msg)]),
    )
        .into_response()
}

/// The webhook.
pub async fn wechatpay_v2(
    _: Limited<limited::Webhook>,
    State(app): State<AppState>,
    body: Body,
) -> Response {
    let result = accept(&app, body).await;
    tally(&app, true, &result);
    match result {
        Ok(_) => xml_answer(StatusCode::OK, "SUCCESS", "OK"),
        Err(refusal) => xml_answer(refusal.status, "FAIL", &refusal.message),
    }
}

async fn accept(app: &AppState, body: Body) -> Result<&'static str, Refusal> {
    let raw = read_body(app, body).await?;
    let Some(v2) = &app.pay_v2 else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "v2_disabled",
            "WeChat Pay API v2 is not configured",
        ));
    };
    let fields = xml::parse(&raw, app.max_notify_bytes).map_err(|e| {
        let status = if e.code() == "too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Refusal::new(status, e.code(), e.to_string())
    })?;
    // The parser accepted the bytes as UTF-8.
    let body = String::from_utf8_lossy(&raw).into_owned();
    if fields.get("return_code") != Some("SUCCESS") {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "not_success",
            "return_code is not SUCCESS",
        ));
    }
    let (event, correlation, msg_id) = if let Some(req_info) = fields.non_empty("req_info") {
        refund(v2, &fields, req_info, body, app.max_notify_bytes)?
    } else {
        payment(v2, &fields, body)?
    };
    record(app, &event, &correlation, &msg_id).await
}

type Accepted = (Event, String, String);

/// A payment notify: signed with our key, `result_code` SUCCESS.
fn payment(v2: &V2Client, fields: &xml::Fields, body: String) -> Result<Accepted, Refusal> {
    if fields.non_empty("sign").is_none() {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing_sign",
            "notify without sign",
        ));
    }
    let sign_type = v2.sign_type().as_str();
    if let Some(named) = fields.non_empty("sign_type") {
        if named != sign_type {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "wrong_sign_type",
                format!("sign_type {named} is not the configured {sign_type}"),
            ));
        }
    }
    v2.verify(fields).map_err(|_| {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "sign does not verify",
        )
    })?;
    if fields.get("result_code") != Some("SUCCESS") {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "not_success",
            format!(
                "result_code is not SUCCESS ({})",
                fields.get("err_code").unwrap_or("-")
            ),
        ));
    }
    let transaction = map::notified_transaction(fields)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    let Some(transaction_id) = transaction.transaction_id.clone() else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "no transaction_id",
        ));
    };
    let event = Event::LegacyPaymentNotified(LegacyPaymentNotified {
        transaction,
        evidence: LegacyEvidence {
            body,
            sign_type: Some(sign_type.to_owned()),
            decrypted: None,
        },
    });
    let msg_id = format!("payment.legacy_notified:{transaction_id}");
    Ok((event, transaction_id, msg_id))
}

/// A refund notify: our merchant's, with a `req_info` that decrypts under our key.
fn refund(
    v2: &V2Client,
    fields: &xml::Fields,
    req_info: &str,
    body: String,
    limit: usize,
) -> Result<Accepted, Refusal> {
    if fields.get("appid") != Some(v2.appid()) || fields.get("mch_id") != Some(v2.mchid()) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "merchant_mismatch",
            "appid or mch_id is not ours",
        ));
    }
    let (decrypted, inner) = crypto::decrypt_refund(req_info, v2.key(), limit)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let refund = map::notified_refund(&inner, v2.mchid())
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    let event_type = map::refund_event_type(&refund.status).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "unsupported_event",
            format!("refund status {} is not final", refund.status),
        )
    })?;
    let correlation = format!("v2:{}", refund.out_refund_no);
    let msg_id = format!(
        "refund.notified:v2:{}:{}",
        refund.out_refund_no, refund.status
    );
    let event = Event::RefundNotified(RefundNotified {
        notify_id: None,
        event_type: event_type.to_owned(),
        refund,
        evidence: RefundEvidence::V2(LegacyEvidence {
            body,
            sign_type: None,
            decrypted: Some(decrypted),
        }),
    });
    Ok((event, correlation, msg_id))
}
