//! What a token and an API v2 key look like, for the sections that check them.

/// WeChat's API v2 keys are 32 letters and digits (they go into a signed string as is).
pub(super) fn is_v2_key(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
