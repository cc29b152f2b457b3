//! Events: decoding round trips, envelopes, times to the microsecond.

use super::*;

#[test]
fn recorded_times_are_read_to_the_microsecond() {
    let payload = serde_json::json!({
        "id": Uuid::nil(), "type": "user.logged_in", "version": 1,
        "occurred_at": "2026-11-21T08:02:55.327371887Z", "correlation_id": "c",
        "data": {"user_id": Uuid::nil()}});
    let rec = Recorded::from_payload(7, payload.to_string().as_bytes()).unwrap();
    assert_eq!(
        rec.occurred_at,
        "2026-11-21T08:02:55.327371Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
    );
}

#[test]
fn payloads_read_as_their_envelope_says_and_nothing_more() {
    let event = Event::PhoneBound(PhoneBound {
        user_id: Uuid::nil(),
        country_code: "86".into(),
        pure_phone_number: "13800138000".into(),
        source: PhoneSource::PhoneCode,
    });
    let envelope = Envelope {
        id: Uuid::nil(),
        kind: event.kind().into(),
        version: event.version(),
        occurred_at: "2026-11-21T08:02:55Z".parse().unwrap(),
        correlation_id: "c".into(),
        data: event.to_data(),
    };
    let json = serde_json::to_value(&envelope).unwrap();
    let rec = Recorded::from_payload(3, json.to_string().as_bytes()).unwrap();
    assert_eq!(
        (rec.event, rec.correlation_id.as_str()),
        (event.clone(), "c")
    );
    // A type with an escape is read as well (it cannot be borrowed from the payload).
    let escaped = json
        .to_string()
        .replace("user.phone_bound", "user\\u002ephone_bound");
    assert_eq!(
        Recorded::from_payload(3, escaped.as_bytes()).unwrap().event,
        event
    );
    let mut extra = json.clone();
    extra["extra"] = 1.into();
    assert!(matches!(
        Recorded::from_payload(3, extra.to_string().as_bytes()),
        Err(DecodeError::Envelope(_))
    ));
    let mut extra = json;
    extra["data"]["extra"] = 1.into();
    assert!(matches!(
        Recorded::from_payload(3, extra.to_string().as_bytes()),
        Err(DecodeError::Data { .. })
    ));
}

#[test]
fn decode_reads_what_encode_writes() {
    let event = Event::PhoneBound(PhoneBound {
        user_id: Uuid::nil(),
        country_code: "86".into(),
        pure_phone_number: "13800138000".into(),
        source: PhoneSource::PhoneCode,
    });
    let back = Event::decode(event.kind(), event.version(), event.to_data()).unwrap();
    assert_eq!(back, event);
}

#[test]
fn order_placed_v1_and_v2_read_as_the_same_fact_and_v2_is_written() {
    let v1 = serde_json::json!({
        "out_trade_no": "abc123", "user_id": Uuid::nil(), "openid": "o", "kind": "order",
        "amount": 1800, "currency": "CNY", "description": "latte", "appid": "wx1",
        "mchid": "19", "expires_at": "2026-11-01T00:00:00Z"});
    let v2 = serde_json::json!({
        "out_trade_no": "abc123", "user_id": Uuid::nil(), "openid": "o", "kind": "order",
        "amount": {"total": 1800, "currency": "CNY"}, "description": "latte",
        "appid": "wx1", "mchid": "19", "expires_at": "2026-11-01T00:00:00Z"});
    let from_v1 = Event::decode("order.placed", 1, v1.clone()).unwrap();
    let from_v2 = Event::decode("order.placed", 2, v2.clone()).unwrap();
    assert_eq!(from_v1, from_v2);
    let Event::OrderPlaced(e) = &from_v1 else {
        panic!("an order.placed")
    };
    assert_eq!((e.amount, e.currency.as_str()), (1800, "CNY"));
    assert_eq!((from_v1.version(), from_v1.to_data()), (2, v2.clone()));
    // Each version's shape only under its own number.
    assert!(Event::decode("order.placed", 2, v1).is_err());
    assert!(Event::decode("order.placed", 1, v2).is_err());
    assert!(Event::decode("order.placed", 3, serde_json::json!({})).is_err());
}

#[test]
fn refund_queried_v1_is_read_and_only_v2_carries_a_notify() {
    let refund = serde_json::json!({"out_trade_no": "abc123", "out_refund_no": "r1",
                                    "status": "SUCCESS"});
    let evidence = serde_json::json!({"body": "<xml/>", "sign_type": "MD5"});
    let v1 = serde_json::json!({"reason": "sweep", "refund": refund, "evidence": evidence});
    let read = Event::decode("refund.queried", 1, v1.clone()).unwrap();
    assert_eq!((read.version(), read.to_data()), (2, v1.clone()));
    assert_eq!(
        Event::decode("refund.queried", 2, v1.clone()).unwrap(),
        read
    );

    let mut v2 = v1.clone();
    v2["reason"] = "notify".into();
    v2["notify"] = serde_json::json!({"refund": refund,
        "evidence": {"body": "<xml/>", "decrypted": "<root/>"}});
    let read = Event::decode("refund.queried", 2, v2.clone()).unwrap();
    assert_eq!(read.to_data(), v2);
    assert_eq!(
        read.msg_id(None),
        "refund.queried:r1:SUCCESS:notify:SUCCESS"
    );
    assert!(Event::decode("refund.queried", 1, v2.clone()).is_err());
    // `notify` comes with reason `notify`, and only with it.
    let mut no_claim = v2.clone();
    no_claim.as_object_mut().unwrap().remove("notify");
    assert!(Event::decode("refund.queried", 2, no_claim).is_err());
    let mut no_reason = v2;
    no_reason["reason"] = "sync".into();
    assert!(Event::decode("refund.queried", 2, no_reason).is_err());
}

#[test]
fn unknown_versions_and_extra_fields_are_refused() {
    let data = serde_json::json!({"user_id": Uuid::nil(), "openid": "o"});
    assert!(matches!(
        Event::decode("user.registered", 9, data.clone()),
        Err(DecodeError::Unknown { .. })
    ));
    let mut extra = data;
    extra["session_key"] = "x".into();
    assert!(matches!(
        Event::decode("user.registered", 1, extra),
        Err(DecodeError::Data { .. })
    ));
}
