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
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("must be letters, digits, '_' or '-'");
        }
        Ok(Self(s.to_owned()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    /// Parses a nickname.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        if s.is_empty() {
            return Err("must not be empty");
        }
        if s.chars().count() > 64 {
            return Err("must be at most 64 characters");
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(s.to_owned()))
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
}
