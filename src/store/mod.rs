//! Storage: the event stream on JetStream, the Postgres projections and the projector
//! that keeps them, the quarantine of unreadable events, replay and rebuild, the outcome
//! outbox and its publisher, and the per-user data keys that make personal data erasable.

pub mod db;
pub mod identity;
pub mod outcomes;
pub mod privacy;
pub mod projector;
pub mod quarantine;
pub mod replay;
pub mod stream;
