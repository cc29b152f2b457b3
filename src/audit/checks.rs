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
use futures::{pin_mut, TryStreamExt};
use tokio_postgres::{GenericClient, Row};

use super::{
    report::DayTotals,
    scan::{Money, Scan},
    Breach, BreachKind, Found,
};
use crate::{
    finance::yuan::format_fen,
    fold::{is_wallet, wallet_account, OrderState, CLEARING, REFUNDS, SALES, SUSPENSE},
};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

fn no_params() -> Vec<i64> {
    Vec::new()
}

/// Every invariant, on the tables `client` sees; `scan` says which event is at which
/// sequence.
pub async fn run(client: &impl GenericClient, scan: &Scan, found: Found) -> Result<Vec<Breach>> {
    let mut out = Vec::new();
    unbalanced_groups(client, found, &mut out).await?;
    negative_wallets(client, found, &mut out).await?;
    balance_mismatches(client, found, &mut out).await?;
    untraced_groups(client, scan, found, &mut out).await?;
    untraced_payments(client, scan, found, &mut out).await?;
    booking_mismatches(client, found, &mut out).await?;
    order_states(client, found, &mut out).await?;
    refunds_within_paid(client, found, &mut out).await?;
    clearing(client, found, &mut out).await?;
    Ok(out)
}

async fn unbalanced_groups(
    client: &impl GenericClient,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
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
        out.push(Breach::new(
            BreachKind::UnbalancedGroup,
            found,
            &group,
            seqs,
            format!("its lines sum to {} yuan, not zero", format_fen(sum)),
        ));
    }
    Ok(())
}

async fn negative_wallets(
    client: &impl GenericClient,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
    for row in client
        .query(
            "SELECT DISTINCT ON (account) account, seq, group_id, running FROM (
                 SELECT account, seq, line, group_id, sum(amount) OVER (
                     PARTITION BY account ORDER BY seq, line ROWS UNBOUNDED PRECEDING)::bigint
                     AS running
                 FROM ledger_entries WHERE account LIKE 'wallet:%') r
             WHERE running < 0 ORDER BY account, seq, line",
            &[],
        )
        .await?
    {
        let (account, seq, group, running): (String, i64, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        out.push(Breach::new(
            BreachKind::NegativeWallet,
            found,
            &account,
            vec![seq],
            format!(
                "the wallet goes to {} yuan at event {seq} ({group}), first",
                format_fen(running)
            ),
        ));
    }
    Ok(())
}

async fn balance_mismatches(
    client: &impl GenericClient,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
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
        out.push(Breach::new(
            BreachKind::BalanceMismatch,
            found,
            &account,
            seqs,
            message,
        ));
    }
    Ok(())
}

/// One line of a posting group, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The event that posted it.
    pub seq: i64,
    /// The account.
    pub account: String,
    /// Signed fen.
    pub amount: i64,
    /// `ledger_entries.kind`.
    pub kind: String,
    /// The order.
    pub out_trade_no: String,
    /// WeChat's transaction.
    pub transaction_id: Option<String>,
}

/// Whether the event at the group's sequence backs the posting group `group_id` made of
/// `lines`: the event the fold posts such a group for, naming the same order, refund or
/// transaction and moving the same amount. `Err` says why not.
pub fn trace_group(group_id: &str, lines: &[Line], scan: &Scan) -> std::result::Result<(), String> {
    let first = lines.first().ok_or("the group has no lines")?;
    let seq = first.seq;
    if let Some(other) = lines.iter().find(|l| l.seq != seq) {
        return Err(format!(
            "its lines were posted by two events, {seq} and {}",
            other.seq
        ));
    }
    if let Some(other) = lines.iter().find(|l| l.kind != first.kind) {
        return Err(format!(
            "its lines are of two kinds, {} and {}",
            first.kind, other.kind
        ));
    }
    if let Some(other) = lines.iter().find(|l| l.out_trade_no != first.out_trade_no) {
        return Err(format!(
            "its lines name two orders, {} and {}",
            first.out_trade_no, other.out_trade_no
        ));
    }
    let credited: i64 = lines.iter().map(|l| l.amount.max(0)).sum();
    let account_of = |positive: bool| {
        lines
            .iter()
            .find(|l| (l.amount > 0) == positive)
            .map(|l| l.account.as_str())
    };
    let (debit, credit) = (account_of(false), account_of(true));
    let kind = first.kind.as_str();
    let no = first.out_trade_no.as_str();
    let Some(money) = scan.money_at(seq) else {
        return Err(match scan.kind_at(seq) {
            Some(k) => format!("event {seq} is {k}, which moves no money"),
            None => format!("there is no event {seq} on the stream (up to the checkpoint)"),
        });
    };
    let event = scan.kind_at(seq).unwrap_or("an event");
    let expect = |ok: bool, what: String| {
        if ok {
            Ok(())
        } else {
            Err(format!("event {seq} ({event}) {what}"))
        }
    };
    let refund_no = |id: &str, suffix: &str| {
        id.strip_prefix("refund:")
            .and_then(|rest| {
                if suffix.is_empty() {
                    Some(rest)
                } else {
                    rest.strip_suffix(suffix)
                }
            })
            .map(str::to_owned)
    };

    if let Some(tx) = group_id.strip_prefix("payment:") {
        let Money::Payment { transaction: t, .. } = money else {
            return expect(false, "is not WeChat's word on a payment".into());
        };
        expect(
            matches!(kind, "sale" | "recharge" | "suspense"),
            format!("books payments as sale, recharge or suspense, not {kind}"),
        )?;
        expect(
            t.transaction_id.as_deref() == Some(tx)
                && lines
                    .iter()
                    .all(|l| l.transaction_id.as_deref() == Some(tx)),
            format!(
                "reports transaction {}, not {tx}",
                t.transaction_id.as_deref().unwrap_or("(none)")
            ),
        )?;
        expect(
            matches!(t.trade_state.as_str(), "SUCCESS" | "REFUND"),
            format!("says the trade is {}, not paid", t.trade_state),
        )?;
        expect(
            t.out_trade_no == no,
            format!("is about order {}, not {no}", t.out_trade_no),
        )?;
        let total = t.amount.as_ref().and_then(|a| a.total);
        expect(
            total == Some(credited),
            format!(
                "reports {} yuan paid, the group credits {} yuan",
                total.map_or("no amount".into(), format_fen),
                format_fen(credited)
            ),
        )?;
        let to_ok = match kind {
            "sale" => credit == Some(SALES),
            "recharge" => credit.is_some_and(is_wallet),
            _ => credit == Some(SUSPENSE),
        };
        return expect(
            debit == Some(CLEARING) && to_ok,
            format!(
                "moves money from WeChat's clearing account, not from {} to {}",
                debit.unwrap_or("-"),
                credit.unwrap_or("-")
            ),
        );
    }
    if let Some(order) = group_id.strip_prefix("wallet_pay:") {
        let Money::BalancePay {
            out_trade_no,
            user_id,
            amount,
        } = money
        else {
            return expect(false, "is not a wallet payment request".into());
        };
        expect(
            kind == "wallet_payment",
            format!("posts a wallet payment, not {kind}"),
        )?;
        expect(
            out_trade_no == order && out_trade_no == no,
            format!("pays order {out_trade_no}, not {order}"),
        )?;
        expect(
            *amount == credited,
            format!(
                "asks for {} yuan, the group moves {} yuan",
                format_fen(*amount),
                format_fen(credited)
            ),
        )?;
        let wallet = wallet_account(*user_id);
        return expect(
            debit == Some(wallet.as_str()) && credit == Some(SALES),
            format!(
                "moves money from {wallet} to sales, not from {} to {}",
                debit.unwrap_or("-"),
                credit.unwrap_or("-")
            ),
        );
    }
    let reported = |refund_no: &str, statuses: &[&str]| match money {
        Money::RefundReport(r) => {
            r.out_refund_no == refund_no && statuses.contains(&r.status.as_str())
        }
        _ => false,
    };
    if let Some(refund) = refund_no(group_id, ":settle") {
        expect(kind == "refund", format!("settles a refund, not {kind}"))?;
        expect(
            reported(&refund, &["SUCCESS"]),
            format!("is not WeChat's word that refund {refund} succeeded"),
        )?;
        let Money::RefundReport(r) = money else {
            unreachable!("checked just above")
        };
        let paid_out = lines
            .iter()
            .find(|l| l.account == CLEARING)
            .map_or(0, |l| l.amount);
        let reported = r.amount.as_ref().and_then(|a| a.refund);
        return expect(
            r.out_trade_no == no && reported.is_none_or(|a| a == paid_out),
            format!(
                "reports {} yuan refunded for order {}, the group pays out {} yuan for {no}",
                reported.map_or("an unstated amount".into(), format_fen),
                r.out_trade_no,
                format_fen(paid_out)
            ),
        );
    }
    if let Some(refund) = refund_no(group_id, ":release") {
        expect(
            kind == "refund_release",
            format!("releases a refund, not {kind}"),
        )?;
        let rejected = matches!(money, Money::RefundRejected { out_refund_no, .. } if *out_refund_no == refund);
        return expect(
            rejected || reported(&refund, &["CLOSED"]),
            format!("is not WeChat closing or refusing refund {refund}"),
        );
    }
    let (refund, reserve) = match refund_no(group_id, ":reserve") {
        Some(refund) => (refund, true),
        None => match refund_no(group_id, "") {
            Some(refund) if !refund.contains(':') => (refund, false),
            _ => return Err(format!("{group_id} is not a group the fold posts")),
        },
    };
    let Money::RefundRequested {
        out_refund_no,
        out_trade_no,
        amount,
    } = money
    else {
        return expect(false, format!("is not the request of refund {refund}"));
    };
    let (want_kind, to_ok) = if reserve {
        ("refund_reserve", credit == Some(REFUNDS))
    } else {
        ("refund", credit.is_some_and(is_wallet))
    };
    expect(kind == want_kind, format!("posts {want_kind}, not {kind}"))?;
    expect(
        *out_refund_no == refund && out_trade_no == no,
        format!("requests refund {out_refund_no} of order {out_trade_no}"),
    )?;
    expect(to_ok, format!("does not post to {}", credit.unwrap_or("-")))?;
    expect(
        *amount == credited,
        format!(
            "asks for {} yuan, the group moves {} yuan",
            format_fen(*amount),
            format_fen(credited)
        ),
    )
}

fn line(row: &Row) -> (String, Line) {
    (
        row.get(0),
        Line {
            seq: row.get(1),
            account: row.get(2),
            amount: row.get(3),
            kind: row.get(4),
            out_trade_no: row.get(5),
            transaction_id: row.get(6),
        },
    )
}

async fn untraced_groups(
    client: &impl GenericClient,
    scan: &Scan,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
    let rows = client
        .query_raw(
            "SELECT group_id, seq, account, amount, kind, out_trade_no, transaction_id
             FROM ledger_entries ORDER BY group_id, line",
            no_params(),
        )
        .await?;
    pin_mut!(rows);
    let mut group: Option<(String, Vec<Line>)> = None;
    let mut check = |group: Option<(String, Vec<Line>)>| {
        if let Some((id, lines)) = group {
            if let Err(why) = trace_group(&id, &lines, scan) {
                let mut seqs: Vec<i64> = lines.iter().map(|l| l.seq).collect();
                seqs.sort_unstable();
                seqs.dedup();
                out.push(Breach::new(
                    BreachKind::UntracedCredit,
                    found,
                    id,
                    seqs,
                    why,
                ));
            }
        }
    };
    while let Some(row) = rows.try_next().await? {
        let (id, l) = line(&row);
        match &mut group {
            Some((current, lines)) if *current == id => lines.push(l),
            _ => check(group.replace((id, vec![l]))),
        }
    }
    check(group);
    Ok(())
}

async fn untraced_payments(
    client: &impl GenericClient,
    scan: &Scan,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
    let rows = client
        .query_raw(
            "SELECT transaction_id, out_trade_no, amount, seq, source FROM payments
             ORDER BY seq, transaction_id",
            no_params(),
        )
        .await?;
    pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let (tx, no, amount, seq, source): (String, String, i64, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let why = match scan.money_at(seq) {
            Some(Money::Payment {
                source: s,
                transaction: t,
            }) => {
                let total = t.amount.as_ref().and_then(|a| a.total);
                if t.transaction_id.as_deref() != Some(tx.as_str()) {
                    Some(format!(
                        "event {seq} reports transaction {}, not this one",
                        t.transaction_id.as_deref().unwrap_or("(none)")
                    ))
                } else if !matches!(t.trade_state.as_str(), "SUCCESS" | "REFUND") {
                    Some(format!("event {seq} says the trade is {}", t.trade_state))
                } else if t.out_trade_no != no || total != Some(amount) || s.as_str() != source {
                    Some(format!(
                        "event {seq} reports {} yuan for order {} by {}; the payment says {} yuan for {no} by {source}",
                        total.map_or("no amount".into(), format_fen),
                        t.out_trade_no,
                        s.as_str(),
                        format_fen(amount)
                    ))
                } else {
                    None
                }
            }
            _ => Some(match scan.kind_at(seq) {
                Some(k) => format!("event {seq} is {k}, not WeChat's word on a payment"),
                None => format!("there is no event {seq} on the stream (up to the checkpoint)"),
            }),
        };
        if let Some(why) = why {
            out.push(Breach::new(
                BreachKind::UntracedCredit,
                found,
                format!("payment {tx}"),
                vec![seq],
                format!("{} yuan booked for order {no}: {why}", format_fen(amount)),
            ));
        }
    }
    Ok(())
}

async fn booking_mismatches(
    client: &impl GenericClient,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
    for row in client
        .query(
            "SELECT coalesce(p.transaction_id, substr(g.group_id, 9)), p.booked_as, g.kind,
                    p.seq, g.seq
             FROM payments p FULL JOIN (
                 SELECT group_id, min(kind) AS kind, min(seq) AS seq FROM ledger_entries
                 WHERE group_id LIKE 'payment:%' GROUP BY group_id) g
               ON g.group_id = 'payment:' || p.transaction_id
             WHERE p.transaction_id IS NULL
                OR g.kind IS DISTINCT FROM nullif(p.booked_as, 'not_credited')
                OR p.seq IS DISTINCT FROM coalesce(g.seq, p.seq)
             ORDER BY coalesce(p.seq, g.seq)",
            &[],
        )
        .await?
    {
        let tx: String = row.get(0);
        let (booked, posted): (Option<String>, Option<String>) = (row.get(1), row.get(2));
        let seqs: Vec<i64> = [row.get::<_, Option<i64>>(3), row.get(4)]
            .into_iter()
            .flatten()
            .collect();
        let message = match (&booked, &posted) {
            (None, Some(kind)) => format!("posted as {kind}, but no payment is booked"),
            (Some(b), None) => format!("booked as {b}, but nothing is posted"),
            (Some(b), Some(k)) if b != k => format!("booked as {b}, posted as {k}"),
            _ => "booked and posted by different events".to_owned(),
        };
        out.push(Breach::new(
            BreachKind::BookingMismatch,
            found,
            format!("payment {tx}"),
            seqs,
            message,
        ));
    }
    Ok(())
}

/// An order with the money the other tables hold for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderMoney {
    /// The order.
    pub out_trade_no: String,
    /// `orders.state`.
    pub state: String,
    /// `orders.amount`.
    pub amount: i64,
    /// `orders.paid_with`.
    pub paid_with: Option<String>,
    /// `orders.transaction_id`.
    pub transaction_id: Option<String>,
    /// `orders.refunded`.
    pub refunded: i64,
    /// `orders.refunding`.
    pub refunding: i64,
    /// `orders.last_seq`.
    pub last_seq: i64,
    /// The payment booked for `transaction_id`: (its order, amount).
    pub payment: Option<(String, i64)>,
    /// Posting groups crediting sales or a wallet for it (`sale`, `recharge`): their seq.
    pub credited_at: Option<i64>,
    /// Its wallet payment group's seq.
    pub wallet_paid_at: Option<i64>,
    /// Fen of its requested refunds that succeeded.
    pub refunds_succeeded: i64,
    /// Fen of its requested refunds in flight (set aside).
    pub refunds_in_flight: i64,
}

/// What is wrong with an order's state given its money; empty when nothing.
pub fn order_problems(o: &OrderMoney) -> Vec<String> {
    let mut out = Vec::new();
    let Some(state) = OrderState::parse(&o.state) else {
        return vec![format!("state {} is not an order state", o.state)];
    };
    let s = state.as_str();
    if state.is_paid() {
        match o.paid_with.as_deref() {
            Some("wechat") => match (&o.transaction_id, &o.payment) {
                (None, _) => out.push(format!("{s} through WeChat without a transaction")),
                (Some(tx), None) => out.push(format!(
                    "{s} through WeChat, but no payment is booked for {tx}"
                )),
                (Some(tx), Some((no, amount))) if *no != o.out_trade_no || *amount != o.amount => {
                    out.push(format!(
                        "{s} by transaction {tx}, which paid {} yuan for order {no}",
                        format_fen(*amount)
                    ))
                }
                _ => {}
            },
            Some("wallet") => {
                if o.wallet_paid_at.is_none() {
                    out.push(format!(
                        "{s} from the wallet, but no wallet payment is posted"
                    ));
                }
            }
            other => out.push(format!("{s}, but paid with {}", other.unwrap_or("nothing"))),
        }
        let expected = match (o.refunded, o.amount) {
            (0, _) => OrderState::Paid,
            (r, a) if r >= a => OrderState::Refunded,
            _ => OrderState::PartiallyRefunded,
        };
        if state != expected {
            out.push(format!(
                "{s} with {} of {} yuan refunded",
                format_fen(o.refunded),
                format_fen(o.amount)
            ));
        }
    } else {
        if let Some(seq) = o.credited_at.or(o.wallet_paid_at) {
            out.push(format!("{s}, but event {seq} booked its payment"));
        }
        if o.paid_with.is_some() || o.refunded != 0 || o.refunding != 0 {
            out.push(format!(
                "{s}, but paid with {}, {} yuan refunded, {} yuan refunding",
                o.paid_with.as_deref().unwrap_or("nothing"),
                format_fen(o.refunded),
                format_fen(o.refunding)
            ));
        }
    }
    if o.refunded != o.refunds_succeeded || o.refunding != o.refunds_in_flight {
        out.push(format!(
            "{} yuan refunded and {} yuan refunding, but its refunds say {} yuan succeeded and {} yuan in flight",
            format_fen(o.refunded),
            format_fen(o.refunding),
            format_fen(o.refunds_succeeded),
            format_fen(o.refunds_in_flight)
        ));
    }
    out
}

async fn order_states(
    client: &impl GenericClient,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
    let rows = client
        .query_raw(
            "WITH money AS (
                 SELECT out_trade_no,
                        max(seq) FILTER (WHERE kind IN ('sale', 'recharge')) AS credited_at,
                        max(seq) FILTER (WHERE kind = 'wallet_payment') AS wallet_paid_at
                 FROM ledger_entries WHERE kind IN ('sale', 'recharge', 'wallet_payment')
                 GROUP BY out_trade_no),
             refunds_of AS (
                 SELECT out_trade_no,
                        coalesce(sum(amount) FILTER (WHERE state = 'succeeded'), 0)::bigint
                            AS succeeded,
                        coalesce(sum(amount) FILTER (WHERE reserved_from IS NOT NULL
                            AND state IN ('requested', 'processing', 'abnormal')), 0)::bigint
                            AS in_flight
                 FROM refunds WHERE requested GROUP BY out_trade_no)
             SELECT o.out_trade_no, o.state, o.amount, o.paid_with, o.transaction_id,
                    o.refunded, o.refunding, o.last_seq, p.out_trade_no, p.amount,
                    m.credited_at, m.wallet_paid_at,
                    coalesce(r.succeeded, 0), coalesce(r.in_flight, 0)
             FROM orders o
             LEFT JOIN payments p ON p.transaction_id = o.transaction_id
             LEFT JOIN money m ON m.out_trade_no = o.out_trade_no
             LEFT JOIN refunds_of r ON r.out_trade_no = o.out_trade_no
             ORDER BY o.last_seq, o.out_trade_no",
            no_params(),
        )
        .await?;
    pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let payment_no: Option<String> = row.get(8);
        let o = OrderMoney {
            out_trade_no: row.get(0),
            state: row.get(1),
            amount: row.get(2),
            paid_with: row.get(3),
            transaction_id: row.get(4),
            refunded: row.get(5),
            refunding: row.get(6),
            last_seq: row.get(7),
            payment: payment_no.map(|no| (no, row.get(9))),
            credited_at: row.get(10),
            wallet_paid_at: row.get(11),
            refunds_succeeded: row.get(12),
            refunds_in_flight: row.get(13),
        };
        let problems = order_problems(&o);
        if !problems.is_empty() {
            let mut seqs: Vec<i64> = [Some(o.last_seq), o.credited_at, o.wallet_paid_at]
                .into_iter()
                .flatten()
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            out.push(Breach::new(
                BreachKind::IllegalOrderState,
                found,
                &o.out_trade_no,
                seqs,
                problems.join("; "),
            ));
        }
    }
    Ok(())
}

async fn refunds_within_paid(
    client: &impl GenericClient,
    found: Found,
    out: &mut Vec<Breach>,
) -> Result<()> {
    for row in client
        .query(
            "WITH received AS (
                 SELECT out_trade_no, amount FROM payments WHERE booked_as <> 'not_credited'
                 UNION ALL
                 SELECT out_trade_no, amount FROM ledger_entries
                 WHERE kind = 'wallet_payment' AND amount > 0),
             paid AS (SELECT out_trade_no, sum(amount)::bigint AS received FROM received
                      GROUP BY out_trade_no),
             back AS (
                 SELECT out_trade_no,
                        coalesce(sum(amount) FILTER (WHERE requested AND state IN
                            ('requested', 'processing', 'abnormal', 'succeeded')), 0)::bigint
                            AS asked,
                        coalesce(sum(amount) FILTER (WHERE state = 'succeeded'
                            OR (requested AND state IN ('requested', 'processing', 'abnormal'))),
                            0)::bigint AS going,
                        array_agg(DISTINCT last_seq ORDER BY last_seq) AS seqs
                 FROM refunds GROUP BY out_trade_no)
             SELECT b.out_trade_no, o.amount, o.state, coalesce(p.received, 0), b.asked,
                    b.going, b.seqs
             FROM back b LEFT JOIN orders o USING (out_trade_no)
                         LEFT JOIN paid p USING (out_trade_no)
             WHERE b.asked > CASE WHEN o.state IN ('paid', 'partially_refunded', 'refunded')
                                  THEN o.amount ELSE 0 END
                OR b.going > coalesce(p.received, 0)
             ORDER BY b.seqs[array_upper(b.seqs, 1)], b.out_trade_no",
            &[],
        )
        .await?
    {
        let no: String = row.get(0);
        let (amount, state): (Option<i64>, Option<String>) = (row.get(1), row.get(2));
        let (received, asked, going): (i64, i64, i64) = (row.get(3), row.get(4), row.get(5));
        let order = match (amount, state) {
            (Some(amount), Some(state)) => {
                format!("a {state} order of {} yuan", format_fen(amount))
            }
            _ => "an unknown order".to_owned(),
        };
        out.push(Breach::new(
            BreachKind::RefundExceedsPaid,
            found,
            &no,
            row.get(6),
            format!(
                "{} yuan of refunds requested and {} yuan refunded or in flight, for {order} that received {} yuan",
                format_fen(asked),
                format_fen(going),
                format_fen(received)
            ),
        ));
    }
    Ok(())
}

/// `wechat_clearing` from the tables that do not post to it: minus every payment booked
/// (money WeChat holds for us), plus every refund WeChat paid out, at the amount it paid
/// (`refund_amount_mismatch` records where that differs from the amount asked).
async fn clearing(client: &impl GenericClient, found: Found, out: &mut Vec<Breach>) -> Result<()> {
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
        out.push(Breach::new(
            BreachKind::ClearingMismatch,
            found,
            CLEARING,
            seq.into_iter().collect(),
            format!(
                "the balance is {} yuan; payments received {} yuan and WeChat refunded {} yuan, so it should be {} yuan",
                format_fen(balance.unwrap_or(0)),
                format_fen(received),
                format_fen(refunded + adjusted),
                format_fen(expected)
            ),
        ));
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
                     AND (account = $2 OR account LIKE 'wallet:%')), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE kind = 'recharge'
                     AND account LIKE 'wallet:%'), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE kind = 'wallet_payment'
                     AND account = $1), 0)::bigint,
                 coalesce(sum(amount) FILTER (WHERE kind = 'suspense' AND account = $3), 0)::bigint
             FROM ledger_entries GROUP BY 1 ORDER BY 1",
            &[&SALES, &CLEARING, &SUSPENSE],
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
