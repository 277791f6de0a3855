//! One dyno's life: its process started (see [`crate::process`]), its health checked (see
//! [`crate::probe`]), a web dyno registered with the control API once healthy (so the router
//! sees it) and unregistered before it stops, its state listed for `GET /apps/{app}/dynos`, and
//! after it exits, what is left of its process group stopped and the dyno restarted with
//! backoff (see [`crate::restart`]), until it is stopped. A dyno that never became healthy is
//! restarted likewise: a first boot that fails is retried.
//!
//! A dyno is named `TYPE.INDEX-XXXXX` (Akkeris' shape, `type.N-xxxxx`): `INDEX` is its index
//! among the running dynos of its type, 1 to N (see `formation`), the `N` of Heroku's `web.N`
//! and of its runtime metrics lines' `source=TYPE.INDEX`, and `XXXXX` five random lowercase
//! letters and digits, unique among the app's dynos (during a roll an old and a new `web.1` run
//! side by side). It gets the app's config vars, `DYNO` (`TYPE.INDEX`, Heroku's `web.1`) and, for a web dyno, `PORT`. Its output
//! goes onto the bus as `app[TYPE.INDEX-XXXXX]`; a crash is logged as Heroku's `at=error
//! code=H10 desc="App crashed"` (<https://devcenter.heroku.com/articles/error-codes#h10-app-crashed>).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;
use wharf_bus::{LogEvent, Publisher, Stream};
use wharf_control_api::{ControlPlane, DynoState, LocalDyno, LocalRuntime};
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{DynoName, DynoType, Hostname};

use crate::desired::{DynoSpec, WEB};
use crate::probe;
use crate::process::{self, DynoProcess, free_port};
use crate::record::Records;
use crate::registry::Registry;
use crate::release_dir;
use crate::restart::RestartPolicy;
use crate::settings::Settings;
use crate::verdict;

/// A dyno's health, as its task reports it to the formation that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DynoHealth {
    /// Started, not yet through its health check.
    Starting,
    /// Through its health check (a web dyno is registered with the router by then).
    Healthy,
    /// It exited before it was ever healthy; it is restarted, and healthy if a run passes.
    Failed,
    /// It was healthy, then exited; it is restarted, and healthy again once a run passes.
    Crashed,
}

/// A dyno the supervisor runs: its name, its index, its health, and how to stop it.
#[derive(Debug)]
pub(crate) struct RunningDyno {
    /// `TYPE.INDEX-XXXXX`.
    pub(crate) name: String,
    /// Its index among the running dynos of its formation entry, 1, 2, ...: its process name
    /// is `TYPE.INDEX`, Heroku's `web.1` (see `formation`).
    pub(crate) index: u32,
    /// Its health, as its task reports it.
    pub(crate) health: watch::Receiver<DynoHealth>,
    /// Set to true to stop it.
    pub(crate) stop: watch::Sender<bool>,
    /// Its task, which ends once the process is gone and the dyno unregistered.
    pub(crate) task: JoinHandle<()>,
}

impl RunningDyno {
    /// Stops the dyno (a web dyno leaves the router first) and returns once its process is gone.
    pub(crate) async fn stop(self) {
        stop_all(vec![self]).await;
    }

    /// Whether the dyno is healthy now (not starting, failed or crashed).
    pub(crate) fn is_healthy(&self) -> bool {
        *self.health.borrow() == DynoHealth::Healthy
    }
}

/// Stops `dynos` all at once, asked in their order, and returns once every one is gone: one
/// that takes its whole grace period does not hold up the others.
pub(crate) async fn stop_all(dynos: impl IntoIterator<Item = RunningDyno>) {
    let dynos: Vec<RunningDyno> = dynos.into_iter().collect();
    for d in &dynos {
        let _ = d.stop.send(true);
    }
    for d in dynos {
        let _ = d.task.await;
    }
}

/// Starts the dynos of one formation entry. A formation's scale and roll logic goes through
/// this trait rather than [`DynoLauncher`] itself so that it can be tested without processes.
pub(crate) trait LaunchDynos: Send + Sync + 'static {
    /// Starts one dyno of roll `release` running `spec`, with index `index` (process name
    /// `TYPE.INDEX`, name `TYPE.INDEX-XXXXX`).
    fn launch(&self, release: u32, index: u32, spec: &DynoSpec) -> RunningDyno;

    /// Records that roll `roll` (to `spec`) failed, `why`, while the running dynos keep
    /// serving: first every web dyno of the roll leaves the router, of every process type (see
    /// `verdict`), then the app's log says so: `at=error code=R10` (Heroku's boot timeout,
    /// <https://devcenter.heroku.com/articles/error-codes#r10-boot-timeout>), naming the app's
    /// release `vN` when the spec has one, else the roll, and saying why.
    fn fail_release(&self, roll: u32, spec: &DynoSpec, why: &RollFailure) -> impl Future<Output = ()> + Send;

    /// Says that roll `roll` to `spec` starts (its new dynos are about to), so that a failure of
    /// the same release in another process type's entry fails it too (see `verdict`).
    fn roll_started(&self, roll: u32, spec: &DynoSpec);

    /// Says that roll `roll` to `spec` has ended, whatever its outcome.
    fn roll_ended(&self, roll: u32, spec: &DynoSpec);

    /// Resolves once roll `roll` has failed: by this entry's dynos, or because another process
    /// type's roll to the same release failed while it was in progress.
    fn release_failed(&self, roll: u32) -> impl Future<Output = ()> + Send;

    /// Tells the control plane how the roll to `spec` ended for this entry: `healthy` when its
    /// new dynos passed their health check, `kept` when they run now (healthy, or in the place
    /// of old dynos that were not healthy either). The app's release is settled once every entry
    /// of the app has reported (see `Registry::release_outcome`).
    fn report_release(&self, spec: &DynoSpec, healthy: bool, kept: bool);
}

/// What every dyno of one formation entry needs: the control plane, the log bus, the
/// settings, and which app and process type it runs.
#[derive(Clone)]
pub(crate) struct DynoLauncher {
    /// Where web dynos are registered and every dyno's state is listed.
    pub(crate) plane: Arc<ControlPlane>,
    /// Where dyno output and the supervisor's own lines about the app go.
    pub(crate) publisher: Publisher,
    /// Timeouts and grace periods.
    pub(crate) settings: Settings,
    /// The app's id.
    pub(crate) app_id: Uuid,
    /// The app's key (`name-space`), for the bus and log lines.
    pub(crate) app: String,
    /// The process type.
    pub(crate) dyno_type: DynoType,
    /// Where running dynos' process groups are recorded; `None` records nothing.
    pub(crate) records: Option<Records>,
    /// What the control plane sees of the dynos: each dyno lists itself here.
    pub(crate) registry: Arc<Registry>,
}

impl DynoLauncher {
    /// The entry's roll `roll`, as `verdict` keeps it.
    fn roll_key(&self, roll: u32) -> verdict::Roll {
        (self.app_id, self.dyno_type.clone(), roll)
    }
}

impl LaunchDynos for DynoLauncher {
    fn launch(&self, release: u32, index: u32, spec: &DynoSpec) -> RunningDyno {
        // An old and a new dyno of one index run side by side during a roll, so the suffix
        // alone tells them apart: one the app's listed dynos have is drawn again.
        let name = loop {
            let name = format!("{}.{index}-{}", self.dyno_type, name_suffix());
            if self.registry.dyno(self.app_id, &name).is_none() {
                break name;
            }
        };
        let (health_tx, health) = watch::channel(DynoHealth::Starting);
        let (stop, stopped) = watch::channel(false);
        let source = format!("{}.{index}", self.dyno_type);
        let dyno =
            Dyno { launcher: self.clone(), name: name.clone(), source, index, spec: spec.clone(), roll: release };
        let task = tokio::spawn(dyno.run(health_tx, stopped));
        RunningDyno { name, index, health, stop, task }
    }

    fn fail_release(&self, roll: u32, spec: &DynoSpec, why: &RollFailure) -> impl Future<Output = ()> + Send {
        let (launcher, spec, why) = (self.clone(), spec.clone(), why.clone());
        async move {
            let (target, key) = (verdict::target_of(&spec), launcher.roll_key(roll));
            let verdicts = &launcher.registry.verdicts;
            let withdrawn = verdicts.fail(&launcher.plane, &launcher.settings, target, key).await;
            let what = match spec.release {
                Some(release) => format!("release v{}", release.version),
                None => format!("roll {roll}"),
            };
            let text = failure_line(&what, &launcher.dyno_type, &why, &withdrawn);
            launcher.publisher.publish(LogEvent::builder(&launcher.app, "akkeris/supervisor").message(text.as_bytes()));
        }
    }

    fn roll_started(&self, roll: u32, spec: &DynoSpec) {
        self.registry.verdicts.begin(verdict::target_of(spec), self.roll_key(roll));
    }

    fn roll_ended(&self, roll: u32, spec: &DynoSpec) {
        self.registry.verdicts.end(verdict::target_of(spec), &self.roll_key(roll));
    }

    fn release_failed(&self, roll: u32) -> impl Future<Output = ()> + Send {
        self.registry.verdicts.failed(self.roll_key(roll))
    }

    fn report_release(&self, spec: &DynoSpec, healthy: bool, kept: bool) {
        let Some(release) = spec.release else { return };
        let (plane, app_id, app) = (self.plane.clone(), self.app_id, self.app.clone());
        let (publisher, registry, dyno_type, slug) =
            (self.publisher.clone(), self.registry.clone(), self.dyno_type.clone(), spec.slug);
        tokio::spawn(async move {
            // A release is charged only for dynos that ran the slug its record names now: a
            // release rebased while this roll ran (its record's slug changed) is rolled again
            // to its new slug, and that roll's report counts instead.
            let recorded = plane
                .read(|m| {
                    let r = m.releases_of(app_id).into_iter().find(|r| r.id == release.id)?;
                    Some(crate::desired::archive_slug(m, r))
                })
                .await;
            if recorded != Some(slug) {
                tracing::info!(app, version = release.version, dyno_type = %dyno_type, ?slug, ?recorded,
                    "a roll ran another slug than its release's record names; its outcome is not the release's");
                return;
            }
            let Some(outcome) = registry.release_outcome(release.id, &dyno_type, healthy, kept) else { return };
            let succeeded = outcome.succeeded;
            match plane.settle_rolled_release(app_id, release.id, succeeded, outcome.failed_runs).await {
                Ok(settled) => report_settled(&publisher, &app, release.version, succeeded, &settled),
                Err(e) => {
                    tracing::warn!(app, version = release.version, error = %e, "cannot record the release's outcome")
                }
            }
        });
    }
}

/// Why a roll's new dynos did not all pass their health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RollFailure {
    /// This dyno exited (crashed) before it was healthy.
    Exited(String),
    /// Not every new dyno was healthy within the health timeout (a web dyno that never
    /// listens, or never answers its health check path).
    TimedOut(Duration),
    /// Another process type's new dynos of the same release failed.
    Elsewhere,
}

/// The line that says a roll failed (see [`LaunchDynos::fail_release`]): `what` is `release vN`
/// or `roll N`; `withdrawn` the dynos of the roll that had joined the router and left it.
fn failure_line(what: &str, dyno_type: &DynoType, why: &RollFailure, withdrawn: &[String]) -> String {
    let desc = match why {
        RollFailure::Exited(dyno) => format!("{what} failed: its dyno {dyno} exited before it was healthy"),
        RollFailure::TimedOut(after) => {
            format!("{what} failed its health check: its new dynos were not all healthy within {}s", after.as_secs())
        }
        RollFailure::Elsewhere => format!("{what} failed: another process type's new dynos failed"),
    };
    let left = if withdrawn.is_empty() {
        String::new()
    } else {
        format!("; its dynos {} left the router", withdrawn.join(", "))
    };
    format!("at=error code=R10 desc=\"{desc}\" type={dyno_type}{left}; the running dynos keep serving")
}

/// Says in the app's log stream what settling release `version` did to others (see
/// `ControlPlane::settle_release`), so that a release never changes unexplained: the older
/// releases superseded before their dynos came up took its outcome, and the newer releases of
/// changes that waited for it (when it failed) now build on the running release's code.
pub(crate) fn report_settled(
    publisher: &wharf_bus::Publisher,
    app: &str,
    version: u32,
    succeeded: bool,
    settled: &wharf_control_api::Settled,
) {
    let outcome = if succeeded { "succeeded" } else { "failed" };
    let mut lines: Vec<String> = settled
        .superseded
        .iter()
        .map(|old| {
            format!(
                "release v{old} was superseded by v{version} before its dynos came up; it settles as {outcome}, as v{version} did"
            )
        })
        .collect();
    if let Some((rebased, base)) = &settled.rebased {
        for newer in rebased {
            lines.push(format!(
                "release v{newer} (changes of config vars or commands) waited for v{version}, which failed: it is rebased onto \
                 v{base}'s code, which serves, and keeps its own changes"
            ));
        }
    }
    for text in lines {
        publisher.publish(LogEvent::builder(app, "akkeris/supervisor").message(text.as_bytes()));
    }
}

/// Five random lowercase letters and digits, for dyno names.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..5).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

/// One dyno's life: start, check, serve, and restart after a crash until told to stop.
struct Dyno {
    launcher: DynoLauncher,
    name: String,
    /// Its process name, `TYPE.INDEX`: the `source` of its runtime metrics lines.
    source: String,
    /// Its index among the running dynos of its type (see `formation`).
    index: u32,
    spec: DynoSpec,
    /// The roll that started it.
    roll: u32,
}

/// Why a dyno's process is no longer serving.
#[derive(Debug, PartialEq, Eq)]
enum DynoExit {
    /// The supervisor stops it.
    Stopped,
    /// The process exited by itself, with this status text.
    Exited(String),
}

impl Dyno {
    fn is_web(&self) -> bool {
        self.launcher.dyno_type.as_str() == WEB
    }

    /// Reports the dyno's state to the control plane, for `GET /apps/{app}/dynos`.
    fn report(&self, state: DynoState) {
        self.launcher.registry.set_state(self.launcher.app_id, &self.name, state);
    }

    async fn run(self, health: watch::Sender<DynoHealth>, mut stopped: watch::Receiver<bool>) {
        /// Takes the dyno off the control plane's list however its task ends.
        struct Listed<'a>(&'a Dyno);
        impl Drop for Listed<'_> {
            fn drop(&mut self) {
                self.0.launcher.registry.remove(self.0.launcher.app_id, &self.0.name);
            }
        }
        let dyno_type = self.launcher.dyno_type.clone();
        let listing = LocalDyno {
            name: self.name.clone(),
            dyno_type,
            state: DynoState::Starting,
            started_at: now_seconds(),
            launched: wharf_control_api::plane::local::next_launch(),
            release: self.spec.release,
            index: Some(self.index),
            one_off: None,
        };
        self.launcher.registry.set(self.launcher.app_id, listing);
        let _listed = Listed(&self);
        let port = match (self.is_web(), self.spec.port) {
            (true, Some(p)) => p,
            (true, None) => free_port().unwrap_or(0),
            (false, _) => 0,
        };
        let mut policy = RestartPolicy::new(self.launcher.settings.restart_min);
        let grace = self.launcher.settings.stop_grace;
        loop {
            self.report(DynoState::Starting);
            let (app, publisher, records) = (&self.launcher.app, &self.launcher.publisher, &self.launcher.records);
            let spawned = match self.release_dir().await {
                Ok(dir) => {
                    // The space's services as they are now, fixed for this process's life.
                    let services = self.launcher.registry.services_of(self.launcher.app_id);
                    let spec =
                        DynoSpec { env: crate::desired::start_env(&services, &self.spec.env), ..self.spec.clone() };
                    process::spawn(&spec, &self.name, port, app, publisher, records.as_ref(), dir.as_deref())
                }
                Err(e) => Err(e),
            };
            let exit = match spawned {
                Ok(mut process) => {
                    policy.started();
                    let (app_id, dyno_type) = (self.launcher.app_id, self.launcher.dyno_type.as_str());
                    let (name, source) = (&self.name, &self.source);
                    let _sampled =
                        self.launcher.registry.metrics.sample(process.pgid(), app_id, app, name, source, dyno_type);
                    let exit = self.serve(&mut process, port, &health, &mut stopped).await;
                    if let DynoExit::Exited(status) = &exit {
                        self.crashed(&health, status);
                    }
                    // Stopped or exited, the dyno is everything it started: stop what is left.
                    process.stop(grace).await;
                    match exit {
                        DynoExit::Stopped => return,
                        DynoExit::Exited(status) => status,
                    }
                }
                Err(e) => {
                    tracing::warn!(dyno = self.name, app = self.launcher.app, error = %e, "cannot start the dyno's command");
                    let status = format!("cannot start: {e}");
                    self.crashed(&health, &status);
                    status
                }
            };
            tracing::debug!(dyno = self.name, status = exit, "restarting after backoff");
            let pause = policy.delay_after_crash();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop_requested(&mut stopped) => return,
            }
        }
    }

    /// The directory the dyno runs in (see `release_dir::working_dir`).
    async fn release_dir(&self) -> std::io::Result<Option<std::path::PathBuf>> {
        release_dir::working_dir(&self.launcher.plane, &self.launcher.settings, &self.spec).await
    }

    /// Checks the dyno's health, registers a web dyno once healthy, and waits for the process to
    /// exit or the supervisor to stop it.
    async fn serve(
        &self,
        process: &mut DynoProcess,
        port: u16,
        health: &watch::Sender<DynoHealth>,
        stopped: &mut watch::Receiver<bool>,
    ) -> DynoExit {
        let mut registered = false;
        if self.is_web() {
            let pgid = process.pgid();
            let check = async {
                while !probe::probe(port, self.spec.healthcheck.as_deref(), pgid).await {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                () = check => {
                    registered = self.register(port).await;
                    self.report(DynoState::Up);
                    health.send_replace(DynoHealth::Healthy);
                }
                status = process.wait() => return DynoExit::Exited(status),
                () = stop_requested(&mut *stopped) => return DynoExit::Stopped,
            }
        } else {
            self.report(DynoState::Up);
            health.send_replace(DynoHealth::Healthy);
        }
        let exit = tokio::select! {
            status = process.wait() => DynoExit::Exited(status),
            () = stop_requested(&mut *stopped) => DynoExit::Stopped,
        };
        if registered {
            // Out of the router first; then the requests already at it end (see `drain`). A dyno
            // of a failed roll is out already (`verdict`): the wait for its requests still holds.
            let _ = self.launcher.plane.delete_dyno(&self.launcher.app_id.to_string(), &self.name).await;
            self.launcher.registry.verdicts.unregistered(&self.launcher.roll_key(self.roll), &self.name).await;
            if exit == DynoExit::Stopped {
                crate::in_flight::wait_for_requests(&self.launcher.settings, &self.name, port).await;
            }
        }
        exit
    }

    /// Registers the web dyno with the control API, and so the router, unless its roll has
    /// failed (`verdict`); false when it is not registered.
    async fn register(&self, port: u16) -> bool {
        let (Ok(name), Ok(host)) = (DynoName::try_new(&self.name), Hostname::try_new("127.0.0.1")) else {
            return false;
        };
        let app = self.launcher.app_id.to_string();
        let put = async {
            match self.launcher.plane.put_dyno(&app, name, self.launcher.dyno_type.clone(), host, port).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(dyno = self.name, app = self.launcher.app, error = %e, "cannot register the dyno");
                    false
                }
            }
        };
        self.launcher.registry.verdicts.register(self.launcher.roll_key(self.roll), &self.name, put).await
    }

    fn crashed(&self, health: &watch::Sender<DynoHealth>, status: &str) {
        tracing::warn!(dyno = self.name, app = self.launcher.app, status, "dyno crashed");
        self.report(DynoState::Crashed);
        let text = format!("at=error code=H10 desc=\"App crashed\" dyno={} status=\"{status}\"", self.name);
        let event =
            LogEvent::builder(&self.launcher.app, "akkeris/supervisor").process(&self.name).stream(Stream::Platform);
        self.launcher.publisher.publish(event.message(text.as_bytes()));
        // The app's `crashed` webhooks hear of it too, without holding up the restart.
        let (plane, app_id, dyno, status) =
            (self.launcher.plane.clone(), self.launcher.app_id, self.name.clone(), status.to_owned());
        tokio::spawn(async move { plane.report_crash(app_id, &dyno, &status).await });
        health.send_if_modified(|h| {
            let next = match *h {
                DynoHealth::Starting => DynoHealth::Failed,
                DynoHealth::Healthy => DynoHealth::Crashed,
                other => other,
            };
            std::mem::replace(h, next) != next
        });
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
pub(crate) async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Instant;
    use wharf_bus::{Bus, BusConfig, Source, SourceEvent};

    /// A control plane in memory with app `api-default`, and a launcher for its `dyno_type`
    /// entry; the bus's source gets what the dynos say.
    async fn launcher(dyno_type: &str, settings: Settings) -> (DynoLauncher, Source) {
        let (plane, app_id) = crate::test_plane::api_default().await;
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 1024 }).await.unwrap();
        let source = bus.take_source().unwrap();
        let launcher = DynoLauncher {
            plane,
            publisher: bus.publisher.clone(),
            settings,
            app_id,
            app: "api-default".to_owned(),
            dyno_type: DynoType::try_new(dyno_type).unwrap(),
            records: None,
            registry: Arc::new(Registry::default()),
        };
        (launcher, source)
    }

    fn spec(command: &str, healthcheck: Option<&str>) -> DynoSpec {
        let env = BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]);
        DynoSpec {
            command: command.to_owned(),
            env,
            port: None,
            healthcheck: healthcheck.map(str::to_owned),
            release: None,
            slug: None,
        }
    }

    /// (source, process, message) of the bus's events, until `enough` says so of all so far.
    async fn lines_until(
        source: &mut Source,
        enough: impl Fn(&[(String, String, String)]) -> bool,
    ) -> Vec<(String, String, String)> {
        let mut lines = Vec::new();
        let collect = async {
            while !enough(&lines) {
                let Some(SourceEvent::Batch(batch)) = source.recv().await else { continue };
                for r in batch {
                    let e = r.event;
                    let text = String::from_utf8_lossy(e.message()).into_owned();
                    lines.push((e.source().to_owned(), e.process().to_owned(), text));
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), collect).await.is_err() {
            panic!("not enough lines: {lines:?}");
        }
        lines
    }

    fn state_of(launcher: &DynoLauncher, name: &str) -> Option<DynoState> {
        wharf_control_api::LocalRuntime::dyno(launcher.registry.as_ref(), launcher.app_id, name).map(|d| d.state)
    }

    async fn registered(launcher: &DynoLauncher) -> Vec<(String, u16)> {
        let app_id = launcher.app_id;
        launcher.plane.read(|m| m.dynos_of(app_id).iter().map(|d| (d.name.to_string(), d.port)).collect()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_web_dyno_is_registered_once_healthy_and_unregistered_before_it_stops() {
        let settings = Settings { connection_grace: Duration::from_millis(300), ..Settings::default() };
        let (launcher, mut source) = launcher("web", settings).await;
        let command = "echo $GREETING from $DYNO on $PORT; exec python3 -m http.server $PORT --bind 127.0.0.1";
        let dyno = launcher.launch(7, 3, &spec(command, Some("/")));
        assert!(dyno.name.starts_with("web.3-") && dyno.name.len() == "web.3-".len() + 5, "{}", dyno.name);
        let mut health = dyno.health.clone();
        tokio::time::timeout(Duration::from_secs(20), health.wait_for(|h| *h != DynoHealth::Starting))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*dyno.health.borrow(), DynoHealth::Healthy);
        assert_eq!(state_of(&launcher, &dyno.name), Some(DynoState::Up));
        let listing = wharf_control_api::LocalRuntime::dyno(launcher.registry.as_ref(), launcher.app_id, &dyno.name);
        assert_eq!(listing.and_then(|d| d.index), Some(3), "listed with its index");
        let listed = registered(&launcher).await;
        let [(name, port)] = &listed[..] else { panic!("one registered dyno: {listed:?}") };
        assert_eq!(name, &dyno.name);
        let said = lines_until(&mut source, |l| !l.is_empty()).await;
        let expected = format!("hello from web.3 on {port}");
        assert_eq!(said[0], ("app".to_owned(), dyno.name.clone(), expected));

        let port = *port;
        let name = dyno.name.clone();
        let start = Instant::now();
        dyno.stop().await;
        assert!(start.elapsed() >= Duration::from_millis(300), "the connection grace is waited");
        assert!(registered(&launcher).await.is_empty(), "out of the router");
        assert_eq!(state_of(&launcher, &name), None, "off the list");
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "the process is gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crashing_dyno_is_logged_and_restarted_with_growing_delays() {
        let settings = Settings { restart_min: Duration::from_millis(100), ..Settings::default() };
        let (launcher, mut source) = launcher("worker", settings).await;
        let start = Instant::now();
        let dyno = launcher.launch(1, 1, &spec("echo boom; exit 3", None));
        let lines = lines_until(&mut source, |l| l.iter().filter(|(_, _, t)| t == "boom").count() >= 3).await;
        // Restarts after at least 100 ms and 200 ms.
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
        let crash = format!("at=error code=H10 desc=\"App crashed\" dyno={} status=\"exit status: 3\"", dyno.name);
        let crashes = lines.iter().filter(|(s, p, t)| s == "akkeris/supervisor" && p == &dyno.name && *t == crash);
        assert!(crashes.count() >= 2, "{lines:?}");
        assert!(lines.iter().filter(|(_, _, t)| t == "boom").all(|(s, p, _)| s == "app" && p == &dyno.name));
        // A worker is healthy once started: a crash after that is not a failed start (it is
        // healthy again, or crashed until its restart).
        assert!(matches!(*dyno.health.borrow(), DynoHealth::Healthy | DynoHealth::Crashed));
        let name = dyno.name.clone();
        dyno.stop().await;
        assert_eq!(state_of(&launcher, &name), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_web_dyno_that_exits_before_it_is_healthy_has_failed() {
        let (launcher, _source) = launcher("web", Settings::default()).await;
        let dyno = launcher.launch(1, 1, &spec("exit 1", None));
        let mut health = dyno.health.clone();
        tokio::time::timeout(Duration::from_secs(20), health.wait_for(|h| *h != DynoHealth::Starting))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*dyno.health.borrow(), DynoHealth::Failed);
        assert!(registered(&launcher).await.is_empty());
        dyno.stop().await;
    }
}
