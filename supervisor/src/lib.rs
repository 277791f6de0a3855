//! The local supervisor, `wharf serve`'s embedded runtime: it runs each formation entry that has
//! a command as dynos on this machine.
//!
//! A dyno is `sh -c COMMAND` in its own process group, with the app's config vars, `PORT` (web
//! dynos get a free port unless the formation names one) and `DYNO`; it is everything in that
//! group, which is stopped as a whole (SIGTERM, SIGKILL after the grace) when the dyno is
//! stopped and when its shell exits. Each running group is recorded in the data directory, and
//! a start first stops the groups a killed Wharf left, but for its registered web dynos, which
//! serve until this run's replacements are healthy and are then drained and stopped (`adopt`):
//! a dyno the platform stops, whatever the reason, leaves the router before it stops, so
//! nothing about it is charged to its app or a canary of it. Wharf is its dynos' child subreaper and
//! reaps the orphans they leave. A web dyno is registered
//! with the control API, and so seen by the router, only once it passes its health check (a TCP
//! connect, or an HTTP `GET` of the formation's `healthcheck` path). Its output goes onto the log
//! bus as `app[web.<release>-<5 chars>]`, read in bounded pieces and never dropped unannounced.
//! A dyno that exits is unregistered, logged (`at=error code=H10 desc="App crashed"`) and
//! restarted with backoff, reset after a stable run.
//!
//! Any change to an entry's command, port, health check or the app's config vars rolls it: the
//! new dynos start and become healthy, then the old ones leave the router and stop one at a
//! time. If a new dyno fails before it is healthy, the new ones stop and the old ones keep
//! serving. A change of quantity alone scales the running release. Each such change is a
//! release of the app (the control API makes it), and every release rolls every entry of the
//! app, as on Heroku; once every entry has rolled, the supervisor settles the release
//! (`succeeded`, or `failed` if one entry's new dynos did not pass their health check).
//!
//! An app whose formation has a command belongs to the supervisor: dynos registered for it by
//! an earlier run are removed at start. Apps without commands are left to an external runtime.
//!
//! Each formation entry has its own task, and stops run in parallel: no app's stop, start or
//! roll waits on another's.
//!
//! This module holds the public API and the top task, which follows the control plane's model:
//! `desired` computes what should run, `service` keeps each web app's loopback service,
//! `formation` scales and rolls one formation entry, `dyno` runs one dyno's life with its
//! `restart` policy, its `process` (whose `output` goes to the bus and whose `group` is
//! stopped as a whole and kept in the `record`s), its health check `probe` and, before a web
//! dyno's stop, the wait for the router's requests at it (`in_flight`); `one_off` runs a
//! one-off dyno (`run:detached`) once with the same `process` code; `reaper` reaps adopted
//! orphans, and `procfs` reads what they need of `/proc`. A release with a slug runs in its own
//! unpacked directory (`release_dir`), and a release with a `release` process type first runs
//! that command once (`release_phase`, listed as dyno `release.N` meanwhile, and ended as a
//! failure when that dyno is stopped); the entries hear of the release only if it succeeded.
//!
//! A supervisor that starts while an app's release is pending (Wharf stopped or was killed in
//! its release phase or its roll) first runs the app's release that last succeeded
//! (`desired::serving_formations`), then goes on with the pending one from its start.

#![forbid(unsafe_code)]

mod adopt;
mod desired;
mod dyno;
mod formation;
mod group;
mod in_flight;
mod metrics;
mod one_off;
mod output;
mod probe;
mod process;
mod procfs;
mod reaper;
mod record;
mod registry;
mod release_dir;
mod release_phase;
mod restart;
mod service;
mod settings;
#[cfg(test)]
mod test_plane;
mod verdict;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use uuid::Uuid;
use wharf_bus::Publisher;
use wharf_control_api::ControlPlane;
use wharf_domain::DynoType;

use crate::desired::{FormationKey, desired_formations, stale_dynos, web_apps};
use crate::dyno::{DynoLauncher, stop_requested};
use crate::formation::{FormationHandle, FormationTarget, restart_command};
use crate::record::Records;
use crate::registry::Registry;
use crate::service::LoopbackService;
pub use crate::settings::{Count, InFlight, RESTART_MAX, RouterVersion, Settings};

/// A running supervisor.
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Starts following the control plane's formations on the current runtime: becomes the
    /// dynos' child subreaper, stops the process groups an earlier run recorded in
    /// `settings.records_dir` and left running (its registered web dynos once this run's are
    /// healthy), removes the dynos it registered for the apps
    /// it runs, then keeps every formation entry that has a command running until
    /// [`Supervisor::shutdown`].
    pub fn start(plane: Arc<ControlPlane>, publisher: Publisher, settings: Settings) -> Supervisor {
        let (stop, stopped) = watch::channel(false);
        // The control plane sees the dynos, and asks for restarts, through this alone. Restart
        // requests are subscribed to before the plane can send one.
        let registry = Arc::new(Registry::default());
        let restarts = registry.subscribe_restarts();
        let one_offs = registry.take_one_offs().expect("a new registry has its one-off queue");
        plane.set_local_runtime(registry.clone());
        plane.set_dyno_metrics(registry.metrics.clone());
        tokio::spawn(metrics::run(
            registry.metrics.clone(),
            publisher.clone(),
            settings.runtime_metrics_interval,
            stopped.clone(),
        ));
        let task = tokio::spawn(run(plane, registry, restarts, one_offs, publisher, settings, stopped));
        Supervisor { stop, task }
    }

    /// Stops every dyno (each leaves the router first) and returns when they are gone.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The top task: after each model change, opens or closes loopback services, then starts,
/// retargets or stops formation entries' tasks; between changes, hands restarts to them.
async fn run(
    plane: Arc<ControlPlane>,
    registry: Arc<Registry>,
    mut restarts: tokio::sync::broadcast::Receiver<wharf_control_api::Restart>,
    mut one_offs: tokio::sync::mpsc::UnboundedReceiver<(String, wharf_control_api::OneOff)>,
    publisher: Publisher,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) {
    reaper::start();
    // What an earlier run (a killed Wharf) left running, and of that what keeps serving until
    // this run's replacements are healthy (see `adopt`).
    let records = settings.records_dir.clone().map(Records::new);
    let orphans = records.as_ref().map(Records::living).unwrap_or_default();
    let (adopted, orphans) = plane.read(|m| adopt::adoptable(m, orphans)).await;
    // Every other dyno an earlier run registered for apps the supervisor runs is gone with
    // that run. The registrations go first, and the processes only after the connection
    // grace, as for any dyno the platform stops: the router, which starts with them, must not
    // be refused a connection by a dyno it reached, which it would charge to its app.
    let kept: BTreeSet<(String, String)> =
        adopted.iter().map(|a| (a.app_id.to_string(), a.orphan.dyno.clone())).collect();
    let mut unregistered = false;
    for (app, dyno) in plane.read(stale_dynos).await {
        if !kept.contains(&(app.clone(), dyno.clone())) {
            unregistered |= plane.delete_dyno(&app, &dyno).await.is_ok();
        }
    }
    if let Some(records) = &records {
        // What a killed Wharf left running and nobody adopts goes before anything starts: its
        // web dynos would hold fixed ports, and its workers would run twice.
        if unregistered && !orphans.is_empty() {
            tokio::time::sleep(settings.connection_grace).await;
        }
        let mut stops = tokio::task::JoinSet::new();
        for orphan in orphans {
            let (records, grace) = (records.clone(), settings.stop_grace);
            stops.spawn(async move {
                records.stop(&orphan, grace).await;
                format!("{} {}", orphan.app, orphan.dyno)
            });
        }
        let stopped = stops.join_all().await;
        if !stopped.is_empty() {
            tracing::warn!(dynos = ?stopped, "stopped the dynos an earlier run left running");
        }
    }
    // No one-off dyno runs now (an earlier run's were stopped above): their copies go.
    if let Some(root) = settings.releases_dir.clone() {
        let _ = tokio::task::spawn_blocking(move || release_dir::clear_runs(&root)).await;
    }
    let mut snapshots = plane.subscribe();
    let mut formations: HashMap<FormationKey, FormationHandle> = HashMap::new();
    // The release each app's entries were last told to roll to.
    let mut releases: HashMap<Uuid, Uuid> = HashMap::new();
    let mut services: HashMap<Uuid, LoopbackService> = HashMap::new();
    // Entries being stopped: their dynos' grace periods hold up no other entry.
    let mut stopping = tokio::task::JoinSet::new();
    // Adopted dynos retire there too, so that a stop of Wharf waits for them as for any dyno.
    if let Some(records) = &records {
        for (app_id, dynos) in adopt::by_app(adopted) {
            let names: Vec<&str> = dynos.iter().map(|o| o.dyno.as_str()).collect();
            tracing::info!(%app_id, dynos = ?names, "an earlier run's web dynos serve until this run's are healthy");
            let (plane, registry, records, settings) =
                (plane.clone(), registry.clone(), records.clone(), settings.clone());
            stopping.spawn(adopt::retire(plane, registry, records, settings, app_id, dynos, stopped.clone()));
        }
    }
    // Each running one-off dyno's own stop signal, by app and name: a one-off is never
    // restarted, so a restart or stop that names it (or all the app's dynos) stops it.
    let mut one_off_stops: HashMap<(Uuid, String), watch::Sender<bool>> = HashMap::new();
    // Each app's release phase (see `release_phase`): the release it ran for, and its outcome
    // (`None` while it runs). An app's entries are not told of a release until it passed.
    // At most one phase of an app runs at a time: a newer release waits for the running one
    // to end (Heroku's order), so that two migrations never run against one database at
    // once and a phase's outcome is known before any newer release can settle.
    let mut phases: HashMap<Uuid, (Uuid, Option<bool>)> = HashMap::new();
    // The running phases' own stop signals, by app: a deleted app's phase is stopped. The
    // sender is kept while the phase runs, since a dropped one reads as a stop.
    // A stop by name of the phase's dyno (`release.N`) ends it too, as a failure.
    let mut phase_stops: HashMap<Uuid, (String, watch::Sender<release_phase::PhaseStop>)> = HashMap::new();
    // The newer release each app's running phase was last said to hold back, so that the
    // app's log stream says it once.
    let mut phase_waits: HashMap<Uuid, Uuid> = HashMap::new();
    let (phase_tx, mut phase_rx) = tokio::sync::mpsc::unbounded_channel::<(Uuid, Uuid, bool)>();
    loop {
        while stopping.try_join_next().is_some() {}
        let web = plane.read(web_apps).await;
        for app in &web {
            if let Entry::Vacant(slot) = services.entry(app.id) {
                match LoopbackService::start(&app.name).await {
                    Ok(s) => {
                        slot.insert(s);
                    }
                    Err(e) => tracing::warn!(app = app.name, error = %e, "cannot open the app's service port"),
                }
            }
            if let Some(s) = services.get(&app.id) {
                s.set_dynos(app.dynos.clone());
            }
        }
        services.retain(|id, _| web.iter().any(|a| a.id == *id));
        let ports: HashMap<Uuid, u16> = services.iter().map(|(id, s)| (*id, s.port())).collect();
        // Before any dyno starts: the services it will see. A change here restarts nothing.
        registry.set_services(plane.read(|m| desired::service_env(m, &ports)).await);
        let mut desired = plane.read(desired_formations).await;
        // The first release this run tells an app's entries is its oldest pending one (Wharf
        // stopped while it was pending, with newer ones queued behind it): it rolls, and runs
        // its phase, again and gets its own verdict, rather than a newer release superseding it
        // (`desired::oldest_pending_formations`).
        // It stays their target until it has settled.
        let apps: BTreeSet<Uuid> = desired.keys().map(|k| k.app_id).collect();
        for app_id in apps {
            if let Some((oldest, first)) = plane.read(|m| desired::oldest_pending_formations(m, app_id)).await
                && releases.get(&app_id).is_none_or(|told| *told == oldest)
            {
                desired.retain(|k, _| k.app_id != app_id);
                desired.extend(first);
            }
        }
        // The `release` type is the release phase's command, never a formation of dynos.
        let release_commands: Vec<(FormationKey, desired::DesiredFormation)> = desired
            .iter()
            .filter(|(k, _)| k.dyno_type.as_str() == release_phase::RELEASE)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        desired.retain(|k, _| k.dyno_type.as_str() != release_phase::RELEASE);
        // Apps whose newest release waits for its release phase keep running what they run.
        let mut held: BTreeSet<Uuid> = BTreeSet::new();
        for (key, mut entry) in release_commands {
            let Some(mut release) = entry.spec.release else { continue };
            // The first phase this run starts for an app is that of its oldest pending release
            // with one (after a restart, the phase that was running), not the newest's.
            if !phases.contains_key(&key.app_id)
                && let Some(spec) =
                    plane.read(|m| desired::first_pending_phase(m, key.app_id, release_phase::RELEASE)).await
                && let Some(older) = spec.release.filter(|r| r.version < release.version)
            {
                release = older;
                entry.spec = spec;
            }
            match phases.get(&key.app_id) {
                Some((r, Some(true))) if *r == release.id => continue,
                Some((r, _)) if *r == release.id => {}
                // Another release's phase runs: this one waits for it to end.
                Some((_, None)) => {}
                _ => {
                    // A release settled before (by an earlier run of Wharf) ran its phase then.
                    let settled = plane
                        .read(|m| m.release(key.app_id, &release.id.to_string()).map(|r| (r.status, r.withdrawn)))
                        .await
                        .filter(|(s, _)| *s != wharf_control_api::model::ReleaseStatus::Pending);
                    if let Some((status, withdrawn)) = settled {
                        // A release that failed but was not withdrawn passed its phase: its roll
                        // failed, and it runs (the app's current release). Read as a failed phase,
                        // it held the app for good: no dyno after a restart, no scale (FE38).
                        let passed = status == wharf_control_api::model::ReleaseStatus::Succeeded || !withdrawn;
                        phases.insert(key.app_id, (release.id, Some(passed)));
                        if passed {
                            continue;
                        }
                        held.insert(key.app_id);
                        continue;
                    }
                    phases.insert(key.app_id, (release.id, None));
                    let cx = release_phase::PhaseContext {
                        plane: plane.clone(),
                        publisher: publisher.clone(),
                        settings: settings.clone(),
                        records: records.clone(),
                        registry: registry.clone(),
                    };
                    let (tx, app_id, stopped) = (phase_tx.clone(), key.app_id, stopped.clone());
                    let (stop, own) = watch::channel(None);
                    phase_stops.insert(key.app_id, (release_phase::dyno_name(release.version), stop));
                    let services = registry.services_of(key.app_id);
                    let spec = desired::DynoSpec { env: desired::start_env(&services, &entry.spec.env), ..entry.spec };
                    tokio::spawn(async move {
                        let ok = release_phase::run(cx, app_id, entry.app, spec, stopped, own).await;
                        let _ = tx.send((app_id, release.id, ok));
                    });
                }
            }
            held.insert(key.app_id);
        }
        // A deleted app's phase stops (its process group with it); a running phase holds every
        // newer release of its app, one without a release phase too, so that a phase that
        // fails is final: nothing newer settles before it and takes it along as superseded.
        let apps: HashMap<Uuid, Option<(Uuid, u32)>> =
            plane.read(|m| m.apps().map(|a| (a.id, m.latest_release(a.id).map(|r| (r.id, r.version)))).collect()).await;
        phase_stops.retain(|app_id, (_, stop)| {
            let kept = apps.contains_key(app_id);
            if !kept {
                stop.send_replace(Some(release_phase::APP_DELETED));
            }
            kept
        });
        phases.retain(|app_id, (_, outcome)| outcome.is_none() || apps.contains_key(app_id));
        phase_waits.retain(|app_id, _| phases.get(app_id).is_some_and(|(_, outcome)| outcome.is_none()));
        for (app_id, (running, outcome)) in &phases {
            let Some(newest) = apps.get(app_id) else { continue };
            if outcome.is_some() {
                continue;
            }
            held.insert(*app_id);
            if let Some((newer, version)) = newest.filter(|(r, _)| r != running)
                && phase_waits.insert(*app_id, newer) != Some(newer)
            {
                release_phase::say_waits(&plane, &publisher, *app_id, *running, version).await;
            }
        }
        // An entry with no task while its app's release is pending (a supervisor that starts
        // after Wharf stopped or was killed mid-phase or mid-roll) first runs the release that
        // last succeeded: production serves it again at once, the pending release's phase runs
        // again from its start (at least once, as on Heroku), and its roll is a roll like any,
        // which keeps the serving dynos if the new ones fail.
        // One way to make a formation entry's launcher, for the serving release's entries here
        // and every other entry below.
        let launcher_for = |key: &FormationKey, app: &str| DynoLauncher {
            plane: plane.clone(),
            publisher: publisher.clone(),
            settings: settings.clone(),
            app_id: key.app_id,
            app: app.to_owned(),
            dyno_type: key.dyno_type.clone(),
            records: records.clone(),
            registry: registry.clone(),
        };
        for (key, entry) in plane.read(desired::serving_formations).await {
            if formations.contains_key(&key) || key.dyno_type.as_str() == release_phase::RELEASE {
                continue;
            }
            if !held.contains(&key.app_id) && !desired.contains_key(&key) {
                continue;
            }
            let launcher = launcher_for(&key, &entry.app);
            let serving = FormationTarget { quantity: entry.quantity, spec: entry.spec };
            tracing::info!(app = entry.app, dyno_type = %key.dyno_type, "starting the release that last succeeded while a newer one is pending");
            let handle =
                FormationHandle::start_serving(launcher, &entry.app, &key.dyno_type, serving, settings.health_timeout);
            formations.insert(key, handle);
        }
        desired.retain(|k, _| !held.contains(&k.app_id) || formations.contains_key(k));
        // Before any entry hears of a new release: each will report how its roll ended.
        let mut rolling: HashMap<Uuid, (Uuid, BTreeSet<DynoType>)> = HashMap::new();
        for (key, entry) in &desired {
            if let Some(release) = entry.spec.release {
                rolling.entry(key.app_id).or_insert((release.id, BTreeSet::new())).1.insert(key.dyno_type.clone());
            }
        }
        for (app_id, (release, dyno_types)) in rolling {
            if held.contains(&app_id) {
                continue;
            }
            // Only a pending release waits for its entries' reports: after a failed release
            // the app's entries return to its current one, which nothing settles again (and
            // whose expectation would never be met).
            let pending = plane
                .read(|m| m.release(app_id, &release.to_string()).map(|r| r.status))
                .await
                .is_some_and(|s| s == wharf_control_api::model::ReleaseStatus::Pending);
            if releases.insert(app_id, release) != Some(release) && pending {
                registry.expect_release(release, dyno_types);
            }
        }
        releases.retain(|app_id, _| desired.keys().any(|k| k.app_id == *app_id));
        for (key, entry) in &desired {
            if held.contains(&key.app_id) {
                continue;
            }
            let target = FormationTarget { quantity: entry.quantity, spec: entry.spec.clone() };
            match formations.get(key) {
                Some(handle) => handle.set_target(target),
                None => {
                    let launcher = launcher_for(key, &entry.app);
                    let handle =
                        FormationHandle::start(launcher, &entry.app, &key.dyno_type, target, settings.health_timeout);
                    formations.insert(key.clone(), handle);
                }
            }
        }
        if let Some(root) = settings.releases_dir.clone() {
            // Directories no dyno runs in, past the app's newest `keep_releases`; their dynos
            // were listed before they unpacked, so a release being started is never among them.
            let mut keep = registry.running_releases();
            keep.extend(plane.read(|m| newest_releases(m, settings.keep_releases)).await);
            tokio::task::spawn_blocking(move || {
                let removed = release_dir::prune(&root, &keep);
                if !removed.is_empty() {
                    tracing::info!(releases = ?removed, "removed the directories of releases no dyno runs");
                }
            });
        }
        // An app held by its release phase keeps every entry it runs, even one the new release
        // drops: a release that fails its phase changes nothing that runs, as on Heroku. So does
        // an app whose release is rolling: the entries it drops stop once it has succeeded, and
        // if it fails they still run, and the app's formation gets them back.
        let rolling_apps: BTreeSet<Uuid> = plane
            .read(|m| {
                m.apps()
                    .filter(|a| {
                        m.running_release(a.id)
                            .is_some_and(|r| r.status == wharf_control_api::model::ReleaseStatus::Pending)
                    })
                    .map(|a| a.id)
                    .collect()
            })
            .await;
        let gone: Vec<_> = formations
            .keys()
            .filter(|k| !desired.contains_key(*k) && !held.contains(&k.app_id) && !rolling_apps.contains(&k.app_id))
            .cloned()
            .collect();
        for key in gone {
            if let Some(handle) = formations.remove(&key) {
                stopping.spawn(handle.stop());
            }
        }
        loop {
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return stop_all(formations, stopping).await } else { break },
                restart = restarts.recv() => match restart {
                    Ok(r) => {
                        one_off_stops.retain(|_, stop| !stop.is_closed());
                        for ((app_id, name), stop) in &one_off_stops {
                            if *app_id == r.app_id && r.dyno.as_ref().is_none_or(|d| d == name) {
                                stop.send_replace(true);
                            }
                        }
                        // The app's release phase, stopped by its name only.
                        if let Some((name, stop)) = phase_stops.get(&r.app_id)
                            && r.dyno.as_ref() == Some(name)
                        {
                            stop.send_replace(Some(release_phase::STOPPED_BY_REQUEST));
                        }
                        // To the app's formation entries: all of them, or the one whose type the dyno has.
                        for (key, handle) in formations.iter().filter(|(k, _)| k.app_id == r.app_id) {
                            if let Some(command) = restart_command(&r, &key.dyno_type) {
                                handle.command(command);
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "restart requests came faster than they were handled");
                    }
                    Err(RecvError::Closed) => return stop_all(formations, stopping).await,
                },
                Some((name, one_off)) = one_offs.recv() => {
                    // Into `stopping`, so that a stop waits for it as for any dyno.
                    let cx = one_off::OneOffContext {
                        plane: plane.clone(),
                        publisher: publisher.clone(),
                        settings: settings.clone(),
                        records: records.clone(),
                        registry: registry.clone(),
                    };
                    let (stop, own) = watch::channel(false);
                    one_off_stops.retain(|_, stop| !stop.is_closed());
                    one_off_stops.insert((one_off.app_id, name.clone()), stop);
                    stopping.spawn(one_off::run(cx, name, one_off, stopped.clone(), own));
                }
                Some((app_id, release, ok)) = phase_rx.recv() => {
                    if phases.get(&app_id).is_some_and(|(r, _)| *r == release) {
                        phases.insert(app_id, (release, Some(ok)));
                        phase_stops.remove(&app_id);
                    }
                    if !ok {
                        match plane.settle_release(app_id, release, false).await {
                            Ok(settled) if settled != wharf_control_api::Settled::default() => {
                                let named = plane
                                    .read(|m| {
                                        let app = m.apps().find(|a| a.id == app_id).map(|a| m.app_key(a).to_string());
                                        app.zip(m.release(app_id, &release.to_string()).map(|r| r.version))
                                    })
                                    .await;
                                if let Some((app, version)) = named {
                                    dyno::report_settled(&publisher, &app, version, false, &settled);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot record a failed release phase"),
                        }
                    }
                    break;
                }
                () = stop_requested(&mut stopped) => return stop_all(formations, stopping).await,
            }
        }
    }
}

/// Every app's newest `n` releases, and its newest whatever `n` is (its dynos are about to
/// start in it).
fn newest_releases(m: &wharf_control_api::model::Model, n: usize) -> std::collections::HashSet<Uuid> {
    let mut keep = std::collections::HashSet::new();
    for app in m.apps() {
        let releases = m.releases_of(app.id);
        keep.extend(releases.iter().rev().take(n.max(1)).map(|r| r.id));
    }
    keep
}

/// Stops every formation entry's dynos, all entries at once, and waits for those already
/// `stopping`.
async fn stop_all(formations: HashMap<FormationKey, FormationHandle>, mut stopping: tokio::task::JoinSet<()>) {
    for (_, handle) in formations {
        stopping.spawn(handle.stop());
    }
    while stopping.join_next().await.is_some() {}
}
