//! The data-plane snapshot: everything the router and the logshuttle need, at one version.
//!
//! The control API builds a new `Snapshot` after every change and publishes it; data planes
//! compile it into their own lookup structures and swap them in atomically. A snapshot is a
//! complete picture, never a delta, so a data plane that missed versions only needs the newest.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::canary::CanarySpec;
use crate::cert::Certificate;
use crate::drain::{DrainCa, DrainUrl};
use crate::names::{AppKey, DynoName, Hostname, RoutePath, SiteDomain};

/// The whole routing and draining state at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Grows with every change; a data plane ignores a snapshot older than the one it serves.
    pub version: u64,
    /// Every app, with its web dynos.
    pub apps: Vec<AppSpec>,
    /// Every drain of every app and site.
    pub drains: Vec<DrainSpec>,
    /// Every site, with its routes.
    #[serde(default)]
    pub sites: Vec<SiteSpec>,
    /// Every uploaded certificate.
    #[serde(default)]
    pub certs: Vec<CertSpec>,
    /// Every canary that is running, promoted or aborted.
    #[serde(default)]
    pub canaries: Vec<CanarySpec>,
}

/// A certificate the router serves for the domains it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSpec {
    /// The certificate's id in the control API.
    pub id: Uuid,
    /// The chain and key.
    pub certificate: Certificate,
}

/// A site: a domain whose path prefixes route to apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSpec {
    /// The site's id in the control API.
    pub id: Uuid,
    /// `www.example.com` or `*.example.com`.
    pub domain: SiteDomain,
    /// Served only on the internal listener, and only routing to internal apps.
    pub internal: bool,
    /// Its routes; at most one per source path.
    pub routes: Vec<RouteSpec>,
}

/// One of a site's path prefixes and the app it goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// The route's id in the control API.
    pub id: Uuid,
    /// The prefix matched on a segment boundary.
    pub source_path: RoutePath,
    /// What the prefix is replaced with upstream.
    pub target_path: RoutePath,
    /// The app.
    pub app: AppKey,
}

/// An app as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    /// The app's id in the control API.
    pub id: Uuid,
    /// `app-space`.
    pub key: AppKey,
    /// Whether the app's space is `internal`: it is then served only on the internal listener.
    pub internal: bool,
    /// The web dynos the router balances over, in a stable order.
    pub web_dynos: Vec<DynoSpec>,
    /// Heroku's maintenance mode: while `Some`, the router answers every request for the app
    /// with 503 and the page, logs `code=H80`, and contacts no dyno. `None` (absent in
    /// snapshots from before maintenance mode) when the app is serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenancePage>,
}

/// The page an app in maintenance mode answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenancePage {
    /// The app's own page: the HTML the control plane fetched from its `MAINTENANCE_PAGE_URL`
    /// config var (at most [`MaintenancePage::MAX_BYTES`]). `None`: the router's default page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

impl MaintenancePage {
    /// The largest page the control plane keeps, in bytes (256 KiB): the page travels in every
    /// snapshot while the app is in maintenance, and the router holds it in memory.
    pub const MAX_BYTES: usize = 256 * 1024;
}

/// One web dyno's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynoSpec {
    /// `web.<deployment>-<5 chars>`.
    pub name: DynoName,
    /// Where it listens.
    pub host: Hostname,
    /// Its port.
    pub port: u16,
}

/// A drain and what it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSpec {
    /// The drain's id in the control API; a drain keeps its buffer across snapshots by id.
    pub id: Uuid,
    /// Whose lines it receives.
    pub target: DrainTarget,
    /// Where they go.
    pub url: DrainUrl,
    /// Sent to HTTPS receivers as `Logplex-Drain-Token`.
    pub token: String,
    /// CAs this drain trusts beside the Mozilla roots and the operator's, as the API took them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<DrainCa>,
}

/// Whose lines a drain receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainTarget {
    /// Every line of the app.
    App(AppKey),
    /// The router's lines for requests on the site (by domain).
    Site(String),
}

impl Snapshot {
    /// The app with this key.
    pub fn app(&self, key: &AppKey) -> Option<&AppSpec> {
        self.apps.iter().find(|a| &a.key == key)
    }
}
