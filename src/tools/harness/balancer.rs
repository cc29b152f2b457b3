//! A TCP round-robin balancer in front of several daemons, as a load balancer with
//! passive checks does it: each new connection goes to the next backend; a backend that
//! refuses the connection (or does not accept it within a second) is skipped and the one
//! after it tried. Connections are relayed byte for byte, so a client that wants its
//! requests spread opens a connection per request.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a backend may take to accept a connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Shared {
    /// The backends and the connections relayed to each so far.
    backends: RwLock<Vec<(SocketAddr, Arc<AtomicU64>)>>,
    next: AtomicUsize,
    /// Connections refused by a backend (and passed on to the next).
    skipped: AtomicU64,
}

/// The balancer: listens on a loopback port until dropped.
pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Balancer {
    /// Listens on a free loopback port in front of `backends` (which may be empty
    /// until [`Self::set_backends`]: the daemons need the balancer's URL to start).
    pub async fn start(backends: Vec<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            backends: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, shared.clone(), stop.clone()));
        let balancer = Self { addr, shared, stop };
        balancer.set_backends(backends);
        Ok(balancer)
    }

    /// Replaces the backends (their counts start at 0).
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        *self.shared.backends.write().expect("never poisoned") = backends
            .into_iter()
            .map(|a| (a, Arc::new(AtomicU64::new(0))))
            .collect();
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections relayed to each backend so far, in the order given.
    pub fn served(&self) -> Vec<u64> {
        self.shared
            .backends
            .read()
            .expect("never poisoned")
            .iter()
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Connections a backend refused, passed on to the next.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = client else {
            continue;
        };
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            let Some(backend) = connect(&shared).await else {
                // Every backend refused: the client sees its connection closed.
                return;
            };
            let (mut client, mut backend) = (client, backend);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
            }
        });
    }
}

/// A connection to the next backend that accepts one, trying each at most once.
async fn connect(shared: &Shared) -> Option<TcpStream> {
    let backends = shared.backends.read().expect("never poisoned").clone();
    let n = backends.len();
    let first = shared.next.fetch_add(1, Ordering::Relaxed);
    for i in 0..n {
        let (addr, served) = &backends[(first + i) % n];
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr));
        if let Ok(Ok(stream)) = attempt.await {
            let _ = stream.set_nodelay(true);
            served.fetch_add(1, Ordering::Relaxed);
            return Some(stream);
        }
        shared.skipped.fetch_add(1, Ordering::Relaxed);
    }
    None
}
