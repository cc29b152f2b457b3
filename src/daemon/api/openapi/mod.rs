//! The OpenAPI 3.1 document `GET /openapi.json` serves, generated from the API's own
//! types (their `utoipa::ToSchema` derives), one table of operations ([`table`]) and the
//! table of error codes ([`ErrorCode`]): each operation lists, per status, the codes it
//! can answer.

pub(super) mod enums;
mod operation;
mod schemas;
mod table;

use std::collections::BTreeMap;

use axum::http::Method;
use utoipa::openapi::{
    header::HeaderBuilder,
    path::{
        HttpMethod, Operation as PathOperation, OperationBuilder, Parameter, ParameterBuilder,
        ParameterIn,
    },
    request_body::RequestBodyBuilder,
    response::{ResponseBuilder, ResponsesBuilder},
    schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type},
    security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
};

use self::{
    operation::{Body, Caller, Operation, Param},
    schemas::{envelope, error_code_schema, string},
    table::operations,
};
use super::codes::ErrorCode;

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

/// Sets the maximum of an `amount` property to `pay.max_amount_fen`.
fn bound_amount(schema: &mut RefOr<Schema>, max_amount_fen: i64) {
    if let RefOr::T(Schema::Object(object)) = schema {
        if let Some(RefOr::T(Schema::Object(amount))) = object.properties.get_mut("amount") {
            amount.maximum = Some(max_amount_fen.into());
        }
    }
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
