//! Finance tools over the books: WeChat Pay's trade bill (交易账单), read exactly, and
//! its line-by-line reconciliation against the ledger (`wxledger reconcile`).

pub mod bill;
pub mod books;
pub mod matcher;
pub mod reconcile;
pub mod yuan;

pub use reconcile::{BillReport, BillSource, ReconcileError};
