//! An app's web dynos as the routing table holds them: each [`Dyno`] with its address and
//! health (quarantine), and [`WebDynos`], an app's set of them, balanced round robin, with the
//! canary that may take a share of its requests.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_domain::Hostname;

use crate::canary::{Arm, Canary};
use crate::metrics::AppStats;

/// One web dyno: where it listens, and its health.
#[derive(Debug)]
pub struct Dyno {
    /// The dyno's name (`web.1`), for logs.
    pub name: Box<str>,
    /// Where it listens: an IP literal or a host name.
    pub host: Hostname,
    /// Its port.
    pub port: u16,
    /// The address, when the host is an IP literal.
    pub addr: Option<SocketAddr>,
    /// For a host name, its last resolution: resolved when the table is built, off the request
    /// path, and again on a checkout once it is [`RESOLVED_FOR`] old.
    resolved: Option<Mutex<Resolved>>,
    /// Milliseconds since the router's epoch until which the dyno is skipped.
    quarantined_until: AtomicU64,
    /// Whether this router has connected to the dyno since it started. A registration it
    /// has never reached may be stale (left in the store by a Wharf that was killed, its
    /// process gone), so a failed connect to it says nothing about the code it was to run.
    reached: AtomicBool,
    /// Requests at the dyno now (see [`Busy`]), for the supervisor's wait before it stops a dyno.
    in_flight: InFlight,
}

/// A dyno's count of requests at it, alone on its cache line: every request writes it twice,
/// and the other fields, read by every request, should not move between cores with it.
#[derive(Debug, Default)]
#[repr(align(64))]
struct InFlight(AtomicUsize);

/// A request at a dyno: counted among the dyno's requests in flight from when the dyno is
/// picked until this is dropped, when the request's response has ended (or failed, or its
/// tunnel closed). The supervisor stops a dyno that left the routing table only once none is at
/// it, or its `request_grace` passed (`RoutingTable::in_flight`), so that a roll, a scale down or
/// a restart no longer cuts the requests a dyno is serving (FE27 #2).
#[derive(Debug)]
pub struct Busy(Arc<Dyno>);

impl Busy {
    /// Counts a request at `dyno` until the value is dropped.
    pub fn new(dyno: Arc<Dyno>) -> Busy {
        dyno.in_flight.0.fetch_add(1, Ordering::Relaxed);
        Busy(dyno)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.0.fetch_sub(1, Ordering::Release);
    }
}

impl std::ops::Deref for Busy {
    type Target = Dyno;
    fn deref(&self) -> &Dyno {
        &self.0
    }
}

/// How long a host name's resolution is used before it is resolved again. The dyno's address
/// may move (a dyno behind a name is restarted elsewhere); the system resolver tells no TTL, so
/// this is a fixed, short one.
pub const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// A host name's address, when it resolved, and when it was resolved.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    addr: Option<SocketAddr>,
    at: Instant,
}

impl Dyno {
    /// A dyno at `host` and `port`; a host name is resolved now (blocking), as a table is built
    /// off the request path.
    pub(super) fn new(name: &str, host: &Hostname, port: u16) -> Self {
        let addr = host.ip().map(|ip| SocketAddr::new(ip, port));
        let resolved = addr.is_none().then(|| {
            // A name that does not resolve now is resolved again at its first checkout.
            let addr = (host.as_str(), port).to_socket_addrs().ok().and_then(|mut a| a.next());
            Mutex::new(Resolved { addr, at: Instant::now() })
        });
        Dyno {
            name: name.into(),
            host: host.clone(),
            port,
            addr,
            resolved,
            quarantined_until: AtomicU64::new(0),
            reached: AtomicBool::new(false),
            in_flight: InFlight::default(),
        }
    }

    /// How many requests are at the dyno now (see [`Busy`]).
    pub fn in_flight(&self) -> usize {
        self.in_flight.0.load(Ordering::Acquire)
    }

    /// The address to connect to at `now`: the IP literal, or the host name's resolution while
    /// it is fresh; `None` when a name must be resolved (again).
    pub fn fresh_addr(&self, now: Instant) -> Option<SocketAddr> {
        match (&self.addr, &self.resolved) {
            (Some(addr), _) => Some(*addr),
            (None, Some(resolved)) => {
                let r = *resolved.lock().unwrap_or_else(|e| e.into_inner());
                r.addr.filter(|_| now.saturating_duration_since(r.at) < RESOLVED_FOR)
            }
            (None, None) => None,
        }
    }

    /// The address a connection to the dyno goes to, as last known: the IP literal or the host
    /// name's last resolution, fresh or not.
    pub fn known_addr(&self) -> Option<SocketAddr> {
        self.addr.or_else(|| self.resolved.as_ref()?.lock().unwrap_or_else(|e| e.into_inner()).addr)
    }

    /// Records a host name's resolution to `addr` at `at`.
    pub fn resolved(&self, addr: SocketAddr, at: Instant) {
        if let Some(resolved) = &self.resolved {
            *resolved.lock().unwrap_or_else(|e| e.into_inner()) = Resolved { addr: Some(addr), at };
        }
    }

    /// Skips this dyno until `until` (milliseconds since the router's epoch).
    pub fn quarantine(&self, until: u64) {
        self.quarantined_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Records that a connection to the dyno was made (new or from the pool).
    pub fn mark_reached(&self) {
        // A load first, so that the hot path does not write the shared line on every request.
        if !self.reached.load(Ordering::Relaxed) {
            self.reached.store(true, Ordering::Relaxed);
        }
    }

    /// Whether this router has ever connected to the dyno (see [`Dyno::mark_reached`]).
    pub fn was_reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// Whether the dyno is being skipped at `now`.
    pub fn is_quarantined(&self, now: u64) -> bool {
        self.quarantined_until.load(Ordering::Relaxed) > now
    }
}

/// An app's web dynos, balanced round robin.
#[derive(Debug)]
pub struct WebDynos {
    /// The app's key, `app-space`.
    pub app: Arc<str>,
    /// Its web dynos, in a stable order.
    pub dynos: Box<[Arc<Dyno>]>,
    /// Its request counts, carried from table to table.
    pub stats: Arc<AppStats>,
    /// Where a share of its requests goes instead, while it has a canary.
    pub canary: Option<CanaryRoute>,
    /// While the app is in maintenance mode, the page every request of it gets (with 503 and
    /// `code=H80`) instead of reaching a dyno.
    pub maintenance: Option<bytes::Bytes>,
    next: AtomicUsize,
}

/// An app's canary: the other app that takes a share of its requests.
#[derive(Debug)]
pub struct CanaryRoute {
    /// The canary app's dynos.
    pub web_dynos: Arc<WebDynos>,
    /// The running canary's split and judge; `None` once promoted, when the canary takes every
    /// request and nothing is judged.
    pub judged: Option<Arc<Canary>>,
}

/// The app a request goes to, and the canary that counts its outcome.
#[derive(Debug)]
pub struct Chosen {
    /// The app whose dynos serve the request.
    pub web_dynos: Arc<WebDynos>,
    /// The canary judging this request, and the side it went to.
    pub judged: Option<(Arc<Canary>, Arm)>,
    /// For a request a running canary's split sent to the canary, the app's own dynos: where it
    /// is sent again when the canary is aborted while it waits (see `judged::timed`).
    pub baseline: Option<Arc<WebDynos>>,
}

impl WebDynos {
    /// An app's dynos, the first request going to the first.
    pub(super) fn new(
        app: Arc<str>,
        dynos: Box<[Arc<Dyno>]>,
        stats: Arc<AppStats>,
        canary: Option<CanaryRoute>,
        maintenance: Option<bytes::Bytes>,
    ) -> Self {
        WebDynos { app, dynos, stats, canary, maintenance, next: AtomicUsize::new(0) }
    }

    /// The app that serves the next request: this one, or its canary for the canary's share.
    pub fn choose(self: &Arc<Self>) -> Chosen {
        match &self.canary {
            None => Chosen { web_dynos: self.clone(), judged: None, baseline: None },
            Some(CanaryRoute { web_dynos, judged: None }) => {
                Chosen { web_dynos: web_dynos.clone(), judged: None, baseline: None }
            }
            Some(CanaryRoute { web_dynos, judged: Some(canary) }) => {
                let arm = canary.choose();
                let (chosen, baseline) =
                    if arm == Arm::Canary { (web_dynos.clone(), Some(self.clone())) } else { (self.clone(), None) };
                Chosen { web_dynos: chosen, judged: Some((canary.clone(), arm)), baseline }
            }
        }
    }

    /// The next dyno in turn that is not quarantined; when all are, the next in turn anyway,
    /// since a dyno that recovered should get traffic without waiting out its quarantine.
    pub fn pick(&self, now: u64) -> Option<&Arc<Dyno>> {
        let n = self.dynos.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let d = &self.dynos[(start + i) % n];
            if !d.is_quarantined(now) {
                if i > 0 {
                    // Keep the rotation moving past the skipped dynos.
                    self.next.fetch_add(i, Ordering::Relaxed);
                }
                return Some(d);
            }
        }
        Some(&self.dynos[start % n])
    }
}

/// Milliseconds from the router's start to `at`, for quarantine deadlines; the caller passes
/// a time it has read anyway.
pub fn millis_at(at: Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    at.saturating_duration_since(*EPOCH.get_or_init(Instant::now)).as_millis() as u64
}
