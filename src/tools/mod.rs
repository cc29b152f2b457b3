//! The finance and operator tools run from the command line: the audit, bill
//! reconciliation, the event tail, the benchmarks, the demo and the fault harness.

pub mod audit;
pub mod bench;
pub mod demo;
pub mod finance;
pub mod harness;
pub mod tail;
