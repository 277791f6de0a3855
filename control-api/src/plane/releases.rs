//! Releases (Heroku's release resource): every change to an app's config vars or to its
//! formation's commands, ports or health checks makes a release `vN` in the same commit as the
//! change; a rollback restores an older release's config vars and commands as a new release.
//!
//! A release holds the whole state it describes (config vars and each process type's command,
//! port and health check), not a delta, so that a rollback needs nothing else. Quantities are not
//! part of a release: scaling is not a release on Heroku either, and a rollback does not scale.
//!
//! A release starts `pending` when the local supervisor runs the app (its formation has a
//! command); the supervisor settles it ([`ControlPlane::settle_release`]) once the new dynos
//! pass their health check (`succeeded`) or the roll keeps the old ones (`failed`). Any other
//! release (an app whose dynos an external runtime registers, or a control API without a local
//! runtime) is `succeeded` at once: Wharf has nothing to wait for.

use std::collections::BTreeMap;

use uuid::Uuid;
use wharf_domain::new_id;
use wharf_domain::timestamp::now_seconds;

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use crate::model::{Brings, Change, ConfigVars, Formation, Model, Object, Release, ReleaseProcess, ReleaseStatus};

/// The description of app creation's release, as Heroku writes it.
pub const INITIAL_RELEASE: &str = "Initial release";

/// Refuses (422) a rollback or promotion to a release whose slug was deleted (it left every
/// app's window of `control_api.keep_slugs` releases): its code is gone, and running the
/// release would fail to start every dyno.
pub(super) fn check_slug_kept(m: &Model, release: &Release) -> Result<(), Error> {
    match release.slug_id {
        Some(slug) if m.slug(slug).is_none() => Err(Error::Invalid(format!(
            "the slug of release v{} ({slug}) was deleted: only the slugs of each app's newest control_api.keep_slugs \
             releases are kept",
            release.version
        ))),
        _ => Ok(()),
    }
}

/// Refuses (422) a rollback to `release` when it cannot be one: a release that failed (its
/// release phase, its dynos' health check, or its canary: its code or config never ran, and
/// rolling back to it would fail again, so Heroku's releases say `eligible_for_rollback:
/// false`), one still pending (its release phase or roll has not ended: as on Heroku, only a
/// release that went live is a rollback target, and rolling back to one whose phase then
/// fails would run that phase again), or one whose slug was deleted (`check_slug_kept`). The
/// release JSON's `eligible_for_rollback` is this check. A release without code (no slug, such as v1,
/// `Initial release`) is no target either while the app runs code: rolling back to it would
/// take every process type's command away and stop the app (FE21b #7). Apps that never had a
/// slug (commands alone, or an external runtime) roll back among their slug-less releases.
pub fn check_rollback_target(m: &Model, release: &Release) -> Result<(), Error> {
    if release.status == ReleaseStatus::Failed {
        return Err(Error::Invalid(format!(
            "release v{} failed: it cannot be rolled back to (roll back to a release that succeeded, or release a fix)",
            release.version
        )));
    }
    if release.status == ReleaseStatus::Pending {
        return Err(Error::Invalid(format!(
            "release v{} is pending (its release phase or roll has not ended): only a release that went live can be rolled back to",
            release.version
        )));
    }
    if release.slug_id.is_none() && m.running_release(release.app_id).is_some_and(|r| r.slug_id.is_some()) {
        return Err(Error::Invalid(format!(
            "release v{} has no code (no slug) and the app runs code: rolling back to it would stop every process type (roll back to a release with a slug)",
            release.version
        )));
    }
    check_slug_kept(m, release)
}

/// Makes `release` (a change [`ControlPlane::new_release`] made) one that brings its own code,
/// `slug_id` (or none), rather than changes to the release before it: a deploy, a rollback, a
/// promotion. Such a release is never rebased when the release it waited for fails.
pub(super) fn bring_code(release: &mut Change, slug_id: Option<Uuid>) {
    if let Change::Put(Object::Release(r)) = release {
        r.slug_id = slug_id;
        r.brings = Brings::Code;
    }
}

/// A formation's process types as a release holds them, by type.
pub(super) fn processes_of<'a>(formation: impl IntoIterator<Item = &'a Formation>) -> Vec<ReleaseProcess> {
    let mut out: Vec<ReleaseProcess> = formation
        .into_iter()
        .map(|f| ReleaseProcess {
            dyno_type: f.dyno_type.clone(),
            command: f.command.clone(),
            port: f.port,
            healthcheck: f.healthcheck.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.dyno_type.as_str().cmp(b.dyno_type.as_str()));
    out
}

/// Heroku's description of a config vars change: `Set A, B config vars`, `Remove C config
/// vars`, or both joined by `; `. Only names whose value changed are named.
pub(super) fn config_description(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let set: Vec<&str> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k.as_str()).collect();
    let removed: Vec<&str> = before.keys().filter(|k| !after.contains_key(*k)).map(String::as_str).collect();
    let mut parts = Vec::new();
    if !set.is_empty() {
        parts.push(format!("Set {} config vars", set.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("Remove {} config vars", removed.join(", ")));
    }
    parts.join("; ")
}

/// The description of a change to process types' commands, ports or health checks, or `None`
/// when nothing a release holds changed: `Set web command`, `Set web command, port; Remove
/// worker process`.
pub(super) fn formation_description(before: &[ReleaseProcess], after: &[ReleaseProcess]) -> Option<String> {
    let mut parts = Vec::new();
    for p in after {
        let old = before.iter().find(|o| o.dyno_type == p.dyno_type);
        let mut fields = Vec::new();
        if old.map(|o| &o.command) != Some(&p.command) && (old.is_some() || p.command.is_some()) {
            fields.push("command");
        }
        if old.map(|o| o.port) != Some(p.port) && (old.is_some() || p.port.is_some()) {
            fields.push("port");
        }
        if old.map(|o| &o.healthcheck) != Some(&p.healthcheck) && (old.is_some() || p.healthcheck.is_some()) {
            fields.push("healthcheck");
        }
        if !fields.is_empty() {
            parts.push(format!("Set {} {}", p.dyno_type, fields.join(", ")));
        }
    }
    for o in before.iter().filter(|o| !after.iter().any(|p| p.dyno_type == o.dyno_type)) {
        if o.command.is_some() || o.port.is_some() || o.healthcheck.is_some() {
            parts.push(format!("Remove {} process", o.dyno_type));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The changes that make an app's formation run `processes`: each process type's command,
/// port and health check become those of `processes` (types it lacks lose theirs; types only
/// it has come in with quantity 0). Quantities stay. What a rollback and a promotion share.
pub(super) fn restore_processes(m: &Model, app_id: Uuid, processes: &[ReleaseProcess], now: i64) -> Vec<Change> {
    let mut changes = Vec::new();
    let formation = m.formation_of(app_id);
    for f in &formation {
        let restored = processes.iter().find(|p| p.dyno_type == f.dyno_type);
        let (command, port, healthcheck) =
            restored.map_or((None, None, None), |p| (p.command.clone(), p.port, p.healthcheck.clone()));
        if (&f.command, f.port, &f.healthcheck) != (&command, port, &healthcheck) {
            let f = Formation { command, port, healthcheck, updated_at: now, ..(*f).clone() };
            changes.push(Change::Put(Object::Formation(f)));
        }
    }
    for p in processes.iter().filter(|p| !formation.iter().any(|f| f.dyno_type == p.dyno_type)) {
        changes.push(Change::Put(Object::Formation(Formation {
            id: new_id(),
            app_id,
            dyno_type: p.dyno_type.clone(),
            quantity: 0,
            command: p.command.clone(),
            port: p.port,
            healthcheck: p.healthcheck.clone(),
            size: None,
            created_at: now,
            updated_at: now,
        })));
    }
    changes
}

/// The changes that give an app whose newest release `failed` failed back to `base`: its
/// running release (the newest that succeeded), or the last of the releases of changes queued
/// behind `failed` as [`rebase_queued`] rebased them onto it: `base`'s config vars and process
/// types, and, for a type `failed` scaled to 0 while `base` has a command for it, the number
/// of its dynos that still run (`running`, by type).
fn restore_running(
    m: &Model,
    app_id: Uuid,
    failed: &Release,
    base: &Release,
    running: &BTreeMap<String, u32>,
    now: i64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let vars = m.config_vars_of(app_id).map(|c| &c.vars);
    if vars != Some(&base.config_vars) {
        let vars = ConfigVars { id: app_id, vars: base.config_vars.clone(), updated_at: now };
        changes.push(Change::Put(Object::ConfigVars(vars)));
    }
    for mut change in restore_processes(m, app_id, &base.processes, now) {
        if let Change::Put(Object::Formation(f)) = &mut change
            && f.quantity == 0
            && dropped(failed, base, f.dyno_type.as_str())
        {
            f.quantity = running.get(f.dyno_type.as_str()).copied().unwrap_or(0);
        }
        changes.push(change);
    }
    // A process type the failed release brought (no release before it declared one) leaves the
    // formation with it while it has no dynos: the formation shows what `base` runs, not a
    // command-less entry of the failed code's (FE29 LOW-2: a failed deploy's `release` type).
    let declares = |r: &Release, t: &str| r.processes.iter().any(|p| p.dyno_type.as_str() == t);
    let declared_before =
        |t: &str| m.releases_of(app_id).into_iter().any(|r| r.version < failed.version && declares(r, t));
    for f in m.formation_of(app_id) {
        let t = f.dyno_type.as_str();
        if f.quantity == 0 && declares(failed, t) && !declares(base, t) && !declared_before(t) {
            changes.retain(|c| !matches!(c, Change::Put(Object::Formation(p)) if p.id == f.id));
            changes.extend(m.cascade(crate::model::Kind::Formation, f.id));
        }
    }
    // A type whose command a rebased release set already (a command change made while the
    // failed release was pending) gets its dynos back all the same.
    let back = give_back_dropped(m, app_id, failed, base, running, &changes, now);
    changes.extend(back);
    changes
}

/// Whether `base` runs a command for process type `t` that `failed` dropped.
fn dropped(failed: &Release, base: &Release, t: &str) -> bool {
    let declared = |p: &[ReleaseProcess]| p.iter().any(|p| p.dyno_type.as_str() == t && p.command.is_some());
    declared(&base.processes) && !declared(&failed.processes)
}

/// The changes that give each formation entry `failed` dropped (scaled to 0) and `base` runs
/// the dynos of it that still run (`running`, by type): the failed release's scale-down never
/// ran (its phase or roll failed first). Entries `put` already changes are left to it.
fn give_back_dropped(
    m: &Model,
    app_id: Uuid,
    failed: &Release,
    base: &Release,
    running: &BTreeMap<String, u32>,
    put: &[Change],
    now: i64,
) -> Vec<Change> {
    let put = |f: &Formation| put.iter().any(|c| matches!(c, Change::Put(Object::Formation(p)) if p.id == f.id));
    m.formation_of(app_id)
        .into_iter()
        .filter(|f| !put(f) && f.quantity == 0 && dropped(failed, base, f.dyno_type.as_str()))
        .filter_map(|f| {
            let quantity = running.get(f.dyno_type.as_str()).copied().unwrap_or(0);
            (quantity != 0)
                .then(|| Change::Put(Object::Formation(Formation { quantity, updated_at: now, ..f.clone() })))
        })
        .collect()
}

/// The releases of changes ([`Brings::Changes`]: config vars, commands) that wait behind
/// `failed`, whose release phase or roll failed, rebased onto `base` (the app's running release,
/// the newest that succeeded): each keeps what it changed in the release before it (the config
/// vars it set or removed, the process types whose command, port or health check it changed)
/// and takes the rest, its slug with it, from the release it now follows. They go in version
/// order and stop at the first release that is not pending or brings its own code (a deploy, a
/// rollback: it and those after it never held the failed code as theirs). Returned in version
/// order, as they are to be stored: a change of config made during a failing migration then
/// runs on the code that serves, as on Heroku, rather than running the failed code again.
pub(super) fn rebase_queued(m: &Model, app_id: Uuid, failed: &Release, base: &Release, now: i64) -> Vec<Release> {
    let mut out: Vec<Release> = Vec::new();
    let mut before = failed;
    for r in m.releases_of(app_id).into_iter().filter(|r| r.version > failed.version) {
        if r.status != ReleaseStatus::Pending || r.brings != Brings::Changes {
            break;
        }
        let onto = out.last().unwrap_or(base);
        let mut config_vars = onto.config_vars.clone();
        for (k, v) in &r.config_vars {
            if before.config_vars.get(k) != Some(v) {
                config_vars.insert(k.clone(), v.clone());
            }
        }
        for k in before.config_vars.keys().filter(|k| !r.config_vars.contains_key(*k)) {
            config_vars.remove(k);
        }
        let process = |p: &[ReleaseProcess], t: &wharf_domain::DynoType| p.iter().find(|p| &p.dyno_type == t).cloned();
        let mut types: Vec<_> = onto.processes.iter().chain(&r.processes).map(|p| p.dyno_type.clone()).collect();
        types.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        types.dedup();
        let processes = types
            .iter()
            .filter_map(|t| {
                let changed = process(&before.processes, t) != process(&r.processes, t);
                if changed { process(&r.processes, t) } else { process(&onto.processes, t) }
            })
            .collect();
        let rebased = Release { config_vars, processes, slug_id: onto.slug_id, updated_at: now, ..r.clone() };
        before = r;
        out.push(rebased);
    }
    out
}

/// What settling a release did beside it ([`ControlPlane::settle_release`]): the versions of the
/// older pending releases that settled with it (superseded), and of the newer releases of
/// changes that waited for it and were rebased onto the running release (it failed).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Older releases that were still pending, now settled as it was.
    pub superseded: Vec<u32>,
    /// Newer releases of changes rebased onto the running release, and the version it is.
    pub rebased: Option<(Vec<u32>, u32)>,
}

impl ControlPlane {
    /// The change that records a new release of the app holding `config_vars` and `processes`:
    /// the next version, `pending` if the local supervisor will roll to it, else `succeeded`.
    pub(super) fn new_release(
        &self,
        m: &Model,
        app_id: Uuid,
        description: String,
        config_vars: BTreeMap<String, String>,
        processes: Vec<ReleaseProcess>,
    ) -> Change {
        let version = m.latest_release(app_id).map_or(1, |r| r.version + 1);
        // Only a supervisor in this process rolls dynos and reports back; without one, or for an
        // app without commands, nothing would ever settle a pending release.
        let rolled = self.local.get().is_some() && processes.iter().any(|p| p.command.is_some());
        let status = if rolled { ReleaseStatus::Pending } else { ReleaseStatus::Succeeded };
        let now = now_seconds();
        Change::Put(Object::Release(Release {
            id: new_id(),
            app_id,
            version,
            description,
            status,
            config_vars,
            processes,
            // A change of config vars or commands runs the same code as before it; a caller
            // that brings code of its own says so (`bring_code`).
            slug_id: m.running_release(app_id).and_then(|r| r.slug_id),
            withdrawn: false,
            brings: Brings::Changes,
            output: Vec::new(),
            created_at: now,
            updated_at: now,
        }))
    }

    /// Rolls an app back to one of its releases (by id, `N` or `vN`): its config vars, its slug
    /// and each process type's command, port and health check become the release's, as a new release
    /// `Rollback to vN`. Process types the release did not have lose their command, port and
    /// health check; those it had and the formation lacks come back with quantity 0. Quantities
    /// stay. Refused (404) for a release the app does not have, and (422) for one that failed
    /// or whose slug was deleted ([`check_rollback_target`]); nothing changes then.
    pub async fn rollback(&self, app: &str, release: &str) -> Result<Release, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let target = m.release(a.id, release).ok_or_else(|| not_found("release", release))?;
            super::canary_releases::refuse_during_canary(m, a.id)?;
            check_rollback_target(m, target)?;
            let now = now_seconds();
            let description = format!("Rollback to v{}", target.version);
            let mut release =
                self.new_release(m, a.id, description, target.config_vars.clone(), target.processes.clone());
            // The code comes back too: a rollback runs the target's slug (or none).
            bring_code(&mut release, target.slug_id);
            let Change::Put(Object::Release(out)) = &release else { unreachable!("new_release puts a release") };
            let mut out = out.clone();
            // A production app with the canary feature runs it as a canary first.
            if let Some(canary) = self.start_canary_release(m, a, &out, None)? {
                out.status = ReleaseStatus::Pending;
                return Ok((out, canary));
            }
            let mut changes = Vec::new();
            let vars = ConfigVars { id: a.id, vars: target.config_vars.clone(), updated_at: now };
            changes.push(Change::Put(Object::ConfigVars(vars)));
            changes.extend(restore_processes(m, a.id, &target.processes, now));
            changes.push(release);
            Ok((out, changes))
        })
        .await
    }

    /// Settles a pending release as the local supervisor saw its roll end: `succeeded` when the
    /// new dynos passed their health check, else `failed`. Returns the versions of the older
    /// releases of the app that were still pending: a release superseded before its dynos came up
    /// (two deploys in a row, parallel builds) was never tried on its own, and settles with the
    /// outcome of the release that superseded it. As on Heroku, a release whose deploy went
    /// through is `succeeded` even when a later one replaced it at once (only the current one
    /// runs), so it can still be promoted or rolled back to; when the later one failed, so did
    /// the deploy they shared, and the older one is `failed` too rather than becoming the
    /// current release without ever having run. The caller says so in the app's log stream. A
    /// release that is not pending (or no longer exists) is left as it is, and nothing is
    /// returned.
    ///
    /// A failed release that no dyno runs (its release phase failed, or its roll kept the old
    /// dynos) is withdrawn: nothing builds on it. When it is the app's newest, it also gives the
    /// app back to its current release: in the same commit, the app's config vars and its formation's commands,
    /// ports and health checks become those of its current release again (see
    /// [`Model::running_release`]), so the formation shows what serves and the next config
    /// change builds on the code that runs. A process type the failed release dropped (scaled
    /// to 0) gets back as many dynos as the local runtime still runs of it: a failed release
    /// phase never stopped them. A failed release whose dynos replaced unhealthy ones anyway (a
    /// first boot) runs, and stays the base, retried with backoff.
    pub async fn settle_release(&self, app_id: Uuid, release_id: Uuid, succeeded: bool) -> Result<Settled, Error> {
        self.settle(app_id, release_id, succeeded, None).await
    }

    /// Settles a pending release as [`ControlPlane::settle_release`] does, for a runtime that
    /// knows whether a failed release runs (`failed_runs`: one of its process types' new dynos
    /// took the place of old ones that were not healthy either, so they stay and are retried)
    /// rather than having it guessed from the dynos listed. A release that failed and does not
    /// run is withdrawn even while another process type's dynos of it still run (a worker that
    /// came up while the web dynos crashed): those roll back with the rest, so the release the
    /// API calls current is the one every process type runs.
    pub async fn settle_rolled_release(
        &self,
        app_id: Uuid,
        release_id: Uuid,
        succeeded: bool,
        failed_runs: bool,
    ) -> Result<Settled, Error> {
        self.settle(app_id, release_id, succeeded, Some(failed_runs)).await
    }

    /// What [`ControlPlane::settle_release`] and [`ControlPlane::settle_rolled_release`] share:
    /// `failed_runs` as the runtime says it, or guessed from its dynos when it says nothing.
    async fn settle(
        &self,
        app_id: Uuid,
        release_id: Uuid,
        succeeded: bool,
        failed_runs: Option<bool>,
    ) -> Result<Settled, Error> {
        // What runs, read before the change: dynos are the runtime's, not the model's.
        let dynos: Vec<_> = self.local_runtime().dynos(app_id).into_iter().filter(|d| d.one_off.is_none()).collect();
        let mut running: BTreeMap<String, u32> = BTreeMap::new();
        for d in &dynos {
            *running.entry(d.dyno_type.to_string()).or_default() += 1;
        }
        // A roll that found no healthy dyno to keep replaced them anyway: that release runs,
        // and is retried with backoff, so it is not withdrawn.
        let runs = failed_runs.unwrap_or_else(|| dynos.iter().any(|d| d.release.is_some_and(|r| r.id == release_id)));
        self.change(|m| {
            let Some(r) = m.releases_of(app_id).into_iter().find(|r| r.id == release_id) else {
                return Ok((Settled::default(), vec![]));
            };
            if r.status != ReleaseStatus::Pending {
                return Ok((Settled::default(), vec![]));
            }
            let now = now_seconds();
            let status = if succeeded { ReleaseStatus::Succeeded } else { ReleaseStatus::Failed };
            let newest = m.latest_release(app_id).is_some_and(|l| l.id == r.id);
            // Withdrawn whether or not it is the newest: a release whose phase failed while a
            // newer one waited for it must not become the base when that newer one fails too.
            let withdrawn = !succeeded && !runs && m.current_release(app_id).is_some();
            let settled = Release { status, withdrawn, updated_at: now, ..r.clone() };
            let mut changes = vec![Change::Put(Object::Release(settled))];
            let superseded: Vec<&Release> = m
                .releases_of(app_id)
                .into_iter()
                .filter(|o| o.version < r.version && o.status == ReleaseStatus::Pending)
                .collect();
            let versions = superseded.iter().map(|o| o.version).collect();
            for o in superseded {
                let mut settled = Release { status, withdrawn, updated_at: now, ..o.clone() };
                // Its phase never ran (a phase that ran stored its lines): its output URL says so.
                if settled.output.is_empty() && super::has_release_phase(o) {
                    settled.output = vec![super::output_states::superseded_line(o.version, r.version, status)];
                }
                changes.push(Change::Put(Object::Release(settled)));
            }
            let mut settled = Settled { superseded: versions, rebased: None };
            // `r` is still pending in `m`, and the older pending ones settle with it: the
            // release to return to is the newest that succeeded.
            if withdrawn && let Some(base) = m.current_release(app_id) {
                let rebased = rebase_queued(m, app_id, r, base, now);
                // The app's state is the newest release's: `base` again, or the last rebased
                // one when it is the newest (a release of code after them keeps its own).
                let last = rebased.last().filter(|l| m.latest_release(app_id).is_some_and(|n| n.id == l.id));
                if newest || last.is_some() {
                    changes.extend(restore_running(m, app_id, r, last.unwrap_or(base), &running, now));
                } else if let Some(latest) = m.latest_release(app_id) {
                    // A newer release of code made meanwhile (a rollback, a deploy) keeps its own
                    // state, but a type the failed release dropped and it runs keeps its dynos.
                    changes.extend(give_back_dropped(m, app_id, r, latest, &running, &[], now));
                }
                if !rebased.is_empty() {
                    settled.rebased = Some((rebased.iter().map(|r| r.version).collect(), base.version));
                }
                changes.extend(rebased.into_iter().map(|r| Change::Put(Object::Release(r))));
            }
            Ok((settled, changes))
        })
        .await
    }
}
