//! Sending a signed request to WeChat Pay API v3 and verifying its answer: the
//! `Authorization` header, the call with its metrics, and WeChat's error bodies.

use super::*;

impl PayClient {
    /// [`PayClient::call_unmeasured`], timed and counted under `endpoint` (a fixed name,
    /// never the path: paths carry order numbers).
    pub(super) async fn call(
        &self,
        endpoint: &'static str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Verified, PayError> {
        call::measured(
            self.0.metrics.get(),
            "wechat_pay",
            endpoint,
            self.call_unmeasured(method, path_and_query, body),
            |result| match result {
                Ok(_) => "ok",
                Err(PayError::Api { code, .. }) => labels::pay_code(code),
                Err(PayError::Unavailable(_)) => "unavailable",
                Err(PayError::Unverified(_)) => "unverified",
                Err(PayError::Malformed(_)) => "malformed",
            },
        )
        .await
    }

    /// Sends a signed request and verifies the answer; a non-2xx answer becomes
    /// [`PayError::Api`] (after it verified) or [`PayError::Unavailable`] (5xx).
    async fn call_unmeasured(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Verified, PayError> {
        let answer = self.send(method, path_and_query, body).await?;
        let status = answer.status;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            code: String,
            #[serde(default)]
            message: String,
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&answer.body).ok();
        if status >= 500 {
            return Err(PayError::Unavailable(format!(
                "HTTP {status} {}",
                parsed.map(|b| b.code).unwrap_or_default()
            )));
        }
        let ErrorBody { code, message } = parsed.ok_or_else(|| {
            PayError::Malformed(format!("HTTP {status} without WeChat's error body"))
        })?;
        Err(PayError::Api {
            status,
            code,
            message,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Verified, PayError> {
        let body = body.unwrap_or_default();
        let mut request = self
            .0
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.0.base))
            .header(
                reqwest::header::AUTHORIZATION,
                self.authorization(method.as_str(), path_and_query, &body),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::USER_AGENT, "wxledger");
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let answer = call::send(request)
            .await
            .map_err(|e| PayError::Unavailable(crate::core::causes::http(e)))?;
        let (status, headers, raw) = (answer.status.as_u16(), answer.headers, answer.body);
        let evidence = evidence_from_headers(&headers, &raw).ok_or_else(|| {
            PayError::Unverified(format!("HTTP {status} without signature headers"))
        })?;
        let key = self.key_for(&evidence.serial).await.map_err(|e| match e {
            NoKey::Unavailable(_) => PayError::Unavailable(e.to_string()),
            _ => PayError::Unverified(e.to_string()),
        })?;
        self.check(&evidence, &key, &raw)
            .map_err(|e| PayError::Unverified(e.to_string()))?;
        Ok(Verified {
            status,
            body: raw.to_vec(),
            evidence,
        })
    }

    /// The `Authorization` header of a request, signed now with a fresh nonce.
    pub(super) fn authorization(&self, method: &str, path_and_query: &str, body: &[u8]) -> String {
        let timestamp = self.now().timestamp();
        let nonce_str = random_alphanumeric(32);
        let signature = self.0.merchant_key.sign(&request_message(
            method,
            path_and_query,
            timestamp,
            &nonce_str,
            body,
        ));
        authorization(
            &self.0.mchid,
            &nonce_str,
            timestamp,
            &self.0.merchant_serial,
            &signature,
        )
    }
}
