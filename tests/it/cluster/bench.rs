//! `wxledger bench faults`' machinery end to end for its cheapest kind, so it cannot rot:
//! private servers, the load, a daemon kill -9 and restart, the recovery measured, the
//! verdict and the table. Timing is the bench's to report, not asserted.

use wxledger::tools::bench::faults::{self, Kind};

#[tokio::test]
async fn the_fault_bench_runs_a_daemon_kill_end_to_end() {
    let _serial = super::rig::serial().await;
    let mut options = faults::Options::new(env!("CARGO_BIN_EXE_wxledger").into());
    options.only = vec![Kind::DaemonKill];
    options.users = 3;
    options.warmup = 5;
    options.after = 5;
    let report = faults::run(&options).await.expect("the bench runs");
    let table = report.table();
    eprintln!("{table}");
    let [row] = &report.rows[..] else {
        panic!("one row: {report:#?}")
    };
    assert_eq!(row.kind, Kind::DaemonKill);
    assert!(row.errors.is_empty(), "{:?}", row.errors);
    assert_eq!(row.injected, 1);
    assert_eq!(
        (row.lost, row.doubled, row.audit_breaches),
        (0, 0, 0),
        "{report:#?}"
    );
    let run = &report.runs[0];
    assert!(
        run.paid >= 10,
        "payments on both sides of the fault: {run:#?}"
    );
    assert!(
        run.recovery_ms.is_some(),
        "the probe succeeded and the payments were booked after the restart: {run:#?}"
    );
    assert!(
        row.unanswered + row.server_errors > 0,
        "the kill was felt by the clients or WeChat: {run:#?}"
    );
    assert!(table.contains("| daemon-kill | 1 |"), "{table}");
}
