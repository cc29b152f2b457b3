//! `wxledger bench rebuild --events N`: how fast the full rebuild folds a long history,
//! beside the raw rates it is made of, all measured in one run on this machine's NATS and
//! Postgres:
//!
//! 1. the raw JetStream ordered read of the whole stream (no decoding);
//! 2. a raw binary COPY of as many `ledger_entries` rows as the rebuild writes;
//! 3. the full rebuild (`wxledger replay`'s default sink): read, decode, fold, COPY;
//! 4. optionally (`--batches`), the live projector's batch code over the same stream.
//!
//! The history is synthetic but shaped like production: users who log in, recharge their
//! wallet, pay orders by WeChat (notifies with evidence of real size) and from the
//! wallet, refunds, and orders that expire. It goes to a scratch stream and schemas,
//! removed afterwards. CLI glue, so errors are `anyhow`.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use uuid::Uuid;

use crate::core::crypto::random_alphanumeric;
use crate::{
    core::{
        events::{
            BalancePayRequested, CloseReason, Envelope, Event, Evidence, OrderClosed, OrderKind,
            OrderPlaced, Payer, PaymentNotified, PrepayIssued, Refund, RefundAccepted,
            RefundAmount, RefundEvidence, RefundNotified, RefundRequested, Transaction,
            TransactionAmount, UserLoggedIn, UserRegistered,
        },
        fold::{wallet_account, EntryKind, GroupId, LedgerEntry, CLEARING},
    },
    settings::DatabaseSettings,
    store::{
        db::{self, copy::copy_in},
        replay::{replay_with, AsOf, Progress, Sink},
        stream::EventLog,
    },
    Settings,
};

const APPID: &str = "wx0000000000000001";
const MCHID: &str = "1900000001";

/// The options of one run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Events in the history.
    pub events: u64,
    /// Also replay with the live projector's batches.
    pub batches: bool,
}

/// One row of the printed table.
pub(super) struct Measured {
    pub(super) path: &'static str,
    pub(super) count: u64,
    pub(super) unit: &'static str,
    pub(super) elapsed: Duration,
    pub(super) bytes: Option<u64>,
}

impl Measured {
    pub(super) fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Generates the history, measures, prints the table, cleans up.
pub async fn run(mut settings: Settings, options: Options) -> anyhow::Result<()> {
    let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    settings.nats.stream = format!("BENCH_REBUILD_{id}");
    settings.nats.subject_prefix = format!("bench_rebuild_{id}");
    settings.database.schema = format!("bench_live_{id}");
    settings.validate()?;
    let log = EventLog::connect(&settings.nats).await?;
    let result = measure(&settings, &log, &id, options).await;
    let _ = log.delete_stream().await;
    let pg = db::pg_config(&settings.database)?;
    if let Ok(client) = db::connect_dedicated(&pg).await {
        for schema in [format!("bench_rebuild_{id}"), format!("bench_copy_{id}")] {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        }
    }
    result
}

async fn measure(
    settings: &Settings,
    log: &EventLog,
    id: &str,
    options: Options,
) -> anyhow::Result<()> {
    eprintln!("bench: appending {} events ...", options.events);
    let started = Instant::now();
    let last = log
        .append_pipelined(History::new().take(options.events as usize), 512)
        .await
        .context("appending the history")?;
    eprintln!(
        "bench: appended up to sequence {last} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();

    // 1. The raw read.
    let (read, bytes) = raw_read(log, last).await?;
    let count = read.count;
    rows.push(read);

    // 3 before 2: the rebuild says how many postings a raw COPY should match.
    let into = format!("bench_rebuild_{id}");
    let (done, loaded) = replay_with(
        settings,
        AsOf::Seq(last),
        &into,
        true,
        Sink::Copy,
        every_5s("rebuild"),
    )
    .await?;
    let loaded = loaded.expect("the COPY sink reports its rows");
    let entries = loaded
        .tables
        .iter()
        .find(|(t, _)| *t == "ledger_entries")
        .map_or(0, |(_, n)| *n);
    let rebuild = Measured {
        path: "full rebuild: read + decode + fold + COPY, committed",
        count: done.read,
        unit: "events",
        elapsed: done.elapsed,
        bytes: None,
    };

    // 2. The raw COPY, into an empty schema of its own.
    rows.push(
        raw_copy(
            &settings.database,
            &format!("bench_copy_{id}"),
            entries.max(1),
        )
        .await?,
    );
    rows.push(rebuild);

    if options.batches {
        let (done, _) = replay_with(
            settings,
            AsOf::Seq(last),
            &into,
            true,
            Sink::Batches,
            every_5s("batched replay"),
        )
        .await?;
        rows.push(Measured {
            path: "batched replay (the live projector's code, 2,000 per transaction)",
            count: done.read,
            unit: "events",
            elapsed: done.elapsed,
            bytes: None,
        });
    }

    println!(
        "history: {} events, {:.0} MB on the stream; the rebuild wrote {} rows ({})",
        count,
        bytes as f64 / 1e6,
        loaded.rows(),
        loaded
            .tables
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "the rebuild had folded every event after {:.2} s (postings written meanwhile); \
         the other tables, the indexes and the commit took the remaining {:.2} s",
        loaded.folded_after.as_secs_f64(),
        (done.elapsed.saturating_sub(loaded.folded_after)).as_secs_f64()
    );
    println!();
    println!("| path | count | seconds | per second | MB/s |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} {} | {:.2} | {:.0} | {} |",
            row.path,
            row.count,
            row.unit,
            row.elapsed.as_secs_f64(),
            row.per_sec(),
            row.bytes.map_or("".into(), |b| format!(
                "{:.0}",
                b as f64 / 1e6 / row.elapsed.as_secs_f64().max(1e-9)
            )),
        );
    }
    Ok(())
}

/// The raw JetStream ordered read of sequences `1..=last` (no decoding); answers the row
/// and the bytes read.
pub(super) async fn raw_read(log: &EventLog, last: u64) -> anyhow::Result<(Measured, u64)> {
    let started = Instant::now();
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut messages = log.read_range(1..=last).await?;
    while let Some(message) = messages.next().await {
        let (_, payload) = message?;
        count += 1;
        bytes += payload.len() as u64;
    }
    drop(messages);
    let row = Measured {
        path: "JetStream ordered read, raw (no decoding)",
        count,
        unit: "messages",
        elapsed: started.elapsed(),
        bytes: Some(bytes),
    };
    Ok((row, bytes))
}

/// A raw binary COPY of `rows` postings shaped like the rebuild's into `ledger_entries` of
/// `schema` (migrated here, empty; the caller drops it), committed.
pub(super) async fn raw_copy(
    database: &DatabaseSettings,
    schema: &str,
    rows: u64,
) -> anyhow::Result<Measured> {
    let copy_settings = DatabaseSettings {
        url: database.url.clone(),
        schema: schema.to_owned(),
        pool_size: 1,
        connect_timeout: database.connect_timeout,
        sslmode: database.sslmode,
        ssl_root_cert: database.ssl_root_cert.clone(),
    };
    let pool = db::pool(&copy_settings)?;
    db::migrate(&pool, schema).await?;
    drop(pool);
    let postings = postings(rows);
    let client = db::connect_dedicated(&db::pg_config(&copy_settings)?).await?;
    let started = Instant::now();
    // One statement, committed on its own (as the rebuild's loads are).
    let copied = copy_in(&client, &postings).await?;
    Ok(Measured {
        path: "Postgres binary COPY, ledger_entries rows, committed",
        count: copied,
        unit: "rows",
        elapsed: started.elapsed(),
        bytes: None,
    })
}

/// A progress line on stderr every 5 seconds.
fn every_5s(what: &'static str) -> impl FnMut(&Progress) {
    let mut last_line = Instant::now();
    move |p| {
        if last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "bench: {what} at {}/{} ({:.0} events/s, ETA {:.0} s)",
                p.seq,
                p.end,
                p.rate(),
                p.eta().as_secs_f64()
            );
            last_line = Instant::now();
        }
    }
}

/// `n` postings shaped like the rebuild's (two-line groups).
fn postings(n: u64) -> Vec<LedgerEntry> {
    let at = start();
    (0..n)
        .map(|i| {
            let group = i / 2;
            LedgerEntry {
                seq: i64::try_from(group + 1).expect("small"),
                group_id: GroupId::Payment(format!("42000000002026110{group:013}")).to_string(),
                line: i32::from(i % 2 == 1),
                account: if i % 2 == 0 {
                    CLEARING.into()
                } else {
                    wallet_account(Uuid::from_u128(u128::from(group)))
                },
                amount: if i % 2 == 0 { -2500 } else { 2500 },
                kind: EntryKind::Recharge,
                out_trade_no: format!("R{group:020}"),
                transaction_id: Some(format!("42000000002026110{group:013}")),
                occurred_at: at,
            }
        })
        .collect()
}

fn start() -> DateTime<Utc> {
    // 2026-11-01 00:00 China time.
    Utc.with_ymd_and_hms(2026, 10, 31, 16, 0, 0)
        .single()
        .expect("a valid time")
}

/// An endless, production-shaped history: each user registers, logs in, recharges
/// 100.00, pays an order by WeChat and one from the wallet; every fourth user gets a
/// partial refund and every third lets an order expire. One event a second from
/// 2026-11-01 00:00 China time, so it spans days.
pub(super) struct History {
    user: u64,
    seq: u64,
    queue: VecDeque<Event>,
}

impl History {
    pub(super) fn new() -> Self {
        Self {
            user: 0,
            seq: 0,
            queue: VecDeque::new(),
        }
    }

    fn cycle(&mut self) {
        let n = self.user;
        self.user += 1;
        let user_id = Uuid::from_u128(u128::from(n) + 1);
        let openid = format!("o{}", &random_alphanumeric(27));
        let q = &mut self.queue;
        q.push_back(Event::UserRegistered(UserRegistered {
            user_id,
            openid: openid.clone(),
            unionid: None,
        }));
        q.push_back(Event::UserLoggedIn(UserLoggedIn {
            user_id,
            unionid: None,
        }));
        let order = |kind: &str, i: u32| format!("{kind}{n:012}{i:02}");
        let place = |no: &str, kind: OrderKind, amount: i64| {
            Event::OrderPlaced(OrderPlaced {
                out_trade_no: no.into(),
                user_id,
                openid: openid.clone(),
                kind,
                amount,
                currency: "CNY".into(),
                description: "拿铁 大杯 ×1".into(),
                appid: APPID.into(),
                mchid: MCHID.into(),
                expires_at: start() + chrono::Duration::days(365),
            })
        };
        let paid = |no: &str, amount: i64, openid: &str| {
            let transaction_id = format!("42000000002026{}", &no[1..]);
            Event::PaymentNotified(PaymentNotified {
                notify_id: Uuid::new_v4().to_string(),
                event_type: "TRANSACTION.SUCCESS".into(),
                transaction: Transaction {
                    appid: APPID.into(),
                    mchid: MCHID.into(),
                    out_trade_no: no.into(),
                    transaction_id: Some(transaction_id),
                    trade_type: Some("JSAPI".into()),
                    trade_state: "SUCCESS".into(),
                    trade_state_desc: Some("支付成功".into()),
                    bank_type: Some("CMC".into()),
                    attach: None,
                    success_time: Some("2026-11-01T10:00:00+08:00".into()),
                    payer: Some(Payer {
                        openid: Some(openid.into()),
                    }),
                    amount: Some(TransactionAmount {
                        total: Some(amount),
                        payer_total: Some(amount),
                        currency: Some("CNY".into()),
                        payer_currency: Some("CNY".into()),
                    }),
                },
                evidence: evidence("TRANSACTION.SUCCESS"),
            })
        };
        let recharge = order("R", 0);
        q.push_back(place(&recharge, OrderKind::Recharge, 10_000));
        q.push_back(Event::PrepayIssued(PrepayIssued {
            out_trade_no: recharge.clone(),
            prepay_id: format!("wx{}", random_alphanumeric(30)),
        }));
        q.push_back(paid(&recharge, 10_000, &openid));
        let latte = order("O", 1);
        q.push_back(place(&latte, OrderKind::Order, 2_500));
        q.push_back(Event::PrepayIssued(PrepayIssued {
            out_trade_no: latte.clone(),
            prepay_id: format!("wx{}", random_alphanumeric(30)),
        }));
        q.push_back(paid(&latte, 2_500, &openid));
        let cake = order("O", 2);
        q.push_back(place(&cake, OrderKind::Order, 1_200));
        q.push_back(Event::BalancePayRequested(BalancePayRequested {
            out_trade_no: cake,
            user_id,
            amount: 1_200,
        }));
        if n % 4 == 0 {
            let out_refund_no = format!("RF{n:012}");
            q.push_back(Event::RefundRequested(RefundRequested {
                out_refund_no: out_refund_no.clone(),
                out_trade_no: latte.clone(),
                amount: 500,
                reason: "少糖".into(),
            }));
            let refund = |status: &str| Refund {
                mchid: Some(MCHID.into()),
                out_trade_no: latte.clone(),
                transaction_id: None,
                out_refund_no: out_refund_no.clone(),
                refund_id: Some(format!("50300{n:020}")),
                status: status.into(),
                success_time: None,
                user_received_account: Some("支付用户零钱".into()),
                amount: Some(RefundAmount {
                    total: Some(2_500),
                    refund: Some(500),
                    payer_total: Some(2_500),
                    payer_refund: Some(500),
                    currency: Some("CNY".into()),
                }),
            };
            q.push_back(Event::RefundAccepted(RefundAccepted {
                refund: refund("PROCESSING"),
                evidence: RefundEvidence::V3(evidence("")),
            }));
            q.push_back(Event::RefundNotified(RefundNotified {
                notify_id: Some(Uuid::new_v4().to_string()),
                event_type: "REFUND.SUCCESS".into(),
                refund: refund("SUCCESS"),
                evidence: RefundEvidence::V3(evidence("REFUND.SUCCESS")),
            }));
        }
        if n % 3 == 0 {
            let late = order("O", 3);
            q.push_back(place(&late, OrderKind::Order, 990));
            q.push_back(Event::OrderClosed(OrderClosed {
                out_trade_no: late,
                reason: CloseReason::Expired,
            }));
        }
        q.push_back(Event::UserLoggedIn(UserLoggedIn {
            user_id,
            unionid: None,
        }));
    }
}

impl Iterator for History {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        if self.queue.is_empty() {
            self.cycle();
        }
        let event = self.queue.pop_front()?;
        self.seq += 1;
        let seconds = i64::try_from(self.seq).expect("small");
        Some(Envelope {
            id: Uuid::new_v4(),
            kind: event.kind().to_owned(),
            version: event.version(),
            occurred_at: start() + chrono::Duration::seconds(seconds),
            correlation_id: format!("req-{}", random_alphanumeric(16)),
            data: event.to_data(),
        })
    }
}

/// Evidence the size of a real notify's (the body is an encrypted resource).
fn evidence(event_type: &str) -> Evidence {
    Evidence {
        serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
        signature: random_alphanumeric(344),
        timestamp: "1793498400".into(),
        nonce: random_alphanumeric(32),
        signature_type: Some("WECHATPAY2-SHA256-RSA2048".into()),
        body: format!(
            r#"{{"id":"{}","create_time":"2026-11-01T10:00:00+08:00","resource_type":"encrypt-resource","event_type":"{event_type}","summary":"支付成功","resource":{{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"{}","associated_data":"transaction","nonce":"{}"}}}}"#,
            Uuid::new_v4(),
            random_alphanumeric(600),
            random_alphanumeric(12)
        ),
    }
}
