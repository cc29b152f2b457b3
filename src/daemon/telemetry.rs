//! Tracing set-up: human-readable or JSON lines on stderr, filtered by `RUST_LOG`; and the
//! level policy for what the daemon answers. ERROR is for what needs a person (a 500, a
//! bug); an expected refusal or unavailability (a 503 while NATS or Postgres is away, a
//! read not applied yet) is a WARN, at most one line per kind and second, carrying how
//! many it stands for (`warn_expected!`).

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use tower_http::classify::ServerErrorsFailureClass;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber; `json` selects JSON lines. Safe to call twice.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn,tokio_postgres=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Lets through at most one line per kind and `every`, counting the ones held back.
pub struct Throttle {
    every: Duration,
    kinds: Mutex<HashMap<&'static str, Window>>,
}

/// One kind's last line and what was held back since.
struct Window {
    written: Instant,
    held_back: u64,
}

impl Throttle {
    /// A throttle letting one line per kind through every `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            kinds: Mutex::default(),
        }
    }

    /// Whether a line of `kind` may be written at `now`: `Some(n)` with the `n` lines held
    /// back since the last one written (which the line should say), or `None` when this
    /// one is held back and counted.
    pub fn admit(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        match kinds.get_mut(kind) {
            Some(window) if now.saturating_duration_since(window.written) < self.every => {
                window.held_back += 1;
                None
            }
            Some(window) => {
                let held_back = std::mem::take(&mut window.held_back);
                window.written = now;
                Some(held_back)
            }
            None => {
                kinds.insert(
                    kind,
                    Window {
                        written: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// The process's throttle of expected conditions: one line per kind and second.
static EXPECTED: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(Duration::from_secs(1)));

/// [`Throttle::admit`] on the process's throttle of expected conditions, now.
pub fn admit_expected(kind: &'static str) -> Option<u64> {
    EXPECTED.admit(kind, Instant::now())
}

/// Logs an expected refusal or unavailability at WARN, at most once per `kind` and
/// second, with `kind` and `suppressed` (the lines held back since the last one) besides
/// the fields given: `warn_expected!("postgres", error = %e, "postgres unavailable")`.
macro_rules! warn_expected {
    ($kind:expr, $($rest:tt)+) => {
        if let Some(suppressed) = $crate::daemon::telemetry::admit_expected($kind) {
            ::tracing::warn!(kind = $kind, suppressed, $($rest)+);
        }
    };
}
pub(crate) use warn_expected;

/// The HTTP trace layer's failure hook: a 500 (or a failed response) is an ERROR; any
/// other 5xx (503 while a dependency is away, 504 past a deadline) is expected: a WARN, one
/// line per status and second on the process's throttle, like `warn_expected!`.
pub fn on_server_error(class: ServerErrorsFailureClass, latency: Duration, _: &tracing::Span) {
    server_error(&EXPECTED, class, latency, Instant::now());
}

fn server_error(
    throttle: &Throttle,
    class: ServerErrorsFailureClass,
    latency: Duration,
    now: Instant,
) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    let status = match class {
        ServerErrorsFailureClass::StatusCode(status) => status,
        ServerErrorsFailureClass::Error(error) => {
            tracing::error!(%error, latency_ms, "response failed");
            return;
        }
    };
    let kind = match status {
        StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(status = status.as_u16(), latency_ms, "response failed");
            return;
        }
        StatusCode::BAD_GATEWAY => "http_502",
        StatusCode::SERVICE_UNAVAILABLE => "http_503",
        StatusCode::GATEWAY_TIMEOUT => "http_504",
        _ => "http_5xx",
    };
    if let Some(suppressed) = throttle.admit(kind, now) {
        tracing::warn!(
            kind,
            suppressed,
            status = status.as_u16(),
            latency_ms,
            "answered unavailable"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_and_interval_carrying_what_was_held_back() {
        let throttle = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(throttle.admit("a", at(0)), Some(0), "the first is written");
        assert_eq!(throttle.admit("a", at(10)), None);
        assert_eq!(throttle.admit("a", at(999)), None);
        assert_eq!(throttle.admit("b", at(500)), Some(0), "kinds are apart");
        assert_eq!(
            throttle.admit("a", at(1000)),
            Some(2),
            "a second later: written, with the two held back"
        );
        assert_eq!(throttle.admit("a", at(1500)), None);
        assert_eq!(throttle.admit("b", at(1500)), Some(0));
        assert_eq!(throttle.admit("a", at(5000)), Some(1));
        assert_eq!(
            throttle.admit("a", at(6000)),
            Some(0),
            "the count starts over"
        );
    }

    /// The lines `work` logs, as the fmt subscriber writes them (level first).
    fn logged(work: impl FnOnce()) -> Vec<String> {
        let buffer = std::sync::Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let subscriber = fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, work);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| l.trim().to_owned()).collect()
    }

    struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_500_is_an_error_and_503s_are_one_warning_a_second_with_a_count() {
        use ServerErrorsFailureClass::StatusCode as Status;
        let throttle = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let ms = Duration::from_millis(3);
        let lines = logged(|| {
            server_error(&throttle, Status(StatusCode::INTERNAL_SERVER_ERROR), ms, t0);
            for _ in 0..3 {
                server_error(&throttle, Status(StatusCode::SERVICE_UNAVAILABLE), ms, t0);
            }
            server_error(&throttle, Status(StatusCode::GATEWAY_TIMEOUT), ms, t0);
            let later = t0 + Duration::from_secs(1);
            server_error(
                &throttle,
                Status(StatusCode::SERVICE_UNAVAILABLE),
                ms,
                later,
            );
        });
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("ERROR") && lines[0].contains("status=500"));
        assert!(lines[1].starts_with("WARN") && lines[1].contains("status=503"));
        assert!(lines[1].contains("suppressed=0"), "{}", lines[1]);
        assert!(lines[2].starts_with("WARN") && lines[2].contains("status=504"));
        assert!(lines[3].starts_with("WARN") && lines[3].contains("suppressed=2"));
    }
}
