//! The live tables against the rebuild, row by row, both ways. Each side is read in key
//! order (bytewise, `COLLATE "C"`, the order Rust compares strings in) and merged, so no
//! table is held in memory. The live rows come from the audit's snapshot and the rebuilt
//! ones from the scratch schema, on two connections: the rebuild was committed after the
//! snapshot began, so one snapshot could not see both.
//!
//! Compared: every projection table (the fold's `verdicts` too), with
//! `projector_checkpoints` without its wall-clock `updated_at`. Not compared: `wx_sessions` (not a projection), `projection_migrations`
//! and anything else in the schema (such as an outbox), which the fold does not write.

use std::cmp::Ordering;

use futures::{pin_mut, TryStreamExt};
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};

use super::{Breach, BreachKind, Found};
use crate::core::fold::Phone;

/// Differing rows listed per table; beyond this they are only counted.
pub(super) const LISTED: u64 = 100;

/// One table the fold writes.
struct Table {
    name: &'static str,
    /// SQL text that orders and identifies a row (bytewise).
    key: &'static str,
    /// The key for a human.
    label: &'static str,
    /// The column that names the event that wrote the row last.
    seq: &'static str,
    /// Rows are only ever inserted: those up to a point are comparable with a rebuild
    /// as of that point.
    append_only: bool,
    /// Columns not compared.
    ignore: &'static str,
}

const TABLES: [Table; 9] = [
    Table {
        name: "users",
        key: "user_id::text",
        label: "user_id::text",
        seq: "last_seq",
        append_only: false,
        ignore: "",
    },
    Table {
        name: "orders",
        key: "out_trade_no",
        label: "out_trade_no",
        seq: "last_seq",
        append_only: false,
        ignore: "",
    },
    Table {
        name: "refunds",
        key: "out_refund_no",
        label: "out_refund_no",
        seq: "last_seq",
        append_only: false,
        ignore: "",
    },
    Table {
        name: "payments",
        key: "transaction_id",
        label: "transaction_id",
        seq: "seq",
        append_only: true,
        ignore: "",
    },
    Table {
        name: "ledger_entries",
        key: "group_id || E'\\x1f' || lpad(line::text, 10, '0')",
        label: "group_id || ' line ' || line",
        seq: "seq",
        append_only: true,
        ignore: "",
    },
    Table {
        name: "balances",
        key: "account",
        label: "account",
        seq: "last_seq",
        append_only: false,
        ignore: "",
    },
    Table {
        name: "failure_log",
        key: "lpad(seq::text, 20, '0') || E'\\x1f' || reason",
        label: "seq || ' ' || reason",
        seq: "seq",
        append_only: true,
        ignore: "",
    },
    Table {
        name: "verdicts",
        key: "lpad(seq::text, 20, '0')",
        label: "seq::text",
        seq: "seq",
        append_only: true,
        ignore: "",
    },
    Table {
        name: "projector_checkpoints",
        key: "projection",
        label: "projection",
        seq: "last_seq",
        append_only: false,
        ignore: "updated_at",
    },
];

/// How one table compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDiff {
    /// The table.
    pub table: &'static str,
    /// Rows compared on the live side.
    pub live_rows: u64,
    /// Rows compared on the rebuilt side.
    pub rebuilt_rows: u64,
    /// Rows that differ (or exist on one side only).
    pub differing: u64,
}

struct Side {
    key: String,
    label: String,
    row: String,
}

fn side(row: &Row) -> Side {
    Side {
        key: row.get(0),
        label: row.get(1),
        row: row.get(2),
    }
}

fn query(table: &Table, up_to: Option<u64>) -> String {
    let row = if table.ignore.is_empty() {
        "to_jsonb(t)".to_owned()
    } else {
        format!("to_jsonb(t) - '{}'", table.ignore)
    };
    let filter = match up_to {
        Some(point) => format!("WHERE {} <= {point}", table.seq),
        None => String::new(),
    };
    format!(
        "SELECT ({key}) COLLATE \"C\", {label}, ({row})::text FROM {name} t {filter}
         ORDER BY 1",
        key = table.key,
        label = table.label,
        name = table.name
    )
}

/// Compares the tables `live` and `rebuilt` see: all of them, or, with `up_to` (an
/// `--as-of` before the live checkpoint), the append-only ones up to that sequence.
pub async fn compare(
    live: &impl GenericClient,
    rebuilt: &impl GenericClient,
    up_to: Option<u64>,
) -> Result<(Vec<TableDiff>, Vec<Breach>), tokio_postgres::Error> {
    let mut tables = Vec::new();
    let mut breaches = Vec::new();
    for table in TABLES.iter().filter(|t| up_to.is_none() || t.append_only) {
        let sql = query(table, up_to);
        let no_params: Vec<i64> = Vec::new();
        let (a, b) = futures::try_join!(
            live.query_raw(sql.as_str(), no_params.clone()),
            rebuilt.query_raw(sql.as_str(), no_params),
        )?;
        pin_mut!(a, b);
        let (mut live_rows, mut rebuilt_rows, mut differing) = (0u64, 0u64, 0u64);
        let mut x = a.try_next().await?.map(|r| side(&r));
        let mut y = b.try_next().await?.map(|r| side(&r));
        live_rows += u64::from(x.is_some());
        rebuilt_rows += u64::from(y.is_some());
        loop {
            let order = match (&x, &y) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(l), Some(r)) => l.key.cmp(&r.key),
            };
            let breach = match order {
                Ordering::Less => {
                    let l = x.take().expect("the live side is ahead");
                    Some(one_sided(table, &l, "only in the live tables"))
                }
                Ordering::Greater => {
                    let r = y.take().expect("the rebuilt side is ahead");
                    Some(one_sided(table, &r, "missing from the live tables"))
                }
                Ordering::Equal => {
                    let (l, r) = (x.take().expect("both"), y.take().expect("both"));
                    (l.row != r.row).then(|| differs(table, &l, &r))
                }
            };
            if let Some(breach) = breach {
                differing += 1;
                if differing <= LISTED {
                    breaches.push(breach);
                }
            }
            if x.is_none() {
                x = a.try_next().await?.map(|r| side(&r));
                live_rows += u64::from(x.is_some());
            }
            if y.is_none() {
                y = b.try_next().await?.map(|r| side(&r));
                rebuilt_rows += u64::from(y.is_some());
            }
        }
        let result = TableDiff {
            table: table.name,
            live_rows,
            rebuilt_rows,
            differing,
        };
        tables.push(result);
    }
    Ok((tables, breaches))
}

fn seq_of(table: &Table, row: &Value) -> Option<i64> {
    row.get(table.seq).and_then(Value::as_i64)
}

/// A compared row as the report may show it: phone numbers masked (`138****8000`), as
/// everywhere wxledger shows one.
fn shown(row: &str) -> Value {
    let mut row: Value = serde_json::from_str(row).unwrap_or(Value::Null);
    if let Some(fields) = row.as_object_mut() {
        for name in ["phone_number", "phone_key"] {
            if let Some(Value::String(number)) = fields.get(name) {
                let masked = Phone::new("", number).masked();
                fields.insert(name.to_owned(), Value::String(masked));
            }
        }
    }
    row
}

fn one_sided(table: &Table, side: &Side, where_: &str) -> Breach {
    let row = shown(&side.row);
    Breach::new(
        BreachKind::Diff,
        Found::Live,
        format!("{} {}", table.name, side.label),
        seq_of(table, &row).into_iter().collect(),
        format!("{where_}: {row}"),
    )
}

fn differs(table: &Table, live: &Side, rebuilt: &Side) -> Breach {
    let l = shown(&live.row);
    let r = shown(&rebuilt.row);
    let mut fields = Vec::new();
    if let (Some(lo), Some(ro)) = (l.as_object(), r.as_object()) {
        for (name, lv) in lo {
            let rv = ro.get(name).unwrap_or(&Value::Null);
            if lv != rv {
                fields.push(format!("{name}: live {lv}, rebuilt {rv}"));
            }
        }
        for (name, rv) in ro.iter().filter(|(n, _)| !lo.contains_key(*n)) {
            fields.push(format!("{name}: live null, rebuilt {rv}"));
        }
    }
    let mut seqs: Vec<i64> = [seq_of(table, &l), seq_of(table, &r)]
        .into_iter()
        .flatten()
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    Breach::new(
        BreachKind::Diff,
        Found::Live,
        format!("{} {}", table.name, live.label),
        seqs,
        format!("differs from the rebuild: {}", fields.join("; ")),
    )
}

/// The tables compared with an `--as-of` before the checkpoint.
pub fn append_only_tables() -> impl Iterator<Item = &'static str> {
    TABLES.iter().filter(|t| t.append_only).map(|t| t.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shown_in_the_report_has_its_phone_masked() {
        let row = r#"{"user_id":"u1","phone_number":"13800138000","phone_key":"+8613800138000","nickname":"阿明"}"#;
        let masked = shown(row);
        assert_eq!(masked["phone_number"], "138****8000");
        assert_eq!(masked["phone_key"], "+86*******8000");
        assert_eq!(masked["nickname"], "阿明");
        assert!(!masked.to_string().contains("13800138000"));
        assert_eq!(
            shown(r#"{"phone_number":null}"#)["phone_number"],
            Value::Null
        );
    }
}
