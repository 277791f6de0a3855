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

/// A data plane that follows the control API's feed, and so the part of a snapshot it may
/// read: least privilege, so that a router's token never yields drain credentials and a
/// logshuttle's never yields certificates' private keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataPlaneRole {
    /// Reads apps (with their web dynos), sites and routes, certificates with their keys, and
    /// canaries: everything `wharf_router`'s table and TLS resolver are built from.
    Router,
    /// Reads drains, with their URLs' credentials, tokens and CAs: all the logshuttle's drain
    /// table is built from. Log sessions are signed grants, not part of the snapshot.
    Logshuttle,
}

impl DataPlaneRole {
    /// Both roles.
    pub const ALL: [DataPlaneRole; 2] = [DataPlaneRole::Router, DataPlaneRole::Logshuttle];

    /// `router` or `logshuttle`, as logs, messages and token files name the role.
    pub fn as_str(self) -> &'static str {
        match self {
            DataPlaneRole::Router => "router",
            DataPlaneRole::Logshuttle => "logshuttle",
        }
    }
}

impl std::fmt::Display for DataPlaneRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Snapshot {
    /// The app with this key.
    pub fn app(&self, key: &AppKey) -> Option<&AppSpec> {
        self.apps.iter().find(|a| &a.key == key)
    }

    /// The part of this snapshot `role` reads, at the same version; every other list is empty.
    ///
    /// The snapshot is taken apart field by field with no `..`, so a field added to
    /// [`Snapshot`] does not compile here until someone decides which role reads it: a new
    /// secret cannot reach a data plane by default.
    pub fn part_for(&self, role: DataPlaneRole) -> Snapshot {
        let Snapshot { version, apps, drains, sites, certs, canaries } = self;
        match role {
            DataPlaneRole::Router => Snapshot {
                version: *version,
                apps: apps.clone(),
                drains: Vec::new(),
                sites: sites.clone(),
                certs: certs.clone(),
                canaries: canaries.clone(),
            },
            DataPlaneRole::Logshuttle => Snapshot {
                version: *version,
                apps: Vec::new(),
                drains: drains.clone(),
                sites: Vec::new(),
                certs: Vec::new(),
                canaries: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(key: &str) -> AppSpec {
        AppSpec { id: Uuid::nil(), key: key.parse().unwrap(), internal: false, web_dynos: vec![], maintenance: None }
    }

    /// Each role's part keeps its own lists whole and empties the other's; the integration
    /// test `tests/feed.rs` checks the same through a live control API with keys and passwords.
    #[test]
    fn each_role_reads_only_its_part() {
        let drain = DrainSpec {
            id: Uuid::nil(),
            target: DrainTarget::App("one-default".parse().unwrap()),
            url: DrainUrl::try_new("https://user:s3cret@logs.example.com/").unwrap(),
            token: "d.token".into(),
            ca: None,
        };
        let site =
            SiteSpec { id: Uuid::nil(), domain: "www.example.com".parse().unwrap(), internal: false, routes: vec![] };
        let whole = Snapshot {
            version: 7,
            apps: vec![app("one-default")],
            drains: vec![drain.clone()],
            sites: vec![site.clone()],
            certs: vec![],
            canaries: vec![],
        };
        let router = whole.part_for(DataPlaneRole::Router);
        assert_eq!(router, Snapshot { drains: vec![], ..whole.clone() });
        let logshuttle = whole.part_for(DataPlaneRole::Logshuttle);
        assert_eq!(logshuttle, Snapshot { version: 7, drains: vec![drain], ..Snapshot::default() });
        for role in DataPlaneRole::ALL {
            let part = whole.part_for(role);
            assert_eq!(part.part_for(role), part, "{role}: a part is its own part");
        }
    }
}
