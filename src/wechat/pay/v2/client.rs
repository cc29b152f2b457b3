//! The WeChat Pay API v2 client: every request signed with the API key, every answer
//! believed only once its `sign` verifies. `unifiedorder` (JSAPI), `orderquery`,
//! `closeorder`, `refund` (over TLS with the merchant's client certificate), `refundquery`,
//! and the `wx.requestPayment` params signed the v2 way.
//!
//! Answers are read in WeChat's order: `return_code` (FAIL: the call itself failed, and
//! WeChat does not sign such answers), then `sign` (required), then `result_code` with
//! `err_code`. The answers are returned in API v3's shapes ([`Transaction`], [`Refund`])
//! with the XML as [`LegacyEvidence`], so the events and the fold stay one.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, FixedOffset, Utc};

use self::answer::{read_answer, Answer};
use super::{
    map::{self, MapError},
    sign::{self, ApiKey, SignType},
    xml::{self, Fields, XmlError},
};
use crate::{
    core::{
        clock::Clock,
        crypto::random_alphanumeric,
        events::{LegacyEvidence, Refund, Transaction},
    },
    daemon::metrics::{labels, Metrics},
    settings::PaySettings,
    wechat::{
        call,
        pay::{PayError, PayParams, Prepay},
    },
};

mod answer;

/// WeChat's `body` is at most 128 bytes (UTF-8).
const MAX_BODY_BYTES: usize = 128;

/// Why an API v2 call did not give an answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    /// No answer (connection, timeout) or a non-200: try again later.
    #[error("WeChat Pay unreachable: {0}")]
    Unavailable(String),
    /// An answer that is not signed, or whose `sign` does not verify.
    #[error("WeChat Pay answer not verified: {0}")]
    Unverified(String),
    /// `return_code` FAIL: WeChat refused the call itself (signature, parameters), with
    /// its `return_msg`.
    #[error("WeChat Pay refused the call: {0}")]
    Refused(String),
    /// `result_code` FAIL: WeChat said no, with its `err_code` and `err_code_des`.
    #[error("WeChat Pay {code}: {message}")]
    Api {
        /// WeChat's code, e.g. `ORDERPAID`, `ORDERNOTEXIST`, `NOTENOUGH`.
        code: String,
        /// WeChat's words.
        message: String,
    },
    /// A verified answer of a shape we do not understand.
    #[error("WeChat Pay answer unreadable: {0}")]
    Malformed(String),
}

impl V2Error {
    /// WeChat's `err_code`, if it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            V2Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<XmlError> for V2Error {
    fn from(e: XmlError) -> Self {
        V2Error::Malformed(e.to_string())
    }
}

impl From<MapError> for V2Error {
    fn from(e: MapError) -> Self {
        V2Error::Malformed(e.to_string())
    }
}

/// The v3 client's error, with API v2's codes renamed to API v3's where they mean the
/// same (`ORDERNOTEXIST` → `ORDER_NOT_EXIST`, `ORDERCLOSED` → `ORDER_CLOSED`), so callers
/// written for v3 (the API's error mapping, the sweeps, the refund flow) handle v2 alike.
/// A signed `result_code` FAIL is WeChat saying no, as a v3 4xx does, so it gets status
/// 400; an unsigned `return_code` FAIL keeps 200 and says nothing definite.
impl From<V2Error> for PayError {
    fn from(e: V2Error) -> Self {
        match e {
            V2Error::Unavailable(why) => PayError::Unavailable(why),
            V2Error::Unverified(why) => PayError::Unverified(why),
            V2Error::Malformed(why) => PayError::Malformed(why),
            V2Error::Refused(message) => PayError::Api {
                status: 200,
                code: "FAIL".into(),
                message,
            },
            V2Error::Api { code, message } => PayError::Api {
                status: 400,
                code: match code.as_str() {
                    "ORDERNOTEXIST" => "ORDER_NOT_EXIST".into(),
                    "ORDERCLOSED" => "ORDER_CLOSED".into(),
                    "REFUNDNOTEXIST" => "RESOURCE_NOT_EXISTS".into(),
                    "NOTENOUGH" => "NOT_ENOUGH".into(),
                    _ => code,
                },
                message,
            },
        }
    }
}

/// The settings could not make a client.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct V2ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// A refund request (`/secapi/pay/refund`).
pub struct RefundRequest<'a> {
    /// The order refunded.
    pub out_trade_no: &'a str,
    /// Our refund number (WeChat treats a repeat as the same refund).
    pub out_refund_no: &'a str,
    /// The order's total, fen.
    pub total: i64,
    /// This refund, fen.
    pub refund: i64,
    /// Shown to the payer.
    pub reason: &'a str,
}

struct Inner {
    http: reqwest::Client,
    /// With the merchant's client certificate, for `/secapi/...` (the plain client when
    /// none is configured).
    secure: reqwest::Client,
    base: String,
    appid: String,
    mchid: String,
    key: ApiKey,
    sign_type: SignType,
    notify_url: String,
    spbill_create_ip: String,
    clock: Clock,
    metrics: OnceLock<Metrics>,
}

/// The client; cheap to clone.
#[derive(Clone)]
pub struct V2Client(Arc<Inner>);

impl V2Client {
    /// A client for the merchant in `settings`, paying under `appid`; `None` when no API
    /// v2 key is configured (see [`PaySettings::v2_api_key`]).
    pub fn new(
        settings: &PaySettings,
        appid: &str,
        clock: Clock,
    ) -> Result<Option<Self>, V2ConfigError> {
        let Some(key) = settings.v2_api_key() else {
            return Ok(None);
        };
        let key = ApiKey::new(key).ok_or(V2ConfigError {
            field: "pay.v2.api_key",
            problem: "must be 32 ASCII letters or digits".into(),
        })?;
        let timeout = settings.timeout;
        let build = |builder: reqwest::ClientBuilder| {
            builder.timeout(timeout).build().map_err(|e| V2ConfigError {
                field: "pay.v2",
                problem: e.to_string(),
            })
        };
        let http = build(reqwest::Client::builder())?;
        let secure = match (&settings.v2.client_cert_file, &settings.v2.client_key_file) {
            (Some(cert), Some(key)) => {
                let read = |field, path: &std::path::Path| {
                    std::fs::read(path).map_err(|e| V2ConfigError {
                        field,
                        problem: format!("cannot read {}: {e}", path.display()),
                    })
                };
                let mut pem = read("pay.v2.client_cert_file", cert)?;
                pem.push(b'\n');
                pem.extend(read("pay.v2.client_key_file", key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| V2ConfigError {
                    field: "pay.v2.client_cert_file",
                    problem: format!("not a PEM certificate and PKCS#8 key: {e}"),
                })?;
                build(reqwest::Client::builder().identity(identity))?
            }
            _ => http.clone(),
        };
        Ok(Some(Self(Arc::new(Inner {
            http,
            secure,
            base: settings.api_base.trim_end_matches('/').to_owned(),
            appid: appid.to_owned(),
            mchid: settings.mchid.clone(),
            key,
            sign_type: settings.v2.sign_type.into(),
            notify_url: settings.v2_notify_url(),
            spbill_create_ip: settings.v2.spbill_create_ip.clone(),
            clock,
            metrics: OnceLock::new(),
        }))))
    }

    /// The app id payments are made under.
    pub fn appid(&self) -> &str {
        &self.0.appid
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        &self.0.mchid
    }

    /// The API key (signs and verifies; decrypts refund notifies).
    pub fn key(&self) -> &ApiKey {
        &self.0.key
    }

    /// How requests are signed and answers and notifies must be.
    pub fn sign_type(&self) -> SignType {
        self.0.sign_type
    }

    /// Checks a message's `sign` with our key and sign type.
    pub fn verify(&self, fields: &Fields) -> Result<(), sign::BadSign> {
        super::notify::signed(self, fields, self.0.sign_type).map_err(|_| sign::BadSign)
    }

    /// `unifiedorder` with `trade_type` JSAPI: WeChat's `prepay_id` for the order.
    pub async fn unifiedorder(&self, p: &Prepay<'_>) -> Result<String, V2Error> {
        let total_fee = p.amount.to_string();
        let time_expire = beijing_compact(p.time_expire);
        let body = truncate_utf8(p.description, MAX_BODY_BYTES);
        let answer = self
            .call(
                "/pay/unifiedorder",
                &[
                    ("body", body),
                    ("out_trade_no", p.out_trade_no),
                    ("total_fee", &total_fee),
                    ("fee_type", "CNY"),
                    ("spbill_create_ip", &self.0.spbill_create_ip),
                    ("time_expire", &time_expire),
                    ("notify_url", &self.0.notify_url),
                    ("trade_type", "JSAPI"),
                    ("openid", p.openid),
                ],
                false,
            )
            .await?;
        let prepay_id = answer
            .fields
            .non_empty("prepay_id")
            .ok_or_else(|| V2Error::Malformed("unifiedorder: no prepay_id".into()))?;
        Ok(prepay_id.to_owned())
    }

    /// `unifiedorder`, then the `wx.requestPayment` params of its prepay id: what
    /// `POST /v1/orders/{no}/wechat-pay` needs under `pay.api = "v2"`.
    pub async fn jsapi(&self, p: &Prepay<'_>) -> Result<(String, PayParams), V2Error> {
        let prepay_id = self.unifiedorder(p).await?;
        let params = self.pay_params(&prepay_id);
        Ok((prepay_id, params))
    }

    /// `wx.requestPayment` params for a prepay id: `paySign` is the v2 sign of `appId`,
    /// `timeStamp`, `nonceStr`, `package` and `signType` (capitalised as the mini program
    /// writes them); `signType` is `MD5` or `HMAC-SHA256`.
    pub fn pay_params(&self, prepay_id: &str) -> PayParams {
        let time_stamp = (self.0.clock)().timestamp().to_string();
        let nonce_str = random_alphanumeric(32);
        let package = format!("prepay_id={prepay_id}");
        let sign_type = self.0.sign_type.as_str();
        let pay_sign = sign::sign(
            [
                ("appId", self.0.appid.as_str()),
                ("timeStamp", &time_stamp),
                ("nonceStr", &nonce_str),
                ("package", &package),
                ("signType", sign_type),
            ],
            &self.0.key,
            self.0.sign_type,
        );
        PayParams {
            time_stamp,
            nonce_str,
            package,
            sign_type: sign_type.to_owned(),
            pay_sign,
        }
    }

    /// `orderquery` by `out_trade_no`: the transaction and the signed answer.
    pub async fn orderquery(
        &self,
        out_trade_no: &str,
    ) -> Result<(Transaction, LegacyEvidence), V2Error> {
        let answer = self
            .call("/pay/orderquery", &[("out_trade_no", out_trade_no)], false)
            .await?;
        Ok((map::queried_transaction(&answer.fields)?, answer.evidence))
    }

    /// `closeorder`: closes an unpaid order at WeChat.
    pub async fn closeorder(&self, out_trade_no: &str) -> Result<(), V2Error> {
        self.call("/pay/closeorder", &[("out_trade_no", out_trade_no)], false)
            .await
            .map(|_| ())
    }

    /// `/secapi/pay/refund`: asks for a refund; WeChat's acceptance (status `PROCESSING`)
    /// and the signed answer. Real WeChat requires the merchant's client certificate
    /// (`pay.v2.client_cert_file`).
    pub async fn refund(&self, r: &RefundRequest<'_>) -> Result<(Refund, LegacyEvidence), V2Error> {
        let (total, refund) = (r.total.to_string(), r.refund.to_string());
        let answer = self
            .call(
                "/secapi/pay/refund",
                &[
                    ("out_trade_no", r.out_trade_no),
                    ("out_refund_no", r.out_refund_no),
                    ("total_fee", &total),
                    ("refund_fee", &refund),
                    ("refund_fee_type", "CNY"),
                    ("refund_desc", truncate_utf8(r.reason, 80)),
                    ("notify_url", &self.0.notify_url),
                ],
                true,
            )
            .await?;
        Ok((map::accepted_refund(&answer.fields)?, answer.evidence))
    }

    /// `refundquery` by `out_refund_no`: the refund and the signed answer.
    pub async fn refundquery(
        &self,
        out_refund_no: &str,
    ) -> Result<(Refund, LegacyEvidence), V2Error> {
        let answer = self
            .call(
                "/pay/refundquery",
                &[("out_refund_no", out_refund_no)],
                false,
            )
            .await?;
        Ok((
            map::queried_refund(&answer.fields, out_refund_no)?,
            answer.evidence,
        ))
    }

    /// The request's fields with the merchant's, a nonce, the sign type and the sign.
    fn request(&self, params: &[(&str, &str)]) -> String {
        let mut fields: Fields = [
            ("appid", self.0.appid.as_str()),
            ("mch_id", self.0.mchid.as_str()),
            ("nonce_str", &random_alphanumeric(32)),
            ("sign_type", self.0.sign_type.as_str()),
        ]
        .into_iter()
        .chain(params.iter().copied())
        .collect();
        let sign = sign::sign(fields.iter(), &self.0.key, self.0.sign_type);
        fields.set("sign", sign);
        fields.to_xml()
    }

    /// Records every call's latency and outcome in `metrics` (once; later calls are
    /// ignored).
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        let _ = self.0.metrics.set(metrics);
        self
    }

    /// [`V2Client::call_unmeasured`], timed and counted under the path's last segment
    /// (`unifiedorder`, `refund`, ...: the paths are fixed, the ids go in the body).
    async fn call(
        &self,
        path: &'static str,
        params: &[(&str, &str)],
        secure: bool,
    ) -> Result<Answer, V2Error> {
        call::measured(
            self.0.metrics.get(),
            "wechat_pay_v2",
            path.rsplit('/').next().unwrap_or(path),
            self.call_unmeasured(path, params, secure),
            |result| match result {
                Ok(_) => "ok",
                Err(V2Error::Api { code, .. }) => labels::pay_code(code),
                Err(V2Error::Refused(_)) => "refused",
                Err(V2Error::Unavailable(_)) => "unavailable",
                Err(V2Error::Unverified(_)) => "unverified",
                Err(V2Error::Malformed(_)) => "malformed",
            },
        )
        .await
    }

    /// Sends a signed request; checks `return_code`, `sign`, then `result_code`.
    async fn call_unmeasured(
        &self,
        path: &str,
        params: &[(&str, &str)],
        secure: bool,
    ) -> Result<Answer, V2Error> {
        let http = if secure { &self.0.secure } else { &self.0.http };
        let request = http
            .post(format!("{}{path}", self.0.base))
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header(reqwest::header::USER_AGENT, "wxledger")
            .body(self.request(params));
        let answer = call::send(request)
            .await
            .map_err(|e| V2Error::Unavailable(crate::core::causes::http(e)))?;
        if !answer.status.is_success() {
            return Err(V2Error::Unavailable(format!(
                "{path}: HTTP {}",
                answer.status
            )));
        }
        read_answer(&answer.body, &self.0.key, self.0.sign_type)
    }
}

/// `yyyyMMddHHmmss` in Beijing time, as API v2 writes times.
fn beijing_compact(t: DateTime<Utc>) -> String {
    let china = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    t.with_timezone(&china).format("%Y%m%d%H%M%S").to_string()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
