//! `wxledger bench`: `crypto` measures how fast the crypto on the notify and payment paths runs on
//! this machine, printed as a table (one core, release build recommended); `faults` runs the
//! fault matrix on private servers.

pub mod appends;
pub mod faults;
pub mod notifies;
pub mod rebuild;

use std::time::Instant;

use crate::wechat::pay::crypto::{response_message, ApiV3Key, SigningKey};

const MERCHANT_KEY: &str =
    include_str!("../../../tests/vectors/wechatpay/java_merchant_private_key.pem");

fn rate(iterations: u32, mut op: impl FnMut()) -> f64 {
    op();
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    f64::from(iterations) / start.elapsed().as_secs_f64()
}

/// Prints operations per second for RSA-2048 sign and verify (ring) and AES-256-GCM
/// decryption of a notify-sized resource.
pub fn crypto() {
    let key = SigningKey::from_pkcs8_pem(MERCHANT_KEY).expect("the bundled test key parses");
    let public = key.verifying_key();
    let body = vec![b'x'; 900];
    let message = response_message("1700000000", "nonce", &body);
    let signature = key.sign(&message);
    let aead = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").expect("32 bytes");
    let sealed = aead.encrypt("uluk4a9R25RW", "transaction", &body);

    let rows = [
        (
            "RSA-2048 sign (ring, PKCS#1 v1.5 SHA-256)",
            rate(500, || {
                key.sign(&message);
            }),
        ),
        (
            "RSA-2048 verify (ring)",
            rate(5_000, || {
                public.verify(&message, &signature).expect("verifies");
            }),
        ),
        (
            "AES-256-GCM decrypt, 900 B resource",
            rate(50_000, || {
                aead.decrypt("uluk4a9R25RW", "transaction", &sealed)
                    .expect("decrypts");
            }),
        ),
    ];
    println!("| operation | per second, one core |");
    println!("|---|---:|");
    for (name, per_sec) in rows {
        println!("| {name} | {per_sec:.0} |");
    }
}
