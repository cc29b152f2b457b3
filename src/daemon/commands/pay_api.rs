//! The merchant's WeChat Pay API (`pay.api`: v3, or v2 for legacy merchants) behind one set
//! of calls, so the commands and the sweeps prepay, sign `wx.requestPayment`, query, close
//! and refund the same way under either. Errors are the v3 client's [`PayError`], with API v2's
//! codes renamed to v3's (see `From<V2Error> for PayError`).

use super::Ctx;
use crate::{
    core::events::{
        Event, Evidence, LegacyEvidence, LegacyPaymentQueried, PaymentQueried, QueryReason, Refund,
        RefundEvidence, Transaction,
    },
    settings::PayApi,
    wechat::pay::{
        v2::{RefundRequest as V2RefundRequest, V2Client},
        PayError, PayParams, Prepay, RefundRequest,
    },
};

/// WeChat's signed answer to an order query, from either API.
pub struct QueryAnswer {
    /// The transaction, in API v3's shape.
    pub transaction: Transaction,
    evidence: AnswerEvidence,
}

enum AnswerEvidence {
    V3(Evidence),
    V2(LegacyEvidence),
}

impl QueryAnswer {
    /// The event that records this answer (`payment.queried` or `payment.legacy_queried`)
    /// and its `Nats-Msg-Id`: the same answer recorded twice inside the window appends once.
    pub fn into_event(self, reason: QueryReason) -> (Event, String) {
        let event = match self.evidence {
            AnswerEvidence::V3(evidence) => Event::PaymentQueried(PaymentQueried {
                reason,
                transaction: self.transaction,
                evidence,
            }),
            AnswerEvidence::V2(evidence) => Event::LegacyPaymentQueried(LegacyPaymentQueried {
                reason,
                transaction: self.transaction,
                evidence,
            }),
        };
        let msg_id = event.msg_id(None);
        (event, msg_id)
    }
}

impl Ctx {
    /// The v2 client when `pay.api = "v2"` (validation guarantees it is configured then).
    fn v2_for_prepays(&self) -> Option<&V2Client> {
        (self.pay_api == PayApi::V2)
            .then_some(self.pay_v2.as_ref())
            .flatten()
    }

    /// The prepay id of an order: JSAPI prepay (v3) or `unifiedorder` (v2).
    pub async fn jsapi_prepay(&self, p: &Prepay<'_>) -> Result<String, PayError> {
        match self.v2_for_prepays() {
            Some(v2) => Ok(v2.unifiedorder(p).await?),
            None => self.pay.jsapi_prepay(p).await,
        }
    }

    /// `wx.requestPayment`'s params for a prepay id: `signType` `RSA` (v3), or `MD5` /
    /// `HMAC-SHA256` (v2).
    pub fn pay_params(&self, prepay_id: &str) -> PayParams {
        match self.v2_for_prepays() {
            Some(v2) => v2.pay_params(prepay_id),
            None => self.pay.pay_params(prepay_id),
        }
    }

    /// Asks WeChat about an order.
    pub async fn query_order(&self, out_trade_no: &str) -> Result<QueryAnswer, PayError> {
        Ok(match self.v2_for_prepays() {
            Some(v2) => {
                let (transaction, evidence) = v2.orderquery(out_trade_no).await?;
                QueryAnswer {
                    transaction,
                    evidence: AnswerEvidence::V2(evidence),
                }
            }
            None => {
                let (transaction, evidence) = self.pay.query(out_trade_no).await?;
                QueryAnswer {
                    transaction,
                    evidence: AnswerEvidence::V3(evidence),
                }
            }
        })
    }

    /// Closes an unpaid order at WeChat.
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), PayError> {
        match self.v2_for_prepays() {
            Some(v2) => Ok(v2.closeorder(out_trade_no).await?),
            None => self.pay.close(out_trade_no).await,
        }
    }
}

impl Ctx {
    /// Asks WeChat to refund: `POST /v3/refund/domestic/refunds` or `/secapi/pay/refund`.
    pub async fn request_refund(
        &self,
        r: &RefundRequest<'_>,
    ) -> Result<(Refund, RefundEvidence), PayError> {
        match self.v2_for_prepays() {
            Some(v2) => {
                let request = V2RefundRequest {
                    out_trade_no: r.out_trade_no,
                    out_refund_no: r.out_refund_no,
                    total: r.total,
                    refund: r.amount,
                    reason: r.reason,
                };
                let (refund, evidence) = v2.refund(&request).await?;
                Ok((refund, RefundEvidence::V2(evidence)))
            }
            None => {
                let (refund, evidence) = self.pay.refund(r).await?;
                Ok((refund, RefundEvidence::V3(evidence)))
            }
        }
    }

    /// WeChat's word on a refund, by `out_refund_no`.
    pub async fn query_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<(Refund, RefundEvidence), PayError> {
        match self.v2_for_prepays() {
            Some(v2) => {
                let (refund, evidence) = v2.refundquery(out_refund_no).await?;
                Ok((refund, RefundEvidence::V2(evidence)))
            }
            None => {
                let (refund, evidence) = self.pay.query_refund(out_refund_no).await?;
                Ok((refund, RefundEvidence::V3(evidence)))
            }
        }
    }
}
