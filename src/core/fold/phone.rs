//! Phones in the fold: a number as WeChat reports it, and a bound phone as the users
//! projection keeps it (in clear from old events, or sealed with its blind index).

use crate::core::events::{BlindIndex, Sealed};

/// A phone number as WeChat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// Country calling code without `+`.
    pub country_code: String,
    /// The national number.
    pub pure_phone_number: String,
}

impl Phone {
    /// A phone from its parts.
    pub fn new(country_code: &str, pure_phone_number: &str) -> Self {
        Self {
            country_code: country_code.to_owned(),
            pure_phone_number: pure_phone_number.to_owned(),
        }
    }

    /// The unique key of a phone: `+<country code><number>`.
    pub fn key(&self) -> String {
        format!("+{}{}", self.country_code, self.pure_phone_number)
    }

    /// The number with its middle hidden, for display: `138****8000`.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.pure_phone_number.chars().collect();
        if chars.len() <= 4 {
            return "*".repeat(chars.len());
        }
        let keep_head = if chars.len() >= 11 { 3 } else { 1 };
        let keep_tail = 4.min(chars.len() - keep_head);
        let hidden = chars.len() - keep_head - keep_tail;
        let mut out: String = chars[..keep_head].iter().collect();
        out.push_str(&"*".repeat(hidden));
        out.extend(&chars[chars.len() - keep_tail..]);
        out
    }
}

/// A bound phone as the fold keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundPhone {
    /// From `user.phone_bound` v1: the number in clear (old events' residue).
    Plain(Phone),
    /// From `user.phone_bound` v2: the number sealed under the user's data key.
    Sealed {
        /// The sealed number.
        phone: Sealed,
        /// Its blind index.
        bidx: BlindIndex,
    },
}

impl BoundPhone {
    /// The key that keeps a phone on one user (`users.phone_key`): `+<cc><number>` for a
    /// v1 phone, `bidx:<hex>` for a v2 one. A number bound in clear by a v1 event and the
    /// same number bound sealed have different keys: the API checks both before it
    /// appends (v1 events are no longer written, so no race between the two remains).
    pub fn owner_key(&self) -> String {
        match self {
            BoundPhone::Plain(phone) => phone.key(),
            BoundPhone::Sealed { bidx, .. } => bidx_owner_key(bidx),
        }
    }
}

/// The owner key of a sealed phone with this blind index.
pub fn bidx_owner_key(bidx: &BlindIndex) -> String {
    format!("bidx:{bidx}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phones() {
        assert_eq!(Phone::new("86", "13800138000").masked(), "138****8000");
        assert_eq!(Phone::new("1", "2025550123").masked(), "2*****0123");
        assert_eq!(Phone::new("1", "123").masked(), "***");
        assert_eq!(Phone::new("86", "13800138000").key(), "+8613800138000");
    }
}
