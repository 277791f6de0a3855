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
    /// Every app whose current release runs an image slug: what an external runtime pulls and
    /// runs. Absent in snapshots from before image slugs were published.
    #[serde(default)]
    pub images: Vec<ImageSpec>,
}

/// An app whose current release runs an image (a slug with `image`, Heroku's and Akkeris'
/// container deploys): the image to pull, pinned by digest, and each process type's command and
/// quantity. An external runtime follows these; Wharf's own supervisor never runs an image.
/// The app's config vars are not here (they are secrets, and no other role's part holds them):
/// the runtime reads them from the API with a token allowed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// The app's id in the control API.
    pub app_id: Uuid,
    /// `app-space`.
    pub app: AppKey,
    /// The release's id, and its version (`vN`).
    pub release: Uuid,
    /// The release's version.
    pub version: u32,
    /// `registry/name@sha256:<64 hex>`.
    pub image: String,
    /// The process types with a command, by name.
    pub processes: Vec<ImageProcess>,
}

/// One process type of an [`ImageSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProcess {
    /// `web`, `worker`, ...
    #[serde(rename = "type")]
    pub dyno_type: String,
    /// The command the container runs.
    pub command: String,
    /// How many to run (the formation's quantity).
    pub quantity: u32,
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
    /// CAs this drain trusts beside the system's trust store and the operator's, as the API took them.
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
    /// An external runtime (issue 21's "apps run by an external runtime"): reads the images
    /// apps' current releases run ([`ImageSpec`]) and nothing else; neither the router nor the
    /// logshuttle needs them, so neither reads them.
    Runtime,
}

impl DataPlaneRole {
    /// Every role.
    pub const ALL: [DataPlaneRole; 3] = [DataPlaneRole::Router, DataPlaneRole::Logshuttle, DataPlaneRole::Runtime];

    /// `router`, `logshuttle` or `runtime`, as logs, messages and token files name the role.
    pub fn as_str(self) -> &'static str {
        match self {
            DataPlaneRole::Router => "router",
            DataPlaneRole::Logshuttle => "logshuttle",
            DataPlaneRole::Runtime => "runtime",
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
        let Snapshot { version, apps, drains, sites, certs, canaries, images } = self;
        match role {
            DataPlaneRole::Router => Snapshot {
                version: *version,
                apps: apps.clone(),
                drains: Vec::new(),
                sites: sites.clone(),
                certs: certs.clone(),
                canaries: canaries.clone(),
                images: Vec::new(),
            },
            DataPlaneRole::Logshuttle => Snapshot {
                version: *version,
                apps: Vec::new(),
                drains: drains.clone(),
                sites: Vec::new(),
                certs: Vec::new(),
                canaries: Vec::new(),
                images: Vec::new(),
            },
            DataPlaneRole::Runtime => Snapshot {
                version: *version,
                apps: Vec::new(),
                drains: Vec::new(),
                sites: Vec::new(),
                certs: Vec::new(),
                canaries: Vec::new(),
                images: images.clone(),
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
        let image = ImageSpec {
            app_id: Uuid::nil(),
            app: "one-default".parse().unwrap(),
            release: Uuid::nil(),
            version: 2,
            image: format!("registry.example.com/one@sha256:{}", "0".repeat(64)),
            processes: vec![ImageProcess { dyno_type: "web".into(), command: "serve".into(), quantity: 1 }],
        };
        let whole = Snapshot {
            version: 7,
            apps: vec![app("one-default")],
            drains: vec![drain.clone()],
            sites: vec![site.clone()],
            certs: vec![],
            canaries: vec![],
            images: vec![image.clone()],
        };
        let router = whole.part_for(DataPlaneRole::Router);
        assert_eq!(router, Snapshot { drains: vec![], images: vec![], ..whole.clone() });
        let logshuttle = whole.part_for(DataPlaneRole::Logshuttle);
        assert_eq!(logshuttle, Snapshot { version: 7, drains: vec![drain], ..Snapshot::default() });
        let runtime = whole.part_for(DataPlaneRole::Runtime);
        assert_eq!(runtime, Snapshot { version: 7, images: vec![image], ..Snapshot::default() });
        for role in DataPlaneRole::ALL {
            let part = whole.part_for(role);
            assert_eq!(part.part_for(role), part, "{role}: a part is its own part");
        }
    }
}
