//! The event stream: connecting to NATS, appending events with their msg ids, and
//! reading a sequence range back. The vocabulary it carries is [`crate::core::events`].

mod atomic;
pub mod connect;
mod error;
mod facts;
mod group;
pub mod log;
pub mod reader;

pub use log::{Appended, EventLog, LogError};
