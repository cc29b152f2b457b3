//! Users: registration, logins, phone binding (one user per phone) and profiles.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Outcome;
use crate::events::{PhoneBound, ProfileUpdated, UserLoggedIn, UserRegistered};

/// A phone number as WeChat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// Country calling code without `+`.
    pub country_code: String,
    /// The national number.
    pub pure_phone_number: String,
}

impl Phone {
    /// A phone from its parts.
    pub fn new(country_code: &str, pure_phone_number: &str) -> Self {
        Self {
            country_code: country_code.to_owned(),
            pure_phone_number: pure_phone_number.to_owned(),
        }
    }

    /// The unique key of a phone: `+<country code><number>`.
    pub fn key(&self) -> String {
        format!("+{}{}", self.country_code, self.pure_phone_number)
    }

    /// The number with its middle hidden, for display: `138****8000`.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.pure_phone_number.chars().collect();
        if chars.len() <= 4 {
            return "*".repeat(chars.len());
        }
        let keep_head = if chars.len() >= 11 { 3 } else { 1 };
        let keep_tail = 4.min(chars.len() - keep_head);
        let hidden = chars.len() - keep_head - keep_tail;
        let mut out: String = chars[..keep_head].iter().collect();
        out.push_str(&"*".repeat(hidden));
        out.extend(&chars[chars.len() - keep_tail..]);
        out
    }
}

/// One row of the `users` projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id.
    pub user_id: Uuid,
    /// openid under our app id.
    pub openid: String,
    /// unionid, once WeChat reported one.
    pub unionid: Option<String>,
    /// The bound phone.
    pub phone: Option<Phone>,
    /// When the current phone was bound.
    pub phone_bound_at: Option<DateTime<Utc>>,
    /// Profile nickname.
    pub nickname: Option<String>,
    /// Profile avatar.
    pub avatar_url: Option<String>,
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
            self.phone_owner.insert(phone.key(), user.user_id);
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
    fn fresh(&mut self, user_id: Uuid, seq: i64) -> Result<&mut User, Outcome> {
        let user = self
            .by_id
            .get_mut(&user_id)
            .ok_or(Outcome::Refused("unknown_user"))?;
        if seq <= user.last_seq {
            return Err(Outcome::AlreadyApplied);
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
    ) -> Outcome {
        if self.by_id.contains_key(&e.user_id) {
            // Two first logins raced (or the projection lagged): the later one is a login.
            return self.logged_in(
                seq,
                at,
                &UserLoggedIn {
                    user_id: e.user_id,
                    unionid: e.unionid.clone(),
                },
            );
        }
        self.by_id.insert(
            e.user_id,
            User {
                user_id: e.user_id,
                openid: e.openid.clone(),
                unionid: e.unionid.clone(),
                phone: None,
                phone_bound_at: None,
                nickname: None,
                avatar_url: None,
                registered_at: at,
                last_login_at: at,
                login_count: 1,
                last_seq: seq,
            },
        );
        self.dirty.insert(e.user_id);
        Outcome::Applied
    }

    pub(super) fn logged_in(&mut self, seq: i64, at: DateTime<Utc>, e: &UserLoggedIn) -> Outcome {
        let user = match self.fresh(e.user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        user.login_count += 1;
        user.last_login_at = user.last_login_at.max(at);
        if e.unionid.is_some() {
            user.unionid.clone_from(&e.unionid);
        }
        Outcome::Applied
    }

    pub(super) fn phone_bound(&mut self, seq: i64, at: DateTime<Utc>, e: &PhoneBound) -> Outcome {
        let phone = Phone::new(&e.country_code, &e.pure_phone_number);
        let key = phone.key();
        let owner = self.phone_owner.get(&key).copied();
        let user = match self.fresh(e.user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        match owner {
            Some(owner) if owner != e.user_id => return Outcome::Refused("phone_taken"),
            Some(_) => return Outcome::Applied,
            None => {}
        }
        let previous = user.phone.replace(phone);
        user.phone_bound_at = Some(at);
        if let Some(previous) = previous {
            self.phone_owner.remove(&previous.key());
        }
        self.phone_owner.insert(key, e.user_id);
        Outcome::Applied
    }

    pub(super) fn profile_updated(&mut self, seq: i64, e: &ProfileUpdated) -> Outcome {
        let user = match self.fresh(e.user_id, seq) {
            Ok(user) => user,
            Err(outcome) => return outcome,
        };
        user.nickname = Some(e.nickname.clone());
        user.avatar_url.clone_from(&e.avatar_url);
        Outcome::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phones() {
        assert_eq!(Phone::new("86", "13800138000").masked(), "138****8000");
        assert_eq!(Phone::new("1", "2025550123").masked(), "2*****0123");
        assert_eq!(Phone::new("1", "123").masked(), "***");
        assert_eq!(Phone::new("86", "13800138000").key(), "+8613800138000");
    }
}
