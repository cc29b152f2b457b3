//! Tests of the API v2 client: reading answers, signing requests and pay params.

use super::*;

#[test]
fn a_signed_v2_no_is_a_refusal_and_anything_else_leaves_the_outcome_open() {
    let api = |code: &str| {
        PayError::from(V2Error::Api {
            code: code.into(),
            message: "-".into(),
        })
    };
    assert!(api("NOTENOUGH").is_refusal());
    assert_eq!(api("NOTENOUGH").code(), Some("NOT_ENOUGH"));
    assert!(api("PARAM_ERROR").is_refusal());
    for open in [
        api("SYSTEMERROR"),
        api("BIZERR_NEED_RETRY"),
        api("FREQUENCY_LIMITED"),
    ] {
        assert!(!open.is_refusal(), "{open}");
    }
    assert!(!PayError::from(V2Error::Refused("签名错误".into())).is_refusal());
    assert!(!PayError::from(V2Error::Unavailable("timeout".into())).is_refusal());
}

fn key() -> ApiKey {
    ApiKey::new(crate::sim::devkeys::V2_API_KEY).unwrap()
}

fn signed(pairs: &[(&str, &str)], t: SignType) -> Vec<u8> {
    let mut fields: Fields = pairs.iter().copied().collect();
    let sign = sign::sign(fields.iter(), &key(), t);
    fields.set("sign", sign);
    fields.to_xml().into_bytes()
}

#[test]
fn answers_are_read_return_code_then_sign_then_result_code() {
    let ok = signed(
        &[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("prepay_id", "wx1"),
        ],
        SignType::Md5,
    );
    let answer = read_answer(&ok, &key(), SignType::Md5).unwrap();
    assert_eq!(answer.fields.get("prepay_id"), Some("wx1"));
    assert_eq!(answer.evidence.sign_type.as_deref(), Some("MD5"));
    assert_eq!(answer.evidence.body.as_bytes(), ok.as_slice());

    // return_code FAIL answers are unsigned; they are a refusal, not a forgery.
    let fail = xml::write([("return_code", "FAIL"), ("return_msg", "签名错误")]);
    assert!(matches!(
        read_answer(fail.as_bytes(), &key(), SignType::Md5),
        Err(V2Error::Refused(m)) if m == "签名错误"
    ));
    // Unsigned, wrongly signed, or signed the other way: not believed.
    let unsigned = xml::write([("return_code", "SUCCESS"), ("result_code", "SUCCESS")]);
    assert!(matches!(
        read_answer(unsigned.as_bytes(), &key(), SignType::Md5),
        Err(V2Error::Unverified(_))
    ));
    assert!(matches!(
        read_answer(&ok, &key(), SignType::HmacSha256),
        Err(V2Error::Unverified(_))
    ));
    let tampered = String::from_utf8(ok.clone()).unwrap().replace("wx1", "wx2");
    assert!(matches!(
        read_answer(tampered.as_bytes(), &key(), SignType::Md5),
        Err(V2Error::Unverified(_))
    ));
    // A signed business refusal carries WeChat's code.
    let paid = signed(
        &[
            ("return_code", "SUCCESS"),
            ("result_code", "FAIL"),
            ("err_code", "ORDERPAID"),
            ("err_code_des", "该订单已支付"),
        ],
        SignType::HmacSha256,
    );
    let err = read_answer(&paid, &key(), SignType::HmacSha256)
        .err()
        .unwrap();
    assert_eq!(err.code(), Some("ORDERPAID"));
    let v3: PayError = err.into();
    assert_eq!(v3.code(), Some("ORDERPAID"));
    let gone: PayError = V2Error::Api {
        code: "ORDERNOTEXIST".into(),
        message: String::new(),
    }
    .into();
    assert_eq!(gone.code(), Some("ORDER_NOT_EXIST"));
    // Hostile XML in an answer is refused by the parser.
    let xxe = b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><return_code>&e;</return_code></xml>";
    assert!(matches!(
        read_answer(xxe, &key(), SignType::Md5),
        Err(V2Error::Malformed(_))
    ));
}

fn client(sign_type: crate::settings::V2SignType) -> V2Client {
    let mut settings = crate::settings::Settings::development().pay;
    settings.v2.sign_type = sign_type;
    let clock: Clock = Arc::new(|| DateTime::from_timestamp(1_700_000_000, 0).unwrap());
    V2Client::new(&settings, "wxd930ea5d5a258f4f", clock)
        .unwrap()
        .expect("the simulator's merchant has a v2 key")
}

#[test]
fn pay_params_sign_the_five_capitalised_keys() {
    for t in [
        crate::settings::V2SignType::Md5,
        crate::settings::V2SignType::HmacSha256,
    ] {
        let client = client(t);
        let params = client.pay_params("wx201410272009395522657a690389285100");
        assert_eq!(params.time_stamp, "1700000000");
        assert_eq!(
            params.package,
            "prepay_id=wx201410272009395522657a690389285100"
        );
        assert_eq!(params.sign_type, client.sign_type().as_str());
        let expected = sign::sign(
            [
                ("appId", "wxd930ea5d5a258f4f"),
                ("nonceStr", params.nonce_str.as_str()),
                ("package", params.package.as_str()),
                ("signType", params.sign_type.as_str()),
                ("timeStamp", "1700000000"),
            ],
            &key(),
            client.sign_type(),
        );
        assert_eq!(params.pay_sign, expected);
        let json = serde_json::to_value(&params).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5, "{json}");
    }
}

#[test]
fn requests_are_signed_with_the_merchants_fields() {
    let client = client(crate::settings::V2SignType::HmacSha256);
    let xml = client.request(&[("out_trade_no", "abc123"), ("attach", "")]);
    let fields = xml::parse(xml.as_bytes(), 4096).unwrap();
    assert_eq!(fields.get("mch_id"), Some(crate::sim::devkeys::MCHID));
    assert_eq!(fields.get("sign_type"), Some("HMAC-SHA256"));
    assert_eq!(fields.get("nonce_str").map(str::len), Some(32));
    assert!(client.verify(&fields).is_ok());
}

#[test]
fn settings_without_a_key_turn_v2_off_and_identities_are_read() {
    let mut settings = PaySettings {
        mchid: "1234567890".into(),
        ..Default::default()
    };
    assert!(
        V2Client::new(&settings, "wx1", crate::core::clock::system())
            .unwrap()
            .is_none()
    );
    settings.v2.api_key = Some(crate::sim::devkeys::V2_API_KEY.into());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev-keys");
    settings.v2.client_cert_file = Some(dir.join("merchant_cert.pem"));
    settings.v2.client_key_file = Some(dir.join("merchant_key.pem"));
    assert!(
        V2Client::new(&settings, "wx1", crate::core::clock::system())
            .unwrap()
            .is_some()
    );
    settings.v2.client_key_file = Some(dir.join("no-such-file.pem"));
    let err = V2Client::new(&settings, "wx1", crate::core::clock::system())
        .err()
        .unwrap();
    assert_eq!(err.field, "pay.v2.client_key_file");
}

#[test]
fn times_are_beijing_and_bodies_fit_128_bytes() {
    let t = DateTime::parse_from_rfc3339("2025-03-01T08:31:05Z")
        .unwrap()
        .to_utc();
    assert_eq!(beijing_compact(t), "20250301163105");
    let long = "咖".repeat(50);
    let cut = truncate_utf8(&long, MAX_BODY_BYTES);
    assert_eq!(cut.len(), 126);
    assert_eq!(truncate_utf8("abc", 128), "abc");
}
