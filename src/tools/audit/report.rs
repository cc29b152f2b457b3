//! The audit's report: what was compared and checked, the money of each day, and every
//! breach with the event sequences that cause it; for humans or as one JSON document.

use std::{collections::BTreeMap, time::Duration};

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{json, Value};

use super::{diff::TableDiff, scan::Signatures, Breach, Rebuild};
use crate::{store::replay::AsOf, tools::finance::yuan::format_fen};

/// The money of one day (China Standard Time), in fen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DayTotals {
    /// Orders paid through WeChat (credited to sales).
    pub paid: i64,
    /// Refunds paid out: through WeChat, or back to a wallet.
    pub refunded: i64,
    /// Recharges credited to wallets.
    pub recharged: i64,
    /// Orders paid from wallets.
    pub wallet_spend: i64,
    /// Money received that went to suspense.
    pub suspense: i64,
}

impl std::ops::AddAssign for DayTotals {
    fn add_assign(&mut self, o: Self) {
        self.paid += o.paid;
        self.refunded += o.refunded;
        self.recharged += o.recharged;
        self.wallet_spend += o.wallet_spend;
        self.suspense += o.suspense;
    }
}

/// A finished audit: what was compared and checked, and every breach.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    /// The live schema.
    pub schema: String,
    /// The stream.
    pub stream: String,
    /// The live projection's checkpoint: the live tables as of this event.
    pub checkpoint: u64,
    /// The stream's last event when the audit began.
    pub head: u64,
    /// The point audited as of (the checkpoint, or an earlier `--as-of`).
    pub point: u64,
    /// The `--as-of` asked for.
    pub as_of: Option<AsOf>,
    /// The rebuild.
    pub rebuild: Rebuild,
    /// How each table compared.
    pub tables: Vec<TableDiff>,
    /// The evidence checked (`--verify-signatures`).
    pub signatures: Option<Signatures>,
    /// The money of each day, from the live postings (or the rebuild's, as of a point
    /// before the checkpoint).
    pub days: BTreeMap<NaiveDate, DayTotals>,
    /// Everything wrong, oldest event first.
    pub breaches: Vec<Breach>,
    /// How long the audit took.
    pub elapsed: Duration,
}

impl AuditReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.breaches.is_empty()
    }

    /// 0 when clean, 1 on any breach.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.is_clean())
    }

    /// The audit is as of an earlier point than the live checkpoint.
    pub fn is_partial(&self) -> bool {
        self.point < self.checkpoint
    }

    /// The sum of every day.
    pub fn totals(&self) -> DayTotals {
        let mut total = DayTotals::default();
        self.days.values().for_each(|d| total += *d);
        total
    }

    /// Breaches per kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for b in &self.breaches {
            *counts.entry(b.kind.as_str()).or_default() += 1;
        }
        counts
    }

    fn as_of_text(&self) -> Option<String> {
        self.as_of.map(|a| match a {
            AsOf::Seq(seq) => seq.to_string(),
            AsOf::Time(t) => t.to_rfc3339(),
        })
    }

    /// The report for a human.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "audit of schema {} (stream {}): live tables as of event {} (stream at {})\n",
            self.schema, self.stream, self.checkpoint, self.head
        );
        if let Some(asked) = self.as_of_text() {
            let beyond = matches!(self.as_of, Some(AsOf::Seq(s)) if s > self.checkpoint);
            out.push_str(&format!(
                "as of {asked}: event {}{}\n",
                self.point,
                if beyond {
                    " (the live tables go no further)"
                } else {
                    ""
                }
            ));
        }
        if self.is_partial() {
            let tables: Vec<&str> = super::diff::append_only_tables().collect();
            out.push_str(&format!(
                "  the live tables are at event {}: only the append-only tables ({}) are compared, up to event {}; \
                 orders, refunds, balances and users have changed since; the invariants are checked on the live tables and on the rebuild\n",
                self.checkpoint,
                tables.join(", "),
                self.point
            ));
        }
        let r = &self.rebuild;
        out.push_str(&format!(
            "rebuilt {} events into schema {} in {:.2} s ({:.0} events/s); {}\n\n",
            r.events,
            r.schema,
            r.elapsed.as_secs_f64(),
            r.events as f64 / r.elapsed.as_secs_f64().max(1e-9),
            if r.kept { "kept" } else { "dropped" }
        ));
        out.push_str("  table                  live  rebuilt  differing\n");
        for t in &self.tables {
            out.push_str(&format!(
                "  {:<21} {:>5}  {:>7}  {:>9}\n",
                t.table, t.live_rows, t.rebuilt_rows, t.differing
            ));
        }
        out.push_str(&match self.signatures {
            Some(s) => format!(
                "\nsignatures: {} events with evidence verified again, {} failed\n",
                s.checked, s.failed
            ),
            None => "\nsignatures: not verified (--verify-signatures)\n".to_owned(),
        });
        out.push_str("\nmoney by day (China Standard Time), yuan:\n");
        out.push_str(&format!(
            "  {:<10} {:>14} {:>14} {:>14} {:>14} {:>14}\n",
            "day", "paid", "refunded", "recharged", "wallet spend", "suspense"
        ));
        let row = |label: &str, d: &DayTotals| {
            format!(
                "  {:<10} {:>14} {:>14} {:>14} {:>14} {:>14}\n",
                label,
                format_fen(d.paid),
                format_fen(d.refunded),
                format_fen(d.recharged),
                format_fen(d.wallet_spend),
                format_fen(d.suspense)
            )
        };
        for (day, d) in &self.days {
            out.push_str(&row(&day.to_string(), d));
        }
        out.push_str(&row("total", &self.totals()));
        if !self.breaches.is_empty() {
            out.push_str("\nbreaches:\n");
            for b in &self.breaches {
                let seqs: Vec<String> = b.seqs.iter().map(i64::to_string).collect();
                out.push_str(&format!(
                    "  {:<20} {:<8} event {:<10} {}\n      {}\n",
                    b.kind.as_str(),
                    format!("{:?}", b.found).to_lowercase(),
                    if seqs.is_empty() {
                        "-".to_owned()
                    } else {
                        seqs.join(",")
                    },
                    b.key,
                    b.message
                ));
            }
        }
        let unlisted: u64 = self
            .tables
            .iter()
            .map(|t| t.differing.saturating_sub(super::diff::LISTED))
            .sum();
        if unlisted > 0 {
            out.push_str(&format!(
                "  ... and {unlisted} differing rows more, not listed\n"
            ));
        }
        out.push_str(&if self.breaches.is_empty() {
            format!("\nresult: clean ({:.2} s)\n", self.elapsed.as_secs_f64())
        } else {
            let counts: Vec<String> = self
                .counts()
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!(
                "\nresult: {} breaches ({}) ({:.2} s)\n",
                self.breaches.len(),
                counts.join(", "),
                self.elapsed.as_secs_f64()
            )
        });
        out
    }

    /// The report as one JSON document: `{schema, stream, checkpoint, head, point, as_of,
    /// partial, rebuild, tables, signatures, days, totals, counts, breaches, ok}`; amounts
    /// in fen.
    pub fn to_json(&self) -> Value {
        let tables: Vec<Value> = self
            .tables
            .iter()
            .map(|t| {
                json!({"table": t.table, "live_rows": t.live_rows,
                       "rebuilt_rows": t.rebuilt_rows, "differing": t.differing})
            })
            .collect();
        let days: Vec<Value> = self
            .days
            .iter()
            .map(|(day, d)| {
                let mut v = serde_json::to_value(d).expect("plain numbers");
                v["day"] = json!(day.to_string());
                v
            })
            .collect();
        json!({
            "schema": self.schema,
            "stream": self.stream,
            "checkpoint": self.checkpoint,
            "head": self.head,
            "point": self.point,
            "as_of": self.as_of_text(),
            "partial": self.is_partial(),
            "rebuild": {
                "schema": self.rebuild.schema,
                "kept": self.rebuild.kept,
                "events": self.rebuild.events,
                "seconds": self.rebuild.elapsed.as_secs_f64(),
            },
            "tables": tables,
            "signatures": self.signatures.map(|s| json!({"checked": s.checked, "failed": s.failed})),
            "days": days,
            "totals": self.totals(),
            "counts": self.counts(),
            "breaches": self.breaches,
            "seconds": self.elapsed.as_secs_f64(),
            "ok": self.is_clean(),
        })
    }
}
