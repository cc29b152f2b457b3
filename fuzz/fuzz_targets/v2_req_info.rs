//! A v2 refund notify's `req_info` (AES-256-ECB under the MD5 of the API key, then
//! `<root>` XML): any string is refused or read, never a panic. The first byte picks the
//! input: 0 seals the rest under the key first, so the fuzzer reaches the XML reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxledger::wechat::pay::v2::{crypto, sign::ApiKey};

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let key = ApiKey::new("0123456789abcdefghijABCDEFGHIJ01").expect("a 32-character key");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let sealed = crypto::encrypt(rest, &key);
        assert_eq!(crypto::decrypt(&sealed, &key).expect("opens"), rest);
        if let Ok((text, _fields)) = crypto::decrypt_refund(&sealed, &key, LIMIT) {
            assert_eq!(text.as_bytes(), rest);
        }
    } else if let Ok(req_info) = std::str::from_utf8(rest) {
        let _ = crypto::decrypt_refund(req_info, &key, LIMIT);
    }
});
