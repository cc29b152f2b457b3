//! WeChat Pay (API v3): the crypto every request, answer and callback needs, the key
//! store of WeChat's keys, and the client.

pub mod certificate;
pub mod client;
pub mod crypto;
pub mod keys;
pub mod notify;
pub mod v2;

pub use client::{PayClient, PayError, PayParams, Prepay, RefundRequest};
