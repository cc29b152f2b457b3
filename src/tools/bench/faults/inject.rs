//! One run of one fault kind: fresh private servers, the load, the fault, the recovery,
//! the verdict; everything torn down on return (the rig and the servers on drop, also on
//! an error).

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::{sleep, Instant};

use super::{recovery, Kind, Options, RunResult};
use crate::{
    settings::SimSettings,
    tools::harness::{
        notify_tally, NatsCluster, NatsNode, NatsServers, PrivatePostgres, Rig, RigOptions,
    },
};

/// How long a killed or stopped server stays down.
const DOWN: Duration = Duration::from_secs(2);
/// How long a paused server stays frozen.
const PAUSED: Duration = Duration::from_secs(3);
/// How long the bench waits for the recovery, the warm-up or the load after it.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `kind` once on fresh servers.
pub(super) async fn run_once(kind: Kind, options: &Options) -> anyhow::Result<RunResult> {
    let mut pg = PrivatePostgres::start()
        .await
        .context("the private PostgreSQL starts")?;
    let rig_options = |instances| RigOptions {
        binary: options.binary.clone(),
        database_url: pg.url(),
        tag: "fb".into(),
        instances,
        sim: SimSettings {
            listen: ([127, 0, 0, 1], 0).into(),
            time_factor: options.time_factor,
            notify_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    };
    match kind {
        Kind::ClusterNodeKill => {
            let options_c = rig_options(2);
            let nats = NatsCluster::start().await?;
            let mut rig = Rig::start(nats, options_c).await?;
            measured(kind, &mut rig, &mut pg, options).await
        }
        _ => {
            let instances = if kind == Kind::ActiveDaemonKill { 3 } else { 1 };
            let options_n = rig_options(instances);
            let mut nats = NatsNode::start();
            nats.listening().await?;
            let mut rig = Rig::start(nats, options_n).await?;
            measured(kind, &mut rig, &mut pg, options).await
        }
    }
}

/// A fault injected: when it ended (the server back and accepting; the kill for a
/// failover) and what to undo after the recovery.
pub(super) struct Fault {
    end: Instant,
    restart_node: Option<usize>,
}

/// The faults a rig on `Self`'s NATS can inject.
pub(super) trait Inject {
    /// Injects `kind` and answers once the fault ended.
    async fn inject(&mut self, kind: Kind, pg: &mut PrivatePostgres) -> anyhow::Result<Fault>;
    /// Undoes what the fault left after the recovery (starts a killed cluster node).
    async fn after(&mut self, fault: &Fault) -> anyhow::Result<()>;
    /// For a killed stream leader: when the cluster elected the next one, from the
    /// kill (the engine's part of the recovery); `None` for every other fault.
    async fn elected(&self, _fault: &Fault) -> Option<Duration> {
        None
    }
}

/// The faults on the daemon and Postgres, on any rig.
async fn common<N: NatsServers>(
    rig: &mut Rig<N>,
    kind: Kind,
    pg: &mut PrivatePostgres,
) -> anyhow::Result<Fault> {
    let end = match kind {
        Kind::DaemonKill => {
            let n = rig.daemons.len();
            rig.daemons[n - 1].kill();
            sleep(DOWN).await;
            rig.add_instance(&format!("d{n}")).await?;
            Instant::now()
        }
        Kind::PostgresKill | Kind::PostgresStop => {
            if kind == Kind::PostgresKill {
                pg.kill();
            } else {
                pg.stop();
            }
            sleep(DOWN).await;
            pg.restart().await?
        }
        Kind::ActiveDaemonKill => {
            let active = rig
                .wait_leader("projector", Duration::from_secs(10))
                .await?;
            rig.daemons[active].kill();
            Instant::now()
        }
        _ => bail!("{} needs another NATS", kind.name()),
    };
    Ok(Fault {
        end,
        restart_node: None,
    })
}

impl Inject for Rig<NatsNode> {
    async fn inject(&mut self, kind: Kind, pg: &mut PrivatePostgres) -> anyhow::Result<Fault> {
        let end = match kind {
            Kind::NatsKill => {
                self.nats.kill();
                sleep(DOWN).await;
                self.nats.restart().await
            }
            Kind::NatsPause => {
                self.nats.pause();
                sleep(PAUSED).await;
                self.nats.resume();
                Instant::now()
            }
            _ => return common(self, kind, pg).await,
        };
        Ok(Fault {
            end,
            restart_node: None,
        })
    }

    async fn after(&mut self, _fault: &Fault) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Inject for Rig<NatsCluster> {
    async fn inject(&mut self, kind: Kind, pg: &mut PrivatePostgres) -> anyhow::Result<Fault> {
        if kind != Kind::ClusterNodeKill {
            return common(self, kind, pg).await;
        }
        let stream = self.deployment.stream.clone();
        let leader = self
            .nats
            .wait_stream_leader(&stream, None, Duration::from_secs(10))
            .await?;
        self.nats.kill(leader);
        Ok(Fault {
            end: Instant::now(),
            restart_node: Some(leader),
        })
    }

    async fn after(&mut self, fault: &Fault) -> anyhow::Result<()> {
        if let Some(i) = fault.restart_node {
            self.nats.restart(i).await;
        }
        Ok(())
    }

    async fn elected(&self, fault: &Fault) -> Option<Duration> {
        let killed = fault.restart_node?;
        let stream = &self.deployment.stream;
        self.nats
            .wait_stream_leader(stream, Some(killed), PATIENCE)
            .await
            .ok()?;
        Some(fault.end.elapsed())
    }
}

/// Warm-up, fault, recovery, more load, verdict.
async fn measured<N: NatsServers>(
    kind: Kind,
    rig: &mut Rig<N>,
    pg: &mut PrivatePostgres,
    options: &Options,
) -> anyhow::Result<RunResult>
where
    Rig<N>: Inject,
{
    let token = rig.login("o-bench-probe").await?;
    let mut config = rig.load_config(options.users);
    config.give_up_after = PATIENCE;
    let load = crate::tools::harness::Load::start(config);
    if !load.wait_paid(options.warmup, PATIENCE).await {
        bail!(
            "the load made {} payments in {PATIENCE:?}: {:?}\n{}",
            load.paid(),
            load.tally(),
            rig.logs()
        );
    }
    let fault = rig.inject(kind, pg).await?;
    let before = load.paid_list();
    eprintln!(
        "[faults]   injected; fault ended {} ms ago; {} payments to be booked",
        fault.end.elapsed().as_millis(),
        before.len()
    );
    let (recovered, elected) = tokio::join!(
        recovery::measure(rig, &token, &before, fault.end, PATIENCE),
        rig.elected(&fault),
    );
    rig.after(&fault).await?;
    let paid = load.paid();
    if !load.wait_paid(paid + options.after, PATIENCE).await {
        eprintln!("[faults]   the load did not go on after the recovery");
    }
    let (report, verdict) = rig.verdict(load, Vec::new()).await?;
    let notifies = notify_tally(&rig.http, &rig.sim).await?;
    let result = RunResult::new(kind, report.tally, notifies, &verdict, recovered, elected);
    if !result.met() && std::env::var_os(crate::tools::harness::daemon::KEEP_LOGS).is_some() {
        eprintln!("{}", rig.logs());
    }
    Ok(result)
}
