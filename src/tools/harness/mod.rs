//! Private servers and processes for the fault tests and `wxledger bench faults`.

pub mod postgres;
