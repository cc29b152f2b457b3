//! Known-answer vectors from the official SDKs' tests, besides round trips.
//! Files under `tests/vectors/wechatpay/` name their source in the test that uses them.

use super::*;

macro_rules! vector {
    ($file:literal) => {
        include_str!(concat!("../../../../tests/vectors/wechatpay/", $file))
    };
}

// wechatpay-apiv3/wechatpay-java core/src/test/.../TestConfig.java
const JAVA_API_V3_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";

#[test]
fn aead_matches_wechatpay_java_cipher_test() {
    // wechatpay-java core/src/test/.../cipher/AeadAesCipherTest.java
    let key = ApiV3Key::new(JAVA_API_V3_KEY).unwrap();
    let plain = key
        .decrypt(
            "uluk4a9R25RW",
            "associatedData",
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=",
        )
        .unwrap();
    assert_eq!(plain, b"message");
    assert_eq!(
        key.encrypt("uluk4a9R25RW", "associatedData", b"message"),
        "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
    );
    assert_eq!(
        key.decrypt(
            "uluk4a9R25RW",
            "otherData",
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        ),
        Err(DecryptError)
    );
    assert_eq!(
        key.decrypt(
            "uluk4a9R25RX",
            "associatedData",
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        ),
        Err(DecryptError)
    );
    assert!(
        ApiV3Key::new("testMchAPIv3Key0").is_none(),
        "16-byte keys are refused"
    );
}

#[test]
fn decrypts_a_downloaded_platform_certificate() {
    // wechatpay-java TestConfig.DOWNLOAD_CERTIFICATE_RESPONSE: encrypt_certificate with
    // nonce 14b16c03dc1b and associated data "certificate".
    let key = ApiV3Key::new(JAVA_API_V3_KEY).unwrap();
    let pem = key
        .decrypt(
            "14b16c03dc1b",
            "certificate",
            vector!("java_download_cert_ciphertext.b64").trim(),
        )
        .unwrap();
    let pem = String::from_utf8(pem).unwrap();
    assert_eq!(
        pem,
        vector!("java_downloaded_platform_cert_5DEA10EF.pem").trim_end()
    );
    let (serial, _) = VerifyingKey::from_certificate_pem(&pem).unwrap();
    assert_eq!(serial, "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC");
}

#[test]
fn signs_and_verifies_like_wechatpay_java() {
    // wechatpay-java core/src/test/.../cipher/RSAVerifierTest.java: "message" signed by
    // merchant_private_key.pem, verified by merchant_certificate.pem, refused by
    // wechat_pay_public_key.pem.
    const SIGNATURE: &str = "Rq+5ZpWV6IHTWE1+9gCrYJKguNgbItpMdlIA+PVCPCdUAKNlohZz7CL7Y8xWDIFJjdGnErMj6Z+Q/h9CF5MV+nAVkqDmBR0uP5ppsUEzco4ijvKHsvI2ro4boSW6vSfQs3W8I4QSI9a0/NFIgvj83Fv27LIYZf7deaFWmEwd1fpAeJRCyoKyBeJPdsjVx0//Lqe6Wze2zVdliLcBvaHCfpd8+rAVGS+FQDeWgHqJ7n/Zy09LmV1/ghs7pO1mdjdD16SHKlysAD3K5hNGUJX/SHrEXEcu1yO1AOb/YvOVkjNh8243rcfXNE5L4ph2XS11vS+2aToKYSOcKUagf0LLaw==";
    let key = SigningKey::from_pkcs8_pem(vector!("java_merchant_private_key.pem")).unwrap();
    assert_eq!(
        key.sign(b"message"),
        SIGNATURE,
        "PKCS#1 v1.5 is deterministic"
    );
    let (serial, cert_key) =
        VerifyingKey::from_certificate_pem(vector!("java_merchant_certificate.pem")).unwrap();
    assert_eq!(serial, "5F1C72E2A8931B72A2E13AF8DEE92471EB397115");
    assert_eq!(cert_key.verify(b"message", SIGNATURE), Ok(()));
    assert_eq!(cert_key, key.verifying_key());
    assert_eq!(cert_key.verify(b"messagE", SIGNATURE), Err(BadSignature));
    let wechat_pay =
        VerifyingKey::from_public_key_pem(vector!("java_wechat_pay_public_key.pem")).unwrap();
    assert_eq!(wechat_pay.verify(b"message", SIGNATURE), Err(BadSignature));
    assert_eq!(
        cert_key.verify(b"message", "not base64!"),
        Err(BadSignature)
    );
}

#[test]
fn verifies_the_wechatpay_go_notify_over_raw_bytes() {
    // wechatpay-go core/notify/notify_test.go: headers and body of a real-shaped notify,
    // signed by the platform certificate D7CE59D1F522D701.
    const SIGNATURE: &str = "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXFlbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1IBLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY406ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q==";
    let body = vector!("go_notify_body.json").as_bytes();
    let message = response_message("1624523846", "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz", body);
    assert_eq!(message, vector!("go_notify_signed_message.txt").as_bytes());
    let (serial, key) =
        VerifyingKey::from_certificate_pem(vector!("go_test_certificate_D7CE59D1F522D701.pem"))
            .unwrap();
    assert_eq!(serial, "D7CE59D1F522D701");
    assert_eq!(key.verify(&message, SIGNATURE), Ok(()));
    assert_eq!(
        VerifyingKey::from_public_key_pem(vector!("go_test_public_key.pem")).unwrap(),
        key
    );
    // Re-serializing the JSON (here: one space) breaks the signature.
    let reserialized = String::from_utf8(body.to_vec())
        .unwrap()
        .replacen(",", ", ", 1);
    let tampered = response_message(
        "1624523846",
        "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz",
        reserialized.as_bytes(),
    );
    assert_eq!(key.verify(&tampered, SIGNATURE), Err(BadSignature));
    let other_time = response_message("1624523847", "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz", body);
    assert_eq!(key.verify(&other_time, SIGNATURE), Err(BadSignature));
}

#[test]
fn request_signature_and_authorization_header() {
    // The message format fixed in wechatpay-java WechatPay2CredentialTest; that test uses a
    // fake signer, so this signature is our own (deterministic) output, kept as a
    // regression check; the message bytes are the known answer.
    let message = request_message(
        "GET",
        "/v3/pay/transactions/id/1217752501201407033233368018?mchid=1230000109",
        1652750623,
        "eBYqCOxa0QudMnPvVilkTzOg3gHh5Z3u",
        b"",
    );
    assert_eq!(
        message,
        b"GET\n/v3/pay/transactions/id/1217752501201407033233368018?mchid=1230000109\n1652750623\neBYqCOxa0QudMnPvVilkTzOg3gHh5Z3u\n\n"
    );
    let key = SigningKey::from_pkcs8_pem(vector!("java_merchant_private_key.pem")).unwrap();
    let signature = key.sign(&message);
    assert_eq!(key.verifying_key().verify(&message, &signature), Ok(()));
    assert_eq!(
        authorization(
            "1234567891",
            "eBYqCOxa0QudMnPvVilkTzOg3gHh5Z3u",
            1652750623,
            "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
            "SIG"
        ),
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1234567891\",nonce_str=\"eBYqCOxa0QudMnPvVilkTzOg3gHh5Z3u\",timestamp=\"1652750623\",serial_no=\"5F1C72E2A8931B72A2E13AF8DEE92471EB397115\",signature=\"SIG\""
    );
}

#[test]
fn serials_compare_as_hex_numbers() {
    assert_eq!(normalize_serial("00d7ce59d1f522d701"), "D7CE59D1F522D701");
    assert_eq!(normalize_serial(" D7CE59D1F522D701 "), "D7CE59D1F522D701");
    assert_eq!(normalize_serial("000"), "0");
}

#[test]
fn pay_sign_round_trip_and_bad_pem() {
    let key = SigningKey::from_pkcs8_pem(vector!("java_wechat_pay_private_key.pem")).unwrap();
    let message = pay_sign_message(
        "wx8888888888888888",
        "1414561699",
        "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "prepay_id=wx201410272009395522657a690389285100",
    );
    assert_eq!(
        message,
        b"wx8888888888888888\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx201410272009395522657a690389285100\n"
    );
    let sig = key.sign(&message);
    let public =
        VerifyingKey::from_public_key_pem(vector!("java_wechat_pay_public_key.pem")).unwrap();
    assert_eq!(public.verify(&message, &sig), Ok(()));
    assert_eq!(
        SigningKey::from_pkcs8_pem("nonsense").err(),
        Some(PemError::Pem("PRIVATE KEY"))
    );
    assert_eq!(
        VerifyingKey::from_public_key_pem(vector!("java_merchant_certificate.pem")).err(),
        Some(PemError::Pem("PUBLIC KEY"))
    );
}
