//! Paying an order from the wallet. The fold decides, in stream order, so two payments
//! racing for one balance cannot both succeed; the command answers from the fold's verdict
//! on its own event ([`crate::store::projector::ProjectionWatch::verdict`], read with the
//! paid order), whichever process applied it.

use uuid::Uuid;

use super::{orders::payable, settle, CommandError, Ctx};
use crate::{
    core::{
        domain::OutTradeNo,
        events::{BalancePayRequested, Event, OrderKind, QueryReason},
        fold::{wallet_account, Order, PaidWith, Refusal, Verdict},
    },
    store::{db::orders, projector::ProjectionWatch},
};

/// Pays the order numbered `no` (the caller's: another user's is not found) from
/// `user_id`'s wallet: the paid order, or why not (`InsufficientBalance` when nothing
/// moved). Paying again an order this wallet paid answers the order as it is.
pub async fn wallet_pay(
    ctx: &Ctx,
    user_id: Uuid,
    no: &str,
    request_id: &str,
) -> Result<Order, CommandError> {
    let no = OutTradeNo::parse(no).map_err(|_| CommandError::OrderNotFound)?;
    let wallet = wallet_account(user_id);
    let client = ctx.pool.get().await?;
    // The order and the balance in one round trip (one connection pipelines what is
    // polled at once).
    let (order, balance) = futures::try_join!(
        orders::get(&**client, no.as_str()),
        orders::balance(&**client, &wallet),
    )?;
    drop(client);
    let order = order
        .filter(|o| o.user_id == user_id)
        .ok_or(CommandError::OrderNotFound)?;
    if order.state.is_paid() && order.paid_with == Some(PaidWith::Wallet) {
        return Ok(order);
    }
    if order.kind != OrderKind::Order {
        return Err(CommandError::NotPayableFromWallet);
    }
    payable(ctx, &order)?;
    if balance < order.amount {
        return Err(insufficient(balance, order.amount));
    }
    let event = Event::BalancePayRequested(BalancePayRequested {
        out_trade_no: order.out_trade_no.clone(),
        user_id,
        amount: order.amount,
    });
    // One request per HTTP request: a retry is a new decision, which finds the order paid.
    let msg_id = event.msg_id(Some(request_id));
    let appended = ctx.record(&event, request_id, &msg_id).await?;
    ctx.wait_for(appended.seq).await?;
    // The verdict and the order (to render it paid) in one round trip.
    let client = ctx.pool.get().await?;
    let (verdict, paid) = futures::try_join!(
        async { Ok::<_, CommandError>(ProjectionWatch::verdict(&**client, appended.seq).await?) },
        async { Ok(orders::get(&**client, &order.out_trade_no).await?) },
    )?;
    drop(client);
    match verdict {
        Verdict::Applied(_)
        | Verdict::Refused(Refusal::AlreadyPaid {
            paid_with: Some(PaidWith::Wallet),
        }) => {}
        Verdict::Refused(Refusal::AlreadyPaid { .. }) => {
            return Err(CommandError::OrderPaidMeanwhile)
        }
        Verdict::Refused(Refusal::OrderClosed) => return Err(CommandError::OrderClosed),
        Verdict::Refused(Refusal::InsufficientBalance { balance, needed }) => {
            return Err(insufficient(balance, needed))
        }
        Verdict::Refused(refusal) => return Err(CommandError::WalletPayRefused(refusal)),
        Verdict::AlreadyApplied => {
            return Err(CommandError::internal(
                "a wallet payment's event was applied before it was appended",
            ))
        }
    }
    let paid = paid.ok_or_else(|| CommandError::internal("an order disappeared"))?;
    if paid.prepay_id.is_some() {
        close_prepay(ctx, &paid.out_trade_no, request_id).await;
    }
    Ok(paid)
}

fn insufficient(balance: i64, needed: i64) -> CommandError {
    CommandError::InsufficientBalance { balance, needed }
}

/// After a wallet payment, closes the order's WeChat prepay so that it cannot be paid a
/// second time. If WeChat says it was paid already, its signed answer is recorded: the
/// fold books that money as a double payment, for a human to refund.
async fn close_prepay(ctx: &Ctx, out_trade_no: &str, request_id: &str) {
    match ctx.close_order(out_trade_no).await {
        Ok(()) => {}
        Err(e) if e.code() == Some("ORDERPAID") => {
            let recorded =
                settle::query_payment(ctx, out_trade_no, QueryReason::Sync, request_id).await;
            if let Err(e) = recorded {
                tracing::warn!(out_trade_no, error = %e, "paid twice; the sweep will record it");
            }
        }
        Err(e) => {
            tracing::warn!(out_trade_no, error = %e, "could not close the prepay of a wallet-paid order")
        }
    }
}
