//! WeChat Pay's trade bill (交易账单, `bill_type=ALL`), read exactly: UTF-8 with a BOM,
//! a header of Chinese column names, one line per payment or refund with every cell
//! prefixed by a backtick, then a summary header and one row of totals, which must add
//! up to the lines. Amounts are yuan with two decimals, read into integer fen.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};

use super::yuan::{format_scaled, parse_fen, parse_scaled};

/// The columns of an `ALL` trade bill, in order (WeChat Pay's current format, with
/// 应结订单金额 and 代金券金额).
pub const ALL_COLUMNS: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

/// The columns of the summary of an `ALL` trade bill, in order.
pub const SUMMARY_COLUMNS: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// Decimals of the fee column (手续费): WeChat writes the fee to 1/100000 yuan.
pub const FEE_SCALE: u32 = 5;

/// The format of 交易时间 (China Standard Time, no offset written).
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// China Standard Time, the zone of the bill's times and of a bill day.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// A bill that cannot be read as a trade bill. Each variant has a stable [`code`].
///
/// [`code`]: BillError::code
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// The bytes are not UTF-8.
    #[error("the bill is not UTF-8 text")]
    NotUtf8,
    /// The first line is not the `ALL` trade bill's header.
    #[error("line {line}: not the header of a trade bill (bill_type=ALL): {problem}")]
    Header {
        /// 1-based line number.
        line: usize,
        /// What differs.
        problem: String,
    },
    /// A line of the bill cannot be read.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The summary is missing, malformed, or does not add up to the lines.
    #[error("summary: {0}")]
    Summary(String),
}

impl BillError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            BillError::NotUtf8 => "bill_not_utf8",
            BillError::Header { .. } => "bill_header",
            BillError::Line { .. } => "bill_line",
            BillError::Summary(_) => "bill_summary",
        }
    }
}

/// One line of the bill: a payment, or (交易状态 `REFUND` with a 商户退款单号) a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// 交易时间: when the payment succeeded, or when the refund was accepted.
    pub trade_time: DateTime<FixedOffset>,
    /// 公众账号ID.
    pub appid: String,
    /// 商户号.
    pub mchid: String,
    /// 特约商户号 (`0` for a direct merchant).
    pub sub_mchid: String,
    /// 设备号.
    pub device_info: String,
    /// 微信订单号: the payment's `transaction_id` (a refund line names the refunded payment).
    pub transaction_id: String,
    /// 商户订单号: our `out_trade_no`.
    pub out_trade_no: String,
    /// 用户标识: the payer's openid.
    pub openid: String,
    /// 交易类型, e.g. `JSAPI`.
    pub trade_type: String,
    /// 交易状态: `SUCCESS`, `REFUND`, `REVOKED`, ...
    pub trade_state: String,
    /// 付款银行.
    pub bank_type: String,
    /// 货币种类, `CNY`.
    pub currency: String,
    /// 应结订单金额 in fen: the order amount less non-recharge coupons.
    pub settlement_total: i64,
    /// 代金券金额 in fen.
    pub coupon: i64,
    /// 微信退款单号 (`None` on a payment line, where WeChat writes `0` or nothing).
    pub refund_id: Option<String>,
    /// 商户退款单号: our `out_refund_no` (`None` on a payment line).
    pub out_refund_no: Option<String>,
    /// 退款金额 in fen.
    pub refund: i64,
    /// 充值券退款金额 in fen.
    pub recharge_coupon_refund: i64,
    /// 退款类型.
    pub refund_type: String,
    /// 退款状态 (as when the bill was made; WeChat does not update it).
    pub refund_status: String,
    /// 商品名称.
    pub description: String,
    /// 商户数据包.
    pub attach: String,
    /// 手续费 in 1/100000 yuan ([`FEE_SCALE`]).
    pub fee: i64,
    /// 费率, e.g. `0.60%`.
    pub fee_rate: String,
    /// 订单金额 in fen: the order total, what the payment's `amount.total` says.
    pub total: i64,
    /// 申请退款金额 in fen: the refund asked for.
    pub refund_requested: i64,
    /// 费率备注.
    pub fee_note: String,
}

impl BillLine {
    /// True for a refund line: 交易状态 `REFUND` and a 商户退款单号.
    pub fn is_refund(&self) -> bool {
        self.trade_state == "REFUND" && self.out_refund_no.is_some()
    }

    /// The bill day of this line (its date in China Standard Time).
    pub fn day(&self) -> NaiveDate {
        self.trade_time.date_naive()
    }
}

/// The summary row: the counts and totals WeChat says the lines add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillSummary {
    /// 总交易单数: the number of lines.
    pub count: u64,
    /// 应结订单总金额 in fen.
    pub settlement_total: i64,
    /// 退款总金额 in fen.
    pub refund: i64,
    /// 充值券退款总金额 in fen.
    pub recharge_coupon_refund: i64,
    /// 手续费总金额 in 1/100000 yuan.
    pub fee: i64,
    /// 订单总金额 in fen.
    pub total: i64,
    /// 申请退款总金额 in fen.
    pub refund_requested: i64,
}

impl BillSummary {
    /// The summary of `lines` (`None` if a total leaves `i64`).
    pub fn of(lines: &[BillLine]) -> Option<Self> {
        let mut sum = BillSummary {
            count: lines.len() as u64,
            ..Default::default()
        };
        for l in lines {
            sum.settlement_total = sum.settlement_total.checked_add(l.settlement_total)?;
            sum.refund = sum.refund.checked_add(l.refund)?;
            sum.recharge_coupon_refund = sum
                .recharge_coupon_refund
                .checked_add(l.recharge_coupon_refund)?;
            sum.fee = sum.fee.checked_add(l.fee)?;
            sum.total = sum.total.checked_add(l.total)?;
            sum.refund_requested = sum.refund_requested.checked_add(l.refund_requested)?;
        }
        Some(sum)
    }
}

/// A trade bill whose summary adds up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeBill {
    /// The lines, in file order.
    pub lines: Vec<BillLine>,
    /// The summary, equal to [`BillSummary::of`] the lines.
    pub summary: BillSummary,
}

/// The cells of a line whose every cell starts with a backtick. Cells are split at
/// `` ,` `` rather than at every comma, so a 商品名称 with a comma in it stays one cell.
fn cells(text: &str, line: usize) -> Result<Vec<&str>, BillError> {
    let rest = text.strip_prefix('`').ok_or_else(|| BillError::Line {
        line,
        problem: "a data line must start with a backtick (`)".into(),
    })?;
    Ok(rest.split(",`").collect())
}

fn header_problem(found: &[&str], expected: &[&str]) -> Option<String> {
    if found.len() != expected.len() {
        return Some(format!(
            "{} columns, expected {}",
            found.len(),
            expected.len()
        ));
    }
    found
        .iter()
        .zip(expected)
        .position(|(f, e)| f.trim() != *e)
        .map(|i| {
            format!(
                "column {} is {:?}, expected {:?}",
                i + 1,
                found[i],
                expected[i]
            )
        })
}

fn line_of(number: usize, text: &str) -> Result<BillLine, BillError> {
    let c = cells(text, number)?;
    if c.len() != ALL_COLUMNS.len() {
        return Err(BillError::Line {
            line: number,
            problem: format!("{} cells, expected {}", c.len(), ALL_COLUMNS.len()),
        });
    }
    let bad = |column: usize, problem: String| BillError::Line {
        line: number,
        problem: format!("{} ({}): {problem}", ALL_COLUMNS[column], column + 1),
    };
    let fen = |column: usize| parse_fen(c[column]).map_err(|e| bad(column, e.to_string()));
    let text = |column: usize| c[column].to_owned();
    let required = |column: usize| {
        if c[column].is_empty() {
            Err(bad(column, "must not be empty".into()))
        } else {
            Ok(c[column].to_owned())
        }
    };
    // WeChat writes `0` (or nothing) in the refund ids of a payment line.
    let refund_key = |column: usize| Some(c[column]).filter(|v| !v.is_empty() && *v != "0");
    let naive = NaiveDateTime::parse_from_str(c[0], TIME_FORMAT)
        .map_err(|_| bad(0, format!("{:?} is not yyyy-MM-dd HH:mm:ss", c[0])))?;
    // chrono reads years down to -262143: before 08:00 on its first day, +08:00 has no
    // UTC instant, so the edge of the calendar is refused like any other bad time.
    let trade_time = china()
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(|| bad(0, format!("{:?} is outside the calendar", c[0])))?;
    Ok(BillLine {
        line: number,
        trade_time,
        appid: text(1),
        mchid: required(2)?,
        sub_mchid: text(3),
        device_info: text(4),
        transaction_id: required(5)?,
        out_trade_no: required(6)?,
        openid: text(7),
        trade_type: text(8),
        trade_state: required(9)?,
        bank_type: text(10),
        currency: text(11),
        settlement_total: fen(12)?,
        coupon: fen(13)?,
        refund_id: refund_key(14).map(str::to_owned),
        out_refund_no: refund_key(15).map(str::to_owned),
        refund: fen(16)?,
        recharge_coupon_refund: fen(17)?,
        refund_type: text(18),
        refund_status: text(19),
        description: text(20),
        attach: text(21),
        fee: parse_scaled(c[22], FEE_SCALE).map_err(|e| bad(22, e.to_string()))?,
        fee_rate: text(23),
        total: fen(24)?,
        refund_requested: fen(25)?,
        fee_note: text(26),
    })
}

fn summary_of(number: usize, text: &str) -> Result<BillSummary, BillError> {
    let c = cells(text, number)?;
    if c.len() != SUMMARY_COLUMNS.len() {
        return Err(BillError::Line {
            line: number,
            problem: format!(
                "summary row has {} cells, expected {}",
                c.len(),
                SUMMARY_COLUMNS.len()
            ),
        });
    }
    let bad = |column: usize, problem: String| BillError::Line {
        line: number,
        problem: format!("{}: {problem}", SUMMARY_COLUMNS[column]),
    };
    let fen = |column: usize| parse_fen(c[column]).map_err(|e| bad(column, e.to_string()));
    Ok(BillSummary {
        count: c[0]
            .parse()
            .map_err(|_| bad(0, format!("{:?} is not a count", c[0])))?,
        settlement_total: fen(1)?,
        refund: fen(2)?,
        recharge_coupon_refund: fen(3)?,
        fee: parse_scaled(c[4], FEE_SCALE).map_err(|e| bad(4, e.to_string()))?,
        total: fen(5)?,
        refund_requested: fen(6)?,
    })
}

/// Says which totals of `stated` differ from `computed`.
fn summary_differences(stated: &BillSummary, computed: &BillSummary) -> Vec<String> {
    let mut out = Vec::new();
    if stated.count != computed.count {
        out.push(format!(
            "总交易单数 says {}, the bill has {} lines",
            stated.count, computed.count
        ));
    }
    // (column, stated, computed, decimals)
    let totals = [
        (1, stated.settlement_total, computed.settlement_total, 2),
        (2, stated.refund, computed.refund, 2),
        (
            3,
            stated.recharge_coupon_refund,
            computed.recharge_coupon_refund,
            2,
        ),
        (4, stated.fee, computed.fee, FEE_SCALE),
        (5, stated.total, computed.total, 2),
        (6, stated.refund_requested, computed.refund_requested, 2),
    ];
    for (column, s, c, scale) in totals {
        if s != c {
            out.push(format!(
                "{} says {}, the lines add up to {}",
                SUMMARY_COLUMNS[column],
                format_scaled(s, scale),
                format_scaled(c, scale)
            ));
        }
    }
    out
}

/// Reads a trade bill (`bill_type=ALL`) as WeChat Pay sends it.
pub fn parse(bytes: &[u8]) -> Result<TradeBill, BillError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| BillError::NotUtf8)?;
    // (1-based number, text) of every line that is not blank.
    let mut rows = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());

    let (number, header) = rows.next().ok_or(BillError::Header {
        line: 1,
        problem: "the bill is empty".into(),
    })?;
    let found: Vec<&str> = header.split(',').collect();
    if let Some(problem) = header_problem(&found, &ALL_COLUMNS) {
        return Err(BillError::Header {
            line: number,
            problem,
        });
    }

    let mut lines = Vec::new();
    let stated = loop {
        let Some((number, text)) = rows.next() else {
            return Err(BillError::Summary(format!(
                "missing: no {} line after the {} lines",
                SUMMARY_COLUMNS[0],
                lines.len()
            )));
        };
        if text.starts_with(SUMMARY_COLUMNS[0]) {
            let found: Vec<&str> = text.split(',').collect();
            if let Some(problem) = header_problem(&found, &SUMMARY_COLUMNS) {
                return Err(BillError::Summary(format!(
                    "line {number}: not the summary header: {problem}"
                )));
            }
            let (number, values) = rows.next().ok_or_else(|| {
                BillError::Summary(format!("line {number}: header without a row of totals"))
            })?;
            break summary_of(number, values)?;
        }
        lines.push(line_of(number, text)?);
    };
    if let Some((number, _)) = rows.next() {
        return Err(BillError::Line {
            line: number,
            problem: "text after the summary".into(),
        });
    }
    let computed = BillSummary::of(&lines)
        .ok_or_else(|| BillError::Summary("the lines' totals overflow".into()))?;
    let differences = summary_differences(&stated, &computed);
    if !differences.is_empty() {
        return Err(BillError::Summary(differences.join("; ")));
    }
    Ok(TradeBill {
        lines,
        summary: stated,
    })
}

#[cfg(test)]
mod tests;
