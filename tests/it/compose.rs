//! docker-compose.yml's stack works: `scripts/compose-local.sh` starts its services as
//! processes with compose's environment (NATS with users and permissions, the daemon in
//! development mode with its secrets, the simulator) and the documented demo passes.

#[tokio::test]
async fn the_compose_stack_takes_a_payment_and_the_documented_demo_passes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/compose-local.sh");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new("bash")
            .arg(script)
            .env("COMPOSE_LOCAL_BIN", env!("CARGO_BIN_EXE_wxledger"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the stack comes up and the demo ends")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("healthy"), "{stdout}");
    assert!(stdout.contains("compose-local: demo passed"), "{stdout}");
}
