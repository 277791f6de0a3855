//! The router's Prometheus metrics: plain atomic counters, rendered on demand.
//!
//! Per-app counters live beside each app's dynos in the routing table (and move to the next
//! table on reload), so counting a request costs one atomic add and no lookup. This module
//! depends on nothing above it: the admin listener hands it the apps' counters to render.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::client::Listener;

/// One app's request counts by status class.
#[derive(Debug, Default)]
pub struct AppStats {
    by_class: [AtomicU64; 5],
}

impl AppStats {
    /// Counts a response with this status.
    pub fn record(&self, status: u16) {
        self.by_class[class_index(status)].fetch_add(1, Relaxed);
    }
}

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Counts of the dyno connection pools' outcomes.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Requests sent on a reused connection.
    pub reused: AtomicU64,
    /// New connections opened.
    pub opened: AtomicU64,
}

/// Upper bounds of the latency histogram's buckets, in milliseconds.
const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30_000];

/// Counters shared by every worker.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by status class: 1xx to 5xx.
    by_class: [AtomicU64; 5],
    /// Cumulative histogram counts of total request time.
    latency: [AtomicU64; BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_ms: AtomicU64,
    connect_errors: AtomicU64,
    quarantines: AtomicU64,
    /// Client connections handed to the router and ended, by listener; their difference is the
    /// number open (paired counters rather than a gauge, so that a scrape can also tell a rate).
    connections_opened: [AtomicU64; LISTENERS.len()],
    connections_closed: [AtomicU64; LISTENERS.len()],
}

/// The listeners' label values, in the order of the connection counters (`listener_index`).
const LISTENERS: [&str; 3] = ["http", "https", "internal"];

fn listener_index(listener: Listener) -> usize {
    match listener {
        Listener::Http => 0,
        Listener::Https => 1,
        Listener::Internal => 2,
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn record(&self, status: u16, total_ms: u64) {
        self.by_class[class_index(status)].fetch_add(1, Relaxed);
        if let Some(i) = BUCKETS_MS.iter().position(|b| total_ms <= *b) {
            self.latency[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ms.fetch_add(total_ms, Relaxed);
    }

    /// Counts a dyno that failed to accept a connection.
    pub fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Relaxed);
    }

    /// Counts a dyno put in quarantine.
    pub fn quarantine(&self) {
        self.quarantines.fetch_add(1, Relaxed);
    }

    /// Counts a client connection handed to the router by a listener.
    pub(crate) fn connection_opened(&self, listener: Listener) {
        self.connections_opened[listener_index(listener)].fetch_add(1, Relaxed);
    }

    /// Counts a client connection that ended, whichever way.
    pub(crate) fn connection_closed(&self, listener: Listener) {
        self.connections_closed[listener_index(listener)].fetch_add(1, Relaxed);
    }

    /// Requests so far with a status in the class (`2` for 2xx).
    pub fn requests(&self, class: u16) -> u64 {
        self.by_class[usize::from(class.clamp(1, 5)) - 1].load(Relaxed)
    }

    /// Appends the metrics in Prometheus' text format (Prometheus' "Exposition formats"):
    /// these counters, each app's (`apps`: the app's key and its counts), the pools' and the
    /// version of the snapshot being served.
    pub fn render<'a>(
        &self,
        out: &mut String,
        apps: impl Iterator<Item = (&'a str, &'a AppStats)>,
        pool: &PoolStats,
        snapshot_version: u64,
    ) {
        out.push_str("# HELP wharf_router_requests_total Requests answered, by status class.\n");
        out.push_str("# TYPE wharf_router_requests_total counter\n");
        for (i, c) in self.by_class.iter().enumerate() {
            let _ = writeln!(out, "wharf_router_requests_total{{class=\"{}xx\"}} {}", i + 1, c.load(Relaxed));
        }
        out.push_str("# HELP wharf_router_app_requests_total Requests routed to an app, by status class.\n");
        out.push_str("# TYPE wharf_router_app_requests_total counter\n");
        for (app, stats) in apps {
            for (i, c) in stats.by_class.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "wharf_router_app_requests_total{{app=\"{app}\",class=\"{}xx\"}} {n}", i + 1);
                }
            }
        }
        out.push_str("# HELP wharf_router_request_duration_seconds Time from request to the end of the response.\n");
        out.push_str("# TYPE wharf_router_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (b, c) in BUCKETS_MS.iter().zip(&self.latency) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(
                out,
                "wharf_router_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1000.0
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "wharf_router_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "wharf_router_request_duration_seconds_sum {}",
            self.latency_sum_ms.load(Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(out, "wharf_router_request_duration_seconds_count {count}");
        out.push_str("# HELP wharf_router_upstream_connect_errors_total Dyno connections refused or timed out.\n");
        out.push_str("# TYPE wharf_router_upstream_connect_errors_total counter\n");
        let _ = writeln!(out, "wharf_router_upstream_connect_errors_total {}", self.connect_errors.load(Relaxed));
        out.push_str("# HELP wharf_router_quarantines_total Dynos skipped for a while after failing to accept.\n");
        out.push_str("# TYPE wharf_router_quarantines_total counter\n");
        let _ = writeln!(out, "wharf_router_quarantines_total {}", self.quarantines.load(Relaxed));
        out.push_str(
            "# HELP wharf_router_upstream_connections_total Dyno connections used, new or reused from the pool.\n",
        );
        out.push_str("# TYPE wharf_router_upstream_connections_total counter\n");
        let _ = writeln!(out, "wharf_router_upstream_connections_total{{kind=\"new\"}} {}", pool.opened.load(Relaxed));
        let _ =
            writeln!(out, "wharf_router_upstream_connections_total{{kind=\"reused\"}} {}", pool.reused.load(Relaxed));
        for (name, help, counts) in [
            ("opened", "Client connections handed to the router, by listener.", &self.connections_opened),
            ("closed", "Client connections ended, by listener.", &self.connections_closed),
        ] {
            let _ = writeln!(out, "# HELP wharf_router_client_connections_{name}_total {help}");
            let _ = writeln!(out, "# TYPE wharf_router_client_connections_{name}_total counter");
            for (label, c) in LISTENERS.iter().zip(counts) {
                let n = c.load(Relaxed);
                let _ = writeln!(out, "wharf_router_client_connections_{name}_total{{listener=\"{label}\"}} {n}");
            }
        }
        out.push_str("# HELP wharf_router_snapshot_version Version of the routing snapshot being served.\n");
        out.push_str("# TYPE wharf_router_snapshot_version gauge\n");
        let _ = writeln!(out, "wharf_router_snapshot_version {snapshot_version}");
    }
}
