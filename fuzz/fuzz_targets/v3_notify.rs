//! A v3 notify as the webhook reads it: `Wechatpay-*` headers, the signature check up to
//! RSA verification (a development pay client, no certificate downloads), the
//! `{id, event_type, resource}` envelope, the resource opened under the APIv3 key and its
//! transaction or refund. Any input is refused or read, never a panic.
//!
//! Input: header lines `name: value`, an empty line, then the body. Since the fuzzer
//! cannot forge AES-GCM, a resource that does not open is also sealed by us (its
//! `ciphertext` text as plaintext, under its nonce) so that the transaction and refund
//! readers are reached too.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wxledger::{
    core::{
        clock,
        events::{Refund, Transaction},
    },
    settings::Settings,
    wechat::pay::{
        client::evidence_from_headers,
        notify::{signed, Freshness, Notify},
        PayClient,
    },
};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    pay: PayClient,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut settings = Settings::development();
        settings.pay.platform_certificates = false;
        let pay = {
            let _inside = runtime.enter();
            PayClient::new(&settings.pay, &settings.wechat.appid, clock::system())
                .expect("the development pay client")
        };
        Fixture { runtime, pay }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (head, body) = split_message(data);
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    if let Some(evidence) = evidence_from_headers(&headers, body) {
        for freshness in [Freshness::Now, Freshness::AsSigned] {
            let _ = f.runtime.block_on(signed(&f.pay, &evidence, freshness));
        }
    }
    let Ok(notify) = Notify::read(body) else {
        return;
    };
    let key = f.pay.apiv3_key();
    let plain = match notify.open(key) {
        Ok(plain) => plain,
        Err(_) => {
            let r = &notify.resource;
            if r.algorithm != "AEAD_AES_256_GCM" || r.nonce.len() != 12 {
                return;
            }
            let sealed = key.encrypt(&r.nonce, &r.associated_data, r.ciphertext.as_bytes());
            let plain = key
                .decrypt(&r.nonce, &r.associated_data, &sealed)
                .expect("what we sealed opens");
            assert_eq!(plain, r.ciphertext.as_bytes());
            plain
        }
    };
    match notify.event_type.as_str() {
        "TRANSACTION.SUCCESS" => drop(serde_json::from_slice::<Transaction>(&plain)),
        _ => drop(serde_json::from_slice::<Refund>(&plain)),
    }
});

/// Header lines and the body, split at the first empty line (all head if none).
fn split_message(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[]),
    }
}
