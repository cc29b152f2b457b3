//! A WeChat Pay platform certificate as wxledger uses it: serial, public key and the
//! validity dates (X.509 `notBefore`/`notAfter`) outside which its signatures are refused.
//! Also issuing one, for the simulator and tests, which need certificates of chosen
//! validity (the development certificates are valid for a century).

use std::time::{Duration, SystemTime};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use chrono::{DateTime, Utc};
use x509_cert::{
    certificate::{TbsCertificate, Version},
    der::{
        asn1::{Any, BitString, ObjectIdentifier},
        Decode, Encode,
    },
    name::Name,
    serial_number::SerialNumber,
    spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned},
    time::{Time, Validity},
    Certificate,
};

use super::crypto::{normalize_serial, pem_der, PemError, SigningKey, VerifyingKey};

/// `sha256WithRSAEncryption`.
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// `rsaEncryption`.
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A platform certificate: what verifies WeChat's signatures, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformCertificate {
    /// The serial, normalized (see [`normalize_serial`]).
    pub serial: String,
    /// The certificate's public key.
    pub key: VerifyingKey,
    /// Not valid before this.
    pub not_before: DateTime<Utc>,
    /// Not valid after this.
    pub not_after: DateTime<Utc>,
}

/// When a certificate is asked for outside its validity: which side of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideValidity {
    /// Before `notBefore`.
    NotYetValid,
    /// After `notAfter`.
    Expired,
}

impl VerifyingKey {
    /// Reads a certificate PEM; returns its serial (normalized, see [`normalize_serial`])
    /// and its key. [`PlatformCertificate::from_pem`] also reads its validity.
    pub fn from_certificate_pem(pem: &str) -> Result<(String, Self), PemError> {
        PlatformCertificate::from_pem(pem).map(|c| (c.serial, c.key))
    }
}

impl PlatformCertificate {
    /// Reads a certificate PEM.
    pub fn from_pem(pem: &str) -> Result<Self, PemError> {
        let der = pem_der(pem, "CERTIFICATE")?;
        let cert = Certificate::from_der(&der).map_err(|_| PemError::Der("X.509 certificate"))?;
        let tbs = cert.tbs_certificate;
        let serial = normalize_serial(&hex::encode(tbs.serial_number.as_bytes()));
        let key = tbs
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or(PemError::Der("certificate public key"))?;
        let at = |t: Time| {
            i64::try_from(t.to_unix_duration().as_secs())
                .ok()
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
                .ok_or(PemError::Der("certificate validity"))
        };
        Ok(Self {
            serial,
            key: VerifyingKey::from_pkcs1_der(key),
            not_before: at(tbs.validity.not_before)?,
            not_after: at(tbs.validity.not_after)?,
        })
    }

    /// Whether the certificate is valid at `at` (both ends included, as RFC 5280 says).
    pub fn validity_at(&self, at: DateTime<Utc>) -> Result<(), OutsideValidity> {
        if at < self.not_before {
            Err(OutsideValidity::NotYetValid)
        } else if at > self.not_after {
            Err(OutsideValidity::Expired)
        } else {
            Ok(())
        }
    }
}

/// A self-signed certificate PEM for `key` with serial `serial_hex` (a positive number of
/// at most 20 bytes) valid from `not_before` to `not_after` (both after 1970), as the
/// simulator publishes. Errors say which input could not be encoded.
pub fn issue(
    key: &SigningKey,
    serial_hex: &str,
    common_name: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<String, String> {
    fn der_err(what: &'static str) -> impl Fn(x509_cert::der::Error) -> String {
        move |e| format!("{what}: {e}")
    }
    let serial = hex::decode(serial_hex).map_err(|e| format!("serial: {e}"))?;
    let time = |t: DateTime<Utc>| {
        let secs = u64::try_from(t.timestamp()).map_err(|_| "validity before 1970".to_owned())?;
        Time::try_from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .map_err(der_err("validity"))
    };
    let sha256_rsa = AlgorithmIdentifierOwned {
        oid: SHA256_WITH_RSA,
        parameters: Some(Any::null()),
    };
    let name: Name = format!("CN={common_name},O=wxledger simulator,C=CN")
        .parse()
        .map_err(der_err("name"))?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(der_err("serial"))?,
        signature: sha256_rsa.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: time(not_before)?,
            not_after: time(not_after)?,
        },
        subject: name,
        subject_public_key_info: SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: RSA,
                parameters: Some(Any::null()),
            },
            subject_public_key: BitString::from_bytes(key.verifying_key().pkcs1_der())
                .map_err(der_err("key"))?,
        },
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: None,
    };
    let signed = tbs.to_der().map_err(der_err("certificate"))?;
    let signature = B64
        .decode(key.sign(&signed))
        .expect("SigningKey::sign answers base64");
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: sha256_rsa,
        signature: BitString::from_bytes(&signature).map_err(der_err("signature"))?,
    };
    let der = certificate.to_der().map_err(der_err("certificate"))?;
    let body = B64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    Ok(format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::devkeys;

    #[test]
    fn the_dev_certificates_read_with_their_validity() {
        let cert = PlatformCertificate::from_pem(devkeys::PLATFORMS[0].certificate_pem).unwrap();
        assert_eq!(cert.serial, devkeys::PLATFORMS[0].serial);
        assert_eq!(cert.not_before.to_rfc3339(), "2026-11-21T06:12:39+00:00");
        assert_eq!(cert.not_after.to_rfc3339(), "2126-10-28T06:12:39+00:00");
    }

    #[test]
    fn an_issued_certificate_carries_the_chosen_serial_key_and_validity() {
        let key = SigningKey::from_pkcs8_pem(devkeys::PLATFORMS[1].key_pem).unwrap();
        let from = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let until = DateTime::from_timestamp(1_700_086_400, 0).unwrap();
        let pem = issue(
            &key,
            "7E0000000000000000000000000000000000ABCD",
            "t",
            from,
            until,
        )
        .unwrap();
        let cert = PlatformCertificate::from_pem(&pem).unwrap();
        assert_eq!(cert.serial, "7E0000000000000000000000000000000000ABCD");
        assert_eq!(cert.key, key.verifying_key());
        assert_eq!((cert.not_before, cert.not_after), (from, until));
        assert_eq!(cert.validity_at(from), Ok(()));
        assert_eq!(cert.validity_at(until), Ok(()));
        let second = chrono::Duration::seconds(1);
        assert_eq!(
            cert.validity_at(from - second),
            Err(OutsideValidity::NotYetValid)
        );
        assert_eq!(
            cert.validity_at(until + second),
            Err(OutsideValidity::Expired)
        );
    }
}
