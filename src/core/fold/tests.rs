//! Table tests and properties of the fold.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::core::events::{
    BlindIndex, LoggedInSealed, PhoneBound, PhoneSealed, PhoneSource, ProfileSealed,
    ProfileUpdated, Sealed, UserErased, UserLoggedIn, UserRegistered,
};

fn uid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn rec(seq: u64, event: Event) -> Recorded {
    Recorded {
        seq,
        id: Uuid::from_u128(u128::from(seq)),
        occurred_at: Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap(),
        correlation_id: format!("req-{seq}"),
        event,
    }
}

fn registered(n: u8) -> Event {
    Event::UserRegistered(UserRegistered {
        user_id: uid(n),
        openid: format!("openid-{n}"),
        unionid: None,
    })
}

fn bound(n: u8, phone: &str) -> Event {
    Event::PhoneBound(PhoneBound {
        user_id: uid(n),
        country_code: "86".into(),
        pure_phone_number: phone.into(),
        source: PhoneSource::PhoneCode,
    })
}

fn sealed(tag: &str) -> Sealed {
    Sealed {
        key_id: Uuid::from_u128(7),
        ciphertext: format!("c{tag}"),
    }
}

fn bidx(p: u8) -> BlindIndex {
    BlindIndex::try_from(format!("{:064x}", p)).unwrap()
}

/// A v2 binding: the phone sealed, `p` standing for its blind index.
fn bound_sealed(n: u8, p: u8) -> Event {
    Event::PhoneSealed(PhoneSealed {
        user_id: uid(n),
        phone: sealed(&format!("{n}-{p}")),
        phone_bidx: bidx(p),
        source: PhoneSource::PhoneCode,
    })
}

fn erased(n: u8) -> Event {
    Event::UserErased(UserErased { user_id: uid(n) })
}

fn rows(state: &State) -> Vec<User> {
    state.users.iter().cloned().collect()
}

#[test]
fn first_login_registers_and_later_logins_count() {
    let mut s = State::default();
    assert_eq!(s.apply(&rec(1, registered(1))), Verdict::applied());
    let login = Event::UserLoggedIn(UserLoggedIn {
        user_id: uid(1),
        unionid: Some("u1".into()),
    });
    assert_eq!(s.apply(&rec(2, login)), Verdict::applied());
    // A second registration (raced first logins) counts as a login.
    assert_eq!(s.apply(&rec(3, registered(1))), Verdict::applied());
    let user = s.users.get(&uid(1)).unwrap();
    assert_eq!(user.login_count, 3);
    assert_eq!(user.unionid.as_deref(), Some("u1"));
    assert_eq!(user.registered_at, rec(1, registered(1)).occurred_at);
    assert_eq!(user.last_login_at, rec(3, registered(1)).occurred_at);
}

#[test]
fn a_phone_belongs_to_one_user() {
    let mut s = State::default();
    s.apply(&rec(1, registered(1)));
    s.apply(&rec(2, registered(2)));
    assert_eq!(
        s.apply(&rec(3, bound(1, "13800000001"))),
        Verdict::applied()
    );
    assert_eq!(
        s.apply(&rec(4, bound(2, "13800000001"))),
        Verdict::Refused(Refusal::PhoneTaken)
    );
    assert!(s.users.get(&uid(2)).unwrap().phone.is_none());
    // User 1 moves to another number; the old one becomes free for user 2.
    assert_eq!(
        s.apply(&rec(5, bound(1, "13800000002"))),
        Verdict::applied()
    );
    assert_eq!(
        s.apply(&rec(6, bound(2, "13800000001"))),
        Verdict::applied()
    );
    assert_eq!(
        s.users.get(&uid(2)).unwrap().phone,
        Some(BoundPhone::Plain(Phone::new("86", "13800000001")))
    );
}

#[test]
fn a_sealed_phone_belongs_to_one_user_by_its_blind_index_until_its_user_is_erased() {
    let mut s = State::default();
    for n in 1..=3 {
        s.apply(&rec(u64::from(n), registered(n)));
    }
    assert_eq!(s.apply(&rec(4, bound_sealed(1, 5))), Verdict::applied());
    assert_eq!(
        s.apply(&rec(5, bound_sealed(2, 5))),
        Verdict::Refused(Refusal::PhoneTaken)
    );
    let profile = Event::ProfileSealed(ProfileSealed {
        user_id: uid(1),
        profile: sealed("p"),
    });
    assert_eq!(s.apply(&rec(6, profile.clone())), Verdict::applied());
    let login = Event::LoggedInSealed(LoggedInSealed {
        user_id: uid(1),
        unionid: Some(sealed("u")),
    });
    assert_eq!(s.apply(&rec(13, login)), Verdict::applied());
    let user = s.users.get(&uid(1)).unwrap();
    assert_eq!(user.profile_sealed, Some(sealed("p")));
    assert_eq!(user.unionid_sealed, Some(sealed("u")));
    assert_eq!(
        user.phone.as_ref().unwrap().owner_key(),
        bidx_owner_key(&bidx(5))
    );

    // Erased: nothing personal left, the phone free, nothing sealed accepted again.
    assert_eq!(s.apply(&rec(14, erased(1))), Verdict::applied());
    let user = s.users.get(&uid(1)).unwrap();
    assert_eq!(user.erased_at, Some(rec(14, erased(1)).occurred_at));
    assert_eq!(
        (
            &user.phone,
            &user.profile_sealed,
            &user.nickname,
            &user.unionid
        ),
        (&None, &None, &None, &None)
    );
    assert_eq!(user.unionid_sealed, None);
    assert_eq!(user.login_count, 2, "logins are not personal data");
    // A later login is counted, but its unionid is not kept.
    let later = Event::LoggedInSealed(LoggedInSealed {
        user_id: uid(1),
        unionid: Some(sealed("u2")),
    });
    assert_eq!(s.apply(&rec(15, later)), Verdict::applied());
    assert_eq!(s.users.get(&uid(1)).unwrap().unionid_sealed, None);
    assert_eq!(s.apply(&rec(16, bound_sealed(2, 5))), Verdict::applied());
    assert_eq!(
        s.apply(&rec(17, bound_sealed(1, 6))),
        Verdict::Refused(Refusal::UserErased)
    );
    assert_eq!(
        s.apply(&rec(18, bound(1, "13800000009"))),
        Verdict::Refused(Refusal::UserErased)
    );
    assert_eq!(
        s.apply(&rec(19, profile)),
        Verdict::Refused(Refusal::UserErased)
    );
    // A second erasure changes nothing but the row's sequence.
    let before = s.users.get(&uid(1)).unwrap().clone();
    assert_eq!(s.apply(&rec(20, erased(1))), Verdict::applied());
    assert_eq!(
        User {
            last_seq: before.last_seq,
            ..s.users.get(&uid(1)).unwrap().clone()
        },
        before
    );
}

#[test]
fn erasure_frees_a_phone_bound_in_clear_by_an_old_event() {
    let mut s = State::default();
    s.apply(&rec(1, registered(1)));
    s.apply(&rec(2, registered(2)));
    s.apply(&rec(3, bound(1, "13800000001")));
    assert_eq!(
        s.apply(&rec(4, bound(2, "13800000001"))),
        Verdict::Refused(Refusal::PhoneTaken)
    );
    s.apply(&rec(5, erased(1)));
    assert_eq!(s.users.get(&uid(1)).unwrap().phone, None);
    assert_eq!(
        s.apply(&rec(6, bound(2, "13800000001"))),
        Verdict::applied()
    );
}

#[test]
fn events_for_unknown_users_are_refused() {
    let mut s = State::default();
    let e = Event::ProfileUpdated(ProfileUpdated {
        user_id: uid(9),
        nickname: "n".into(),
        avatar_url: None,
    });
    assert_eq!(s.apply(&rec(1, e)), Verdict::Refused(Refusal::UnknownUser));
    assert!(s.users.iter().next().is_none());
}

fn arb_event() -> impl Strategy<Value = Event> {
    let user = 0u8..4;
    prop_oneof![
        user.clone().prop_map(registered),
        (user.clone(), proptest::option::of("[a-c]")).prop_map(|(n, u)| {
            Event::UserLoggedIn(UserLoggedIn {
                user_id: uid(n),
                unionid: u,
            })
        }),
        (user.clone(), 0u8..3).prop_map(|(n, p)| bound(n, &format!("1380000000{p}"))),
        (user.clone(), 0u8..3).prop_map(|(n, p)| bound_sealed(n, p)),
        user.clone().prop_map(erased),
        (user.clone(), proptest::option::of("[a-c]")).prop_map(|(n, u)| {
            Event::LoggedInSealed(LoggedInSealed {
                user_id: uid(n),
                unionid: u.map(|u| sealed(&u)),
            })
        }),
        user.clone()
            .prop_map(|n| Event::ProfileSealed(ProfileSealed {
                user_id: uid(n),
                profile: sealed(&n.to_string()),
            })),
        (
            user,
            "[a-z]{1,5}",
            proptest::option::of("https://a/[a-z]{1,3}")
        )
            .prop_map(|(n, nick, avatar)| {
                Event::ProfileUpdated(ProfileUpdated {
                    user_id: uid(n),
                    nickname: nick,
                    avatar_url: avatar,
                })
            }),
    ]
}

fn history(events: Vec<Event>) -> Vec<Recorded> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| rec(i as u64 + 1, e))
        .collect()
}

/// What the projector does: per batch, load only the keyed rows from "storage", fold,
/// and write back the changed rows.
fn fold_in_batches(history: &[Recorded], batch_sizes: &[usize]) -> Vec<User> {
    let mut storage: std::collections::BTreeMap<Uuid, User> = Default::default();
    let mut rest = history;
    let mut sizes = batch_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let mut keys = Keys::default();
        batch.iter().for_each(|r| keys.add(&r.event));
        let mut state = State::default();
        for user in storage.values() {
            let by_phone = user.phone.as_ref().map(BoundPhone::owner_key);
            if keys.user_ids.contains(&user.user_id)
                || by_phone.is_some_and(|k| keys.phones.contains(&k))
            {
                state.users.load(user.clone());
            }
        }
        state.apply_all(batch);
        for user in state.users.take_changed() {
            storage.insert(user.user_id, user);
        }
    }
    storage.into_values().collect()
}

proptest! {
    #[test]
    fn batched_partial_loads_equal_one_pass(
        events in proptest::collection::vec(arb_event(), 0..60),
        sizes in proptest::collection::vec(1usize..8, 1..5),
    ) {
        let history = history(events);
        let mut whole = State::default();
        whole.apply_all(&history);
        prop_assert_eq!(fold_in_batches(&history, &sizes), rows(&whole));
    }

    #[test]
    fn applying_any_event_twice_changes_nothing(
        events in proptest::collection::vec(arb_event(), 1..60),
        repeats in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..10),
    ) {
        let history = history(events);
        let mut once = State::default();
        once.apply_all(&history);

        // Re-deliver random events again at random later points.
        let mut redelivered: Vec<Recorded> = history.clone();
        for (which, at) in repeats {
            let i = which.index(history.len());
            let first = redelivered.iter().position(|x| x.seq == history[i].seq).unwrap();
            let pos = first + 1 + at.index(redelivered.len() - first);
            redelivered.insert(pos, history[i].clone());
        }
        let mut twice = State::default();
        for r in &redelivered {
            let before = rows(&twice);
            let outcome = twice.apply(r);
            if redelivered.iter().take_while(|x| !std::ptr::eq(*x, r)).any(|x| x.seq == r.seq) {
                prop_assert!(!outcome.is_applied());
                prop_assert_eq!(rows(&twice), before);
            }
        }
        prop_assert_eq!(rows(&twice), rows(&once));
    }

    #[test]
    fn no_phone_is_bound_to_two_users(events in proptest::collection::vec(arb_event(), 0..80)) {
        let mut s = State::default();
        s.apply_all(&history(events));
        let mut phones: Vec<String> = s.users.iter().filter_map(|u| u.phone.as_ref().map(BoundPhone::owner_key)).collect();
        let n = phones.len();
        phones.sort();
        phones.dedup();
        prop_assert_eq!(phones.len(), n);
    }
}
