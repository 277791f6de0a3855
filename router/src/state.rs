//! The state every worker shares: the routing table, the settings, the counters, the TLS
//! acceptor and where log lines and canary verdicts go.

use std::sync::Arc;

use arc_swap::ArcSwap;
use wharf_bus::Publisher;
use wharf_domain::CanaryVerdict;

use crate::metrics::{Metrics, PoolStats};
use crate::settings::Settings;
use crate::table::RoutingTable;

/// State every worker shares, behind one `Arc`.
pub(crate) struct RouterState {
    /// The routing table being served; a new snapshot swaps in a new one whole.
    pub(crate) table: ArcSwap<RoutingTable>,
    /// Where access lines and canary lines go.
    pub(crate) publisher: Publisher,
    /// The settings every request uses.
    pub(crate) settings: Settings,
    /// The router's counters.
    pub(crate) metrics: Metrics,
    /// Each app's requests per second for the last hour, for the control API.
    pub(crate) series: Arc<crate::series::Series>,
    /// The dyno connection pools' counters (the pools themselves are per worker).
    pub(crate) pool_stats: PoolStats,
    /// The TLS handshake for the HTTPS listeners.
    pub(crate) tls: tokio_rustls::TlsAcceptor,
    /// Where canary aborts go, for the control API to record.
    pub(crate) verdicts: tokio::sync::mpsc::UnboundedSender<CanaryVerdict>,
    /// Metrics of other parts of the process (the logshuttle's drains), rendered after the
    /// router's own on the admin listener.
    pub(crate) more_metrics: std::sync::OnceLock<MoreMetrics>,
}

/// Renders more Prometheus text onto the admin listener's `/metrics`.
pub type MoreMetrics = Box<dyn Fn(&mut String) + Send + Sync>;
