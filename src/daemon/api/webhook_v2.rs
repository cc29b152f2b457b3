//! `POST /webhooks/wechatpay/v2`: WeChat Pay API v2's XML notifies. A payment notify is
//! believed once its `sign` verifies under our API key and sign type, and appended with
//! the XML as evidence. A refund notify has no `sign`, only a `req_info` encrypted with
//! AES-256-ECB, which authenticates nothing (a recorded notify can be replayed, blocks of
//! two spliced): once it decrypts under our key into our merchant's refund, WeChat is
//! asked (`refundquery`, signed both ways) and its signed answer is appended with the
//! notify as a claim (`refund.queried` v2); the fold applies the answer, never the claim.
//! Only then is the notify answered `SUCCESS`. Anything else gets an XML `FAIL` with a
//! 4xx and appends nothing; a log that cannot take the event, or a WeChat that cannot be
//! asked, gets a 5xx, so WeChat retries.

use std::time::Duration;

use axum::{
    body::Body,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

use super::{
    limited::{self, Limited},
    webhook::{read_body, record, tally, NotifyRefusal},
    AppState,
};
use crate::{
    core::events::{
        Event, LegacyEvidence, LegacyPaymentNotified, QueryReason, RefundEvidence,
        RefundNotifyClaim, RefundQueried,
    },
    wechat::pay::v2::{map, notify, xml, V2Client, V2Error},
};

/// WeChat waits 5 s for an answer: the query gets at most this much of it, the append
/// the rest.
const QUERY_BUDGET: Duration = Duration::from_secs(3);

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

async fn accept(app: &AppState, body: Body) -> Result<&'static str, NotifyRefusal> {
    let raw = read_body(app, body).await?;
    let Some(v2) = &app.pay_v2 else {
        return Err(NotifyRefusal::new(
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
        NotifyRefusal::new(status, e.code(), e.to_string())
    })?;
    // The parser accepted the bytes as UTF-8.
    let body = String::from_utf8_lossy(&raw).into_owned();
    if fields.get("return_code") != Some("SUCCESS") {
        return Err(NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "not_success",
            "return_code is not SUCCESS",
        ));
    }
    let (event, correlation, msg_id) = if fields.non_empty("req_info").is_some() {
        let claim = refund_claim(v2, &fields, body, app.max_notify_bytes)?;
        confirm(v2, claim).await?
    } else {
        payment(v2, &fields, body)?
    };
    record(app, &event, &correlation, &msg_id).await
}

type Accepted = (Event, String, String);

/// A payment notify: signed with our key, `result_code` SUCCESS.
fn payment(v2: &V2Client, fields: &xml::Fields, body: String) -> Result<Accepted, NotifyRefusal> {
    notify::sign(fields).map_err(|_| {
        NotifyRefusal::new(
            StatusCode::UNAUTHORIZED,
            "missing_sign",
            "notify without sign",
        )
    })?;
    let sign_type = v2.sign_type().as_str();
    if let Some(named) = fields.non_empty("sign_type") {
        if named != sign_type {
            return Err(NotifyRefusal::new(
                StatusCode::BAD_REQUEST,
                "wrong_sign_type",
                format!("sign_type {named} is not the configured {sign_type}"),
            ));
        }
    }
    notify::signed(v2, fields, v2.sign_type()).map_err(|_| {
        NotifyRefusal::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "sign does not verify",
        )
    })?;
    if fields.get("result_code") != Some("SUCCESS") {
        return Err(NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "not_success",
            format!(
                "result_code is not SUCCESS ({})",
                fields.get("err_code").unwrap_or("-")
            ),
        ));
    }
    let transaction = map::notified_transaction(fields)
        .map_err(|e| NotifyRefusal::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    let Some(transaction_id) = transaction.transaction_id.clone() else {
        return Err(NotifyRefusal::new(
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
    let msg_id = event.msg_id(None);
    Ok((event, transaction_id, msg_id))
}

/// A refund notify: our merchant's, with a `req_info` that decrypts under our key to a
/// final status. What it claims, not yet believed.
fn refund_claim(
    v2: &V2Client,
    fields: &xml::Fields,
    body: String,
    limit: usize,
) -> Result<RefundNotifyClaim, NotifyRefusal> {
    let (decrypted, inner) = notify::open_refund(v2, fields, limit).map_err(|e| match e {
        notify::Doubt::ReqInfo(e) => {
            NotifyRefusal::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
        }
        // Not ours (the caller saw a req_info).
        _ => NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "merchant_mismatch",
            "appid or mch_id is not ours",
        ),
    })?;
    let refund = map::notified_refund(&inner, v2.mchid())
        .map_err(|e| NotifyRefusal::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    if map::refund_event_type(&refund.status).is_none() {
        return Err(NotifyRefusal::new(
            StatusCode::BAD_REQUEST,
            "unsupported_event",
            format!("refund status {} is not final", refund.status),
        ));
    }
    Ok(RefundNotifyClaim {
        refund,
        evidence: LegacyEvidence {
            body,
            sign_type: None,
            decrypted: Some(decrypted),
        },
    })
}

/// Asks WeChat about the refund a notify claims: its signed answer, with the claim, is
/// the event. WeChat unreachable (or an answer that does not verify) is a 5xx, so WeChat
/// sends the notify again; WeChat saying there is no such refund is a 4xx.
async fn confirm(v2: &V2Client, claim: RefundNotifyClaim) -> Result<Accepted, NotifyRefusal> {
    let no = claim.refund.out_refund_no.clone();
    let unavailable = |why: String| {
        NotifyRefusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "query_unavailable",
            format!("refundquery for {no} failed, so the notify cannot be confirmed: {why}"),
        )
    };
    let answer = tokio::time::timeout(QUERY_BUDGET, v2.refundquery(&no))
        .await
        .map_err(|_| unavailable(format!("no answer within {QUERY_BUDGET:?}")))?;
    let (refund, evidence) = match answer {
        Ok(answer) => answer,
        Err(V2Error::Api { code, message }) if code == "REFUNDNOTEXIST" => {
            return Err(NotifyRefusal::new(
                StatusCode::BAD_REQUEST,
                "refund_not_found",
                format!("WeChat knows no refund {no}: {message}"),
            ))
        }
        Err(e) => return Err(unavailable(e.to_string())),
    };
    let queried = RefundQueried {
        reason: QueryReason::Notify,
        refund,
        evidence: RefundEvidence::V2(evidence),
        notify: Some(Box::new(claim)),
    };
    let event = Event::RefundQueried(queried);
    let msg_id = event.msg_id(None);
    Ok((event, format!("v2:{no}"), msg_id))
}
