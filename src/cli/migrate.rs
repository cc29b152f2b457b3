//! `wxledger migrate`: apply projections/*.sql to the configured schema.

use wxledger::{store::db, Settings};

/// Applies the migrations and exits.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let pool = db::pool(&settings.database)?;
    db::migrate(&pool, &settings.database.schema).await?;
    tracing::info!(schema = %settings.database.schema, "migrations applied");
    Ok(())
}
