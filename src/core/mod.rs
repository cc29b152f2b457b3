//! The core: the event vocabulary, the pure fold that decides from it, the edge types
//! input is parsed into, and leaf helpers (clock, symmetric crypto, error chains). No I/O.

pub mod causes;
pub mod clock;
pub mod crypto;
pub mod domain;
pub mod events;
pub mod fold;
