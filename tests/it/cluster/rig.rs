//! The cluster tests' rig: [`wxledger::tools::harness::Rig`] on a private 3-node NATS
//! cluster and the test database, panicking on its errors with every log. One rig at a
//! time (a static mutex): the cluster tests are heavy for a 2-core machine and must not
//! race each other.

use std::{
    ops::{Deref, DerefMut},
    time::Duration,
};

use tokio::{sync::MutexGuard, time::Instant};
use wxledger::tools::harness::{self, Load, NatsCluster, Paid, RigOptions, Verdict};

use crate::common::{blocking, database_url, drop_schema, sim_settings};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Rig {
    inner: harness::Rig<NatsCluster>,
    _serial: MutexGuard<'static, ()>,
}

impl Deref for Rig {
    type Target = harness::Rig<NatsCluster>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Rig {
    /// A 3-node cluster and `n` instances on one schema and R3 stream, all ready.
    pub async fn start(n: usize) -> Self {
        let serial = SERIAL.lock().await;
        let nats = NatsCluster::start().await.expect("the NATS cluster starts");
        let options = RigOptions {
            binary: env!("CARGO_BIN_EXE_wxledger").into(),
            database_url: database_url(),
            tag: "cl".into(),
            instances: n,
            sim: sim_settings(),
        };
        let inner = harness::Rig::start(nats, options)
            .await
            .unwrap_or_else(|e| panic!("the rig starts: {e:#}"));
        Self {
            inner,
            _serial: serial,
        }
    }

    /// Waits (up to `within`) until exactly one running instance leads `role`; answers it.
    pub async fn wait_leader(&self, role: &str, within: Duration) -> usize {
        self.inner
            .wait_leader(role, within)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()))
    }

    /// The projection's checkpoint.
    pub async fn checkpoint(&self) -> i64 {
        self.inner.checkpoint().await.unwrap()
    }

    /// Waits until the checkpoint passes `seq` (panics with the logs after `deadline`).
    pub async fn wait_checkpoint_past(&self, seq: i64, deadline: Instant) {
        while self.checkpoint().await <= seq {
            assert!(
                Instant::now() < deadline,
                "nothing applied past {seq}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `n` orders of one user, placed and given their prepay, not paid yet.
    pub async fn unpaid_orders(&self, n: usize) -> Vec<String> {
        self.inner.unpaid_orders(n).await.unwrap()
    }

    /// The simulated users pay `orders`.
    pub async fn pay(&self, orders: &[String]) -> Vec<Paid> {
        self.inner.pay(orders).await.unwrap()
    }

    /// Stops the load and checks its payments: none lost, none doubled, audit clean.
    pub async fn verdict(&self, load: Load, also: Vec<Paid>) -> (harness::LoadReport, Verdict) {
        let (report, verdict) = self
            .inner
            .verdict(load, also)
            .await
            .unwrap_or_else(|e| panic!("the check runs: {e:#}\n{}", self.logs()));
        assert!(
            verdict.is_clean(),
            "lost or doubled: {verdict:#?}\n{:?}\n{}",
            report.tally,
            self.logs()
        );
        (report, verdict)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for d in &mut self.inner.daemons {
            d.kill();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let (url, schema) = (database_url(), self.deployment.schema.clone());
        blocking(async move { drop_schema(&url, &schema).await });
    }
}

/// Holds the cluster tests' lock, for a test that starts its own servers.
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}
