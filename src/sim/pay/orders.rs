//! The simulator's orders: what a JSAPI prepay asked for, its trade state, its payments,
//! and the transaction JSON that queries and notifies show.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{now_cst, random_alphanumeric, random_digits, PayConfig};

/// A JSAPI prepay request, as the merchant sends it.
#[derive(Deserialize)]
pub(super) struct JsapiBody {
    appid: String,
    mchid: String,
    description: String,
    out_trade_no: String,
    #[serde(default)]
    time_expire: Option<String>,
    #[serde(default)]
    attach: Option<String>,
    notify_url: String,
    amount: JsapiAmount,
    payer: JsapiPayer,
}

#[derive(Deserialize)]
struct JsapiAmount {
    total: i64,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Deserialize)]
struct JsapiPayer {
    openid: String,
}

/// What must be equal for a repeated prepay of one `out_trade_no` to be the same order.
#[derive(PartialEq, Eq)]
pub(super) struct OrderParams {
    description: String,
    time_expire: Option<String>,
    attach: Option<String>,
    pub notify_url: String,
    pub total: i64,
    pub openid: String,
}

/// `out_trade_no`: 6 to 32 of `[A-Za-z0-9_-*|]`, as WeChat accepts.
pub(super) fn valid_out_trade_no(no: &str) -> bool {
    (6..=32).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*' | b'|'))
}

impl JsapiBody {
    /// Checks the request against the merchant; answers its `out_trade_no` and parameters,
    /// or a `PARAM_ERROR` message.
    pub(super) fn validate(self, config: &PayConfig) -> Result<(String, OrderParams), String> {
        if self.appid != config.appid {
            return Err(format!(
                "appid {} is not bound to this merchant",
                self.appid
            ));
        }
        if self.mchid != config.mchid {
            return Err(format!("mchid {} is not this merchant", self.mchid));
        }
        if !valid_out_trade_no(&self.out_trade_no) {
            return Err("out_trade_no must be 6-32 of [A-Za-z0-9_-*|]".into());
        }
        if self.amount.total < 1 {
            return Err("amount.total must be at least 1".into());
        }
        if self.amount.currency.as_deref().is_some_and(|c| c != "CNY") {
            return Err("amount.currency must be CNY".into());
        }
        if self.description.is_empty() || self.description.chars().count() > 127 {
            return Err("description must be 1-127 characters".into());
        }
        if !(self.notify_url.starts_with("https://") || self.notify_url.starts_with("http://")) {
            return Err("notify_url must be an absolute URL".into());
        }
        if self.payer.openid.is_empty() {
            return Err("payer.openid is required".into());
        }
        Ok((
            self.out_trade_no,
            OrderParams {
                description: self.description,
                time_expire: self.time_expire,
                attach: self.attach,
                notify_url: self.notify_url,
                total: self.amount.total,
                openid: self.payer.openid,
            },
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TradeState {
    NotPay,
    Success,
    Closed,
    PayError,
}

impl TradeState {
    fn code_and_desc(self) -> (&'static str, &'static str) {
        match self {
            Self::NotPay => ("NOTPAY", "订单未支付"),
            Self::Success => ("SUCCESS", "支付成功"),
            Self::Closed => ("CLOSED", "订单已关闭"),
            Self::PayError => ("PAYERROR", "支付失败"),
        }
    }
}

/// One successful payment of an order.
#[derive(Clone)]
pub(super) struct SimPayment {
    transaction_id: String,
    total: i64,
    openid: String,
    success_time: String,
}

impl SimPayment {
    pub(super) fn new(total: i64, openid: String) -> Self {
        Self {
            transaction_id: format!("4200{}", random_digits(24)),
            total,
            openid,
            success_time: now_cst(),
        }
    }

    pub(super) fn transaction_id(&self) -> &str {
        &self.transaction_id
    }
}

/// An order as the simulated WeChat Pay holds it (WeChat's side, not the fold's order).
pub(super) struct SimOrder {
    pub out_trade_no: String,
    pub params: OrderParams,
    pub prepay_id: String,
    pub state: TradeState,
    /// The payment a query shows: the first that succeeded (a double payment's second
    /// transaction is only told by its own notify).
    pub paid: Option<SimPayment>,
}

impl SimOrder {
    pub(super) fn new(out_trade_no: String, params: OrderParams) -> Self {
        let prepay_id = format!(
            "wx{}{}",
            chrono::Utc::now().format("%Y%m%d%H%M%S"),
            random_alphanumeric(20).to_ascii_lowercase()
        );
        Self {
            out_trade_no,
            params,
            prepay_id,
            state: TradeState::NotPay,
            paid: None,
        }
    }

    /// The transaction as `GET /v3/pay/transactions/out-trade-no/{no}` shows it.
    pub(super) fn query_json(&self, config: &PayConfig) -> Value {
        match (&self.paid, self.state) {
            (Some(payment), TradeState::Success) => self.transaction_json(config, payment),
            _ => {
                let (state, desc) = self.state.code_and_desc();
                json!({
                    "appid": config.appid,
                    "mchid": config.mchid,
                    "out_trade_no": self.out_trade_no,
                    "trade_type": "JSAPI",
                    "trade_state": state,
                    "trade_state_desc": desc,
                    "attach": self.params.attach.clone().unwrap_or_default(),
                    "payer": {"openid": self.params.openid},
                    "amount": {"total": self.params.total, "currency": "CNY",
                               "payer_currency": "CNY"},
                })
            }
        }
    }

    /// A successful transaction, as queries and `TRANSACTION.SUCCESS` notifies carry it.
    pub(super) fn transaction_json(&self, config: &PayConfig, payment: &SimPayment) -> Value {
        let (state, desc) = TradeState::Success.code_and_desc();
        json!({
            "appid": config.appid,
            "mchid": config.mchid,
            "out_trade_no": self.out_trade_no,
            "transaction_id": payment.transaction_id,
            "trade_type": "JSAPI",
            "trade_state": state,
            "trade_state_desc": desc,
            "bank_type": "OTHERS",
            "attach": self.params.attach.clone().unwrap_or_default(),
            "success_time": payment.success_time,
            "payer": {"openid": payment.openid},
            "amount": {"total": payment.total, "payer_total": payment.total,
                       "currency": "CNY", "payer_currency": "CNY"},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::valid_out_trade_no;

    #[test]
    fn out_trade_no_is_6_to_32_of_the_allowed_characters() {
        assert!(valid_out_trade_no("abc123"));
        assert!(valid_out_trade_no("A_b-c*d|e"));
        assert!(valid_out_trade_no(&"x".repeat(32)));
        assert!(!valid_out_trade_no("abc12"));
        assert!(!valid_out_trade_no(&"x".repeat(33)));
        assert!(!valid_out_trade_no("abc 123"));
        assert!(!valid_out_trade_no("订单123456"));
    }
}
