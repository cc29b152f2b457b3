//! Erasure by crypto-shredding: a user who logged in, bound a phone, set a profile, paid,
//! recharged and was refunded is erased (through the library function the CLI runs, and
//! through the admin endpoint; the `wxledger erase-user` command for a user bound in clear); afterwards the API, the projection, a replay and the
//! stream show nothing personal of theirs, the audit is clean, the money is identical,
//! and their phone is free for another user.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;
use wxledger::{
    core::events::{Event, PhoneBound, PhoneSource},
    settings::NatsSettings,
    store::{
        replay::{replay, AsOf},
        stream::log::Draft,
    },
    tools::{
        audit::{self, Options},
        tail::{tail, TailOptions},
    },
};

use crate::common::{database_url, drop_schema, dump_table, nats_url, TestEnv};

const ALICE_PHONE: &str = "13800138123";
const BOB_PHONE: &str = "13900139000";
const UNIONID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

async fn bind(env: &TestEnv, token: &str, phone: &str) -> (StatusCode, Value) {
    let code = env.phone_code(phone).await;
    env.call(
        Method::POST,
        "/v1/me/phone",
        Some(token),
        Some(json!({"code": code})),
    )
    .await
}

/// The money tables as text, to compare before and after an erasure.
async fn money(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("orders", "out_trade_no"),
        ("payments", "transaction_id"),
        ("refunds", "out_refund_no"),
        ("ledger_entries", "seq, account, group_id"),
        ("balances", "account"),
        ("failure_log", "seq"),
    ] {
        out.push(dump_table(client, table, key).await);
    }
    out
}

async fn connect(schema: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = database_url().parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Every event as `events tail` prints it, one JSON line each.
async fn tail_output(env: &TestEnv) -> String {
    let settings = NatsSettings {
        url: nats_url(),
        stream: env.stream.clone(),
        subject_prefix: env.prefix.clone(),
        connect_timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    let options = TailOptions {
        subject: format!("{}.>", env.prefix),
        from_seq: 1,
        follow: false,
        limit: None,
    };
    let mut out = String::new();
    tail(&settings, &options, |line| {
        out.push_str(&serde_json::to_string(line).unwrap());
        out.push('\n');
        Ok(())
    })
    .await
    .unwrap();
    out
}

/// Runs `wxledger erase-user USER_ID` against the test's schema and stream.
async fn erase_user_command(env: &TestEnv, user_id: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wxledger"))
        .args(["erase-user", user_id])
        .env_remove("WXLEDGER_CONFIG")
        .env("WXLEDGER__NATS__URL", nats_url())
        .env("WXLEDGER__NATS__STREAM", &env.stream)
        .env("WXLEDGER__NATS__SUBJECT_PREFIX", &env.prefix)
        .env("WXLEDGER__DATABASE__URL", database_url())
        .env("WXLEDGER__DATABASE__SCHEMA", &env.schema)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the wxledger binary runs")
}

async fn admin_user(env: &TestEnv, user_id: &str) -> Value {
    let (status, body) = env
        .admin(Method::GET, &format!("/v1/admin/users/{user_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn an_erased_user_keeps_their_money_and_loses_their_personal_data() {
    let env = TestEnv::start().await;
    // Alice's app is bound to an open platform account: WeChat reports her unionid.
    let code = env
        .sim_post(
            "/sim/mini/login-codes",
            json!({"openid": "o-erase-alice", "unionid": UNIONID}),
        )
        .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, login) = env.post_login(code).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let alice = login["token"].as_str().unwrap().to_owned();
    let alice_id = login["user_id"].as_str().unwrap().to_owned();
    let (status, body) = bind(&env, &alice, ALICE_PHONE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = env
        .call(
            Method::PUT,
            "/v1/me/profile",
            Some(&alice),
            Some(json!({"nickname": "小红", "avatar_url": "https://cdn.example/red.png"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nickname"], "小红", "the API opens the sealed profile");
    assert_eq!(body["unionid"], UNIONID, "and the sealed unionid");
    let (bob, _) = env.login("o-erase-bob").await;
    // A second login of Bob's, with a unionid this time (user.logged_in v2, sealed).
    let code = env
        .sim_post(
            "/sim/mini/login-codes",
            json!({"openid": "o-erase-bob", "unionid": "oBobUnionid"}),
        )
        .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.post_login(code).await.0, StatusCode::OK);
    assert_eq!(bind(&env, &bob, BOB_PHONE).await.0, StatusCode::OK);
    let (carol, carol_id) = env.login("o-erase-carol").await;

    // Alice pays an order, recharges her wallet and is refunded part of the order.
    let order = env.paid_order(&alice, 1800).await;
    env.paid_recharge(&alice, 5000).await;
    let (status, body) = env
        .refund(&order, json!({"amount": 600, "out_refund_no": "R-erase-1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.settle("R-erase-1", "success").await;
    env.wait_refund_state(&order, "R-erase-1", "succeeded")
        .await;
    env.wait_applied().await;

    // Sealed in the stream from the start; the API reads it with her key.
    let before_tail = tail_output(&env).await;
    for personal in [ALICE_PHONE, "小红", "red.png", UNIONID] {
        assert!(
            !before_tail.contains(personal),
            "{personal} in clear in the stream"
        );
    }
    assert_eq!(
        admin_user(&env, &alice_id).await["phone"]["masked"],
        "138****8123"
    );
    // Her phone is taken while she holds it.
    assert_eq!(
        bind(&env, &carol, ALICE_PHONE).await.0,
        StatusCode::CONFLICT
    );
    let live = connect(&env.schema).await;
    let money_before = money(&live).await;

    // Erase Alice as `wxledger erase-user` does.
    let alice_uuid: Uuid = alice_id.parse().unwrap();
    let erasure =
        wxledger::store::privacy::erase_user(&env.pool, &env.log, alice_uuid, "test", Utc::now())
            .await
            .unwrap();
    assert!(erasure.appended.is_some() && !erasure.key_already_destroyed);
    env.wait_applied().await;

    // The API: erased, nothing personal, the balance intact.
    let shown = admin_user(&env, &alice_id).await;
    assert_eq!(shown["erased"], true, "{shown}");
    for field in ["phone", "nickname", "avatar_url", "unionid"] {
        assert_eq!(shown[field], Value::Null, "{field} of an erased user");
    }
    let (_, me) = env.call(Method::GET, "/v1/me", Some(&alice), None).await;
    assert_eq!(
        (me["erased"].clone(), me["balance"].clone()),
        (json!(true), json!(5000))
    );
    // An erased user cannot log in or seal anything again.
    let (status, body) = env.post_login(env.login_code("o-erase-alice").await).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("user_erased"))
    );
    let (status, _) = bind(&env, &alice, "13700137000").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The projection and the key table.
    let row = live
        .query_one(
            "SELECT phone_number, phone_sealed, phone_key, nickname, profile_sealed, \
             unionid_sealed, erased_at IS NOT NULL FROM users WHERE user_id = $1",
            &[&alice_uuid],
        )
        .await
        .unwrap();
    for i in 0..6 {
        assert_eq!(row.get::<_, Option<String>>(i), None, "users column {i}");
    }
    assert!(row.get::<_, bool>(6));
    let key: Option<Vec<u8>> = live
        .query_one(
            "SELECT sealed_key FROM user_keys WHERE user_id = $1",
            &[&alice_uuid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, None, "the data key is destroyed");

    // The money is identical, the books audit clean.
    assert_eq!(money(&live).await, money_before);
    let report = audit::run(&env.settings(), &Options::default(), |_| {})
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_text());

    // A replay into a scratch schema shows her erased, with the same money.
    let into = format!("{}_erased", env.schema);
    replay(
        &env.settings(),
        AsOf::Seq(env.last_seq().await),
        &into,
        true,
        |_| {},
    )
    .await
    .unwrap();
    let scratch = connect(&into).await;
    let replayed = scratch
        .query_one(
            "SELECT phone_key IS NULL AND profile_sealed IS NULL AND erased_at IS NOT NULL \
             FROM users WHERE user_id = $1",
            &[&alice_uuid],
        )
        .await
        .unwrap();
    assert!(replayed.get::<_, bool>(0), "the replay shows her erased");
    assert_eq!(money(&scratch).await, money_before);
    drop(scratch);
    drop_schema(&database_url(), &into).await;

    // The stream has nothing personal in clear: the sealed values stay sealed for good.
    let after_tail = tail_output(&env).await;
    for personal in [ALICE_PHONE, "小红", "red.png", UNIONID] {
        assert!(
            !after_tail.contains(personal),
            "{personal} in clear in the stream"
        );
    }
    assert!(after_tail.contains("\"user.erased\""));

    // Her phone is free: Carol binds it; Bob, not erased, still reads his.
    let (status, body) = bind(&env, &carol, ALICE_PHONE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phone"]["masked"], "138****8123");
    let (_, bob_me) = env.call(Method::GET, "/v1/me", Some(&bob), None).await;
    assert_eq!(
        (bob_me["erased"].clone(), bob_me["phone"]["masked"].clone()),
        (json!(false), json!("139****9000"))
    );
    assert_eq!(bob_me["unionid"], "oBobUnionid");

    // The admin endpoint: credentials, a bad id, an unknown user, then Carol, twice.
    let path = format!("/v1/admin/users/{carol_id}/erase");
    let (status, _) = env.call(Method::POST, &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = env
        .admin(Method::POST, "/v1/admin/users/not-a-uuid/erase")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unknown = format!("/v1/admin/users/{}/erase", Uuid::new_v4());
    assert_eq!(
        env.admin(Method::POST, &unknown).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = env.admin(Method::POST, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["user"]["erased"].clone(),
            body["user"]["phone"].clone()
        ),
        (json!(true), Value::Null)
    );
    assert!(body["seq"].is_u64());
    let (status, again) = env.admin(Method::POST, &path).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (again["seq"].clone(), again["key_already_destroyed"].clone()),
        (Value::Null, json!(true))
    );
    assert_eq!(env.count_events("user.erased").await, 2);

    // The phone is free again; every event fits its schema.
    let (dave, _) = env.login("o-erase-dave").await;
    assert_eq!(bind(&env, &dave, ALICE_PHONE).await.0, StatusCode::OK);
    assert_eq!(money(&live).await, money_before);
    env.assert_events_match_schemas().await;
}

#[tokio::test]
async fn a_phone_bound_in_clear_by_an_old_event_is_masked_in_tail_and_erased_from_the_projection() {
    let env = TestEnv::start().await;
    let (_, old_id) = env.login("o-erase-old").await;
    let old_uuid: Uuid = old_id.parse().unwrap();
    // A version 1 event, as wxledger wrote them before phones were sealed.
    let event = Event::PhoneBound(PhoneBound {
        user_id: old_uuid,
        country_code: "86".into(),
        pure_phone_number: ALICE_PHONE.into(),
        source: PhoneSource::PhoneCode,
    });
    env.log
        .append(Draft {
            event: &event,
            correlation_id: "old",
            msg_id: "old-phone",
            occurred_at: Utc::now(),
        })
        .await
        .unwrap();
    env.wait_applied().await;
    assert_eq!(
        admin_user(&env, &old_id).await["phone"]["masked"],
        "138****8123"
    );
    // The fold reads it (upcast path); a new binding of the same number is refused.
    let (other, _) = env.login("o-erase-other").await;
    assert_eq!(
        bind(&env, &other, ALICE_PHONE).await.0,
        StatusCode::CONFLICT
    );
    // The residue is in the stream, but `events tail` prints it masked.
    let printed = tail_output(&env).await;
    assert!(!printed.contains(ALICE_PHONE) && printed.contains("138****8123"));

    // The command itself, twice: the second finds the user already erased.
    let first = erase_user_command(&env, &old_id).await;
    assert!(first.status.success(), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("erased: data key destroyed"));
    env.wait_applied().await;
    let again = erase_user_command(&env, &old_id).await;
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already erased"));
    let unknown = erase_user_command(&env, &Uuid::new_v4().to_string()).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("user_not_found"));
    let users = env.users_dump().await;
    assert!(!users.contains(ALICE_PHONE), "{users}");
    assert_eq!(admin_user(&env, &old_id).await["erased"], true);
    assert_eq!(bind(&env, &other, ALICE_PHONE).await.0, StatusCode::OK);
    let report = audit::run(&env.settings(), &Options::default(), |_| {})
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
}
