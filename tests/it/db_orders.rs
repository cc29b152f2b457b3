//! The payment tables (`db::orders`) against the Postgres on this machine, in a scratch
//! schema per test: the projector's batches leave exactly the rows of one in-memory fold,
//! the reads answer from them, and the writes are idempotent.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio_postgres::{error::SqlState, Row};
use uuid::Uuid;
use wxledger::{
    core::{
        events::{OrderKind, Recorded},
        fold::{
            fixtures::{
                at, balance_pay, closed, notified, placed_until as placed, prepay, queried, rec,
                refund, refund_notified, refund_queried, refund_rejected, refund_requested,
                transaction as tx, uid,
            },
            wallet_account, Balance, Order, OrderState, State, CLEARING, SALES, SUSPENSE,
        },
    },
    settings::DatabaseSettings,
    store::{
        db::{
            self,
            orders::{
                balance, balance_from_row, due_for_expiry, entry_from_row, failure_from_row,
                failures, for_user, get, insert_entries, insert_entries_sql, insert_failures,
                insert_failures_sql, insert_payments, insert_payments_sql, ledger_for_account,
                order_from_row, payment_from_row, upsert_balances, upsert_orders,
                upsert_orders_sql, UPSERT_BALANCES,
            },
        },
        outcomes::{self, Outcome, OutcomeKind},
        projector::{apply_batch, apply_batch_with_outcomes},
    },
};

use crate::common::{blocking, database_url, drop_schema};

/// A migrated scratch schema, dropped at the end of the test (also when it panicked).
struct Scratch {
    schema: String,
    client: tokio_postgres::Client,
}

impl Scratch {
    async fn new() -> Self {
        let settings = DatabaseSettings {
            url: database_url(),
            schema: format!("t_pay_{}", &Uuid::new_v4().simple().to_string()[..10]),
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let pool = db::pool(&settings).unwrap();
        db::migrate(&pool, &settings.schema).await.unwrap();
        let client = db::connect_dedicated(&db::pg_config(&settings).unwrap())
            .await
            .unwrap();
        Self {
            schema: settings.schema,
            client,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        blocking(async move { drop_schema(&database_url(), &schema).await });
    }
}

/// Every kind of event and outcome, then a seeded random mix over few orders.
fn history() -> Vec<Recorded> {
    let mut events = vec![
        placed("o1", 1, OrderKind::Order, 100, 50),
        placed("r1", 1, OrderKind::Recharge, 500, 50),
        placed("r2", 1, OrderKind::Recharge, 300, 50),
        prepay("o1", "p1"),
        notified(tx("o1", Some("t1"), "SUCCESS", Some(100))),
        queried(tx("o1", Some("t1"), "SUCCESS", Some(100))),
        notified(tx("r1", Some("t2"), "SUCCESS", Some(500))),
        notified(tx("r1", Some("t3"), "SUCCESS", Some(500))),
        notified(tx("ghost", Some("t4"), "SUCCESS", Some(7))),
        placed("o2", 2, OrderKind::Order, 100, 5),
        closed("o2"),
        queried(tx("o2", Some("t5"), "SUCCESS", Some(100))),
        placed("o3", 2, OrderKind::Order, 100, 20),
        notified(tx("o3", Some("t6"), "SUCCESS", Some(99))),
        notified(tx("o3", None, "SUCCESS", Some(100))),
        notified(tx("o3", None, "PAYERROR", None)),
        queried(tx("o3", None, "WEIRD", None)),
        placed("o4", 3, OrderKind::Recharge, 100, 10),
        placed("o5", 1, OrderKind::Order, 100, 50),
        notified(tx("o5", Some("t8"), "SUCCESS", Some(100))),
        refund_requested("rfa", "o5", 40),
        refund_notified(refund("rfa", "o5", "SUCCESS", None)),
        placed("w1", 1, OrderKind::Order, 200, 50),
        balance_pay("w1", 1, 200),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let no = format!("x{}", rng.gen_range(0..12));
        let user = rng.gen_range(1..4);
        let tid = format!("tx{}", rng.gen_range(0..12));
        let amount = [100, 200][rng.gen_range(0..2)];
        let state = [
            "SUCCESS", "SUCCESS", "REFUND", "CLOSED", "PAYERROR", "NOTPAY",
        ][rng.gen_range(0..6)];
        let kind = [OrderKind::Order, OrderKind::Recharge][rng.gen_range(0..2)];
        let rno = format!("rf{}", rng.gen_range(0..10));
        let status =
            ["SUCCESS", "SUCCESS", "PROCESSING", "CLOSED", "ABNORMAL"][rng.gen_range(0..5)];
        let reported = || refund(&rno, &no, status, Some(amount / 2));
        events.push(match rng.gen_range(0..10) {
            5 => refund_requested(&rno, &no, amount / 2),
            6 => refund_notified(reported()),
            7 => balance_pay(&no, user, amount),
            8 => refund_queried(reported()),
            9 => refund_rejected(&rno, &no),
            0 => placed(&no, user, kind, amount, 400),
            1 => closed(&no),
            2 => queried(tx(&no, Some(&tid), state, Some(amount))),
            _ => notified(tx(&no, Some(&tid), state, Some(amount))),
        });
    }
    // Last, in a batch of its own, long after r2 was placed: the wallet (500 since t2)
    // is loaded only through the order.
    events.push(queried(tx("r2", Some("t7"), "SUCCESS", Some(300))));
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| rec(i as u64 + 1, event))
        .collect()
}

async fn all_rows<T>(
    client: &tokio_postgres::Client,
    sql: &str,
    f: fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Vec<T> {
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter().map(f).collect::<Result<_, _>>().unwrap()
}

#[tokio::test]
async fn projected_tables_equal_one_in_memory_pass_and_reads_answer() {
    let mut db = Scratch::new().await;
    let history = history();
    let mut checkpoint = 0;
    let (mut rest, last) = history.split_at(history.len() - 1);
    let mut sizes = [1usize, 3, 7, 2, 16].into_iter().cycle();
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(sizes.next().unwrap().min(rest.len()));
        rest = tail;
        checkpoint = apply_batch(&mut db.client, checkpoint, batch)
            .await
            .unwrap();
    }
    apply_batch(&mut db.client, checkpoint, last).await.unwrap();
    let mut whole = State::default();
    whole.apply_all(&history);
    let c = &db.client;

    let q = |t: &str| format!("SELECT * FROM {t}");
    let orders = all_rows(c, &(q("orders") + " ORDER BY out_trade_no"), order_from_row).await;
    assert_eq!(orders, whole.orders.iter().cloned().collect::<Vec<_>>());
    let refunds = all_rows(
        c,
        &(q("refunds") + " ORDER BY out_refund_no"),
        db::refunds::refund_from_row,
    )
    .await;
    assert_eq!(refunds, whole.refunds.iter().cloned().collect::<Vec<_>>());
    assert!(
        refunds
            .iter()
            .any(|r| r.state == wxledger::core::fold::RefundState::Succeeded)
            && whole
                .orders
                .iter()
                .any(|o| o.paid_with == Some(wxledger::core::fold::PaidWith::Wallet)),
        "the mix makes refunds and wallet payments"
    );
    let payments = all_rows(
        c,
        &(q("payments") + " ORDER BY transaction_id"),
        payment_from_row,
    )
    .await;
    assert_eq!(
        payments,
        whole.ledger.payments().cloned().collect::<Vec<_>>()
    );
    let balances = all_rows(c, &(q("balances") + " ORDER BY account"), balance_from_row).await;
    assert_eq!(
        balances,
        whole.ledger.balances().cloned().collect::<Vec<_>>()
    );
    let entries = all_rows(
        c,
        &(q("ledger_entries") + " ORDER BY seq, line"),
        entry_from_row,
    )
    .await;
    assert_eq!(entries, whole.ledger.entries());
    let failures = all_rows(
        c,
        &(q("failure_log") + " ORDER BY seq, reason"),
        failure_from_row,
    )
    .await;
    assert_eq!(
        failures,
        whole.ledger.failures().cloned().collect::<Vec<_>>()
    );
    // The fixed history alone makes every kind of row.
    for reason in [
        "double_payment",
        "unknown_order",
        "paid_after_close",
        "amount_mismatch",
        "malformed_transaction",
        "unknown_trade_state",
    ] {
        assert!(failures.iter().any(|f| f.reason == reason), "{reason}");
    }

    // Reads.
    let o1 = get(c, "o1").await.unwrap().unwrap();
    assert_eq!(
        (
            o1.state,
            o1.transaction_id.as_deref(),
            o1.prepay_id.as_deref()
        ),
        (OrderState::Paid, Some("t1"), Some("p1"))
    );
    assert!(get(c, "nope").await.unwrap().is_none());
    for user in 1..4 {
        let mut expected: Vec<Order> = whole
            .orders
            .iter()
            .filter(|o| o.user_id == uid(user))
            .cloned()
            .collect();
        expected
            .sort_by(|a, b| (b.placed_at, &b.out_trade_no).cmp(&(a.placed_at, &a.out_trade_no)));
        expected.truncate(3);
        assert!(!expected.is_empty());
        assert_eq!(for_user(c, uid(user), 3).await.unwrap(), expected);
    }
    let due: Vec<String> = due_for_expiry(c, at(25), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.out_trade_no)
        .collect();
    // o2 is closed (though past due) and o3 is in pay_error; o4 expires first.
    assert_eq!(due, ["o4", "o3"]);
    assert!(due_for_expiry(c, at(9), 10).await.unwrap().is_empty());
    let wallet = wallet_account(uid(1));
    let credits = ledger_for_account(c, &wallet, 1000).await.unwrap();
    assert!(credits.windows(2).all(|w| w[0].seq >= w[1].seq));
    assert_eq!(
        credits.last().unwrap().transaction_id.as_deref(),
        Some("t2")
    );
    assert!(credits
        .iter()
        .any(|e| e.transaction_id.as_deref() == Some("t7")));
    assert_eq!(
        balance(c, &wallet).await.unwrap(),
        credits.iter().map(|e| e.amount).sum::<i64>()
    );
    assert_eq!(balance(c, "wallet:nobody").await.unwrap(), 0);
    let clearing = balance(c, CLEARING).await.unwrap();
    let credited: i64 = [SALES, SUSPENSE]
        .iter()
        .map(|a| whole.ledger.balance(a))
        .sum::<i64>()
        + whole
            .ledger
            .balances()
            .filter(|b| wxledger::core::fold::is_wallet(&b.account))
            .map(|b| b.balance)
            .sum::<i64>();
    assert_eq!(clearing, -credited);
    let newest = failures_newest(c).await;
    assert_eq!(newest.first(), failures.last().map(|f| f.seq).as_ref());
}

async fn failures_newest(c: &tokio_postgres::Client) -> Vec<i64> {
    let rows = failures(c, 3).await.unwrap();
    assert!(rows.len() <= 3);
    rows.iter().map(|f| f.seq).collect()
}

#[tokio::test]
async fn the_outbox_holds_the_outcomes_of_one_in_memory_pass_once() {
    let mut db = Scratch::new().await;
    let history = history();
    let mut checkpoint = 0;
    let mut rest = &history[..];
    let mut sizes = [5usize, 1, 9, 2].into_iter().cycle();
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(sizes.next().unwrap().min(rest.len()));
        rest = tail;
        checkpoint = apply_batch_with_outcomes(&mut db.client, checkpoint, batch)
            .await
            .unwrap();
    }
    let mut whole = State::default();
    let verdicts = whole.apply_all(&history);
    let (entries, failures) = (
        whole.ledger.take_new_entries(),
        whole.ledger.take_new_failures(),
    );
    let expected = outcomes::derive(&history, &verdicts, &entries, &failures, &whole);
    let stored = || async {
        db.client
            .query("SELECT payload FROM outbox ORDER BY seq, id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_value(r.get(0)).unwrap())
            .collect::<Vec<Outcome>>()
    };
    let got = stored().await;
    assert_eq!(got, expected);
    for kind in OutcomeKind::ALL {
        assert!(got.iter().any(|o| o.kind == kind.as_str()), "{kind:?}");
    }
    // The same outcomes written again (a batch retried after its commit's answer was
    // lost) change nothing.
    let insert = db.client.prepare(outcomes::outbox::INSERT).await.unwrap();
    outcomes::outbox::insert(&db.client, &insert, &expected)
        .await
        .unwrap();
    assert_eq!(stored().await, expected);
}

#[tokio::test]
async fn writes_are_idempotent_and_a_wallet_cannot_go_negative() {
    let mut db = Scratch::new().await;
    let history: Vec<Recorded> = history().into_iter().take(17).collect();
    let mut state = State::default();
    state.apply_all(&history);
    let (orders, payments, entries, balances, failures) = (
        state.orders.take_changed(),
        state.ledger.take_new_payments(),
        state.ledger.take_new_entries(),
        state.ledger.take_changed_balances(),
        state.ledger.take_new_failures(),
    );
    let statement = |sql: String| {
        let client = &db.client;
        async move { client.prepare(&sql).await.unwrap() }
    };
    let (upsert_o, insert_p, insert_e, upsert_b, insert_f) = (
        statement(upsert_orders_sql()).await,
        statement(insert_payments_sql()).await,
        statement(insert_entries_sql()).await,
        statement(UPSERT_BALANCES.into()).await,
        statement(insert_failures_sql()).await,
    );
    let tx = db.client.transaction().await.unwrap();
    for _ in 0..2 {
        upsert_orders(&tx, &upsert_o, &orders).await.unwrap();
        insert_payments(&tx, &insert_p, &payments).await.unwrap();
        insert_entries(&tx, &insert_e, &entries).await.unwrap();
        upsert_balances(&tx, &upsert_b, &balances).await.unwrap();
        insert_failures(&tx, &insert_f, &failures).await.unwrap();
    }
    // An older version of a row does not overwrite a newer one.
    let mut stale = orders
        .iter()
        .find(|o| o.out_trade_no == "o1")
        .unwrap()
        .clone();
    stale.last_seq = 1;
    stale.state = OrderState::Created;
    upsert_orders(&tx, &upsert_o, &[stale]).await.unwrap();
    assert_eq!(
        get(&tx, "o1").await.unwrap().unwrap().state,
        OrderState::Paid
    );
    let count = |t: &'static str| {
        let tx = &tx;
        async move {
            tx.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("orders").await, orders.len() as i64);
    assert_eq!(count("payments").await, payments.len() as i64);
    assert_eq!(count("ledger_entries").await, entries.len() as i64);
    assert_eq!(count("failure_log").await, failures.len() as i64);
    tx.commit().await.unwrap();

    let negative = Balance {
        account: wallet_account(uid(9)),
        balance: -1,
        last_seq: 99,
    };
    let err = upsert_balances(&db.client, &upsert_b, &[negative])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION));
    let overdrawn_sales = Balance {
        account: SALES.into(),
        balance: -1,
        last_seq: 99,
    };
    upsert_balances(&db.client, &upsert_b, &[overdrawn_sales])
        .await
        .unwrap();
}
