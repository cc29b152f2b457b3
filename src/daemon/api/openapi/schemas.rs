//! Schemas written by hand: the error envelope and codes, WeChat's notify answers, the
//! health answers, `POST /v1/me/phone`'s two forms, and the names of the API's enums.

use std::borrow::Cow;

use utoipa::{
    openapi::{
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type},
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

pub(super) fn readiness() -> ObjectBuilder {
    let word = |words: [&str; 2]| RefOr::from(string().enum_values(Some(words)));
    closed(vec![
        ("status", word(["ready", "not_ready"])),
        (
            "checks",
            closed(vec![
                ("nats", word(["up", "down"])),
                ("postgres", word(["up", "down"])),
                ("migrations", word(["applied", "pending"])),
            ])
            .into(),
        ),
        (
            "projector_checkpoint",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .into(),
        ),
    ])
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
