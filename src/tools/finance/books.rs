//! Our books for a bill reconciliation ([`OurBooks`], our side of the match), read
//! from the live projection (`payments`, `orders`, `refunds`, `projector_checkpoints`)
//! in one snapshot. Not the fold's double-entry ledger (`fold::ledger`).

use chrono::NaiveDate;
use tokio_postgres::GenericClient;

use super::{
    bill::TradeBill,
    matcher::{day_window, BookedOrder, BookedPayment, BookedRefund, OurBooks},
};
use crate::store::projector::PROJECTION;

/// Our books as of the projection's checkpoint: the payments and orders `bill` names,
/// and every payment recorded during `day` (China Standard Time). Call it inside one
/// repeatable-read transaction so the rows and the checkpoint agree.
///
/// Refunds: those the bill's refund lines name and those requested during `day`, as far
/// as WeChat had a word on them (`wechat_status`): a refund WeChat never saw (refused
/// by the fold, or an order paid from the wallet, refunded to it) is not on a bill.
pub async fn load(
    client: &impl GenericClient,
    bill: &TradeBill,
    day: NaiveDate,
) -> Result<(OurBooks, i64), tokio_postgres::Error> {
    let transaction_ids: Vec<&str> = bill
        .lines
        .iter()
        .map(|l| l.transaction_id.as_str())
        .collect();
    let out_trade_nos: Vec<&str> = bill.lines.iter().map(|l| l.out_trade_no.as_str()).collect();
    let (start, end) = day_window(day);
    let payments = client
        .query(
            "SELECT transaction_id, out_trade_no, amount, booked_as, occurred_at FROM payments
             WHERE transaction_id = ANY($1) OR out_trade_no = ANY($2)
                OR (occurred_at >= $3 AND occurred_at < $4)
             ORDER BY seq",
            &[&transaction_ids, &out_trade_nos, &start, &end],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(BookedPayment {
                transaction_id: r.try_get(0)?,
                out_trade_no: r.try_get(1)?,
                amount: r.try_get(2)?,
                booked_as: r.try_get(3)?,
                occurred_at: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let orders = client
        .query(
            "SELECT out_trade_no, amount, state FROM orders WHERE out_trade_no = ANY($1)",
            &[&out_trade_nos],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(BookedOrder {
                out_trade_no: r.try_get(0)?,
                amount: r.try_get(1)?,
                state: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let out_refund_nos: Vec<&str> = bill
        .lines
        .iter()
        .filter_map(|l| l.out_refund_no.as_deref())
        .collect();
    let refunds = client
        .query(
            "SELECT out_refund_no, out_trade_no, amount, wechat_status, requested_at FROM refunds
             WHERE wechat_status IS NOT NULL
               AND (out_refund_no = ANY($1) OR (requested_at >= $2 AND requested_at < $3))
             ORDER BY requested_at, out_refund_no",
            &[&out_refund_nos, &start, &end],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(BookedRefund {
                out_refund_no: r.try_get(0)?,
                out_trade_no: r.try_get(1)?,
                amount: r.try_get(2)?,
                status: r.try_get(3)?,
                accepted_at: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let checkpoint = client
        .query_opt(
            "SELECT last_seq FROM projector_checkpoints WHERE projection = $1",
            &[&PROJECTION],
        )
        .await?
        .map_or(Ok(0), |r| r.try_get(0))?;
    Ok((
        OurBooks {
            payments,
            orders,
            refunds: Some(refunds),
        },
        checkpoint,
    ))
}
