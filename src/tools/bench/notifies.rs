//! `wxledger bench notifies`: a simple load through the real webhook. Starts the daemon
//! in-process on a scratch schema and stream (the machine's NATS and Postgres), places N
//! recharges, then posts N signed, encrypted `TRANSACTION.SUCCESS` notifies with C in
//! flight, and waits until the projector booked them all. Prints a table; removes the
//! scratch schema and stream afterwards. CLI glue, so errors are `anyhow`.

use std::{sync::Arc, time::Instant};

use futures::{stream, StreamExt};
use uuid::Uuid;

use super::signed::{self, Notifier};
use crate::{daemon::startup::App, store::stream::EventLog, Settings};

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
    signed::place_recharges(log, &orders).await?;

    eprintln!("signing and encrypting {count} notifies ...");
    let notifies = Notifier::new()?.sign_all(&orders, 0);

    eprintln!("posting {count} notifies, {concurrency} in flight ...");
    let http = Arc::new(reqwest::Client::new());
    let url = format!("http://{addr}/webhooks/wechatpay");
    let started = Instant::now();
    let statuses = stream::iter(notifies.into_iter().map(|n| {
        let http = http.clone();
        let url = url.clone();
        async move {
            n.request(&http, &url)
                .send()
                .await
                .map(|r| r.status().as_u16())
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
