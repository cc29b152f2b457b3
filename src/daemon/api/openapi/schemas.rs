//! Schemas written by hand: the error envelope and codes, WeChat's notify answers, the
//! health answers, `POST /v1/me/phone`'s two forms, and the names of the API's enums.

use std::borrow::Cow;

use utoipa::{
    openapi::{
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType,
            Type,
        },
        RefOr, Required,
    },
    PartialSchema, ToSchema,
};

pub(super) use super::enums::string;
use super::operation::Body;
use crate::daemon::api::{codes::ErrorCode, users};

pub(super) fn wechatpay_headers() -> Vec<Parameter> {
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

/// An object whose every property is required and no other is allowed.
pub(super) fn closed(properties: Vec<(&str, RefOr<Schema>)>) -> ObjectBuilder {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in properties {
        object = object.property(name, schema).required(name);
    }
    object
}

/// `{"error":{"code","message"}}` with `code` of this schema.
pub(super) fn envelope(code: RefOr<Schema>) -> ObjectBuilder {
    closed(vec![(
        "error",
        closed(vec![("code", code), ("message", string().into())]).into(),
    )])
}

/// Every code of the table, each with its status and meaning in the description.
pub(super) fn error_code_schema() -> ObjectBuilder {
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

pub(super) fn wechat_fail() -> Body {
    let schema = closed(vec![
        ("code", string().enum_values(Some(["FAIL"])).into()),
        ("message", string().into()),
    ]);
    Body::Json(schema.into(), Vec::new())
}

pub(super) fn xml() -> Body {
    Body::Other("text/xml", string().into())
}

pub(super) fn health() -> ObjectBuilder {
    closed(vec![("status", string().enum_values(Some(["ok"])).into())])
}

/// A readiness answer of `role`: `role`, `ready`, `status`, `reasons`, `checks` of these
/// `checks`, and the `extra` fields.
fn readiness(
    role: &str,
    checks: Vec<(&str, RefOr<Schema>)>,
    extra: Vec<(&str, RefOr<Schema>)>,
) -> ObjectBuilder {
    let reasons = ArrayBuilder::new().items(string()).description(Some(
        "Why not ready, e.g. `postgres: no answer within 1s`, `projector lag 1234 > 1000`; \
         empty when ready.",
    ));
    let mut fields: Vec<(&str, RefOr<Schema>)> = vec![
        ("role", string().enum_values(Some([role])).into()),
        (
            "ready",
            ObjectBuilder::new().schema_type(Type::Boolean).into(),
        ),
        (
            "status",
            string().enum_values(Some(["ready", "not_ready"])).into(),
        ),
        ("reasons", reasons.into()),
        ("checks", closed(checks).into()),
    ];
    fields.extend(extra);
    closed(fields)
}

fn up_down() -> RefOr<Schema> {
    string().enum_values(Some(["up", "down"])).into()
}

pub(super) fn readiness_webhooks() -> ObjectBuilder {
    readiness("webhooks", vec![("nats", up_down())], Vec::new())
}

pub(super) fn readiness_api() -> ObjectBuilder {
    let count = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    };
    let checks = vec![
        ("nats", up_down()),
        ("postgres", up_down()),
        (
            "migrations",
            string().enum_values(Some(["applied", "pending"])).into(),
        ),
        (
            "projector",
            string()
                .enum_values(Some(["within_lag", "behind", "halted", "unknown"]))
                .into(),
        ),
    ];
    let lag = count()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .description(Some(
            "Events not yet applied; null when NATS or Postgres did not answer.",
        ));
    readiness(
        "api",
        checks,
        vec![
            ("projector_checkpoint", count().into()),
            ("projector_lag", lag.into()),
        ],
    )
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
