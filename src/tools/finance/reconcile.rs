//! `wxledger reconcile`: a day's trade bill, from a file or downloaded from WeChat Pay
//! (hash checked), matched against the live ledger, as a report for humans or JSON.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    bill::{self, BillError, TradeBill},
    books,
    matcher::{self, BillVerdict, Class, Finding},
    yuan::{format_fen, format_scaled},
};
use crate::{
    core::clock,
    settings::Settings,
    store::db::{self, DbError},
    wechat::{PayClient, PayError},
};

/// Where the bill comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillSource {
    /// A file as WeChat Pay sends it.
    File(PathBuf),
    /// `GET /v3/bill/tradebill` for the day, then its download URL.
    Download,
}

/// Why a reconciliation could not be made (the command exits 2). Each variant has a
/// stable [`code`](ReconcileError::code).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The bill file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bill is not a well-formed trade bill.
    #[error("trade bill: {0}")]
    Bill(#[from] BillError),
    /// A line of the bill belongs to another merchant.
    #[error("trade bill: line {line}: 商户号 {mchid} is not this merchant ({ours})")]
    OtherMerchant {
        /// 1-based line number.
        line: usize,
        /// The line's merchant.
        mchid: String,
        /// `pay.mchid`.
        ours: String,
    },
    /// The bill day cannot be told.
    #[error("bill day: {0}")]
    Day(String),
    /// WeChat Pay did not give the bill.
    #[error("bill download: {0}")]
    Download(#[from] PayError),
    /// The downloaded file is not the one WeChat's answer vouched for.
    #[error("bill download: the file's {hash_type} is {got}, the answer says {expected}")]
    Hash {
        /// The answer's `hash_type`.
        hash_type: String,
        /// The answer's `hash_value`.
        expected: String,
        /// The file's digest.
        got: String,
    },
    /// The pay settings do not make a client.
    #[error("pay: {0}")]
    Pay(String),
    /// Postgres.
    #[error("ledger: {0}")]
    Db(#[from] DbError),
}

impl ReconcileError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ReconcileError::Read { .. } => "bill_unreadable",
            ReconcileError::Bill(e) => e.code(),
            ReconcileError::OtherMerchant { .. } => "bill_other_merchant",
            ReconcileError::Day(_) => "bill_day_unknown",
            ReconcileError::Download(_) => "bill_download_failed",
            ReconcileError::Hash { .. } => "bill_hash_mismatch",
            ReconcileError::Pay(_) => "pay_settings",
            ReconcileError::Db(_) => "ledger_unavailable",
        }
    }

    /// `{"error": {"code", "message"}}`, as the API writes errors.
    pub fn to_json(&self) -> Value {
        json!({"error": {"code": self.code(), "message": self.to_string()}})
    }
}

impl From<tokio_postgres::Error> for ReconcileError {
    fn from(e: tokio_postgres::Error) -> Self {
        ReconcileError::Db(e.into())
    }
}

/// A finished bill reconciliation: the bill, the checkpoint of our books, the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct BillReport {
    /// The bill day (China Standard Time).
    pub bill_date: NaiveDate,
    /// Where the bill came from, for the reader: `file <path>`, `download`, or
    /// `download (WeChat has no bill for the day)`.
    pub source: String,
    /// The bill.
    pub bill: TradeBill,
    /// The projection's checkpoint: the ledger as of this event sequence.
    pub checkpoint: i64,
    /// The verdict.
    pub verdict: BillVerdict,
}

/// WeChat's error code for a day without a bill (no trades that day).
const NO_STATEMENT: &str = "NO_STATEMENT_EXIST";

/// The answer of `/v3/bill/tradebill`.
#[derive(Deserialize)]
struct BillLink {
    hash_type: String,
    hash_value: String,
}

/// Checks a downloaded bill against the `hash_type`/`hash_value` WeChat's signed answer
/// gave (SHA1, hex, compared case-insensitively).
pub fn check_hash(hash_type: &str, hash_value: &str, file: &[u8]) -> Result<(), ReconcileError> {
    if !hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(ReconcileError::Download(PayError::Malformed(format!(
            "tradebill: hash_type {hash_type} (only SHA1 is known)"
        ))));
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, file);
    let got = hex::encode(digest.as_ref());
    if !got.eq_ignore_ascii_case(hash_value.trim()) {
        return Err(ReconcileError::Hash {
            hash_type: hash_type.to_owned(),
            expected: hash_value.to_owned(),
            got,
        });
    }
    Ok(())
}

/// Downloads the trade bill of `day` and checks its hash; `None` when WeChat says there
/// is no bill for the day (`NO_STATEMENT_EXIST`: no trade or refund that day). A bill
/// not made yet (`STATEMENT_CREATING`, before about 10:00 the next day) is an error.
pub async fn download(
    client: &PayClient,
    day: NaiveDate,
) -> Result<Option<Vec<u8>>, ReconcileError> {
    let (answer, file) = match client.trade_bill(&day.format("%Y-%m-%d").to_string()).await {
        Ok(got) => got,
        Err(e) if e.code() == Some(NO_STATEMENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let link: BillLink = serde_json::from_slice(&answer)
        .map_err(|e| PayError::Malformed(format!("tradebill: {e}")))?;
    check_hash(&link.hash_type, &link.hash_value, &file)?;
    Ok(Some(file))
}

/// The one day all lines of `bill` fall on.
fn day_of(bill: &TradeBill) -> Result<NaiveDate, ReconcileError> {
    let mut days = bill.lines.iter().map(bill::BillLine::day);
    let first = days
        .next()
        .ok_or_else(|| ReconcileError::Day("the bill has no lines; pass --date".into()))?;
    match days.find(|d| *d != first) {
        None => Ok(first),
        Some(other) => Err(ReconcileError::Day(format!(
            "the bill's lines span {first} and {other}; pass --date"
        ))),
    }
}

fn read_file(path: &Path) -> Result<TradeBill, ReconcileError> {
    let bytes = std::fs::read(path).map_err(|source| ReconcileError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(bill::parse(&bytes)?)
}

/// Reconciles the trade bill from `source` for `day` (required for a download; for a
/// file, the day of its lines when `None`) against the ledger in `settings.database`.
pub async fn reconcile_bill(
    settings: &Settings,
    source: BillSource,
    day: Option<NaiveDate>,
) -> Result<BillReport, ReconcileError> {
    let (bill, day, source) = match source {
        BillSource::File(path) => {
            let bill = read_file(&path)?;
            let day = match day {
                Some(day) => day,
                None => day_of(&bill)?,
            };
            (bill, day, format!("file {}", path.display()))
        }
        BillSource::Download => {
            let day = day.ok_or_else(|| ReconcileError::Day("a download needs --date".into()))?;
            let client = PayClient::new(&settings.pay, &settings.wechat.appid, clock::system())
                .map_err(|e| ReconcileError::Pay(e.to_string()))?;
            match download(&client, day).await? {
                Some(bytes) => (bill::parse(&bytes)?, day, "download".to_owned()),
                None => (
                    TradeBill {
                        lines: Vec::new(),
                        summary: bill::BillSummary::default(),
                    },
                    day,
                    format!("download (WeChat has no bill for the day: {NO_STATEMENT})"),
                ),
            }
        }
    };
    if let Some(line) = bill.lines.iter().find(|l| l.mchid != settings.pay.mchid) {
        return Err(ReconcileError::OtherMerchant {
            line: line.line,
            mchid: line.mchid.clone(),
            ours: settings.pay.mchid.clone(),
        });
    }
    let config = db::pg_config(&settings.database)?;
    let mut client = db::connect_dedicated(&config).await?;
    // One snapshot: the rows and the checkpoint they stand at agree.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let (books, checkpoint) = books::load(&tx, &bill, day).await?;
    tx.commit().await?;
    let verdict = matcher::match_bill(&bill, &books, day);
    Ok(BillReport {
        bill_date: day,
        source,
        bill,
        checkpoint,
        verdict,
    })
}

/// How a finding's value reads: fen as yuan, a missing side as `nothing`.
fn show(value: &Value, field: Option<&str>) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Number(n) if field == Some("amount") => n
            .as_i64()
            .map_or_else(|| n.to_string(), |fen| format!("{} yuan", format_fen(fen))),
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let amount = o
                .get("amount")
                .and_then(Value::as_i64)
                .map(|fen| format!("{} yuan", format_fen(fen)));
            let state = o
                .get("state")
                .or_else(|| o.get("refund_status"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            [state, amount]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        }
        other => other.to_string(),
    }
}

fn finding_line(f: &Finding) -> String {
    let at = f
        .line
        .map_or_else(|| "ledger".to_owned(), |l| format!("line {l}"));
    let keys: Vec<String> = [
        ("transaction_id", &f.transaction_id),
        ("out_trade_no", &f.out_trade_no),
        ("out_refund_no", &f.out_refund_no),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
    .collect();
    let what = f
        .field
        .map_or_else(String::new, |field| format!("{field}: "));
    format!(
        "  {:<18} {:<9} {}\n      {what}expected {} (ledger), got {} (bill); {}\n",
        f.class.as_str(),
        at,
        keys.join(" "),
        show(&f.expected, f.field),
        show(&f.got, f.field),
        f.note
    )
}

impl BillReport {
    /// True when no finding is a discrepancy.
    pub fn is_clean(&self) -> bool {
        !self.verdict.has_discrepancies()
    }

    /// 0 when everything matched (unchecked refunds aside), 1 on any discrepancy.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.is_clean())
    }

    /// The report for a human: counts per class, then each discrepancy.
    pub fn to_text(&self) -> String {
        let s = &self.bill.summary;
        let mut out = format!(
            "trade bill {} ({}): {} lines, 订单总金额 {} yuan, 退款总金额 {} yuan, 手续费 {} yuan\n\
             ledger as of event {}\n\n",
            self.bill_date,
            self.source,
            s.count,
            format_fen(s.total),
            format_fen(s.refund),
            format_scaled(s.fee, bill::FEE_SCALE),
            self.checkpoint
        );
        for class in Class::ALL {
            let n = self
                .verdict
                .counts
                .get(class.as_str())
                .copied()
                .unwrap_or(0);
            out.push_str(&format!("  {:<18} {n}\n", class.as_str()));
        }
        let (bad, unchecked): (Vec<&Finding>, Vec<&Finding>) = self
            .verdict
            .findings
            .iter()
            .partition(|f| f.class.is_discrepancy());
        if !bad.is_empty() {
            out.push_str("\ndiscrepancies:\n");
            bad.iter().for_each(|f| out.push_str(&finding_line(f)));
        }
        if !unchecked.is_empty() {
            out.push_str("\nnot checked:\n");
            unchecked
                .iter()
                .for_each(|f| out.push_str(&finding_line(f)));
        }
        out.push_str(&if bad.is_empty() {
            "\nresult: everything matched\n".to_owned()
        } else {
            format!("\nresult: {} discrepancies\n", bad.len())
        });
        out
    }

    /// The report as JSON: `{bill_date, source, ledger_checkpoint, summary, counts,
    /// discrepancies, unchecked, ok}`; amounts in fen.
    pub fn to_json(&self) -> Value {
        let s = &self.bill.summary;
        let (bad, unchecked): (Vec<&Finding>, Vec<&Finding>) = self
            .verdict
            .findings
            .iter()
            .partition(|f| f.class.is_discrepancy());
        json!({
            "bill_date": self.bill_date.to_string(),
            "source": self.source,
            "ledger_checkpoint": self.checkpoint,
            "summary": {
                "count": s.count,
                "settlement_total": s.settlement_total,
                "refund": s.refund,
                "recharge_coupon_refund": s.recharge_coupon_refund,
                "fee": format_scaled(s.fee, bill::FEE_SCALE),
                "total": s.total,
                "refund_requested": s.refund_requested,
            },
            "counts": self.verdict.counts,
            "discrepancies": bad,
            "unchecked": unchecked,
            "ok": bad.is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha1_hex_in_any_case() {
        // FIPS 180 test vector: SHA1("abc").
        let abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
        assert!(check_hash("SHA1", abc, b"abc").is_ok());
        assert!(check_hash("sha1", &abc.to_uppercase(), b"abc").is_ok());
        let err = check_hash("SHA1", abc, b"abd").unwrap_err();
        assert_eq!(err.code(), "bill_hash_mismatch");
        assert_eq!(
            check_hash("SM3", abc, b"abc").unwrap_err().code(),
            "bill_download_failed"
        );
    }

    #[test]
    fn values_read_as_yuan() {
        assert_eq!(show(&json!(1230), Some("amount")), "12.30 yuan");
        assert_eq!(
            show(&json!({"amount": 1, "state": "SUCCESS"}), None),
            "SUCCESS 0.01 yuan"
        );
        assert_eq!(show(&Value::Null, None), "nothing");
        assert_eq!(show(&json!("closed"), Some("state")), "closed");
    }
}
