//! `wxledger_leader{role}`: 1 while this instance holds a role's advisory lock (the
//! projector, the outcome publisher), 0 while it stands by, so an operator (and the
//! cluster tests) can tell which of several instances is active.

use prometheus_client::metrics::{family::Family, gauge::Gauge};

use super::{labels::Role, Metrics};

/// The roles one instance per schema leads.
pub const ROLES: [&str; 2] = ["projector", "publisher"];

/// The gauge family, with every role's series present (at 0) from the start.
pub(super) fn family() -> Family<Role, Gauge> {
    let family = Family::<Role, Gauge>::default();
    for role in ROLES {
        let _ = family.get_or_create(&Role { role });
    }
    family
}

/// Marks this instance as leading `role` while it lives; the gauge goes back to 0 when it
/// is dropped (the round that held the lock ended, however it ended).
pub struct Leading {
    metrics: Metrics,
    role: &'static str,
}

impl Leading {
    /// Sets `wxledger_leader{role}` to 1 until the mark drops.
    pub fn new(metrics: &Metrics, role: &'static str) -> Self {
        metrics.set_leader(role, true);
        Self {
            metrics: metrics.clone(),
            role,
        }
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        self.metrics.set_leader(self.role, false);
    }
}

impl Metrics {
    fn set_leader(&self, role: &'static str, leads: bool) {
        self.0
            .leader
            .get_or_create(&Role { role })
            .set(i64::from(leads));
    }

    /// Whether this instance currently leads `role`.
    pub fn leads(&self, role: &'static str) -> bool {
        self.0
            .leader
            .get(&Role { role })
            .is_some_and(|g| g.get() == 1)
    }
}
