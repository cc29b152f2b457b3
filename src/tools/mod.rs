//! The finance and operator tools run from the command line: the audit, bill
//! reconciliation, the event tail, the benchmarks and the demo.

pub mod audit;
pub mod bench;
pub mod demo;
pub mod finance;
pub mod harness;
pub mod tail;
