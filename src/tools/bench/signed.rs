//! Notifies as WeChat Pay sends them, for the benches: recharge orders appended straight to
//! the scratch stream (so the daemon has an order to book each payment against), and
//! `TRANSACTION.SUCCESS` notifies for them, the resource encrypted under the development
//! APIv3 key and the body signed with the simulator's platform key (development keys of
//! `config/dev-keys/`), posted to `/webhooks/wechatpay`. CLI glue, so errors are `anyhow`.

use anyhow::Context;
use futures::{stream, StreamExt};
use uuid::Uuid;

use crate::{
    core::{
        crypto::random_alphanumeric,
        events::{Event, OrderKind, OrderPlaced},
    },
    sim::devkeys,
    store::stream::{log::Draft, EventLog},
    wechat::pay::crypto::{response_message, ApiV3Key, SigningKey},
};

/// Each bench order's amount, in fen.
pub const AMOUNT: i64 = 100;

/// One notify, signed and encrypted, ready to post.
pub struct SignedNotify {
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl SignedNotify {
    /// The POST of this notify to `url` (the daemon's `/webhooks/wechatpay`).
    pub fn request(&self, http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let mut req = http.post(url);
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        req.body(self.body.clone())
    }
}

/// `orders` (out_trade_nos) appended as recharges of [`AMOUNT`] fen, each of its own user,
/// 64 appends in flight; answers the last sequence.
pub async fn place_recharges(log: &EventLog, orders: &[String]) -> anyhow::Result<u64> {
    let placed = stream::iter(orders.iter().map(|no| async move {
        let event = Event::OrderPlaced(OrderPlaced {
            out_trade_no: no.clone(),
            user_id: Uuid::new_v4(),
            openid: openid(no),
            kind: OrderKind::Recharge,
            amount: AMOUNT,
            currency: "CNY".into(),
            description: "bench".into(),
            appid: crate::settings::SIM_APPID.into(),
            mchid: devkeys::MCHID.into(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        });
        log.append(Draft {
            event: &event,
            correlation_id: "bench",
            msg_id: &event.msg_id(None),
            occurred_at: chrono::Utc::now(),
        })
        .await
    }))
    .buffer_unordered(64)
    .collect::<Vec<_>>()
    .await;
    let mut last = 0;
    for appended in placed {
        last = last.max(appended?.seq);
    }
    Ok(last)
}

fn openid(out_trade_no: &str) -> String {
    format!("o-bench-{out_trade_no}")
}

/// Signs and encrypts notifies with the development keys.
pub struct Notifier {
    signer: SigningKey,
    aead: ApiV3Key,
}

impl Notifier {
    /// With the simulator's public-key-mode platform key and the development APIv3 key.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            signer: SigningKey::from_pkcs8_pem(devkeys::PUBLIC_KEY_MODE_KEY_PEM)?,
            aead: ApiV3Key::new(devkeys::APIV3_KEY).context("the dev APIv3 key is 32 bytes")?,
        })
    }

    /// The payment notify of the recharge `out_trade_no` ([`place_recharges`]) by WeChat
    /// transaction `transaction_id`.
    pub fn sign(&self, out_trade_no: &str, transaction_id: &str) -> SignedNotify {
        let transaction = serde_json::json!({
            "appid": crate::settings::SIM_APPID, "mchid": devkeys::MCHID,
            "out_trade_no": out_trade_no, "transaction_id": transaction_id,
            "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
            "bank_type": "OTHERS", "success_time": "2026-11-21T10:00:00+08:00",
            "payer": {"openid": openid(out_trade_no)},
            "amount": {"total": AMOUNT, "payer_total": AMOUNT, "currency": "CNY", "payer_currency": "CNY"},
        });
        let nonce = random_alphanumeric(12);
        let ciphertext =
            self.aead
                .encrypt(&nonce, "transaction", transaction.to_string().as_bytes());
        let body = serde_json::json!({
            "id": Uuid::new_v4(), "create_time": "2026-11-21T10:00:00+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": ciphertext, "associated_data": "transaction", "nonce": nonce},
        })
        .to_string();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let header_nonce = random_alphanumeric(32);
        let signature = self.signer.sign(&response_message(
            &timestamp,
            &header_nonce,
            body.as_bytes(),
        ));
        SignedNotify {
            headers: vec![
                ("Wechatpay-Serial", devkeys::PUBLIC_KEY_ID.to_owned()),
                ("Wechatpay-Signature", signature),
                ("Wechatpay-Timestamp", timestamp),
                ("Wechatpay-Nonce", header_nonce),
                (
                    "Wechatpay-Signature-Type",
                    "WECHATPAY2-SHA256-RSA2048".to_owned(),
                ),
                ("Content-Type", "application/json".to_owned()),
            ],
            body,
        }
    }

    /// The notifies of `orders`, the i-th paid by transaction `42` + `first_transaction + i`
    /// (26 digits), signed on every core (RSA signing is the slow part).
    pub fn sign_all(&self, orders: &[String], first_transaction: usize) -> Vec<SignedNotify> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = orders.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let parts: Vec<_> = orders
                .chunks(chunk)
                .enumerate()
                .map(|(c, part)| {
                    scope.spawn(move || {
                        part.iter()
                            .enumerate()
                            .map(|(i, no)| {
                                let n = first_transaction + c * chunk + i;
                                self.sign(no, &format!("42{n:026}"))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("signing never panics"))
                .collect()
        })
    }
}
