//! The simulator's API v2 wire helpers: XML answers, Beijing times, random digits, amounts.

use super::*;

pub(super) fn xml_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `return_code` FAIL: WeChat refused the call itself; such answers are not signed.
pub(super) fn refused(message: &str) -> Response {
    xml_response(xml::write([
        ("return_code", "FAIL"),
        ("return_msg", message),
    ]))
}

pub(super) fn now_compact() -> String {
    beijing().format("%Y%m%d%H%M%S").to_string()
}

pub(super) fn now_dashed() -> String {
    beijing().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn beijing() -> chrono::DateTime<chrono::FixedOffset> {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    chrono::Utc::now().with_timezone(&china)
}

pub(super) fn digits(prefix: &str, n: usize) -> String {
    let mut rng = rand::thread_rng();
    let tail: String = (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    format!("{prefix}{tail}")
}

pub(super) fn fen(value: Option<&str>) -> Option<i64> {
    value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .filter(|&f| f >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_integers_in_fen() {
        assert_eq!(fen(Some("1")), Some(1));
        assert_eq!(fen(Some("0")), None);
        assert_eq!(fen(Some("1.00")), None);
        assert_eq!(fen(Some("-1")), None);
        assert_eq!(fen(Some("")), None);
        assert_eq!(fen(None), None);
    }
}
