//! The ports through which the control plane reads metrics it does not keep itself, for `GET
//! /apps/{app}/metrics`: [`DynoMetrics`], the local runtime's per-second figures of each dyno
//! (CPU, memory, disk I/O, sampled from `/proc`), and [`RequestMetrics`], the in-process
//! router's per-second request counts of each app. Like [`LocalRuntime`](super::LocalRuntime),
//! each is implemented by the part that has the figures and plugged in by `wharf serve`
//! ([`ControlPlane::set_dyno_metrics`], [`ControlPlane::set_request_metrics`]), so the control
//! API depends on neither the supervisor nor the router. A control API without them (`wharf
//! control-api`, remote routers) has no figures to give: dynos show none, and requests are
//! reported as unavailable.

use std::sync::Arc;

use uuid::Uuid;
use wharf_domain::metrics::{DynoSeries, RequestSecond};

use super::ControlPlane;

/// Per-second figures of the dynos a local runtime runs (the supervisor).
pub trait DynoMetrics: Send + Sync {
    /// The app's dynos that were sampled from `from` up to `to` (exclusive; seconds since the
    /// epoch), each with its seconds in that range, oldest first. Dynos stopped within the last
    /// hour are among them while their seconds are kept.
    fn dynos(&self, app_id: Uuid, from: i64, to: i64) -> Vec<DynoSeries>;
}

/// Per-second request counts of each app, from the router of this process.
pub trait RequestMetrics: Send + Sync {
    /// The app's seconds (by its key, `name-space`) from `from` up to `to` (exclusive),
    /// oldest first; a second without a request is not there.
    fn app(&self, app: &str, from: i64, to: i64) -> Vec<RequestSecond>;
}

/// A function is a [`RequestMetrics`]: what `wharf_router::Router::request_series` returns.
impl<F> RequestMetrics for F
where
    F: Fn(&str, i64, i64) -> Vec<RequestSecond> + Send + Sync,
{
    fn app(&self, app: &str, from: i64, to: i64) -> Vec<RequestSecond> {
        self(app, from, to)
    }
}

impl ControlPlane {
    /// Plugs in the local runtime's dyno figures; only the first call takes effect.
    pub fn set_dyno_metrics(&self, metrics: Arc<dyn DynoMetrics>) {
        let _ = self.dyno_metrics.set(metrics);
    }

    /// Plugs in the in-process router's request counts; only the first call takes effect.
    pub fn set_request_metrics(&self, metrics: Arc<dyn RequestMetrics>) {
        let _ = self.request_metrics.set(metrics);
    }

    /// The app's dynos' seconds from `from` up to `to`; none without a local runtime.
    pub fn dyno_seconds(&self, app_id: Uuid, from: i64, to: i64) -> Vec<DynoSeries> {
        self.dyno_metrics.get().map(|m| m.dynos(app_id, from, to)).unwrap_or_default()
    }

    /// The app's request seconds from `from` up to `to`, or `None` when no router runs in this
    /// process (a remote router keeps its own counts; see README's "Metrics").
    pub fn request_seconds(&self, app: &str, from: i64, to: i64) -> Option<Vec<RequestSecond>> {
        self.request_metrics.get().map(|m| m.app(app, from, to))
    }
}
