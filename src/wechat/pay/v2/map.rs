//! API v2 fields in the shapes the events use, which are API v3's: a pay notify or an
//! order query answer as a [`Transaction`], a refund (answer, query, notify) as a
//! [`Refund`]. Pure functions; amounts stay integer fen.

use chrono::NaiveDateTime;

use super::xml::Fields;
use crate::core::events::{Payer, Refund, RefundAmount, Transaction, TransactionAmount};

/// A field is missing or not what WeChat documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct MapError {
    /// WeChat's field name.
    pub field: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn missing(field: &str) -> MapError {
    MapError {
        field: field.to_owned(),
        problem: "missing",
    }
}

fn required<'a>(fields: &'a Fields, key: &str) -> Result<&'a str, MapError> {
    fields.non_empty(key).ok_or_else(|| missing(key))
}

fn owned(fields: &Fields, key: &str) -> Option<String> {
    fields.non_empty(key).map(str::to_owned)
}

/// An amount in fen: WeChat's `total_fee` and friends are integers (never `1.00`).
fn fen(fields: &Fields, key: &str) -> Result<Option<i64>, MapError> {
    fields
        .non_empty(key)
        .map(|v| {
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<i64>().ok())
                .flatten()
                .ok_or(MapError {
                    field: key.to_owned(),
                    problem: "not an integer amount in fen",
                })
        })
        .transpose()
}

/// Beijing time as WeChat writes it (`format`) → RFC 3339 with `+08:00`, as API v3 writes it.
fn beijing(fields: &Fields, key: &str, format: &str) -> Result<Option<String>, MapError> {
    fields
        .non_empty(key)
        .map(|v| {
            NaiveDateTime::parse_from_str(v, format)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S+08:00").to_string())
                .map_err(|_| MapError {
                    field: key.to_owned(),
                    problem: "not a time in WeChat's format",
                })
        })
        .transpose()
}

/// A pay notify or order query answer (`trade_state` given for a notify, which has none:
/// a notify with `result_code` SUCCESS is a paid order).
fn transaction(fields: &Fields, trade_state: String) -> Result<Transaction, MapError> {
    let total = fen(fields, "total_fee")?;
    let cash = fen(fields, "cash_fee")?;
    let amount = (total.is_some() || cash.is_some()).then(|| TransactionAmount {
        total,
        payer_total: cash,
        currency: Some(owned(fields, "fee_type").unwrap_or_else(|| "CNY".into())),
        payer_currency: cash
            .map(|_| owned(fields, "cash_fee_type").unwrap_or_else(|| "CNY".into())),
    });
    Ok(Transaction {
        appid: required(fields, "appid")?.to_owned(),
        mchid: required(fields, "mch_id")?.to_owned(),
        out_trade_no: required(fields, "out_trade_no")?.to_owned(),
        transaction_id: owned(fields, "transaction_id"),
        trade_type: owned(fields, "trade_type"),
        trade_state,
        trade_state_desc: owned(fields, "trade_state_desc"),
        bank_type: owned(fields, "bank_type"),
        attach: owned(fields, "attach"),
        success_time: beijing(fields, "time_end", "%Y%m%d%H%M%S")?,
        payer: owned(fields, "openid").map(|openid| Payer {
            openid: Some(openid),
        }),
        amount,
    })
}

/// A pay notify whose `result_code` is SUCCESS: a `SUCCESS` transaction.
pub fn notified_transaction(fields: &Fields) -> Result<Transaction, MapError> {
    required(fields, "transaction_id")?;
    transaction(fields, "SUCCESS".into())
}

/// An order query answer: the transaction in the state WeChat reports.
pub fn queried_transaction(fields: &Fields) -> Result<Transaction, MapError> {
    transaction(fields, required(fields, "trade_state")?.to_owned())
}

/// API v2's refund status in API v3's words: `REFUNDCLOSE` is `CLOSED`, `CHANGE` (the
/// money could not be returned to the payer's account) is `ABNORMAL`.
pub fn refund_status(v2: &str) -> Option<&'static str> {
    match v2 {
        "SUCCESS" => Some("SUCCESS"),
        "REFUNDCLOSE" => Some("CLOSED"),
        "PROCESSING" => Some("PROCESSING"),
        "CHANGE" => Some("ABNORMAL"),
        _ => None,
    }
}

fn status(fields: &Fields, key: &str) -> Result<String, MapError> {
    refund_status(required(fields, key)?)
        .map(str::to_owned)
        .ok_or(MapError {
            field: key.to_owned(),
            problem: "not SUCCESS, REFUNDCLOSE, PROCESSING or CHANGE",
        })
}

fn refund_amount(
    fields: &Fields,
    refund_fee: &str,
    cash_refund_fee: &str,
) -> Result<RefundAmount, MapError> {
    Ok(RefundAmount {
        total: fen(fields, "total_fee")?,
        refund: fen(fields, refund_fee)?,
        payer_total: fen(fields, "cash_fee")?,
        payer_refund: fen(fields, cash_refund_fee)?,
        currency: Some(owned(fields, "fee_type").unwrap_or_else(|| "CNY".into())),
    })
}

/// The refund API's (`/secapi/pay/refund`) successful answer: WeChat accepted the refund,
/// which is `PROCESSING` until a notify or query says how it ended.
pub fn accepted_refund(fields: &Fields) -> Result<Refund, MapError> {
    Ok(Refund {
        mchid: owned(fields, "mch_id"),
        out_trade_no: required(fields, "out_trade_no")?.to_owned(),
        transaction_id: owned(fields, "transaction_id"),
        out_refund_no: required(fields, "out_refund_no")?.to_owned(),
        refund_id: owned(fields, "refund_id"),
        status: "PROCESSING".into(),
        success_time: None,
        user_received_account: None,
        amount: Some(refund_amount(fields, "refund_fee", "cash_refund_fee")?),
    })
}

/// A refund query answer: the refund numbered `out_refund_no` among its indexed fields
/// (`out_refund_no_0`, `refund_status_0`, ...).
pub fn queried_refund(fields: &Fields, out_refund_no: &str) -> Result<Refund, MapError> {
    let count: usize = required(fields, "refund_count")?
        .parse()
        .map_err(|_| MapError {
            field: "refund_count".into(),
            problem: "not a count",
        })?;
    let i = (0..count.min(100))
        .find(|i| fields.get(&format!("out_refund_no_{i}")) == Some(out_refund_no))
        .ok_or_else(|| missing(&format!("out_refund_no_n = {out_refund_no}")))?;
    let at = |key: &str| format!("{key}_{i}");
    let mut amount = refund_amount(fields, &at("refund_fee"), &at("cash_refund_fee"))?;
    if amount.payer_refund.is_none() {
        amount.payer_refund = fen(fields, &at("settlement_refund_fee"))?;
    }
    Ok(Refund {
        mchid: owned(fields, "mch_id"),
        out_trade_no: required(fields, "out_trade_no")?.to_owned(),
        transaction_id: owned(fields, "transaction_id"),
        out_refund_no: out_refund_no.to_owned(),
        refund_id: owned(fields, &at("refund_id")),
        status: status(fields, &at("refund_status"))?,
        success_time: beijing(fields, &at("refund_success_time"), "%Y-%m-%d %H:%M:%S")?,
        user_received_account: owned(fields, &at("refund_recv_accout")),
        amount: Some(amount),
    })
}

/// A refund notify's decrypted `req_info`; `mchid` is the notify's own `mch_id`.
pub fn notified_refund(decrypted: &Fields, mchid: &str) -> Result<Refund, MapError> {
    let mut amount = refund_amount(decrypted, "refund_fee", "cash_refund_fee")?;
    if amount.payer_refund.is_none() {
        amount.payer_refund = fen(decrypted, "settlement_refund_fee")?;
    }
    Ok(Refund {
        mchid: Some(mchid.to_owned()),
        out_trade_no: required(decrypted, "out_trade_no")?.to_owned(),
        transaction_id: owned(decrypted, "transaction_id"),
        out_refund_no: required(decrypted, "out_refund_no")?.to_owned(),
        refund_id: owned(decrypted, "refund_id"),
        status: status(decrypted, "refund_status")?,
        success_time: beijing(decrypted, "success_time", "%Y-%m-%d %H:%M:%S")?,
        user_received_account: owned(decrypted, "refund_recv_accout"),
        amount: Some(amount),
    })
}

/// The API v3 event type of a refund notify in `status` (`REFUND.SUCCESS`, ...).
pub fn refund_event_type(status: &str) -> Option<&'static str> {
    match status {
        "SUCCESS" => Some("REFUND.SUCCESS"),
        "CLOSED" => Some("REFUND.CLOSED"),
        "ABNORMAL" => Some("REFUND.ABNORMAL"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_pay_notify_becomes_a_v3_transaction() {
        let notify = fields(&[
            ("return_code", "SUCCESS"),
            ("appid", "wx2421b1c4370ec43b"),
            ("mch_id", "10000100"),
            ("bank_type", "CFT"),
            ("cash_fee", "1"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("out_trade_no", "1409811653"),
            ("result_code", "SUCCESS"),
            ("time_end", "20140903131540"),
            ("total_fee", "1"),
            ("trade_type", "JSAPI"),
            ("transaction_id", "1004400740201409030005092168"),
            ("attach", ""),
        ]);
        let tx = notified_transaction(&notify).unwrap();
        let v3 = serde_json::to_value(&tx).unwrap();
        assert_eq!(
            v3,
            serde_json::json!({
                "appid": "wx2421b1c4370ec43b",
                "mchid": "10000100",
                "out_trade_no": "1409811653",
                "transaction_id": "1004400740201409030005092168",
                "trade_type": "JSAPI",
                "trade_state": "SUCCESS",
                "bank_type": "CFT",
                "success_time": "2014-09-03T13:15:40+08:00",
                "payer": {"openid": "oUpF8uMEb4qRXf22hE3X68TekukE"},
                "amount": {"total": 1, "payer_total": 1, "currency": "CNY", "payer_currency": "CNY"},
            })
        );
        assert!(chrono::DateTime::parse_from_rfc3339(tx.success_time.as_deref().unwrap()).is_ok());
    }

    #[test]
    fn a_query_answer_keeps_its_state_and_currency() {
        let answer = fields(&[
            ("appid", "wx1"),
            ("mch_id", "1"),
            ("out_trade_no", "no123456"),
            ("trade_state", "NOTPAY"),
            ("trade_state_desc", "订单未支付"),
            ("total_fee", "250"),
            ("fee_type", "USD"),
        ]);
        let tx = queried_transaction(&answer).unwrap();
        assert_eq!(tx.trade_state, "NOTPAY");
        assert_eq!(tx.transaction_id, None);
        let amount = tx.amount.unwrap();
        assert_eq!(
            (amount.total, amount.currency.as_deref()),
            (Some(250), Some("USD"))
        );
        assert_eq!(amount.payer_total, None);
    }

    #[test]
    fn malformed_fields_are_named() {
        let base = [
            ("appid", "wx1"),
            ("mch_id", "1"),
            ("out_trade_no", "no123456"),
            ("transaction_id", "42"),
        ];
        for (key, value) in [
            ("total_fee", "1.00"),
            ("total_fee", "-1"),
            ("total_fee", "1e3"),
            ("time_end", "2014-09-03"),
        ] {
            let mut f = fields(&base);
            f.set(key, value);
            let err = notified_transaction(&f).unwrap_err();
            assert_eq!(err.field, key, "{value}");
        }
        let mut f = fields(&base);
        f.remove("transaction_id");
        assert_eq!(
            notified_transaction(&f).unwrap_err().field,
            "transaction_id"
        );
        assert_eq!(
            queried_transaction(&fields(&base)).unwrap_err().field,
            "trade_state"
        );
        let mut f = fields(&base);
        f.set("total_fee", "99999999999999999999");
        assert!(notified_transaction(&f).is_err());
    }

    #[test]
    fn refund_statuses_take_v3_names() {
        assert_eq!(refund_status("SUCCESS"), Some("SUCCESS"));
        assert_eq!(refund_status("REFUNDCLOSE"), Some("CLOSED"));
        assert_eq!(refund_status("PROCESSING"), Some("PROCESSING"));
        assert_eq!(refund_status("CHANGE"), Some("ABNORMAL"));
        assert_eq!(refund_status("NOTSURE"), None);
        assert_eq!(refund_event_type("ABNORMAL"), Some("REFUND.ABNORMAL"));
        assert_eq!(refund_event_type("PROCESSING"), None);
    }

    #[test]
    fn the_wechatpy_refund_notify_becomes_a_v3_refund() {
        let key = super::super::sign::ApiKey::new("OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk").unwrap();
        let req_info =
            include_str!("../../../../tests/vectors/wechatpay/v2_wechatpy_refund_req_info.b64");
        let (_, decrypted) = super::super::crypto::decrypt_refund(req_info, &key, 4096).unwrap();
        let refund = notified_refund(&decrypted, "12345678").unwrap();
        assert_eq!(
            serde_json::to_value(&refund).unwrap(),
            serde_json::json!({
                "mchid": "12345678",
                "out_trade_no": "2020010418301551404339261814",
                "transaction_id": "4200000483202001042069747825",
                "out_refund_no": "1234",
                "refund_id": "50300103182020010413419046597",
                "status": "SUCCESS",
                "success_time": "2020-01-04T18:34:24+08:00",
                "user_received_account": "招商银行信用卡8915",
                "amount": {"total": 1, "refund": 1, "payer_refund": 1, "currency": "CNY"},
            })
        );
    }

    #[test]
    fn a_refund_query_answer_is_read_at_the_refunds_index() {
        let answer = fields(&[
            ("appid", "wx1"),
            ("mch_id", "1"),
            ("out_trade_no", "no123456"),
            ("transaction_id", "4200"),
            ("total_fee", "300"),
            ("cash_fee", "300"),
            ("refund_count", "2"),
            ("out_refund_no_0", "r-first"),
            ("refund_status_0", "SUCCESS"),
            ("refund_fee_0", "100"),
            ("out_refund_no_1", "r-second"),
            ("refund_id_1", "5030"),
            ("refund_status_1", "CHANGE"),
            ("refund_fee_1", "200"),
            ("refund_success_time_1", "2016-07-25 15:26:26"),
            ("refund_recv_accout_1", "支付用户的零钱"),
        ]);
        let refund = queried_refund(&answer, "r-second").unwrap();
        assert_eq!(refund.status, "ABNORMAL");
        assert_eq!(refund.refund_id.as_deref(), Some("5030"));
        assert_eq!(
            refund.success_time.as_deref(),
            Some("2016-07-25T15:26:26+08:00")
        );
        let amount = refund.amount.unwrap();
        assert_eq!((amount.total, amount.refund), (Some(300), Some(200)));
        assert!(queried_refund(&answer, "r-third").is_err());
    }

    #[test]
    fn an_accepted_refund_is_processing() {
        let answer = fields(&[
            ("mch_id", "1"),
            ("out_trade_no", "no123456"),
            ("out_refund_no", "r1"),
            ("refund_id", "5030"),
            ("refund_fee", "100"),
            ("total_fee", "300"),
        ]);
        let refund = accepted_refund(&answer).unwrap();
        assert_eq!(refund.status, "PROCESSING");
        assert_eq!(refund.amount.unwrap().refund, Some(100));
    }
}
