#!/usr/bin/env python3
"""Writes src/api/openapi.json: the API's OpenAPI 3.1 description.

Edit this file, run it, commit both. tests/it/operations.rs checks every route of the
router and every error code of src/api/ against the output.
"""
import json, pathlib

ERROR_CODES = {
    "invalid_field": "A field is missing, malformed or out of range (the message names it).",
    "malformed_json": "The body is not JSON of the expected shape.",
    "invalid_query": "The query string does not parse (the message names the parameter).",
    "unsupported_media_type": "The body is not application/json.",
    "body_too_large": "The body is over http.max_body_bytes.",
    "invalid_idempotency_key": "Idempotency-Key is not 1 to 128 visible ASCII characters.",
    "idempotency_key_reused": "The Idempotency-Key was used for a different request.",
    "missing_token": "No bearer token.",
    "invalid_token": "The bearer token is not valid.",
    "token_expired": "The bearer token expired; log in again.",
    "unknown_user": "The token's user is not known; log in again.",
    "user_not_found": "The user is not known.",
    "invalid_code": "The wx.login code is invalid, expired or used.",
    "invalid_phone_code": "The phone code is invalid, expired or used.",
    "invalid_encrypted_data": "encryptedData does not decrypt under the user's session key.",
    "session_expired": "No session key on file: log in again first.",
    "watermark_mismatch": "The phone data was issued to another app.",
    "phone_taken": "The phone number is bound to another user.",
    "rate_limited": "Too many requests: over a limits.* rate of wxledger (429 with Retry-After; nothing was called or recorded) or WeChat's (45011).",
    "timeout": "The body did not arrive within limits.body_read_timeout_ms (408; nothing recorded), or the request took longer than limits.request_timeout_ms (503; it may have been recorded: retry with the same Idempotency-Key).",
    "risky_user": "WeChat refused the user as risky.",
    "wechat_busy": "WeChat answered -1 after every retry.",
    "wechat_unavailable": "WeChat could not be reached.",
    "wechat_error": "WeChat answered another errcode.",
    "order_not_found": "No such order for this caller (also another user's order).",
    "order_paid": "The order is already paid.",
    "order_closed": "The order is closed.",
    "order_expired": "The order is past its expiry; place a new one.",
    "wechat_pay_error": "WeChat Pay refused the request, or answered something unreadable.",
    "wechat_pay_unavailable": "WeChat Pay could not be reached.",
    "wechat_pay_unverified": "WeChat Pay's answer failed signature verification; nothing was recorded.",
    "insufficient_balance": "The wallet does not hold the amount (a wallet payment, or the refund of a recharge already spent); nothing moved.",
    "not_payable_from_wallet": "A recharge cannot be paid from the wallet.",
    "order_not_paid": "Only a paid order can be refunded.",
    "refund_exceeds_paid": "The refunds (settled and in flight) would exceed what was paid.",
    "refund_rejected": "WeChat Pay refused the refund (the message has its code); the amount set aside went back.",
    "refund_refused": "The fold refused the refund (the message has its code); nothing moved.",
    "out_refund_no_taken": "This out_refund_no names a different refund.",
    "admin_disabled": "auth.admin_token is not set.",
    "invalid_admin_token": "The admin credential is missing or wrong.",
    "not_yet_applied": "Recorded, but the projection did not apply it within the timeout.",
    "unavailable": "NATS or Postgres is down; nothing was recorded; retry.",
    "not_found": "No such route.",
    "method_not_allowed": "The route does not take this method.",
    "internal": "A bug; the message names the request id.",
    "user_erased": "The user was erased at their request (crypto-shredding): nothing personal can be set or shown.",
}

def err(*codes):
    return {"description": "Error: one of " + ", ".join(codes),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

def ok(desc, schema=None, status="200"):
    r = {"description": desc}
    if schema:
        r["content"] = {"application/json": {"schema": schema}}
    return {status: r}

def body(schema):
    return {"required": True, "content": {"application/json": {"schema": schema}}}

ref = lambda n: {"$ref": f"#/components/schemas/{n}"}
bearer = [{"bearer": []}]
admin = [{"admin": []}]
idem = {"name": "Idempotency-Key", "in": "header", "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        "description": "Retrying with the same key returns the same result and appends nothing new."}
no = {"name": "out_trade_no", "in": "path", "required": True, "schema": {"type": "string"}}
user_id = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
auth_errors = ("missing_token", "invalid_token", "token_expired")
amount = {"type": "integer", "minimum": 1, "description": "Fen: a JSON integer (no fraction, no string), at most pay.max_amount_fen."}

limited = {"429": {"description": "rate_limited: over a limits.* rate; retry after Retry-After seconds. Nothing was called or recorded.",
    "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer", "minimum": 1}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}

def op(summary, responses, security=None, params=None, request=None, errors=(), rate_limited=False):
    o = {"summary": summary, "responses": dict(responses)}
    if errors:
        o["responses"]["4XX"] = err(*errors)
    if rate_limited:
        o["responses"].update(limited)
    o["responses"]["5XX"] = err("unavailable", "internal", "not_yet_applied", "timeout")
    if security is not None:
        o["security"] = security
    if params:
        o["parameters"] = params
    if request:
        o["requestBody"] = request
    return o

paths = {
 "/v1/auth/login": {"post": op("Exchange a wx.login code for a bearer token; registers on first login.",
     ok("Logged in", ref("Login")), request=body({"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}),
     errors=("invalid_field", "malformed_json", "invalid_code", "rate_limited", "risky_user", "user_erased"), rate_limited=True)},
 "/v1/me": {"get": op("The caller, with the phone masked and the wallet balance.", ok("The user", ref("User")), bearer, errors=auth_errors + ("unknown_user",))},
 "/v1/me/phone": {"post": op("Bind a phone number: {code} or {encrypted_data, iv}.", ok("Bound", ref("User")), bearer,
     request=body({"type": "object", "properties": {"code": {"type": "string"}, "encrypted_data": {"type": "string"}, "iv": {"type": "string"}}}),
     errors=auth_errors + ("invalid_field", "invalid_phone_code", "invalid_encrypted_data", "session_expired", "watermark_mismatch", "phone_taken", "user_erased"), rate_limited=True)},
 "/v1/me/profile": {"put": op("Set nickname and avatar.", ok("Updated", ref("User")), bearer,
     request=body({"type": "object", "required": ["nickname"], "properties": {"nickname": {"type": "string"}, "avatar_url": {"type": ["string", "null"]}}}),
     errors=auth_errors + ("invalid_field", "user_erased"))},
 "/v1/orders": {"post": op("Place an order (amount in fen).", {**ok("Placed", ref("Order"), "201"), **ok("The same order again (Idempotency-Key seen)", ref("Order"))}, bearer, [idem],
     body({"type": "object", "required": ["amount", "description"], "properties": {"amount": amount, "description": {"type": "string", "maxLength": 127}}}),
     errors=auth_errors + ("invalid_field", "malformed_json", "invalid_idempotency_key", "idempotency_key_reused"))},
 "/v1/orders/{out_trade_no}": {"get": op("One of the caller's orders.", ok("The order", ref("Order")), bearer, [no], errors=auth_errors + ("order_not_found",))},
 "/v1/orders/{out_trade_no}/wechat-pay": {"post": op("WeChat Pay JSAPI prepay; returns exactly wx.requestPayment's params.", ok("Params", ref("PayParams")), bearer, [no],
     errors=auth_errors + ("order_not_found", "order_paid", "order_closed", "order_expired", "wechat_pay_error", "wechat_pay_unverified", "wechat_pay_unavailable"), rate_limited=True)},
 "/v1/orders/{out_trade_no}/balance-pay": {"post": op("Pay the order from the caller's wallet. Decided by the fold in stream order (two payments racing for one balance cannot both succeed); answers once decided.",
     ok("Paid (or already paid from the wallet)", ref("Order")), bearer, [no],
     errors=auth_errors + ("order_not_found", "order_paid", "order_closed", "order_expired", "insufficient_balance", "not_payable_from_wallet"), rate_limited=True)},
 "/v1/me/orders": {"get": op("The caller's newest 100 orders.", ok("Orders", {"type": "object", "properties": {"orders": {"type": "array", "items": ref("Order")}}}), bearer, errors=auth_errors)},
 "/v1/me/ledger": {"get": op("The wallet's balance and newest 100 postings.", ok("Ledger", ref("Ledger")), bearer, errors=auth_errors)},
 "/v1/recharges": {"post": op("Place a wallet recharge and get its wx.requestPayment params.",
     {**ok("Placed", ref("Recharge"), "201"), **ok("The same recharge again (Idempotency-Key seen)", ref("Recharge"))}, bearer, [idem],
     body({"type": "object", "required": ["amount"], "properties": {"amount": amount}}),
     errors=auth_errors + ("invalid_field", "malformed_json", "invalid_idempotency_key", "idempotency_key_reused", "wechat_pay_error", "wechat_pay_unavailable"), rate_limited=True)},
 "/v1/admin/orders/{out_trade_no}/sync": {"post": op("Query WeChat Pay for the order (recording a final answer as payment.queried) and bring its refunds up to date (sending again a refund whose answer was lost; recording a changed status as refund.queried).",
     ok("WeChat's state and the order and refunds after it", {"type": "object", "properties": {"wechat_trade_state": {"type": "string"}, "recorded": {"type": "boolean"}, "order": ref("Order"), "refunds": {"type": "array", "items": ref("Refund")}}}), admin, [no],
     errors=("admin_disabled", "invalid_admin_token", "order_not_found", "wechat_pay_error", "wechat_pay_unverified", "wechat_pay_unavailable"))},
 "/v1/admin/orders/{out_trade_no}/refunds": {
   "post": op("Refund part or all of a paid order. Checked here and again by the fold (which sets the amount aside), then sent to WeChat Pay; an order paid from the wallet is refunded to the wallet at once.",
     {**ok("Requested (usually processing; succeeded for a wallet-paid order)", ref("RefundAnswer"), "201"), **ok("The same refund again (out_refund_no or Idempotency-Key seen)", ref("RefundAnswer"))}, admin, [no, idem],
     body({"type": "object", "required": ["amount"], "properties": {"amount": amount, "reason": {"type": "string", "maxLength": 80}, "out_refund_no": {"type": "string", "pattern": "^[A-Za-z0-9_|*@-]{1,64}$"}}}),
     errors=("admin_disabled", "invalid_admin_token", "invalid_field", "malformed_json", "invalid_idempotency_key", "order_not_found", "order_not_paid", "refund_exceeds_paid", "insufficient_balance", "refund_rejected", "refund_refused", "out_refund_no_taken", "wechat_pay_error", "wechat_pay_unverified", "wechat_pay_unavailable"), rate_limited=True),
   "get": op("The order's refunds, oldest first.", ok("Refunds", {"type": "object", "properties": {"refunds": {"type": "array", "items": ref("Refund")}}}), admin, [no],
     errors=("admin_disabled", "invalid_admin_token", "order_not_found"))},
 "/v1/admin/failures": {"get": op("The failure log, newest first.", ok("Failures", {"type": "object", "properties": {"failures": {"type": "array", "items": ref("Failure")}}}), admin,
     [{"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
     errors=("admin_disabled", "invalid_admin_token", "invalid_field", "invalid_query"))},
 "/v1/admin/users/{user_id}": {"get": op("A user as support sees them: phone masked; `erased: true` and nothing personal once erased (admin token).", ok("The user", ref("User")), admin, [user_id],
     errors=("admin_disabled", "invalid_admin_token", "invalid_field", "user_not_found"))},
 "/v1/admin/users/{user_id}/erase": {"post": op("Erases a user (crypto-shredding): destroys their data key, appends `user.erased`, waits until it applied. Money records stay. Idempotent: a repeat answers 200 with `seq: null`.",
     ok("The erasure", {"type": "object", "required": ["seq", "key_already_destroyed", "user"], "properties": {"seq": {"type": ["integer", "null"], "description": "Sequence of `user.erased`; null when the user was already erased."}, "key_already_destroyed": {"type": "boolean"}, "user": ref("User")}}), admin, [user_id],
     errors=("admin_disabled", "invalid_admin_token", "invalid_field", "user_not_found"))},
 "/webhooks/wechatpay": {"post": {"summary": "WeChat Pay v3 notifies. 204 once the verified, decrypted notify is durable on the stream.",
     "description": "Payment (TRANSACTION.SUCCESS) and refund (REFUND.SUCCESS, REFUND.ABNORMAL, REFUND.CLOSED) notifies. Refusals answer {\"code\":\"FAIL\",\"message\":...} with 401 (signtest, unknown_serial, bad_signature), 400 (malformed, stale_timestamp, wrong_algorithm, undecryptable, unsupported_event), 413 (too_large) or 503 (log_unavailable: WeChat retries). The reason is the `outcome` label of wxledger_notifies_total. Over limits.webhook_per_ip the answer is 429 `rate_limited`, past limits.webhook_timeout_ms (below WeChat's 5 s) 408 or 503 `timeout`, both in the API's error envelope; WeChat retries either.",
     "parameters": [{"name": h, "in": "header", "required": h != "Wechatpay-Signature-Type", "schema": {"type": "string"}} for h in ["Wechatpay-Serial", "Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature-Type"]],
     "requestBody": body({"type": "object"}),
     "responses": {"204": {"description": "Recorded (or already recorded)."},
                   "4XX": {"description": "Refused; nothing recorded.", "content": {"application/json": {"schema": ref("WechatFail")}}},
                   "5XX": {"description": "Not recorded; retry.", "content": {"application/json": {"schema": ref("WechatFail")}}}}}},
 "/webhooks/wechatpay/v2": {"post": {"summary": "WeChat Pay API v2 (legacy merchants) XML notifies: payment notifies (verified `sign`) and refund notifies (decrypted `req_info`, then confirmed by a signed `refundquery`: the answer is recorded as `refund.queried` v2 with the notify as a claim, and only the answer moves money). 200 `<xml><return_code>SUCCESS</return_code>...` once the event is durable on the stream.",
     "description": "Refusals answer `<xml><return_code>FAIL</return_code><return_msg>...</return_msg></xml>` with 401 (missing_sign, bad_signature), 400 (malformed, not_utf8, unsupported_encoding, doctype_refused, entity_refused, processing_instruction_refused, nested_element, duplicate_key, wrong_root, trailing_content, not_success, wrong_sign_type, merchant_mismatch, undecryptable, unsupported_event, refund_not_found: WeChat's refundquery knows no such refund), 404 (v2_disabled: no pay.v2.api_key), 413 (too_large) or 503 (log_unavailable, or query_unavailable: WeChat could not be asked about a refund notify; WeChat retries). The reason is the `outcome` label of wxledger_notifies_v2_total. Over limits.webhook_per_ip the answer is 429 `rate_limited`, past limits.webhook_timeout_ms (below WeChat's 5 s) 408 or 503 `timeout`, both in the API's error envelope; WeChat retries either.",
     "requestBody": {"required": True, "content": {"text/xml": {"schema": {"type": "string"}}}},
     "responses": {"200": {"description": "Recorded (or already recorded).", "content": {"text/xml": {"schema": {"type": "string"}}}},
                   "4XX": {"description": "Refused; nothing recorded.", "content": {"text/xml": {"schema": {"type": "string"}}}},
                   "5XX": {"description": "Not recorded; retry.", "content": {"text/xml": {"schema": {"type": "string"}}}}}}},
 "/healthz": {"get": {"summary": "Liveness.", "responses": ok("Alive")}},
 "/readyz": {"get": {"summary": "Readiness: migrations, NATS, Postgres.", "responses": {**ok("Ready"), "503": {"description": "Not ready"}}}},
 "/metrics": {"get": {"summary": "OpenMetrics text (Prometheus): requests by route template, method and status, process and build info, NATS/Postgres up, pool, outbox, outbound WeChat calls, append and projector timings, lag, sweeps, suspense, failure log. Served here unless metrics.listen gives it a listener of its own.", "responses": {"200": {"description": "Metrics", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}}},
 "/openapi.json": {"get": {"summary": "This document.", "responses": ok("OpenAPI 3.1", {"type": "object"})}},
}

ts = {"type": "string", "format": "date-time"}
nts = {"type": ["string", "null"], "format": "date-time"}
schemas = {
 "ErrorCode": {"type": "string", "enum": sorted(ERROR_CODES), "description": "\n".join(f"- `{k}`: {v}" for k, v in sorted(ERROR_CODES.items()))},
 "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": ref("ErrorCode"), "message": {"type": "string"}}}}},
 "WechatFail": {"type": "object", "required": ["code", "message"], "properties": {"code": {"const": "FAIL"}, "message": {"type": "string"}}},
 "Login": {"type": "object", "properties": {"token": {"type": "string"}, "expires_in": {"type": "integer"}, "user_id": {"type": "string", "format": "uuid"}, "has_phone": {"type": "boolean"}}},
 "User": {"type": "object", "properties": {"user_id": {"type": "string"}, "has_phone": {"type": "boolean"}, "phone": {"type": ["object", "null"]}, "nickname": {"type": ["string", "null"]}, "avatar_url": {"type": ["string", "null"]}, "balance": {"type": "integer", "description": "Wallet balance in fen (GET /v1/me)."}, "erased": {"type": "boolean", "description": "The user was erased at their request: nothing personal is shown."}}},
 "Order": {"type": "object", "properties": {"out_trade_no": {"type": "string"}, "kind": {"enum": ["order", "recharge"]}, "state": {"enum": ["created", "prepay_issued", "paid", "closed", "pay_error", "partially_refunded", "refunded"]}, "amount": {"type": "integer"}, "currency": {"const": "CNY"}, "description": {"type": "string"}, "transaction_id": {"type": ["string", "null"]}, "paid_with": {"enum": ["wechat", "wallet", None]}, "refunded": {"type": "integer", "description": "Fen refunded (settled)."}, "refunding": {"type": "integer", "description": "Fen set aside for refunds in flight."}, "placed_at": ts, "expires_at": ts, "paid_at": nts, "closed_at": nts}},
 "PayParams": {"type": "object", "required": ["timeStamp", "nonceStr", "package", "signType", "paySign"], "additionalProperties": False, "properties": {"timeStamp": {"type": "string"}, "nonceStr": {"type": "string"}, "package": {"type": "string", "pattern": "^prepay_id="}, "signType": {"enum": ["RSA", "MD5", "HMAC-SHA256"], "description": "`RSA` under API v3; `MD5` or `HMAC-SHA256` (pay.v2.sign_type) under API v2."}, "paySign": {"type": "string"}}},
 "Recharge": {"type": "object", "properties": {"order": ref("Order"), "payment": ref("PayParams")}},
 "Ledger": {"type": "object", "properties": {"balance": {"type": "integer"}, "currency": {"const": "CNY"}, "entries": {"type": "array", "items": {"type": "object", "properties": {"seq": {"type": "integer"}, "group_id": {"type": "string"}, "amount": {"type": "integer", "description": "Credit positive, debit negative."}, "kind": {"type": "string"}, "out_trade_no": {"type": ["string", "null"]}, "transaction_id": {"type": ["string", "null"]}, "occurred_at": ts}}}}},
 "Refund": {"type": "object", "properties": {"out_refund_no": {"type": "string"}, "out_trade_no": {"type": "string"}, "amount": {"type": "integer"}, "reason": {"type": "string"}, "state": {"enum": ["requested", "processing", "abnormal", "succeeded", "closed", "rejected", "refused"]}, "requested": {"type": "boolean", "description": "False for a refund WeChat reported that wxledger never requested."}, "refund_id": {"type": ["string", "null"]}, "wechat_status": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}, "message": {"type": ["string", "null"]}, "requested_at": ts, "settled_at": nts}},
 "RefundAnswer": {"type": "object", "properties": {"refund": ref("Refund"), "order": ref("Order")}},
 "Failure": {"type": "object", "properties": {"seq": {"type": "integer"}, "reason": {"type": "string"}, "out_trade_no": {"type": ["string", "null"]}, "transaction_id": {"type": ["string", "null"]}, "amount": {"type": ["integer", "null"]}, "detail": {"type": "object"}, "occurred_at": ts}},
}

doc = {"openapi": "3.1.0",
       "info": {"title": "wxledger", "version": "1", "description": "The money side of a WeChat mini program. Errors: {\"error\":{\"code\",\"message\"}} with a stable code (components.schemas.ErrorCode)."},
       "paths": paths,
       "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Token from /v1/auth/login."}, "admin": {"type": "http", "scheme": "bearer", "description": "auth.admin_token."}}}}
out = pathlib.Path(__file__).resolve().parents[2] / "src/api/openapi.json"
out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
print(f"wrote {out}")
