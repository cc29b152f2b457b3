//! `wxledger demo`: a scripted mini program user walked through the API.

/// The demo's flags.
#[derive(clap::Args)]
pub struct Args {
    /// The daemon's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// The simulator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    sim: String,
    /// The daemon's `auth.admin_token` (the walk refunds an order as an admin).
    #[arg(long, env = "WXLEDGER__AUTH__ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
}

/// Walks the demo user through the daemon and the simulator.
pub async fn run(args: Args) -> anyhow::Result<()> {
    wxledger::tools::demo::run(&args.api, &args.sim, &args.admin_token).await
}
