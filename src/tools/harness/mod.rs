//! A harness for fault runs on real engines, on this machine: private nats-servers (one,
//! or a 3-node JetStream cluster), a private PostgreSQL, `wxledger serve` processes on one schema and stream, a
//! TCP round-robin balancer in front of them, a load that behaves like WeChat and a mini
//! program, and the check that nothing was lost or doubled. Used by the cluster tests and
//! the fault bench; it takes the `wxledger` binary's path, never test-only code.

pub mod balancer;
pub mod check;
pub mod cluster;
pub mod daemon;
pub mod load;
pub mod nats;
pub mod postgres;
pub mod rig;

pub use balancer::Balancer;
pub use check::{check, Verdict};
pub use cluster::NatsCluster;
pub use daemon::{Daemon, Deployment};
pub use load::{notify_tally, Load, LoadConfig, LoadReport, NotifyTally, Paid, Tally};
pub use nats::{NatsNode, NodeSpec};
pub use postgres::PrivatePostgres;
pub use rig::{NatsServers, Rig, RigOptions};
