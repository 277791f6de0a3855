//! Listeners and workers: each worker thread runs its own single-threaded event loop and
//! accepts from every listener, so a connection and everything it touches stay on one thread.
//! A connection is served by `http1.rs` (Wharf's own HTTP/1.1) or, when TLS negotiated `h2`
//! by ALPN, by `h2.rs` (HTTP/2 with the `h2` crate).

mod h2;
mod http1;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::client::{ClientConnection, Listener};
use crate::sockopt;
use crate::state::RouterState;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the kernel holds a new connection whose client has not spoken yet before handing it
/// to the router anyway (it rounds up to its SYN-ACK retransmission schedule).
const DEFER_ACCEPT: Duration = Duration::from_secs(10);

/// Binds a listening socket that every worker can accept from, and that hands over
/// connections once their client has spoken (`sockopt::defer_accept`).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    sockopt::defer_accept(&socket, DEFER_ACCEPT)?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Connections a worker is serving, so that shutdown can wait for them.
#[derive(Default)]
struct Active {
    count: AtomicUsize,
    idle: Notify,
}

/// A connection being served: counted among the worker's active ones, and in the metrics as
/// opened and, when dropped, closed (also when shutdown aborts it).
struct ActiveGuard {
    active: Arc<Active>,
    shared: Arc<RouterState>,
    listener: Listener,
}

impl Active {
    fn enter(self: &Arc<Self>, shared: &Arc<RouterState>, listener: Listener) -> ActiveGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        shared.metrics.connection_opened(listener);
        ActiveGuard { active: self.clone(), shared: shared.clone(), listener }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.shared.metrics.connection_closed(self.listener);
        if self.active.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.active.idle.notify_waiters();
        }
    }
}

/// Runs one worker until shutdown, then lets its connections finish within the grace period.
pub(crate) fn run_worker(
    listeners: Vec<(std::net::TcpListener, Listener)>,
    shared: Arc<RouterState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a worker runtime starts");
    rt.block_on(async move {
        let active = Arc::new(Active::default());
        let mut accepting = Vec::new();
        for (std_listener, kind) in listeners {
            let listener = TcpListener::from_std(std_listener).expect("a listener registers with the event loop");
            let (shared, active, shutdown) = (shared.clone(), active.clone(), shutdown.clone());
            accepting.push(tokio::spawn(accept_loop(listener, kind, shared, active, shutdown)));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        for task in accepting {
            task.abort();
        }
        let drained = async {
            loop {
                let idle = active.idle.notified();
                if active.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(shared.settings.shutdown_grace, drained).await.is_err() {
            tracing::warn!(
                connections = active.count.load(Ordering::Acquire),
                "shutdown grace period over; closing connections"
            );
        }
        crate::batch::flush(&shared.publisher);
    });
}

/// Accepts connections on one listener and spawns a task to serve each, until aborted.
async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    shared: Arc<RouterState>,
    active: Arc<Active>,
    shutdown: watch::Receiver<bool>,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let guard = active.enter(&shared, kind);
        let conn = Arc::new(ClientConnection::new(peer, kind, port, &shared.settings));
        tokio::spawn(serve_connection(stream, conn, shared.clone(), shutdown.clone(), guard));
    }
}

/// Serves one client connection: TLS first on the HTTPS listeners, then HTTP/1.1 or HTTP/2.
async fn serve_connection(
    stream: TcpStream,
    conn: Arc<ClientConnection>,
    shared: Arc<RouterState>,
    shutdown: watch::Receiver<bool>,
    _active: ActiveGuard,
) {
    let _ = stream.set_nodelay(true);
    match conn.listener {
        Listener::Http => http1::serve(stream, conn, shared, shutdown).await,
        Listener::Https | Listener::Internal => {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.tls.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %conn.peer, "tls handshake timed out");
                    return;
                }
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                h2::serve(tls, conn, shared, shutdown).await;
            } else {
                http1::serve(tls, conn, shared, shutdown).await;
            }
        }
    }
}
