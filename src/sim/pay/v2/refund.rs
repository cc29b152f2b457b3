//! The simulator's v2 refund endpoints: `/secapi/pay/refund` and `/pay/refundquery`.

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{
    super::{
        refunds::{self, RefundFault},
        Pay,
    },
    wire::{digits, fen, refused},
    V2Payment, V2Refund, V2World,
};
use crate::wechat::pay::v2::xml::Fields;

/// `POST /secapi/pay/refund` → accepted (the refund stays PROCESSING until
/// `/sim/pay/v2/refund-notify` settles it); a repeated `out_refund_no` is the same refund.
/// The refund faults of `/sim/pay/refund-reject` and `/sim/pay/refund-lose` apply here too.
pub(super) async fn refund(State(pay): State<Pay>, body: Bytes) -> Response {
    let req = match pay.v2_request(&body).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let f = &req.fields;
    let no = f.get("out_trade_no").unwrap_or_default().to_owned();
    let out_refund_no = f.get("out_refund_no").unwrap_or_default().to_owned();
    let (Some(total_fee), Some(refund_fee)) = (fen(f.get("total_fee")), fen(f.get("refund_fee")))
    else {
        return refused("total_fee 或 refund_fee 参数格式错误");
    };
    if !(1..=64).contains(&out_refund_no.len()) {
        return refused("out_refund_no 参数格式错误");
    }
    let fault = refunds::take_fault(&pay).await;
    let mut world = pay.v2.world.lock().await;
    world.stats.refund += 1;
    if let Some(RefundFault::Reject(code, message)) = &fault {
        drop(world);
        return pay.v2_answer(req.sign_type, Err((code, message)));
    }
    let outcome = settle_refund_request(&mut world, &no, &out_refund_no, total_fee, refund_fee, f);
    drop(world);
    if let Some(RefundFault::Lose) = fault {
        return refunds::lost_answer();
    }
    pay.v2_answer(req.sign_type, outcome)
}

pub(super) fn settle_refund_request(
    world: &mut V2World,
    no: &str,
    out_refund_no: &str,
    total_fee: i64,
    refund_fee: i64,
    f: &Fields,
) -> Result<Vec<(&'static str, String)>, (&'static str, &'static str)> {
    let Some(order) = world.orders.get_mut(no) else {
        return Err(("ORDERNOTEXIST", "订单不存在"));
    };
    let Some(paid) = &order.paid else {
        return Err(("TRADE_STATE_ERROR", "订单状态错误"));
    };
    if total_fee != paid.total_fee {
        return Err(("INVALID_REQUEST", "订单金额与支付金额不一致"));
    }
    let answer = |refund: &V2Refund, paid: &V2Payment| {
        vec![
            ("transaction_id", paid.transaction_id.clone()),
            ("out_trade_no", no.to_owned()),
            ("out_refund_no", out_refund_no.to_owned()),
            ("refund_id", refund.refund_id.clone()),
            ("refund_fee", refund.refund_fee.to_string()),
            ("total_fee", paid.total_fee.to_string()),
            ("cash_fee", paid.total_fee.to_string()),
            ("cash_refund_fee", refund.refund_fee.to_string()),
        ]
    };
    if let Some(existing) = world.refunds.get(out_refund_no) {
        return if existing.out_trade_no == no && existing.refund_fee == refund_fee {
            Ok(answer(existing, paid))
        } else {
            Err(("INVALID_REQUEST", "退款单号重复，参数不一致"))
        };
    }
    if refund_fee > paid.total_fee - order.refunded {
        return Err(("INVALID_REQUEST", "退款金额大于支付金额"));
    }
    order.refunded += refund_fee;
    let refund = V2Refund {
        out_trade_no: no.to_owned(),
        refund_id: digits("5030", 25),
        refund_fee,
        status: "PROCESSING",
        success_time: None,
        notify_url: f
            .non_empty("notify_url")
            .unwrap_or(&order.params.notify_url)
            .to_owned(),
        refund_desc: f.get("refund_desc").unwrap_or_default().to_owned(),
    };
    let fields = answer(&refund, paid);
    world.refunds.insert(out_refund_no.to_owned(), refund);
    Ok(fields)
}

/// `POST /pay/refundquery` by `out_refund_no` → that refund at index 0 (or a 5xx, when
/// `/sim/pay/refund-query-fail` armed it).
pub(super) async fn refundquery(State(pay): State<Pay>, body: Bytes) -> Response {
    let req = match pay.v2_request(&body).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let out_refund_no = req.fields.get("out_refund_no").unwrap_or_default();
    let fail = refunds::take_query_fault(&pay).await;
    let mut world = pay.v2.world.lock().await;
    world.stats.refundquery += 1;
    if fail {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let outcome = world
        .refunds
        .get(out_refund_no)
        .and_then(|r| {
            let order = world.orders.get(&r.out_trade_no)?;
            let paid = order.paid.as_ref()?;
            let mut fields = vec![
                ("out_trade_no", r.out_trade_no.clone()),
                ("transaction_id", paid.transaction_id.clone()),
                ("total_fee", paid.total_fee.to_string()),
                ("cash_fee", paid.total_fee.to_string()),
                ("refund_count", "1".to_owned()),
                ("out_refund_no_0", out_refund_no.to_owned()),
                ("refund_id_0", r.refund_id.clone()),
                ("refund_channel_0", "ORIGINAL".to_owned()),
                ("refund_fee_0", r.refund_fee.to_string()),
                ("refund_status_0", r.status.to_owned()),
                ("refund_recv_accout_0", "支付用户的零钱".to_owned()),
            ];
            if let Some(t) = &r.success_time {
                fields.push(("refund_success_time_0", t.clone()));
            }
            Some(fields)
        })
        .ok_or(("REFUNDNOTEXIST", "退款订单查询失败"));
    drop(world);
    pay.v2_answer(req.sign_type, outcome)
}
