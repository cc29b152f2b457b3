//! The load generator: notifies posted to the daemon's webhook from this process, either
//! in a closed loop (a fixed number in flight, each sent as the previous one is answered:
//! the most the daemon takes) or in an open loop (sent on a fixed schedule whatever the
//! answers, as WeChat does; each answer time counts from its scheduled send, so a daemon
//! that stalls is charged for every notify that waited, not only the one it held: no
//! coordinated omission).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::tools::bench::signed::SignedNotify;

/// How one notify ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 204: appended and acknowledged.
    Accepted,
    /// Another status.
    Refused(u16),
    /// No answer (connection error, or the client's timeout).
    Unanswered,
}

/// One notify: which, when it was (to be) sent, when it was answered and how.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Its index among the phase's notifies.
    pub index: usize,
    /// The send: the actual one in a closed loop, the scheduled one in an open loop.
    pub sent: Instant,
    /// The answer (or the failure).
    pub answered: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl Sample {
    /// Send to answer, in milliseconds.
    pub fn millis(&self) -> f64 {
        self.answered.duration_since(self.sent).as_secs_f64() * 1000.0
    }
}

/// The HTTP client of the load: keeps connections open (as WeChat's senders do) and gives
/// up on an answer after 10 s (WeChat waits 5 s).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .expect("a plain HTTP client builds")
}

/// How many client errors were printed (the first few, so a run with no answers says why).
static ERRORS_SHOWN: AtomicUsize = AtomicUsize::new(0);

async fn post(http: &reqwest::Client, url: &str, notify: &SignedNotify) -> Outcome {
    match notify.request(http, url).send().await {
        Ok(r) if r.status().as_u16() == 204 => Outcome::Accepted,
        Ok(r) => Outcome::Refused(r.status().as_u16()),
        Err(e) => {
            if ERRORS_SHOWN.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("[load] no answer: {e:?}");
            }
            Outcome::Unanswered
        }
    }
}

/// Posts every notify, `in_flight` at a time, each as soon as one is answered.
pub async fn closed_loop(
    http: &reqwest::Client,
    url: &str,
    notifies: Arc<Vec<SignedNotify>>,
    in_flight: usize,
) -> Vec<Sample> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..in_flight.max(1))
        .map(|_| {
            let (http, url, notifies, next) =
                (http.clone(), url.to_owned(), notifies.clone(), next.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(notify) = notifies.get(index) else {
                        return samples;
                    };
                    let sent = Instant::now();
                    let outcome = post(&http, &url, notify).await;
                    samples.push(Sample {
                        index,
                        sent,
                        answered: Instant::now(),
                        outcome,
                    });
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(notifies.len());
    for worker in workers {
        samples.extend(worker.await.expect("a worker never panics"));
    }
    samples
}

/// Posts notify `i` at `start + i / rate` whatever came back before; answers time from the
/// schedule.
pub async fn open_loop(
    http: &reqwest::Client,
    url: &str,
    notifies: Arc<Vec<SignedNotify>>,
    rate: f64,
) -> Vec<Sample> {
    let start = Instant::now() + Duration::from_millis(20);
    let mut sends = Vec::with_capacity(notifies.len());
    for index in 0..notifies.len() {
        let at = start + Duration::from_secs_f64(index as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let (http, url, notifies) = (http.clone(), url.to_owned(), notifies.clone());
        sends.push(tokio::spawn(async move {
            let outcome = post(&http, &url, &notifies[index]).await;
            Sample {
                index,
                sent: at,
                answered: Instant::now(),
                outcome,
            }
        }));
    }
    let mut samples = Vec::with_capacity(sends.len());
    for send in sends {
        samples.push(send.await.expect("a send never panics"));
    }
    samples
}
