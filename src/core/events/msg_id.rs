//! Every event's `Nats-Msg-Id`: the key JetStream deduplicates appends by inside its
//! window. The ids are a contract with the stream already written (a retry across a
//! deploy must hit the same id), so each format is pinned by a test below.

use uuid::Uuid;

use super::Event;

impl Event {
    /// The `Nats-Msg-Id` to append this event with.
    ///
    /// Most events are unique by their own fields: an order is placed once, a notify is
    /// recorded once, the same query answer is recorded once. A few are unique by the
    /// request that asked for them, named by `retry_key`: a wallet payment is one decision
    /// per request (its request id), a phone or profile is one per `Idempotency-Key`.
    /// Without a `retry_key` those get a fresh UUID and never deduplicate; a login always
    /// does. Every other event ignores `retry_key`.
    pub fn msg_id(&self, retry_key: Option<&str>) -> String {
        let kind = self.kind();
        let fresh = || format!("{kind}:{}", Uuid::new_v4());
        let per_user_key = |user_id: &Uuid| match retry_key {
            Some(key) => format!("{kind}:{user_id}:{key}"),
            None => fresh(),
        };
        match self {
            // Two racing first logins append one registration.
            Event::UserRegistered(e) => format!("{kind}:{}", e.user_id),
            Event::RegisteredSealed(e) => format!("{kind}:{}", e.user_id),
            Event::UserLoggedIn(_) | Event::LoggedInSealed(_) => fresh(),
            Event::PhoneBound(e) => per_user_key(&e.user_id),
            Event::PhoneSealed(e) => per_user_key(&e.user_id),
            Event::ProfileUpdated(e) => per_user_key(&e.user_id),
            Event::ProfileSealed(e) => per_user_key(&e.user_id),
            Event::UserErased(e) => format!("{kind}:{}", e.user_id),
            Event::OrderPlaced(e) => format!("{kind}:{}", e.out_trade_no),
            Event::PrepayIssued(e) => format!("{kind}:{}:{}", e.out_trade_no, e.prepay_id),
            Event::OrderClosed(e) => format!("{kind}:{}", e.out_trade_no),
            Event::PaymentNotified(e) => format!("{kind}:{}", e.notify_id),
            // One request per HTTP request: a retry is a new decision, which finds the
            // order paid.
            Event::BalancePayRequested(e) => match retry_key {
                Some(request_id) => format!("{kind}:{}:{request_id}", e.out_trade_no),
                None => format!("{kind}:{}:{}", e.out_trade_no, Uuid::new_v4()),
            },
            Event::LegacyPaymentNotified(e) => format!(
                "{kind}:{}",
                e.transaction.transaction_id.as_deref().unwrap_or("-")
            ),
            // The same answer recorded twice inside the window appends once.
            Event::PaymentQueried(e) => answer(kind, &e.transaction),
            Event::LegacyPaymentQueried(e) => answer(kind, &e.transaction),
            Event::RefundRequested(e) => format!("{kind}:{}", e.out_refund_no),
            Event::RefundAccepted(e) => format!("{kind}:{}", e.refund.out_refund_no),
            Event::RefundRejected(e) => format!("{kind}:{}", e.out_refund_no),
            Event::RefundNotified(e) => match &e.notify_id {
                Some(id) => format!("{kind}:{id}"),
                None => format!("{kind}:{}:{}", e.refund.out_refund_no, e.refund.status),
            },
            // An answer to a notify also names the status the notify claimed, so a forged
            // claim is recorded even when the same answer was recorded just before.
            Event::RefundQueried(e) => {
                let (no, status) = (&e.refund.out_refund_no, &e.refund.status);
                match &e.notify {
                    None => format!("{kind}:{no}:{status}"),
                    Some(n) => format!("{kind}:{no}:{status}:notify:{}", n.refund.status),
                }
            }
            // One quarantine per sequence: a repeated command appends nothing.
            Event::Quarantined(e) => format!("{kind}:{}", e.seq),
        }
    }
}

/// A query answer's id: the order, its state, and the transaction when there is one.
fn answer(kind: &str, tx: &super::Transaction) -> String {
    format!(
        "{kind}:{}:{}:{}",
        tx.out_trade_no,
        tx.trade_state,
        tx.transaction_id.as_deref().unwrap_or("-")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const USER: &str = "00000000-0000-0000-0000-000000000007";

    fn event(kind: &str, version: u32, data: Value) -> Event {
        Event::decode(kind, version, data).expect("a fixture of the event's schema")
    }

    fn v3() -> Value {
        json!({"serial": "s", "signature": "g", "timestamp": "1", "nonce": "n", "body": "{}"})
    }

    fn tx(transaction_id: Option<&str>) -> Value {
        let mut t = json!({"appid": "wx1", "mchid": "19", "out_trade_no": "T1",
                           "trade_state": "SUCCESS"});
        if let Some(id) = transaction_id {
            t["transaction_id"] = id.into();
        }
        t
    }

    fn refund(status: &str) -> Value {
        json!({"out_trade_no": "T1", "out_refund_no": "R1", "status": status})
    }

    /// The ids this build writes, byte for byte: a change here would let a retry across
    /// a deploy append a second copy of a fact.
    #[test]
    fn each_event_type_has_its_pinned_msg_id() {
        let sealed = json!({"key_id": USER, "ciphertext": "AAAA"});
        let bidx = "0".repeat(64);
        let cases = [
            (
                event(
                    "user.registered",
                    1,
                    json!({"user_id": USER, "openid": "o"}),
                ),
                format!("user.registered:{USER}"),
            ),
            (
                event(
                    "user.registered",
                    2,
                    json!({"user_id": USER, "openid": "o"}),
                ),
                format!("user.registered:{USER}"),
            ),
            (
                event(
                    "user.phone_bound",
                    2,
                    json!({"user_id": USER, "phone": sealed, "phone_bidx": bidx,
                             "source": "phone_code"}),
                ),
                format!("user.phone_bound:{USER}:k1"),
            ),
            (
                event(
                    "user.phone_bound",
                    1,
                    json!({"user_id": USER, "country_code": "86",
                             "pure_phone_number": "13800138000", "source": "phone_code"}),
                ),
                format!("user.phone_bound:{USER}:k1"),
            ),
            (
                event(
                    "user.profile_updated",
                    2,
                    json!({"user_id": USER, "profile": sealed}),
                ),
                format!("user.profile_updated:{USER}:k1"),
            ),
            (
                event(
                    "user.profile_updated",
                    1,
                    json!({"user_id": USER, "nickname": "n", "avatar_url": null}),
                ),
                format!("user.profile_updated:{USER}:k1"),
            ),
            (
                event("user.erased", 1, json!({"user_id": USER})),
                format!("user.erased:{USER}"),
            ),
            (
                event(
                    "order.placed",
                    2,
                    json!({"out_trade_no": "T1", "user_id": USER, "openid": "o",
                             "kind": "order", "amount": {"total": 1, "currency": "CNY"},
                             "description": "d", "appid": "wx1", "mchid": "19",
                             "expires_at": "2026-11-01T00:00:00Z"}),
                ),
                "order.placed:T1".into(),
            ),
            (
                event(
                    "order.prepay_issued",
                    1,
                    json!({"out_trade_no": "T1", "prepay_id": "wx2"}),
                ),
                "order.prepay_issued:T1:wx2".into(),
            ),
            (
                event(
                    "order.closed",
                    1,
                    json!({"out_trade_no": "T1", "reason": "expired"}),
                ),
                "order.closed:T1".into(),
            ),
            (
                event(
                    "order.balance_pay_requested",
                    1,
                    json!({"out_trade_no": "T1", "user_id": USER, "amount": 1}),
                ),
                "order.balance_pay_requested:T1:k1".into(),
            ),
            (
                event(
                    "payment.notified",
                    1,
                    json!({"notify_id": "N1", "event_type": "TRANSACTION.SUCCESS",
                             "transaction": tx(Some("X1")), "evidence": v3()}),
                ),
                "payment.notified:N1".into(),
            ),
            (
                event(
                    "payment.queried",
                    1,
                    json!({"reason": "sweep", "transaction": tx(Some("X1")),
                             "evidence": v3()}),
                ),
                "payment.queried:T1:SUCCESS:X1".into(),
            ),
            (
                event(
                    "payment.queried",
                    1,
                    json!({"reason": "sync", "transaction": tx(None), "evidence": v3()}),
                ),
                "payment.queried:T1:SUCCESS:-".into(),
            ),
            (
                event(
                    "payment.legacy_notified",
                    1,
                    json!({"transaction": tx(Some("X1")), "evidence": {"body": "<xml/>"}}),
                ),
                "payment.legacy_notified:X1".into(),
            ),
            (
                event(
                    "payment.legacy_queried",
                    1,
                    json!({"reason": "expiry", "transaction": tx(Some("X1")),
                             "evidence": {"body": "<xml/>"}}),
                ),
                "payment.legacy_queried:T1:SUCCESS:X1".into(),
            ),
            (
                event(
                    "refund.requested",
                    1,
                    json!({"out_refund_no": "R1", "out_trade_no": "T1", "amount": 1,
                             "reason": "r"}),
                ),
                "refund.requested:R1".into(),
            ),
            (
                event(
                    "refund.accepted",
                    1,
                    json!({"refund": refund("PROCESSING"), "evidence": v3()}),
                ),
                "refund.accepted:R1".into(),
            ),
            (
                event(
                    "refund.rejected",
                    1,
                    json!({"out_refund_no": "R1", "out_trade_no": "T1", "code": "c",
                             "message": "m"}),
                ),
                "refund.rejected:R1".into(),
            ),
            (
                event(
                    "refund.notified",
                    1,
                    json!({"notify_id": "N2", "event_type": "REFUND.SUCCESS",
                             "refund": refund("SUCCESS"), "evidence": v3()}),
                ),
                "refund.notified:N2".into(),
            ),
            (
                event(
                    "refund.queried",
                    2,
                    json!({"reason": "sweep", "refund": refund("SUCCESS"),
                             "evidence": v3()}),
                ),
                "refund.queried:R1:SUCCESS".into(),
            ),
            (
                event(
                    "refund.queried",
                    2,
                    json!({"reason": "notify", "refund": refund("SUCCESS"),
                             "evidence": {"body": "<xml/>"},
                             "notify": {"refund": refund("CHANGE"),
                                        "evidence": {"body": "<xml/>"}}}),
                ),
                "refund.queried:R1:SUCCESS:notify:CHANGE".into(),
            ),
            (
                event(
                    "event.quarantined",
                    1,
                    json!({"seq": 42, "reason": "unknown version", "kind": "order.placed",
                             "version": 9}),
                ),
                "event.quarantined:42".into(),
            ),
        ];
        for (event, id) in cases {
            assert_eq!(event.msg_id(Some("k1")), id, "{}", event.kind());
        }
    }

    #[test]
    fn without_a_retry_key_request_events_never_deduplicate() {
        let logged_in = event("user.logged_in", 2, json!({"user_id": USER}));
        let phone = event(
            "user.phone_bound",
            2,
            json!({"user_id": USER, "phone": {"key_id": USER, "ciphertext": "AAAA"},
                   "phone_bidx": "0".repeat(64), "source": "encrypted_data"}),
        );
        let pay = event(
            "order.balance_pay_requested",
            1,
            json!({"out_trade_no": "T1", "user_id": USER, "amount": 1}),
        );
        for (event, prefix) in [
            (&logged_in, "user.logged_in:"),
            (&phone, "user.phone_bound:"),
            (&pay, "order.balance_pay_requested:T1:"),
        ] {
            let (a, b) = (event.msg_id(None), event.msg_id(None));
            assert_ne!(a, b);
            let fresh = a.strip_prefix(prefix).expect("the event's prefix");
            assert!(fresh.parse::<Uuid>().is_ok(), "{a}");
        }
        // A login is new every time, key or not.
        assert_ne!(logged_in.msg_id(Some("k1")), logged_in.msg_id(Some("k1")));
    }
}
