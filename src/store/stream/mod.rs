//! The event stream: connecting to NATS, appending events with their msg ids, and
//! reading a sequence range back. The vocabulary it carries is [`crate::core::events`].

pub mod connect;
mod facts;
pub mod log;

pub use log::{Appended, EventLog, LogError};
