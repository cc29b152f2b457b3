//! Orders and recharges: placing them, finding them, and their WeChat Pay prepay (what
//! `wx.requestPayment` needs).

use uuid::Uuid;

use super::{CommandError, Ctx};
use crate::{
    core::{
        domain::{Description, Fen, OutTradeNo},
        events::{Event, OrderKind, OrderPlaced, PrepayIssued},
        fold::{Order, OrderState},
    },
    store::db::{orders, users},
    wechat::pay::{PayParams, Prepay},
};

/// An order to place.
pub struct NewOrder<'a> {
    /// Who places it.
    pub user_id: Uuid,
    /// The caller's `Idempotency-Key`, when given: the same key places the same order.
    pub key: Option<&'a str>,
    /// An order or a recharge.
    pub kind: OrderKind,
    /// How much.
    pub amount: Fen,
    /// What for.
    pub description: Description,
}

/// A placed order.
pub struct Placed {
    /// `false` when the order existed already (the same `Idempotency-Key` seen before).
    pub created: bool,
    /// The order as projected.
    pub order: Order,
}

/// Places an order: appends `order.placed` (its number derived from the user, kind and
/// key, so a retry places the same order), waits until it is applied, reads it back.
pub async fn place(ctx: &Ctx, new: NewOrder<'_>, request_id: &str) -> Result<Placed, CommandError> {
    let NewOrder {
        user_id,
        key,
        kind,
        amount,
        description,
    } = new;
    let out_trade_no = OutTradeNo::issue(user_id, kind.as_str(), key);
    let client = ctx.pool.get().await?;
    // Both reads in one round trip (one connection pipelines what is polled at once).
    let (existing, user) = futures::try_join!(
        orders::get(&**client, out_trade_no.as_str()),
        users::get(&**client, user_id),
    )?;
    drop(client);
    if let Some(existing) = existing {
        return if existing.amount == amount.get() {
            Ok(Placed {
                created: false,
                order: existing,
            })
        } else {
            Err(CommandError::IdempotencyKeyReused)
        };
    }
    let user = user.ok_or(CommandError::UnknownUser)?;
    let event = Event::OrderPlaced(OrderPlaced {
        out_trade_no: out_trade_no.as_str().to_owned(),
        user_id,
        openid: user.openid,
        kind,
        amount: amount.get(),
        currency: "CNY".into(),
        description: description.into_inner(),
        appid: ctx.pay.appid().to_owned(),
        mchid: ctx.pay.mchid().to_owned(),
        expires_at: ctx.now() + ctx.order_ttl,
    });
    let appended = ctx
        .record_and_wait(&event, request_id, &event.msg_id(None))
        .await?;
    let order = orders::get(&**ctx.pool.get().await?, out_trade_no.as_str())
        .await?
        .ok_or_else(|| {
            CommandError::internal("a placed order is missing after its event applied")
        })?;
    if order.user_id != user_id || order.amount != amount.get() {
        // Another request took this number first (same key, other body).
        return Err(CommandError::IdempotencyKeyReused);
    }
    Ok(Placed {
        created: !appended.duplicate,
        order,
    })
}

/// Places a recharge of the wallet and gets its prepay: the placed recharge (read back
/// with its prepay) and `wx.requestPayment`'s params.
pub async fn place_recharge(
    ctx: &Ctx,
    user_id: Uuid,
    key: Option<&str>,
    amount: Fen,
    request_id: &str,
) -> Result<(Placed, PayParams), CommandError> {
    let description = Description::parse("钱包充值 wallet recharge").expect("a valid constant");
    let new = NewOrder {
        user_id,
        key,
        kind: OrderKind::Recharge,
        amount,
        description,
    };
    let Placed { created, order } = place(ctx, new, request_id).await?;
    let payment = wechat_pay(ctx, &order, request_id).await?;
    // Read back so the answer shows the order with its prepay.
    let order = orders::get(&**ctx.pool.get().await?, &order.out_trade_no)
        .await?
        .unwrap_or(order);
    Ok((Placed { created, order }, payment))
}

/// An order by its number (as an admin sees orders: anyone's).
pub async fn order(ctx: &Ctx, no: &str) -> Result<Order, CommandError> {
    let no = OutTradeNo::parse(no).map_err(|_| CommandError::OrderNotFound)?;
    orders::get(&**ctx.pool.get().await?, no.as_str())
        .await?
        .ok_or(CommandError::OrderNotFound)
}

/// The caller's order; another user's order is not found either (no probing).
pub async fn own_order(ctx: &Ctx, user_id: Uuid, no: &str) -> Result<Order, CommandError> {
    let no = OutTradeNo::parse(no).map_err(|_| CommandError::OrderNotFound)?;
    orders::get(&**ctx.pool.get().await?, no.as_str())
        .await?
        .filter(|o| o.user_id == user_id)
        .ok_or(CommandError::OrderNotFound)
}

/// Gets WeChat's prepay id for a payable order, records it (`prepay.issued`), and signs
/// `wx.requestPayment`'s params.
pub async fn wechat_pay(
    ctx: &Ctx,
    order: &Order,
    request_id: &str,
) -> Result<PayParams, CommandError> {
    payable(ctx, order)?;
    let prepay_id = ctx
        .jsapi_prepay(&Prepay {
            out_trade_no: &order.out_trade_no,
            description: &order.description,
            amount: order.amount,
            openid: &order.openid,
            time_expire: order.expires_at,
        })
        .await?;
    if order.prepay_id.as_deref() != Some(prepay_id.as_str()) {
        let event = Event::PrepayIssued(PrepayIssued {
            out_trade_no: order.out_trade_no.clone(),
            prepay_id: prepay_id.clone(),
        });
        let appended = ctx.record(&event, request_id, &event.msg_id(None)).await?;
        // The params do not depend on the fold; waiting keeps a following GET consistent.
        let _ = ctx.wait_for(appended.seq).await;
    }
    Ok(ctx.pay_params(&prepay_id))
}

/// An order can still be paid: not paid, not closed, not expired.
pub(super) fn payable(ctx: &Ctx, order: &Order) -> Result<(), CommandError> {
    if order.state.is_paid() {
        return Err(CommandError::OrderPaid);
    }
    if order.state == OrderState::Closed {
        return Err(CommandError::OrderClosed);
    }
    if order.expires_at <= ctx.now() {
        return Err(CommandError::OrderExpired);
    }
    Ok(())
}
