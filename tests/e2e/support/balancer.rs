//! A round-robin TCP balancer, the stand-in for a Kubernetes Service in front of several
//! proxy replicas: each accepted connection goes to the next backend in turn, and bytes are
//! copied both ways until either side closes. Like a Service, it knows nothing of
//! PostgreSQL, so a CancelRequest's new connection lands wherever the turn is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running balancer; it stops when dropped.
pub struct Balancer {
    /// Where clients connect.
    pub port: u16,
    next: Arc<AtomicUsize>,
    backends: Vec<u16>,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Listens on a free loopback port in front of the loopback `backends` ports.
    pub async fn start(backends: &[u16]) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(listener, backends.to_vec(), next.clone()));
        Balancer {
            port,
            next,
            backends: backends.to_vec(),
            task,
        }
    }

    /// The index of the backend the next connection goes to.
    pub fn next_backend(&self) -> usize {
        self.next.load(Ordering::SeqCst) % self.backends.len()
    }

    /// Moves the turn on by `n`, as `n` other clients connecting in between would.
    pub fn skip(&self, n: usize) {
        self.next.fetch_add(n, Ordering::SeqCst);
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, backends: Vec<u16>, next: Arc<AtomicUsize>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let backend = backends[next.fetch_add(1, Ordering::SeqCst) % backends.len()];
        tokio::spawn(relay(client, SocketAddr::from(([127, 0, 0, 1], backend))));
    }
}

async fn relay(mut client: TcpStream, backend: SocketAddr) {
    let _ = client.set_nodelay(true);
    let Ok(mut server) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
