//! End-to-end tests: the daemon and the simulator over HTTP, with the machine's real
//! NATS JetStream and Postgres; each test in its own schema and stream.

mod audit;
mod common;
mod compose;
mod db_orders;
mod envelope;
mod erasure;
mod faults;
mod limits;
mod log;
mod login;
mod metrics;
mod modes;
mod nats_auth;
mod operations;
mod outcomes;
mod pay_v2;
mod payments;
mod pg_tls;
mod phone;
mod poison;
mod profile;
mod projection;
mod proxy;
mod reconcile;
mod refunds;
mod replay;
mod sim_pay;
mod startup_errors;
mod tail;
mod v2_refund_notify;
mod verdicts;
mod versions;
mod webhook;
mod webhook_abuse;
