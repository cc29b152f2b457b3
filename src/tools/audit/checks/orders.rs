//! Each order's state against its money (`illegal_order_state`), and refunds against
//! what was paid (`refund_exceeds_paid`).

use futures::{pin_mut, TryStreamExt};
use tokio_postgres::GenericClient;

use super::{stream, Breaches, Result};
use crate::{
    core::fold::OrderState,
    tools::{audit::BreachKind, finance::yuan::format_fen},
};

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

pub(super) async fn order_states(client: &impl GenericClient, out: &mut Breaches) -> Result<()> {
    let rows = stream(
        client,
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
            out.push(
                BreachKind::IllegalOrderState,
                &o.out_trade_no,
                seqs,
                problems.join("; "),
            );
        }
    }
    Ok(())
}

pub(super) async fn refunds_within_paid(
    client: &impl GenericClient,
    out: &mut Breaches,
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
        out.push(
            BreachKind::RefundExceedsPaid,
            &no,
            row.get(6),
            format!(
                "{} yuan of refunds requested and {} yuan refunded or in flight, for {order} that received {} yuan",
                format_fen(asked),
                format_fen(going),
                format_fen(received)
            ),
        );
    }
    Ok(())
}
