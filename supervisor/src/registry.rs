//! The supervisor's side of the control API's local-runtime port: which dynos it runs, in what
//! state, the restart requests the control plane hands it, and which releases it is rolling to
//! (an app's release is settled once every formation entry of the app has rolled to it).
//!
//! The control plane sees this only as a `wharf_control_api::LocalRuntime` (plugged in with
//! `ControlPlane::set_local_runtime` when the supervisor starts). Dynos record themselves here
//! as they start, change state and stop; nothing here is stored, it lives as long as the process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;
use wharf_control_api::{DynoState, LocalDyno, LocalRuntime, OneOff, Restart};
use wharf_domain::DynoType;

use crate::metrics::DynoMetrics;

/// A release the supervisor is rolling an app to: the formation entries that have not reported
/// yet, whether one that did failed, whether one that failed runs all the same (its new dynos
/// replaced old ones that were not healthy either), and whether one that failed kept its old
/// dynos instead.
#[derive(Debug)]
struct Rolling {
    waiting: BTreeSet<DynoType>,
    failed: bool,
    failed_runs: bool,
    failed_kept_old: bool,
}

/// How the roll to a release ended, once every formation entry of its app reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollOutcome {
    /// Every entry's new dynos passed their health check.
    pub(crate) succeeded: bool,
    /// Every entry whose new dynos failed put them in the place of old ones that were not
    /// healthy either (a first boot, or dynos that all crashed): the failed release runs, in
    /// every process type. Otherwise an entry that failed kept its old dynos (or none kept the
    /// new ones), and the release is withdrawn (`ControlPlane::settle_rolled_release`): the
    /// entries that run it roll back with the rest, so that no app runs two releases at once
    /// while the API calls one of them current (FE37).
    pub(crate) failed_runs: bool,
}

/// The dynos this supervisor runs, by app and name, and the channel restart requests arrive on.
#[derive(Debug)]
pub(crate) struct Registry {
    dynos: Mutex<BTreeMap<Uuid, BTreeMap<String, LocalDyno>>>,
    restarts: broadcast::Sender<Restart>,
    /// Releases being rolled to, by release id.
    rolling: Mutex<HashMap<Uuid, Rolling>>,
    /// One-off dynos to start, with their names, for the top task.
    one_offs: mpsc::UnboundedSender<(String, OneOff)>,
    /// The top task's end of `one_offs`, until it takes it.
    one_offs_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, OneOff)>>>,
    /// The last one-off number given, per app: `run.1`, `run.2`, ...
    runs: Mutex<HashMap<Uuid, u32>>,
    /// Every dyno's sampled figures; each dyno's process is sampled while it runs.
    pub(crate) metrics: Arc<DynoMetrics>,
    /// Each app's view of its space's services (`desired::service_env`), as the top task last
    /// saw them: what a dyno starting now gets.
    services: Mutex<HashMap<Uuid, BTreeMap<String, String>>>,
    /// Which rolls failed, and which web dynos of each roll are registered with the router: a
    /// failed roll's dynos leave the router at once and are never registered again (`verdict`).
    pub(crate) verdicts: crate::verdict::Verdicts,
}

impl Default for Registry {
    fn default() -> Self {
        // Restarts are rare and the top task takes them at once; 64 queued is plenty.
        let (one_offs, rx) = mpsc::unbounded_channel();
        Registry {
            dynos: Mutex::default(),
            restarts: broadcast::channel(64).0,
            rolling: Mutex::default(),
            one_offs,
            one_offs_rx: Mutex::new(Some(rx)),
            runs: Mutex::default(),
            metrics: Arc::default(),
            services: Mutex::default(),
            verdicts: crate::verdict::Verdicts::default(),
        }
    }
}

impl Registry {
    /// Records a dyno, or replaces its listing.
    pub(crate) fn set(&self, app_id: Uuid, dyno: LocalDyno) {
        self.dynos.lock().expect("registry lock").entry(app_id).or_default().insert(dyno.name.clone(), dyno);
    }

    /// Sets a recorded dyno's state; a dyno not recorded is left unrecorded.
    pub(crate) fn set_state(&self, app_id: Uuid, name: &str, state: DynoState) {
        let mut all = self.dynos.lock().expect("registry lock");
        if let Some(d) = all.get_mut(&app_id).and_then(|a| a.get_mut(name)) {
            d.state = state;
        }
    }

    /// Forgets a dyno that stopped.
    pub(crate) fn remove(&self, app_id: Uuid, name: &str) {
        let mut all = self.dynos.lock().expect("registry lock");
        if let Some(app) = all.get_mut(&app_id) {
            app.remove(name);
            if app.is_empty() {
                all.remove(&app_id);
            }
        }
    }

    /// Keeps each app's view of its space's services, for the dynos that start from now on.
    pub(crate) fn set_services(&self, services: HashMap<Uuid, BTreeMap<String, String>>) {
        *self.services.lock().expect("registry lock") = services;
    }

    /// The service variables a dyno of `app_id` starting now gets.
    pub(crate) fn services_of(&self, app_id: Uuid) -> BTreeMap<String, String> {
        self.services.lock().expect("registry lock").get(&app_id).cloned().unwrap_or_default()
    }

    /// Starts waiting for the formation entries `dyno_types` to roll to `release`; nothing
    /// happens when that release is already waited for.
    pub(crate) fn expect_release(&self, release: Uuid, dyno_types: BTreeSet<DynoType>) {
        let mut rolling = self.rolling.lock().expect("registry lock");
        rolling.entry(release).or_insert(Rolling {
            waiting: dyno_types,
            failed: false,
            failed_runs: false,
            failed_kept_old: false,
        });
    }

    /// Records that the entry `dyno_type` rolled to `release`, its dynos `healthy` or not, and
    /// whether they run now (`kept`: healthy, or put in the place of old dynos that were not
    /// healthy either). Returns the release's outcome once the last entry waited for has
    /// reported, and forgets the release; `None` before, and for a release not waited for (a
    /// restart's roll, or a report already counted).
    pub(crate) fn release_outcome(
        &self,
        release: Uuid,
        dyno_type: &DynoType,
        healthy: bool,
        kept: bool,
    ) -> Option<RollOutcome> {
        let mut rolling = self.rolling.lock().expect("registry lock");
        let r = rolling.get_mut(&release)?;
        if !r.waiting.remove(dyno_type) {
            return None;
        }
        r.failed |= !healthy;
        r.failed_runs |= !healthy && kept;
        r.failed_kept_old |= !healthy && !kept;
        if !r.waiting.is_empty() {
            return None;
        }
        let outcome = RollOutcome { succeeded: !r.failed, failed_runs: r.failed_runs && !r.failed_kept_old };
        rolling.remove(&release);
        Some(outcome)
    }

    /// The one-off dynos the control plane asks for, with their names; only the first call gets
    /// them.
    pub(crate) fn take_one_offs(&self) -> Option<mpsc::UnboundedReceiver<(String, OneOff)>> {
        self.one_offs_rx.lock().expect("registry lock").take()
    }

    /// Restart requests from the control plane, from now on.
    /// The releases some listed dyno runs (or is starting): their directories stay.
    pub(crate) fn running_releases(&self) -> std::collections::HashSet<Uuid> {
        let all = self.dynos.lock().expect("registry lock");
        all.values().flat_map(|app| app.values()).filter_map(|d| d.release.map(|r| r.id)).collect()
    }

    /// Subscribes to restart requests.
    pub(crate) fn subscribe_restarts(&self) -> broadcast::Receiver<Restart> {
        self.restarts.subscribe()
    }
}

impl LocalRuntime for Registry {
    fn dynos(&self, app_id: Uuid) -> Vec<LocalDyno> {
        self.dynos
            .lock()
            .expect("registry lock")
            .get(&app_id)
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default()
    }

    fn dyno(&self, app_id: Uuid, name: &str) -> Option<LocalDyno> {
        self.dynos.lock().expect("registry lock").get(&app_id).and_then(|a| a.get(name)).cloned()
    }

    fn restart(&self, restart: Restart) {
        // Nobody listening means the supervisor has stopped: nothing runs to restart.
        let _ = self.restarts.send(restart);
    }

    fn run(&self, one_off: OneOff) -> Option<String> {
        let n = {
            let mut runs = self.runs.lock().expect("registry lock");
            let n = runs.entry(one_off.app_id).or_insert(0);
            *n += 1;
            *n
        };
        let name = format!("run.{n}");
        let listing = LocalDyno {
            name: name.clone(),
            dyno_type: DynoType::try_new("run").expect("a valid dyno type"),
            state: DynoState::Starting,
            started_at: wharf_domain::timestamp::now_seconds(),
            launched: wharf_control_api::plane::local::next_launch(),
            release: one_off.release,
            index: None,
            one_off: Some((one_off.command.clone(), one_off.size.clone())),
        };
        let app_id = one_off.app_id;
        self.set(app_id, listing);
        if self.one_offs.send((name.clone(), one_off)).is_err() {
            // The supervisor has stopped: nothing will run it.
            self.remove(app_id, &name);
            return None;
        }
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(name: &str, state: DynoState) -> LocalDyno {
        LocalDyno {
            name: name.to_owned(),
            dyno_type: DynoType::try_new("web").unwrap(),
            state,
            started_at: 0,
            launched: 0,
            release: None,
            index: Some(1),
            one_off: None,
        }
    }

    #[test]
    fn the_control_plane_sees_what_dynos_record() {
        let (r, app) = (Registry::default(), Uuid::from_u128(1));
        r.set(app, listing("web.1-aaaaa", DynoState::Starting));
        r.set_state(app, "web.1-aaaaa", DynoState::Up);
        r.set_state(app, "web.1-zzzzz", DynoState::Up);
        assert_eq!(r.dynos(app), [listing("web.1-aaaaa", DynoState::Up)]);
        assert_eq!(r.dyno(app, "web.1-zzzzz"), None, "a state change does not record a dyno");
        r.remove(app, "web.1-aaaaa");
        assert!(r.dynos(app).is_empty());
    }

    #[test]
    fn a_release_settles_once_every_entry_reported_and_fails_if_one_failed() {
        let r = Registry::default();
        let t = |s: &str| DynoType::try_new(s).unwrap();
        let (one, two, unknown) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        r.expect_release(one, [t("web"), t("worker")].into());
        r.expect_release(two, [t("web"), t("worker")].into());
        let three = Uuid::from_u128(4);
        r.expect_release(three, [t("web"), t("worker")].into());
        let four = Uuid::from_u128(5);
        r.expect_release(four, [t("web"), t("worker")].into());
        let ended = |succeeded, failed_runs| Some(RollOutcome { succeeded, failed_runs });
        // (release, entry, healthy, kept, the outcome reported). A failed release runs only when
        // an entry that failed kept its new dynos: a worker that rolled fine while the web entry
        // kept its old dynos does not make it run (it is withdrawn, and the worker rolls back).
        let steps = [
            (unknown, "web", true, true, None),
            (one, "web", true, true, None),
            (one, "web", true, true, None),
            (one, "worker", true, true, ended(true, false)),
            (one, "worker", true, true, None),
            (two, "worker", true, true, None),
            (two, "web", false, false, ended(false, false)),
            (three, "worker", true, true, None),
            (three, "web", false, true, ended(false, true)),
            // A worker that failed and kept its new dynos while the web entry kept its old ones:
            // no single release runs, so it is withdrawn and the worker rolls back (FE37).
            (four, "worker", false, true, None),
            (four, "web", false, false, ended(false, false)),
        ];
        for (release, entry, healthy, kept, expected) in steps {
            let got = r.release_outcome(release, &t(entry), healthy, kept);
            assert_eq!(got, expected, "{release} {entry} {healthy} {kept}");
        }
        // Expecting a release again after it settled waits for it again (a restarted supervisor).
        r.expect_release(one, [t("web")].into());
        r.expect_release(one, [t("web"), t("worker")].into());
        assert_eq!(r.release_outcome(one, &t("web"), true, true), ended(true, false), "the first expectation holds");
    }

    #[tokio::test]
    async fn restarts_reach_the_subscribers() {
        let r = Registry::default();
        let mut rx = r.subscribe_restarts();
        let restart = Restart { app_id: Uuid::from_u128(2), dyno: Some("web.1-aaaaa".into()) };
        r.restart(restart.clone());
        assert_eq!(rx.recv().await.unwrap(), restart);
    }
}
