//! Label sets, and the one place a value from outside (an HTTP method, a status, WeChat's
//! errcode or error code, a failure reason read back from Postgres) becomes a label.
//!
//! Every label value is a `&'static str` from a fixed list, a number from a fixed range,
//! or the route template axum matched: a client can never add a series by sending
//! something new, and no request data (ids, phone numbers, openids) can reach a label.

use prometheus_client::encoding::EncodeLabelSet;

/// `wxledger_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequest {
    /// The matched route template (`/v1/orders/{out_trade_no}`) or `unmatched`.
    pub route: String,
    /// A known HTTP method or `other`.
    pub method: &'static str,
    /// The answer's status code (100 to 599, else 0); our handlers choose it.
    pub status: u16,
}

/// `wxledger_http_request_duration_seconds`: the status only as its class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLatency {
    /// As in [`HttpRequest`].
    pub route: String,
    /// As in [`HttpRequest`].
    pub method: &'static str,
    /// `1xx` to `5xx`, or `other`.
    pub class: &'static str,
}

/// One label named `type`: an event or outcome type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Type {
    /// The type, from the code's own list.
    pub r#type: &'static str,
}

/// One label named `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// A stable snake_case code from the code's own list.
    pub outcome: &'static str,
}

/// An outbound call to WeChat or WeChat Pay.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Call {
    /// `wechat` (mini program API) or `wechat_pay` / `wechat_pay_v2`.
    pub service: &'static str,
    /// A fixed endpoint name (`jscode2session`, `jsapi_prepay`, ...), never a URL.
    pub endpoint: &'static str,
}

/// An outbound call and what came of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallOutcome {
    /// As in [`Call`].
    pub service: &'static str,
    /// As in [`Call`].
    pub endpoint: &'static str,
    /// `ok`, `unavailable`, `unverified`, `malformed`, a known WeChat errcode or error
    /// code, or `other`.
    pub outcome: &'static str,
}

/// A background sweep's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Sweep {
    /// `expiry` or `reconcile`.
    pub sweep: &'static str,
    /// `ok`/`error` for a run; `handled`/`failed` for an item.
    pub result: &'static str,
}

/// One label named `reason`: a failure-log reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// A snake_case reason (see [`failure_reason`]).
    pub reason: String,
}

/// `wxledger_group_commit_fallbacks_total`: why appends went out as single publishes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Fallback {
    /// `duplicate` (a msg id already in the stream's duplicate window), `busy` (too many
    /// batches in flight on the server), `incomplete` (the server lost part of the batch),
    /// `unsupported` (the stream or server refuses atomic batches: single publishes from
    /// then on).
    pub reason: &'static str,
}

/// One label named `serial`: a WeChat Pay platform certificate held (a bounded set: at
/// most the few WeChat lists, expired ones evicted).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Serial {
    /// The certificate's serial, normalized.
    pub serial: String,
}

/// A known HTTP method, or `other`.
pub fn method(method: &axum::http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// A status code as a label: 100 to 599, anything else 0.
pub fn status(status: axum::http::StatusCode) -> u16 {
    let code = status.as_u16();
    if (100..600).contains(&code) {
        code
    } else {
        0
    }
}

/// The class of a status: `2xx`, `4xx`, ...
pub fn status_class(status: axum::http::StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

/// A mini program errcode: the ones wxledger knows (DESIGN's list and the token errors),
/// else `other`.
pub fn wechat_errcode(errcode: i64) -> &'static str {
    match errcode {
        0 => "ok",
        -1 => "-1",
        40001 => "40001",
        40013 => "40013",
        40014 => "40014",
        40029 => "40029",
        40125 => "40125",
        40163 => "40163",
        40226 => "40226",
        41002 => "41002",
        42001 => "42001",
        45011 => "45011",
        _ => "other",
    }
}

/// A WeChat Pay error code from its answer: documented codes, else `other`.
pub fn pay_code(code: &str) -> &'static str {
    const KNOWN: [&str; 22] = [
        "SYSTEM_ERROR",
        "PARAM_ERROR",
        "INVALID_REQUEST",
        "NOAUTH",
        "NOTENOUGH",
        "ORDERPAID",
        "ORDERCLOSED",
        "ORDER_NOT_EXIST",
        "ORDERNOTEXIST",
        "RESOURCE_NOT_EXISTS",
        "NOT_FOUND",
        "FREQUENCY_LIMITED",
        "SIGN_ERROR",
        "MCH_NOT_EXISTS",
        "APPID_MCHID_NOT_MATCH",
        "OUT_TRADE_NO_USED",
        "ACCOUNT_ERROR",
        "USER_ACCOUNT_ABNORMAL",
        "BANKERROR",
        "INVALID_TRANSACTIONID",
        "RULE_LIMIT",
        "FAIL",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == code)
        .unwrap_or("other")
}

/// Most failure-log reasons reported as their own series; the rest are summed into
/// `other`. The fold writes a reason from its own list, so this only guards the scrape
/// against a table someone filled by hand.
pub const MAX_REASONS: usize = 40;

/// A failure-log reason as a label: snake_case of at most 48 characters, else `other`.
pub fn failure_reason(reason: &str) -> &str {
    let plain = !reason.is_empty()
        && reason.len() <= 48
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        reason
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use super::*;

    #[test]
    fn outside_values_fall_into_fixed_sets() {
        assert_eq!(method(&Method::POST), "POST");
        assert_eq!(method(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(status_class(StatusCode::IM_A_TEAPOT), "4xx");
        assert_eq!(status(StatusCode::from_u16(999).unwrap()), 0);
        assert_eq!(status_class(StatusCode::from_u16(999).unwrap()), "other");
        assert_eq!(wechat_errcode(40029), "40029");
        assert_eq!(wechat_errcode(123456), "other");
        assert_eq!(pay_code("ORDERPAID"), "ORDERPAID");
        assert_eq!(pay_code("13800138000"), "other");
        assert_eq!(failure_reason("amount_mismatch"), "amount_mismatch");
        assert_eq!(failure_reason("phone 13800138000\""), "other");
    }
}

/// One label named `role`: a role one instance per schema leads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Role {
    /// `projector` or `publisher`.
    pub role: &'static str,
}
