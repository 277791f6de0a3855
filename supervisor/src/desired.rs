//! Desired state: what the control plane's model says the supervisor should run, computed
//! from one model without side effects.
//!
//! A formation entry (Heroku's "formation": an app's process type with a quantity) belongs to
//! the supervisor when it has a command. Each such entry becomes a [`DesiredFormation`]; the
//! apps among them that have a `web` entry get a loopback service, listed by [`web_apps`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use uuid::Uuid;
use wharf_control_api::DynoRelease;
use wharf_control_api::model::Model;
use wharf_domain::DynoType;

/// The process type that receives HTTP traffic through the router (Heroku's `web`).
pub(crate) const WEB: &str = "web";

/// Which formation entry: an app and one of its process types.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FormationKey {
    /// The app's id.
    pub(crate) app_id: Uuid,
    /// The process type, e.g. `web` or `worker`.
    pub(crate) dyno_type: DynoType,
}

/// What each dyno of a formation entry runs. Any change to it rolls the entry to a new release.
/// It names the app's newest release, so every release rolls every entry of the app, as a
/// Heroku release restarts every dyno, even an entry whose command and environment it left as
/// they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DynoSpec {
    /// The command, run with `sh -c`.
    pub(crate) command: String,
    /// The app's config vars. A dyno starts with its space's services besides them
    /// ([`start_env`]), which are not part of the spec: a change there rolls nothing.
    pub(crate) env: BTreeMap<String, String>,
    /// The port a web dyno listens on (`PORT`); `None` to pick a free loopback port.
    pub(crate) port: Option<u16>,
    /// The HTTP path a web dyno's health check `GET`s; `None` for a TCP connect only.
    pub(crate) healthcheck: Option<String>,
    /// The app's newest release, which the dynos run; none for an app without releases.
    pub(crate) release: Option<DynoRelease>,
    /// The release's slug, when it has a stored archive: the dynos run in the release's own
    /// unpacked copy of it (`release_dir`). None for a release of commands alone, or an image.
    pub(crate) slug: Option<Uuid>,
}

/// One formation entry the supervisor should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DesiredFormation {
    /// The app's key (`name-space`), as log lines and the bus name the app.
    pub(crate) app: String,
    /// How many dynos.
    pub(crate) quantity: u32,
    /// What each of them runs.
    pub(crate) spec: DynoSpec,
}

/// The formation entries with commands, by app and process type. Their environment is the
/// app's config vars only: the space's services (see [`service_env`]) are added when each dyno
/// starts, so that a service opening or closing in the space restarts no other app's dynos
/// (as Kubernetes' service variables, fixed when a container starts).
///
/// An app whose newest release is one of changes queued behind an older pending release runs
/// that older release's entries instead (see [`rolls_first`]): the queued one starts no dyno
/// until the release it waits for has settled and its own record, rebased or not, is written.
pub(crate) fn desired_formations(m: &Model) -> HashMap<FormationKey, DesiredFormation> {
    let mut out = HashMap::new();
    for app in m.apps() {
        if let Some(first) = rolls_first(m, app.id) {
            out.extend(release_formations(m, app, first));
            continue;
        }
        let key = m.app_key(app).to_string();
        let env: BTreeMap<String, String> = m.config_vars_of(app.id).map(|c| c.vars.clone()).unwrap_or_default();
        let latest = m.running_release(app.id);
        let release = latest.map(|r| DynoRelease { id: r.id, version: r.version });
        let slug = latest.and_then(|r| archive_slug(m, r));
        for f in m.formation_of(app.id) {
            let Some(command) = &f.command else { continue };
            let spec = DynoSpec {
                command: command.clone(),
                env: env.clone(),
                port: f.port,
                healthcheck: f.healthcheck.clone(),
                release,
                slug,
            };
            out.insert(
                FormationKey { app_id: app.id, dyno_type: f.dyno_type.clone() },
                DesiredFormation { app: key.clone(), quantity: f.quantity, spec },
            );
        }
    }
    out
}

/// The release's slug when it is an archive this supervisor unpacks and runs; `None` for a
/// release without a slug and for an image slug, which is an external runtime's to pull.
pub(crate) fn archive_slug(m: &Model, release: &wharf_control_api::model::Release) -> Option<Uuid> {
    release.slug_id.filter(|id| m.slug(*id).is_some_and(|s| s.image.is_none()))
}

/// The release phase an app's pending releases wait for first: that of its oldest pending
/// release (not withdrawn) that has a `release` command, as that release holds it (its command,
/// config vars and slug). A supervisor that starts while several releases of an app are pending
/// (Wharf stopped during a phase, with a config change queued behind it) runs the phase that
/// ran before the restart, not the newest release's: if it fails, the releases of changes
/// behind it are rebased onto the running code (`ControlPlane::settle_release`) exactly as
/// without the restart. `None` when the app has no such release. `phase_type` is the process
/// type whose command is the release phase (`release_phase::RELEASE`).
pub(crate) fn first_pending_phase(m: &Model, app_id: Uuid, phase_type: &str) -> Option<DynoSpec> {
    use wharf_control_api::model::{CanaryReleaseState, ReleaseStatus};
    // A release a canary release holds runs no phase here until it is promoted.
    let held = |id: Uuid| m.canary_release_making(id).is_some_and(|c| c.state != CanaryReleaseState::Promoted);
    let r = m
        .releases_of(app_id)
        .into_iter()
        .filter(|r| r.status == ReleaseStatus::Pending && !r.withdrawn && !held(r.id))
        .find(|r| r.processes.iter().any(|p| p.dyno_type.as_str() == phase_type && p.command.is_some()))?;
    let phase = r.processes.iter().find(|p| p.dyno_type.as_str() == phase_type)?;
    Some(DynoSpec {
        command: phase.command.clone()?,
        env: r.config_vars.clone(),
        port: phase.port,
        healthcheck: phase.healthcheck.clone(),
        release: Some(DynoRelease { id: r.id, version: r.version }),
        slug: archive_slug(m, r),
    })
}

/// The formation entries of each app's serving release, for the apps whose running release is
/// `pending` (its release phase, or its roll, has not ended): the entries of its current release
/// (`Model::current_release`: the newest before it that settled and runs, one that failed but
/// ran too), with that release's commands, ports, health checks, config vars and slug, and the
/// formation's quantities. Empty for an app without such a release (its first deploy) and for
/// every other app.
///
/// A supervisor that starts (after a restart of Wharf, a clean stop or `kill -9`) runs these
/// first, so that production keeps serving the release that last succeeded while the pending
/// one runs its release phase again, or rolls again from the start: the old dynos it would
/// have kept went with the earlier run.
pub(crate) fn serving_formations(m: &Model) -> HashMap<FormationKey, DesiredFormation> {
    use wharf_control_api::model::ReleaseStatus;
    let mut out = HashMap::new();
    for app in m.apps() {
        let Some(running) = m.running_release(app.id).filter(|r| r.status == ReleaseStatus::Pending) else { continue };
        let Some(serving) = m.current_release(app.id).filter(|r| r.version < running.version) else { continue };
        out.extend(release_formations(m, app, serving));
    }
    out
}

/// The formation entries of `app` running `release` as its record holds it: its commands,
/// ports, health checks, config vars and slug, with the formation's quantities; a process type
/// without a command in the record is not among them.
fn release_formations(
    m: &Model,
    app: &wharf_control_api::model::App,
    release: &wharf_control_api::model::Release,
) -> HashMap<FormationKey, DesiredFormation> {
    let mut out = HashMap::new();
    let key = m.app_key(app).to_string();
    let dyno_release = Some(DynoRelease { id: release.id, version: release.version });
    let slug = archive_slug(m, release);
    for f in m.formation_of(app.id) {
        let process = release.processes.iter().find(|p| p.dyno_type == f.dyno_type);
        let Some((process, command)) = process.and_then(|p| p.command.as_ref().map(|c| (p, c))) else { continue };
        let spec = DynoSpec {
            command: command.clone(),
            env: release.config_vars.clone(),
            port: process.port,
            healthcheck: process.healthcheck.clone(),
            release: dyno_release,
            slug,
        };
        out.insert(
            FormationKey { app_id: app.id, dyno_type: f.dyno_type.clone() },
            DesiredFormation { app: key.clone(), quantity: f.quantity, spec },
        );
    }
    out
}

/// An app's oldest pending release (not withdrawn, not held by a canary release, newer than its
/// current one) and its entries, when it is older than the release the app rolls to: what a
/// supervisor tells an app's entries first in a run, until it has settled (see `lib.rs`). Wharf stopped while that
/// release was pending, in its phase or its roll, with newer ones queued behind it; it rolls
/// again and gets its own verdict, as it would have without the stop, rather than being
/// superseded by a newer release and settling with that one's outcome although its dynos had
/// run (FE29). `None` for an app with no such release.
pub(crate) fn oldest_pending_formations(
    m: &Model,
    app_id: Uuid,
) -> Option<(Uuid, HashMap<FormationKey, DesiredFormation>)> {
    use wharf_control_api::model::{CanaryReleaseState, ReleaseStatus};
    let newest = m.running_release(app_id)?;
    let current = m.current_release(app_id).map_or(0, |r| r.version);
    let held = |id: Uuid| m.canary_release_making(id).is_some_and(|c| c.state != CanaryReleaseState::Promoted);
    let oldest = m
        .releases_of(app_id)
        .into_iter()
        .filter(|r| r.status == ReleaseStatus::Pending && !r.withdrawn && !held(r.id))
        .find(|r| r.version > current && r.version < newest.version)?;
    let app = m.apps().find(|a| a.id == app_id)?;
    Some((oldest.id, release_formations(m, app, oldest)))
}

/// The older pending release an app's entries roll to before its newest, when its newest is a
/// release of changes (`Brings::Changes`: config vars, commands) made while an older release
/// was still pending (in its release phase, its roll, or not yet started). Such a release is
/// built on the one before it, and is rebased onto the running code if that one fails
/// (`ControlPlane::settle_release`); so it starts no dyno, and runs no release phase, until
/// every release before it has settled and its own record (rebased or not) is written. Started
/// earlier, its first dynos would run the older release's slug, which may be the one that
/// fails, and their crash would be charged to it (FE26 finding 1, FE28).
///
/// Of the older pending releases (not withdrawn, not held by a canary release, newer than the
/// current one), the newest that brings its own code rolls first: it supersedes those before it
/// as any deploy does (they settle with it). Without one, the oldest rolls first: each release
/// of changes then rolls on its own, in version order, so that one whose own change fails is
/// rebased away from rather than taking the next one along. `None` when the newest release runs
/// now (it brings code, is not pending, or no older release is pending).
pub(crate) fn rolls_first(m: &Model, app_id: Uuid) -> Option<&wharf_control_api::model::Release> {
    use wharf_control_api::model::{Brings, CanaryReleaseState, ReleaseStatus};
    let newest = m.running_release(app_id)?;
    if newest.status != ReleaseStatus::Pending || newest.brings != Brings::Changes {
        return None;
    }
    let current = m.current_release(app_id).map_or(0, |r| r.version);
    let held = |id: Uuid| m.canary_release_making(id).is_some_and(|c| c.state != CanaryReleaseState::Promoted);
    let waited_for: Vec<&wharf_control_api::model::Release> = m
        .releases_of(app_id)
        .into_iter()
        .filter(|r| r.status == ReleaseStatus::Pending && !r.withdrawn && !held(r.id))
        .filter(|r| r.version > current && r.version < newest.version)
        .collect();
    waited_for.iter().rev().find(|r| r.brings == Brings::Code).or(waited_for.first()).copied()
}

/// Each app's view of its space's services: `NAME_SERVICE_HOST` and `NAME_SERVICE_PORT` for
/// each app in its space that has a loopback service (`service_ports`: app id to the
/// service's port), `NAME` being the app's name in upper case. A dyno gets its app's set when it
/// starts ([`start_env`]); a later change reaches the dynos started after it.
pub(crate) fn service_env(m: &Model, service_ports: &HashMap<Uuid, u16>) -> HashMap<Uuid, BTreeMap<String, String>> {
    let mut out = HashMap::new();
    for app in m.apps() {
        let mut env = BTreeMap::new();
        for other in m.apps().filter(|o| o.space_id == app.space_id) {
            if let Some(port) = service_ports.get(&other.id) {
                let name = other.name.as_str().to_ascii_uppercase();
                env.insert(format!("{name}_SERVICE_HOST"), "127.0.0.1".to_owned());
                env.insert(format!("{name}_SERVICE_PORT"), port.to_string());
            }
        }
        out.insert(app.id, env);
    }
    out
}

/// A starting dyno's environment besides `PORT` and `DYNO`: its space's services, then its
/// spec's config vars, which win on a clash.
pub(crate) fn start_env(
    services: &BTreeMap<String, String>,
    spec: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = services.clone();
    env.extend(spec.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// A supervised web app, for its loopback service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebApp {
    /// The app's id.
    pub(crate) id: Uuid,
    /// The app's short name, for log lines.
    pub(crate) name: String,
    /// Its registered (so healthy) web dynos' addresses.
    pub(crate) dynos: Vec<SocketAddr>,
}

/// The apps whose `web` formation entry has a command, with their registered web dynos; not
/// the transient ones (canary and preview apps, [`Model::is_transient_app`]): their services
/// would come and go with them, and every dyno of their space would restart to learn of it.
pub(crate) fn web_apps(m: &Model) -> Vec<WebApp> {
    m.apps()
        .filter(|a| !m.is_transient_app(a.id))
        .filter(|a| m.formation_of(a.id).iter().any(|f| f.command.is_some() && f.dyno_type.as_str() == WEB))
        .map(|a| WebApp {
            id: a.id,
            name: a.name.to_string(),
            dynos: m
                .dynos_of(a.id)
                .iter()
                .filter(|d| d.dyno_type.as_str() == WEB)
                .filter_map(|d| format!("{}:{}", d.host, d.port).parse().ok())
                .collect(),
        })
        .collect()
}

/// The registered dynos, as (app id, dyno name), of the apps the supervisor runs: an earlier
/// run registered them, and they went with it.
pub(crate) fn stale_dynos(m: &Model) -> Vec<(String, String)> {
    let desired = desired_formations(m);
    m.apps()
        .filter(|a| desired.keys().any(|k| k.app_id == a.id))
        .flat_map(|a| m.dynos_of(a.id).into_iter().map(|d| (a.id.to_string(), d.name.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_control_api::model::{App, ConfigVars, Dyno, Formation, Object, Space};
    use wharf_domain::{AppName, DynoName, Hostname, SpaceName};

    /// A new id: the uuid crate is built without random (v4) ids.
    fn fresh_id() -> Uuid {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Uuid::from_u128(u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
    }

    fn space(id: Uuid, name: &str) -> Object {
        let name = SpaceName::try_new(name).unwrap();
        Object::Space(Space { id, name, compliance: vec![], created_at: 0, updated_at: 0 })
    }

    fn app(id: Uuid, name: &str, space_id: Uuid) -> Object {
        Object::App(App {
            id,
            name: AppName::try_new(name).unwrap(),
            space_id,
            maintenance: false,
            maintenance_page: None,
            created_at: 0,
            updated_at: 0,
        })
    }

    fn formation(app_id: Uuid, dyno_type: &str, quantity: u32, command: Option<&str>) -> Formation {
        Formation {
            id: fresh_id(),
            app_id,
            dyno_type: DynoType::try_new(dyno_type).unwrap(),
            quantity,
            command: command.map(str::to_owned),
            port: None,
            healthcheck: None,
            size: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn dyno(app_id: Uuid, name: &str, port: u16) -> Object {
        let name = DynoName::try_new(name).unwrap();
        Object::Dyno(Dyno {
            id: fresh_id(),
            app_id,
            dyno_type: DynoType::try_new(name.as_str().split('.').next().unwrap()).unwrap(),
            name,
            host: Hostname::try_new("127.0.0.1").unwrap(),
            port,
            created_at: 0,
            updated_at: 0,
        })
    }

    fn vars(id: Uuid, pairs: &[(&str, &str)]) -> Object {
        let vars = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Object::ConfigVars(ConfigVars { id, vars, updated_at: 0 })
    }

    fn key(app_id: Uuid, dyno_type: &str) -> FormationKey {
        FormationKey { app_id, dyno_type: DynoType::try_new(dyno_type).unwrap() }
    }

    /// Two apps in space `default` (`api` with a web and a worker entry and config vars,
    /// `other` with a web entry), one in space `prod`, and `external` without a command.
    struct World {
        model: Model,
        api: Uuid,
        other: Uuid,
        far: Uuid,
        external: Uuid,
    }

    fn world() -> World {
        let (default, prod) = (fresh_id(), fresh_id());
        let (api, other, far, external) = (fresh_id(), fresh_id(), fresh_id(), fresh_id());
        let mut web = formation(api, "web", 2, Some("exec server"));
        web.port = Some(5000);
        web.healthcheck = Some("/health".to_owned());
        let objects = vec![
            space(default, "default"),
            space(prod, "prod"),
            app(api, "api", default),
            app(other, "other", default),
            app(far, "far", prod),
            app(external, "external", default),
            Object::Formation(web),
            Object::Formation(formation(api, "worker", 1, Some("exec worker"))),
            Object::Formation(formation(other, "web", 1, Some("exec other"))),
            Object::Formation(formation(far, "web", 1, Some("exec far"))),
            Object::Formation(formation(external, "web", 3, None)),
            vars(api, &[("GREETING", "hello"), ("OTHER_SERVICE_PORT", "override")]),
            dyno(api, "web.1-abcde", 4001),
            dyno(api, "worker.1-fghij", 0),
            dyno(other, "web.1-klmno", 4002),
            dyno(external, "web.1-pqrst", 4003),
        ];
        World { model: Model::from_objects(1, objects), api, other, far, external }
    }

    #[test]
    fn every_formation_entry_with_a_command_is_desired_and_no_other() {
        let w = world();
        let desired = desired_formations(&w.model);
        let mut keys: Vec<_> = desired.keys().cloned().collect();
        keys.sort_by_key(|k| (k.app_id, k.dyno_type.clone()));
        let mut expected = vec![key(w.api, "web"), key(w.api, "worker"), key(w.other, "web"), key(w.far, "web")];
        expected.sort_by_key(|k| (k.app_id, k.dyno_type.clone()));
        assert_eq!(keys, expected);
        assert!(!desired.keys().any(|k| k.app_id == w.external));
        let web = &desired[&key(w.api, "web")];
        assert_eq!((web.app.as_str(), web.quantity), ("api-default", 2));
        assert_eq!(web.spec.command, "exec server");
        assert_eq!((web.spec.port, web.spec.healthcheck.as_deref()), (Some(5000), Some("/health")));
        assert_eq!(desired[&key(w.api, "worker")].spec.env, desired[&key(w.api, "web")].spec.env);
    }

    #[test]
    fn dynos_learn_the_services_of_their_own_space_and_config_vars_win() {
        let w = world();
        let ports = HashMap::from([(w.api, 7001), (w.other, 7002), (w.far, 7003)]);
        let desired = desired_formations(&w.model);
        let services = service_env(&w.model, &ports);
        let env = start_env(&services[&w.api], &desired[&key(w.api, "web")].spec.env);
        assert_eq!(env["GREETING"], "hello");
        assert_eq!(env["API_SERVICE_HOST"], "127.0.0.1");
        assert_eq!(env["API_SERVICE_PORT"], "7001");
        assert_eq!(env["OTHER_SERVICE_HOST"], "127.0.0.1");
        assert_eq!(env["OTHER_SERVICE_PORT"], "override", "the app's own config var wins");
        assert!(!env.contains_key("FAR_SERVICE_PORT"), "another space's service is not visible");
        let far = start_env(&services[&w.far], &desired[&key(w.far, "web")].spec.env);
        assert_eq!(far.keys().collect::<Vec<_>>(), ["FAR_SERVICE_HOST", "FAR_SERVICE_PORT"]);
        // A new service in the space changes no spec: it restarts no other app's dynos.
        let fewer = service_env(&w.model, &HashMap::from([(w.api, 7001)]));
        assert_ne!(fewer[&w.api], services[&w.api]);
        assert_eq!(desired_formations(&w.model), desired, "the specs do not hold the services");
    }

    #[test]
    fn web_apps_are_those_with_a_web_command_with_their_registered_web_dynos() {
        let w = world();
        let mut apps = web_apps(&w.model);
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["api", "far", "other"]);
        assert_eq!(apps[0].dynos, ["127.0.0.1:4001".parse::<SocketAddr>().unwrap()], "web dynos only");
        assert!(apps[1].dynos.is_empty());
        assert_eq!(apps[2].dynos, ["127.0.0.1:4002".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn a_preview_app_is_no_service_to_its_space() {
        let w = world();
        let pr = fresh_id();
        let preview = wharf_control_api::model::Preview {
            id: fresh_id(),
            app_id: w.other,
            preview_app_id: pr,
            number: 7,
            head_ref: "feature".into(),
            head_sha: "7".repeat(40),
            source_url: "http://127.0.0.1:9/a.tgz".into(),
            build_id: None,
            created_at: 0,
            updated_at: 0,
        };
        // The preview app, its web entry and its record, beside the world's apps.
        let space = w.model.app("api").unwrap().space_id;
        let objects = [
            app(pr, "otherpr7", space),
            Object::Formation(formation(pr, "web", 1, Some("exec pr"))),
            Object::Preview(preview),
        ];
        let mut m = w.model.clone();
        m.apply(2, objects.map(wharf_control_api::model::Change::Put));
        let names: Vec<_> = web_apps(&m).into_iter().map(|a| a.name).collect();
        assert!(!names.contains(&"otherpr7".to_owned()), "{names:?}");
        assert_eq!(names.len(), 3, "the world's own web apps stay services: {names:?}");
        // Its dynos still learn the others' services, as its development app's do.
        let ports = HashMap::from([(w.api, 7001)]);
        assert_eq!(service_env(&m, &ports)[&pr]["API_SERVICE_PORT"], "7001");
    }

    /// A release of `app` running `web: COMMAND` with `GREETING=COMMAND`.
    fn release(app: Uuid, version: u32, status: ReleaseStatus, withdrawn: bool, command: &str) -> Object {
        use wharf_control_api::model::{Release, ReleaseProcess};
        Object::Release(Release {
            id: fresh_id(),
            app_id: app,
            version,
            description: format!("v{version}"),
            status,
            config_vars: [("GREETING".to_owned(), command.to_owned())].into(),
            processes: vec![ReleaseProcess {
                dyno_type: DynoType::try_new("web").unwrap(),
                command: Some(command.to_owned()),
                port: None,
                healthcheck: None,
            }],
            slug_id: None,
            withdrawn,
            brings: Default::default(),
            output: Vec::new(),
            created_at: 0,
            updated_at: 0,
        })
    }

    use wharf_control_api::model::ReleaseStatus;

    #[test]
    fn a_pending_release_is_served_by_the_current_release_one_that_failed_but_runs_too() {
        use ReleaseStatus::{Failed, Pending, Succeeded};
        // (the app's releases as (status, withdrawn, command), the command the serving entry
        // runs, if any).
        /// An app's releases: (status, withdrawn, command).
        type Releases<'a> = &'a [(ReleaseStatus, bool, &'a str)];
        let rows: [(Releases, Option<&str>); 7] = [
            (&[(Succeeded, false, "v1"), (Pending, false, "v2")], Some("v1")),
            // A release that failed but runs (not withdrawn: its dynos replaced unhealthy ones)
            // is what serves, not the one before it (FE37).
            (&[(Succeeded, false, "v1"), (Failed, false, "v2"), (Pending, false, "v3")], Some("v2")),
            // An older release still pending (superseded before it rolled) never ran.
            (&[(Succeeded, false, "v1"), (Pending, false, "v2"), (Pending, false, "v3")], Some("v1")),
            (&[(Succeeded, false, "v1"), (Failed, true, "v2"), (Pending, false, "v3")], Some("v1")),
            (&[(Succeeded, false, "v1"), (Succeeded, false, "v2"), (Pending, false, "v3")], Some("v2")),
            (&[(Succeeded, false, "v1"), (Succeeded, false, "v2")], None),
            (&[(Pending, false, "v1")], None),
        ];
        for (releases, want) in rows {
            let w = world();
            let objects: Vec<Object> = releases
                .iter()
                .enumerate()
                .map(|(i, (status, withdrawn, command))| release(w.other, i as u32 + 1, *status, *withdrawn, command))
                .collect();
            let mut m = w.model.clone();
            m.apply(2, objects.into_iter().map(wharf_control_api::model::Change::Put));
            let serving = serving_formations(&m);
            let got =
                serving.get(&key(w.other, "web")).map(|e| (e.spec.command.as_str(), e.spec.env["GREETING"].as_str()));
            assert_eq!(got, want.map(|c| (c, c)), "{releases:?}");
            assert_eq!(serving.len(), usize::from(want.is_some()), "only the app with a pending release: {releases:?}");
            if want.is_some() {
                assert_eq!(serving[&key(w.other, "web")].quantity, 1, "the formation's quantity");
            }
        }
    }

    #[test]
    fn a_release_of_changes_waits_for_the_pending_releases_before_it_and_starts_nothing_meanwhile() {
        use ReleaseStatus::{Failed, Pending, Succeeded};
        use wharf_control_api::model::Brings::{Changes, Code};
        /// An app's releases: (status, withdrawn, brings).
        type Releases<'a> = &'a [(ReleaseStatus, bool, wharf_control_api::model::Brings)];
        // (the app's releases, v1 first, and the version its entries roll to now).
        let rows: [(Releases, u32); 10] = [
            // A config change made while a deploy rolls waits for the deploy to settle.
            (&[(Succeeded, false, Code), (Pending, false, Code), (Pending, false, Changes)], 2),
            (&[(Succeeded, false, Code), (Pending, false, Code)], 2),
            (&[(Succeeded, false, Code), (Pending, false, Changes)], 2),
            // Releases of changes roll one at a time, oldest first.
            (&[(Succeeded, false, Code), (Pending, false, Changes), (Pending, false, Changes)], 2),
            // The newest deploy supersedes the pending ones before it, as any deploy does.
            (&[(Succeeded, false, Code), (Pending, false, Code), (Pending, false, Code), (Pending, false, Changes)], 3),
            (
                &[
                    (Succeeded, false, Code),
                    (Pending, false, Code),
                    (Pending, false, Changes),
                    (Pending, false, Changes),
                ],
                2,
            ),
            (
                &[
                    (Succeeded, false, Code),
                    (Pending, false, Changes),
                    (Pending, false, Code),
                    (Pending, false, Changes),
                ],
                3,
            ),
            // Behind a failed (withdrawn) release, the rebased one rolls at once.
            (&[(Succeeded, false, Code), (Failed, true, Code), (Pending, false, Changes)], 3),
            // A pending release older than the current one waits for nothing (it never will).
            (&[(Pending, false, Code), (Succeeded, false, Code), (Pending, false, Changes)], 3),
            (&[(Succeeded, false, Code), (Succeeded, false, Changes)], 2),
        ];
        for (releases, want) in rows {
            let w = world();
            let objects: Vec<Object> = releases
                .iter()
                .enumerate()
                .map(|(i, (status, withdrawn, brings))| {
                    let mut r = release(w.other, i as u32 + 1, *status, *withdrawn, &format!("v{}", i + 1));
                    if let Object::Release(r) = &mut r {
                        r.brings = *brings;
                    }
                    r
                })
                .collect();
            let mut m = w.model.clone();
            m.apply(2, objects.into_iter().map(wharf_control_api::model::Change::Put));
            let desired = desired_formations(&m);
            let web = &desired[&key(w.other, "web")];
            let got = web.spec.release.map(|r| r.version);
            assert_eq!(got, Some(want), "{releases:?}");
            let newest = releases.len() as u32;
            if want == newest {
                assert_eq!(web.spec.command, "exec other", "the newest runs the formation as it is: {releases:?}");
            } else {
                // The release waited for runs as its record holds it, not the newer changes.
                let v = format!("v{want}");
                assert_eq!((web.spec.command.as_str(), web.spec.env["GREETING"].as_str()), (v.as_str(), v.as_str()));
                assert_eq!(web.quantity, 1, "the formation's quantity");
            }
            assert_eq!(desired[&key(w.api, "web")].spec.release, None, "other apps are as they were");
        }
    }

    #[test]
    fn stale_dynos_are_the_registered_dynos_of_supervised_apps_only() {
        let w = world();
        let mut stale = stale_dynos(&w.model);
        stale.sort();
        let mut expected = vec![
            (w.api.to_string(), "web.1-abcde".to_owned()),
            (w.api.to_string(), "worker.1-fghij".to_owned()),
            (w.other.to_string(), "web.1-klmno".to_owned()),
        ];
        expected.sort();
        assert_eq!(stale, expected, "the external runtime's dynos stay");
    }
}
