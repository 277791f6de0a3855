//! The router: terminates TLS, routes each request by host and path to one of an app's web
//! dynos, round robin, and writes an access log line into the app's log stream.
//!
//! It runs on tokio, one single-threaded event loop per worker thread, with HTTP/1.1 on both
//! sides written here (the protocol in `http1/`, the server loop in `server/http1.rs`, the
//! exchange with a dyno in `dyno_client.rs`) and the `h2` crate serving HTTP/2 (ARCHITECTURE.md records
//! the measurements behind those choices). The routing table is an
//! immutable value behind an `ArcSwap`: a snapshot from the control API compiles into a new
//! table that replaces the old one in one pointer swap, so no request ever sees half a reload.

#![deny(unsafe_code)]

mod access_log;
mod admin;
mod batch;
pub mod canary;
mod client;
mod date;
mod deadline;
mod dyno_client;
pub mod error;
mod fields;
mod forwarding;
mod http1;
mod judged;
pub mod metrics;
mod path;
mod pool;
mod proxy;
mod response_body;
mod series;
mod server;
mod settings;
mod sockopt;
mod state;
pub mod table;
pub mod tls;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use wharf_bus::Publisher;
use wharf_config::RouterConfig;
use wharf_domain::{CanaryEvidence, CanaryVerdict, Snapshot};

pub use client::Listener;
pub use error::{BodyError, Code, ProxyError};
pub use metrics::{Metrics, PoolStats};
pub use response_body::ProxyBody;
pub use state::MoreMetrics;
pub use table::RoutingTable;

use settings::Settings;
use state::RouterState;

/// Entry points for `cargo fuzz` (fuzz/), not for use elsewhere.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http1::request_head::check_request;
    pub use crate::http1::response_head::check_response;
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The router's listening sockets, bound before it starts so that their addresses are known.
#[derive(Debug)]
pub struct Listeners {
    http: std::net::TcpListener,
    https: std::net::TcpListener,
    internal: std::net::TcpListener,
    admin: std::net::TcpListener,
    addrs: Addrs,
}

/// Where the router's listeners are bound.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// Plain HTTP.
    pub http: SocketAddr,
    /// Public HTTPS.
    pub https: SocketAddr,
    /// Internal HTTPS.
    pub internal: SocketAddr,
    /// Metrics and health.
    pub admin: SocketAddr,
}

impl Listeners {
    /// Binds the plain and TLS listeners of the configuration.
    pub fn bind(config: &RouterConfig) -> Result<Listeners, StartError> {
        let bind = |addr| {
            let l = server::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
            let bound = l.local_addr().map_err(|source| StartError::Bind { addr, source })?;
            Ok::<_, StartError>((l, bound))
        };
        let (http, http_addr) = bind(config.http_listen)?;
        let (https, https_addr) = bind(config.https_listen)?;
        let (internal, internal_addr) = bind(config.internal_listen)?;
        let (admin, admin_addr) = bind(config.admin_listen)?;
        let addrs = Addrs { http: http_addr, https: https_addr, internal: internal_addr, admin: admin_addr };
        Ok(Listeners { http, https, internal, admin, addrs })
    }

    /// Where the listeners are bound.
    pub fn addrs(&self) -> Addrs {
        self.addrs
    }
}

/// A running router.
pub struct Router {
    shared: Arc<RouterState>,
    addrs: Addrs,
    workers: Vec<std::thread::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    follower: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
    verdicts: Option<tokio::sync::mpsc::UnboundedReceiver<CanaryVerdict>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("addrs", &self.addrs).finish_non_exhaustive()
    }
}

impl Router {
    /// Starts the workers on the bound listeners and follows `snapshots`. Must be called from
    /// within a tokio runtime, which runs the snapshot follower.
    pub fn start(
        config: &RouterConfig,
        listeners: Listeners,
        certs: Arc<tls::SniResolver>,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        publisher: Publisher,
    ) -> Result<Router, StartError> {
        let Listeners { http, https, internal, admin, addrs } = listeners;
        let http_addr = addrs.http;
        let stack_domain = config.stack_domain.clone();
        let first_snapshot = snapshots.borrow_and_update().clone();
        // Before any worker runs, so resolving a dyno registered by host name blocks no request.
        let first = RoutingTable::compile(&first_snapshot, &stack_domain, None);
        let (verdicts, verdicts_rx) = tokio::sync::mpsc::unbounded_channel();
        certs.serve_uploaded(&first_snapshot.certs);
        let shared = Arc::new(RouterState {
            table: ArcSwap::from_pointee(first),
            publisher,
            settings: Settings {
                connect_timeout: config.connect_timeout.0,
                first_byte_timeout: config.first_byte_timeout.0,
                header_timeout: config.header_timeout.0,
                idle_timeout: config.idle_timeout.0,
                max_request_line: config.max_request_line.0 as usize,
                max_header_bytes: config.max_header_bytes.0 as usize,
                max_headers: config.max_headers,
                hsts: (!config.hsts_max_age.0.is_zero()).then(|| {
                    http::HeaderValue::try_from(format!("max-age={}", config.hsts_max_age.0.as_secs()))
                        .expect("a number is a header value")
                }),
                connect_attempts: config.connect_attempts,
                quarantine: config.quarantine.0,
                shutdown_grace: config.shutdown_grace.0,
                https_port: config.https_public_port.unwrap_or(addrs.https.port()),
                http_redirect: config.http_redirect,
                drop_all_underscore_fields: config.underscore_fields == wharf_config::UnderscoreFields::DropAll,
                upgrades: config.upgrades.iter().map(|u| u.to_ascii_lowercase().into_boxed_str()).collect(),
            },
            metrics: Metrics::default(),
            series: Arc::default(),
            pool_stats: PoolStats::default(),
            tls: tokio_rustls::TlsAcceptor::from(tls::server_config(certs.clone(), config.tls13_tickets)?),
            verdicts,
            more_metrics: std::sync::OnceLock::new(),
        });
        let served = Arc::downgrade(&shared);
        certs.set_served(Box::new(move |name| served.upgrade().is_some_and(|s| s.table.load().host(name).is_some())));
        let (shutdown, _) = watch::channel(false);
        let n = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let clone = |l: &std::net::TcpListener| {
                l.try_clone().map_err(|source| StartError::Bind { addr: http_addr, source })
            };
            let listeners = vec![
                (clone(&http)?, Listener::Http),
                (clone(&https)?, Listener::Https),
                (clone(&internal)?, Listener::Internal),
            ];
            let (shared, rx) = (shared.clone(), shutdown.subscribe());
            let handle = std::thread::Builder::new()
                .name(format!("router-{i}"))
                .spawn(move || server::run_worker(listeners, shared, rx))
                .map_err(|source| StartError::Bind { addr: http_addr, source })?;
            workers.push(handle);
        }
        let follower = tokio::spawn({
            let shared = shared.clone();
            // Only the ids: holding the old snapshot would keep all of it alive.
            let mut served_certs: Vec<_> = first_snapshot.certs.iter().map(|c| c.id).collect();
            async move {
                while snapshots.changed().await.is_ok() {
                    let snapshot = snapshots.borrow_and_update().clone();
                    if snapshot.version <= shared.table.load().version {
                        continue;
                    }
                    // An uploaded certificate never changes under its id, so ids tell the change.
                    if snapshot.certs.iter().map(|c| c.id).ne(served_certs.iter().copied()) {
                        certs.serve_uploaded(&snapshot.certs);
                        tracing::debug!(
                            version = snapshot.version,
                            certs = snapshot.certs.len(),
                            "certificates swapped"
                        );
                        served_certs = snapshot.certs.iter().map(|c| c.id).collect();
                    }
                    // Off the event loop: building a large table takes a while, and a dyno
                    // registered by host name is resolved now, with the system's blocking resolver.
                    let (previous, domain) = (shared.table.load_full(), stack_domain.clone());
                    let compile = move || RoutingTable::compile(&snapshot, &domain, Some(&previous));
                    let table = match tokio::task::spawn_blocking(compile).await {
                        Ok(table) => table,
                        Err(e) => {
                            tracing::error!(error = %e, "routing table not built; serving the previous one");
                            continue;
                        }
                    };
                    tracing::debug!(version = table.version, hosts = table.len(), "routing table swapped");
                    shared.table.store(Arc::new(table));
                }
            }
        });
        let admin = tokio::spawn(admin::serve(admin, shared.clone()));
        Ok(Router { shared, addrs, workers, shutdown, follower, admin, verdicts: Some(verdicts_rx) })
    }

    /// Where the listeners are bound.
    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    /// The router's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The canary aborts this router decides, for the control API to record so that every
    /// router follows. Only the first call gets them.
    pub fn take_verdicts(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<CanaryVerdict>> {
        self.verdicts.take()
    }

    /// Adds metrics of another part of the process to the admin listener's `/metrics`; only the
    /// first call takes effect.
    pub fn add_metrics(&self, render: MoreMetrics) {
        let _ = self.shared.more_metrics.set(render);
    }

    /// A handle that reads canaries' live counts, for the control API's `GET`.
    pub fn canary_reader(&self) -> impl Fn(uuid::Uuid) -> Option<(CanaryEvidence, bool)> + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move |id| shared.upgrade()?.table.load().canary(id).map(|c| c.evidence_and_verdict())
    }

    /// A handle that reads how many requests this router has at the dynos listening at an
    /// address (in flight: picked, and their response not yet ended), for the supervisor's wait
    /// before it stops a dyno. 0 once the router is gone.
    pub fn in_flight_reader(&self) -> impl Fn(std::net::SocketAddr) -> usize + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move |addr| shared.upgrade().map_or(0, |s| s.table.load().in_flight(addr))
    }

    /// A handle that reads the snapshot version this router routes by and its requests at the
    /// dynos that left its table ([`RoutingTable::leaving_in_flight`]), for a router in a
    /// process of its own to report to the control API. Version 0 and nothing once the router
    /// is gone.
    pub fn leaving_reader(&self) -> impl Fn() -> (u64, Vec<(std::net::SocketAddr, usize)>) + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move || {
            shared.upgrade().map_or((0, Vec::new()), |s| {
                let table = s.table.load();
                (table.version, table.leaving_in_flight())
            })
        }
    }

    /// A handle that reads the snapshot version this router serves (its routing table's), for
    /// the supervisor's wait until a failed roll's dynos are out of the table. `u64::MAX` once
    /// the router is gone: nothing is routed then.
    pub fn version_reader(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move || shared.upgrade().map_or(u64::MAX, |s| s.table.load().version)
    }

    /// A handle that reads an app's requests per second (by app key, from `from` up to `to`,
    /// seconds since the epoch), for the control API's `GET /apps/{app}/metrics`. Seconds are
    /// kept for the last hour; a second is there about a second after it ended.
    pub fn request_series(
        &self,
    ) -> impl Fn(&str, i64, i64) -> Vec<wharf_domain::metrics::RequestSecond> + Send + Sync + 'static {
        let series = self.shared.series.clone();
        move |app, from, to| series.app(app, from, to)
    }

    /// The snapshot version being served.
    pub fn version(&self) -> u64 {
        self.shared.table.load().version
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and returns.
    pub async fn shutdown(self) {
        self.follower.abort();
        self.admin.abort();
        let _ = self.shutdown.send(true);
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}
