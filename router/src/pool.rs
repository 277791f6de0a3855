//! Upstream HTTP/1.1 connections, kept alive and reused per worker thread.
//!
//! Each worker runs its own single-threaded event loop, so its pool is a thread-local with no
//! lock: a connection is only ever used by the thread that opened it. A connection goes back
//! to the pool when its response body has been read to the end and the dyno keeps it open; one
//! taken from the pool is checked for an end of stream first.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::error::{Code, ProxyError};
use crate::table::Upstream;
use crate::upstream::UpConn;

/// Most idle connections kept per dyno per worker.
const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// How long an idle connection is trusted. Shorter than the keep-alive timeout of common app
/// servers (Node's is 5 s), so the router never sends a request on a connection the app is
/// closing at that moment, which could neither succeed nor be safely retried.
const IDLE_TRUST: Duration = Duration::from_secs(4);

struct Idle {
    conn: UpConn,
    since: Instant,
}

/// Keyed by the dyno's address; foldhash rather than SipHash, as for the routing table's maps.
type IdleMap = HashMap<SocketAddr, Vec<Idle>, foldhash::fast::RandomState>;

thread_local! {
    static IDLE: RefCell<IdleMap> = RefCell::new(IdleMap::default());
}

fn pop_idle(addr: SocketAddr, now: Instant) -> Option<UpConn> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) < IDLE_TRUST && c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    })
}

/// Returns a connection whose response was read to the end, at `now`, with nothing left over.
pub(crate) fn checkin(mut conn: UpConn, now: Instant) {
    if !conn.buf.is_empty() {
        return;
    }
    conn.reused = true;
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(conn.addr).or_default();
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push(Idle { conn, since: now });
        }
    });
}

/// Counts of pool outcomes, for metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Requests sent on a reused connection.
    pub reused: std::sync::atomic::AtomicU64,
    /// New connections opened.
    pub opened: std::sync::atomic::AtomicU64,
}

/// A ready connection to the dyno: an idle one when there is one, else a new one. `now` is
/// the caller's recent reading of the clock.
pub(crate) async fn checkout(
    up: &Upstream,
    connect_timeout: Duration,
    stats: &PoolStats,
    now: Instant,
) -> Result<UpConn, ProxyError> {
    use std::sync::atomic::Ordering::Relaxed;
    let addr = match up.addr {
        Some(a) => a,
        None => resolve(up).await?,
    };
    if let Some(conn) = pop_idle(addr, now) {
        stats.reused.fetch_add(1, Relaxed);
        return Ok(conn);
    }
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ProxyError::bare(Code::H19)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(ProxyError::new(Code::H19, e));
        }
        Ok(Err(e)) => return Err(ProxyError::new(Code::H21, e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    stats.opened.fetch_add(1, Relaxed);
    Ok(UpConn::new(stream, addr))
}

async fn resolve(up: &Upstream) -> Result<SocketAddr, ProxyError> {
    let mut addrs =
        tokio::net::lookup_host((up.host.as_str(), up.port)).await.map_err(|e| ProxyError::new(Code::H21, e))?;
    addrs.next().ok_or_else(|| ProxyError::new(Code::H21, format!("{} resolves to no address", up.host)))
}
