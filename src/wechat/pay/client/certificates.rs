//! The platform certificate download: `GET /v3/certificates`, decrypted under the APIv3
//! key and checked against the listing's own signature.

use super::*;

impl CertificateSource for PayClient {
    fn fetch(
        &self,
        known: KeySet,
    ) -> futures::future::BoxFuture<'_, Result<Vec<PlatformCertificate>, String>> {
        Box::pin(call::measured(
            self.0.metrics.get(),
            "wechat_pay",
            "certificates",
            self.fetch_certificates(known),
            |result| if result.is_ok() { "ok" } else { "error" },
        ))
    }
}

impl PayClient {
    /// Downloads, decrypts and checks the platform certificates.
    async fn fetch_certificates(&self, known: KeySet) -> Result<Vec<PlatformCertificate>, String> {
        let path = "/v3/certificates";
        let request = self
            .0
            .http
            .get(format!("{}{path}", self.0.base))
            .header(
                reqwest::header::AUTHORIZATION,
                self.authorization("GET", path, b""),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = call::send(request)
            .await
            .map_err(|e| format!("certificates: {}", crate::core::causes::http(e)))?;
        let (status, headers, raw) = (answer.status, answer.headers, answer.body);
        if !status.is_success() {
            return Err(format!("certificates: HTTP {status}"));
        }
        #[derive(Deserialize)]
        struct Listing {
            data: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            serial_no: String,
            encrypt_certificate: Sealed,
        }
        #[derive(Deserialize)]
        struct Sealed {
            algorithm: String,
            nonce: String,
            associated_data: String,
            ciphertext: String,
        }
        let listing: Listing =
            serde_json::from_slice(&raw).map_err(|e| format!("certificates: {e}"))?;
        let mut fetched = Vec::new();
        for entry in listing.data {
            let sealed = entry.encrypt_certificate;
            if sealed.algorithm != "AEAD_AES_256_GCM" {
                return Err(format!("certificates: algorithm {}", sealed.algorithm));
            }
            let pem = self
                .0
                .apiv3_key
                .decrypt(&sealed.nonce, &sealed.associated_data, &sealed.ciphertext)
                .map_err(|e| format!("certificate {}: {e}", entry.serial_no))?;
            let pem = String::from_utf8(pem)
                .map_err(|_| format!("certificate {}: not PEM", entry.serial_no))?;
            let certificate = PlatformCertificate::from_pem(&pem)
                .map_err(|e| format!("certificate {}: {e}", entry.serial_no))?;
            if certificate.serial != crate::wechat::pay::crypto::normalize_serial(&entry.serial_no)
            {
                return Err(format!(
                    "certificate listed as {} has serial {}",
                    entry.serial_no, certificate.serial
                ));
            }
            fetched.push(certificate);
        }
        // The listing is signed like any answer; a new certificate may vouch for itself
        // only because the listing decrypted under our APIv3 key.
        let evidence = evidence_from_headers(&headers, &raw)
            .ok_or("certificates: answer without signature headers")?;
        let keys = known.with(&fetched);
        let key = keys
            .get(&evidence.serial, self.now())
            .map_err(|e| format!("certificates: signed by {e}"))?;
        self.check(&evidence, key, &raw)
            .map_err(|e| format!("certificates: {e}"))?;
        Ok(fetched)
    }
}
