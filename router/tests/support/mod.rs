//! What the router's own integration tests share: a router on loopback ports, fed snapshots
//! through a channel the test holds, with a local certificate and an embedded log bus.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use wharf_bus::{Bus, BusConfig};
use wharf_config::RouterConfig;
use wharf_domain::Snapshot;
use wharf_router::{Listeners, Router, tls};

/// A running router with `workers` worker threads on free loopback ports (no HTTP redirect),
/// following `snapshots`. The bus is returned so that it lives as long as the router.
pub(crate) async fn start_router(
    dir: &Path,
    workers: usize,
    snapshots: watch::Receiver<Arc<Snapshot>>,
) -> (Router, Bus) {
    let config = RouterConfig {
        http_listen: "127.0.0.1:0".parse().unwrap(),
        https_listen: "127.0.0.1:0".parse().unwrap(),
        internal_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        http_redirect: false,
        workers,
        ..RouterConfig::default()
    };
    let paths = tls::ensure_local_cert(dir, "localhost").unwrap();
    let key = tls::certified_key(&std::fs::read(&paths.cert).unwrap(), &std::fs::read(&paths.key).unwrap()).unwrap();
    let certs = Arc::new(tls::SniResolver::new(tls::CertSet::with_default(key)));
    let bus = Bus::connect(BusConfig::Embedded { capacity: 1 << 16 }).await.unwrap();
    let router =
        Router::start(&config, Listeners::bind(&config).unwrap(), certs, snapshots, bus.publisher.clone()).unwrap();
    (router, bus)
}
