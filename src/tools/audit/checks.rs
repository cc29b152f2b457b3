//! The invariants of the books, checked on a schema's tables (the live ones, so a row
//! changed by hand is found, and a rebuild's as of an earlier point):
//!
//! - every posting group sums to zero (`unbalanced_group`);
//! - no wallet's running balance, posting by posting in event order, ever goes below zero
//!   (`negative_wallet`), and each `balances` row is the sum of its account's postings
//!   (`balance_mismatch`);
//! - every posting group and payment sits at the sequence of an event that backs it
//!   (`untraced_credit`), and each payment is posted as booked (`booking_mismatch`);
//! - each order's state agrees with its money (`illegal_order_state`);
//! - no order has more refunded, or in flight, than was paid (`refund_exceeds_paid`);
//! - `wechat_clearing` is what the payments and WeChat's refunds make it
//!   (`clearing_mismatch`).
//!
//! Plus the totals of each day, from the postings.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use tokio_postgres::{GenericClient, RowStream};

mod orders;
mod trace;

pub use orders::{order_problems, OrderMoney};
pub use trace::{trace_group, Line};

use super::{report::DayTotals, scan::Scan, Breach, BreachKind, Found};
use crate::{
    core::fold::{CLEARING, SALES, SUSPENSE, WALLET_LIKE},
    tools::finance::yuan::format_fen,
};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// The rows of `sql` (which takes no parameters) as they come, for the checks that read
/// a whole table.
async fn stream(client: &impl GenericClient, sql: &str) -> Result<RowStream> {
    client.query_raw(sql, Vec::<i64>::new()).await
}

/// Every invariant, on the tables `client` sees; `scan` says which event is at which
/// sequence.
pub async fn run(client: &impl GenericClient, scan: &Scan, found: Found) -> Result<Vec<Breach>> {
    let mut out = Breaches {
        found,
        list: Vec::new(),
    };
    unbalanced_groups(client, &mut out).await?;
    negative_wallets(client, &mut out).await?;
    balance_mismatches(client, &mut out).await?;
    trace::untraced_groups(client, scan, &mut out).await?;
    trace::untraced_payments(client, scan, &mut out).await?;
    trace::booking_mismatches(client, &mut out).await?;
    orders::order_states(client, &mut out).await?;
    orders::refunds_within_paid(client, &mut out).await?;
    clearing(client, &mut out).await?;
    Ok(out.list)
}

/// What the checks find, each breach marked with where they look (`found`).
pub(super) struct Breaches {
    found: Found,
    list: Vec<Breach>,
}

impl Breaches {
    fn push(
        &mut self,
        kind: BreachKind,
        key: impl Into<String>,
        seqs: Vec<i64>,
        message: impl Into<String>,
    ) {
        self.list
            .push(Breach::new(kind, self.found, key, seqs, message));
    }
}

async fn unbalanced_groups(client: &impl GenericClient, out: &mut Breaches) -> Result<()> {
    for row in client
        .query(
            "SELECT group_id, array_agg(DISTINCT seq ORDER BY seq), sum(amount)::bigint
             FROM ledger_entries GROUP BY group_id HAVING sum(amount) <> 0
             ORDER BY min(seq), group_id",
            &[],
        )
        .await?
    {
        let (group, seqs, sum): (String, Vec<i64>, i64) = (row.get(0), row.get(1), row.get(2));
        out.push(
            BreachKind::UnbalancedGroup,
            &group,
            seqs,
            format!("its lines sum to {} yuan, not zero", format_fen(sum)),
        );
    }
    Ok(())
}

async fn negative_wallets(client: &impl GenericClient, out: &mut Breaches) -> Result<()> {
    for row in client
        .query(
            "SELECT DISTINCT ON (account) account, seq, group_id, running FROM (
                 SELECT account, seq, line, group_id, sum(amount) OVER (
                     PARTITION BY account ORDER BY seq, line ROWS UNBOUNDED PRECEDING)::bigint
                     AS running
                 FROM ledger_entries WHERE account LIKE $1) r
             WHERE running < 0 ORDER BY account, seq, line",
            &[&WALLET_LIKE],
        )
        .await?
    {
        let (account, seq, group, running): (String, i64, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        out.push(
            BreachKind::NegativeWallet,
            &account,
            vec![seq],
            format!(
                "the wallet goes to {} yuan at event {seq} ({group}), first",
                format_fen(running)
            ),
        );
    }
    Ok(())
}

async fn balance_mismatches(client: &impl GenericClient, out: &mut Breaches) -> Result<()> {
    for row in client
        .query(
            "SELECT coalesce(b.account, e.account), b.balance, coalesce(e.total, 0)::bigint,
                    b.last_seq, e.last_seq
             FROM balances b FULL JOIN (
                 SELECT account, sum(amount) AS total, max(seq) AS last_seq
                 FROM ledger_entries GROUP BY account) e ON e.account = b.account
             WHERE b.balance IS DISTINCT FROM coalesce(e.total, 0)
                OR b.last_seq IS DISTINCT FROM e.last_seq
             ORDER BY 1",
            &[],
        )
        .await?
    {
        let account: String = row.get(0);
        let (balance, sum): (Option<i64>, i64) = (row.get(1), row.get(2));
        let (row_seq, entry_seq): (Option<i64>, Option<i64>) = (row.get(3), row.get(4));
        let message = match balance {
            None => format!(
                "no balances row, but its postings sum to {} yuan",
                format_fen(sum)
            ),
            Some(balance) if balance != sum => format!(
                "balances says {} yuan, its postings sum to {} yuan",
                format_fen(balance),
                format_fen(sum)
            ),
            Some(_) => format!(
                "balances says its newest posting is event {}, the postings say {}",
                row_seq.map_or("none".into(), |s| s.to_string()),
                entry_seq.map_or("none".into(), |s| s.to_string())
            ),
        };
        let mut seqs: Vec<i64> = [row_seq, entry_seq].into_iter().flatten().collect();
        seqs.sort_unstable();
        seqs.dedup();
        out.push(BreachKind::BalanceMismatch, &account, seqs, message);
    }
    Ok(())
}

/// `wechat_clearing` from the tables that do not post to it: minus every payment booked
/// (money WeChat holds for us), plus every refund WeChat paid out, at the amount it paid
/// (`refund_amount_mismatch` records where that differs from the amount asked).
async fn clearing(client: &impl GenericClient, out: &mut Breaches) -> Result<()> {
    let row = client
        .query_one(
            "SELECT
                 (SELECT coalesce(sum(amount), 0) FROM payments
                  WHERE booked_as <> 'not_credited')::bigint,
                 (SELECT coalesce(sum(amount), 0) FROM refunds
                  WHERE state = 'succeeded' AND wechat_status IS NOT NULL)::bigint,
                 (SELECT coalesce(sum((detail->>'got')::bigint - (detail->>'expected')::bigint), 0)
                  FROM failure_log WHERE reason = 'refund_amount_mismatch')::bigint,
                 (SELECT balance FROM balances WHERE account = $1),
                 (SELECT last_seq FROM balances WHERE account = $1)",
            &[&CLEARING],
        )
        .await?;
    let (received, refunded, adjusted): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let (balance, seq): (Option<i64>, Option<i64>) = (row.get(3), row.get(4));
    let expected = refunded + adjusted - received;
    if balance.unwrap_or(0) != expected {
        out.push(
            BreachKind::ClearingMismatch,
            CLEARING,
            seq.into_iter().collect(),
            format!(
                "the balance is {} yuan; payments received {} yuan and WeChat refunded {} yuan, so it should be {} yuan",
                format_fen(balance.unwrap_or(0)),
                format_fen(received),
                format_fen(refunded + adjusted),
                format_fen(expected)
            ),
        );
    }
    Ok(())
}

/// The money of each day (China Standard Time) from the postings: orders paid through
/// WeChat, refunds paid out (through WeChat or to a wallet), recharges credited, orders
/// paid from wallets, and money received into suspense.
pub async fn daily_totals(client: &impl GenericClient) -> Result<BTreeMap<NaiveDate, DayTotals>> {
    let rows = client
        .query(
            "SELECT ((occurred_at AT TIME ZONE 'UTC') + interval '8 hours')::date,
                 coalesce(sum(amount) FILTER (WHERE kind = 'sale' AND account = $1), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE kind = 'refund' AND amount > 0
                     AND (account = $2 OR account LIKE $4)), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE kind = 'recharge'
                     AND account LIKE $4), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE kind = 'wallet_payment'
                     AND account = $1), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE kind = 'suspense' AND account = $3), 0)::bigint
             FROM ledger_entries GROUP BY 1 ORDER BY 1",
            &[&SALES, &CLEARING, &SUSPENSE, &WALLET_LIKE],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                DayTotals {
                    paid: r.get(1),
                    refunded: r.get(2),
                    recharged: r.get(3),
                    wallet_spend: r.get(4),
                    suspense: r.get(5),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests;
