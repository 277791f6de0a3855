//! The stored records (spaces, apps, dynos, drains, sites, routes, certificates, canaries,
//! formation entries, config vars, releases), the [`Object`] and [`Kind`] that name any of them, and the
//! [`Change`]s operations are made of. Their serde shapes are the store's format: renaming a
//! field or variant breaks existing databases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::{
    AppName, CanaryEvidence, CanaryPolicy, CanaryState, Certificate, DrainUrl, DynoName, DynoType, Hostname, RoutePath,
    SiteDomain, SpaceName,
};

use super::table::Record;

/// A space's compliance flags, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compliance {
    /// Served only on the router's internal listener.
    Internal,
    /// Production: given preference, production credentials only.
    Prod,
    /// Audited; sensitive config vars are redacted.
    Socs,
}

/// A space: a group of apps sharing a network and compliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: SpaceName,
    /// Its compliance flags, sorted.
    pub compliance: Vec<Compliance>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// An app, in one space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub id: Uuid,
    /// Its short name.
    pub name: AppName,
    /// Its space's id.
    pub space_id: Uuid,
    /// Heroku's maintenance mode: the router answers the app's requests with 503 and a
    /// maintenance page, contacting no dyno. Absent (false) in records from before it existed.
    #[serde(default)]
    pub maintenance: bool,
    /// The app's own maintenance page, as last fetched from its `MAINTENANCE_PAGE_URL` config
    /// var; absent when the app names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_page: Option<PageFetch>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// The outcome of fetching an app's `MAINTENANCE_PAGE_URL`: the page, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageFetch {
    /// The URL fetched, as the config var held it when the fetch began: a page fetched for a
    /// URL the app no longer names is never served.
    pub url: String,
    /// The page (UTF-8 HTML, at most `MaintenancePage::MAX_BYTES`); `None` when the fetch failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Why the fetch failed, for the app's owner; `None` when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the fetch ended, seconds since the epoch.
    pub fetched_at: i64,
}

/// A running instance of one of an app's dyno types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dyno {
    /// Its id.
    pub id: Uuid,
    /// Its app's id.
    pub app_id: Uuid,
    /// `type.suffix`.
    pub name: DynoName,
    /// Its type; `web` dynos receive HTTP traffic.
    pub dyno_type: DynoType,
    /// Where it listens.
    pub host: Hostname,
    /// Its port.
    pub port: u16,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// Whose lines a drain receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// Every line of the app with this id.
    App(Uuid),
    /// The router's lines for requests on the site with this id.
    Site(Uuid),
}

/// A log drain of an app or a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// Its id.
    pub id: Uuid,
    /// Whose lines it receives.
    pub owner: Owner,
    /// Where they go.
    pub url: DrainUrl,
    /// Identifies the drain to HTTPS receivers (`Logplex-Drain-Token`).
    pub token: String,
    /// CAs the drain trusts beside the system's trust store and the operator's, as PEM from the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<wharf_domain::DrainCa>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// A site: a domain whose path prefixes route to apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Its id.
    pub id: Uuid,
    /// `www.example.com` or `*.example.com`.
    pub domain: SiteDomain,
    /// Served only on the router's internal listener, routing only to internal apps.
    pub internal: bool,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// A route: a site's path prefix, sent to an app under another prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Its id.
    pub id: Uuid,
    /// Its site's id.
    pub site_id: Uuid,
    /// Its app's id.
    pub app_id: Uuid,
    /// The prefix matched.
    pub source_path: RoutePath,
    /// The prefix the app's dynos receive instead of `source_path`.
    pub target_path: RoutePath,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// A TLS certificate the router serves for the domains it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cert {
    /// Its id.
    pub id: Uuid,
    /// The chain and key, checked when uploaded.
    pub certificate: Certificate,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// A canary: another app taking a share of an app's requests, judged by the routers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// Its id; a new `PUT` makes a new canary.
    pub id: Uuid,
    /// The app whose requests are split.
    pub app_id: Uuid,
    /// The app taking the canary's share.
    pub canary_app_id: Uuid,
    /// The split and the judge's rules.
    pub policy: CanaryPolicy,
    /// Running, promoted or aborted.
    pub state: CanaryState,
    /// The counts and statistics at its end: the deciding router's, or those at the operator's
    /// abort or promotion. Boxed: with the kinds' counts it made every `Change` too large (clippy).
    pub evidence: Option<Box<CanaryEvidence>>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// How many dynos of one type an app runs, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formation {
    /// Its id.
    pub id: Uuid,
    /// The app.
    pub app_id: Uuid,
    /// The dyno type: `web`, `worker`, ...
    pub dyno_type: DynoType,
    /// How many dynos.
    pub quantity: u32,
    /// The command each dyno runs, with `sh -c`; none for an image's own entry point.
    pub command: Option<String>,
    /// The port a web dyno listens on (`PORT`); none to let the runtime choose.
    pub port: Option<u16>,
    /// An HTTP path to check a web dyno's health on; none for a TCP connect.
    pub healthcheck: Option<String>,
    /// The dyno size (Heroku's `size`), as configured; none for the configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// An app's config vars: one record per app.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVars {
    /// The record's id, which is the app's.
    pub id: Uuid,
    /// Name to value.
    pub vars: BTreeMap<String, String>,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

impl std::fmt::Debug for ConfigVars {
    // Values are secrets: debug output names the variables only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigVars")
            .field("id", &self.id)
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a release is in its life (Heroku's release `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// The local supervisor is rolling to it: its new dynos have not all passed their health
    /// check yet.
    Pending,
    /// Its dynos passed their health check, or no local dyno runs it (an app without commands,
    /// whose dynos an external runtime registers).
    Succeeded,
    /// Its dynos did not pass their health check within the health timeout, or a newer release
    /// replaced it before its dynos started.
    Failed,
}

impl ReleaseStatus {
    /// Heroku's word for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
        }
    }
}

/// How one process type ran in a release: what a rollback restores of the formation. Its
/// quantity is not part of a release (scaling is not a release on Heroku either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseProcess {
    /// The process type.
    pub dyno_type: DynoType,
    /// The formation's command for it, if any.
    pub command: Option<String>,
    /// The formation's fixed port, if any.
    pub port: Option<u16>,
    /// The formation's health check path, if any.
    pub healthcheck: Option<String>,
}

/// A release: one version of what an app runs (Heroku's release resource). Every change to an
/// app's config vars or to its formation's commands, ports or health checks makes one, in the
/// same commit as the change; it holds the whole resulting state, so that a rollback can restore
/// it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Its id.
    pub id: Uuid,
    /// The app.
    pub app_id: Uuid,
    /// 1, 2, ... per app: `v1` is the app's creation.
    pub version: u32,
    /// What changed, in Heroku's words (`Set FOO config vars`, `Rollback to v3`).
    pub description: String,
    /// Pending, succeeded or failed.
    pub status: ReleaseStatus,
    /// The app's config vars as of this release (secrets: not in `Debug`).
    pub config_vars: BTreeMap<String, String>,
    /// The formation's process types as of this release, by type.
    pub processes: Vec<ReleaseProcess>,
    /// The slug the release runs (its archive unpacked, or its image); none for a release of
    /// commands alone. Releases made by a change of config vars or commands keep the slug of the
    /// release before them; a rollback restores the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug_id: Option<Uuid>,
    /// Whether the release failed before any dyno ran it (its release phase failed, or its
    /// roll kept the old dynos): nothing runs it and nothing builds on it
    /// (`Model::running_release` passes over it), and if it was the app's newest, the app went
    /// back to its current release. A release that
    /// failed its roll but replaced dynos that were not healthy anyway still runs, and is not
    /// withdrawn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
    /// What the release brings (Wharf's record; Heroku's JSON does not show it): code of its
    /// own, or changes to the release before it. A release of changes that waited for a
    /// release whose phase or roll then failed is rebased onto the running release
    /// (`ControlPlane::settle_release`), so that it never runs the failed code.
    #[serde(default, skip_serializing_if = "Brings::is_code")]
    pub brings: Brings,
    /// The output of its release phase, once the phase ended (at most
    /// `plane::MAX_OUTPUT_LINES` lines): what its `output_stream_url` answers then. Empty for a
    /// release without a release phase, and until its phase ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change (of its status), seconds since the epoch.
    pub updated_at: i64,
}

/// What a release brings to its app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Brings {
    /// Its whole state, its code with it: a deploy of a slug, a rollback, a promotion, app
    /// creation. Records written before this field existed read as this: they are never
    /// rebased.
    #[default]
    Code,
    /// Changes of config vars or of process types' commands, ports or health checks made to
    /// the release before it (the newest when it was made), whose slug it keeps.
    Changes,
}

impl Brings {
    /// Whether it is [`Brings::Code`] (the default, left out of stored records).
    pub fn is_code(&self) -> bool {
        *self == Brings::Code
    }
}

impl std::fmt::Debug for Release {
    // Config var values are secrets: debug output names the variables only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("version", &self.version)
            .field("description", &self.description)
            .field("status", &self.status)
            .field("config_var_names", &self.config_vars.keys().collect::<Vec<_>>())
            .field("processes", &self.processes)
            .field("slug_id", &self.slug_id)
            .field("withdrawn", &self.withdrawn)
            .field("brings", &self.brings)
            .field("output_lines", &self.output.len())
            .finish_non_exhaustive()
    }
}

/// One stored record of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Object {
    /// A space.
    Space(Space),
    /// An app.
    App(App),
    /// A dyno.
    Dyno(Dyno),
    /// A drain.
    Drain(Drain),
    /// A site.
    Site(Site),
    /// A route.
    Route(Route),
    /// A certificate.
    Cert(Cert),
    /// A canary.
    Canary(Canary),
    /// A formation entry.
    Formation(Formation),
    /// An app's config vars.
    ConfigVars(ConfigVars),
    /// A release.
    Release(Release),
    /// A pipeline.
    Pipeline(super::Pipeline),
    /// An app's coupling to a pipeline stage.
    Coupling(super::Coupling),
    /// A release's status check.
    StatusCheck(super::StatusCheck),
    /// A promotion.
    Promotion(super::Promotion),
    /// An app's webhook.
    Hook(super::Hook),
    /// A slug (boxed: it is the largest record, and every `Change` would pay for its size).
    Slug(Box<super::Slug>),
    /// A build.
    Build(super::Build),
    /// An app's `canary` feature (automatic canary releases).
    CanaryFeature(super::CanaryFeature),
    /// A release of a production app on its way through a canary app (boxed: its policy and
    /// evidence make it one of the largest records).
    CanaryRelease(Box<super::CanaryRelease>),
    /// An app's `preview` feature (preview apps of pull requests).
    PreviewFeature(super::PreviewFeature),
    /// A pull request's preview app.
    Preview(super::Preview),
}

/// The kinds of records, as stored. Serde's names are [`Kind::as_str`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Spaces.
    Space,
    /// Apps.
    App,
    /// Dynos.
    Dyno,
    /// Drains.
    Drain,
    /// Sites.
    Site,
    /// Routes.
    Route,
    /// Certificates.
    Cert,
    /// Canaries.
    Canary,
    /// Formation entries.
    Formation,
    /// Config vars.
    ConfigVars,
    /// Releases.
    Release,
    /// Pipelines.
    Pipeline,
    /// Pipeline couplings.
    Coupling,
    /// Release status checks.
    StatusCheck,
    /// Promotions.
    Promotion,
    /// Webhooks.
    Hook,
    /// Slugs.
    Slug,
    /// Builds.
    Build,
    /// Apps' `canary` features.
    CanaryFeature,
    /// Canary releases.
    CanaryRelease,
    /// Apps' `preview` features.
    PreviewFeature,
    /// Preview apps of pull requests.
    Preview,
}

impl Kind {
    /// The kind's name in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Space => "space",
            Kind::App => "app",
            Kind::Dyno => "dyno",
            Kind::Drain => "drain",
            Kind::Site => "site",
            Kind::Route => "route",
            Kind::Cert => "cert",
            Kind::Canary => "canary",
            Kind::Formation => "formation",
            Kind::ConfigVars => "config_vars",
            Kind::Release => "release",
            Kind::Pipeline => "pipeline",
            Kind::Coupling => "coupling",
            Kind::StatusCheck => "status_check",
            Kind::Promotion => "promotion",
            Kind::Hook => "hook",
            Kind::Slug => "slug",
            Kind::Build => "build",
            Kind::CanaryFeature => "canary_feature",
            Kind::CanaryRelease => "canary_release",
            Kind::PreviewFeature => "preview_feature",
            Kind::Preview => "preview",
        }
    }
}

impl Object {
    /// The record's kind and id.
    pub fn key(&self) -> (Kind, Uuid) {
        match self {
            Object::Space(s) => (Kind::Space, s.id),
            Object::App(a) => (Kind::App, a.id),
            Object::Dyno(d) => (Kind::Dyno, d.id),
            Object::Drain(d) => (Kind::Drain, d.id),
            Object::Site(s) => (Kind::Site, s.id),
            Object::Route(r) => (Kind::Route, r.id),
            Object::Cert(c) => (Kind::Cert, c.id),
            Object::Canary(c) => (Kind::Canary, c.id),
            Object::Formation(f) => (Kind::Formation, f.id),
            Object::ConfigVars(c) => (Kind::ConfigVars, c.id),
            Object::Release(r) => (Kind::Release, r.id),
            Object::Pipeline(p) => (Kind::Pipeline, p.id),
            Object::Coupling(c) => (Kind::Coupling, c.id),
            Object::StatusCheck(c) => (Kind::StatusCheck, c.id),
            Object::Promotion(p) => (Kind::Promotion, p.id),
            Object::Hook(h) => (Kind::Hook, h.id),
            Object::Slug(s) => (Kind::Slug, s.id),
            Object::Build(b) => (Kind::Build, b.id),
            Object::CanaryFeature(f) => (Kind::CanaryFeature, f.id),
            Object::CanaryRelease(c) => (Kind::CanaryRelease, c.id),
            Object::PreviewFeature(f) => (Kind::PreviewFeature, f.id),
            Object::Preview(p) => (Kind::Preview, p.id),
        }
    }
}

/// One step of an operation's effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Insert or replace a record.
    Put(Object),
    /// Remove a record.
    Delete(Kind, Uuid),
}

/// Implements [`Record`] for records without a unique name of their own.
macro_rules! unnamed_records {
    ($($t:ty),*) => {$(
        impl Record for $t {
            type Key = ();
            fn id(&self) -> Uuid {
                self.id
            }
        }
    )*};
}

unnamed_records!(App, Dyno, Drain, Route, Cert, Canary, Formation, ConfigVars, Release, super::Slug, super::Build);
unnamed_records!(super::Coupling, super::StatusCheck, super::Promotion, super::Hook, super::CanaryFeature);
unnamed_records!(super::CanaryRelease);
unnamed_records!(super::PreviewFeature, super::Preview);

impl Record for Space {
    type Key = SpaceName;
    fn id(&self) -> Uuid {
        self.id
    }
    fn key(&self) -> Option<SpaceName> {
        Some(self.name.clone())
    }
}

impl Record for Site {
    type Key = SiteDomain;
    fn id(&self) -> Uuid {
        self.id
    }
    fn key(&self) -> Option<SiteDomain> {
        Some(self.domain.clone())
    }
}
