//! One operation of the table: what it takes, what it answers, and the error codes it
//! can answer (its own, and those its caller, parameters, body, rate limit and edge imply).

use axum::http::Method;
use utoipa::{
    openapi::{
        path::{Parameter, ParameterIn},
        schema::Schema,
        Ref, RefOr,
    },
    ToSchema,
};

use crate::daemon::api::codes::ErrorCode;

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// No credential.
    Anyone,
    /// A bearer token from `/v1/auth/login`: `missing_token`, `invalid_token`, `token_expired`.
    User,
    /// `auth.admin_token`: `admin_disabled`, `invalid_admin_token`.
    Admin,
}

/// The layers in front of a route, which answer errors of their own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Edge {
    /// The API's: the body limit (`body_too_large`), the deadlines (`timeout`), and the
    /// internal error any handler may end in.
    Api,
    /// The notifies': their own deadlines (`timeout`); refusals in WeChat's shape.
    Webhook,
    /// None (`/metrics`, merged after the API's layers).
    Bare,
}

/// A path parameter or a header an operation takes.
#[derive(Clone, Copy)]
pub(super) enum Param {
    /// `{out_trade_no}`: one that does not parse is `order_not_found`.
    OutTradeNo,
    /// `{user_id}`: one that is not a UUID is `invalid_field`.
    UserId,
    /// The optional `Idempotency-Key`: `invalid_idempotency_key`.
    IdempotencyKey,
}

/// A request or answer body.
pub(super) enum Body {
    /// JSON of this schema (a `$ref` to `components`, or inline), with the components
    /// it needs.
    Json(RefOr<Schema>, Vec<(String, RefOr<Schema>)>),
    /// Another media type.
    Other(&'static str, RefOr<Schema>),
    /// No body.
    Empty,
}

/// JSON of type `T`, as a `$ref` to its component.
pub(super) fn json<T: ToSchema>() -> Body {
    let mut components = Vec::new();
    T::schemas(&mut components);
    components.push((T::name().into_owned(), T::schema()));
    Body::Json(Ref::from_schema_name(T::name()).into(), components)
}

/// An answer of an operation other than an error of the table.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) description: &'static str,
    pub(super) body: Body,
}

/// One operation of the API.
pub(super) struct Operation {
    pub(super) method: Method,
    pub(super) path: &'static str,
    pub(super) id: &'static str,
    pub(super) summary: &'static str,
    pub(super) description: Option<&'static str>,
    pub(super) caller: Caller,
    pub(super) edge: Edge,
    pub(super) params: Vec<Param>,
    pub(super) other_params: Vec<Parameter>,
    pub(super) request: Option<Body>,
    pub(super) answers: Vec<Answer>,
    /// The codes it answers beyond those its caller, parameters, body, rate limit and edge
    /// imply.
    pub(super) errors: Vec<ErrorCode>,
    pub(super) limited: bool,
}

impl Operation {
    pub(super) fn new(
        method: Method,
        path: &'static str,
        id: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            method,
            path,
            id,
            summary,
            description: None,
            caller: Caller::Anyone,
            edge: Edge::Api,
            params: Vec::new(),
            other_params: Vec::new(),
            request: None,
            answers: Vec::new(),
            errors: Vec::new(),
            limited: false,
        }
    }

    pub(super) fn get(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::GET, path, id, summary)
    }

    pub(super) fn post(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::POST, path, id, summary)
    }

    pub(super) fn put(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::PUT, path, id, summary)
    }

    pub(super) fn user(self) -> Self {
        Self {
            caller: Caller::User,
            ..self
        }
    }

    pub(super) fn admin(self) -> Self {
        Self {
            caller: Caller::Admin,
            ..self
        }
    }

    pub(super) fn edge(self, edge: Edge) -> Self {
        Self { edge, ..self }
    }

    pub(super) fn describe(self, description: &'static str) -> Self {
        Self {
            description: Some(description),
            ..self
        }
    }

    pub(super) fn params(self, params: &[Param]) -> Self {
        Self {
            params: params.to_vec(),
            ..self
        }
    }

    pub(super) fn other_params(self, other_params: Vec<Parameter>) -> Self {
        Self {
            other_params,
            ..self
        }
    }

    pub(super) fn request(self, body: Body) -> Self {
        Self {
            request: Some(body),
            ..self
        }
    }

    pub(super) fn answer(mut self, status: u16, description: &'static str, body: Body) -> Self {
        self.answers.push(Answer {
            status,
            description,
            body,
        });
        self
    }

    pub(super) fn errors(self, errors: &[ErrorCode]) -> Self {
        Self {
            errors: errors.to_vec(),
            ..self
        }
    }

    /// Counted against a rate limit: `rate_limited` with `Retry-After`.
    pub(super) fn limited(self) -> Self {
        Self {
            limited: true,
            ..self
        }
    }

    /// Every code of the table it can answer, in table order.
    pub(super) fn codes(&self) -> Vec<ErrorCode> {
        use ErrorCode as E;
        let mut codes = self.errors.clone();
        codes.extend_from_slice(match self.caller {
            Caller::Anyone => &[],
            Caller::User => &[E::MissingToken, E::InvalidToken, E::TokenExpired],
            Caller::Admin => &[E::AdminDisabled, E::InvalidAdminToken],
        });
        codes.extend_from_slice(match self.edge {
            Edge::Api => &[E::BodyTooLarge, E::BodyTimeout, E::Timeout, E::Internal],
            Edge::Webhook => &[E::BodyTimeout, E::Timeout],
            Edge::Bare => &[],
        });
        for param in &self.params {
            codes.push(match param {
                Param::OutTradeNo => E::OrderNotFound,
                Param::UserId => E::InvalidField,
                Param::IdempotencyKey => E::InvalidIdempotencyKey,
            });
        }
        if self.other_params.iter().any(is_query) {
            codes.push(E::InvalidQuery);
        }
        if matches!(self.request, Some(Body::Json(..))) {
            codes.extend([E::InvalidField, E::MalformedJson, E::UnsupportedMediaType]);
        }
        if self.limited {
            codes.push(E::RateLimited);
        }
        codes.sort_by_key(|c| ErrorCode::ALL.iter().position(|a| a == c));
        codes.dedup();
        codes
    }
}

pub(super) fn is_query(p: &Parameter) -> bool {
    p.parameter_in == ParameterIn::Query
}
