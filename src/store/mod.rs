//! Storage: the event stream on JetStream, the Postgres projections and the projector
//! that keeps them, replay and rebuild, the outcome outbox and its publisher, and the
//! per-user data keys that make personal data erasable.

pub mod db;
pub mod outcomes;
pub mod privacy;
pub mod projector;
pub mod replay;
pub mod stream;
