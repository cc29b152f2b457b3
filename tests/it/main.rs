//! End-to-end tests: the daemon and the simulator over HTTP, with the machine's real
//! NATS JetStream and Postgres; each test in its own schema and stream.

mod audit;
mod common;
mod faults;
mod log;
mod login;
mod operations;
mod outcomes;
mod pay_v2;
mod payments;
mod phone;
mod profile;
mod projection;
mod proxy;
mod reconcile;
mod refunds;
mod replay;
mod sim_pay;
mod tail;
mod v2_refund_notify;
mod versions;
mod webhook;
