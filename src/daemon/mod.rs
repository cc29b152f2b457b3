//! The running daemon: startup and shutdown, the HTTP API, the commands a request starts,
//! the background jobs, bearer tokens, limits, metrics and logging.

pub mod api;
pub mod auth;
pub mod commands;
pub mod healthcheck;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod signals;
pub mod startup;
pub mod telemetry;
