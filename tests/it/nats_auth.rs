//! NATS with users and permissions (config/nats/auth.conf, as shipped) on a private
//! nats-server: the daemon works with its credentials, the consumer user reads but
//! cannot append, anonymous clients and a daemon without credentials are refused.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;
use wxledger::{sim::Simulator, store::stream::EventLog, App};

use crate::common::{drop_schema, eventually, isolated_settings, sim_control, sim_settings};

pub const DAEMON_PASSWORD: &str = "daemon-test-password-9f8e7d";
const CONSUMER_PASSWORD: &str = "consumer-test-password-1a2b3c";

/// A nats-server of our own on a free port, with JetStream in a temp dir and the
/// shipped auth config; killed and removed on drop (also when a test panics).
pub struct PrivateNats {
    child: Child,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl PrivateNats {
    /// Starts the server and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_in(new_dir("wxl-nats"), "")
    }

    /// [`PrivateNats::start`] in `dir`, with `extra` added to the server's config.
    fn start_in(dir: PathBuf, extra: &str) -> Self {
        std::fs::create_dir_all(dir.join("js")).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nats/auth.conf");
        std::fs::copy(shipped, dir.join("auth.conf")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.join("server.conf"),
            format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\ninclude \"auth.conf\"\n{extra}\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/nats-server")
            .arg("-c")
            .arg(dir.join("server.conf"))
            .env("NATS_WXLEDGER_PASSWORD", DAEMON_PASSWORD)
            .env("NATS_CONSUMER_PASSWORD", CONSUMER_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let server = Self {
            child,
            dir,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The daemon's settings for `nats`, with its password in a file.
fn daemon_settings(nats: &PrivateNats, sim_base: &str, password_file: &Path) -> wxledger::Settings {
    let mut s = isolated_settings(sim_base);
    s.nats.url = nats.url.clone();
    // The names auth.conf grants.
    s.nats.stream = "WXLEDGER".into();
    s.nats.subject_prefix = "wxledger".into();
    s.nats.auth.user = Some("wxledger".into());
    s.nats.auth.password_file = Some(password_file.to_owned());
    s
}

async fn as_consumer(
    url: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(
        "consumer".into(),
        CONSUMER_PASSWORD.into(),
    )
    .event_callback(move |event| {
        let tx = tx.clone();
        async move {
            if let async_nats::Event::ServerError(e) = event {
                let _ = tx.send(e.to_string());
            }
        }
    })
    .connect(url)
    .await
    .expect("the consumer user connects");
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_appends_with_its_credentials_and_the_consumer_only_reads() {
    let nats = PrivateNats::start();
    let sim = Simulator::build(&sim_settings()).await.unwrap();
    let sim_base = format!("http://{}", sim.local_addr());
    let sim_stop = sim.stop_token();
    tokio::spawn(sim.run_until_stopped());
    let secrets = tempdir();
    let password_file = secrets.join("nats-password");
    std::fs::write(&password_file, format!("{DAEMON_PASSWORD}\n")).unwrap();

    let settings = daemon_settings(&nats, &sim_base, &password_file);
    let schema = settings.database.schema.clone();
    let app = App::build(settings)
        .await
        .expect("the daemon starts with its credentials");
    let api = format!("http://{}", app.local_addr());
    let stop = app.stop_token();
    let task = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();

    // A login appends user.registered and user.logged_in; /v1/me reads the projection.
    let code = sim_control(
        &http,
        &sim_base,
        "/sim/mini/login-codes",
        json!({"openid": "o-auth"}),
    )
    .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let login: Value = http
        .post(format!("{api}/v1/auth/login"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"]
        .as_str()
        .expect("login answered a token")
        .to_owned();
    let projected = eventually(Duration::from_secs(10), || {
        let request = http.get(format!("{api}/v1/me")).bearer_auth(&token).send();
        async move { request.await.is_ok_and(|r| r.status() == StatusCode::OK) }
    })
    .await;
    assert!(projected, "the login was projected");

    // The consumer user reads the events.
    let (consumer_client, mut server_errors) = as_consumer(&nats.url).await;
    let mut js = jetstream::new(consumer_client.clone());
    js.set_timeout(Duration::from_secs(1));
    let mut stream = js
        .get_stream("WXLEDGER")
        .await
        .expect("consumer sees the stream");
    let before = stream.info().await.unwrap().state.last_sequence;
    assert!(before >= 1, "the login appended its event");
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .expect("consumer may create an ordered consumer");
    let mut messages = reader.messages().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("an event arrives")
        .unwrap()
        .unwrap();
    assert_eq!(first.subject.as_str(), "wxledger.user.registered");

    // ... but cannot append one: the server refuses the publish, nothing is stored.
    let forged = json!({"id": Uuid::new_v4(), "type": "payment.notified"}).to_string();
    let publish = js
        .publish("wxledger.payment.notified", forged.into())
        .await
        .expect("the client sends it");
    assert!(
        publish.await.is_err(),
        "no acknowledgement for a refused publish"
    );
    let refusal = tokio::time::timeout(Duration::from_secs(5), server_errors.recv())
        .await
        .expect("the server says why")
        .unwrap();
    assert!(
        refusal.to_lowercase().contains("permissions violation")
            && refusal.contains("wxledger.payment.notified"),
        "{refusal}"
    );
    assert_eq!(stream.info().await.unwrap().state.last_sequence, before);

    // Nor may it delete the stream.
    assert!(js.delete_stream("WXLEDGER").await.is_err());
    assert!(js.get_stream("WXLEDGER").await.is_ok());

    // Anonymous clients are refused.
    let anonymous = async_nats::connect(&nats.url).await;
    let err = anonymous.expect_err("anonymous access is refused");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    sim_stop.cancel();
    drop_schema(&crate::common::database_url(), &schema).await;
    let _ = std::fs::remove_dir_all(secrets);
}

#[tokio::test]
async fn a_daemon_without_or_with_wrong_credentials_fails_at_once_saying_so() {
    let nats = PrivateNats::start();
    let unauthenticated = || {
        let mut s = isolated_settings("http://127.0.0.1:9");
        s.nats.url = nats.url.clone();
        s.nats.stream = "WXLEDGER".into();
        s.nats.subject_prefix = "wxledger".into();
        s.nats.connect_timeout = Duration::from_secs(20);
        s
    };
    let settings = unauthenticated();
    let schema = settings.database.schema.clone();
    let started = Instant::now();
    let err = App::build(settings).await.err().expect("refused");
    let msg = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "at once: {:?}",
        started.elapsed()
    );
    assert!(msg.contains("authorization failed"), "{msg}");
    assert!(msg.contains(&nats.url), "{msg}");
    drop_schema(&crate::common::database_url(), &schema).await;

    let mut settings = unauthenticated();
    // A wrong password, given in the URL: refused too, and the URL shown without it.
    settings.nats.url = nats
        .url
        .replace("nats://", "nats://wxledger:not-the-password@");
    let started = Instant::now();
    let msg = EventLog::connect(&settings.nats)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "at once: {:?}",
        started.elapsed()
    );
    assert!(msg.contains("authorization failed"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
    assert!(msg.contains("nats://***@127.0.0.1"), "{msg}");

    // The credentials of the environment work (here: the settings' password field).
    settings.nats.url = nats.url.clone();
    settings.nats.auth.user = Some("wxledger".into());
    settings.nats.auth.password = Some(DAEMON_PASSWORD.into());
    EventLog::connect(&settings.nats)
        .await
        .expect("the daemon's credentials work");
}

fn new_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{kind}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tempdir() -> PathBuf {
    new_dir("wxl-secrets")
}

/// Runs openssl in `dir`.
fn openssl(dir: &Path, args: &str) {
    let status = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certificates(dir: &Path) {
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(dir, "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wxl-test-ca -keyout ca-key.pem -out ca.pem");
    for who in ["server", "client"] {
        openssl(dir, &format!("req -newkey rsa:2048 -nodes -subj /CN=wxl-{who} -keyout {who}-key.pem -out {who}.csr"));
        openssl(dir, &format!("x509 -req -in {who}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile {who}.ext -out {who}.pem"));
    }
}

#[tokio::test]
async fn nats_tls_with_a_ca_and_client_certificate_and_a_clear_error_without() {
    let dir = new_dir("wxl-nats-tls");
    make_certificates(&dir);
    let tls = format!(
        "tls {{ cert_file: \"{0}/server.pem\", key_file: \"{0}/server-key.pem\", ca_file: \"{0}/ca.pem\", verify: true }}",
        dir.display()
    );
    let nats = PrivateNats::start_in(dir.clone(), &tls);
    let mut s = isolated_settings("http://127.0.0.1:9");
    s.nats.url = nats.url.clone();
    s.nats.stream = "WXLEDGER".into();
    s.nats.subject_prefix = "wxledger".into();
    s.nats.connect_timeout = Duration::from_secs(20);
    s.nats.auth.user = Some("wxledger".into());
    s.nats.auth.password = Some(DAEMON_PASSWORD.into());
    s.nats.tls.required = true;
    s.nats.tls.ca_file = Some(dir.join("ca.pem"));
    s.nats.tls.cert_file = Some(dir.join("client.pem"));
    s.nats.tls.key_file = Some(dir.join("client-key.pem"));
    s.validate().expect("valid settings");
    let log = EventLog::connect(&s.nats)
        .await
        .expect("connects over TLS with a client certificate");
    assert!(log.is_connected());

    // Without our CA the server's certificate is not trusted: a TLS error, at once.
    s.nats.tls.ca_file = None;
    let started = Instant::now();
    let msg = EventLog::connect(&s.nats).await.err().unwrap().to_string();
    assert!(
        msg.contains("TLS failed") && msg.contains(&nats.url),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
