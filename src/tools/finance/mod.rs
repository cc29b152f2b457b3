//! Finance tools over the books: WeChat Pay's trade bill (交易账单), read exactly, and
//! its line-by-line reconciliation against our books (`wxledger reconcile`): [`books`]
//! loads our side, [`matcher`] matches it against the bill, [`reconcile`] runs it all.

pub mod bill;
pub mod books;
pub mod matcher;
pub mod reconcile;
pub mod yuan;

pub use reconcile::{BillReport, BillSource, ReconcileError};
