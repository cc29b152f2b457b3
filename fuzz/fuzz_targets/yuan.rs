//! Yuan amounts (`tools::finance::yuan`): any string is refused or read, never a panic;
//! an amount read writes back to text that reads to the same amount, and that text is
//! the input with its decimals filled in (`"1.5"` is `"1.50"`), but for `-0`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxledger::tools::finance::yuan;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The bill's scales: fen (2) and the fee column's 1/100000 yuan (5).
    for scale in [2, 5] {
        let Ok(value) = yuan::parse_scaled(text, scale) else {
            continue;
        };
        let written = yuan::format_scaled(value, scale);
        assert_eq!(
            yuan::parse_scaled(&written, scale),
            Ok(value),
            "{text:?} -> {written:?}"
        );
        if value != 0 {
            assert_eq!(written, normalised(text, scale), "{text:?}");
        }
    }
});

/// `text` (already read as an amount) without leading zeros and with `scale` decimals.
fn normalised(text: &str, scale: u32) -> String {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    format!("{sign}{whole}.{fraction:0<width$}", width = scale as usize)
}
