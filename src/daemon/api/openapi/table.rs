//! The table of operations: every route the router serves, with its answers and the
//! error codes it answers beyond those its kind implies.

use utoipa::{
    openapi::{path::ParameterIn, schema::ObjectBuilder},
    IntoParams,
};

use super::{
    operation::{json, Body, Edge, Operation, Param},
    schemas::{
        health, readiness_api, readiness_webhooks, string, wechat_fail, wechatpay_headers, xml,
    },
};
use crate::{
    daemon::api::{admin, admin_users, codes::ErrorCode, orders, user_view, users},
    wechat::pay::PayParams,
};

/// Every operation the router serves.
pub(super) fn operations() -> Vec<Operation> {
    use ErrorCode as E;
    use Param::*;
    const WECHAT: &[ErrorCode] = &[
        E::RateLimited,
        E::RiskyUser,
        E::WechatBusy,
        E::WechatUnavailable,
        E::WechatError,
    ];
    const PAY: &[ErrorCode] = &[
        E::WechatPayError,
        E::WechatPayUnavailable,
        E::WechatPayUnverified,
    ];
    const PAYABLE: &[ErrorCode] = &[E::OrderPaid, E::OrderClosed, E::OrderExpired];
    let with = |a: &[ErrorCode], b: &[ErrorCode]| [a, b].concat();
    // A readiness endpoint answers its schema with 200 when ready, 503 when not.
    let ready = |op: Operation, schema: fn() -> ObjectBuilder| {
        let body = || Body::Json(schema().into(), Vec::new());
        op.answer(200, "Ready", body())
            .answer(503, "Not ready; `reasons` says why", body())
    };
    vec![
        Operation::post(
            "/v1/auth/login",
            "login",
            "Exchange a wx.login code for a bearer token; registers the user on first login.",
        )
        .limited()
        .request(json::<users::LoginRequest>())
        .answer(200, "Logged in", json::<users::LoginResponse>())
        .errors(&with(
            WECHAT,
            &[E::InvalidCode, E::UserErased, E::Unavailable],
        )),
        Operation::get(
            "/v1/me",
            "getMe",
            "The caller, with the phone masked and the wallet balance.",
        )
        .user()
        .answer(200, "The user", json::<user_view::UserView>())
        .errors(&[E::UserNotFound, E::Unavailable]),
        Operation::post(
            "/v1/me/phone",
            "bindPhone",
            "Bind the phone number WeChat vouches for: {code} or {encrypted_data, iv}.",
        )
        .user()
        .limited()
        .params(&[IdempotencyKey])
        .request(json::<users::PhoneRequest>())
        .answer(200, "Bound", json::<user_view::UserView>())
        .errors(&with(
            WECHAT,
            &[
                E::InvalidPhoneCode,
                E::SessionExpired,
                E::InvalidEncryptedData,
                E::WatermarkMismatch,
                E::PhoneTaken,
                E::UserNotFound,
                E::UserErased,
                E::Unavailable,
                E::NotYetApplied,
            ],
        )),
        Operation::put(
            "/v1/me/profile",
            "updateProfile",
            "Set the nickname and avatar.",
        )
        .user()
        .params(&[IdempotencyKey])
        .request(json::<users::ProfileRequest>())
        .answer(200, "Updated", json::<user_view::UserView>())
        .errors(&[
            E::UserNotFound,
            E::UserErased,
            E::Unavailable,
            E::NotYetApplied,
        ]),
        Operation::post(
            "/v1/orders",
            "placeOrder",
            "Place an order (amount in fen).",
        )
        .user()
        .params(&[IdempotencyKey])
        .request(json::<orders::PlaceOrder>())
        .answer(201, "Placed", json::<orders::OrderView>())
        .answer(
            200,
            "The same order again (Idempotency-Key seen)",
            json::<orders::OrderView>(),
        )
        .errors(&[
            E::IdempotencyKeyReused,
            E::UnknownUser,
            E::Unavailable,
            E::NotYetApplied,
        ]),
        Operation::get(
            "/v1/orders/{out_trade_no}",
            "getOrder",
            "One of the caller's orders.",
        )
        .user()
        .params(&[OutTradeNo])
        .answer(200, "The order", json::<orders::OrderView>())
        .errors(&[E::Unavailable]),
        Operation::post(
            "/v1/orders/{out_trade_no}/wechat-pay",
            "wechatPay",
            "WeChat Pay JSAPI prepay; answers exactly wx.requestPayment's params.",
        )
        .user()
        .limited()
        .params(&[OutTradeNo])
        .answer(200, "Params", json::<PayParams>())
        .errors(&[PAYABLE, PAY, &[E::Unavailable]].concat()),
        Operation::post(
            "/v1/orders/{out_trade_no}/balance-pay",
            "balancePay",
            "Pay the order from the caller's wallet.",
        )
        .describe(
            "Decided by the fold in stream order (two payments racing for one balance \
             cannot both succeed); answers once decided.",
        )
        .user()
        .limited()
        .params(&[OutTradeNo])
        .answer(
            200,
            "Paid (or already paid from the wallet)",
            json::<orders::OrderView>(),
        )
        .errors(&with(
            PAYABLE,
            &[
                E::NotPayableFromWallet,
                E::InsufficientBalance,
                E::Unavailable,
                E::NotYetApplied,
            ],
        )),
        Operation::get(
            "/v1/me/orders",
            "listMyOrders",
            "The caller's newest 100 orders.",
        )
        .user()
        .answer(200, "Orders", json::<orders::OrderList>())
        .errors(&[E::Unavailable]),
        Operation::get(
            "/v1/me/ledger",
            "getMyLedger",
            "The wallet's balance and newest 100 postings.",
        )
        .user()
        .answer(200, "Ledger", json::<orders::LedgerView>())
        .errors(&[E::Unavailable]),
        Operation::post(
            "/v1/recharges",
            "placeRecharge",
            "Place a wallet recharge and get its wx.requestPayment params.",
        )
        .user()
        .limited()
        .params(&[IdempotencyKey])
        .request(json::<orders::PlaceRecharge>())
        .answer(201, "Placed", json::<orders::RechargeView>())
        .answer(
            200,
            "The same recharge again (Idempotency-Key seen)",
            json::<orders::RechargeView>(),
        )
        .errors(
            &[
                PAYABLE,
                PAY,
                &[
                    E::IdempotencyKeyReused,
                    E::UnknownUser,
                    E::Unavailable,
                    E::NotYetApplied,
                ],
            ]
            .concat(),
        ),
        Operation::post(
            "/v1/admin/orders/{out_trade_no}/sync",
            "syncOrder",
            "Bring an order and its refunds up to date with WeChat Pay.",
        )
        .describe(
            "Queries WeChat Pay for the order (recording a final answer as \
             payment.queried) and brings its refunds up to date (sending again a refund \
             whose answer was lost; recording a changed status as refund.queried).",
        )
        .admin()
        .params(&[OutTradeNo])
        .answer(
            200,
            "WeChat's state and the order and refunds after it",
            json::<admin::SyncView>(),
        )
        .errors(&with(PAY, &[E::Unavailable, E::NotYetApplied])),
        Operation::post(
            "/v1/admin/orders/{out_trade_no}/refunds",
            "refundOrder",
            "Refund part or all of a paid order.",
        )
        .describe(
            "Checked here and again by the fold (which sets the amount aside), then sent \
             to WeChat Pay; an order paid from the wallet is refunded to the wallet at once.",
        )
        .admin()
        .limited()
        .params(&[OutTradeNo, IdempotencyKey])
        .request(json::<admin::RefundBody>())
        .answer(
            201,
            "Requested (usually processing; succeeded for a wallet-paid order)",
            json::<admin::RefundAnswer>(),
        )
        .answer(
            200,
            "The same refund again (out_refund_no or Idempotency-Key seen)",
            json::<admin::RefundAnswer>(),
        )
        .errors(&with(
            PAY,
            &[
                E::OutRefundNoTaken,
                E::OrderNotPaid,
                E::RefundExceedsPaid,
                E::InsufficientBalance,
                E::RefundRefused,
                E::RefundRejected,
                E::Unavailable,
                E::NotYetApplied,
            ],
        )),
        Operation::get(
            "/v1/admin/orders/{out_trade_no}/refunds",
            "listOrderRefunds",
            "The order's refunds, oldest first.",
        )
        .admin()
        .params(&[OutTradeNo])
        .answer(200, "Refunds", json::<admin::RefundList>())
        .errors(&[E::Unavailable]),
        Operation::get(
            "/v1/admin/failures",
            "listFailures",
            "The failure log, newest first.",
        )
        .admin()
        .other_params(admin::FailureQuery::into_params(|| {
            Some(ParameterIn::Query)
        }))
        .answer(200, "Failures", json::<admin::FailureList>())
        .errors(&[E::InvalidField, E::Unavailable]),
        Operation::get(
            "/v1/admin/users/{user_id}",
            "getUser",
            "A user as support sees them: phone masked; `erased: true` and nothing \
             personal once erased.",
        )
        .admin()
        .params(&[UserId])
        .answer(200, "The user", json::<user_view::UserView>())
        .errors(&[E::UserNotFound, E::Unavailable]),
        Operation::post(
            "/v1/admin/users/{user_id}/erase",
            "eraseUser",
            "Erase a user (crypto-shredding).",
        )
        .describe(
            "Destroys their data key, appends `user.erased`, waits until it applied. \
             Money records stay. Idempotent: a repeat answers 200 with `seq: null`.",
        )
        .admin()
        .params(&[UserId])
        .answer(200, "The erasure", json::<admin_users::ErasureView>())
        .errors(&[E::UserNotFound, E::Unavailable, E::NotYetApplied]),
        Operation::post(
            "/webhooks/wechatpay",
            "wechatPayNotify",
            "WeChat Pay v3 notifies; 204 once the verified, decrypted notify is durable \
             on the stream.",
        )
        .describe(
            "Payment (TRANSACTION.SUCCESS) and refund (REFUND.SUCCESS, REFUND.ABNORMAL, \
             REFUND.CLOSED) notifies. Refusals answer {\"code\":\"FAIL\",\"message\"} with \
             401 (signtest, unknown_serial, certificate_not_valid, bad_signature), 400 \
             (malformed, stale_timestamp, wrong_algorithm, undecryptable, \
             unsupported_event), 413 (too_large) or 503 (log_unavailable, \
             keys_unavailable: WeChat retries). The reason is the `outcome` label of \
             wxledger_notifies_total. Over limits.webhook_per_ip the answer is 429 \
             `rate_limited`, past limits.webhook_timeout_ms (below WeChat's 5 s) 408 or \
             503 `timeout`, both in the API's error envelope; WeChat retries either.",
        )
        .edge(Edge::Webhook)
        .limited()
        .other_params(wechatpay_headers())
        .request(Body::Json(ObjectBuilder::new().into(), Vec::new()))
        .answer(204, "Recorded (or already recorded)", Body::Empty)
        .answer(400, "Refused; nothing recorded", wechat_fail())
        .answer(401, "Refused; nothing recorded", wechat_fail())
        .answer(413, "Refused; nothing recorded", wechat_fail())
        .answer(503, "Not recorded; WeChat retries", wechat_fail()),
        Operation::post(
            "/webhooks/wechatpay/v2",
            "wechatPayV2Notify",
            "WeChat Pay API v2 (legacy merchants) XML notifies; 200 SUCCESS once the \
             event is durable on the stream.",
        )
        .describe(
            "Payment notifies (verified `sign`) and refund notifies (decrypted \
             `req_info`, then confirmed by a signed `refundquery`: the answer is recorded \
             as `refund.queried` v2 with the notify as a claim, and only the answer moves \
             money). Refusals answer `<xml><return_code>FAIL</return_code><return_msg>\
             ...</return_msg></xml>` with 401 (missing_sign, bad_signature), 400 \
             (malformed, not_utf8, unsupported_encoding, doctype_refused, entity_refused, \
             processing_instruction_refused, nested_element, duplicate_key, wrong_root, \
             trailing_content, not_success, wrong_sign_type, merchant_mismatch, \
             undecryptable, unsupported_event, refund_not_found: WeChat's refundquery \
             knows no such refund), 404 (v2_disabled: no pay.v2.api_key), 413 (too_large) \
             or 503 (log_unavailable, or query_unavailable: WeChat could not be asked \
             about a refund notify; WeChat retries). The reason is the `outcome` label of \
             wxledger_notifies_v2_total. Over limits.webhook_per_ip the answer is 429 \
             `rate_limited`, past limits.webhook_timeout_ms 408 or 503 `timeout`, both in \
             the API's error envelope; WeChat retries either.",
        )
        .edge(Edge::Webhook)
        .limited()
        .request(xml())
        .answer(200, "Recorded (or already recorded)", xml())
        .answer(400, "Refused; nothing recorded", xml())
        .answer(401, "Refused; nothing recorded", xml())
        .answer(404, "API v2 is not configured", xml())
        .answer(413, "Refused; nothing recorded", xml())
        .answer(503, "Not recorded; WeChat retries", xml()),
        Operation::get("/healthz", "healthz", "Liveness: the process answers.").answer(
            200,
            "Alive",
            Body::Json(health().into(), Vec::new()),
        ),
        ready(
            Operation::get(
                "/readyz",
                "readyz",
                "Readiness of everything this daemon serves: the API role's, as /readyz/api.",
            ),
            readiness_api,
        ),
        ready(
            Operation::get(
                "/readyz/api",
                "readyzApi",
                "Readiness of the API role (/v1/...): NATS answers a JetStream request, \
                 Postgres answers, migrations ran and the projector is at most \
                 projector.ready_max_lag_events behind.",
            ),
            readiness_api,
        ),
        ready(
            Operation::get(
                "/readyz/webhooks",
                "readyzWebhooks",
                "Readiness of the webhook role (/webhooks/...): NATS answers a JetStream \
                 request, the path every append takes. Postgres is not needed.",
            ),
            readiness_webhooks,
        ),
        Operation::get(
            "/metrics",
            "metrics",
            "OpenMetrics text (Prometheus); served here unless metrics.listen gives it a \
             listener of its own.",
        )
        .describe(
            "Requests by route template, method and status, process and build info, \
             NATS/Postgres up, pool, outbox, outbound WeChat calls, append and projector \
             timings, lag, sweeps, suspense, failure log.",
        )
        .edge(Edge::Bare)
        .answer(
            200,
            "Metrics",
            Body::Other(crate::daemon::metrics::CONTENT_TYPE, string().into()),
        ),
        Operation::get("/openapi.json", "openapi", "This document.").answer(
            200,
            "OpenAPI 3.1",
            Body::Json(ObjectBuilder::new().into(), Vec::new()),
        ),
    ]
}
