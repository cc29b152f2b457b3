//! The names of the API's enums, as schemas for the view types' fields: each type's names
//! listed once, with a match that stops compiling when a variant is added and not listed.
//! A leaf: the views in `orders.rs` and `admin.rs` use it, and the document uses them.

use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::core::{
    events::OrderKind,
    fold::{ledger::EntryKind, OrderState, PaidWith, RefundState},
};

/// A string schema.
pub(super) fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// Each of a type's names, listed once with a match that stops compiling when a variant
/// is added and not listed.
macro_rules! names {
    ($ty:ident: $($variant:ident),+) => {{
        let _exhaustive = |x: $ty| match x {
            $($ty::$variant)|+ => (),
        };
        [$($ty::$variant),+].map($ty::as_str)
    }};
}

/// `kind` of an order.
pub(in crate::daemon::api) fn order_kind() -> ObjectBuilder {
    string().enum_values(Some(names!(OrderKind: Order, Recharge)))
}

/// `state` of an order.
pub(in crate::daemon::api) fn order_state() -> ObjectBuilder {
    string().enum_values(Some(names!(OrderState:
        Created, PrepayIssued, Paid, Closed, PayError, PartiallyRefunded, Refunded)))
}

/// `paid_with` of an order: `null` until paid.
pub(in crate::daemon::api) fn paid_with() -> ObjectBuilder {
    let mut names: Vec<Option<&str>> = names!(PaidWith: Wechat, Wallet).map(Some).to_vec();
    names.push(None);
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::Array(vec![
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(names))
}

/// `state` of a refund.
pub(in crate::daemon::api) fn refund_state() -> ObjectBuilder {
    string().enum_values(Some(names!(RefundState:
        Requested, Processing, Abnormal, Succeeded, Closed, Rejected, Refused)))
}

/// `kind` of a ledger posting.
pub(in crate::daemon::api) fn entry_kind() -> ObjectBuilder {
    string().enum_values(Some(names!(EntryKind:
        Recharge, Sale, Suspense, WalletPayment, RefundReserve, Refund, RefundRelease)))
}

/// The currency: always CNY.
pub(in crate::daemon::api) fn currency() -> ObjectBuilder {
    string().enum_values(Some(["CNY"]))
}
