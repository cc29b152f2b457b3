//! WeChat Pay API v2, for legacy merchants: flat XML messages signed with the merchant's
//! API key (MD5 or HMAC-SHA256 over the sorted `k=v&...&key=API_KEY`), refund notifies
//! whose `req_info` is AES-256-ECB under the key's MD5, and the client of `unifiedorder`,
//! `orderquery`, `closeorder`, `refund` and `refundquery`, which answers in API v3's shapes.

pub mod client;
pub mod crypto;
pub mod map;
pub mod notify;
pub mod sign;
pub mod xml;

pub use client::{RefundRequest, V2Client, V2ConfigError, V2Error};
pub use sign::{ApiKey, SignType};
pub use xml::{Fields, XmlError};
