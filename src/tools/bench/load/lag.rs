//! Projection lag: the time from the webhook's answer (the payment appended and
//! acknowledged) to the payment applied in Postgres. The bench installs, on its scratch
//! schema only, a trigger on `payments` that NOTIFYs the booked out_trade_no; Postgres
//! delivers a NOTIFY when its transaction commits, so the moment it arrives on the bench's
//! LISTEN connection is the projector's batch committed (plus loopback delivery). The
//! trigger's own cost lands in the projector's transaction: a few microseconds a row.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use super::drive::{Outcome, Sample};

/// Bookings seen on the LISTEN connection: out_trade_no → when its commit was heard.
pub struct Bookings {
    heard: Arc<Mutex<HashMap<String, Instant>>>,
    // Kept open: dropping it ends the LISTEN.
    _client: tokio_postgres::Client,
}

impl Bookings {
    /// Installs the trigger on `schema.payments` (the daemon migrated it) and listens.
    pub async fn start(database_url: &str, schema: &str) -> anyhow::Result<Self> {
        let channel = format!("{schema}_booked");
        let (client, mut connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .context("the LISTEN connection")?;
        let heard = Arc::new(Mutex::new(HashMap::new()));
        let sink = heard.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let mut heard = sink.lock().expect("never poisoned");
                    heard
                        .entry(n.payload().to_owned())
                        .or_insert_with(Instant::now);
                }
            }
        });
        client
            .batch_execute(&format!(
                "CREATE FUNCTION {schema}.bench_booked() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM pg_notify('{channel}', NEW.out_trade_no); RETURN NULL; END $$; \
                 CREATE TRIGGER bench_booked AFTER INSERT ON {schema}.payments \
                 FOR EACH ROW EXECUTE FUNCTION {schema}.bench_booked(); \
                 LISTEN {channel};"
            ))
            .await
            .context("installing the booking trigger")?;
        Ok(Self {
            heard,
            _client: client,
        })
    }

    /// When `out_trade_no`'s payment commit was heard.
    fn heard(&self, out_trade_no: &str) -> Option<Instant> {
        self.heard
            .lock()
            .expect("never poisoned")
            .get(out_trade_no)
            .copied()
    }

    /// How many of `orders` were booked.
    pub fn booked(&self, orders: &[String]) -> usize {
        let heard = self.heard.lock().expect("never poisoned");
        orders.iter().filter(|o| heard.contains_key(*o)).count()
    }

    /// Waits (up to `within`) until at least `n` of `orders` are booked; answers how many are.
    pub async fn wait_booked(&self, orders: &[String], n: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let booked = self.booked(orders);
            if booked >= n || Instant::now() > deadline {
                return booked;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The lag of every accepted notify in `samples` (of `orders`, by index) that was
    /// booked, in milliseconds (0 when the commit was heard before the answer arrived).
    pub fn lags(&self, orders: &[String], samples: &[Sample]) -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.outcome == Outcome::Accepted)
            .filter_map(|s| {
                let booked = self.heard(&orders[s.index])?;
                Some(booked.saturating_duration_since(s.answered).as_secs_f64() * 1000.0)
            })
            .collect()
    }
}
