//! wxledger: the money side of a WeChat mini program, event-sourced. Every accepted
//! request and verified WeChat callback is an event on a JetStream stream; all state is
//! a projection into Postgres that a pure fold rebuilds from that stream.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod causes;
pub mod clock;
pub mod commands;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod devkeys;
pub mod domain;
pub mod events;
pub mod finance;
pub mod fold;
pub mod healthcheck;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod outcomes;
pub mod privacy;
pub mod projector;
pub mod replay;
pub mod settings;
pub mod sim;
pub mod startup;
pub mod tail;
pub mod telemetry;
pub mod wechat;

pub use settings::Settings;
pub use startup::App;
