//! WeChat Pay (API v3): the crypto every request, answer and callback needs.

pub mod crypto;
