//! A fault-injecting TCP proxy: put in front of the broker (or the simulator) it can
//! cut every open connection and refuse new ones for a while, and it counts the
//! connections it accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A TCP proxy on 127.0.0.1 forwarding to one upstream address. Stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    /// Bumped by every cut; each forwarded connection ends when it changes.
    generation: watch::Sender<u64>,
    /// While true, connections are accepted and dropped at once.
    down: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl FaultProxy {
    /// Starts forwarding to `upstream` (`host:port`).
    ///
    /// # Panics
    ///
    /// When no local port can be bound.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let proxy = Self {
            addr,
            generation: watch::Sender::new(0),
            down: watch::Sender::new(false),
            accepted: Arc::new(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
        };
        let (generation, down, accepted, shutdown) = (
            proxy.generation.clone(),
            proxy.down.clone(),
            Arc::clone(&proxy.accepted),
            proxy.shutdown.clone(),
        );
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                if *down.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = generation.subscribe();
                cut.mark_unchanged();
                let (upstream, shutdown) = (upstream.clone(), shutdown.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut client = client;
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        // Dropping both sockets ends the connection mid-stream.
                        _ = cut.changed() => {}
                        () = shutdown.cancelled() => {}
                    }
                });
            }
        });
        proxy
    }

    /// The proxy's `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its first `upstream` (`host:port`) replaced by the proxy's address.
    pub fn rewrite(&self, url: &str, upstream: &str) -> String {
        url.replacen(upstream, &self.addr.to_string(), 1)
    }

    /// Cuts every connection open now; new ones are accepted.
    pub fn cut(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Cuts every open connection and drops new ones until [`FaultProxy::restore`]:
    /// the upstream looks unreachable.
    pub fn take_down(&self) {
        self.down.send_replace(true);
        self.cut();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.down.send_replace(false);
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
