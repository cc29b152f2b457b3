//! Prometheus metrics: a handful of counter and histogram families with labels,
//! rendered in the text exposition format at `GET /metrics`.
//!
//! Hand-written rather than a crate: wxledger has five families, and forty lines of
//! locking a map are easier to audit than a registry with derive macros.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex},
};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
    help: BTreeMap<&'static str, &'static str>,
    gauges: BTreeMap<&'static str, f64>,
}

/// The registry; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Families>>);

impl Metrics {
    fn families(&self) -> std::sync::MutexGuard<'_, Families> {
        self.0
            .lock()
            .expect("the metrics lock is never poisoned: no panics while held")
    }

    /// Adds one to counter `name` with `labels`.
    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) {
        let mut f = self.families();
        f.help.insert(name, help);
        *f.counters
            .entry(name)
            .or_default()
            .entry(owned(labels))
            .or_default() += 1;
    }

    /// Records one observation (seconds) in histogram `name`.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        seconds: f64,
    ) {
        let mut f = self.families();
        f.help.insert(name, help);
        let h = f
            .histograms
            .entry(name)
            .or_default()
            .entry(owned(labels))
            .or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Sets a plain value (not rendered by itself: `/metrics` derives gauges from it).
    pub fn set(&self, name: &'static str, value: f64) {
        self.families().gauges.insert(name, value);
    }

    /// A value stored with [`Metrics::set`].
    pub fn get(&self, name: &str) -> Option<f64> {
        self.families().gauges.get(name).copied()
    }

    /// The current value of a counter (tests and the load command read it).
    pub fn counter(&self, name: &str, labels: &[(&'static str, &str)]) -> u64 {
        self.families()
            .counters
            .get(name)
            .and_then(|series| series.get(&owned(labels)))
            .copied()
            .unwrap_or(0)
    }

    /// The text exposition of every family, followed by `gauges` (name, help, value).
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let f = self.families();
        let mut out = String::new();
        for (name, series) in &f.counters {
            let _ = writeln!(out, "# HELP {name} {}", f.help[name]);
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, value) in series {
                let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
            }
        }
        for (name, series) in &f.histograms {
            let _ = writeln!(out, "# HELP {name} {}", f.help[name]);
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, h) in series {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        render_labels(labels, Some(&le)),
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels, None), h.sum);
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    render_labels(labels, None),
                    h.count
                );
            }
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges_in_text_format() {
        let m = Metrics::default();
        m.inc("x_total", "Things.", &[("kind", "a\"b")]);
        m.inc("x_total", "Things.", &[("kind", "a\"b")]);
        m.observe("lat_seconds", "Latency.", &[("route", "/r")], 0.003);
        let text = m.render(&[("lag", "Lag.", 2.0)]);
        assert!(
            text.contains("# TYPE x_total counter\nx_total{kind=\"a\\\"b\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{route=\"/r\",le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{route=\"/r\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_count{route=\"/r\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE lag gauge\nlag 2\n"), "{text}");
        assert_eq!(m.counter("x_total", &[("kind", "a\"b")]), 2);
    }
}
