//! Decimal yuan as WeChat's bills write them, read exactly into integers (fen, or the
//! 1/100000 yuan of the fee column) and written back. No floats anywhere.

/// A decimal string that is not a fixed-point number of at most the allowed scale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an amount in yuan with at most {scale} decimals")]
pub struct BadAmount {
    /// The text read.
    pub value: String,
    /// The most fraction digits allowed.
    pub scale: u32,
}

/// Reads `[-]digits[.digits]` with at most `scale` fraction digits as an integer count
/// of `10^-scale` yuan: `parse_scaled("12.3", 2) == Ok(1230)`.
pub fn parse_scaled(s: &str, scale: u32) -> Result<i64, BadAmount> {
    let bad = || BadAmount {
        value: s.to_owned(),
        scale,
    };
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    // "12." and ".5" are not how WeChat writes money; refuse them rather than guess.
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (digits.contains('.') && fraction.is_empty())
        || fraction.len() > scale as usize
    {
        return Err(bad());
    }
    let unit = 10_i64.pow(scale);
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let mut frac: i64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    // "12.3" at scale 2 is 30 hundredths, not 3.
    for _ in fraction.len()..scale as usize {
        frac *= 10;
    }
    let value = whole
        .checked_mul(unit)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    Ok(if negative { -value } else { value })
}

/// Yuan with two decimals, as fen: `"0.01"` is 1, `"1234567.89"` is 123456789.
pub fn parse_fen(s: &str) -> Result<i64, BadAmount> {
    parse_scaled(s, 2)
}

/// Writes `value` units of `10^-scale` yuan with exactly `scale` decimals.
pub fn format_scaled(value: i64, scale: u32) -> String {
    let unit = 10_u64.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{magnitude}");
    }
    format!(
        "{sign}{}.{:0width$}",
        magnitude / unit,
        magnitude % unit,
        width = scale as usize
    )
}

/// Fen as yuan with two decimals: 1230 is `"12.30"`.
pub fn format_fen(fen: i64) -> String {
    format_scaled(fen, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_reads_exactly_into_fen() {
        assert_eq!(parse_fen("0.01"), Ok(1));
        assert_eq!(parse_fen("0.10"), Ok(10));
        assert_eq!(parse_fen("0.1"), Ok(10));
        assert_eq!(parse_fen("12.30"), Ok(1230));
        assert_eq!(parse_fen("1234567.89"), Ok(123_456_789));
        assert_eq!(parse_fen("0"), Ok(0));
        assert_eq!(parse_fen("0.00"), Ok(0));
        assert_eq!(parse_fen("-3.05"), Ok(-305));
        // A value a float cannot hold exactly is still exact here.
        assert_eq!(parse_fen("92233720368547758.07"), Ok(i64::MAX));
    }

    #[test]
    fn malformed_yuan_is_refused() {
        for bad in [
            "",
            "-",
            ".",
            "1.",
            ".5",
            "0.001",
            "1,00",
            "1 00",
            "1e3",
            "+1",
            "¥1",
            "１.00",
            "92233720368547758.08",
            "0x10",
        ] {
            assert!(parse_fen(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn fee_column_reads_five_decimals() {
        assert_eq!(parse_scaled("0.00000", 5), Ok(0));
        assert_eq!(parse_scaled("0.10800", 5), Ok(10_800));
        assert_eq!(parse_scaled("0.00001", 5), Ok(1));
        assert!(parse_scaled("0.000001", 5).is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for fen in [0, 1, 9, 10, 99, 100, 1230, 123_456_789, -1, -305, i64::MAX] {
            assert_eq!(parse_fen(&format_fen(fen)), Ok(fen));
        }
        assert_eq!(format_fen(1), "0.01");
        assert_eq!(format_fen(1230), "12.30");
        assert_eq!(format_fen(-305), "-3.05");
        assert_eq!(format_scaled(10_800, 5), "0.10800");
    }
}
