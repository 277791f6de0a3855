//! The control plane's state: typed records in one [`Table`] per kind, the indexes lookups by
//! name need, and the snapshot built from them.
//!
//! The model is changed only by applying a list of [`Change`]s that an operation computed and
//! the store has made durable, so memory never runs ahead of disk. Deleting a record takes its
//! dependents with it, as [`Model::cascade`] lists them.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;
use wharf_domain::{
    AppKey, AppName, AppSpec, CanarySpec, CertSpec, DrainSpec, DrainTarget, DynoSpec, MaintenancePage, RouteSpec,
    SiteDomain, SiteSpec, Snapshot, SpaceName,
};

mod deploy;
mod pipelines;
mod previews;
mod records;
mod table;

pub use deploy::{Build, BuildStatus, Slug};
pub use pipelines::{
    CanaryFeature, CanaryRelease, CanaryReleaseState, CheckState, Coupling, Hook, HookEvent, Pipeline, Promotion,
    PromotionTarget, StatusCheck,
};
pub use previews::{ActedOn, Preview, PreviewFeature, REMEMBERED_DELIVERIES};
pub use records::{
    App, Brings, Canary, Cert, Change, Compliance, ConfigVars, Drain, Dyno, Formation, Kind, Object, Owner, PageFetch,
    Release, ReleaseProcess, ReleaseStatus, Route, Site, Space,
};
pub use table::{Record, Table};

/// The space an app is created in when the request names none (Akkeris' default space); its
/// apps also answer to their bare names ([`Model::app`]).
pub const DEFAULT_SPACE: &str = "default";

/// The config var naming an app's own maintenance page (Heroku's, from its "Error Pages"
/// article): an `https` URL the control plane fetches and the router serves from the snapshot.
pub const MAINTENANCE_PAGE_URL: &str = "MAINTENANCE_PAGE_URL";

/// Every record, with the indexes that lookups by name need.
#[derive(Debug, Clone, Default)]
pub struct Model {
    version: u64,
    spaces: Table<Space>,
    apps: Table<App>,
    dynos: Table<Dyno>,
    drains: Table<Drain>,
    sites: Table<Site>,
    routes: Table<Route>,
    certs: Table<Cert>,
    canaries: Table<Canary>,
    formations: Table<Formation>,
    config_vars: Table<ConfigVars>,
    releases: Table<Release>,
    pipelines: Table<Pipeline>,
    couplings: Table<Coupling>,
    checks: Table<StatusCheck>,
    promotions: Table<Promotion>,
    hooks: Table<Hook>,
    slugs: Table<Slug>,
    builds: Table<Build>,
    canary_features: Table<CanaryFeature>,
    canary_releases: Table<CanaryRelease>,
    preview_features: Table<PreviewFeature>,
    previews: Table<Preview>,
    /// An app's key is `app-space`, made of two records, so it is indexed here rather than by
    /// its table.
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
                Change::Put(object) => self.put(object),
                Change::Delete(kind, id) => self.delete(kind, id),
            }
        }
        self.reindex_apps();
        self.version = version;
    }

    fn put(&mut self, object: Object) {
        match object {
            Object::Space(s) => self.spaces.put(s),
            Object::App(a) => {
                // Records may arrive in any order when loading; the key is indexed once the
                // space is known, and `reindex_apps` fixes up the rest.
                if let Some(space) = self.spaces.get(&a.space_id) {
                    self.app_by_key.insert(AppKey::new(&a.name, &space.name), a.id);
                }
                self.apps.put(a);
            }
            Object::Dyno(d) => self.dynos.put(d),
            Object::Drain(d) => self.drains.put(d),
            Object::Site(s) => self.sites.put(s),
            Object::Route(r) => self.routes.put(r),
            Object::Cert(c) => self.certs.put(c),
            Object::Canary(c) => self.canaries.put(c),
            Object::Formation(f) => self.formations.put(f),
            Object::ConfigVars(c) => self.config_vars.put(c),
            Object::Release(r) => self.releases.put(r),
            Object::Pipeline(p) => self.pipelines.put(p),
            Object::Coupling(c) => self.couplings.put(c),
            Object::StatusCheck(c) => self.checks.put(c),
            Object::Promotion(p) => self.promotions.put(p),
            Object::Hook(h) => self.hooks.put(h),
            Object::Slug(x) => self.slugs.put(*x),
            Object::Build(x) => self.builds.put(x),
            Object::CanaryFeature(f) => self.canary_features.put(f),
            Object::CanaryRelease(c) => self.canary_releases.put(*c),
            Object::PreviewFeature(f) => self.preview_features.put(f),
            Object::Preview(p) => self.previews.put(p),
        }
    }

    fn delete(&mut self, kind: Kind, id: Uuid) {
        match kind {
            Kind::Space => drop(self.spaces.delete(id)),
            Kind::App => {
                if let Some(a) = self.apps.delete(id) {
                    match self.spaces.get(&a.space_id) {
                        Some(space) => drop(self.app_by_key.remove(&AppKey::new(&a.name, &space.name))),
                        None => self.app_by_key.retain(|_, v| *v != a.id),
                    }
                }
            }
            Kind::Dyno => drop(self.dynos.delete(id)),
            Kind::Drain => drop(self.drains.delete(id)),
            Kind::Site => drop(self.sites.delete(id)),
            Kind::Route => drop(self.routes.delete(id)),
            Kind::Cert => drop(self.certs.delete(id)),
            Kind::Canary => drop(self.canaries.delete(id)),
            Kind::Formation => drop(self.formations.delete(id)),
            Kind::ConfigVars => drop(self.config_vars.delete(id)),
            Kind::Release => drop(self.releases.delete(id)),
            Kind::Pipeline => drop(self.pipelines.delete(id)),
            Kind::Coupling => drop(self.couplings.delete(id)),
            Kind::StatusCheck => drop(self.checks.delete(id)),
            Kind::Promotion => drop(self.promotions.delete(id)),
            Kind::Hook => drop(self.hooks.delete(id)),
            Kind::Slug => drop(self.slugs.delete(id)),
            Kind::Build => drop(self.builds.delete(id)),
            Kind::CanaryFeature => drop(self.canary_features.delete(id)),
            Kind::CanaryRelease => drop(self.canary_releases.delete(id)),
            Kind::PreviewFeature => drop(self.preview_features.delete(id)),
            Kind::Preview => drop(self.previews.delete(id)),
        }
    }

    /// The changes that delete the record `kind`/`id` with every record that depends on it,
    /// dependents first: a space takes its apps; an app its dynos, drains, routes, canaries
    /// (as the split app or as the canary), formation, config vars, releases, builds and the
    /// slugs no other app's release runs, its pipeline coupling, status checks, hooks and the
    /// promotions from or to it, its preview feature and the preview apps forked from it; a
    /// pipeline its couplings and promotions; a site its routes and drains. Every operation that deletes goes through here, so that no record is left
    /// pointing at a deleted one. The record itself is not looked up: callers check it exists.
    pub fn cascade(&self, kind: Kind, id: Uuid) -> Vec<Change> {
        let mut out = Vec::new();
        self.cascade_into(kind, id, &mut out);
        out
    }

    fn cascade_into(&self, kind: Kind, id: Uuid, out: &mut Vec<Change>) {
        let dependents: Vec<(Kind, Uuid)> = match kind {
            Kind::Space => self.apps.values().filter(|a| a.space_id == id).map(|a| (Kind::App, a.id)).collect(),
            Kind::App => {
                let mut d: Vec<(Kind, Uuid)> = self.dynos_of(id).iter().map(|x| (Kind::Dyno, x.id)).collect();
                d.extend(self.drains_of(Owner::App(id)).iter().map(|x| (Kind::Drain, x.id)));
                d.extend(self.routes_where(|r| r.app_id == id).iter().map(|x| (Kind::Route, x.id)));
                let canaries = self.canaries_where(|c| c.app_id == id || c.canary_app_id == id);
                d.extend(canaries.iter().map(|x| (Kind::Canary, x.id)));
                d.extend(self.formation_of(id).iter().map(|x| (Kind::Formation, x.id)));
                if self.config_vars_of(id).is_some() {
                    d.push((Kind::ConfigVars, id));
                }
                d.extend(self.pipeline_dependents_of_app(id));
                d.extend(self.preview_dependents_of_app(id));
                d.extend(self.releases_of(id).iter().map(|x| (Kind::Release, x.id)));
                // A slug another app's release runs (a pipeline promoted it) outlives its app, so
                // that release can still be rolled back to and restarted.
                let shared = |slug: Uuid| self.releases.values().any(|r| r.app_id != id && r.slug_id == Some(slug));
                d.extend(self.slugs.values().filter(|x| x.app_id == id && !shared(x.id)).map(|x| (Kind::Slug, x.id)));
                d.extend(self.builds_of(id).iter().map(|x| (Kind::Build, x.id)));
                d
            }
            Kind::Pipeline => self.pipeline_dependents(id),
            Kind::Site => {
                let mut d: Vec<(Kind, Uuid)> =
                    self.routes_where(|r| r.site_id == id).iter().map(|x| (Kind::Route, x.id)).collect();
                d.extend(self.drains_of(Owner::Site(id)).iter().map(|x| (Kind::Drain, x.id)));
                d
            }
            Kind::Dyno
            | Kind::Drain
            | Kind::Route
            | Kind::Cert
            | Kind::Canary
            | Kind::Formation
            | Kind::ConfigVars
            | Kind::Release
            | Kind::Coupling
            | Kind::StatusCheck
            | Kind::Promotion
            | Kind::Hook
            | Kind::Slug
            | Kind::Build
            | Kind::CanaryFeature
            | Kind::CanaryRelease => vec![],
            Kind::PreviewFeature | Kind::Preview => vec![],
        };
        for (kind, id) in dependents {
            self.cascade_into(kind, id, out);
        }
        // A record two deleted ones depend on (a canary between two apps of one space) is
        // deleted once.
        let change = Change::Delete(kind, id);
        if !out.contains(&change) {
            out.push(change);
        }
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
            Err(_) => SpaceName::try_new(id_or_name).ok().and_then(|n| self.spaces.get_by_key(&n)),
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

    /// The app with this id, key (`app-space`), or bare name (`app`) when the app is in the
    /// [`DEFAULT_SPACE`]: a client that created `hello` without a space (as Heroku clients do)
    /// finds it as `hello` as well as `hello-default`. A bare name never reaches an app in another
    /// space, so Akkeris' keys stay unambiguous.
    pub fn app(&self, id_or_key: &str) -> Option<&App> {
        if let Ok(id) = id_or_key.parse::<Uuid>() {
            return self.apps.get(&id);
        }
        let key = match AppKey::try_new(id_or_key) {
            Ok(key) => key,
            Err(_) => AppKey::new(&AppName::try_new(id_or_key).ok()?, &SpaceName::try_new(DEFAULT_SPACE).ok()?),
        };
        self.apps.get(self.app_by_key.get(&key)?)
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

    /// An app's releases, oldest (v1) first.
    pub fn releases_of(&self, app_id: Uuid) -> Vec<&Release> {
        let mut v: Vec<&Release> = self.releases.values().filter(|r| r.app_id == app_id).collect();
        v.sort_by_key(|r| r.version);
        v
    }

    /// The app's release with this id or version (`3` or `v3`, as the Heroku CLI names one).
    pub fn release(&self, app_id: Uuid, id_or_version: &str) -> Option<&Release> {
        if let Ok(id) = id_or_version.parse::<Uuid>() {
            return self.releases.get(&id).filter(|r| r.app_id == app_id);
        }
        let digits = id_or_version.strip_prefix('v').unwrap_or(id_or_version);
        let version: u32 = digits.parse().ok().filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))?;
        self.releases.values().find(|r| r.app_id == app_id && r.version == version)
    }

    /// The release with this id, whichever app's it is.
    pub fn release_by_id(&self, id: Uuid) -> Option<&Release> {
        self.releases.get(&id)
    }

    /// An app's builds, oldest first.
    pub fn builds_of(&self, app_id: Uuid) -> Vec<&Build> {
        let mut v: Vec<&Build> = self.builds.values().filter(|b| b.app_id == app_id).collect();
        v.sort_by_key(|b| (b.created_at, b.id));
        v
    }

    /// The build with this id.
    pub fn build(&self, id: Uuid) -> Option<&Build> {
        self.builds.get(&id)
    }

    /// The slug with this id, whichever app it was made for.
    pub fn slug(&self, id: Uuid) -> Option<&Slug> {
        self.slugs.get(&id)
    }

    /// Every slug of every app, in no order.
    pub fn slugs(&self) -> impl Iterator<Item = &Slug> {
        self.slugs.values()
    }

    /// The app's newest release, whatever its status: what its config vars and formation say now.
    pub fn latest_release(&self, app_id: Uuid) -> Option<&Release> {
        self.releases.values().filter(|r| r.app_id == app_id).max_by_key(|r| r.version)
    }

    /// The app's current release (Heroku's `current`): the release its dynos run now, and so
    /// the one every reader of "what runs" names (the releases' `current`, one-off dynos, the
    /// release a failed one gives the app back to, what a restarted Wharf serves first). It is
    /// the newest release that has settled and runs: not one still `pending` (its release
    /// phase, roll or canary has not ended; the dynos still run this one meanwhile), not one
    /// withdrawn (it failed and no dyno runs it: `Release::withdrawn`), and not one whose canary
    /// has not been promoted (the app never ran it). A release that failed but runs (its dynos
    /// replaced ones that were not healthy either, and are retried with backoff) is current:
    /// its code and config vars are what serve, as on Heroku, where a release whose dynos crash
    /// is still the current one. `None` for an app without such a release.
    ///
    /// Architecture invariant: what the API says is current (this release, the app's config
    /// vars, its formation's commands) is what the app's dynos run once no release is pending,
    /// and a restart never changes which release or config a dyno runs.
    pub fn current_release(&self, app_id: Uuid) -> Option<&Release> {
        let held =
            |r: &Release| self.canary_release_making(r.id).is_some_and(|c| c.state != CanaryReleaseState::Promoted);
        self.releases
            .values()
            .filter(|r| r.app_id == app_id && r.status != ReleaseStatus::Pending && !r.withdrawn && !held(r))
            .max_by_key(|r| r.version)
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

    /// The drain of this app or site with this id, this URL, or this token (as the Heroku CLI's
    /// `drains:remove` names a drain).
    pub fn drain(&self, owner: Owner, id_url_or_token: &str) -> Option<&Drain> {
        let id = id_url_or_token.parse::<Uuid>().ok();
        self.drains.values().find(|d| {
            d.owner == owner && (Some(d.id) == id || d.url.expose() == id_url_or_token || d.token == id_url_or_token)
        })
    }

    /// Every site, by id.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.values()
    }

    /// The site with this id or domain.
    pub fn site(&self, id_or_domain: &str) -> Option<&Site> {
        match id_or_domain.parse::<Uuid>() {
            Ok(id) => self.sites.get(&id),
            Err(_) => SiteDomain::try_new(id_or_domain).ok().and_then(|d| self.sites.get_by_key(&d)),
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

    /// The app's `MAINTENANCE_PAGE_URL` config var, when it names one.
    pub fn maintenance_page_url(&self, app_id: Uuid) -> Option<&str> {
        self.config_vars_of(app_id)?.vars.get(MAINTENANCE_PAGE_URL).map(String::as_str).filter(|u| !u.is_empty())
    }

    /// What the router serves for the app: `None` while it is not in maintenance; the page
    /// fetched for the URL the app names now, or the router's default page (no URL, a failed
    /// fetch, or one not yet done for this URL).
    pub fn maintenance_page(&self, app: &App) -> Option<MaintenancePage> {
        if !app.maintenance {
            return None;
        }
        let url = self.maintenance_page_url(app.id);
        let html = app.maintenance_page.as_ref().filter(|p| Some(p.url.as_str()) == url).and_then(|p| p.html.clone());
        Some(MaintenancePage { html })
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
                AppSpec {
                    id: a.id,
                    key: self.app_key(a),
                    internal: self.app_is_internal(a),
                    web_dynos,
                    maintenance: self.maintenance_page(a),
                }
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
                Some(DrainSpec { id: d.id, target, url: d.url.clone(), token: d.token.clone(), ca: d.ca.clone() })
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
        let images = self.images();
        Arc::new(Snapshot { version: self.version, apps, drains, sites, certs, canaries, images })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wharf_domain::{CanaryPolicy, CanaryState, Weight};

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// App `n` named `name` in space 1: the app the model's tests (here and in its submodules')
    /// build their models from.
    pub(super) fn test_app(n: u128, name: &str) -> App {
        App {
            id: id(n),
            name: name.parse().unwrap(),
            space_id: id(1),
            maintenance: false,
            maintenance_page: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// A space (1) with two apps (10, 11), a site (20); app 10 has a dyno, a drain, a route on
    /// the site, a formation entry, config vars, a release, and app 11 as its canary; the site
    /// has a drain.
    fn model() -> Model {
        let space = Space { id: id(1), name: "s".parse().unwrap(), compliance: vec![], created_at: 0, updated_at: 0 };
        let app = test_app;
        let drain = |n, owner| Drain {
            id: id(n),
            owner,
            url: "syslog+tcp://h:1".parse().unwrap(),
            token: String::new(),
            ca: None,
            created_at: 0,
            updated_at: 0,
        };
        let objects = vec![
            Object::Space(space),
            Object::App(app(10, "a")),
            Object::App(app(11, "b")),
            Object::Site(Site {
                id: id(20),
                domain: "www.example.com".parse().unwrap(),
                internal: false,
                created_at: 0,
                updated_at: 0,
            }),
            Object::Dyno(Dyno {
                id: id(30),
                app_id: id(10),
                name: "web.1".parse().unwrap(),
                dyno_type: "web".parse().unwrap(),
                host: "h".parse().unwrap(),
                port: 1,
                created_at: 0,
                updated_at: 0,
            }),
            Object::Drain(drain(40, Owner::App(id(10)))),
            Object::Drain(drain(41, Owner::Site(id(20)))),
            Object::Route(Route {
                id: id(50),
                site_id: id(20),
                app_id: id(10),
                source_path: "/".parse().unwrap(),
                target_path: "/".parse().unwrap(),
                created_at: 0,
                updated_at: 0,
            }),
            Object::Formation(Formation {
                id: id(60),
                app_id: id(10),
                dyno_type: "web".parse().unwrap(),
                quantity: 1,
                command: None,
                port: None,
                healthcheck: None,
                size: None,
                created_at: 0,
                updated_at: 0,
            }),
            Object::ConfigVars(ConfigVars { id: id(10), vars: BTreeMap::new(), updated_at: 0 }),
            Object::Release(Release {
                id: id(80),
                app_id: id(10),
                version: 1,
                description: "Initial release".into(),
                status: ReleaseStatus::Succeeded,
                config_vars: BTreeMap::new(),
                processes: vec![],
                slug_id: None,
                withdrawn: false,
                brings: Brings::Code,
                output: Vec::new(),
                created_at: 0,
                updated_at: 0,
            }),
            Object::Canary(Canary {
                id: id(70),
                app_id: id(10),
                canary_app_id: id(11),
                policy: CanaryPolicy::with_weight(Weight::from_percent(10.0).unwrap()),
                state: CanaryState::Running,
                evidence: None,
                created_at: 0,
                updated_at: 0,
            }),
        ];
        Model::from_objects(1, objects)
    }

    fn deleted(changes: &[Change]) -> Vec<(Kind, Uuid)> {
        changes
            .iter()
            .map(|c| match c {
                Change::Delete(kind, id) => (*kind, *id),
                Change::Put(o) => panic!("a cascade only deletes, got {o:?}"),
            })
            .collect()
    }

    #[test]
    fn deleting_an_app_takes_everything_that_points_at_it_and_then_the_app() {
        let m = model();
        assert_eq!(
            deleted(&m.cascade(Kind::App, id(10))),
            [
                (Kind::Dyno, id(30)),
                (Kind::Drain, id(40)),
                (Kind::Route, id(50)),
                (Kind::Canary, id(70)),
                (Kind::Formation, id(60)),
                (Kind::ConfigVars, id(10)),
                (Kind::Release, id(80)),
                (Kind::App, id(10)),
            ]
        );
        // The canary app's deletion takes the canary too.
        assert_eq!(deleted(&m.cascade(Kind::App, id(11))), [(Kind::Canary, id(70)), (Kind::App, id(11))]);
    }

    #[test]
    fn deleting_a_site_takes_its_routes_and_drains_and_a_space_its_apps() {
        let m = model();
        assert_eq!(
            deleted(&m.cascade(Kind::Site, id(20))),
            [(Kind::Route, id(50)), (Kind::Drain, id(41)), (Kind::Site, id(20))]
        );
        let space = deleted(&m.cascade(Kind::Space, id(1)));
        assert_eq!(space.len(), 8 + 1 + 1, "app 10's eight, app 11, the space; the canary once: {space:?}");
        assert_eq!(space.last(), Some(&(Kind::Space, id(1))));
        assert_eq!(deleted(&m.cascade(Kind::Route, id(50))), [(Kind::Route, id(50))]);
    }

    #[test]
    fn applying_a_cascade_leaves_no_record_pointing_at_a_deleted_one() {
        let mut m = model();
        let changes = m.cascade(Kind::App, id(10));
        m.apply(2, changes);
        let snap = m.snapshot();
        assert_eq!(snap.apps.len(), 1);
        assert!(snap.canaries.is_empty() && snap.sites[0].routes.is_empty());
        assert_eq!(snap.drains.len(), 1, "the site's drain stays");
        assert!(m.app("a-s").is_none() && m.app("b-s").is_some());
        assert!(m.formation_of(id(10)).is_empty() && m.config_vars_of(id(10)).is_none());
        assert!(m.releases_of(id(10)).is_empty());
    }

    #[test]
    fn apps_stored_before_maintenance_mode_load_serving() {
        let stored = r#"{"kind":"app","body":{"id":"00000000-0000-0000-0000-00000000000a","name":"a","space_id":"00000000-0000-0000-0000-000000000001","created_at":0,"updated_at":0}}"#;
        let Object::App(a) = serde_json::from_str::<Object>(stored).expect("an old record loads") else {
            panic!("an app")
        };
        assert!(!a.maintenance && a.maintenance_page.is_none());
    }

    #[test]
    fn the_router_gets_the_page_fetched_for_the_url_the_app_names_now() {
        let mut m = model();
        let vars = |url: Option<&str>| {
            let vars = url.map(|u| (MAINTENANCE_PAGE_URL.to_owned(), u.to_owned())).into_iter().collect();
            Change::Put(Object::ConfigVars(ConfigVars { id: id(10), vars, updated_at: 0 }))
        };
        let original = m.apps.get(&id(10)).unwrap().clone();
        let app = |maintenance, fetched: Option<(&str, Option<&str>)>| {
            let a = original.clone();
            let maintenance_page = fetched.map(|(url, html)| PageFetch {
                url: url.into(),
                html: html.map(Into::into),
                error: html.is_none().then(|| "failed".into()),
                fetched_at: 0,
            });
            Change::Put(Object::App(App { maintenance, maintenance_page, ..a }))
        };
        let page = |m: &Model| m.snapshot().app(&"a-s".parse().unwrap()).unwrap().maintenance.clone();
        let html = |h: &str| Some(MaintenancePage { html: Some(h.into()) });
        let default = Some(MaintenancePage { html: None });
        // (maintenance, the URL named, the last fetch) -> what the snapshot carries.
        let cases = [
            (false, Some("https://p/1"), Some(("https://p/1", Some("one"))), None),
            (true, None, None, default.clone()),
            (true, Some("https://p/1"), None, default.clone()),
            (true, Some("https://p/1"), Some(("https://p/1", Some("one"))), html("one")),
            (true, Some("https://p/2"), Some(("https://p/1", Some("one"))), default.clone()),
            (true, Some("https://p/1"), Some(("https://p/1", None)), default.clone()),
            (true, None, Some(("https://p/1", Some("one"))), default.clone()),
        ];
        for (n, (on, url, fetched, want)) in cases.into_iter().enumerate() {
            let changes = vec![vars(url), app(on, fetched)];
            m.apply(10 + n as u64, changes);
            assert_eq!(page(&m), want, "case {n}: maintenance {on}, url {url:?}, fetched {fetched:?}");
        }
    }
}
