//! The private PostgreSQL of `tools::harness::postgres`, which the fault bench kills:
//! committed rows survive a kill -9 and a fast stop, and a paused server answers nothing
//! until it resumes.

use std::time::Duration;

use wxledger::tools::harness::postgres::PrivatePostgres;

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
}

async fn rows(url: &str) -> i64 {
    client(url)
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("counts")
        .get(0)
}

#[tokio::test]
async fn committed_rows_survive_a_kill_and_a_stop_and_a_pause_answers_nothing() {
    let mut pg = PrivatePostgres::start().await.expect("starts");
    let url = pg.url();
    client(&url)
        .await
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    pg.kill();
    assert!(
        tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .is_err(),
        "a killed server refuses connections"
    );
    pg.restart().await.expect("recovers after a crash");
    client(&url)
        .await
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    assert_eq!(rows(&url).await, 2);

    pg.stop();
    pg.restart().await.expect("starts after a stop");
    assert_eq!(rows(&url).await, 2);

    let held = client(&url).await;
    pg.signal_all("STOP");
    let frozen =
        tokio::time::timeout(Duration::from_millis(500), held.simple_query("SELECT 1")).await;
    assert!(frozen.is_err(), "a paused server answers nothing");
    pg.signal_all("CONT");
    assert_eq!(rows(&url).await, 2, "and answers again once resumed");
}
