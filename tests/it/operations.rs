//! `/openapi.json` stays true: every route of the router is in it, every path in it is
//! routed, and every error code the handlers use is listed.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::TestEnv;

fn source(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// `(METHOD, path)` of every `.route("path", method(handler).method(handler)...)` in the
/// router.
fn routes_in_router() -> BTreeSet<(String, String)> {
    let text = source("src/api/mod.rs");
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

/// Error codes handed to `ApiError::new(status, "code", ...)` anywhere under src/api/.
fn codes_in_handlers() -> BTreeSet<String> {
    let mut codes = BTreeSet::from(["invalid_field".to_owned(), "unavailable".to_owned()]);
    for entry in
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("ApiError::new(").skip(1) {
                if let Some(code) = piece.split('"').nth(1) {
                    if piece.split('"').next().unwrap().contains("StatusCode::") {
                        codes.insert(code.to_owned());
                    }
                }
            }
            for piece in text.split("Self::new(").skip(1) {
                if piece.split('"').next().unwrap().contains("StatusCode::") {
                    codes.insert(piece.split('"').nth(1).unwrap().to_owned());
                }
            }
        }
    }
    codes
}

#[tokio::test]
async fn openapi_describes_every_route_and_error_code() {
    let env = TestEnv::start().await;
    let (status, doc) = env.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut described = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            described.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed = routes_in_router();
    assert!(
        routed.len() >= 17,
        "the router parse found the routes: {routed:?}"
    );
    assert_eq!(routed, described, "router and openapi.json differ");

    // Each described route answers as a route, not as the fallback.
    for (method, path) in &described {
        let concrete = path.replace("{out_trade_no}", "nosuchorder01");
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
        assert!(
            !fallback && body["error"]["code"] != "method_not_allowed",
            "{method} {path} is not routed ({status})"
        );
    }

    let listed: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let used = codes_in_handlers();
    let missing: Vec<&String> = used.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "error codes not in openapi.json: {missing:?}"
    );
    assert!(used.len() > 20, "the code scan found the codes: {used:?}");
    let _: Value = doc;
}
