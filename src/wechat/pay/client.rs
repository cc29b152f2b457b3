//! The WeChat Pay API v3 client: every request signed with the merchant key, every
//! answer verified against WeChat's key before it is believed. JSAPI prepay, query by
//! `out_trade_no`, close, the certificate download, and `wx.requestPayment` params.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, FixedOffset, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{
    certificate::PlatformCertificate,
    crypto::{
        authorization, pay_sign_message, request_message, response_message, ApiV3Key, SigningKey,
        VerifyingKey,
    },
    keys::{CertificateSource, KeySet, KeyStore, NoKey},
};
use crate::{
    core::{
        clock::Clock,
        crypto::random_alphanumeric,
        events::{Evidence, Refund, Transaction},
    },
    daemon::metrics::{labels, Metrics},
    settings::PaySettings,
    wechat::call,
};

mod certificates;
mod transport;

/// Why a WeChat Pay call did not give an answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// No answer (connection, timeout) or a 5xx: try again later.
    #[error("WeChat Pay unreachable: {0}")]
    Unavailable(String),
    /// An answer whose signature, serial or timestamp does not check out.
    #[error("WeChat Pay answer not verified: {0}")]
    Unverified(String),
    /// WeChat Pay said no, with its code and message.
    #[error("WeChat Pay {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// WeChat's error code, e.g. `ORDER_NOT_EXIST`, `ORDERPAID`.
        code: String,
        /// WeChat's message.
        message: String,
    },
    /// A verified answer of a shape we do not understand.
    #[error("WeChat Pay answer unreadable: {0}")]
    Malformed(String),
}

impl PayError {
    /// WeChat's error code, if it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            PayError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// WeChat answered, signed, that it will not do this: a 4xx other than its "try
    /// again" codes (v3's, and API v2's `SYSTEMERROR` and `BIZERR_NEED_RETRY`). Anything
    /// else (no answer, 5xx, an unsigned v2 FAIL) leaves the outcome unknown, and the
    /// request must be repeated or queried.
    pub fn is_refusal(&self) -> bool {
        match self {
            PayError::Api { status, code, .. } => {
                (400..500).contains(status)
                    && *status != 429
                    && !matches!(
                        code.as_str(),
                        "SYSTEM_ERROR" | "FREQUENCY_LIMITED" | "SYSTEMERROR" | "BIZERR_NEED_RETRY"
                    )
            }
            _ => false,
        }
    }
}

/// A verified answer.
pub struct Verified {
    /// HTTP status.
    pub status: u16,
    /// The raw body.
    pub body: Vec<u8>,
    /// What proves it came from WeChat.
    pub evidence: Evidence,
}

/// `wx.requestPayment`'s parameters, exactly as the mini program passes them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PayParams {
    /// Unix seconds, as a string.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    /// Random string.
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=...`.
    #[schema(pattern = "^prepay_id=")]
    pub package: String,
    /// Always `RSA` on API v3.
    #[serde(rename = "signType")]
    #[schema(pattern = "^(RSA|MD5|HMAC-SHA256)$")]
    pub sign_type: String,
    /// RSA-SHA256 over `appId\ntimeStamp\nnonceStr\npackage\n`.
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// A JSAPI prepay request.
pub struct Prepay<'a> {
    /// Our order number.
    pub out_trade_no: &'a str,
    /// What the payment sheet shows.
    pub description: &'a str,
    /// Fen.
    pub amount: i64,
    /// The payer's openid.
    pub openid: &'a str,
    /// WeChat refuses payment after this.
    pub time_expire: DateTime<Utc>,
}

/// A refund to ask WeChat for.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    /// The order.
    pub out_trade_no: &'a str,
    /// Our refund number.
    pub out_refund_no: &'a str,
    /// Shown to the payer.
    pub reason: &'a str,
    /// Fen to give back.
    pub amount: i64,
    /// The order's total, in fen.
    pub total: i64,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    appid: String,
    mchid: String,
    merchant_serial: String,
    merchant_key: SigningKey,
    apiv3_key: ApiV3Key,
    notify_url: String,
    keys: KeyStore,
    clock: Clock,
    tolerance_secs: i64,
    metrics: OnceLock<Metrics>,
}

/// The client; cheap to clone.
#[derive(Clone)]
pub struct PayClient(Arc<Inner>);

/// The settings could not make a client (a bad key).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PayConfigError(String);

impl PayClient {
    /// A client for the merchant in `settings`, paying under mini program `appid`.
    pub fn new(settings: &PaySettings, appid: &str, clock: Clock) -> Result<Self, PayConfigError> {
        let pem = settings
            .required_merchant_key_pem()
            .map_err(|e| PayConfigError(e.to_string()))?;
        let merchant_key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| PayConfigError(format!("pay.merchant_private_key: {e}")))?;
        let public = match (settings.public_key_id.as_ref(), settings.public_key_pem()) {
            (Some(id), Ok(Some(pem))) => Some((
                id.clone(),
                VerifyingKey::from_public_key_pem(&pem)
                    .map_err(|e| PayConfigError(format!("pay.public_key: {e}")))?,
            )),
            (_, Err(e)) => return Err(PayConfigError(e.to_string())),
            _ => None,
        };
        let apiv3_key = ApiV3Key::new(settings.apiv3_key.expose_secret())
            .ok_or_else(|| PayConfigError("pay.apiv3_key: must be 32 characters".into()))?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| PayConfigError(e.to_string()))?;
        Ok(Self(Arc::new(Inner {
            http,
            base: settings.api_base.trim_end_matches('/').to_owned(),
            appid: appid.to_owned(),
            mchid: settings.mchid.clone(),
            merchant_serial: settings.merchant_serial.clone(),
            merchant_key,
            apiv3_key,
            notify_url: settings.notify_url.clone(),
            keys: KeyStore::new(public, settings.platform_certificates, clock.clone()),
            clock,
            tolerance_secs: i64::try_from(settings.timestamp_tolerance.as_secs())
                .expect("validated: at most 300 s"),
            metrics: OnceLock::new(),
        })))
    }

    /// Records every call's latency and outcome in `metrics` (once; later calls are
    /// ignored).
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        let _ = self.0.metrics.set(metrics);
        self
    }

    /// The app id payments are made under.
    pub fn appid(&self) -> &str {
        &self.0.appid
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        &self.0.mchid
    }

    /// The key store.
    pub fn keys(&self) -> &KeyStore {
        &self.0.keys
    }

    /// The APIv3 key, for notify resources.
    pub fn apiv3_key(&self) -> &ApiV3Key {
        &self.0.apiv3_key
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0.clock)()
    }

    /// The key for a `Wechatpay-Serial` now, downloading certificates on an unknown
    /// serial (see [`KeyStore::key_for`]).
    pub async fn key_for(&self, serial: &str) -> Result<VerifyingKey, NoKey> {
        self.key_at(serial, self.now()).await
    }

    /// The key for a `Wechatpay-Serial` as it was at `at` (the audit checks recorded
    /// evidence against the certificate valid when it was signed).
    pub async fn key_at(&self, serial: &str, at: DateTime<Utc>) -> Result<VerifyingKey, NoKey> {
        self.0.keys.key_for(serial, at, self).await
    }

    /// Downloads the platform certificates now (start-up and timer).
    pub async fn refresh_certificates(&self) -> Result<usize, String> {
        self.0.keys.refresh(self).await
    }

    /// JSAPI prepay: WeChat's `prepay_id` for the order.
    pub async fn jsapi_prepay(&self, p: &Prepay<'_>) -> Result<String, PayError> {
        let china = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
        let body = serde_json::json!({
            "appid": self.0.appid,
            "mchid": self.0.mchid,
            "description": p.description,
            "out_trade_no": p.out_trade_no,
            "time_expire": p.time_expire.with_timezone(&china).to_rfc3339(),
            "notify_url": self.0.notify_url,
            "amount": {"total": p.amount, "currency": "CNY"},
            "payer": {"openid": p.openid},
        });
        let answer = self
            .call(
                "jsapi_prepay",
                reqwest::Method::POST,
                "/v3/pay/transactions/jsapi",
                Some(body.to_string().into_bytes()),
            )
            .await?;
        #[derive(Deserialize)]
        struct PrepayAnswer {
            prepay_id: String,
        }
        let parsed: PrepayAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| PayError::Malformed(format!("prepay: {e}")))?;
        Ok(parsed.prepay_id)
    }

    /// The transaction of an order, with the signed answer as evidence.
    pub async fn query(&self, out_trade_no: &str) -> Result<(Transaction, Evidence), PayError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            self.0.mchid
        );
        let answer = self
            .call("query_order", reqwest::Method::GET, &path, None)
            .await?;
        let transaction = serde_json::from_slice(&answer.body)
            .map_err(|e| PayError::Malformed(format!("query: {e}")))?;
        Ok((transaction, answer.evidence))
    }

    /// Asks WeChat to refund `amount` of the order's `total` (`POST
    /// /v3/refund/domestic/refunds`). The same `out_refund_no` again is the same refund at
    /// WeChat, so a retry after a timeout is safe. The answer is signed like any other.
    pub async fn refund(&self, r: &RefundRequest<'_>) -> Result<(Refund, Evidence), PayError> {
        let mut body = serde_json::json!({
            "out_trade_no": r.out_trade_no,
            "out_refund_no": r.out_refund_no,
            "reason": r.reason,
            "amount": {"refund": r.amount, "total": r.total, "currency": "CNY"},
        });
        body["notify_url"] = self.0.notify_url.as_str().into();
        let answer = self
            .call(
                "refund",
                reqwest::Method::POST,
                "/v3/refund/domestic/refunds",
                Some(body.to_string().into_bytes()),
            )
            .await?;
        let refund = serde_json::from_slice(&answer.body)
            .map_err(|e| PayError::Malformed(format!("refund: {e}")))?;
        Ok((refund, answer.evidence))
    }

    /// WeChat's word on a refund (`GET /v3/refund/domestic/refunds/{out_refund_no}`).
    pub async fn query_refund(&self, out_refund_no: &str) -> Result<(Refund, Evidence), PayError> {
        let path = format!("/v3/refund/domestic/refunds/{out_refund_no}");
        let answer = self
            .call("query_refund", reqwest::Method::GET, &path, None)
            .await?;
        let refund = serde_json::from_slice(&answer.body)
            .map_err(|e| PayError::Malformed(format!("refund query: {e}")))?;
        Ok((refund, answer.evidence))
    }

    /// Closes an unpaid order at WeChat.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), PayError> {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        let body = serde_json::json!({"mchid": self.0.mchid}).to_string();
        self.call(
            "close_order",
            reqwest::Method::POST,
            &path,
            Some(body.into_bytes()),
        )
        .await
        .map(|_| ())
    }

    /// `wx.requestPayment` parameters for a prepay id, signed with the merchant key.
    pub fn pay_params(&self, prepay_id: &str) -> PayParams {
        let time_stamp = self.now().timestamp().to_string();
        let nonce_str = random_alphanumeric(32);
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = self.0.merchant_key.sign(&pay_sign_message(
            &self.0.appid,
            &time_stamp,
            &nonce_str,
            &package,
        ));
        PayParams {
            time_stamp,
            nonce_str,
            package,
            sign_type: "RSA".into(),
            pay_sign,
        }
    }

    /// Checks a signed message: fresh (see [`PayClient::check_fresh`]) and signed by `key`.
    pub fn check(
        &self,
        evidence: &Evidence,
        key: &VerifyingKey,
        body: &[u8],
    ) -> Result<(), Unbelieved> {
        self.check_fresh(evidence)?;
        verify_signature(evidence, key, body)
    }

    /// The checks that need no key: not WeChat's `WECHATPAY/SIGNTEST/` probe, and a
    /// timestamp within the tolerance of our clock.
    pub fn check_fresh(&self, evidence: &Evidence) -> Result<(), Unbelieved> {
        if evidence.signature.starts_with("WECHATPAY/SIGNTEST/") {
            return Err(Unbelieved::Probe);
        }
        let ts: i64 = evidence
            .timestamp
            .parse()
            .map_err(|_| Unbelieved::Timestamp)?;
        // abs_diff, not `(now - ts).abs()`: the header is the sender's, and i64::MIN
        // there must be a refusal, not an overflow.
        if self.now().timestamp().abs_diff(ts) > self.0.tolerance_secs.unsigned_abs() {
            return Err(Unbelieved::Stale(self.0.tolerance_secs));
        }
        Ok(())
    }

    /// The trade bill (`bill_type=ALL`) of `bill_date` (`YYYY-MM-DD`): the verified answer
    /// of `GET /v3/bill/tradebill` (`{hash_type, hash_value, download_url}`, raw) and the
    /// file at its `download_url`, fetched with a signed request. WeChat does not sign
    /// the file: the caller checks it against `hash_value`.
    pub async fn trade_bill(&self, bill_date: &str) -> Result<(Vec<u8>, Vec<u8>), PayError> {
        let path = format!("/v3/bill/tradebill?bill_date={bill_date}&bill_type=ALL");
        let answer = self
            .call("trade_bill", reqwest::Method::GET, &path, None)
            .await?;
        #[derive(Deserialize)]
        struct Link {
            download_url: String,
        }
        let link: Link = serde_json::from_slice(&answer.body)
            .map_err(|e| PayError::Malformed(format!("tradebill: {e}")))?;
        // WeChat's own examples put a space before the URL.
        let url = reqwest::Url::parse(link.download_url.trim())
            .map_err(|e| PayError::Malformed(format!("download_url: {e}")))?;
        let signed_path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let unreachable = |e: reqwest::Error| PayError::Unavailable(crate::core::causes::http(e));
        let response = self
            .0
            .http
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                self.authorization("GET", &signed_path, b""),
            )
            .header(reqwest::header::USER_AGENT, "wxledger")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let file = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(PayError::Unavailable(format!(
                "bill download: HTTP {status}"
            )));
        }
        Ok((answer.body, file.to_vec()))
    }
}

/// Why a message said to be signed by WeChat Pay is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unbelieved {
    /// A signature starting `WECHATPAY/SIGNTEST/`: WeChat probing that we check.
    #[error("signature probe (WECHATPAY/SIGNTEST/)")]
    Probe,
    /// `Wechatpay-Timestamp` is not a number.
    #[error("timestamp is not a number")]
    Timestamp,
    /// The timestamp is further from our clock than the tolerance (seconds).
    #[error("timestamp more than {0} s off")]
    Stale(i64),
    /// The signature does not verify under the key the serial names.
    #[error("signature does not verify")]
    Signature,
}

/// Verifies WeChat's signature over `timestamp\nnonce\nbody\n` of the raw body.
pub fn verify_signature(
    evidence: &Evidence,
    key: &VerifyingKey,
    body: &[u8],
) -> Result<(), Unbelieved> {
    key.verify(
        &response_message(&evidence.timestamp, &evidence.nonce, body),
        &evidence.signature,
    )
    .map_err(|_| Unbelieved::Signature)
}

/// The `Wechatpay-*` headers and body of a message, if the headers are all there and the
/// body is UTF-8.
pub fn evidence_from_headers(headers: &axum::http::HeaderMap, body: &[u8]) -> Option<Evidence> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Some(Evidence {
        serial: get("wechatpay-serial")?,
        signature: get("wechatpay-signature")?,
        timestamp: get("wechatpay-timestamp")?,
        nonce: get("wechatpay-nonce")?,
        signature_type: get("wechatpay-signature-type"),
        body: String::from_utf8(body.to_vec()).ok()?,
    })
}
