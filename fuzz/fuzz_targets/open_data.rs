//! WeChat's legacy `encryptedData` (AES-128-CBC, PKCS#7, base64 fields) and the phone
//! number JSON inside: any input is refused or read, never a panic. The first byte picks
//! the input: 0 seals the rest under the session key first (so the fuzzer reaches the
//! JSON); otherwise the rest is `encryptedData` and `iv`, split at the first newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxledger::{core::crypto, wechat::mini::PhoneInfo};

// base64 of the 16 bytes 0x00..0x0f.
const SESSION_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODw==";
const SESSION_KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let plain = if mode == 0 {
        let (encrypted, iv) = crypto::encrypt_open_data(&SESSION_KEY, rest);
        let plain = crypto::decrypt_open_data(SESSION_KEY_B64, &encrypted, &iv).expect("opens");
        assert_eq!(plain, rest);
        plain
    } else {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let (encrypted, iv) = text.split_once('\n').unwrap_or((text, ""));
        match crypto::decrypt_open_data(SESSION_KEY_B64, encrypted, iv) {
            Ok(plain) => plain,
            Err(_) => return,
        }
    };
    let _ = serde_json::from_slice::<PhoneInfo>(&plain);
});
