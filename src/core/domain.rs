//! Edge types: input parsed once into values the inside can trust.

/// A single-use code from `wx.login` or `getPhoneNumber`: 1 to 128 characters of
/// `[A-Za-z0-9_-]` (WeChat's are 32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WxCode(String);

impl WxCode {
    /// Parses a code; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("must not be empty");
        }
        if s.len() > 128 {
            return Err("must be at most 128 characters");
        }
        word_chars(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// WeChat's identifier alphabet, shared by codes and merchant order numbers: only
/// `[A-Za-z0-9_-]`.
fn word_chars(s: &str) -> Result<(), &'static str> {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err("must be letters, digits, '_' or '-'")
    }
}

/// Trimmed text of 1 to `max` characters without control characters.
fn short_text(s: &str, max: usize, too_long: &'static str) -> Result<String, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.chars().count() > max {
        return Err(too_long);
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(s.to_owned())
}

/// A display name: 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    /// Parses a nickname.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        short_text(s, 64, "must be at most 64 characters").map(Self)
    }

    /// The name.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An avatar URL: `https://` or `http://`, at most 1024 characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarUrl(String);

impl AvatarUrl {
    /// Parses an avatar URL.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.len() > 1024 {
            return Err("must be at most 1024 characters");
        }
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or("must be an http(s) URL")?;
        if rest.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must be an http(s) URL without spaces");
        }
        Ok(Self(s.to_owned()))
    }

    /// The URL.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Checks a phone number's parts as WeChat reports them: a 1–4 digit country code and a
/// 4–20 digit national number.
pub fn valid_phone(country_code: &str, pure_phone_number: &str) -> bool {
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    digits(country_code, 1, 4) && digits(pure_phone_number, 4, 20)
}

/// An amount of money in fen (1/100 yuan): a positive integer within the configured
/// maximum. Parsed from the JSON value itself, so `100.0`, `"100"` and `1e2` are refused
/// rather than rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fen(i64);

impl Fen {
    /// Parses a JSON amount: an integer from 1 to `max`.
    pub fn parse(value: &serde_json::Value, max: i64) -> Result<Self, String> {
        let n = match value {
            serde_json::Value::Number(n) => n,
            serde_json::Value::String(_) => {
                return Err("must be a JSON integer of fen, not a string".into())
            }
            _ => return Err("must be an integer number of fen".into()),
        };
        let fen = n.as_i64().ok_or_else(|| {
            "must be an integer number of fen (no fraction, no exponent)".to_owned()
        })?;
        if fen < 1 {
            return Err("must be at least 1 fen".into());
        }
        if fen > max {
            return Err(format!("must be at most {max} fen"));
        }
        Ok(Self(fen))
    }

    /// The amount.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// What WeChat's payment sheet shows: 1 to 127 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Validates a description.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        short_text(s, 127, "must be at most 127 characters").map(Self)
    }

    /// The text.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// 32 hex characters: derived from `scope` and the idempotency key when there is one
/// (the same key always gives the same id), random otherwise.
fn issued_id(scope: &str, idempotency_key: Option<&str>) -> String {
    let id = match idempotency_key {
        Some(key) => uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("wxledger:{scope}:{key}").as_bytes(),
        ),
        None => uuid::Uuid::new_v4(),
    };
    id.simple().to_string()
}

/// A merchant order number as wxledger issues them: 32 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutTradeNo(String);

impl OutTradeNo {
    /// A new number; with an idempotency key, the same key (for the same user and kind)
    /// always gives the same number.
    pub fn issue(user_id: uuid::Uuid, kind: &str, idempotency_key: Option<&str>) -> Self {
        Self(issued_id(&format!("{kind}:{user_id}"), idempotency_key))
    }

    /// Validates a number from a path: 6 to 32 of `[A-Za-z0-9_-]` (WeChat's rule).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if !(6..=32).contains(&s.len()) {
            return Err("must be 6 to 32 characters");
        }
        word_chars(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A merchant refund number: 1 to 64 of `[A-Za-z0-9_-|*@]` (WeChat's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRefundNo(String);

impl OutRefundNo {
    /// A new number for a refund of `out_trade_no`; with an idempotency key, the same key
    /// always gives the same number.
    pub fn issue(out_trade_no: &str, idempotency_key: Option<&str>) -> Self {
        Self(format!(
            "rf{}",
            issued_id(&format!("refund:{out_trade_no}"), idempotency_key)
        ))
    }

    /// Validates a number given by the caller.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if !(1..=64).contains(&s.len()) {
            return Err("must be 1 to 64 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
        {
            return Err("must be letters, digits or _-|*@");
        }
        Ok(Self(s.to_owned()))
    }

    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a refund is made, shown to the payer: at most 80 characters, no control
/// characters; may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReason(String);

impl RefundReason {
    /// Validates a reason.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.trim().is_empty() {
            return Ok(Self(String::new()));
        }
        short_text(s, 80, "must be at most 80 characters").map(Self)
    }

    /// The text.
    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(WxCode::parse("0a1B2c-_").is_ok());
        assert!(WxCode::parse("").is_err());
        assert!(WxCode::parse("has space").is_err());
        assert!(WxCode::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn profiles() {
        assert_eq!(Nickname::parse("  小明 ").unwrap().into_inner(), "小明");
        assert!(Nickname::parse(" ").is_err());
        assert!(Nickname::parse("a\u{0}b").is_err());
        assert!(Nickname::parse(&"名".repeat(65)).is_err());
        assert!(AvatarUrl::parse("https://x/y.png").is_ok());
        assert!(AvatarUrl::parse("javascript:alert(1)").is_err());
        assert!(AvatarUrl::parse("https://a b").is_err());
    }

    #[test]
    fn phones() {
        assert!(valid_phone("86", "13800138000"));
        assert!(!valid_phone("+86", "13800138000"));
        assert!(!valid_phone("86", "138-0013"));
    }

    #[test]
    fn fen_takes_positive_json_integers_within_the_maximum_only() {
        use serde_json::json;
        assert_eq!(Fen::parse(&json!(100), 1000).unwrap().get(), 100);
        assert_eq!(Fen::parse(&json!(1000), 1000).unwrap().get(), 1000);
        for bad in [
            json!(0),
            json!(-1),
            json!(1001),
            json!(1.5),
            json!(100.0),
            json!("100"),
            json!(null),
            json!(1e2),
        ] {
            assert!(Fen::parse(&bad, 1000).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn out_trade_numbers_are_stable_per_idempotency_key() {
        let u = uuid::Uuid::nil();
        let a = OutTradeNo::issue(u, "order", Some("k1"));
        assert_eq!(a, OutTradeNo::issue(u, "order", Some("k1")));
        assert_ne!(a, OutTradeNo::issue(u, "recharge", Some("k1")));
        assert_ne!(a, OutTradeNo::issue(u, "order", None));
        assert_eq!(a.as_str().len(), 32);
        assert!(OutTradeNo::parse(a.as_str()).is_ok());
        assert!(OutTradeNo::parse("abc").is_err());
        assert!(OutTradeNo::parse("abc/../x").is_err());
        assert!(Description::parse("  ").is_err());
        assert!(Description::parse(&"x".repeat(128)).is_err());
        assert_eq!(
            Description::parse(" 会员充值 ").unwrap().into_inner(),
            "会员充值"
        );
    }

    #[test]
    fn refund_numbers_and_reasons() {
        let a = OutRefundNo::issue("o1", Some("k"));
        assert_eq!(a, OutRefundNo::issue("o1", Some("k")));
        assert_ne!(a, OutRefundNo::issue("o2", Some("k")));
        assert!(OutRefundNo::parse(a.as_str()).is_ok());
        assert!(OutRefundNo::parse("R-1|x*y@z_").is_ok());
        assert!(OutRefundNo::parse("").is_err());
        assert!(OutRefundNo::parse(&"x".repeat(65)).is_err());
        assert!(OutRefundNo::parse("a/b").is_err());
        assert_eq!(RefundReason::parse("").unwrap().into_inner(), "");
        assert!(RefundReason::parse(&"退".repeat(81)).is_err());
        assert!(RefundReason::parse("a\u{7}b").is_err());
    }
}
