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
    // Every service it started is stopped when it ends: none still listens on its port
    // ("compose-local: nats :P, sim :P, wxledger :P healthy ...").
    let line = stdout
        .lines()
        .find(|l| l.contains("healthy"))
        .expect("the script names its services' ports");
    let ports: Vec<u16> = line
        .split(':')
        .skip(1)
        .filter_map(|part| {
            part.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(ports.len(), 3, "{line}");
    for port in ports {
        let open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        assert!(
            !open,
            "a service still listens on :{port} after the script ended"
        );
    }
}
