//! wxledger: the money side of a WeChat mini program, event-sourced. Every accepted
//! request and verified WeChat callback is an event on a JetStream stream; all state is
//! a projection into Postgres that a pure fold rebuilds from that stream.

pub mod core;
pub mod daemon;
pub mod settings;
pub mod sim;
pub mod store;
pub mod tools;
pub mod wechat;

pub use daemon::startup::App;
pub use settings::Settings;
