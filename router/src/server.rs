//! Listeners and workers: each worker thread runs its own single-threaded event loop and
//! accepts from every listener, so a connection and everything it touches stay on one thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::Shared;
use crate::http1;
use crate::proxy::{self, ConnInfo, Listener};
use crate::sockopt;

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
    shared: Arc<Shared>,
    listener: Listener,
}

impl Active {
    fn enter(self: &Arc<Self>, shared: &Arc<Shared>, listener: Listener) -> ActiveGuard {
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
    shared: Arc<Shared>,
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

async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    shared: Arc<Shared>,
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
        let conn = Arc::new(ConnInfo::new(peer, kind, shared.public_port(kind, port)));
        tokio::spawn(serve_connection(stream, conn, shared.clone(), shutdown.clone(), guard));
    }
}

/// Drives hyper's HTTP/2 connection until it ends; on shutdown, asks it to finish the requests
/// in flight and close.
async fn drive_h2<IO>(io: IO, conn: Arc<ConnInfo>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // HPACK counts 32 bytes of overhead per field; the limit covers the same fields that
    // HTTP/1.1's does.
    let list = shared.settings.max_header_bytes + 32 * shared.settings.max_headers;
    b.timer(TokioTimer::new()).max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX));
    let svc = service_fn(move |req| proxy::handle_h2(req, conn.clone(), shared.clone()));
    let c = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(c);
    let result = tokio::select! {
        r = c.as_mut() => r,
        // The guard `wait_for` returns must not live across the await below.
        () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

async fn serve_connection(
    stream: TcpStream,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
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
                drive_h2(tls, conn, shared, shutdown).await;
            } else {
                http1::serve(tls, conn, shared, shutdown).await;
            }
        }
    }
}
