use super::*;

fn vault(kek: u8, bidx: u8) -> Vault {
    Vault {
        kek: Sealer::new(&[kek; 32]),
        bidx_key: [bidx; 32],
    }
}

#[test]
fn a_sealed_phone_opens_only_with_its_users_key_and_field() {
    let v = vault(1, 2);
    let alice = Uuid::from_u128(1);
    let (key, _) = v.new_data_key(alice);
    let phone = Phone::new("86", "13800138000");
    let sealed = key.seal_phone(&phone);
    assert_eq!(key.open_phone(&sealed).unwrap(), phone);
    assert!(!sealed.ciphertext.contains("13800138000"));
    // Not as another field, not under another user's key, not altered.
    assert_eq!(key.open_profile(&sealed), Err(Unreadable));
    let (bob_key, _) = v.new_data_key(Uuid::from_u128(2));
    assert_eq!(bob_key.open_phone(&sealed), Err(Unreadable));
    let mut moved = sealed.clone();
    moved.key_id = bob_key.key_id();
    assert_eq!(bob_key.open_phone(&moved), Err(Unreadable));
    let mut bytes = B64.decode(&sealed.ciphertext).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let altered = Sealed {
        ciphertext: B64.encode(bytes),
        ..sealed
    };
    assert_eq!(key.open_phone(&altered), Err(Unreadable));
}

#[test]
fn a_data_key_reopens_from_its_sealed_form_only_under_the_same_kek_user_and_id() {
    let v = vault(1, 2);
    let user = Uuid::from_u128(1);
    let (key, stored) = v.new_data_key(user);
    let profile = Profile {
        nickname: "小明".into(),
        avatar_url: None,
    };
    let sealed = key.seal_profile(&profile);
    let reopened = v.open_data_key(user, key.key_id(), &stored).unwrap();
    assert_eq!(reopened.open_profile(&sealed).unwrap(), profile);
    assert!(v
        .open_data_key(Uuid::from_u128(9), key.key_id(), &stored)
        .is_err());
    assert!(v.open_data_key(user, Uuid::new_v4(), &stored).is_err());
    assert!(vault(3, 2)
        .open_data_key(user, key.key_id(), &stored)
        .is_err());
}

#[test]
fn blind_indexes_are_equal_for_equal_phones_and_keyed() {
    let phone = Phone::new("86", "13800138000");
    let a = vault(1, 2).blind_index(&phone);
    assert_eq!(a, vault(9, 2).blind_index(&phone));
    assert_ne!(a, vault(1, 2).blind_index(&Phone::new("86", "13800138001")));
    assert_ne!(a, vault(1, 3).blind_index(&phone));
    assert!(!a.as_str().contains("13800138000"));
    // Known answer, from Python's hmac: HMAC-SHA256(32 × 0x02, "phone:+8613800138000").
    assert_eq!(
        a.as_str(),
        "623928b4b0e45fb8400749344775bb819e4d7728b7c99c2ce39d254df7362d69"
    );
}
