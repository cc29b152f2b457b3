//! `wxledger bench`: `crypto` measures how fast the crypto on the notify and payment paths runs on
//! this machine, printed as a table (one core, release build recommended); `faults` runs the
//! fault matrix on private servers; `load` measures the daemon as a user would, from
//! another process.

pub mod appends;
pub mod faults;
pub mod load;
pub mod notifies;
pub mod rebuild;
pub mod signed;

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

/// A signed notify-sized message: the key, the message and its signature.
fn signed_message() -> (SigningKey, Vec<u8>, String) {
    let key = SigningKey::from_pkcs8_pem(MERCHANT_KEY).expect("the bundled test key parses");
    let body = vec![b'x'; 900];
    let message = response_message("1700000000", "nonce", &body);
    let signature = key.sign(&message);
    (key, message, signature)
}

/// RSA-2048 SHA-256 verifications per second on one core (ring), over `iterations`.
pub fn rsa_verify_rate(iterations: u32) -> f64 {
    let (key, message, signature) = signed_message();
    let public = key.verifying_key();
    rate(iterations, || {
        public.verify(&message, &signature).expect("verifies");
    })
}

/// Prints operations per second for RSA-2048 sign and verify (ring) and AES-256-GCM
/// decryption of a notify-sized resource.
pub fn crypto() {
    let (key, message, _) = signed_message();
    let body = vec![b'x'; 900];
    let aead = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").expect("32 bytes");
    let sealed = aead.encrypt("uluk4a9R25RW", "transaction", &body);

    let rows = [
        (
            "RSA-2048 sign (ring, PKCS#1 v1.5 SHA-256)",
            rate(500, || {
                key.sign(&message);
            }),
        ),
        ("RSA-2048 verify (ring)", rsa_verify_rate(5_000)),
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
