//! `wxledger replay --as-of <RFC 3339 time | stream sequence> --into <schema>`: the books
//! as they were at a point in time, folded from the stream into a schema of their own
//! (the same tables as the live projection, which is left untouched).
//!
//! Two sinks run the same fold (`State::apply`) from sequence 1: by default the full
//! rebuild (`copy`: fold in memory, then bulk-load with COPY), or, with
//! [`Sink::Batches`], the live projector's own batch code (`batches`).
//! Both skip the events quarantined anywhere on the stream, as the live projector does.
//! Either way the replayed tables are exactly what the live projector had written once
//! it reached that point.
//! The schema records the stream it was built from (`stream_identity`), so a projector
//! switched to it goes on from that stream only ([`crate::store::identity`]).

mod as_of;
mod batches;
mod copy;
mod error;
mod progress;

pub use as_of::AsOf;
pub use copy::Loaded;
pub use error::ReplayError;
pub use progress::Progress;

use crate::{
    settings::{DatabaseSettings, Settings},
    store::{db, identity, stream::EventLog},
};
use batches::apply_in_batches;
use copy::rebuild;

/// How the folded state reaches the target schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sink {
    /// Fold everything in memory, then bulk-load every table with COPY (fast).
    #[default]
    Copy,
    /// Apply batches of events as the live projector does (slow; for comparison).
    Batches,
}

/// Folds the stream up to `as_of` into the schema `into` with the full rebuild
/// ([`Sink::Copy`]); see [`replay_with`].
pub async fn replay(
    settings: &Settings,
    as_of: AsOf,
    into: &str,
    replace: bool,
    progress: impl FnMut(&Progress),
) -> Result<Progress, ReplayError> {
    Ok(
        replay_with(settings, as_of, into, replace, Sink::Copy, progress)
            .await?
            .0,
    )
}

/// Folds the stream up to `as_of` into the schema `into`. An existing schema is refused
/// unless `replace`. `progress` is called about once a second and once at the end. With
/// [`Sink::Copy`] it also returns the rows loaded per table.
///
/// The tables are built in a schema of their own ([`build_schema`]), created and
/// migrated here, and only the last transaction, with the stream identity, drops the
/// replaced schema and renames the build to `into`: a replay that dies midway leaves no
/// `into` (or the old one, untouched), never a schema a projector could go on from.
/// The build an earlier replay left behind is dropped first.
pub async fn replay_with(
    settings: &Settings,
    as_of: AsOf,
    into: &str,
    replace: bool,
    sink: Sink,
    progress: impl FnMut(&Progress),
) -> Result<(Progress, Option<Loaded>), ReplayError> {
    target(settings, into)?;
    let build = in_schema(settings, build_schema(into));
    let pg = db::pg_config(&build)?;
    let admin = db::connect_dedicated(&pg).await?;
    // One replay into `into` at a time: another would drop this one's build. Held by the
    // admin connection (a session lock) until the switch has committed.
    let free: bool = admin
        .query_one("SELECT pg_try_advisory_lock($1)", &[&replay_lock(into)])
        .await?
        .get(0);
    if !free {
        return Err(ReplayError::Target {
            schema: into.to_owned(),
            problem: "another replay into it is running".into(),
        });
    }
    if !replace && db::schema_exists(&admin, into).await? {
        return Err(refused(into));
    }
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", build.schema))
        .await?;
    let pool = db::pool(&build)?;
    db::migrate(&pool, &build.schema).await?;
    drop(pool);

    let log = EventLog::open(&settings.nats).await?;
    // Read before the events: the rebuilt schema records the stream it was built from,
    // and a projector on it goes on only from that stream (`identity`).
    let built_from = log.identity().await?;
    let head = log.last_seq().await?;
    // Every quarantine on the stream, also those after `end`: the projector skipped the
    // event once its quarantine was appended, and so does every replay through it.
    let quarantine = log.quarantine().await?;
    let end = match as_of {
        AsOf::Seq(seq) => seq.min(head),
        AsOf::Time(_) => head,
    };
    let (done, loaded) = if sink == Sink::Copy {
        let clients = [
            db::connect_dedicated(&pg).await?,
            db::connect_dedicated(&pg).await?,
        ];
        let (done, loaded) = rebuild(clients, log, &quarantine, as_of, end, progress).await?;
        (done, Some(loaded))
    } else {
        let client = db::connect_dedicated(&pg).await?;
        let done = apply_in_batches(client, log, &quarantine, as_of, end, progress).await?;
        (done, None)
    };
    let mut admin = admin;
    let switch = admin.transaction().await?;
    identity::record(&switch, &identity::BuiltFrom::from(&built_from)).await?;
    if replace {
        switch
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {into} CASCADE"))
            .await?;
    } else if db::schema_exists(&switch, into).await? {
        return Err(refused(into));
    }
    switch
        .batch_execute(&format!("ALTER SCHEMA {} RENAME TO {into}", build.schema))
        .await?;
    switch.commit().await?;
    Ok((done, loaded))
}

/// The advisory lock a replay into `into` holds while it runs.
pub fn replay_lock(into: &str) -> i64 {
    db::lock_key(into, "replay")
}

/// The schema a replay into `into` builds its tables in before they take that name: a
/// plain name of its own per target (a digest of it, as `into` may be 63 bytes long).
pub fn build_schema(into: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(into.as_bytes());
    format!("replay_build_{}", hex::encode(&digest[..8]))
}

fn refused(into: &str) -> ReplayError {
    ReplayError::Target {
        schema: into.to_owned(),
        problem: "exists; pass --replace to drop and rebuild it".into(),
    }
}

/// The database settings of the target schema, checked.
pub fn target(settings: &Settings, into: &str) -> Result<DatabaseSettings, ReplayError> {
    let problem = |p: &str| ReplayError::Target {
        schema: into.to_owned(),
        problem: p.to_owned(),
    };
    db::check_schema_name(into).map_err(problem)?;
    if into == settings.database.schema {
        return Err(problem(
            "is the live projection's schema; replay into another",
        ));
    }
    if matches!(into, "public" | "pg_catalog" | "information_schema") {
        return Err(problem("is a system schema"));
    }
    if into.starts_with("replay_build_") {
        return Err(problem("is the name of a replay's build schema"));
    }
    Ok(in_schema(settings, into.to_owned()))
}

/// The database settings of the replay's connections to `schema`.
fn in_schema(settings: &Settings, schema: String) -> DatabaseSettings {
    DatabaseSettings {
        url: settings.database.url.clone(),
        schema,
        pool_size: 2,
        connect_timeout: settings.database.connect_timeout,
        sslmode: settings.database.sslmode,
        ssl_root_cert: settings.database.ssl_root_cert.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_must_be_a_plain_schema_other_than_the_live_one() {
        let settings = Settings::default();
        assert!(target(&settings, "books_2026_11_01").is_ok());
        for bad in [
            "",
            "drop table;",
            "1abc",
            "public",
            "pg_temp_books",
            &build_schema("books"),
            // Postgres would fold it to the live schema's name.
            &settings.database.schema.to_uppercase(),
            "Books",
            &settings.database.schema.clone(),
        ] {
            assert!(target(&settings, bad).is_err(), "{bad:?} accepted");
        }
    }
}
