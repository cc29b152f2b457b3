//! `wxledger --dev serve` as a separate process, for fault runs: every instance of a
//! [`Deployment`] shares one schema, stream and subject prefix and the same explicit
//! secrets (development mode would otherwise give each process random keys, and a token
//! issued by one instance would not work on another). Settings go in as `WXLEDGER__...`
//! environment variables; stderr goes to a file whose tail a failing test prints.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use rand::RngCore;
use tokio::time::Instant;

use super::nats::{tail, temp_dir};

/// What every instance shares: the binary, the servers, one schema/stream/prefix, the
/// WeChat (simulator) base, the notify URL (the balancer's) and the secrets.
#[derive(Clone)]
pub struct Deployment {
    /// The `wxledger` binary (`env!("CARGO_BIN_EXE_wxledger")` in tests,
    /// `std::env::current_exe()` in the bench).
    pub binary: PathBuf,
    /// `nats.url` (a comma list for a cluster).
    pub nats_url: String,
    /// `nats.replicas`.
    pub replicas: usize,
    /// `database.url`.
    pub database_url: String,
    /// `database.schema`.
    pub schema: String,
    /// `nats.stream`.
    pub stream: String,
    /// `nats.subject_prefix`.
    pub prefix: String,
    /// `wechat.api_base` and `pay.api_base` (the simulator).
    pub wechat_base: String,
    /// `pay.notify_url`: where WeChat sends notifies (a balancer in front of the instances).
    pub notify_url: String,
    /// `auth.jwt_secret`, the same on every instance.
    pub jwt_secret: String,
    /// `auth.session_key_encryption_key` (base64 of 32 bytes), the same on every instance.
    pub sealing_key: String,
    /// `auth.admin_token`.
    pub admin_token: String,
    /// Further `WXLEDGER__...` variables, e.g. `("WXLEDGER__PROJECTOR__BATCH_SIZE", "50")`.
    pub extra: Vec<(String, String)>,
}

fn random_b64() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    B64.encode(key)
}

impl Deployment {
    /// A deployment on a fresh schema, stream and prefix (`<tag>_<random>`), with fresh
    /// random secrets shared by its instances.
    pub fn new(binary: impl Into<PathBuf>, nats_url: &str, database_url: &str, tag: &str) -> Self {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        Self {
            binary: binary.into(),
            nats_url: nats_url.to_owned(),
            replicas: 1,
            database_url: database_url.to_owned(),
            schema: format!("{tag}_{id}"),
            stream: format!("{}_{id}", tag.to_uppercase()),
            prefix: format!("{tag}_{id}"),
            wechat_base: "http://127.0.0.1:8090".into(),
            notify_url: "http://127.0.0.1:8080/webhooks/wechatpay".into(),
            jwt_secret: random_b64(),
            sealing_key: random_b64(),
            admin_token: random_b64(),
            extra: Vec::new(),
        }
    }

    /// The environment of one instance.
    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("HTTP__LISTEN", "127.0.0.1:0"),
            ("NATS__URL", &self.nats_url),
            ("NATS__REPLICAS", &self.replicas.to_string()),
            ("NATS__STREAM", &self.stream),
            ("NATS__SUBJECT_PREFIX", &self.prefix),
            ("DATABASE__URL", &self.database_url),
            ("DATABASE__SCHEMA", &self.schema),
            ("DATABASE__POOL_SIZE", "4"),
            ("WECHAT__API_BASE", &self.wechat_base),
            ("PAY__API_BASE", &self.wechat_base),
            ("PAY__NOTIFY_URL", &self.notify_url),
            ("PAY__PLATFORM_CERTIFICATES", "false"),
            ("AUTH__JWT_SECRET", &self.jwt_secret),
            ("AUTH__SESSION_KEY_ENCRYPTION_KEY", &self.sealing_key),
            ("AUTH__ADMIN_TOKEN", &self.admin_token),
            // Every request comes from the balancer's one loopback address.
            ("LIMITS__LOGIN_PER_IP__PER_MINUTE", "0"),
            ("LIMITS__LOGIN_PER_IP__BURST", "0"),
            ("LIMITS__PREPAY_PER_IP__PER_MINUTE", "0"),
            ("LIMITS__PREPAY_PER_IP__BURST", "0"),
            ("LIMITS__WEBHOOK_PER_IP__PER_MINUTE", "0"),
            ("LIMITS__WEBHOOK_PER_IP__BURST", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("WXLEDGER__{k}"), v.to_owned()))
        .collect();
        env.extend(self.extra.iter().cloned());
        env
    }

    /// Starts one instance named `name` and waits (up to 30 s) until it serves.
    pub async fn spawn(&self, name: &str) -> anyhow::Result<Daemon> {
        let dir = temp_dir(&format!("daemon-{name}"));
        let log_path = dir.join("stderr.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&self.binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(self.env())
            .args(["--dev", "serve"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("{} starts", self.binary.display()))?;
        let mut daemon = Daemon {
            name: name.to_owned(),
            dir,
            log: log_path,
            child: Some(child),
            addr: None,
        };
        daemon.addr = Some(daemon.wait_serving(Duration::from_secs(30)).await?);
        Ok(daemon)
    }

    /// Drops the deployment's schema (the stream lives on the private servers, which go
    /// with the test); failures are ignored.
    pub async fn drop_schema(&self) {
        drop_schema(&self.database_url, &self.schema).await;
    }
}

/// One `wxledger serve` process: killed (SIGKILL) and its directory removed on drop.
pub struct Daemon {
    name: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    addr: Option<SocketAddr>,
}

impl Daemon {
    /// Its name (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("serving")
    }

    /// The API's base URL, `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Its stderr log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log, headed by its name.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- {} ({}) ---\n{}\n",
            self.name,
            self.base(),
            tail(&self.log, lines)
        )
    }

    /// Whether the process was not killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the "wxledger serving" line and reads the address from it.
    async fn wait_serving(&mut self, within: Duration) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("wxledger serving")) {
                return line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse().ok())
                    .with_context(|| format!("no address in {line:?}"));
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    bail!("{} exited {status}:\n{}", self.name, tail(&self.log, 30));
                }
            }
            if Instant::now() > deadline {
                bail!("{} never served:\n{}", self.name, tail(&self.log, 30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `GET /readyz` answers 200 (up to `within`).
    pub async fn ready(&self, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.base());
        let deadline = Instant::now() + within;
        loop {
            match crate::daemon::healthcheck::probe(&url, Duration::from_secs(1)).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!("{} not ready: {e}\n{}", self.name, self.log_tail(30))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A gauge (with its labels, e.g. `wxledger_leader{role="projector"}`) from its
    /// `/metrics`; `None` when it does not answer or does not expose it.
    pub async fn gauge(&self, http: &reqwest::Client, series: &str) -> Option<i64> {
        let text = http
            .get(format!("{}/metrics", self.base()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Whether it leads `role` (`projector`, `publisher`) by its `wxledger_leader` gauge.
    pub async fn leads(&self, http: &reqwest::Client, role: &str) -> bool {
        self.gauge(http, &format!("wxledger_leader{{role=\"{role}\"}}"))
            .await
            == Some(1)
    }
}

/// Set (to anything) to keep the instances' logs after a run, for a post-mortem.
pub const KEEP_LOGS: &str = "WXLEDGER_HARNESS_KEEP_LOGS";

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os(KEEP_LOGS).is_some() {
            eprintln!("{} log kept: {}", self.name, self.log.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Drops `schema` at `url`, ignoring failures. A killed instance's session may still hold
/// a lock on the schema's tables for a moment: after a short wait the sessions holding
/// them are ended and the drop tried again.
pub async fn drop_schema(url: &str, schema: &str) {
    let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(conn);
    let drop = format!("SET lock_timeout = '3s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
    if client.batch_execute(&drop).await.is_ok() {
        return;
    }
    let _ = client
        .execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
             JOIN pg_class c ON c.oid = l.relation \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
            &[&schema],
        )
        .await;
    let _ = client.batch_execute(&drop).await;
}
