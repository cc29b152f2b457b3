//! `wxledger erase-user`: crypto-shred a user's personal data.

use wxledger::{
    store::{db, privacy, stream::EventLog},
    Settings,
};

/// The erasure's arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The user's id (a UUID, as `GET /v1/admin/users/{user_id}` shows it).
    user_id: uuid::Uuid,
}

/// Destroys the user's data key, appends `user.erased` (once), and says which happened.
pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let user_id = args.user_id;
    let pool = db::pool(&settings.database)?;
    db::migrate(&pool, &settings.database.schema).await?;
    let log = EventLog::open(&settings.nats).await?;
    let correlation_id = format!("cli:erase-user:{}", uuid::Uuid::new_v4());
    let erasure = privacy::erase_user(&pool, &log, user_id, &correlation_id, chrono::Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("erase-user: {e} ({})", e.code()))?;
    match erasure.appended {
        Some(a) => println!(
            "user {user_id} erased: data key destroyed, user.erased at sequence {}",
            a.seq
        ),
        None => println!("user {user_id} was already erased: data key destroyed"),
    }
    Ok(())
}
