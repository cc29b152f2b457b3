//! `wxledger bench load`, tiny: the daemon in its own process (this build's binary), a few
//! hundred notifies in closed and open loops, a few API rounds and small raw figures. Checks
//! the report's shape and that its counts add up; never its speed.

use wxledger::{tools::bench::load, Settings};

use crate::common::{database_url, nats_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_load_run_reports_every_row_and_its_counts_add_up() {
    let mut database = Settings::development().database;
    database.url = database_url();
    let mut options =
        load::Options::new(env!("CARGO_BIN_EXE_wxledger").into(), nats_url(), database);
    options.warmup = 40;
    options.closed = 200;
    options.in_flight = 8;
    options.rates = vec![100.0, 150.0];
    options.seconds = 1.0;
    options.api_users = 2;
    options.api_rounds = 3;
    options.raw = load::RawSizes {
        verifies: 20,
        publishes: 10,
        copy_rows: 300,
    };
    options.book_within = std::time::Duration::from_secs(20);
    let report = load::run(&options).await.expect("the run completes");
    print!("{}", report.table());

    let sent: Vec<usize> = report.notifies.iter().map(|p| p.sent).collect();
    assert_eq!(sent, [40, 200, 100, 150]);
    for p in &report.notifies {
        assert_eq!(p.accepted + p.refused + p.unanswered, p.sent, "{}", p.name);
        assert_eq!((p.accepted, p.booked), (p.sent, p.sent), "{}", p.name);
        assert_eq!(
            p.answer_ms.expect("answers").count,
            p.accepted,
            "{}",
            p.name
        );
        assert_eq!(p.lag_ms.expect("lags").count, p.booked, "{}", p.name);
    }
    assert_eq!(report.notifies[1].in_flight, Some(8));
    assert_eq!(report.notifies[3].rate, Some(150.0));
    // Every notify and each API user's recharge booked once.
    assert_eq!(report.payments_rows, 490 + 2);
    assert_eq!(report.payments_orders, report.payments_rows);
    assert!(report.counts_add_up());

    let calls: Vec<(&str, usize, usize)> = report
        .api
        .iter()
        .map(|c| (c.name, c.ok, c.failed))
        .collect();
    assert_eq!(
        calls,
        [
            ("login", 8, 0),
            ("place order", 6, 0),
            ("wallet pay", 6, 0),
            ("me", 6, 0)
        ]
    );
    let login = &report.api[0];
    assert!(
        login.wechat_ms.unwrap().p50 > 0.0,
        "login waits on code2session"
    );
    assert_eq!(
        report.api[3].wechat_ms.unwrap().max,
        0.0,
        "me calls no WeChat"
    );

    let raw: Vec<(u64, &str)> = report.raw.iter().map(|r| (r.count, r.unit)).collect();
    assert_eq!(raw.len(), 5);
    assert_eq!(raw[0], (20, "verifies"));
    assert_eq!(raw[1], (10, "messages"));
    assert_eq!(raw[2], (100, "messages"));
    assert!(
        raw[3].0 >= 2 * 490,
        "the ordered read covers the run's stream"
    );
    assert_eq!(raw[4], (300, "rows"));

    let targets: Vec<&str> = report.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(targets.len(), 6, "{targets:?}");
    assert!(report.targets[0].measured.is_some());
    // Neither 5,000/s nor 2,000/s ran: those rows say so rather than judge.
    assert_eq!(
        (report.targets[1].measured, report.targets[1].met),
        (None, None)
    );
    assert!(report.targets[3..].iter().all(|t| t.met.is_some()));
    let json = serde_json::to_value(&report).unwrap();
    for key in ["notifies", "api", "raw", "targets", "payments_rows"] {
        assert!(json.get(key).is_some(), "{key} in the JSON");
    }
}
