//! A roll's verdict and the router: a web dyno of a roll is registered with the router (and
//! stays registered) only while its roll has not failed, and every web dyno of a roll leaves the
//! router at the moment the roll's failure is recorded, before anything else is done or said
//! about it (the `code=R10` line, the stop of its dynos, the release's `failed` status).
//!
//! Why: with two or more web dynos, one new dyno can pass its health check while another one of
//! the same roll crashes. The failure used to be said first and the passing dyno to leave the
//! router only when its own stop came round, after model writes that take seconds on a loaded
//! machine; a dyno could even be registered after the failure. The failed release's code then
//! answered requests for up to 5 s after its failure (FE29 HIGH-2, FE33: 5 runs of 19).
//!
//! The rule holds by one lock: a registration checks its roll's verdict and writes the dyno's
//! registration under it, and a failure records the verdict and removes every registered dyno of
//! the failed rolls (in one model change per app, so the router drops them with one snapshot)
//! under it. Either the registration comes first and the failure removes it, or the failure
//! comes first and the registration is refused. The failure then waits until this process's
//! router serves a table without those dynos, so that no request that starts after the failure
//! is said reaches them.
//!
//! A roll is one formation entry's roll (its app, process type and roll number, the `N` of
//! `web.N-xxxxx`): a restart of every dyno that fails withdraws only its own new dynos, never
//! the dynos of the same release that serve. A release's failure in one entry fails the rolls
//! to the same release (and slug) still in progress in the app's other entries too; a roll that
//! has ended (its dynos replaced the old ones) is left to the release's settling, which rolls it
//! back. A roll whose new dynos replaced old ones that were not healthy either (a first boot) is
//! not failed here: that release runs, and its dynos are restarted until they pass.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use uuid::Uuid;
use wharf_control_api::ControlPlane;
use wharf_domain::DynoType;

use crate::desired::DynoSpec;
use crate::settings::Settings;

/// One formation entry's roll: its app's id, its process type and its roll number.
pub(crate) type Roll = (Uuid, DynoType, u32);

/// What a roll rolls to: a release's id with the slug its dynos run (a release rebased onto other
/// code while it rolled is rolled again to its new slug, and that is another target).
pub(crate) type Target = (Uuid, Option<Uuid>);

/// The target of a roll to `spec`; none for a spec that names no release.
pub(crate) fn target_of(spec: &DynoSpec) -> Option<Target> {
    spec.release.map(|r| (r.id, spec.slug))
}

/// How long a failure waits for the router to serve a table without the failed roll's dynos: a
/// router that does not catch up in that time (it is stopping) holds up nothing.
const ROUTER_WAIT: Duration = Duration::from_secs(2);

/// How often the router's table version is read during that wait.
const ROUTER_POLL: Duration = Duration::from_millis(2);

/// The rolls that failed in this run, the rolls in progress, and the web dynos registered with
/// the router per roll.
#[derive(Debug)]
pub(crate) struct Verdicts {
    /// Registered web dynos by roll, as (app id, dyno name). The lock is held across a
    /// registration and across a failure's withdrawal (see the module's comment).
    registered: Mutex<HashMap<Roll, Vec<(Uuid, String)>>>,
    /// The rolls in progress, by target; changed without waiting, under its own lock.
    rolling: std::sync::Mutex<HashMap<Target, HashSet<Roll>>>,
    /// The rolls that failed; changed only under `registered`'s lock.
    failed: watch::Sender<HashSet<Roll>>,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            registered: Mutex::default(),
            rolling: std::sync::Mutex::default(),
            failed: watch::Sender::new(HashSet::new()),
        }
    }
}

impl Verdicts {
    /// Records that `roll` to `target` has started (its new dynos are about to).
    pub(crate) fn begin(&self, target: Option<Target>, roll: Roll) {
        let Some(target) = target else { return };
        self.rolling.lock().expect("verdicts lock").entry(target).or_default().insert(roll);
    }

    /// Records that `roll` to `target` has ended, whatever its outcome: a failure of the target
    /// elsewhere no longer concerns it.
    pub(crate) fn end(&self, target: Option<Target>, roll: &Roll) {
        let Some(target) = target else { return };
        let mut rolling = self.rolling.lock().expect("verdicts lock");
        if let Some(rolls) = rolling.get_mut(&target) {
            rolls.remove(roll);
            if rolls.is_empty() {
                rolling.remove(&target);
            }
        }
    }

    /// Registers web dyno `name` of `roll` with `put` (the control plane's registration, which
    /// the router follows) unless the roll has failed; returns whether the dyno is registered.
    pub(crate) async fn register(&self, roll: Roll, name: &str, put: impl Future<Output = bool>) -> bool {
        let mut registered = self.registered.lock().await;
        if self.failed.borrow().contains(&roll) {
            tracing::info!(app_id = %roll.0, dyno = name, "not registered with the router: its roll failed");
            return false;
        }
        if !put.await {
            return false;
        }
        registered.entry(roll.clone()).or_default().push((roll.0, name.to_owned()));
        true
    }

    /// Forgets web dyno `name` of `roll`, which left the router on its own (its stop, its crash).
    pub(crate) async fn unregistered(&self, roll: &Roll, name: &str) {
        let mut registered = self.registered.lock().await;
        if let Some(dynos) = registered.get_mut(roll) {
            dynos.retain(|(_, n)| n != name);
            if dynos.is_empty() {
                registered.remove(roll);
            }
        }
    }

    /// Records that `roll` failed, and with it every roll to the same `target` still in
    /// progress, and takes every web dyno of those rolls out of the router (one change per app),
    /// then waits (at most [`ROUTER_WAIT`]) until this process's router serves a table without
    /// them. Returns the names of the dynos withdrawn.
    pub(crate) async fn fail(
        &self,
        plane: &ControlPlane,
        settings: &Settings,
        target: Option<Target>,
        roll: Roll,
    ) -> Vec<String> {
        let mut registered = self.registered.lock().await;
        let mut rolls = HashSet::from([roll]);
        if let Some(target) = target {
            rolls.extend(self.rolling.lock().expect("verdicts lock").remove(&target).unwrap_or_default());
        }
        self.failed.send_modify(|f| f.extend(rolls.iter().cloned()));
        let mut by_app: HashMap<Uuid, Vec<String>> = HashMap::new();
        for r in &rolls {
            for (app_id, name) in registered.remove(r).unwrap_or_default() {
                by_app.entry(app_id).or_default().push(name);
            }
        }
        let mut withdrawn = Vec::new();
        for (app_id, mut names) in by_app {
            names.sort();
            match plane.delete_dynos(app_id, &names).await {
                Ok(()) => withdrawn.extend(names),
                Err(e) => {
                    tracing::warn!(%app_id, dynos = ?names, error = %e, "cannot take a failed roll's dynos out of the router")
                }
            }
        }
        if !withdrawn.is_empty() {
            let version = plane.subscribe().borrow().version;
            let deadline = tokio::time::Instant::now() + ROUTER_WAIT;
            while settings.router_version.serves() < version && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(ROUTER_POLL).await;
            }
        }
        withdrawn
    }

    /// Resolves once `roll` has failed: by its own dynos, or because another entry's roll to the
    /// same target failed while it was in progress.
    pub(crate) fn failed(&self, roll: Roll) -> impl Future<Output = ()> + Send + 'static {
        let mut failed = self.failed.subscribe();
        async move {
            if failed.wait_for(|f| f.contains(&roll)).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_domain::{DynoName, Hostname};

    use crate::test_plane::api_default as plane;

    /// Registers web dyno `name` of `roll` through `verdicts`, as a dyno does; whether it was.
    async fn register(verdicts: &Verdicts, plane: &ControlPlane, roll: &Roll, name: &str) -> bool {
        let app = roll.0.to_string();
        let put = async {
            let (n, t) = (DynoName::try_new(name).unwrap(), roll.1.clone());
            plane.put_dyno(&app, n, t, Hostname::try_new("127.0.0.1").unwrap(), 5000).await.is_ok()
        };
        verdicts.register(roll.clone(), name, put).await
    }

    async fn routed(plane: &ControlPlane, app: Uuid) -> Vec<String> {
        let mut names: Vec<String> = plane.read(|m| m.dynos_of(app).iter().map(|d| d.name.to_string()).collect()).await;
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_failure_withdraws_its_rolls_dynos_at_once_and_refuses_their_later_ones() {
        let (plane, app) = plane().await;
        let verdicts = Verdicts::default();
        let (web, worker) = (DynoType::try_new("web").unwrap(), DynoType::try_new("worker").unwrap());
        let target = Some((Uuid::from_u128(2), Some(Uuid::from_u128(9))));
        // Roll 1 of web serves (it ended); roll 2 rolls to the target, in web and in `worker`
        // (a second entry: its registrations stand for any web-like entry of the same app).
        let (serving, rolling, other) = ((app, web.clone(), 1), (app, web.clone(), 2), (app, worker.clone(), 1));
        verdicts.begin(target, serving.clone());
        assert!(register(&verdicts, &plane, &serving, "web.1-aaaaa").await);
        verdicts.end(target, &serving);
        verdicts.begin(target, rolling.clone());
        verdicts.begin(target, other.clone());
        assert!(register(&verdicts, &plane, &rolling, "web.2-bbbbb").await);
        assert!(register(&verdicts, &plane, &other, "worker.1-ccccc").await);
        let heard = verdicts.failed(other.clone());
        let withdrawn = verdicts.fail(&plane, &Settings::default(), target, rolling.clone()).await;
        assert_eq!(withdrawn, ["web.2-bbbbb", "worker.1-ccccc"], "the failed roll's, and the target's other roll's");
        assert_eq!(routed(&plane, app).await, ["web.1-aaaaa"], "a roll that ended serves on");
        tokio::time::timeout(Duration::from_secs(5), heard).await.expect("the other entry's roll hears of it");
        // (roll, dyno, registered?) after the failure: the failed rolls' are refused.
        let later = (app, web.clone(), 3);
        let rows = [(&rolling, "web.2-ddddd", false), (&other, "worker.1-eeeee", false), (&later, "web.3-fffff", true)];
        for (roll, name, expected) in rows {
            assert_eq!(register(&verdicts, &plane, roll, name).await, expected, "{name}");
            assert_eq!(routed(&plane, app).await.contains(&name.to_owned()), expected, "{name}");
        }
        // A dyno that left by itself is forgotten; failing a roll withdraws only what it has.
        plane.delete_dyno(&app.to_string(), "web.3-fffff").await.unwrap();
        verdicts.unregistered(&later, "web.3-fffff").await;
        assert!(verdicts.fail(&plane, &Settings::default(), None, later).await.is_empty());
        assert_eq!(routed(&plane, app).await, ["web.1-aaaaa"]);
    }
}
