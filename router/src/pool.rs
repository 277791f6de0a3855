//! Connections to dynos, kept alive and reused per worker thread.
//!
//! Each worker runs its own single-threaded event loop, so its pool is a thread-local with no
//! lock: a connection is only ever used by the thread that opened it. A connection goes back
//! to the pool when its response body has been read to the end and the dyno keeps it open; one
//! taken from the pool is checked for an end of stream first. The most recently returned
//! connection is taken first, so the least used ones age at the other end, where each return
//! closes those idle longer than the pool trusts them ([`IDLE_TRUST`]): a burst's surplus of
//! connections goes once the traffic falls, even while a few connections stay busy.
//!
//! Dynos come and go with every release (a new dyno listens on a new port), so the pool follows
//! the routing table: the first checkout under a newer table than the pool last saw drops the
//! idle connections to dynos that table no longer has, and a connection checked out under an
//! older table is not taken back if its dyno is gone. Pruning happens on the worker's own
//! thread, the only one that may touch its pool.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::dyno_client::DynoConnection;
use crate::error::{Code, ProxyError};
use crate::state::RouterState;
use crate::table::{AddrSet, Dyno, RoutingTable};

/// Most idle connections kept per dyno per worker: more than the requests one worker has at a
/// dyno at once in any load the router is measured with, so that a burst finds the connections
/// the one before it opened. An HTTP/2 client multiplexes: `benches/router.py`'s h2load (50
/// connections of 10 streams) has up to 500 requests at the dyno at once, and with 256 here
/// the pool closed the surplus after each burst and opened it again at the next, 0.14 new dyno
/// connections a request, whose `connect`, `close` and `socket` calls were 13% of the router's
/// CPU (benches/RESULTS.md, router run 14). Idle connections past [`IDLE_TRUST`] are closed as
/// others come back, so a burst's surplus does not stay open.
const MAX_IDLE_PER_DYNO: usize = 1024;

/// How long an idle connection is trusted. Shorter than the keep-alive timeout of common app
/// servers (Node's is 5 s), so the router never sends a request on a connection the app is
/// closing at that moment, which could neither succeed nor be safely retried.
const IDLE_TRUST: Duration = Duration::from_secs(4);

/// An idle connection and since when it has been idle.
struct Idle {
    conn: DynoConnection,
    since: Instant,
}

/// Maps keyed by the dyno's address use foldhash rather than SipHash, as the routing table's do.
type ByAddr<V> = HashMap<SocketAddr, V, foldhash::fast::RandomState>;

/// One worker's pool.
#[derive(Default)]
struct Pool {
    /// Idle connections by dyno address, the most recently returned last.
    idle: ByAddr<VecDeque<Idle>>,
    /// The version of the routing table the pool was last pruned for.
    table_version: u64,
    /// The addresses of that table's dynos; `None` before the first pruning.
    live: Option<Arc<AddrSet>>,
}

impl Pool {
    /// Drops the idle connections to dynos `table` does not have, and remembers its dynos. Once
    /// per table per worker, so kept out of the checkout's hot path.
    #[cold]
    #[inline(never)]
    fn prune(&mut self, table: &RoutingTable) {
        let live = table.dyno_addrs();
        self.idle.retain(|addr, _| live.contains(addr));
        self.table_version = table.version;
        self.live = Some(live.clone());
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An idle connection to `addr` still trusted at `now`, for a request routed by the table of
/// `table_version`; the pool is pruned first when that table is newer than the pool's.
fn pop_idle(addr: SocketAddr, now: Instant, table_version: u64, shared: &RouterState) -> Option<DynoConnection> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if table_version > pool.table_version {
            pool.prune(&shared.table.load());
        }
        let list = pool.idle.get_mut(&addr)?;
        while let Some(c) = list.pop_back() {
            if now.saturating_duration_since(c.since) >= IDLE_TRUST {
                // The most recently returned is too old: so are all the others.
                list.clear();
                return None;
            }
            if c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    })
}

/// Returns a connection whose response was read to the end, at `now`, with nothing left over,
/// and closes the dyno's idle connections not trusted any more at `now`. One checked out under
/// an older table than the pool's is closed instead when its dyno is gone.
pub(crate) fn checkin(mut conn: DynoConnection, now: Instant) {
    if !conn.buf.is_empty() {
        return;
    }
    conn.reused = true;
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if conn.table_version < pool.table_version && pool.live.as_ref().is_some_and(|live| !live.contains(&conn.addr))
        {
            return;
        }
        let list = pool.idle.entry(conn.addr).or_default();
        while list.front().is_some_and(|c| now.saturating_duration_since(c.since) >= IDLE_TRUST) {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_DYNO {
            list.push_back(Idle { conn, since: now });
        }
    });
}

/// A ready connection to the dyno: an idle one when there is one, else a new one. `now` is
/// the caller's recent reading of the clock, and `table_version` the version of the routing
/// table that routed the request. H19 when connecting timed out, H21 when it was refused or the
/// dyno's host name does not resolve.
pub(crate) async fn checkout(
    dyno: &Dyno,
    connect_timeout: Duration,
    shared: &RouterState,
    table_version: u64,
    now: Instant,
) -> Result<DynoConnection, ProxyError> {
    use std::sync::atomic::Ordering::Relaxed;
    let addr = match dyno.fresh_addr(now) {
        Some(a) => a,
        None => out_of_line(resolve(dyno)).await?,
    };
    let stats = &shared.pool_stats;
    if let Some(mut conn) = pop_idle(addr, now, table_version, shared) {
        stats.reused.fetch_add(1, Relaxed);
        conn.table_version = table_version;
        return Ok(conn);
    }
    let mut conn = out_of_line(connect(addr, connect_timeout)).await?;
    stats.opened.fetch_add(1, Relaxed);
    conn.table_version = table_version;
    Ok(conn)
}

/// Opens a new connection to a dyno at `addr`: H19 when connecting timed out, H21 when it was
/// refused.
async fn connect(addr: SocketAddr, connect_timeout: Duration) -> Result<DynoConnection, ProxyError> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ProxyError::bare(Code::H19)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(ProxyError::new(Code::H19, e));
        }
        Ok(Err(e)) => return Err(ProxyError::new(Code::H21, e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(DynoConnection::new(stream, addr))
}

/// `future` boxed behind `dyn`, so that its code stays out of the caller's: a checkout nearly
/// always finds an idle connection and a fresh address, and the code of a connect or a name
/// look-up (a few KiB, with their timers) would otherwise sit inside every request's, whose
/// instructions each request fetches (benches/RESULTS.md, router run 20). One allocation per
/// new connection or look-up.
#[cold]
#[inline(never)]
fn out_of_line<'a, T>(future: impl Future<Output = T> + Send + 'a) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}

/// Resolves a dyno's host name, which the table built (or last resolved) too long ago or could
/// not resolve then, and remembers the answer for the next [`crate::table::RESOLVED_FOR`].
async fn resolve(dyno: &Dyno) -> Result<SocketAddr, ProxyError> {
    let mut addrs =
        tokio::net::lookup_host((dyno.host.as_str(), dyno.port)).await.map_err(|e| ProxyError::new(Code::H21, e))?;
    let addr =
        addrs.next().ok_or_else(|| ProxyError::new(Code::H21, format!("{} resolves to no address", dyno.host)))?;
    dyno.resolved(addr, std::time::Instant::now());
    Ok(addr)
}
