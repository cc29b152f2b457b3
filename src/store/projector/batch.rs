//! One batch in one transaction: the rows its events touch are loaded, folded, and written
//! back with the new checkpoint (and, live, the outbox). The statements are prepared once
//! per connection ([`Statements`]) and each phase sends its statements together: tokio-postgres
//! pipelines the queries of futures polled at once, so the loads are one round trip and
//! the writes another, whatever the number of tables.

use tokio_postgres::{Client, Statement};

use super::error::{ProjectorError, PROJECTION};
use crate::{
    core::{
        events::Recorded,
        fold::{Keys, State, Verdict},
    },
    store::{
        db::{orders, refunds, users, verdicts},
        outcomes::{self, outbox},
    },
};

/// Moves the checkpoint from `$2` to `$3`; no row changes when another writer moved it.
const MOVE_CHECKPOINT: &str = "INSERT INTO projector_checkpoints (projection, last_seq, updated_at)
     VALUES ($1, $3, now())
     ON CONFLICT (projection) DO UPDATE SET last_seq = $3, updated_at = now()
     WHERE projector_checkpoints.last_seq = $2";

/// A batch's statements, prepared on one connection (usable only on it).
pub struct Statements {
    load_users: Statement,
    load_orders: Statement,
    load_refunds: Statement,
    load_payments: Statement,
    load_balances: Statement,
    upsert_users: Statement,
    upsert_orders: Statement,
    upsert_refunds: Statement,
    insert_payments: Statement,
    insert_entries: Statement,
    upsert_balances: Statement,
    insert_failures: Statement,
    insert_verdicts: Statement,
    insert_outbox: Statement,
    move_checkpoint: Statement,
}

impl Statements {
    /// Prepares every statement of a batch on `client`, in one round trip. Each run is
    /// planned for its own arrays: after five runs Postgres would switch a prepared
    /// statement to a generic plan, which cannot see how small `= ANY($1)` is and may
    /// scan whole tables (the load bench's projector fell from ~5k to ~1.7k events/s).
    /// And the session prices a random page read as Postgres's default prices a
    /// sequential one, near enough (`random_page_cost` 1.1, not 4): the rows a batch
    /// loads are in memory, yet at the default a batch of ~400 keys against tens of
    /// thousands of orders was planned as a sequential scan of the whole table (twice:
    /// the balances' load looks up the orders too). Under the load bench's closed loop
    /// that cut the loads' time in Postgres from 1.9 s to 0.7 s (`pg_stat_statements`).
    pub async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        client
            .batch_execute("SET plan_cache_mode = force_custom_plan; SET random_page_cost = 1.1")
            .await?;
        let sql = [
            users::load_sql(),
            orders::load_orders_sql(),
            refunds::load_sql(),
            orders::load_payments_sql(),
            orders::LOAD_BALANCES.to_owned(),
            users::UPSERT.to_owned(),
            orders::upsert_orders_sql(),
            refunds::upsert_sql(),
            orders::insert_payments_sql(),
            orders::insert_entries_sql(),
            orders::UPSERT_BALANCES.to_owned(),
            orders::insert_failures_sql(),
            verdicts::insert_sql(),
            outbox::INSERT.to_owned(),
            MOVE_CHECKPOINT.to_owned(),
        ];
        let prepared = futures::future::try_join_all(sql.iter().map(|s| client.prepare(s))).await?;
        let [load_users, load_orders, load_refunds, load_payments, load_balances, upsert_users, upsert_orders, upsert_refunds, insert_payments, insert_entries, upsert_balances, insert_failures, insert_verdicts, insert_outbox, move_checkpoint] =
            <[Statement; 15]>::try_from(prepared).expect("one statement per text");
        Ok(Self {
            load_users,
            load_orders,
            load_refunds,
            load_payments,
            load_balances,
            upsert_users,
            upsert_orders,
            upsert_refunds,
            insert_payments,
            insert_entries,
            upsert_balances,
            insert_failures,
            insert_verdicts,
            insert_outbox,
            move_checkpoint,
        })
    }
}

/// Folds `records` over the rows they touch and commits the changed rows, with the outbox
/// when `with_outcomes`, moving the checkpoint from `checkpoint` to `last` (the last
/// record's sequence, or past quarantined events after it). Returns `last`.
pub async fn apply(
    client: &mut Client,
    statements: &Statements,
    checkpoint: u64,
    last: u64,
    records: &[Recorded],
    with_outcomes: bool,
) -> Result<u64, ProjectorError> {
    let s = statements;
    let mut keys = Keys::default();
    records.iter().for_each(|r| keys.add(&r.event));
    let tx = client.transaction().await?;
    // The balances' load also takes the wallets of the orders loaded with it (the second
    // phase of `Keys`), so no load waits for another.
    let (loaded_users, loaded_orders, loaded_refunds, loaded_payments, loaded_balances) = futures::try_join!(
        users::load_for(&tx, &s.load_users, &keys),
        orders::load_orders(&tx, &s.load_orders, &keys),
        refunds::load(&tx, &s.load_refunds, &keys),
        orders::load_payments(&tx, &s.load_payments, &keys),
        orders::load_balances(&tx, &s.load_balances, &keys),
    )?;
    let mut state = State::default();
    loaded_users.into_iter().for_each(|u| state.users.load(u));
    loaded_orders.into_iter().for_each(|o| state.orders.load(o));
    loaded_refunds
        .into_iter()
        .for_each(|r| state.refunds.load(r));
    loaded_payments
        .into_iter()
        .for_each(|p| state.ledger.load_payment(p));
    loaded_balances
        .into_iter()
        .for_each(|b| state.ledger.load_balance(b));
    let verdicts = state.apply_all(records);
    for (rec, verdict) in records.iter().zip(&verdicts) {
        if let Verdict::Refused(refusal) = verdict {
            tracing::info!(
                seq = rec.seq,
                kind = rec.event.kind(),
                reason = refusal.as_str(),
                "event refused by the fold"
            );
        }
    }
    let failures = state.ledger.take_new_failures();
    for f in &failures {
        tracing::warn!(
            seq = f.seq,
            reason = %f.reason,
            out_trade_no = f.out_trade_no.as_deref(),
            transaction_id = f.transaction_id.as_deref(),
            amount = f.amount,
            "payment failure logged"
        );
    }
    let changed_users = state.users.take_changed();
    let changed_orders = state.orders.take_changed();
    let changed_refunds = state.refunds.take_changed();
    let payments = state.ledger.take_new_payments();
    let entries = state.ledger.take_new_entries();
    let balances = state.ledger.take_changed_balances();
    let kept = state.take_verdicts();
    let decided = if with_outcomes {
        outcomes::derive(records, &verdicts, &entries, &failures, &state)
    } else {
        Vec::new()
    };
    let (old, new) = (
        i64::try_from(checkpoint).expect("sequences fit in i64"),
        i64::try_from(last).expect("sequences fit in i64"),
    );
    let checkpoint_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&PROJECTION, &old, &new];
    // A failed write aborts the transaction, so the writes after it fail too: the first
    // error, which `try_join!` returns, is the cause. The transaction then rolls back
    // when dropped.
    let ((), (), (), (), (), (), (), (), (), moved) = futures::try_join!(
        users::upsert(&tx, &s.upsert_users, &changed_users),
        orders::upsert_orders(&tx, &s.upsert_orders, &changed_orders),
        refunds::upsert(&tx, &s.upsert_refunds, &changed_refunds),
        orders::insert_payments(&tx, &s.insert_payments, &payments),
        orders::insert_entries(&tx, &s.insert_entries, &entries),
        orders::upsert_balances(&tx, &s.upsert_balances, &balances),
        orders::insert_failures(&tx, &s.insert_failures, &failures),
        verdicts::insert(&tx, &s.insert_verdicts, &kept),
        outbox::insert(&tx, &s.insert_outbox, &decided),
        tx.execute(&s.move_checkpoint, &checkpoint_params),
    )?;
    if moved != 1 {
        return Err(ProjectorError::CheckpointMoved);
    }
    tx.commit().await?;
    tracing::debug!(from = checkpoint + 1, to = last, "batch applied");
    Ok(last)
}
