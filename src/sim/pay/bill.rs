//! The simulator's trade bills (交易账单): `GET /v3/bill/tradebill` answers, signed, with
//! the file's SHA1 and a download URL; `GET /v3/billdownload/file` serves the file
//! (unsigned, as WeChat does). A bill lists the simulator's own paid transactions of the
//! day (China Standard Time), changed by the faults a test plants with
//! `POST /sim/pay/bill/faults`. Unlike WeChat, which makes a day's bill the next
//! morning, the simulator serves any day, today included.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, NaiveDate};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{orders::TradeState, random_alphanumeric, sign::MerchantRequest, Pay, PayConfig};
use crate::tools::finance::{
    bill::{china, ALL_COLUMNS, FEE_SCALE, SUMMARY_COLUMNS, TIME_FORMAT},
    yuan::{format_fen, format_scaled},
};

/// How long a download URL works, as WeChat says.
const URL_TTL: Duration = Duration::from_secs(30);

/// The bill state: the faults in force and the files behind live download URLs.
#[derive(Default)]
pub(super) struct Bills {
    faults: BillFaults,
    files: HashMap<String, (Instant, Vec<u8>)>,
}

/// Discrepancies planted in every bill until replaced (`{}` clears them).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct BillFaults {
    /// Leave these `out_trade_no`s' payments out.
    #[serde(default)]
    drop: Vec<String>,
    /// Add these lines.
    #[serde(default)]
    extra: Vec<ExtraLine>,
    /// Bill these `out_trade_no`s at another amount (fen).
    #[serde(default)]
    amount: HashMap<String, i64>,
    /// Bill these `out_trade_no`s in another 交易状态 (e.g. `REFUND`).
    #[serde(default)]
    state: HashMap<String, String>,
    /// Answer a `hash_value` that is not the file's.
    #[serde(default)]
    bad_hash: bool,
    /// Write a summary whose 订单总金额 is one fen off the lines.
    #[serde(default)]
    bad_summary: bool,
}

/// A line a test adds: a payment, or a refund when `out_refund_no` is set.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct ExtraLine {
    transaction_id: String,
    out_trade_no: String,
    /// The payment's 订单金额 in fen (a refund line bills 0 here).
    #[serde(default)]
    amount: i64,
    /// 交易状态; `SUCCESS` for a payment and `REFUND` for a refund by default.
    #[serde(default)]
    state: Option<String>,
    /// `yyyy-MM-dd HH:mm:ss` in China Standard Time; noon of the bill day by default.
    #[serde(default)]
    trade_time: Option<String>,
    #[serde(default)]
    openid: Option<String>,
    /// 商户退款单号: makes this a refund line.
    #[serde(default)]
    out_refund_no: Option<String>,
    /// The refund in fen.
    #[serde(default)]
    refund: i64,
}

/// One line of a bill, in fen.
struct Row {
    time: String,
    transaction_id: String,
    out_trade_no: String,
    openid: String,
    state: String,
    total: i64,
    refund: Option<(String, i64)>,
}

impl Row {
    fn cells(&self, config: &PayConfig) -> Vec<String> {
        let (refund_id, out_refund_no, refund, refund_type, refund_status) = match &self.refund {
            Some((no, fen)) => (
                format!("5030{}", &self.transaction_id.get(4..).unwrap_or_default()),
                no.clone(),
                *fen,
                "ORIGINAL",
                "SUCCESS",
            ),
            None => ("0".into(), "0".into(), 0, "", ""),
        };
        vec![
            self.time.clone(),
            config.appid.clone(),
            config.mchid.clone(),
            "0".into(),
            String::new(),
            self.transaction_id.clone(),
            self.out_trade_no.clone(),
            self.openid.clone(),
            "JSAPI".into(),
            self.state.clone(),
            "OTHERS".into(),
            "CNY".into(),
            format_fen(self.total),
            format_fen(0),
            refund_id,
            out_refund_no,
            format_fen(refund),
            format_fen(0),
            refund_type.into(),
            refund_status.into(),
            "wxledger sim".into(),
            String::new(),
            format_scaled(self.fee(), FEE_SCALE),
            "0.60%".into(),
            format_fen(self.total),
            format_fen(refund),
            String::new(),
        ]
    }

    /// 0.60% of the order amount, in 1/100000 yuan (1 fen is 1000 of them).
    fn fee(&self) -> i64 {
        self.total.saturating_mul(6)
    }
}

/// The file: BOM, header, lines, summary; CRLF line ends; every data cell backticked.
fn render(config: &PayConfig, rows: &[Row], bad_summary: bool) -> Vec<u8> {
    let backticked = |cells: Vec<String>| {
        cells
            .into_iter()
            .map(|c| format!("`{c}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = String::from("\u{feff}");
    out.push_str(&ALL_COLUMNS.join(","));
    out.push_str("\r\n");
    let (mut total, mut refund, mut fee) = (0_i64, 0_i64, 0_i64);
    for row in rows {
        out.push_str(&backticked(row.cells(config)));
        out.push_str("\r\n");
        total += row.total;
        refund += row.refund.as_ref().map_or(0, |r| r.1);
        fee += row.fee();
    }
    out.push_str(&SUMMARY_COLUMNS.join(","));
    out.push_str("\r\n");
    let stated_total = total + i64::from(bad_summary);
    out.push_str(&backticked(vec![
        rows.len().to_string(),
        format_fen(total),
        format_fen(refund),
        format_fen(0),
        format_scaled(fee, FEE_SCALE),
        format_fen(stated_total),
        format_fen(refund),
    ]));
    out.push_str("\r\n");
    out.into_bytes()
}

/// `YYYY-MM-DD HH:MM:SS` in China Standard Time of an RFC 3339 time.
fn bill_time(rfc3339: &str) -> Option<(NaiveDate, String)> {
    let t = DateTime::parse_from_rfc3339(rfc3339)
        .ok()?
        .with_timezone(&china());
    Some((t.date_naive(), t.format(TIME_FORMAT).to_string()))
}

impl Pay {
    /// The rows of `day`'s bill: the paid orders, then the faults.
    async fn bill_rows(&self, day: NaiveDate) -> (Vec<Row>, BillFaults) {
        let world = self.world.lock().await;
        let faults = world.bills.faults.clone();
        let mut rows: Vec<Row> = world
            .orders
            .values()
            .filter(|o| o.state == TradeState::Success && !faults.drop.contains(&o.out_trade_no))
            .filter_map(|o| {
                let tx = o.transaction_json(&self.config, o.paid.as_ref()?);
                let (date, time) = bill_time(tx["success_time"].as_str()?)?;
                (date == day).then(|| Row {
                    time,
                    transaction_id: tx["transaction_id"].as_str().unwrap_or_default().to_owned(),
                    out_trade_no: o.out_trade_no.clone(),
                    openid: tx["payer"]["openid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    state: faults
                        .state
                        .get(&o.out_trade_no)
                        .cloned()
                        .unwrap_or_else(|| "SUCCESS".into()),
                    total: faults
                        .amount
                        .get(&o.out_trade_no)
                        .copied()
                        .unwrap_or_else(|| tx["amount"]["total"].as_i64().unwrap_or_default()),
                    refund: None,
                })
            })
            .collect();
        drop(world);
        let noon = format!("{} 12:00:00", day.format("%Y-%m-%d"));
        rows.extend(faults.extra.iter().map(|e| {
            let refund = e.out_refund_no.clone().map(|no| (no, e.refund));
            Row {
                time: e.trade_time.clone().unwrap_or_else(|| noon.clone()),
                transaction_id: e.transaction_id.clone(),
                out_trade_no: e.out_trade_no.clone(),
                openid: e.openid.clone().unwrap_or_else(|| "o-sim-extra".into()),
                state: e.state.clone().unwrap_or_else(|| {
                    if refund.is_some() {
                        "REFUND"
                    } else {
                        "SUCCESS"
                    }
                    .into()
                }),
                total: if refund.is_some() { 0 } else { e.amount },
                refund,
            }
        }));
        rows.sort_by(|a, b| (&a.time, &a.transaction_id).cmp(&(&b.time, &b.transaction_id)));
        (rows, faults)
    }
}

/// The `key=value` of a query string.
fn query_param<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// `GET /v3/bill/tradebill?bill_date=YYYY-MM-DD[&bill_type=ALL]` →
/// `{hash_type, hash_value, download_url}`; 400 `NO_STATEMENT_EXIST` for a day without
/// trades.
pub(super) async fn tradebill(
    State(pay): State<Pay>,
    uri: Uri,
    headers: HeaderMap,
    MerchantRequest(_): MerchantRequest,
) -> Response {
    let Some(day) =
        query_param(&uri, "bill_date").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    else {
        return pay.error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "bill_date must be yyyy-MM-dd",
        );
    };
    if query_param(&uri, "bill_type").is_some_and(|t| t != "ALL") {
        return pay.error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "the simulator makes bill_type=ALL bills only",
        );
    }
    if query_param(&uri, "tar_type").is_some() {
        return pay.error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "the simulator does not compress bills (tar_type)",
        );
    }
    let (rows, faults) = pay.bill_rows(day).await;
    if rows.is_empty() {
        return pay.error(
            StatusCode::BAD_REQUEST,
            "NO_STATEMENT_EXIST",
            "请求的账单文件不存在",
        );
    }
    let file = render(&pay.config, &rows, faults.bad_summary);
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &file);
    let mut hash_value = hex::encode(digest.as_ref());
    if faults.bad_hash {
        hash_value = hex::encode(
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b"not the file").as_ref(),
        );
    }
    let token = random_alphanumeric(48);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let download_url = format!("http://{host}/v3/billdownload/file?token={token}");
    let mut world = pay.world.lock().await;
    let files = &mut world.bills.files;
    files.retain(|_, (made, _)| made.elapsed() < URL_TTL);
    files.insert(token, (Instant::now(), file));
    drop(world);
    pay.answer(
        StatusCode::OK,
        Some(&json!({
            "hash_type": "SHA1",
            "hash_value": hash_value,
            "download_url": download_url,
        })),
    )
}

/// `GET /v3/billdownload/file?token=...` → the bill file, unsigned; 400 once the URL is
/// older than 30 s.
pub(super) async fn download(
    State(pay): State<Pay>,
    uri: Uri,
    MerchantRequest(_): MerchantRequest,
) -> Response {
    let token = query_param(&uri, "token").unwrap_or_default();
    let world = pay.world.lock().await;
    let file = world
        .bills
        .files
        .get(token)
        .filter(|(made, _)| made.elapsed() < URL_TTL)
        .map(|(_, file)| file.clone());
    drop(world);
    match file {
        Some(file) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            file,
        )
            .into_response(),
        None => pay.error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "download_url expired or unknown",
        ),
    }
}

/// `POST /sim/pay/bill/faults {drop?, extra?, amount?, state?, bad_hash?, bad_summary?}`
/// → `{"armed": true}`: the discrepancies every bill carries from now on.
pub(super) async fn arm_faults(
    State(pay): State<Pay>,
    Json(faults): Json<BillFaults>,
) -> Json<Value> {
    pay.world.lock().await.bills.faults = faults;
    Json(json!({"armed": true}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::finance::bill;

    #[test]
    fn bill_times_are_china_standard_time() {
        let (date, time) = bill_time("2024-05-01T16:30:00+00:00").unwrap();
        assert_eq!(date, NaiveDate::from_ymd_opt(2024, 5, 2).unwrap());
        assert_eq!(time, "2024-05-02 00:30:00");
        assert!(bill_time("yesterday").is_none());
    }

    #[test]
    fn a_rendered_bill_parses_and_adds_up() {
        let pay = Pay::new(
            &crate::settings::SimSettings::default(),
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        let rows = vec![
            Row {
                time: "2024-05-01 10:00:00".into(),
                transaction_id: "4200000000000000000000000001".into(),
                out_trade_no: "no-000001".into(),
                openid: "o-1".into(),
                state: "SUCCESS".into(),
                total: 1800,
                refund: None,
            },
            Row {
                time: "2024-05-01 11:00:00".into(),
                transaction_id: "4200000000000000000000000001".into(),
                out_trade_no: "no-000001".into(),
                openid: "o-1".into(),
                state: "REFUND".into(),
                total: 0,
                refund: Some(("rf-1".into(), 500)),
            },
        ];
        let parsed = bill::parse(&render(&pay.config, &rows, false)).unwrap();
        assert_eq!(parsed.lines.len(), 2);
        assert_eq!(parsed.summary.total, 1800);
        assert_eq!(parsed.summary.refund, 500);
        assert_eq!(parsed.summary.fee, 10_800);
        assert!(parsed.lines[1].is_refund());
        assert!(matches!(
            bill::parse(&render(&pay.config, &rows, true)),
            Err(bill::BillError::Summary(_))
        ));
    }
}
