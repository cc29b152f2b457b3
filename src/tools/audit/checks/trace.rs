//! Whether each posting group and payment sits at the sequence of an event that backs
//! it (`untraced_credit`), and whether each payment is posted as it is booked
//! (`booking_mismatch`). The backing events, from the fold (`src/core/fold/orders.rs`,
//! `refunds.rs`): `payment:<transaction>` (sale, recharge or suspense) at WeChat's word on
//! that transaction, paid, for that order and amount, from `wechat_clearing`;
//! `wallet_pay:<order>` at its `order.balance_pay_requested`, from the payer's wallet to
//! sales; `refund:<no>:reserve` (and `refund:<no>`, a wallet refund) at `refund.requested`;
//! `refund:<no>:settle` at WeChat's SUCCESS for the refund, paying out what it reported;
//! `refund:<no>:release` at `refund.rejected` or WeChat's CLOSED.

use futures::{pin_mut, TryStreamExt};
use tokio_postgres::{GenericClient, Row};

use super::{stream, Breaches, Result};
use crate::{
    core::fold::{
        is_wallet, wallet_account, GroupId, CLEARING, PAYMENT_GROUP_PREFIX, REFUNDS, SALES,
        SUSPENSE,
    },
    tools::{
        audit::{
            scan::{Money, Scan},
            BreachKind,
        },
        finance::yuan::format_fen,
    },
};

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
    let Ok(group) = group_id.parse::<GroupId>() else {
        return Err(format!("{group_id} is not a group the fold posts"));
    };

    if let GroupId::Payment(tx) = &group {
        let tx = tx.as_str();
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
    if let GroupId::WalletPay(order) = &group {
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
            out_trade_no == order && *out_trade_no == no,
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
    if let GroupId::RefundSettle(refund) = &group {
        expect(kind == "refund", format!("settles a refund, not {kind}"))?;
        expect(
            reported(refund, &["SUCCESS"]),
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
    if let GroupId::RefundRelease(refund) = &group {
        expect(
            kind == "refund_release",
            format!("releases a refund, not {kind}"),
        )?;
        let rejected =
            matches!(money, Money::RefundRejected { out_refund_no, .. } if out_refund_no == refund);
        return expect(
            rejected || reported(refund, &["CLOSED"]),
            format!("is not WeChat closing or refusing refund {refund}"),
        );
    }
    let (refund, reserve) = match &group {
        GroupId::RefundReserve(refund) => (refund, true),
        GroupId::RefundToWallet(refund) => (refund, false),
        _ => unreachable!("every other group returned above"),
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
        out_refund_no == refund && out_trade_no == no,
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

pub(super) async fn untraced_groups(
    client: &impl GenericClient,
    scan: &Scan,
    out: &mut Breaches,
) -> Result<()> {
    let rows = stream(
        client,
        "SELECT group_id, seq, account, amount, kind, out_trade_no, transaction_id
         FROM ledger_entries ORDER BY group_id, line",
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
                out.push(BreachKind::UntracedCredit, id, seqs, why);
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

pub(super) async fn untraced_payments(
    client: &impl GenericClient,
    scan: &Scan,
    out: &mut Breaches,
) -> Result<()> {
    let rows = stream(
        client,
        "SELECT transaction_id, out_trade_no, amount, seq, source FROM payments
         ORDER BY seq, transaction_id",
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
            out.push(
                BreachKind::UntracedCredit,
                format!("payment {tx}"),
                vec![seq],
                format!("{} yuan booked for order {no}: {why}", format_fen(amount)),
            );
        }
    }
    Ok(())
}

pub(super) async fn booking_mismatches(
    client: &impl GenericClient,
    out: &mut Breaches,
) -> Result<()> {
    for row in client
        .query(
            "SELECT coalesce(p.transaction_id, substr(g.group_id, length($1::text) + 1)),
                    p.booked_as, g.kind, p.seq, g.seq
             FROM payments p FULL JOIN (
                 SELECT group_id, min(kind) AS kind, min(seq) AS seq FROM ledger_entries
                 WHERE group_id LIKE $1::text || '%' GROUP BY group_id) g
               ON g.group_id = $1::text || p.transaction_id
             WHERE p.transaction_id IS NULL
                OR g.kind IS DISTINCT FROM nullif(p.booked_as, 'not_credited')
                OR p.seq IS DISTINCT FROM coalesce(g.seq, p.seq)
             ORDER BY coalesce(p.seq, g.seq)",
            &[&PAYMENT_GROUP_PREFIX],
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
        out.push(
            BreachKind::BookingMismatch,
            format!("payment {tx}"),
            seqs,
            message,
        );
    }
    Ok(())
}
