//! The fold: every decision wxledger makes from its events, as plain functions over plain
//! data. No clock, no randomness, no I/O: the same events always give the same state.
//!
//! The projector loads the slice of state an event batch touches ([`Keys`]), folds the
//! batch in memory and writes back what changed; a full rebuild folds from empty.

pub mod users;

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::events::{Event, Recorded};

pub use users::{Phone, User, Users};

/// The state the fold decides over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Users by id, with the phone index.
    pub users: Users,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed the state.
    Applied,
    /// Already applied (its sequence is not newer than the row's): nothing changed.
    AlreadyApplied,
    /// Recorded but refused by the rules; the reason is a stable code.
    Refused(&'static str),
}

/// The rows an event reads or writes; the projector loads them before folding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// Users by id.
    pub user_ids: BTreeSet<Uuid>,
    /// Users by phone key (see [`Phone::key`]).
    pub phones: BTreeSet<String>,
}

impl Keys {
    /// Adds the keys `event` touches.
    pub fn add(&mut self, event: &Event) {
        match event {
            Event::UserRegistered(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::UserLoggedIn(e) => {
                self.user_ids.insert(e.user_id);
            }
            Event::PhoneBound(e) => {
                self.user_ids.insert(e.user_id);
                self.phones
                    .insert(Phone::new(&e.country_code, &e.pure_phone_number).key());
            }
            Event::ProfileUpdated(e) => {
                self.user_ids.insert(e.user_id);
            }
            _ => {}
        }
    }
}

impl State {
    /// Applies one recorded event.
    pub fn apply(&mut self, rec: &Recorded) -> Outcome {
        let seq = i64::try_from(rec.seq).expect("stream sequences fit in i64");
        match &rec.event {
            Event::UserRegistered(e) => self.users.registered(seq, rec.occurred_at, e),
            Event::UserLoggedIn(e) => self.users.logged_in(seq, rec.occurred_at, e),
            Event::PhoneBound(e) => self.users.phone_bound(seq, rec.occurred_at, e),
            Event::ProfileUpdated(e) => self.users.profile_updated(seq, e),
            _ => Outcome::Refused("not_folded_yet"),
        }
    }

    /// Applies events in order.
    pub fn apply_all<'a>(&mut self, recs: impl IntoIterator<Item = &'a Recorded>) {
        for rec in recs {
            self.apply(rec);
        }
    }
}

#[cfg(test)]
mod tests;
