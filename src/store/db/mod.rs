//! Postgres: the pool (every connection's `search_path` is the configured schema), the
//! migrations in `projections/`, and the advisory-lock keys.
//!
//! The reads on a request's path (an order, a user, a balance, a verdict, a data key)
//! use `query_typed*`: a query given as text is otherwise prepared first, one more
//! round trip. Reads a request needs together are polled at once on one connection,
//! which pipelines them into one round trip.

pub mod copy;
pub mod leader;
pub mod orders;
pub mod refunds;
pub mod schema_name;
pub mod sslmode;
pub mod tls;
pub mod users;
pub mod verdicts;

pub use schema_name::check_schema_name;

use std::{str::FromStr, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{core::causes::chain, settings::database::DatabaseSettings};

/// Postgres failed or could not be reached: infrastructure, retry later.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had.
    #[error("postgres unavailable: {}", chain(.0))]
    Pool(deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("postgres: {}", chain(.0))]
    Query(tokio_postgres::Error),
    /// A migration file was edited after it had been applied.
    #[error("projections/{0} changed after it was applied; add a new file instead")]
    MigrationChanged(&'static str),
    /// The settings do not make a connection string.
    #[error("database.url: {0}")]
    Config(String),
    /// Postgres answered but refused us (no such database or role, bad password, TLS
    /// refused or unverified): waiting cannot help.
    #[error("postgres at {target}: {cause}")]
    Refused {
        /// `host:port/database` as user, without the password.
        target: String,
        /// What Postgres or the TLS layer said, with the SQLSTATE name when there is one.
        cause: String,
    },
    /// Postgres did not answer within `database.connect_timeout_secs`.
    #[error("postgres at {target}: {cause} (gave up after {waited_secs} s, database.connect_timeout_secs)")]
    Unreachable {
        /// `host:port/database` as user, without the password.
        target: String,
        /// The last failure.
        cause: String,
        /// How long start-up waited.
        waited_secs: u64,
    },
    /// A row could not be encoded for a bulk load.
    #[error("bulk load: {0}")]
    Encode(String),
}

// Causes are part of the message (not `source`), so a printed chain says each once.
impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Pool(e)
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Query(e)
    }
}

/// The SQL files of `projections/`, in the order they apply.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_projector.sql",
        include_str!("../../../projections/0001_projector.sql"),
    ),
    (
        "0002_users.sql",
        include_str!("../../../projections/0002_users.sql"),
    ),
    (
        "0003_sessions.sql",
        include_str!("../../../projections/0003_sessions.sql"),
    ),
    (
        "0004_payments.sql",
        include_str!("../../../projections/0004_payments.sql"),
    ),
    (
        "0005_refunds.sql",
        include_str!("../../../projections/0005_refunds.sql"),
    ),
    (
        "0006_outcomes.sql",
        include_str!("../../../projections/0006_outcomes.sql"),
    ),
    (
        "0007_erasure.sql",
        include_str!("../../../projections/0007_erasure.sql"),
    ),
    (
        "0008_verdicts.sql",
        include_str!("../../../projections/0008_verdicts.sql"),
    ),
    (
        "0009_stream_identity.sql",
        include_str!("../../../projections/0009_stream_identity.sql"),
    ),
];

/// How to open a connection: tokio-postgres' settings (every session works in the
/// configured schema) and the TLS connector of `database.sslmode`. Cheap to clone.
#[derive(Clone)]
pub struct PgConfig {
    /// Host, port, database, user, options.
    pub config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl PgConfig {
    /// `host:port/database as user`, for messages: never the password.
    pub fn target(&self) -> String {
        let c = &self.config;
        let hosts = c
            .get_hosts()
            .iter()
            .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(host, port)| match host {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
            })
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "{hosts}/{} as {}",
            c.get_dbname().unwrap_or("(default)"),
            c.get_user().unwrap_or("(default)")
        )
    }
}

/// The connection settings of `settings`: URL, schema and TLS.
pub fn pg_config(settings: &DatabaseSettings) -> Result<PgConfig, DbError> {
    let mut config = tokio_postgres::Config::from_str(&settings.url)
        .map_err(|e| DbError::Config(e.to_string()))?;
    // The schema name was validated to be a plain identifier.
    config.options(format!("-c search_path={}", settings.schema));
    config.connect_timeout(Duration::from_secs(3));
    config.application_name("wxledger");
    let (tls, mode) = tls::connector(settings).map_err(DbError::Config)?;
    config.ssl_mode(mode);
    Ok(PgConfig { config, tls })
}

/// A connection of its own, outside the pool: it closes (releasing session-level
/// advisory locks) as soon as the returned client is dropped.
pub async fn connect_dedicated(config: &PgConfig) -> Result<tokio_postgres::Client, DbError> {
    let (client, connection) = config.config.connect(config.tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "dedicated postgres connection ended");
        }
    });
    Ok(client)
}

/// A pool whose connections work in `settings.schema`.
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    let PgConfig { config, tls } = pg_config(settings)?;
    tls::warn_if_unverified_remote(&config, settings.sslmode);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(3)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// A stable 64-bit advisory-lock key for `name` within `schema`.
pub fn lock_key(schema: &str, name: &str) -> i64 {
    let digest = Sha256::digest(format!("wxledger:{schema}:{name}"));
    i64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

/// Whether a schema named `schema` exists.
pub async fn schema_exists(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .get(0))
}

/// Creates the schema and applies every file of `projections/` not applied yet.
/// Safe to run from several processes at once (advisory lock) and again at every start.
pub async fn migrate(pool: &Pool, schema: &str) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(schema, "migrate")],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.projection_migrations (
             name       text        PRIMARY KEY,
             sha256     text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    for (name, sql) in MIGRATIONS {
        let digest = hex::encode(Sha256::digest(sql.as_bytes()));
        let applied = tx
            .query_opt(
                "SELECT sha256 FROM projection_migrations WHERE name = $1",
                &[name],
            )
            .await?;
        match applied {
            Some(row) if row.get::<_, String>(0) == digest => continue,
            Some(_) => return Err(DbError::MigrationChanged(name)),
            None => {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO projection_migrations (name, sha256) VALUES ($1, $2)",
                    &[name, &digest],
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Waits until Postgres answers, up to `timeout`, saying once what it waits for (`target`,
/// from [`PgConfig::target`]). An answer that waiting cannot change (no such database
/// or role, a refused password, TLS refused or unverified) fails at once.
pub async fn wait_until_up(pool: &Pool, target: &str, timeout: Duration) -> Result<(), DbError> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut logged = false;
    loop {
        let cause = match pool.get().await {
            Ok(client) => {
                client.simple_query("SELECT 1").await?;
                if logged {
                    tracing::info!(target = %target, "postgres is up");
                }
                return Ok(());
            }
            Err(deadpool_postgres::PoolError::Backend(e)) => match startup_failure(&e) {
                Startup::Fatal(cause) => {
                    return Err(DbError::Refused {
                        target: target.to_owned(),
                        cause,
                    })
                }
                Startup::Transient(cause) => cause,
            },
            Err(e) => chain(&e),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(DbError::Unreachable {
                target: target.to_owned(),
                cause,
                waited_secs: (now - started).as_secs(),
            });
        }
        if !logged {
            tracing::warn!(
                target = %target,
                error = %cause,
                timeout_secs = timeout.as_secs(),
                "postgres is not reachable; waiting for it (database.connect_timeout_secs)"
            );
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(250).min(deadline - now)).await;
    }
}

/// A failed connection attempt at start: worth waiting out, or not.
#[derive(Debug, PartialEq, Eq)]
enum Startup {
    /// The server is not there yet, starting, or full: try again.
    Transient(String),
    /// The server answered and refused: say so now.
    Fatal(String),
}

/// Sorts a connection error by its SQLSTATE (never by message text); without one, by
/// whether the network failed (transient) or TLS did (fatal).
fn startup_failure(e: &tokio_postgres::Error) -> Startup {
    if let Some(code) = e.code() {
        let cause = chain(e);
        let transient = [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
        ];
        let named = match code {
            c if *c == SqlState::INVALID_CATALOG_NAME => "no such database",
            c if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                "role or connection not authorized"
            }
            c if *c == SqlState::INVALID_PASSWORD => "password refused",
            c if transient.contains(c) => return Startup::Transient(cause),
            _ => "refused",
        };
        return Startup::Fatal(format!("{named} (SQLSTATE {}): {cause}", code.code()));
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{InvalidData, InvalidInput};
            // rustls reports a refused certificate as InvalidData.
            return if matches!(io.kind(), InvalidData | InvalidInput) {
                Startup::Fatal(chain(e))
            } else {
                Startup::Transient(chain(e))
            };
        }
        source = cause.source();
    }
    if e.is_closed() {
        return Startup::Transient(chain(e));
    }
    // No I/O error and no SQLSTATE: TLS refused ("server does not support TLS") or a
    // protocol error; neither goes away by waiting.
    Startup::Fatal(chain(e))
}
