//! `wxledger bench notifies`: a simple load through the real webhook. Starts the daemon
//! in-process on a scratch schema and stream (the machine's NATS and Postgres), places N
//! recharges, then posts N signed, encrypted `TRANSACTION.SUCCESS` notifies with C in
//! flight, and waits until the projector booked them all. Prints a table; removes the
//! scratch schema and stream afterwards. CLI glue, so errors are `anyhow`.

use std::{sync::Arc, time::Instant};

use anyhow::Context;
use futures::{stream, StreamExt};
use uuid::Uuid;

use crate::core::crypto::random_alphanumeric;
use crate::{
    core::events::{Event, OrderKind, OrderPlaced},
    daemon::startup::App,
    sim::devkeys,
    store::stream::{log::Draft, EventLog},
    wechat::pay::crypto::{response_message, ApiV3Key, SigningKey},
    Settings,
};

struct SignedNotify {
    headers: Vec<(&'static str, String)>,
    body: String,
}

/// Runs the load: `count` notifies, `concurrency` in flight.
pub async fn run(mut settings: Settings, count: usize, concurrency: usize) -> anyhow::Result<()> {
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    settings.nats.stream = format!("BENCH_{id}");
    settings.nats.subject_prefix = format!("bench_{id}");
    settings.database.schema = format!("bench_{id}");
    // The simulator's merchant (development mode), verified by its public key alone.
    settings.pay.platform_certificates = false;
    // One client address sends the whole load: the webhook's per-address limit, which
    // guards a public daemon, would measure itself.
    settings.limits.webhook_per_ip = crate::daemon::limits::Rate::UNLIMITED;
    settings.http.listen = ([127, 0, 0, 1], 0).into();
    settings.validate()?;
    let listener = tokio::net::TcpListener::bind(settings.http.listen).await?;
    let addr = listener.local_addr()?;
    let log = EventLog::connect(&settings.nats).await?;
    let db_settings = crate::settings::DatabaseSettings {
        url: settings.database.url.clone(),
        schema: settings.database.schema.clone(),
        sslmode: settings.database.sslmode,
        ssl_root_cert: settings.database.ssl_root_cert.clone(),
        ..Default::default()
    };
    let app = App::build_on(settings, crate::core::clock::system(), listener).await?;
    let stop = app.stop_token();
    let daemon = tokio::spawn(app.run_until_stopped());
    let result = load(&log, &db_settings, addr, count, concurrency).await;

    stop.cancel();
    let _ = daemon.await;
    let pool = crate::store::db::pool(&db_settings)?;
    if let Ok(client) = pool.get().await {
        let _ = client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                db_settings.schema
            ))
            .await;
    }
    let _ = log.delete_stream().await;
    result
}

async fn load(
    log: &EventLog,
    db_settings: &crate::settings::DatabaseSettings,
    addr: std::net::SocketAddr,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    eprintln!("placing {count} recharges ...");
    let orders: Vec<String> = (0..count)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let placed = stream::iter(orders.iter().map(|no| async move {
        let event = Event::OrderPlaced(OrderPlaced {
            out_trade_no: no.clone(),
            user_id: Uuid::new_v4(),
            openid: format!("o-bench-{no}"),
            kind: OrderKind::Recharge,
            amount: 100,
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
    placed.into_iter().collect::<Result<Vec<_>, _>>()?;

    eprintln!("signing and encrypting {count} notifies ...");
    let signer = SigningKey::from_pkcs8_pem(devkeys::PUBLIC_KEY_MODE_KEY_PEM)?;
    let aead = ApiV3Key::new(devkeys::APIV3_KEY).context("the dev APIv3 key is 32 bytes")?;
    let notifies: Vec<SignedNotify> = orders
        .iter()
        .enumerate()
        .map(|(i, no)| {
            let transaction = serde_json::json!({
                "appid": crate::settings::SIM_APPID, "mchid": devkeys::MCHID,
                "out_trade_no": no, "transaction_id": format!("42{i:026}"),
                "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
                "bank_type": "OTHERS", "success_time": "2026-11-21T10:00:00+08:00",
                "payer": {"openid": format!("o-bench-{no}")},
                "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
            });
            let nonce = random_alphanumeric(12);
            let ciphertext = aead.encrypt(&nonce, "transaction", transaction.to_string().as_bytes());
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
            let signature = signer.sign(&response_message(&timestamp, &header_nonce, body.as_bytes()));
            SignedNotify {
                headers: vec![
                    ("Wechatpay-Serial", devkeys::PUBLIC_KEY_ID.to_owned()),
                    ("Wechatpay-Signature", signature),
                    ("Wechatpay-Timestamp", timestamp),
                    ("Wechatpay-Nonce", header_nonce),
                    ("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048".to_owned()),
                    ("Content-Type", "application/json".to_owned()),
                ],
                body,
            }
        })
        .collect();

    eprintln!("posting {count} notifies, {concurrency} in flight ...");
    let http = Arc::new(reqwest::Client::new());
    let url = format!("http://{addr}/webhooks/wechatpay");
    let started = Instant::now();
    let statuses = stream::iter(notifies.into_iter().map(|n| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let mut req = http.post(&url);
            for (k, v) in &n.headers {
                req = req.header(*k, v);
            }
            req.body(n.body).send().await.map(|r| r.status().as_u16())
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    let post_secs = started.elapsed().as_secs_f64();
    let accepted = statuses.iter().filter(|s| matches!(s, Ok(204))).count();

    let pool = crate::store::db::pool(db_settings)?;
    let client = pool.get().await?;
    let booked = loop {
        let booked: i64 = client
            .query_one("SELECT count(*) FROM payments", &[])
            .await?
            .get(0);
        let booked = usize::try_from(booked).unwrap_or(0);
        if booked >= accepted || started.elapsed().as_secs() > 300 {
            break booked;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let book_secs = started.elapsed().as_secs_f64();
    let credited: i64 = client
        .query_one(
            "SELECT coalesce(sum(balance), 0)::int8 FROM balances WHERE account LIKE $1",
            &[&crate::core::fold::WALLET_LIKE],
        )
        .await?
        .get(0);

    println!("| figure | value |");
    println!("|---|---:|");
    println!("| notifies posted | {count} |");
    println!("| in flight | {concurrency} |");
    println!("| answered 204 (durable on the stream) | {accepted} |");
    println!("| posting time, s | {post_secs:.2} |");
    println!(
        "| notifies accepted per second | {:.0} |",
        accepted as f64 / post_secs
    );
    println!("| payments booked by the projector | {booked} |");
    println!("| time until all booked, s | {book_secs:.2} |");
    println!("| wallet credit booked, fen (100 each) | {credited} |");
    anyhow::ensure!(
        accepted == count && booked == count && credited == 100 * count as i64,
        "not every notify was accepted and booked exactly once"
    );
    Ok(())
}
