//! Both directions of WeChat Pay's signatures in the simulator: checking the merchant's
//! `Authorization` on every `/v3/...` request, and signing every answer and notify.

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequest, Request},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

use super::{random_alphanumeric, Pay, PayConfig};
use crate::wechat::pay::crypto::{normalize_serial, request_message, response_message, SigningKey};

/// How far a request's timestamp may be from now, as WeChat allows.
const MAX_SKEW_SECS: u64 = 300;

/// Requests the simulator reads are small; anything bigger is not a real client.
const MAX_BODY: usize = 1 << 20;

/// The headers that sign an answer or a notify, in the order they are sent.
pub(super) fn signature_headers(
    key: &SigningKey,
    serial: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let nonce = random_alphanumeric(32);
    let ts = timestamp.to_string();
    let signature = key.sign(&response_message(&ts, &nonce, body));
    signed_with(serial, &ts, &nonce, signature)
}

/// The same headers around a given signature (the notify faults forge some).
pub(super) fn signed_with(
    serial: &str,
    timestamp: &str,
    nonce: &str,
    signature: String,
) -> Vec<(&'static str, String)> {
    vec![
        ("Wechatpay-Serial", serial.to_owned()),
        ("Wechatpay-Signature", signature),
        ("Wechatpay-Timestamp", timestamp.to_owned()),
        ("Wechatpay-Nonce", nonce.to_owned()),
        (
            "Wechatpay-Signature-Type",
            "WECHATPAY2-SHA256-RSA2048".to_owned(),
        ),
        ("Request-ID", uuid::Uuid::new_v4().to_string()),
    ]
}

impl Pay {
    /// An answer signed with the current key over exactly the bytes sent.
    pub(super) fn answer(&self, status: StatusCode, body: Option<&Value>) -> Response {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("JSON values serialize"))
            .unwrap_or_default();
        let (key, serial) = self.signer();
        let mut headers = HeaderMap::new();
        for (name, value) in signature_headers(key, serial, chrono::Utc::now().timestamp(), &bytes)
        {
            headers.insert(
                name,
                HeaderValue::from_str(&value).expect("signature headers are ASCII"),
            );
        }
        if body.is_some() {
            headers.insert(
                "Content-Type",
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        (status, headers, bytes).into_response()
    }

    /// A signed `{"code","message"}` error, as WeChat Pay answers one.
    pub(super) fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        self.answer(status, Some(&json!({"code": code, "message": message})))
    }
}

/// The body of a `/v3/...` request whose merchant signature verified.
pub(super) struct MerchantRequest(pub Bytes);

impl<S> FromRequest<S> for MerchantRequest
where
    Pay: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let pay = Pay::from_ref(state);
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| pay.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "body too large"))?;
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        verify(
            &pay.config,
            parts.method.as_str(),
            path_and_query,
            &parts.headers,
            &body,
        )
        .map_err(|why| {
            tracing::info!(%why, path = path_and_query, "sim pay: merchant signature refused");
            pay.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", &why)
        })?;
        Ok(Self(body))
    }
}

/// The fields of `Authorization: WECHATPAY2-SHA256-RSA2048 k="v",...`.
fn authorization_fields(header: &str) -> Result<Vec<(&str, &str)>, String> {
    let params = header
        .strip_prefix("WECHATPAY2-SHA256-RSA2048 ")
        .ok_or("Authorization must be WECHATPAY2-SHA256-RSA2048")?;
    params
        .split(',')
        .map(|field| {
            let (name, value) = field
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("malformed Authorization field {field:?}"))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| format!("Authorization field {name} is not quoted"))?;
            Ok((name, value))
        })
        .collect()
}

fn verify(
    config: &PayConfig,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let header = headers
        .get("Authorization")
        .ok_or("no Authorization header")?
        .to_str()
        .map_err(|_| "Authorization is not ASCII")?;
    let fields = authorization_fields(header)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("Authorization has no {name}"))
    };
    let (mchid, nonce, timestamp, serial, signature) = (
        field("mchid")?,
        field("nonce_str")?,
        field("timestamp")?,
        field("serial_no")?,
        field("signature")?,
    );
    if mchid != config.mchid {
        return Err(format!("unknown mchid {mchid}"));
    }
    if normalize_serial(serial) != config.merchant_serial {
        return Err(format!(
            "serial_no {serial} is not the merchant certificate"
        ));
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| format!("timestamp {timestamp:?} is not a number"))?;
    if chrono::Utc::now().timestamp().abs_diff(ts) > MAX_SKEW_SECS {
        return Err(format!("timestamp {ts} is more than 300 s from now"));
    }
    config
        .merchant_key
        .verify(
            &request_message(method, path_and_query, ts, nonce, body),
            signature,
        )
        .map_err(|_| "signature does not verify with the merchant key".to_owned())
}

#[cfg(test)]
mod tests {
    use super::authorization_fields;

    #[test]
    fn authorization_fields_are_read_and_malformed_ones_refused() {
        let fields = authorization_fields(
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="abc",timestamp="1",serial_no="1F",signature="c2ln=""#,
        )
        .unwrap();
        assert_eq!(fields[0], ("mchid", "1900000109"));
        assert_eq!(fields[4], ("signature", "c2ln="));
        assert!(authorization_fields("Bearer x").is_err());
        assert!(authorization_fields(r#"WECHATPAY2-SHA256-RSA2048 mchid=1"#).is_err());
    }
}
