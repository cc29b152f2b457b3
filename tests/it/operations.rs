//! `/openapi.json` stays true. It is generated from the API's types and its table of
//! operations; these tests hold it to the router (every route and no other), to the
//! table of error codes (`wxledger::daemon::api::ErrorCode`: each operation's codes under their
//! status, every code the handlers hand to `ApiError` in the table), and to the server
//! (a request its schemas refuse is one the server refuses, and each answer, error or
//! not, is of the schema documented for its status).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wxledger::daemon::api::ErrorCode;

use crate::common::{TestEnv, ADMIN_TOKEN};

fn source(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `(METHOD, path)` of every `.route("path", method(handler).method(handler)...)` in the
/// router. (A scan of its text: axum's `Router` does not list its routes.)
fn routes_in_router() -> BTreeSet<(String, String)> {
    let text = source(&repo("src/daemon/api/mod.rs"));
    let mut routes = BTreeSet::new();
    for piece in text.split(".route(").skip(1) {
        let (_, quoted) = piece.split_once('"').unwrap();
        let (path, rest) = quoted.split_once('"').unwrap();
        let rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let method = rest.split('(').next().unwrap().trim();
        routes.insert((method.to_uppercase(), path.to_owned()));
        // Chained methods: `post(a).get(b)` up to the route's closing `)`.
        let call = rest.split("\n").next().unwrap_or(rest);
        for chained in call.split(").").skip(1) {
            let method = chained.split('(').next().unwrap().trim();
            if ["get", "post", "put", "delete", "patch"].contains(&method) {
                routes.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

/// The served document.
pub(crate) struct Doc(Value);

impl Doc {
    pub(crate) async fn fetch(env: &TestEnv) -> Self {
        let resp = env
            .http
            .get(format!("{}/openapi.json", env.api))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["openapi"], "3.1.0", "an OpenAPI 3.1 document");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        Self(doc)
    }

    /// Every `(METHOD, path, operation)`.
    fn operations(&self) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in self.0["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
        ops
    }

    fn operation(&self, method: &Method, template: &str) -> &Value {
        let op = &self.0["paths"][template][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not described");
        op
    }

    /// A validator of `schema`, whose `$ref`s resolve in this document.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({"components": self.0["components"], "allOf": [schema]});
        jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{schema}: {e}"))
    }

    fn request_schema(&self, method: &Method, template: &str) -> jsonschema::Validator {
        let op = self.operation(method, template);
        self.validator(&op["requestBody"]["content"]["application/json"]["schema"])
    }

    /// Checks an answer against the operation's response for its status: the status is
    /// documented, and the JSON body is of its schema.
    pub(crate) fn check_answer(
        &self,
        method: &Method,
        template: &str,
        status: StatusCode,
        body: &Value,
    ) {
        let op = self.operation(method, template);
        let response = &op["responses"][status.as_str()];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which is not documented: {body}"
        );
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: no JSON schema"
        );
        let validator = self.validator(schema);
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: {body} is not of its schema: {errors:?}"
        );
    }

    /// The error codes an operation's response lists (in its error schema's enum).
    fn codes(response: &Value) -> Vec<String> {
        let schema = &response["content"]["application/json"]["schema"];
        let schemas = match schema["oneOf"].as_array() {
            Some(forms) => forms.iter().collect(),
            None => vec![schema],
        };
        schemas
            .into_iter()
            .filter_map(|s| s["properties"]["error"]["properties"]["code"]["enum"].as_array())
            .flatten()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn openapi_describes_every_route_and_no_other() {
    let env = TestEnv::start().await;
    let doc = Doc::fetch(&env).await;
    let described: BTreeSet<(String, String)> = doc
        .operations()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let routed = routes_in_router();
    assert!(
        routed.len() >= 20,
        "the router parse found the routes: {routed:?}"
    );
    assert_eq!(routed, described, "router and openapi.json differ");

    // Each described route answers as a route, not as the fallback; each other method on
    // its path answers 405.
    let paths: BTreeSet<&String> = described.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path
            .replace("{out_trade_no}", "nosuchorder01")
            .replace("{user_id}", "00000000-0000-0000-0000-000000000000");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let (status, body) = env
                .call(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &concrete,
                    None,
                    None,
                )
                .await;
            let fallback =
                body["error"]["code"] == "not_found" && body["error"]["message"] == "no such route";
            if described.contains(&(method.to_owned(), path.clone())) {
                assert!(
                    !fallback && body["error"]["code"] != "method_not_allowed",
                    "{method} {path} is not routed ({status})"
                );
            } else {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
                    "{method} {path} is routed but not described"
                );
            }
        }
    }
}

#[tokio::test]
async fn openapi_lists_each_operations_codes_from_the_table() {
    let env = TestEnv::start().await;
    let doc = Doc::fetch(&env).await;
    let table: BTreeSet<(&str, u16)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str(), c.status().as_u16()))
        .collect();

    let mut ids = BTreeSet::new();
    let mut documented = BTreeSet::new();
    let mut answered_refs = BTreeSet::new();
    for (method, path, op) in doc.operations() {
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{method} {path}: no operationId");
        assert!(ids.insert(id.to_owned()), "{method} {path}: {id} repeats");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success"
        );
        for (status, response) in responses {
            let status: u16 = status.parse().expect("a status, not a range");
            assert!(response["description"].is_string());
            for code in Doc::codes(response) {
                assert!(
                    table.contains(&(code.as_str(), status)),
                    "{method} {path}: {code} under {status}, not the table's"
                );
                documented.insert((code, status));
            }
            if status < 300 {
                let text = response.to_string();
                for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                    answered_refs.insert(piece.split('"').next().unwrap().to_owned());
                }
            }
        }
        if let Some(body) = op.get("requestBody") {
            assert_eq!(body["required"], true, "{method} {path}");
        }
    }

    // Every code of the table is answered somewhere (the router's fallback codes are in
    // the description).
    let description = doc.0["info"]["description"].as_str().unwrap();
    for code in ErrorCode::ALL {
        let listed = documented.contains(&(code.as_str().to_owned(), code.status().as_u16()));
        let fallback = ErrorCode::FALLBACK.contains(code) && description.contains(code.as_str());
        assert!(
            listed || fallback,
            "{code:?} is documented for no operation"
        );
    }
    let all_codes: BTreeSet<&str> = doc.0["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let table_codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(all_codes, table_codes);

    // Every code the handlers answer is in the table by construction: an `ApiError` is
    // built only from an `ErrorCode` (the string constructor is private to error.rs).

    // What a success answers: every property is required (always present, `null` when
    // empty), but `balance`, which only `GET /v1/me` shows.
    let schemas = doc.0["components"]["schemas"].as_object().unwrap();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = answered_refs.into_iter().collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let schema = &schemas[&name];
        let text = schema.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            todo.push(piece.split('"').next().unwrap().to_owned());
        }
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no required"))
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for property in properties.keys() {
            assert!(
                required.contains(property.as_str()) || (name == "User" && property == "balance"),
                "{name}.{property} is not required"
            );
        }
    }
    assert!(
        [
            "Order",
            "User",
            "Phone",
            "PayParams",
            "Refund",
            "LedgerEntry",
            "Failure"
        ]
        .iter()
        .all(|n| seen.contains(*n)),
        "the walk reached the answers' schemas: {seen:?}"
    );
}

/// Sends `body` (JSON, or raw when a string) and returns the status and JSON answer.
async fn send(
    env: &TestEnv,
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    env.call(method.clone(), path, token, Some(body.clone()))
        .await
}

#[tokio::test]
async fn request_schemas_refuse_what_the_server_refuses() {
    let env = TestEnv::start_with(|s| s.pay.max_amount_fen = 100_000).await;
    let doc = Doc::fetch(&env).await;
    let (token, _) = env.login("o_openapi").await;
    let long = |n: usize| "字".repeat(n);

    // (method, template, concrete path, token, bodies the schema accepts, bodies it refuses)
    type Cases<'a> = (
        Method,
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<Value>,
        Vec<Value>,
    );
    let cases: Vec<Cases> = vec![
        (
            Method::POST,
            "/v1/auth/login",
            "/v1/auth/login",
            None,
            vec![json!({"code": "unknown-code_1"})],
            vec![
                json!({}),
                json!({"code": ""}),
                json!({"code": "has space"}),
                json!({"code": "a".repeat(129)}),
                json!({"code": 5}),
                json!({"code": "abc", "extra": 1}),
            ],
        ),
        (
            Method::POST,
            "/v1/me/phone",
            "/v1/me/phone",
            Some(&token),
            vec![
                json!({"code": "unknownphonecode"}),
                json!({"code": "unknownphonecode", "encrypted_data": null, "iv": null}),
                json!({"encrypted_data": "AAAA", "iv": "AAAA"}),
            ],
            vec![
                json!({}),
                json!({"code": ""}),
                json!({"code": "a b"}),
                json!({"code": "abc", "iv": "AAAA"}),
                json!({"encrypted_data": "AAAA"}),
                json!({"code": "abc", "encrypted_data": "AAAA", "iv": "AAAA"}),
                json!({"code": "abc", "extra": 1}),
            ],
        ),
        (
            Method::PUT,
            "/v1/me/profile",
            "/v1/me/profile",
            Some(&token),
            vec![
                json!({"nickname": "bob"}),
                json!({"nickname": long(64), "avatar_url": null}),
                json!({"nickname": " bob ", "avatar_url": "https://example.com/a.png"}),
            ],
            vec![
                json!({}),
                json!({"nickname": ""}),
                json!({"nickname": "   "}),
                json!({"nickname": long(65)}),
                json!({"nickname": "a\u{7}b"}),
                json!({"nickname": "bob", "avatar_url": "ftp://example.com/a.png"}),
                json!({"nickname": "bob", "avatar_url": "https://"}),
                json!({"nickname": "bob", "avatar_url": "https://a b"}),
                json!({"nickname": "bob", "extra": 1}),
            ],
        ),
        (
            Method::POST,
            "/v1/orders",
            "/v1/orders",
            Some(&token),
            vec![
                json!({"amount": 1, "description": "coffee"}),
                json!({"amount": 100_000, "description": long(127)}),
            ],
            vec![
                json!({"amount": 0, "description": "coffee"}),
                json!({"amount": 100_001, "description": "coffee"}),
                json!({"amount": 1.5, "description": "coffee"}),
                json!({"amount": "100", "description": "coffee"}),
                json!({"amount": 100}),
                json!({"amount": 100, "description": ""}),
                json!({"amount": 100, "description": long(128)}),
                json!({"amount": 100, "description": "a\u{0}b"}),
                json!({"amount": 100, "description": "coffee", "extra": 1}),
            ],
        ),
        (
            Method::POST,
            "/v1/recharges",
            "/v1/recharges",
            Some(&token),
            vec![json!({"amount": 100})],
            vec![
                json!({}),
                json!({"amount": -1}),
                json!({"amount": 100_001}),
                json!({"amount": 100, "description": "x"}),
            ],
        ),
        (
            Method::POST,
            "/v1/admin/orders/{out_trade_no}/refunds",
            "/v1/admin/orders/nosuchorder01/refunds",
            Some(ADMIN_TOKEN),
            vec![
                json!({"amount": 1}),
                json!({"amount": 1, "reason": "", "out_refund_no": "rf-1|a*b@c"}),
                json!({"amount": 1, "reason": long(80), "out_refund_no": null}),
            ],
            vec![
                json!({}),
                json!({"amount": 0}),
                json!({"amount": 1, "reason": long(81)}),
                json!({"amount": 1, "reason": "a\u{1}b"}),
                json!({"amount": 1, "extra": 1}),
            ],
        ),
    ];
    for (method, template, path, token, accepted, refused) in cases {
        let schema = doc.request_schema(&method, template);
        for (body, valid) in accepted
            .iter()
            .map(|b| (b, true))
            .chain(refused.iter().map(|b| (b, false)))
        {
            assert_eq!(
                schema.is_valid(body),
                valid,
                "{method} {template}: the schema's word on {body}"
            );
            let (status, answer) = send(&env, &method, path, token, body).await;
            let server_refused =
                status == StatusCode::BAD_REQUEST && answer["error"]["code"] == "invalid_field";
            assert_eq!(
                server_refused, !valid,
                "{method} {template}: the server's word on {body}: {status} {answer}"
            );
            doc.check_answer(&method, template, status, &answer);
        }
    }

    // The query of the failure log: its documented bounds are the handler's.
    let limit =
        doc.operation(&Method::GET, "/v1/admin/failures")["parameters"][0]["schema"].clone();
    assert_eq!(
        (limit["minimum"].clone(), limit["maximum"].clone()),
        (json!(1), json!(1000))
    );
    for (query, code) in [
        ("?limit=abc", Some("invalid_query")),
        ("?limit=0", Some("invalid_field")),
        ("?limit=1001", Some("invalid_field")),
        ("?limit=1000", None),
    ] {
        let (status, answer) = env
            .admin(Method::GET, &format!("/v1/admin/failures{query}"))
            .await;
        assert_eq!(answer["error"]["code"].as_str(), code, "{query}: {answer}");
        doc.check_answer(&Method::GET, "/v1/admin/failures", status, &answer);
    }
}

#[tokio::test]
async fn refusals_before_a_handler_are_documented_envelopes() {
    let env = TestEnv::start_with(|s| s.http.max_body_bytes = 1024).await;
    let doc = Doc::fetch(&env).await;
    let (token, _) = env.login("o_openapi_edge").await;
    let mut seen = BTreeMap::new();

    // Over http.max_body_bytes by its Content-Length; not JSON; not application/json.
    let bodies = [
        (
            "application/json",
            format!(r#"{{"amount": 1, "description": "{}"}}"#, "a".repeat(2000)),
        ),
        ("application/json", "{not json".to_owned()),
        (
            "text/plain",
            r#"{"amount": 1, "description": "x"}"#.to_owned(),
        ),
    ];
    for (content_type, body) in bodies {
        let resp = env
            .http
            .post(format!("{}/v1/orders", env.api))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .header("idempotency-key", "k1")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.expect("a JSON body");
        doc.check_answer(&Method::POST, "/v1/orders", status, &answer);
        seen.insert(answer["error"]["code"].as_str().unwrap().to_owned(), status);
    }
    // No token, a bad token, a bad Idempotency-Key.
    let (status, answer) = env.call(Method::GET, "/v1/me", None, None).await;
    doc.check_answer(&Method::GET, "/v1/me", status, &answer);
    seen.insert(answer["error"]["code"].as_str().unwrap().to_owned(), status);
    let (status, answer) = env.call(Method::GET, "/v1/me", Some("nope"), None).await;
    doc.check_answer(&Method::GET, "/v1/me", status, &answer);
    seen.insert(answer["error"]["code"].as_str().unwrap().to_owned(), status);
    let resp = env
        .http
        .post(format!("{}/v1/orders", env.api))
        .bearer_auth(&token)
        .header("idempotency-key", "has space")
        .json(&json!({"amount": 1, "description": "x"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap();
    doc.check_answer(&Method::POST, "/v1/orders", status, &answer);
    seen.insert(answer["error"]["code"].as_str().unwrap().to_owned(), status);

    let want = [
        ("body_too_large", StatusCode::PAYLOAD_TOO_LARGE),
        ("malformed_json", StatusCode::BAD_REQUEST),
        ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("missing_token", StatusCode::UNAUTHORIZED),
        ("invalid_token", StatusCode::UNAUTHORIZED),
        ("invalid_idempotency_key", StatusCode::BAD_REQUEST),
    ];
    assert_eq!(
        seen,
        want.into_iter().map(|(c, s)| (c.to_owned(), s)).collect()
    );
}
