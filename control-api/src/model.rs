//! The control plane's state: typed records, their indexes, and the snapshot built from them.
//!
//! The model is changed only by applying a list of [`Change`]s that an operation computed and
//! the store has made durable, so memory never runs ahead of disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::{
    AppKey, AppName, AppSpec, CanaryEvidence, CanaryPolicy, CanarySpec, CanaryState, CertSpec, Certificate, DrainSpec,
    DrainTarget, DrainUrl, DynoName, DynoSpec, DynoType, Hostname, RoutePath, RouteSpec, SiteDomain, SiteSpec,
    Snapshot, SpaceName,
};

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
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
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
    /// The prefix sent upstream instead.
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
    /// Why it was aborted: the deciding router's counts and statistics, or the operator's hand.
    pub evidence: Option<CanaryEvidence>,
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

/// Every record, with the indexes that lookups by name need.
#[derive(Debug, Clone, Default)]
pub struct Model {
    version: u64,
    spaces: BTreeMap<Uuid, Space>,
    apps: BTreeMap<Uuid, App>,
    dynos: BTreeMap<Uuid, Dyno>,
    drains: BTreeMap<Uuid, Drain>,
    sites: BTreeMap<Uuid, Site>,
    routes: BTreeMap<Uuid, Route>,
    certs: BTreeMap<Uuid, Cert>,
    canaries: BTreeMap<Uuid, Canary>,
    formations: BTreeMap<Uuid, Formation>,
    config_vars: BTreeMap<Uuid, ConfigVars>,
    site_by_domain: HashMap<SiteDomain, Uuid>,
    space_by_name: HashMap<SpaceName, Uuid>,
    app_by_key: HashMap<AppKey, Uuid>,
}

impl Model {
    /// A model holding these records at this version.
    pub fn from_objects(version: u64, objects: impl IntoIterator<Item = Object>) -> Model {
        let mut m = Model::default();
        m.apply(version, objects.into_iter().map(Change::Put));
        m
    }

    /// The version of the last applied change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies changes that the store has already made durable as `version`.
    pub fn apply(&mut self, version: u64, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            match change {
                Change::Put(Object::Space(s)) => {
                    self.space_by_name.insert(s.name.clone(), s.id);
                    self.spaces.insert(s.id, s);
                }
                Change::Put(Object::App(a)) => {
                    // Records may arrive in any order when loading; the key is indexed once the
                    // space is known, and `reindex` fixes up the rest.
                    if let Some(space) = self.spaces.get(&a.space_id) {
                        self.app_by_key.insert(AppKey::new(&a.name, &space.name), a.id);
                    }
                    self.apps.insert(a.id, a);
                }
                Change::Put(Object::Dyno(d)) => {
                    self.dynos.insert(d.id, d);
                }
                Change::Put(Object::Drain(d)) => {
                    self.drains.insert(d.id, d);
                }
                Change::Put(Object::Site(site)) => {
                    self.site_by_domain.insert(site.domain.clone(), site.id);
                    self.sites.insert(site.id, site);
                }
                Change::Put(Object::Route(r)) => {
                    self.routes.insert(r.id, r);
                }
                Change::Delete(Kind::Site, id) => {
                    if let Some(site) = self.sites.remove(&id) {
                        self.site_by_domain.remove(&site.domain);
                    }
                }
                Change::Delete(Kind::Route, id) => {
                    self.routes.remove(&id);
                }
                Change::Put(Object::Cert(c)) => {
                    self.certs.insert(c.id, c);
                }
                Change::Delete(Kind::Cert, id) => {
                    self.certs.remove(&id);
                }
                Change::Put(Object::Canary(c)) => {
                    self.canaries.insert(c.id, c);
                }
                Change::Delete(Kind::Canary, id) => {
                    self.canaries.remove(&id);
                }
                Change::Delete(Kind::Space, id) => {
                    if let Some(s) = self.spaces.remove(&id) {
                        self.space_by_name.remove(&s.name);
                    }
                }
                Change::Delete(Kind::App, id) => {
                    if let Some(a) = self.apps.remove(&id) {
                        match self.spaces.get(&a.space_id) {
                            Some(space) => {
                                self.app_by_key.remove(&AppKey::new(&a.name, &space.name));
                            }
                            None => self.app_by_key.retain(|_, v| *v != a.id),
                        }
                    }
                }
                Change::Delete(Kind::Dyno, id) => {
                    self.dynos.remove(&id);
                }
                Change::Delete(Kind::Drain, id) => {
                    self.drains.remove(&id);
                }
                Change::Put(Object::Formation(f)) => {
                    self.formations.insert(f.id, f);
                }
                Change::Delete(Kind::Formation, id) => {
                    self.formations.remove(&id);
                }
                Change::Put(Object::ConfigVars(c)) => {
                    self.config_vars.insert(c.id, c);
                }
                Change::Delete(Kind::ConfigVars, id) => {
                    self.config_vars.remove(&id);
                }
            }
        }
        self.reindex_apps();
        self.version = version;
    }

    fn reindex_apps(&mut self) {
        if self.app_by_key.len() == self.apps.len() {
            return;
        }
        self.app_by_key = self
            .apps
            .values()
            .filter_map(|a| Some((AppKey::new(&a.name, &self.spaces.get(&a.space_id)?.name), a.id)))
            .collect();
    }

    /// Every space, by id.
    pub fn spaces(&self) -> impl Iterator<Item = &Space> {
        self.spaces.values()
    }

    /// The space with this id or name.
    pub fn space(&self, id_or_name: &str) -> Option<&Space> {
        match id_or_name.parse::<Uuid>() {
            Ok(id) => self.spaces.get(&id),
            Err(_) => SpaceName::try_new(id_or_name).ok().and_then(|n| self.spaces.get(self.space_by_name.get(&n)?)),
        }
    }

    /// The space with this id.
    pub fn space_by_id(&self, id: Uuid) -> Option<&Space> {
        self.spaces.get(&id)
    }

    /// Every app, by id.
    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// The app with this id or key (`app-space`).
    pub fn app(&self, id_or_key: &str) -> Option<&App> {
        match id_or_key.parse::<Uuid>() {
            Ok(id) => self.apps.get(&id),
            Err(_) => AppKey::try_new(id_or_key).ok().and_then(|k| self.apps.get(self.app_by_key.get(&k)?)),
        }
    }

    /// The app with this key.
    pub fn app_by_key(&self, key: &AppKey) -> Option<&App> {
        self.apps.get(self.app_by_key.get(key)?)
    }

    /// An app's key, `app-space`.
    pub fn app_key(&self, app: &App) -> AppKey {
        let space = self.spaces.get(&app.space_id).expect("an app's space exists");
        AppKey::new(&app.name, &space.name)
    }

    /// An app's formation, by dyno type.
    pub fn formation_of(&self, app_id: Uuid) -> Vec<&Formation> {
        let mut all: Vec<&Formation> = self.formations.values().filter(|f| f.app_id == app_id).collect();
        all.sort_by(|a, b| a.dyno_type.as_str().cmp(b.dyno_type.as_str()));
        all
    }

    /// An app's config vars, if any were ever set.
    pub fn config_vars_of(&self, app_id: Uuid) -> Option<&ConfigVars> {
        self.config_vars.get(&app_id)
    }

    /// An app's space.
    pub fn app_space(&self, app: &App) -> &Space {
        self.spaces.get(&app.space_id).expect("an app's space exists")
    }

    /// An app's dynos, by name.
    pub fn dynos_of(&self, app_id: Uuid) -> Vec<&Dyno> {
        let mut v: Vec<&Dyno> = self.dynos.values().filter(|d| d.app_id == app_id).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The dyno of this app with this id or name.
    pub fn dyno(&self, app_id: Uuid, id_or_name: &str) -> Option<&Dyno> {
        let id = id_or_name.parse::<Uuid>().ok();
        self.dynos.values().find(|d| d.app_id == app_id && (Some(d.id) == id || d.name.as_str() == id_or_name))
    }

    /// An app's or a site's drains, oldest first.
    pub fn drains_of(&self, owner: Owner) -> Vec<&Drain> {
        let mut v: Vec<&Drain> = self.drains.values().filter(|d| d.owner == owner).collect();
        v.sort_by_key(|d| (d.created_at, d.id));
        v
    }

    /// The drain of this app or site with this id, or with this URL.
    pub fn drain(&self, owner: Owner, id_or_url: &str) -> Option<&Drain> {
        let id = id_or_url.parse::<Uuid>().ok();
        self.drains.values().find(|d| d.owner == owner && (Some(d.id) == id || d.url.expose() == id_or_url))
    }

    /// Every site, by id.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.values()
    }

    /// The site with this id or domain.
    pub fn site(&self, id_or_domain: &str) -> Option<&Site> {
        match id_or_domain.parse::<Uuid>() {
            Ok(id) => self.sites.get(&id),
            Err(_) => SiteDomain::try_new(id_or_domain).ok().and_then(|d| self.sites.get(self.site_by_domain.get(&d)?)),
        }
    }

    /// The site with this id.
    pub fn site_by_id(&self, id: Uuid) -> Option<&Site> {
        self.sites.get(&id)
    }

    /// The route with this id.
    pub fn route(&self, id: Uuid) -> Option<&Route> {
        self.routes.get(&id)
    }

    /// Routes matching a filter, by site and source path.
    pub fn routes_where(&self, keep: impl Fn(&Route) -> bool) -> Vec<&Route> {
        let mut v: Vec<&Route> = self.routes.values().filter(|r| keep(r)).collect();
        v.sort_by(|a, b| (a.site_id, &a.source_path).cmp(&(b.site_id, &b.source_path)));
        v
    }

    /// Every certificate, by id.
    pub fn certs(&self) -> impl Iterator<Item = &Cert> {
        self.certs.values()
    }

    /// The certificate with this id.
    pub fn cert(&self, id: &str) -> Option<&Cert> {
        self.certs.get(&id.parse::<Uuid>().ok()?)
    }

    /// The app's canary, in whatever state.
    pub fn canary_of(&self, app_id: Uuid) -> Option<&Canary> {
        self.canaries.values().find(|c| c.app_id == app_id)
    }

    /// Canaries matching a filter.
    pub fn canaries_where(&self, keep: impl Fn(&Canary) -> bool) -> Vec<&Canary> {
        self.canaries.values().filter(|c| keep(c)).collect()
    }

    /// The canary with this id.
    pub fn canary(&self, id: Uuid) -> Option<&Canary> {
        self.canaries.get(&id)
    }

    /// Whether an app's space is internal.
    pub fn app_is_internal(&self, app: &App) -> bool {
        self.app_space(app).compliance.contains(&Compliance::Internal)
    }

    /// Whether any app lives in the space.
    pub fn space_has_apps(&self, space_id: Uuid) -> bool {
        self.apps.values().any(|a| a.space_id == space_id)
    }

    /// The data-plane picture of this model.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let mut web: HashMap<Uuid, Vec<DynoSpec>> = HashMap::new();
        for d in self.dynos.values().filter(|d| d.dyno_type.is_web()) {
            web.entry(d.app_id).or_default().push(DynoSpec {
                name: d.name.clone(),
                host: d.host.clone(),
                port: d.port,
            });
        }
        let apps = self
            .apps
            .values()
            .map(|a| {
                let mut web_dynos = web.remove(&a.id).unwrap_or_default();
                web_dynos.sort_by(|x, y| x.name.cmp(&y.name));
                AppSpec { id: a.id, key: self.app_key(a), internal: self.app_is_internal(a), web_dynos }
            })
            .collect();
        let drains = self
            .drains
            .values()
            .filter_map(|d| {
                let target = match d.owner {
                    Owner::App(id) => DrainTarget::App(self.app_key(self.apps.get(&id)?)),
                    Owner::Site(id) => DrainTarget::Site(self.sites.get(&id)?.domain.as_str().to_owned()),
                };
                Some(DrainSpec { id: d.id, target, url: d.url.clone(), token: d.token.clone() })
            })
            .collect();
        let mut sites: HashMap<Uuid, SiteSpec> = self
            .sites
            .values()
            .map(|s| (s.id, SiteSpec { id: s.id, domain: s.domain.clone(), internal: s.internal, routes: vec![] }))
            .collect();
        for r in self.routes.values() {
            let (Some(site), Some(app)) = (sites.get_mut(&r.site_id), self.apps.get(&r.app_id)) else {
                continue;
            };
            site.routes.push(RouteSpec {
                id: r.id,
                source_path: r.source_path.clone(),
                target_path: r.target_path.clone(),
                app: self.app_key(app),
            });
        }
        let mut sites: Vec<SiteSpec> = sites.into_values().collect();
        sites.sort_by(|a, b| a.domain.cmp(&b.domain));
        for s in &mut sites {
            s.routes.sort_by(|a, b| a.source_path.cmp(&b.source_path));
        }
        let certs = self.certs.values().map(|c| CertSpec { id: c.id, certificate: c.certificate.clone() }).collect();
        let canaries = self
            .canaries
            .values()
            .filter_map(|c| {
                Some(CanarySpec {
                    id: c.id,
                    app: self.app_key(self.apps.get(&c.app_id)?),
                    canary: self.app_key(self.apps.get(&c.canary_app_id)?),
                    policy: c.policy.clone(),
                    state: c.state,
                })
            })
            .collect();
        Arc::new(Snapshot { version: self.version, apps, drains, sites, certs, canaries })
    }
}
