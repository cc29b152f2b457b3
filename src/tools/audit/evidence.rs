//! `--verify-signatures`: WeChat's word, checked again from the evidence an event carries,
//! with the same functions that checked it when it arrived. API v3: RSA-SHA256 over
//! `timestamp\nnonce\nbody\n` under the key the serial names (the configured public key,
//! or a platform certificate, downloaded when unknown); the facts recorded must be what
//! the body says (a notify's resource decrypted with the APIv3 key). API v2: the `sign`
//! under the API key, or for a refund notify (alone in old streams, or the claim a
//! `refund.queried` answers) its `req_info` decrypting under it. Time is not checked: the
//! evidence is old by nature. The v3 checks are the webhook's, in `wechat::pay::notify`.

use crate::{
    core::{
        clock,
        events::{Event, Evidence, LegacyEvidence, Refund, RefundEvidence},
    },
    settings::Settings,
    wechat::pay::{
        client::Unbelieved,
        notify::{self, Doubt, Freshness, Notify},
        v2::{
            map,
            notify::{self as v2_notify, Doubt as V2Doubt},
            xml, SignType, V2Client,
        },
        PayClient,
    },
};

use serde_json::Value;

use super::AuditError;

/// The largest v2 message read back (the webhook took at most `pay.max_notify_bytes`,
/// answers are small; this only guards against a runaway).
const MAX_XML_BYTES: usize = 1024 * 1024;

/// What is wrong with an event's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceProblem {
    /// The signature (or sign, or encryption) does not verify.
    Signature(String),
    /// It verifies, but the event's facts are not what it says.
    Mismatch(String),
}

/// The keys that verify WeChat's messages, from the pay settings.
pub struct Verifier {
    v3: PayClient,
    v2: Option<V2Client>,
}

impl Verifier {
    /// The verifier of the merchant in `settings.pay`.
    pub fn new(settings: &Settings) -> Result<Self, AuditError> {
        let appid = &settings.wechat.appid;
        let v3 = PayClient::new(&settings.pay, appid, clock::system())
            .map_err(|e| AuditError::Pay(e.to_string()))?;
        let v2 = V2Client::new(&settings.pay, appid, clock::system())
            .map_err(|e| AuditError::Pay(e.to_string()))?;
        Ok(Self { v3, v2 })
    }

    /// Checks `event`'s evidence; `None` when it carries none.
    pub async fn check(&self, event: &Event) -> Option<Result<(), EvidenceProblem>> {
        Some(match event {
            Event::PaymentNotified(e) => self
                .v3_notify(&e.evidence, &e.notify_id, &e.event_type)
                .await
                .and_then(|plain| same_json(&plain, &e.transaction, "transaction")),
            Event::PaymentQueried(e) => match self.v3_signed(&e.evidence).await {
                Ok(()) => same_json(e.evidence.body.as_bytes(), &e.transaction, "transaction"),
                Err(p) => Err(p),
            },
            Event::LegacyPaymentNotified(e) => self.v2_signed(&e.evidence).and_then(|fields| {
                same(
                    map::notified_transaction(&fields),
                    &e.transaction,
                    "transaction",
                )
            }),
            Event::LegacyPaymentQueried(e) => self.v2_signed(&e.evidence).and_then(|fields| {
                same(
                    map::queried_transaction(&fields),
                    &e.transaction,
                    "transaction",
                )
            }),
            Event::RefundAccepted(e) => match &e.evidence {
                RefundEvidence::V3(ev) => match self.v3_signed(ev).await {
                    Ok(()) => same_json(ev.body.as_bytes(), &e.refund, "refund"),
                    Err(p) => Err(p),
                },
                RefundEvidence::V2(ev) => self
                    .v2_signed(ev)
                    .and_then(|fields| same(map::accepted_refund(&fields), &e.refund, "refund")),
            },
            Event::RefundQueried(e) => {
                let answer = match &e.evidence {
                    RefundEvidence::V3(ev) => match self.v3_signed(ev).await {
                        Ok(()) => same_json(ev.body.as_bytes(), &e.refund, "refund"),
                        Err(p) => Err(p),
                    },
                    RefundEvidence::V2(ev) => self.v2_signed(ev).and_then(|fields| {
                        same(
                            map::queried_refund(&fields, &e.refund.out_refund_no),
                            &e.refund,
                            "refund",
                        )
                    }),
                };
                // The v2 notify that made us ask: its claim is what its req_info says.
                match &e.notify {
                    Some(claim) => {
                        answer.and_then(|()| self.v2_refund_notify(&claim.evidence, &claim.refund))
                    }
                    None => answer,
                }
            }
            Event::RefundNotified(e) => match &e.evidence {
                RefundEvidence::V3(ev) => {
                    let notify_id = e.notify_id.as_deref().unwrap_or_default();
                    self.v3_notify(ev, notify_id, &e.event_type)
                        .await
                        .and_then(|plain| same_json(&plain, &e.refund, "refund"))
                }
                RefundEvidence::V2(ev) => self.v2_refund_notify(ev, &e.refund),
            },
            _ => return None,
        })
    }

    /// An API v3 message: signed by the key its serial names (valid when it was signed).
    async fn v3_signed(&self, evidence: &Evidence) -> Result<(), EvidenceProblem> {
        notify::signed(&self.v3, evidence, Freshness::AsSigned)
            .await
            .map_err(|e| doubt(e, evidence))
    }

    /// An API v3 notify: signed, its id and type those recorded, its resource decrypting
    /// under the APIv3 key. Answers the plaintext.
    async fn v3_notify(
        &self,
        evidence: &Evidence,
        notify_id: &str,
        event_type: &str,
    ) -> Result<Vec<u8>, EvidenceProblem> {
        self.v3_signed(evidence).await?;
        let notify = Notify::read(evidence.body.as_bytes()).map_err(|e| doubt(e, evidence))?;
        if notify.id != notify_id || notify.event_type != event_type {
            return Err(EvidenceProblem::Mismatch(format!(
                "recorded as notify {notify_id} {event_type}, the signed body is {} {}",
                notify.id, notify.event_type
            )));
        }
        notify
            .open(self.v3.apiv3_key())
            .map_err(|e| doubt(e, evidence))
    }

    fn v2_key(&self) -> Result<&V2Client, EvidenceProblem> {
        self.v2.as_ref().ok_or_else(|| {
            EvidenceProblem::Signature(
                "API v2 evidence, but no API v2 key is configured (pay.v2.api_key)".into(),
            )
        })
    }

    /// An API v2 message with a `sign`: its fields, once the sign verifies under our key
    /// and the sign type recorded with it.
    fn v2_signed(&self, evidence: &LegacyEvidence) -> Result<xml::Fields, EvidenceProblem> {
        let v2 = self.v2_key()?;
        let fields = xml::parse(evidence.body.as_bytes(), MAX_XML_BYTES)
            .map_err(|e| EvidenceProblem::Signature(format!("the XML does not read: {e}")))?;
        let named = evidence.sign_type.as_deref().unwrap_or("MD5");
        let sign_type = SignType::parse(named).ok_or_else(|| {
            EvidenceProblem::Signature(format!("sign type {named} is not WeChat's"))
        })?;
        v2_notify::signed(v2, &fields, sign_type).map_err(|e| match e {
            V2Doubt::BadSign(e) => EvidenceProblem::Signature(format!("{e} ({named})")),
            e => v2_doubt(e),
        })?;
        Ok(fields)
    }

    /// An API v2 refund notify: our merchant's, its `req_info` decrypting under our key to
    /// the plaintext recorded, which says what the event says.
    fn v2_refund_notify(
        &self,
        evidence: &LegacyEvidence,
        refund: &Refund,
    ) -> Result<(), EvidenceProblem> {
        let v2 = self.v2_key()?;
        let fields = xml::parse(evidence.body.as_bytes(), MAX_XML_BYTES)
            .map_err(|e| EvidenceProblem::Signature(format!("the XML does not read: {e}")))?;
        let (plain, inner) =
            v2_notify::open_refund(v2, &fields, MAX_XML_BYTES).map_err(v2_doubt)?;
        if evidence.decrypted.as_deref() != Some(plain.as_str()) {
            return Err(EvidenceProblem::Mismatch(
                "the recorded plaintext is not what req_info decrypts to".into(),
            ));
        }
        same(map::notified_refund(&inner, v2.mchid()), refund, "refund")
    }
}

/// The audit's words for why a v3 message is not believed.
fn doubt(e: Doubt, evidence: &Evidence) -> EvidenceProblem {
    match e {
        Doubt::Unbelieved(Unbelieved::Probe) => {
            EvidenceProblem::Signature("a signature probe (WECHATPAY/SIGNTEST/)".into())
        }
        Doubt::Unbelieved(Unbelieved::Timestamp) => {
            EvidenceProblem::Signature(format!("timestamp {:?} is not a time", evidence.timestamp))
        }
        Doubt::Unbelieved(e @ Unbelieved::Signature) => {
            EvidenceProblem::Signature(format!("{e} (serial {})", evidence.serial))
        }
        // Not asked (the evidence is old by nature).
        Doubt::Unbelieved(e @ Unbelieved::Stale(_)) => EvidenceProblem::Signature(e.to_string()),
        Doubt::SignatureType(kind) => {
            EvidenceProblem::Signature(format!("signature type {kind} is not WeChat's"))
        }
        Doubt::NoKey(e) => EvidenceProblem::Signature(format!("WeChat Pay key: {e}")),
        Doubt::Body(e) => {
            EvidenceProblem::Mismatch(format!("the signed body is not a notify: {e}"))
        }
        Doubt::Algorithm(algorithm) => {
            EvidenceProblem::Signature(format!("resource algorithm {algorithm} is not WeChat's"))
        }
        Doubt::Undecryptable(e) => EvidenceProblem::Signature(e.to_string()),
    }
}

/// The audit's words for why a v2 message is not believed.
fn v2_doubt(e: V2Doubt) -> EvidenceProblem {
    EvidenceProblem::Signature(match e {
        V2Doubt::NoSign => "no sign".into(),
        V2Doubt::BadSign(e) => e.to_string(),
        V2Doubt::NotOurs => "appid or mch_id is not ours".into(),
        V2Doubt::NoReqInfo => "no req_info".into(),
        V2Doubt::ReqInfo(e) => e.to_string(),
    })
}

/// The facts `got` (read from the evidence) equal the event's `recorded`.
fn same<T: PartialEq + serde::Serialize, E: std::fmt::Display>(
    got: Result<T, E>,
    recorded: &T,
    what: &str,
) -> Result<(), EvidenceProblem> {
    let got = got
        .map_err(|e| EvidenceProblem::Mismatch(format!("the signed {what} does not read: {e}")))?;
    if &got == recorded {
        return Ok(());
    }
    let (recorded, got) = (
        serde_json::to_value(recorded).unwrap_or_default(),
        serde_json::to_value(&got).unwrap_or_default(),
    );
    let mut fields = Vec::new();
    differences("", &recorded, &got, &mut fields);
    Err(EvidenceProblem::Mismatch(format!(
        "the event's {what} is not the signed one: {}",
        fields.join("; ")
    )))
}

/// The leaves where `recorded` and `signed` differ, as `path: recorded x, signed y`.
fn differences(path: &str, recorded: &Value, signed: &Value, out: &mut Vec<String>) {
    match (recorded, signed) {
        (Value::Object(r), Value::Object(s)) => {
            let keys: std::collections::BTreeSet<&String> = r.keys().chain(s.keys()).collect();
            for key in keys {
                let null = Value::Null;
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                differences(
                    &at,
                    r.get(key).unwrap_or(&null),
                    s.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (r, s) if r != s => out.push(format!("{path}: recorded {r}, signed {s}")),
        _ => {}
    }
}

/// The JSON `body` read as the event's `recorded` (a transaction or a [`Refund`]).
fn same_json<T>(body: &[u8], recorded: &T, what: &str) -> Result<(), EvidenceProblem>
where
    T: PartialEq + serde::Serialize + serde::de::DeserializeOwned,
{
    same(serde_json::from_slice::<T>(body), recorded, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        core::events::{PaymentQueried, QueryReason, Transaction},
        sim::devkeys,
        wechat::pay::{crypto::SigningKey, v2::sign},
    };

    fn transaction() -> Transaction {
        serde_json::from_value(serde_json::json!({
            "appid": "wx1", "mchid": devkeys::MCHID, "out_trade_no": "order-1",
            "transaction_id": "4200000000000000000000000001", "trade_state": "SUCCESS",
            "amount": {"total": 100, "currency": "CNY"}}))
        .unwrap()
    }

    /// A query answer signed as the simulator signs (public key mode).
    fn queried(body: &str, signer: &SigningKey) -> Event {
        let (timestamp, nonce) = ("1700000000", "n0nce");
        let message =
            crate::wechat::pay::crypto::response_message(timestamp, nonce, body.as_bytes());
        Event::PaymentQueried(PaymentQueried {
            reason: QueryReason::Sync,
            transaction: transaction(),
            evidence: Evidence {
                serial: devkeys::PUBLIC_KEY_ID.into(),
                signature: signer.sign(&message),
                timestamp: timestamp.into(),
                nonce: nonce.into(),
                signature_type: Some("WECHATPAY2-SHA256-RSA2048".into()),
                body: body.into(),
            },
        })
    }

    fn verifier() -> Verifier {
        let mut settings = Settings::development();
        // No certificate downloads: the public key answers for its id.
        settings.pay.platform_certificates = false;
        Verifier::new(&settings).unwrap()
    }

    #[tokio::test]
    async fn genuine_evidence_passes_and_a_forgery_or_an_altered_fact_does_not() {
        let verifier = verifier();
        let wechat = SigningKey::from_pkcs8_pem(devkeys::PUBLIC_KEY_MODE_KEY_PEM).unwrap();
        let body = serde_json::to_string(&transaction()).unwrap();
        assert_eq!(verifier.check(&queried(&body, &wechat)).await, Some(Ok(())));

        let forger = SigningKey::from_pkcs8_pem(devkeys::MERCHANT_KEY_PEM).unwrap();
        assert!(matches!(
            verifier.check(&queried(&body, &forger)).await,
            Some(Err(EvidenceProblem::Signature(_)))
        ));

        // Signed, but the event says another amount than WeChat's body.
        let mut altered = queried(&body, &wechat);
        if let Event::PaymentQueried(e) = &mut altered {
            e.transaction.amount.as_mut().unwrap().total = Some(10_000);
        }
        assert_eq!(
            verifier.check(&altered).await,
            Some(Err(EvidenceProblem::Mismatch(
                "the event's transaction is not the signed one: \
                 amount.total: recorded 10000, signed 100"
                    .into()
            )))
        );
    }

    #[tokio::test]
    async fn api_v2_signs_are_checked_with_the_sign_type_recorded() {
        let verifier = verifier();
        let key = sign::ApiKey::new(devkeys::V2_API_KEY).unwrap();
        let mut fields: xml::Fields = [
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("appid", "wx1"),
            ("mch_id", devkeys::MCHID),
            ("out_trade_no", "order-1"),
            ("transaction_id", "4200000000000000000000000001"),
            ("total_fee", "100"),
            ("fee_type", "CNY"),
        ]
        .into_iter()
        .collect();
        fields.set("sign", sign::sign(fields.iter(), &key, SignType::Md5));
        let transaction = map::notified_transaction(&fields).unwrap();
        let event = |sign_type: &str| {
            Event::LegacyPaymentNotified(crate::core::events::LegacyPaymentNotified {
                transaction: transaction.clone(),
                evidence: LegacyEvidence {
                    body: fields.to_xml(),
                    sign_type: Some(sign_type.into()),
                    decrypted: None,
                },
            })
        };
        assert_eq!(verifier.check(&event("MD5")).await, Some(Ok(())));
        assert!(matches!(
            verifier.check(&event("HMAC-SHA256")).await,
            Some(Err(EvidenceProblem::Signature(_)))
        ));
        // Events without evidence are not checked.
        let placed = Event::PrepayIssued(crate::core::events::PrepayIssued {
            out_trade_no: "order-1".into(),
            prepay_id: "wx1".into(),
        });
        assert_eq!(verifier.check(&placed).await, None);
    }
}
