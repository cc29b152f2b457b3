//! Users: registration, logins, phone binding (one user per phone), profiles and
//! erasure. Sealed personal data stays sealed here: the fold never holds a key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use super::phone::{bidx_owner_key, BoundPhone, Phone};
use super::{Refusal, Verdict};
use crate::core::events::{
    LoggedInSealed, PhoneBound, PhoneSealed, ProfileSealed, ProfileUpdated, RegisteredSealed,
    Sealed, UserErased, UserLoggedIn, UserRegistered,
};

/// A unionid as an event carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unionid {
    /// v1 events: in clear.
    Plain(String),
    /// v2 events: sealed under the user's data key.
    Sealed(Sealed),
}

impl User {
    /// Keeps the unionid an event reported (none reported keeps the known one); an
    /// erased user's is never kept again.
    fn set_unionid(&mut self, unionid: Option<Unionid>) {
        if self.erased_at.is_some() {
            return;
        }
        match unionid {
            Some(Unionid::Plain(u)) => {
                self.unionid = Some(u);
                self.unionid_sealed = None;
            }
            Some(Unionid::Sealed(u)) => {
                self.unionid = None;
                self.unionid_sealed = Some(u);
            }
            None => {}
        }
    }
}

/// One row of the `users` projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id.
    pub user_id: Uuid,
    /// openid under our app id.
    pub openid: String,
    /// unionid, once WeChat reported one in a v1 event (in clear).
    pub unionid: Option<String>,
    /// unionid, once WeChat reported one in a v2 event (sealed).
    pub unionid_sealed: Option<Sealed>,
    /// The bound phone.
    pub phone: Option<BoundPhone>,
    /// When the current phone was bound.
    pub phone_bound_at: Option<DateTime<Utc>>,
    /// Profile nickname, when set by a v1 event (in clear).
    pub nickname: Option<String>,
    /// Profile avatar, when set by a v1 event (in clear).
    pub avatar_url: Option<String>,
    /// The profile, when set by a v2 event (sealed).
    pub profile_sealed: Option<Sealed>,
    /// When the user was erased (`user.erased`); their personal columns are empty.
    pub erased_at: Option<DateTime<Utc>>,
    /// First login.
    pub registered_at: DateTime<Utc>,
    /// Latest login.
    pub last_login_at: DateTime<Utc>,
    /// Logins so far, the first included.
    pub login_count: i64,
    /// Sequence of the newest event applied to this row.
    pub last_seq: i64,
}

/// Users by id, with the index that keeps a phone on one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    by_id: BTreeMap<Uuid, User>,
    phone_owner: BTreeMap<String, Uuid>,
    dirty: BTreeSet<Uuid>,
}

impl Users {
    /// Adds a row loaded from storage (not marked changed).
    pub fn load(&mut self, user: User) {
        if let Some(phone) = &user.phone {
            self.phone_owner.insert(phone.owner_key(), user.user_id);
        }
        self.by_id.insert(user.user_id, user);
    }

    /// The user with this id.
    pub fn get(&self, user_id: &Uuid) -> Option<&User> {
        self.by_id.get(user_id)
    }

    /// Every user, by id.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.by_id.values()
    }

    /// The rows changed since the last call, which are forgotten as changed.
    pub fn take_changed(&mut self) -> Vec<User> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.by_id.get(&id).cloned())
            .collect()
    }

    /// The row to change, unless `seq` was already applied to it.
    fn fresh(&mut self, user_id: Uuid, seq: i64) -> Result<&mut User, Verdict> {
        let user = self
            .by_id
            .get_mut(&user_id)
            .ok_or(Verdict::Refused(Refusal::UnknownUser))?;
        if seq <= user.last_seq {
            return Err(Verdict::AlreadyApplied);
        }
        user.last_seq = seq;
        self.dirty.insert(user_id);
        Ok(user)
    }

    pub(super) fn registered(
        &mut self,
        seq: i64,
        at: DateTime<Utc>,
        e: &UserRegistered,
    ) -> Verdict {
        let unionid = e.unionid.clone().map(Unionid::Plain);
        self.register(seq, at, e.user_id, &e.openid, unionid)
    }

    pub(super) fn registered_sealed(
        &mut self,
        seq: i64,
        at: DateTime<Utc>,
        e: &RegisteredSealed,
    ) -> Verdict {
        let unionid = e.unionid.clone().map(Unionid::Sealed);
        self.register(seq, at, e.user_id, &e.openid, unionid)
    }

    fn register(
        &mut self,
        seq: i64,
        at: DateTime<Utc>,
        user_id: Uuid,
        openid: &str,
        unionid: Option<Unionid>,
    ) -> Verdict {
        if self.by_id.contains_key(&user_id) {
            // Two first logins raced (or the projection lagged): the later one is a login.
            return self.login(seq, at, user_id, unionid);
        }
        let mut user = User {
            user_id,
            openid: openid.to_owned(),
            unionid: None,
            unionid_sealed: None,
            phone: None,
            phone_bound_at: None,
            nickname: None,
            avatar_url: None,
            profile_sealed: None,
            erased_at: None,
            registered_at: at,
            last_login_at: at,
            login_count: 1,
            last_seq: seq,
        };
        user.set_unionid(unionid);
        self.by_id.insert(user_id, user);
        self.dirty.insert(user_id);
        Verdict::applied()
    }

    pub(super) fn logged_in(&mut self, seq: i64, at: DateTime<Utc>, e: &UserLoggedIn) -> Verdict {
        let unionid = e.unionid.clone().map(Unionid::Plain);
        self.login(seq, at, e.user_id, unionid)
    }

    pub(super) fn logged_in_sealed(
        &mut self,
        seq: i64,
        at: DateTime<Utc>,
        e: &LoggedInSealed,
    ) -> Verdict {
        let unionid = e.unionid.clone().map(Unionid::Sealed);
        self.login(seq, at, e.user_id, unionid)
    }

    fn login(
        &mut self,
        seq: i64,
        at: DateTime<Utc>,
        user_id: Uuid,
        unionid: Option<Unionid>,
    ) -> Verdict {
        let user = match self.fresh(user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        user.login_count += 1;
        user.last_login_at = user.last_login_at.max(at);
        user.set_unionid(unionid);
        Verdict::applied()
    }

    pub(super) fn phone_bound(&mut self, seq: i64, at: DateTime<Utc>, e: &PhoneBound) -> Verdict {
        let phone = BoundPhone::Plain(Phone::new(&e.country_code, &e.pure_phone_number));
        self.bind(seq, at, e.user_id, phone)
    }

    pub(super) fn phone_sealed(&mut self, seq: i64, at: DateTime<Utc>, e: &PhoneSealed) -> Verdict {
        let phone = BoundPhone::Sealed {
            phone: e.phone.clone(),
            bidx: e.phone_bidx.clone(),
        };
        self.bind(seq, at, e.user_id, phone)
    }

    fn bind(&mut self, seq: i64, at: DateTime<Utc>, user_id: Uuid, phone: BoundPhone) -> Verdict {
        let key = phone.owner_key();
        let owner = self.phone_owner.get(&key).copied();
        let user = match self.fresh(user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        if user.erased_at.is_some() {
            return Verdict::Refused(Refusal::UserErased);
        }
        match owner {
            Some(owner) if owner != user_id => return Verdict::Refused(Refusal::PhoneTaken),
            Some(_) => return Verdict::applied(),
            None => {}
        }
        let previous = user.phone.replace(phone);
        user.phone_bound_at = Some(at);
        if let Some(previous) = previous {
            self.phone_owner.remove(&previous.owner_key());
        }
        self.phone_owner.insert(key, user_id);
        Verdict::applied()
    }

    pub(super) fn profile_updated(&mut self, seq: i64, e: &ProfileUpdated) -> Verdict {
        let user = match self.fresh(e.user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        if user.erased_at.is_some() {
            return Verdict::Refused(Refusal::UserErased);
        }
        user.nickname = Some(e.nickname.clone());
        user.avatar_url.clone_from(&e.avatar_url);
        user.profile_sealed = None;
        Verdict::applied()
    }

    pub(super) fn profile_sealed(&mut self, seq: i64, e: &ProfileSealed) -> Verdict {
        let user = match self.fresh(e.user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        if user.erased_at.is_some() {
            return Verdict::Refused(Refusal::UserErased);
        }
        user.nickname = None;
        user.avatar_url = None;
        user.profile_sealed = Some(e.profile.clone());
        Verdict::applied()
    }

    /// Clears what is personal in the row (sealed or in clear) and frees the phone; the
    /// openid stays (see the README's Erasure section), as do the logins' times and counts.
    pub(super) fn erased(&mut self, seq: i64, at: DateTime<Utc>, e: &UserErased) -> Verdict {
        let user = match self.fresh(e.user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        if user.erased_at.is_some() {
            return Verdict::applied();
        }
        user.erased_at = Some(at);
        let phone = user.phone.take();
        user.phone_bound_at = None;
        user.unionid = None;
        user.unionid_sealed = None;
        user.nickname = None;
        user.avatar_url = None;
        user.profile_sealed = None;
        if let Some(phone) = phone {
            self.phone_owner.remove(&phone.owner_key());
        }
        Verdict::applied()
    }
}
