//! The OpenAPI 3.1 document `GET /openapi.json` serves, generated from the API's own
//! types (their `utoipa::ToSchema` derives), one table of operations ([`operations`]) and
//! the table of error codes ([`ErrorCode`]): each operation lists, per status, the codes
//! it can answer.

use std::{borrow::Cow, collections::BTreeMap};

use axum::http::Method;
use utoipa::{
    openapi::{
        header::HeaderBuilder,
        path::{
            HttpMethod, Operation as PathOperation, OperationBuilder, Parameter, ParameterBuilder,
            ParameterIn,
        },
        request_body::RequestBodyBuilder,
        response::{ResponseBuilder, ResponsesBuilder},
        schema::{
            AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
            Type,
        },
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
        ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr,
        Required,
    },
    IntoParams, PartialSchema, ToSchema,
};

use super::{admin, admin_users, codes::ErrorCode, orders, user_view, users};
use crate::{
    events::OrderKind,
    fold::{ledger::EntryKind, OrderState, PaidWith, RefundState},
    wechat::pay::PayParams,
};

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anyone,
    /// A bearer token from `/v1/auth/login`: `missing_token`, `invalid_token`, `token_expired`.
    User,
    /// `auth.admin_token`: `admin_disabled`, `invalid_admin_token`.
    Admin,
}

/// The layers in front of a route, which answer errors of their own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// The API's: the body limit (`body_too_large`), the deadlines (`timeout`), and the
    /// internal error any handler may end in.
    Api,
    /// The notifies': their own deadlines (`timeout`); refusals in WeChat's shape.
    Webhook,
    /// None (`/metrics`, merged after the API's layers).
    Bare,
}

/// A path parameter or a header an operation takes.
#[derive(Clone, Copy)]
enum Param {
    /// `{out_trade_no}`: one that does not parse is `order_not_found`.
    OutTradeNo,
    /// `{user_id}`: one that is not a UUID is `invalid_field`.
    UserId,
    /// The optional `Idempotency-Key`: `invalid_idempotency_key`.
    IdempotencyKey,
}

/// A request or answer body.
enum Body {
    /// JSON of this schema (a `$ref` to `components`, or inline), with the components
    /// it needs.
    Json(RefOr<Schema>, Vec<(String, RefOr<Schema>)>),
    /// Another media type.
    Other(&'static str, RefOr<Schema>),
    /// No body.
    Empty,
}

/// JSON of type `T`, as a `$ref` to its component.
fn json<T: ToSchema>() -> Body {
    let mut components = Vec::new();
    T::schemas(&mut components);
    components.push((T::name().into_owned(), T::schema()));
    Body::Json(Ref::from_schema_name(T::name()).into(), components)
}

/// An answer of an operation other than an error of the table.
struct Answer {
    status: u16,
    description: &'static str,
    body: Body,
}

/// One operation of the API.
pub(super) struct Operation {
    method: Method,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    caller: Caller,
    edge: Edge,
    params: Vec<Param>,
    other_params: Vec<Parameter>,
    request: Option<Body>,
    answers: Vec<Answer>,
    /// The codes it answers beyond those its caller, parameters, body, rate limit and edge
    /// imply.
    errors: Vec<ErrorCode>,
    limited: bool,
}

impl Operation {
    fn new(method: Method, path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self {
            method,
            path,
            id,
            summary,
            description: None,
            caller: Caller::Anyone,
            edge: Edge::Api,
            params: Vec::new(),
            other_params: Vec::new(),
            request: None,
            answers: Vec::new(),
            errors: Vec::new(),
            limited: false,
        }
    }

    fn get(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::GET, path, id, summary)
    }

    fn post(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::POST, path, id, summary)
    }

    fn put(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::PUT, path, id, summary)
    }

    fn user(self) -> Self {
        Self {
            caller: Caller::User,
            ..self
        }
    }

    fn admin(self) -> Self {
        Self {
            caller: Caller::Admin,
            ..self
        }
    }

    fn edge(self, edge: Edge) -> Self {
        Self { edge, ..self }
    }

    fn describe(self, description: &'static str) -> Self {
        Self {
            description: Some(description),
            ..self
        }
    }

    fn params(self, params: &[Param]) -> Self {
        Self {
            params: params.to_vec(),
            ..self
        }
    }

    fn other_params(self, other_params: Vec<Parameter>) -> Self {
        Self {
            other_params,
            ..self
        }
    }

    fn request(self, body: Body) -> Self {
        Self {
            request: Some(body),
            ..self
        }
    }

    fn answer(mut self, status: u16, description: &'static str, body: Body) -> Self {
        self.answers.push(Answer {
            status,
            description,
            body,
        });
        self
    }

    fn errors(self, errors: &[ErrorCode]) -> Self {
        Self {
            errors: errors.to_vec(),
            ..self
        }
    }

    /// Counted against a rate limit: `rate_limited` with `Retry-After`.
    fn limited(self) -> Self {
        Self {
            limited: true,
            ..self
        }
    }

    /// Every code of the table it can answer, in table order.
    fn codes(&self) -> Vec<ErrorCode> {
        use ErrorCode as E;
        let mut codes = self.errors.clone();
        codes.extend_from_slice(match self.caller {
            Caller::Anyone => &[],
            Caller::User => &[E::MissingToken, E::InvalidToken, E::TokenExpired],
            Caller::Admin => &[E::AdminDisabled, E::InvalidAdminToken],
        });
        codes.extend_from_slice(match self.edge {
            Edge::Api => &[E::BodyTooLarge, E::BodyTimeout, E::Timeout, E::Internal],
            Edge::Webhook => &[E::BodyTimeout, E::Timeout],
            Edge::Bare => &[],
        });
        for param in &self.params {
            codes.push(match param {
                Param::OutTradeNo => E::OrderNotFound,
                Param::UserId => E::InvalidField,
                Param::IdempotencyKey => E::InvalidIdempotencyKey,
            });
        }
        if !self.other_params.is_empty() && self.other_params.iter().any(is_query) {
            codes.push(E::InvalidQuery);
        }
        if matches!(self.request, Some(Body::Json(..))) {
            codes.extend([E::InvalidField, E::MalformedJson, E::UnsupportedMediaType]);
        }
        if self.limited {
            codes.push(E::RateLimited);
        }
        codes.sort_by_key(|c| ErrorCode::ALL.iter().position(|a| a == c));
        codes.dedup();
        codes
    }
}

fn is_query(p: &Parameter) -> bool {
    p.parameter_in == ParameterIn::Query
}

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
        Operation::get(
            "/readyz",
            "readyz",
            "Readiness: migrations, NATS, Postgres.",
        )
        .answer(200, "Ready", Body::Json(readiness().into(), Vec::new()))
        .answer(503, "Not ready", Body::Json(readiness().into(), Vec::new())),
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
            Body::Other(crate::metrics::CONTENT_TYPE, string().into()),
        ),
        Operation::get("/openapi.json", "openapi", "This document.").answer(
            200,
            "OpenAPI 3.1",
            Body::Json(ObjectBuilder::new().into(), Vec::new()),
        ),
    ]
}

/// The document, with amounts bounded by `max_amount_fen` (`pay.max_amount_fen`).
pub fn document(max_amount_fen: i64) -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    for op in operations() {
        let built = build(&op, &mut schemas);
        paths.add_path_operation(op.path, vec![http_method(&op.method)], built);
    }
    for (name, schema) in schemas.iter_mut() {
        if matches!(name.as_str(), "PlaceOrder" | "PlaceRecharge" | "RefundBody") {
            bound_amount(schema, max_amount_fen);
        }
    }
    schemas.insert("ErrorCode".into(), error_code_schema().into());
    schemas.insert(
        "Error".into(),
        envelope(Ref::from_schema_name("ErrorCode").into()).into(),
    );
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token from /v1/auth/login."))
                    .build(),
            ),
        )
        .security_scheme(
            "admin",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("auth.admin_token."))
                    .build(),
            ),
        )
        .build();
    let fallback: Vec<String> = ErrorCode::FALLBACK
        .iter()
        .map(|c| format!("{} `{}`", c.status().as_u16(), c.as_str()))
        .collect();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("wxledger")
                .version("1")
                .description(Some(format!(
                    "The money side of a WeChat mini program. Every error answers \
                     {{\"error\":{{\"code\",\"message\"}}}} with a stable code \
                     (components.schemas.ErrorCode); each operation lists, per status, \
                     the codes it answers. A request no operation matches answers {}.",
                    fallback.join(" or ")
                )))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The document as pretty JSON.
pub fn render(max_amount_fen: i64) -> String {
    document(max_amount_fen)
        .to_pretty_json()
        .expect("an OpenAPI document serializes")
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => unreachable!("the router uses no other method"),
    }
}

/// One status's answers and errors.
#[derive(Default)]
struct Status {
    descriptions: Vec<String>,
    /// Schemas by media type.
    content: BTreeMap<&'static str, Vec<RefOr<Schema>>>,
}

fn build(op: &Operation, schemas: &mut BTreeMap<String, RefOr<Schema>>) -> PathOperation {
    let mut statuses: BTreeMap<u16, Status> = BTreeMap::new();
    let mut add_body = |status: &mut Status, body: &Body| match body {
        Body::Json(schema, components) => {
            schemas.extend(components.iter().cloned());
            status
                .content
                .entry("application/json")
                .or_default()
                .push(schema.clone());
        }
        Body::Other(media, schema) => status
            .content
            .entry(media)
            .or_default()
            .push(schema.clone()),
        Body::Empty => {}
    };
    for answer in &op.answers {
        let status = statuses.entry(answer.status).or_default();
        status.descriptions.push(answer.description.to_owned());
        add_body(status, &answer.body);
    }
    let codes = op.codes();
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in &codes {
        by_status
            .entry(code.status().as_u16())
            .or_default()
            .push(*code);
    }
    for (status, codes) in &by_status {
        let entry = statuses.entry(*status).or_default();
        for code in codes {
            entry
                .descriptions
                .push(format!("`{}`: {}", code.as_str(), code.meaning()));
        }
        let names = codes.iter().map(|c| c.as_str()).collect::<Vec<_>>();
        let code = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .into();
        let schema = envelope(code).into();
        add_body(entry, &Body::Json(schema, Vec::new()));
    }
    let mut responses = ResponsesBuilder::new();
    for (status, answers) in statuses {
        let mut response = ResponseBuilder::new().description(answers.descriptions.join("\n\n"));
        for (media, mut bodies) in answers.content {
            let schema = if bodies.len() == 1 {
                bodies.remove(0)
            } else {
                bodies
                    .into_iter()
                    .fold(OneOfBuilder::new(), OneOfBuilder::item)
                    .into()
            };
            response = response.content(media, Content::new(Some(schema)));
        }
        if status == 429 {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some("Seconds to wait."))
                    .build(),
            );
        }
        responses = responses.response(status.to_string(), response.build());
    }

    let mut parameters: Vec<Parameter> = op.params.iter().map(|p| parameter(*p)).collect();
    parameters.extend(op.other_params.iter().cloned());
    let request = op.request.as_ref().map(|body| {
        let mut status = Status::default();
        add_body(&mut status, body);
        let mut request = RequestBodyBuilder::new().required(Some(Required::True));
        for (media, mut bodies) in status.content {
            request = request.content(media, Content::new(Some(bodies.remove(0))));
        }
        request.build()
    });
    let security = match op.caller {
        Caller::Anyone => None,
        Caller::User => Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]),
        Caller::Admin => Some(vec![SecurityRequirement::new(
            "admin",
            Vec::<String>::new(),
        )]),
    };
    OperationBuilder::new()
        .operation_id(Some(op.id))
        .summary(Some(op.summary))
        .description(op.description)
        .parameters(Some(parameters).filter(|p| !p.is_empty()))
        .request_body(request)
        .responses(responses.build())
        .securities(security)
        .build()
}

fn parameter(param: Param) -> Parameter {
    let (name, place, required, schema, description) = match param {
        Param::OutTradeNo => (
            "out_trade_no",
            ParameterIn::Path,
            true,
            string()
                .min_length(Some(6))
                .max_length(Some(32))
                .pattern(Some("^[A-Za-z0-9_-]{6,32}$")),
            "The order number; one that does not parse is `order_not_found`.",
        ),
        Param::UserId => (
            "user_id",
            ParameterIn::Path,
            true,
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            "The user's id; one that is not a UUID is `invalid_field`.",
        ),
        Param::IdempotencyKey => (
            "Idempotency-Key",
            ParameterIn::Header,
            false,
            string()
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some("^[\\x21-\\x7E]{1,128}$")),
            "Retrying with the same key returns the same result and appends nothing new.",
        ),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn wechatpay_headers() -> Vec<Parameter> {
    [
        ("Wechatpay-Serial", true),
        ("Wechatpay-Signature", true),
        ("Wechatpay-Timestamp", true),
        ("Wechatpay-Nonce", true),
        ("Wechatpay-Signature-Type", false),
    ]
    .into_iter()
    .map(|(name, required)| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(if required {
                Required::True
            } else {
                Required::False
            })
            .schema(Some(string()))
            .build()
    })
    .collect()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// An object whose every property is required and no other is allowed.
fn closed(properties: Vec<(&str, RefOr<Schema>)>) -> ObjectBuilder {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in properties {
        object = object.property(name, schema).required(name);
    }
    object
}

/// `{"error":{"code","message"}}` with `code` of this schema.
fn envelope(code: RefOr<Schema>) -> ObjectBuilder {
    closed(vec![(
        "error",
        closed(vec![("code", code), ("message", string().into())]).into(),
    )])
}

/// Every code of the table, each with its status and meaning in the description.
fn error_code_schema() -> ObjectBuilder {
    let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    names.dedup();
    let meanings: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| {
            format!(
                "- `{}` ({}): {}",
                c.as_str(),
                c.status().as_u16(),
                c.meaning()
            )
        })
        .collect();
    string()
        .enum_values(Some(names))
        .description(Some(meanings.join("\n")))
}

fn wechat_fail() -> Body {
    let schema = closed(vec![
        ("code", string().enum_values(Some(["FAIL"])).into()),
        ("message", string().into()),
    ]);
    Body::Json(schema.into(), Vec::new())
}

fn xml() -> Body {
    Body::Other("text/xml", string().into())
}

fn health() -> ObjectBuilder {
    closed(vec![("status", string().enum_values(Some(["ok"])).into())])
}

fn readiness() -> ObjectBuilder {
    let word = |words: [&str; 2]| RefOr::from(string().enum_values(Some(words)));
    closed(vec![
        ("status", word(["ready", "not_ready"])),
        (
            "checks",
            closed(vec![
                ("nats", word(["up", "down"])),
                ("postgres", word(["up", "down"])),
                ("migrations", word(["applied", "pending"])),
            ])
            .into(),
        ),
        (
            "projector_checkpoint",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .into(),
        ),
    ])
}

/// Sets the maximum of an `amount` property to `pay.max_amount_fen`.
fn bound_amount(schema: &mut RefOr<Schema>, max_amount_fen: i64) {
    if let RefOr::T(Schema::Object(object)) = schema {
        if let Some(RefOr::T(Schema::Object(amount))) = object.properties.get_mut("amount") {
            amount.maximum = Some(max_amount_fen.into());
        }
    }
}

/// `POST /v1/me/phone`'s body is one of two forms, as `bind_phone` reads it: the fields
/// of the other form may be absent or `null`.
impl PartialSchema for users::PhoneRequest {
    fn schema() -> RefOr<Schema> {
        let null = || RefOr::from(ObjectBuilder::new().schema_type(Type::Null));
        let form = |title: &str, given: Vec<(&str, RefOr<Schema>)>, absent: &[&str]| {
            let mut object = closed(given).title(Some(title));
            for name in absent {
                object = object.property(*name, null());
            }
            object
        };
        let code = string()
            .min_length(Some(1))
            .max_length(Some(128))
            .pattern(Some("^[A-Za-z0-9_-]{1,128}$"))
            .description(Some("The code of getPhoneNumber."))
            .into();
        OneOfBuilder::new()
            .item(form(
                "PhoneCode",
                vec![("code", code)],
                &["encrypted_data", "iv"],
            ))
            .item(form(
                "EncryptedPhone",
                vec![("encrypted_data", string().into()), ("iv", string().into())],
                &["code"],
            ))
            .description(Some(
                "{code} (getPhoneNumber's code), or {encrypted_data, iv} under the \
                 session key of the last login.",
            ))
            .into()
    }
}

impl ToSchema for users::PhoneRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PhoneRequest")
    }
}

/// Each of a type's names, listed once with a match that stops compiling when a variant
/// is added and not listed.
macro_rules! names {
    ($ty:ident: $($variant:ident),+) => {{
        let _exhaustive = |x: $ty| match x {
            $($ty::$variant)|+ => (),
        };
        [$($ty::$variant),+].map($ty::as_str)
    }};
}

/// `kind` of an order.
pub(super) fn order_kind() -> ObjectBuilder {
    string().enum_values(Some(names!(OrderKind: Order, Recharge)))
}

/// `state` of an order.
pub(super) fn order_state() -> ObjectBuilder {
    string().enum_values(Some(names!(OrderState:
        Created, PrepayIssued, Paid, Closed, PayError, PartiallyRefunded, Refunded)))
}

/// `paid_with` of an order: `null` until paid.
pub(super) fn paid_with() -> ObjectBuilder {
    let mut names: Vec<Option<&str>> = names!(PaidWith: Wechat, Wallet).map(Some).to_vec();
    names.push(None);
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::Array(vec![
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(names))
}

/// `state` of a refund.
pub(super) fn refund_state() -> ObjectBuilder {
    string().enum_values(Some(names!(RefundState:
        Requested, Processing, Abnormal, Succeeded, Closed, Rejected, Refused)))
}

/// `kind` of a ledger posting.
pub(super) fn entry_kind() -> ObjectBuilder {
    string().enum_values(Some(names!(EntryKind:
        Recharge, Sale, Suspense, WalletPayment, RefundReserve, Refund, RefundRelease)))
}

/// The currency: always CNY.
pub(super) fn currency() -> ObjectBuilder {
    string().enum_values(Some(["CNY"]))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(&render(5_000)).unwrap()
    }

    #[test]
    fn is_openapi_3_1_with_unique_operation_ids() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "{method} {path}: {id} repeats");
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            }
        }
        assert_eq!(ids.len(), operations().len());
    }

    #[test]
    fn every_ref_names_a_component() {
        let doc = doc();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "no component {name}");
        }
    }

    #[test]
    fn every_code_is_answered_by_some_operation() {
        let answered: BTreeSet<ErrorCode> = operations().iter().flat_map(|o| o.codes()).collect();
        for code in ErrorCode::ALL {
            assert!(
                answered.contains(code) || ErrorCode::FALLBACK.contains(code),
                "{code:?} is answered by no operation"
            );
        }
    }

    #[test]
    fn amounts_are_bounded_by_the_setting() {
        let doc = doc();
        for name in ["PlaceOrder", "PlaceRecharge", "RefundBody"] {
            let amount = &doc["components"]["schemas"][name]["properties"]["amount"];
            assert_eq!(amount["type"], "integer", "{name}");
            assert_eq!(amount["minimum"], 1, "{name}");
            assert_eq!(amount["maximum"], 5_000, "{name}");
        }
    }

    #[test]
    fn request_bodies_refuse_unknown_fields() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        for name in [
            "LoginRequest",
            "ProfileRequest",
            "PlaceOrder",
            "PlaceRecharge",
            "RefundBody",
        ] {
            assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
        }
        for form in schemas["PhoneRequest"]["oneOf"].as_array().unwrap() {
            assert_eq!(form["additionalProperties"], false);
        }
    }

    #[test]
    fn the_document_is_deterministic() {
        assert_eq!(render(7), render(7));
    }
}
