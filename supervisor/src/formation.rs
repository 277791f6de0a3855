//! Formation: one formation entry's task, which scales and rolls its dynos.
//!
//! A change of quantity alone scales the running release. Any change of the dynos' spec
//! (command, port, health check, environment) or a restart of them all rolls: a new release's
//! dynos start and become healthy, then the old ones leave the router and stop, all at once.
//! If a new dyno fails or is not healthy within the health timeout, the new ones stop, the old
//! ones keep serving, and that spec is not tried again until it changes. A restart of one dyno
//! starts its replacement first and stops it only once the replacement is healthy.
//!
//! Keeping the old dynos is only worth it while one of them is healthy: when none is (a first
//! boot, or a release whose dynos all crash), the new release takes their place whether it is
//! healthy or not, and its dynos are restarted with backoff until they are, so a command that
//! fails until something appears comes up once it does, and a restart does restart.
//!
//! A roll fails as soon as one new dyno exits before it is healthy, whichever of the roll's
//! dynos it is (they are watched together), when they are not all healthy within the health
//! timeout, or when another process type's roll of the same release failed. The failure takes
//! every web dyno of the roll out of the router before it is said or anything else is done
//! (`verdict`). A stop of the entry (Wharf stopping, the app deleted) ends a roll in progress
//! at once: its new dynos stop and nothing is reported, so the release stays pending and the
//! next start rolls it again.
//!
//! Each running dyno of an entry has an index, 1 to N, kept for its life: its process name
//! `TYPE.INDEX` (Heroku's `web.1`, the `source` of its runtime metrics lines) and the start of
//! its name (`web.1-xxxxx`), which is how the control API's `type.N` finds it. The indexes stay
//! 1 to N, as Heroku's do: a roll's new dynos take 1 to N (each the index of the old dyno it
//! replaces, so old and new `web.1` run side by side until the roll ends), the replacement of
//! one restarted dyno takes that dyno's index, a scale-up takes the lowest free indexes, and a
//! scale-down stops the highest first.
//!
//! A web entry whose new and old spec name the same fixed `port` cannot run both releases at
//! once (two processes cannot listen on one port), so it rolls the other way round: the old
//! dynos stop, the new ones start, and if they fail, they stop and the old release starts again
//! (`code=R10` logged). The app is unserved during such a roll.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use wharf_control_api::Restart;
use wharf_domain::DynoType;

use crate::desired::{DynoSpec, WEB};
use crate::dyno::{DynoHealth, LaunchDynos, RollFailure, RunningDyno, stop_all};

/// What a formation entry's task should run: `quantity` dynos running `spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormationTarget {
    /// How many dynos.
    pub(crate) quantity: u32,
    /// What each of them runs.
    pub(crate) spec: DynoSpec,
}

/// What a formation entry's task is asked to do besides following its target: the control
/// API's `DELETE /apps/{app}/dynos[/{dyno}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormationCommand {
    /// Restart every dyno, rolling to a new release.
    RestartAll,
    /// Restart the named dyno: a replacement first, then the old one stops.
    Restart(String),
}

/// The command a restart asks of the formation entry of process type `dyno_type`, if any: a
/// restart of every dyno concerns every entry, a restart of `TYPE.…` only the entry of `TYPE`.
/// The caller checks that the restart is for the entry's app.
pub(crate) fn restart_command(restart: &Restart, dyno_type: &DynoType) -> Option<FormationCommand> {
    match &restart.dyno {
        None => Some(FormationCommand::RestartAll),
        Some(name) if name.split_once('.').is_some_and(|(t, _)| t == dyno_type.as_str()) => {
            Some(FormationCommand::Restart(name.clone()))
        }
        Some(_) => None,
    }
}

/// A formation entry's task and how to reach it.
#[derive(Debug)]
pub(crate) struct FormationHandle {
    target: watch::Sender<Option<FormationTarget>>,
    commands: mpsc::UnboundedSender<FormationCommand>,
    task: JoinHandle<()>,
}

impl FormationHandle {
    /// Starts the task of `app`'s (its key, for log lines) `dyno_type` entry, which runs
    /// `target` with dynos from `launcher`, giving each new release `health_timeout` to be
    /// healthy.
    pub(crate) fn start(
        launcher: impl LaunchDynos,
        app: &str,
        dyno_type: &DynoType,
        target: FormationTarget,
        health_timeout: Duration,
    ) -> FormationHandle {
        Self::start_with(launcher, app, dyno_type, target, None, health_timeout)
    }

    /// Starts the entry's task as [`FormationHandle::start`] does, but first brings up
    /// `serving` (the release that last succeeded, when a supervisor starts while a newer one
    /// is pending) and waits until its dynos are healthy or fail, before it follows the target:
    /// a newer target then rolls as any release does, with the serving dynos kept if it fails.
    pub(crate) fn start_serving(
        launcher: impl LaunchDynos,
        app: &str,
        dyno_type: &DynoType,
        serving: FormationTarget,
        health_timeout: Duration,
    ) -> FormationHandle {
        Self::start_with(launcher, app, dyno_type, serving.clone(), Some(serving), health_timeout)
    }

    fn start_with(
        launcher: impl LaunchDynos,
        app: &str,
        dyno_type: &DynoType,
        target: FormationTarget,
        first: Option<FormationTarget>,
        health_timeout: Duration,
    ) -> FormationHandle {
        let (target_tx, target_rx) = watch::channel(Some(target));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let mut formation = Formation::new(launcher, app, dyno_type, health_timeout);
        formation.stopping = Some(target_rx.clone());
        let task = tokio::spawn(formation.run(first, target_rx, commands_rx));
        FormationHandle { target: target_tx, commands, task }
    }

    /// Sets what the entry should run; nothing happens when it is what it runs already.
    pub(crate) fn set_target(&self, target: FormationTarget) {
        let target = Some(target);
        self.target.send_if_modified(|t| {
            let changed = *t != target;
            *t = target.clone();
            changed
        });
    }

    /// Hands the task a restart.
    pub(crate) fn command(&self, command: FormationCommand) {
        let _ = self.commands.send(command);
    }

    /// Stops every dyno of the entry and returns once they are gone.
    pub(crate) async fn stop(self) {
        let _ = self.target.send(None);
        let _ = self.task.await;
    }
}

/// One formation entry's dynos and releases.
struct Formation<L> {
    launcher: L,
    /// The app's key and the process type, for log lines.
    app: String,
    dyno_type: DynoType,
    health_timeout: Duration,
    /// The number of the latest release started; the first is 1. It counts this supervisor's
    /// rolls (each roll's key in `verdict`); no name shows it.
    release: u32,
    /// The spec the running dynos run.
    current: Option<DynoSpec>,
    /// The spec whose release last failed, not to be tried again until the spec changes.
    failed: Option<DynoSpec>,
    dynos: Vec<RunningDyno>,
    /// The task's target, watched during a roll: `None` (or its sender gone) is a stop, which
    /// ends the roll at once. `None` here for a formation driven without a task (tests).
    stopping: Option<watch::Receiver<Option<FormationTarget>>>,
}

/// How the wait for a roll's new dynos ended.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Every one passed its health check.
    Healthy,
    /// The roll failed.
    Failed(RollFailure),
    /// The entry is stopping: the roll ends unsettled.
    Stopping,
}

impl<L: LaunchDynos> Formation<L> {
    fn new(launcher: L, app: &str, dyno_type: &DynoType, health_timeout: Duration) -> Formation<L> {
        Formation {
            launcher,
            app: app.to_owned(),
            dyno_type: dyno_type.clone(),
            health_timeout,
            release: 0,
            current: None,
            failed: None,
            dynos: Vec::new(),
            stopping: None,
        }
    }

    /// Waits until every one of `dynos` (new dynos of roll `roll`) is healthy, or one fails, or
    /// the health timeout passes, or the roll fails elsewhere (its release failed in another
    /// entry), or the entry stops.
    async fn check(&self, dynos: &[RunningDyno], roll: u32) -> Check {
        let stopping = self.stopping.clone();
        let stop = async move {
            match stopping {
                Some(mut target) => {
                    let _ = target.wait_for(Option::is_none).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            check = all_healthy(dynos, self.health_timeout) => check,
            () = self.launcher.release_failed(roll) => Check::Failed(RollFailure::Elsewhere),
            () = stop => Check::Stopping,
        }
    }

    /// Brings up `first` if given (whatever the target says meanwhile), then follows the
    /// target and the commands until the target is `None` (or its sender gone), then stops
    /// every dyno.
    async fn run(
        mut self,
        first: Option<FormationTarget>,
        mut target: watch::Receiver<Option<FormationTarget>>,
        mut commands: mpsc::UnboundedReceiver<FormationCommand>,
    ) {
        if let Some(first) = first {
            self.apply(&first, None).await;
        }
        let mut command = None;
        loop {
            let Some(want) = target.borrow_and_update().clone() else { break };
            self.apply(&want, command.take()).await;
            tokio::select! {
                changed = target.changed() => if changed.is_err() { break },
                next = commands.recv() => match next {
                    Some(c) => command = Some(c),
                    None => break,
                },
            }
        }
        stop_all(self.dynos).await;
    }

    /// Brings the dynos to `target`, doing `command` if it still applies: a restart asked for
    /// while the spec has changed is done by the roll to the new spec.
    async fn apply(&mut self, target: &FormationTarget, command: Option<FormationCommand>) {
        let runs_spec = self.current.as_ref() == Some(&target.spec);
        match command {
            Some(FormationCommand::Restart(name)) if runs_spec => self.replace(&name, &target.spec).await,
            Some(FormationCommand::RestartAll) if runs_spec => self.roll(target).await,
            _ if runs_spec => self.scale(target).await,
            _ if self.failed.as_ref() != Some(&target.spec) => self.roll(target).await,
            _ => {}
        }
    }

    /// The lowest index (1, 2, ...) that no running dyno of the entry has.
    fn free_index(&self) -> u32 {
        let taken = |i: u32| self.dynos.iter().any(|d| d.index == i);
        (1..).find(|i| !taken(*i)).expect("fewer dynos than indexes")
    }

    /// Starts `quantity` dynos of roll `release` running `spec`, indexes 1 to `quantity`: each
    /// takes the index of the running dyno it is to replace, so that a roll leaves the entry
    /// with `web.1` to `web.N` whatever indexes the old dynos had.
    fn launch_all(&self, release: u32, quantity: u32, spec: &DynoSpec) -> Vec<RunningDyno> {
        (1..=quantity).map(|index| self.launcher.launch(release, index, spec)).collect()
    }

    /// Starts or stops dynos of the running release until there are `target.quantity`: a new
    /// dyno takes the lowest free index, and the dynos with the highest indexes are asked to
    /// stop first (Heroku's order), and they stop together.
    async fn scale(&mut self, target: &FormationTarget) {
        while self.dynos.len() < target.quantity as usize {
            let index = self.free_index();
            self.dynos.push(self.launcher.launch(self.release, index, &target.spec));
        }
        self.dynos.sort_by_key(|d| d.index);
        let quantity = target.quantity as usize;
        if self.dynos.len() > quantity {
            stop_all(self.dynos.drain(quantity..).rev()).await;
        }
    }

    /// Whether one of the running dynos is healthy, and so worth keeping while a new release
    /// is tried.
    fn serving(&self) -> bool {
        self.dynos.iter().any(RunningDyno::is_healthy)
    }

    /// Whether the new spec's web dynos would listen on the fixed port the running ones hold.
    fn same_fixed_port(&self, spec: &DynoSpec) -> bool {
        let old_port = self.current.as_ref().and_then(|c| c.port);
        self.dyno_type.as_str() == WEB && spec.port.is_some() && spec.port == old_port && !self.dynos.is_empty()
    }

    /// Starts a new release of `target`, and once all its dynos are healthy stops the old ones
    /// one at a time; if one is not, stops the new ones and keeps the old.
    async fn roll(&mut self, target: &FormationTarget) {
        if self.same_fixed_port(&target.spec) {
            return self.roll_stopping_first(target).await;
        }
        self.release += 1;
        let release = self.release;
        self.launcher.roll_started(release, &target.spec);
        let new = self.launch_all(release, target.quantity, &target.spec);
        let check = self.check(&new, release).await;
        // From here a failure of the release in another entry is left to its settling.
        self.launcher.roll_ended(release, &target.spec);
        let (app, dyno_type) = (&self.app, &self.dyno_type);
        if check == Check::Stopping {
            tracing::info!(app, %dyno_type, release, "stopping while a release rolls; it stays pending");
            return stop_all(new).await;
        }
        let healthy = check == Check::Healthy;
        // A release another process type failed is not kept here either: its dynos left the
        // router with that failure.
        let kept = healthy || (!self.serving() && check != Check::Failed(RollFailure::Elsewhere));
        if kept {
            if healthy {
                tracing::info!(app, %dyno_type, release, "release is healthy; stopping the old dynos");
            } else {
                tracing::warn!(app, %dyno_type, release, "new release is not healthy, nor is the old one; replacing it");
            }
            stop_all(self.dynos.drain(..)).await;
            self.dynos = new;
            self.current = Some(target.spec.clone());
            self.failed = None;
        } else {
            tracing::warn!(app, %dyno_type, release, ?check, "new release failed; keeping the old one");
            if let Check::Failed(why) = &check {
                self.launcher.fail_release(release, &target.spec, why).await;
            }
            stop_all(new).await;
            self.failed = Some(target.spec.clone());
        }
        // A release replacing unhealthy dynos anyway is still one whose dynos did not pass.
        self.launcher.report_release(&target.spec, healthy, kept);
    }

    /// The roll of a web entry on a fixed port: the old dynos stop first, then the new start;
    /// if they are not healthy while the old ones were, they stop and the old spec starts again.
    async fn roll_stopping_first(&mut self, target: &FormationTarget) {
        let was_serving = self.serving();
        let old_quantity = self.dynos.len();
        stop_all(self.dynos.drain(..)).await;
        self.release += 1;
        let release = self.release;
        self.launcher.roll_started(release, &target.spec);
        let new = self.launch_all(release, target.quantity, &target.spec);
        let check = self.check(&new, release).await;
        self.launcher.roll_ended(release, &target.spec);
        let (app, dyno_type) = (&self.app, &self.dyno_type);
        if check == Check::Stopping {
            tracing::info!(app, %dyno_type, release, "stopping while a release rolls; it stays pending");
            return stop_all(new).await;
        }
        let healthy = check == Check::Healthy;
        if healthy || (!was_serving && check != Check::Failed(RollFailure::Elsewhere)) {
            tracing::info!(app, %dyno_type, release, "release on a fixed port replaced the old one");
            self.dynos = new;
            self.current = Some(target.spec.clone());
            self.failed = None;
            self.launcher.report_release(&target.spec, healthy, true);
            return;
        }
        tracing::warn!(app, %dyno_type, release, ?check, "new release failed; starting the old one again");
        if let Check::Failed(why) = &check {
            self.launcher.fail_release(release, &target.spec, why).await;
        }
        self.launcher.report_release(&target.spec, false, false);
        stop_all(new).await;
        self.failed = Some(target.spec.clone());
        let old = self.current.clone().expect("a running release has a spec");
        self.release += 1;
        let release = self.release;
        self.dynos = self.launch_all(release, old_quantity as u32, &old);
    }

    /// Replaces the dyno called `name`, if it is one of the entry's: its replacement starts,
    /// and once healthy takes its place and it stops; if the replacement is not healthy, it
    /// stops and the dyno stays, unless that dyno was not healthy either. On a fixed port the
    /// dyno stops first.
    async fn replace(&mut self, name: &str, spec: &DynoSpec) {
        let Some(i) = self.dynos.iter().position(|d| d.name == name) else { return };
        let index = self.dynos[i].index;
        if self.same_fixed_port(spec) {
            self.dynos.remove(i).stop().await;
            let fresh = self.launcher.launch(self.release, index, spec);
            self.dynos.insert(i, fresh);
            return;
        }
        let fresh = self.launcher.launch(self.release, index, spec);
        let check = self.check(std::slice::from_ref(&fresh), self.release).await;
        if check == Check::Stopping {
            return fresh.stop().await;
        }
        if check == Check::Healthy || !self.dynos[i].is_healthy() {
            let old = std::mem::replace(&mut self.dynos[i], fresh);
            old.stop().await;
        } else {
            tracing::warn!(app = self.app, dyno = name, "the replacement did not become healthy; keeping the dyno");
            fresh.stop().await;
        }
    }
}

/// Whether every dyno becomes healthy within `timeout`: they are watched together, so the roll
/// fails as soon as any one of them exits before it is healthy, whichever it is (watched in
/// turn, a crash of the second dyno went unseen while the first still started).
async fn all_healthy(dynos: &[RunningDyno], timeout: Duration) -> Check {
    let mut settling = tokio::task::JoinSet::new();
    for d in dynos {
        let (mut health, name) = (d.health.clone(), d.name.clone());
        settling.spawn(async move {
            let settled = health.wait_for(|h| *h != DynoHealth::Starting).await.map(|h| *h);
            (name, settled.is_ok_and(|h| h == DynoHealth::Healthy))
        });
    }
    let all = async {
        while let Some(settled) = settling.join_next().await {
            match settled {
                Ok((_, true)) => {}
                Ok((name, false)) => {
                    tracing::debug!(dyno = name, "dyno did not become healthy");
                    return Check::Failed(RollFailure::Exited(name));
                }
                Err(e) => return Check::Failed(RollFailure::Exited(e.to_string())),
            }
        }
        Check::Healthy
    };
    tokio::time::timeout(timeout, all).await.unwrap_or(Check::Failed(RollFailure::TimedOut(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use crate::dyno::stop_requested;

    /// How the dynos the fake launcher starts next behave.
    #[derive(Debug, Clone, Copy)]
    enum Behaviour {
        /// Healthy after this long.
        Healthy(Duration),
        /// Exit before being healthy, after this long.
        Fail(Duration),
        /// Never settle.
        Hang,
    }

    /// Starts pretend dynos and records what happens to them, in order: `start NAME`,
    /// `healthy NAME`, `failed NAME`, `stop NAME`, `R10 RELEASE`.
    #[derive(Clone)]
    struct FakeLauncher {
        events: Arc<Mutex<Vec<String>>>,
        behaviour: Arc<Mutex<Behaviour>>,
        started: Arc<Mutex<u32>>,
        /// How long a dyno takes to stop once asked (a grace period).
        stop_delay: Arc<Mutex<Duration>>,
        /// How the next dynos behave, one each, before `behaviour` applies again.
        queue: Arc<Mutex<std::collections::VecDeque<Behaviour>>>,
        /// Set when the release failed in another process type's entry.
        elsewhere: Arc<watch::Sender<bool>>,
    }

    impl FakeLauncher {
        fn new() -> FakeLauncher {
            FakeLauncher {
                events: Arc::default(),
                behaviour: Arc::new(Mutex::new(Behaviour::Healthy(Duration::from_millis(10)))),
                started: Arc::default(),
                stop_delay: Arc::default(),
                queue: Arc::default(),
                elsewhere: Arc::new(watch::Sender::new(false)),
            }
        }

        fn behave(&self, b: Behaviour) {
            *self.behaviour.lock().unwrap() = b;
        }

        /// The next dynos behave so, one each, in launch order.
        fn behave_each(&self, each: impl IntoIterator<Item = Behaviour>) {
            self.queue.lock().unwrap().extend(each);
        }

        fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }

        fn take_events(&self) -> Vec<String> {
            std::mem::take(&mut *self.events.lock().unwrap())
        }
    }

    impl LaunchDynos for FakeLauncher {
        fn launch(&self, release: u32, index: u32, _spec: &DynoSpec) -> RunningDyno {
            let n = {
                let mut started = self.started.lock().unwrap();
                *started += 1;
                *started
            };
            let name = format!("web.{release}-{n}");
            let events = self.events.clone();
            events.lock().unwrap().push(format!("start {name}"));
            let (health_tx, health) = watch::channel(DynoHealth::Starting);
            let (stop, mut stopped) = watch::channel(false);
            let next = self.queue.lock().unwrap().pop_front();
            let behaviour = next.unwrap_or(*self.behaviour.lock().unwrap());
            let stop_delay = *self.stop_delay.lock().unwrap();
            let task = tokio::spawn({
                let name = name.clone();
                async move {
                    let settle = async {
                        match behaviour {
                            Behaviour::Healthy(after) => {
                                tokio::time::sleep(after).await;
                                events.lock().unwrap().push(format!("healthy {name}"));
                                health_tx.send_replace(DynoHealth::Healthy);
                            }
                            Behaviour::Fail(after) => {
                                tokio::time::sleep(after).await;
                                events.lock().unwrap().push(format!("failed {name}"));
                                health_tx.send_replace(DynoHealth::Failed);
                            }
                            Behaviour::Hang => std::future::pending().await,
                        }
                        std::future::pending::<()>().await;
                    };
                    tokio::select! {
                        () = settle => {}
                        () = stop_requested(&mut stopped) => {}
                    }
                    tokio::time::sleep(stop_delay).await;
                    events.lock().unwrap().push(format!("stop {name}"));
                }
            });
            RunningDyno { name, index, health, stop, task }
        }

        fn fail_release(
            &self,
            release: u32,
            _spec: &DynoSpec,
            _why: &RollFailure,
        ) -> impl std::future::Future<Output = ()> + Send {
            self.events.lock().unwrap().push(format!("R10 {release}"));
            std::future::ready(())
        }

        fn roll_started(&self, _roll: u32, _spec: &DynoSpec) {}

        fn roll_ended(&self, _roll: u32, _spec: &DynoSpec) {}

        fn release_failed(&self, _roll: u32) -> impl std::future::Future<Output = ()> + Send {
            let mut elsewhere = self.elsewhere.subscribe();
            async move {
                let _ = elsewhere.wait_for(|failed| *failed).await;
            }
        }

        /// Records `vN succeeded` or `vN failed` for a spec that names a release (as the real
        /// launcher settles only those).
        fn report_release(&self, spec: &DynoSpec, healthy: bool, _kept: bool) {
            let Some(release) = spec.release else { return };
            let outcome = if healthy { "succeeded" } else { "failed" };
            self.events.lock().unwrap().push(format!("v{} {outcome}", release.version));
        }
    }

    fn spec(command: &str) -> DynoSpec {
        DynoSpec {
            command: command.to_owned(),
            env: BTreeMap::new(),
            port: None,
            healthcheck: None,
            release: None,
            slug: None,
        }
    }

    fn target(quantity: u32, command: &str) -> FormationTarget {
        FormationTarget { quantity, spec: spec(command) }
    }

    const TIMEOUT: Duration = Duration::from_secs(20);

    fn formation(launcher: &FakeLauncher) -> Formation<FakeLauncher> {
        Formation::new(launcher.clone(), "api-default", &DynoType::try_new("web").unwrap(), TIMEOUT)
    }

    fn names(f: &Formation<FakeLauncher>) -> Vec<&str> {
        f.dynos.iter().map(|d| d.name.as_str()).collect()
    }

    fn position(events: &[String], event: &str) -> usize {
        events.iter().position(|e| e == event).unwrap_or_else(|| panic!("{event} in {events:?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_of_quantity_scales_the_running_release() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(2, "a"), None).await;
        assert_eq!(names(&f), ["web.1-1", "web.1-2"]);
        f.apply(&target(3, "a"), None).await;
        assert_eq!(names(&f), ["web.1-1", "web.1-2", "web.1-3"], "same release, no roll");
        launcher.take_events();
        f.apply(&target(1, "a"), None).await;
        assert_eq!(names(&f), ["web.1-1"]);
        assert_eq!(launcher.take_events(), ["stop web.1-3", "stop web.1-2"], "the highest indexes stop first");
    }

    fn indexes(f: &Formation<FakeLauncher>) -> Vec<u32> {
        f.dynos.iter().map(|d| d.index).collect()
    }

    /// A step of an index test: how the new dynos behave, the target, the position of a dyno to
    /// restart, the indexes after it in the entry's order, which positions keep their dyno, why.
    type IndexStep = (Behaviour, FormationTarget, Option<usize>, &'static [u32], &'static [usize], &'static str);

    /// The running dynos of an entry are indexed 1 to N whatever happened (each index is its
    /// process name `web.N` and the start of its name): a roll's new dynos take the old ones'
    /// indexes, a restarted dyno's replacement its own, a scale-up the lowest free, and a
    /// scale-down stops the highest first; a failed roll leaves the old dynos theirs.
    #[tokio::test(start_paused = true)]
    async fn the_running_dynos_of_an_entry_are_always_indexed_1_to_n() {
        let ok = Behaviour::Healthy(Duration::from_millis(10));
        let fail = Behaviour::Fail(Duration::from_millis(10));
        let steps: [IndexStep; 12] = [
            (ok, target(3, "a"), None, &[1, 2, 3], &[], "scaled up from none"),
            (ok, target(1, "a"), None, &[1], &[0], "a scale-down stops the highest first"),
            (ok, target(2, "a"), None, &[1, 2], &[0], "a freed index is taken again"),
            (ok, target(2, "b"), None, &[1, 2], &[], "a roll's new dynos take the old ones' indexes"),
            (ok, target(3, "c"), None, &[1, 2, 3], &[], "a roll that scales up too"),
            (ok, target(3, "c"), Some(1), &[1, 2, 3], &[0, 2], "a restarted dyno's replacement keeps its index"),
            (fail, target(3, "d"), None, &[1, 2, 3], &[0, 1, 2], "a failed roll keeps the old dynos and theirs"),
            (ok, on_port(2, "e", 5000), None, &[1, 2], &[], "a roll onto a fixed port"),
            (ok, on_port(3, "f", 5000), None, &[1, 2, 3], &[], "a roll on that port, the old stopping first"),
            (ok, on_port(3, "f", 5000), Some(0), &[1, 2, 3], &[1, 2], "a restart on a fixed port"),
            (fail, on_port(3, "g", 5000), None, &[1, 2, 3], &[], "a failed roll there: the old spec again"),
            (ok, on_port(1, "f", 5000), None, &[1], &[0], "a scale-down on a fixed port"),
        ];
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        for (behaviour, target, restart, expected, kept, why) in steps {
            launcher.behave(behaviour);
            let before: Vec<String> = names(&f).into_iter().map(str::to_owned).collect();
            let command = restart.map(|i| FormationCommand::Restart(before[i].clone()));
            f.apply(&target, command).await;
            assert_eq!(indexes(&f), expected, "{why}");
            for (i, name) in names(&f).into_iter().enumerate() {
                assert_eq!(kept.contains(&i), before.get(i).is_some_and(|b| b == name), "{why}: position {i}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_spec_rolls_and_the_old_dynos_stop_only_once_the_new_are_healthy() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(2, "a"), None).await;
        launcher.take_events();
        launcher.behave(Behaviour::Healthy(Duration::from_secs(3)));
        let start = tokio::time::Instant::now();
        f.apply(&target(2, "b"), None).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
        assert_eq!(names(&f), ["web.2-3", "web.2-4"]);
        let events = launcher.events();
        let last_healthy = position(&events, "healthy web.2-3").max(position(&events, "healthy web.2-4"));
        assert!(last_healthy < position(&events, "stop web.1-1"), "{events:?}");
        assert!(position(&events, "stop web.1-1") < position(&events, "stop web.1-2"), "{events:?}");
        assert_eq!(events.len(), 6, "{events:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_that_fails_leaves_the_old_dynos_serving_and_is_not_retried() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(2, "a"), None).await;
        launcher.take_events();
        launcher.behave(Behaviour::Fail(Duration::from_millis(500)));
        f.apply(&target(2, "broken"), None).await;
        assert_eq!(names(&f), ["web.1-1", "web.1-2"]);
        let events = launcher.take_events();
        assert!(events.contains(&"R10 2".to_owned()), "{events:?}");
        assert!(events.contains(&"stop web.2-3".to_owned()) && events.contains(&"stop web.2-4".to_owned()));
        assert!(!events.iter().any(|e| e.starts_with("stop web.1-")), "{events:?}");

        // The same spec again (the target is re-sent on any model change) starts nothing.
        f.apply(&target(2, "broken"), None).await;
        assert_eq!(launcher.take_events(), Vec::<String>::new());
        // A fixed spec rolls, as release 3.
        launcher.behave(Behaviour::Healthy(Duration::from_millis(10)));
        f.apply(&target(2, "fixed"), None).await;
        assert_eq!(names(&f), ["web.3-5", "web.3-6"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_roll_fails_as_soon_as_any_of_its_new_dynos_fails_whichever_it_is() {
        // (how the two new dynos behave, in launch order): the roll fails when the failing one
        // exits, not at the health timeout, even while the other one is still starting.
        let rows = [
            [Behaviour::Hang, Behaviour::Fail(Duration::from_secs(1))],
            [Behaviour::Fail(Duration::from_secs(1)), Behaviour::Hang],
            [Behaviour::Healthy(Duration::from_secs(3)), Behaviour::Fail(Duration::from_secs(1))],
        ];
        for each in rows {
            let launcher = FakeLauncher::new();
            let mut f = formation(&launcher);
            f.apply(&target(2, "a"), None).await;
            launcher.take_events();
            launcher.behave_each(each);
            let start = tokio::time::Instant::now();
            f.apply(&target(2, "broken"), None).await;
            assert!(start.elapsed() < Duration::from_secs(2), "{each:?}: failed at once, {:?}", start.elapsed());
            assert_eq!(names(&f), ["web.1-1", "web.1-2"], "{each:?}");
            let events = launcher.take_events();
            assert!(events.contains(&"R10 2".to_owned()), "{each:?}: {events:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_roll_fails_when_another_process_type_failed_its_release() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(1, "a"), None).await;
        launcher.take_events();
        launcher.behave(Behaviour::Hang);
        let elsewhere = launcher.elsewhere.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            elsewhere.send_replace(true);
        });
        let start = tokio::time::Instant::now();
        f.apply(&target(1, "b"), None).await;
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        assert_eq!(names(&f), ["web.1-1"], "the old dyno serves on");
        assert_eq!(launcher.take_events(), ["start web.2-2", "R10 2", "stop web.2-2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_roll_in_progress_at_once_and_settles_nothing() {
        let launcher = FakeLauncher::new();
        let web = DynoType::try_new("web").unwrap();
        let handle = FormationHandle::start(launcher.clone(), "api-default", &web, released(1, "a", 1, None), TIMEOUT);
        tokio::time::sleep(Duration::from_secs(1)).await;
        launcher.behave(Behaviour::Hang);
        handle.set_target(released(1, "b", 2, None));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = tokio::time::Instant::now();
        handle.stop().await;
        assert!(start.elapsed() < Duration::from_secs(1), "not the health timeout: {:?}", start.elapsed());
        let events = launcher.events();
        assert!(!events.iter().any(|e| e.starts_with("R10") || e == "v2 failed"), "{events:?}");
        let (started, stopped) =
            (events.iter().filter(|e| e.starts_with("start ")), events.iter().filter(|e| e.starts_with("stop ")));
        assert_eq!((started.count(), stopped.count()), (2, 2), "every dyno stopped: {events:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_not_healthy_within_the_health_timeout_fails() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(1, "a"), None).await;
        launcher.behave(Behaviour::Hang);
        let start = tokio::time::Instant::now();
        f.apply(&target(1, "slow"), None).await;
        let waited = start.elapsed();
        assert!(waited >= TIMEOUT && waited < TIMEOUT + Duration::from_secs(1), "{waited:?}");
        assert_eq!(names(&f), ["web.1-1"]);
        assert!(launcher.events().contains(&"R10 2".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn restarting_one_dyno_starts_its_replacement_first() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(2, "a"), None).await;
        launcher.take_events();
        f.apply(&target(2, "a"), Some(FormationCommand::Restart("web.1-1".to_owned()))).await;
        assert_eq!(names(&f), ["web.1-3", "web.1-2"], "same release, same place");
        assert_eq!(launcher.take_events(), ["start web.1-3", "healthy web.1-3", "stop web.1-1"]);

        // A dyno that is not the entry's is left alone.
        f.apply(&target(2, "a"), Some(FormationCommand::Restart("web.1-9".to_owned()))).await;
        assert_eq!(launcher.take_events(), Vec::<String>::new());

        // A replacement that fails is stopped and the dyno stays.
        launcher.behave(Behaviour::Fail(Duration::from_millis(10)));
        f.apply(&target(2, "a"), Some(FormationCommand::Restart("web.1-2".to_owned()))).await;
        assert_eq!(names(&f), ["web.1-3", "web.1-2"]);
        assert_eq!(launcher.take_events(), ["start web.1-4", "failed web.1-4", "stop web.1-4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn restarting_every_dyno_rolls_a_new_release_of_the_same_spec() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(2, "a"), None).await;
        f.apply(&target(2, "a"), Some(FormationCommand::RestartAll)).await;
        assert_eq!(names(&f), ["web.2-3", "web.2-4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_follows_its_target_and_commands_and_stops_every_dyno() {
        let launcher = FakeLauncher::new();
        let web = DynoType::try_new("web").unwrap();
        let handle = FormationHandle::start(launcher.clone(), "api-default", &web, target(1, "a"), TIMEOUT);
        tokio::time::sleep(Duration::from_secs(1)).await;
        handle.set_target(target(2, "a"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        handle.command(FormationCommand::RestartAll);
        tokio::time::sleep(Duration::from_secs(1)).await;
        handle.stop().await;
        let events = launcher.events();
        let started: Vec<_> = events.iter().filter(|e| e.starts_with("start ")).collect();
        assert_eq!(started, ["start web.1-1", "start web.1-2", "start web.2-3", "start web.2-4"]);
        let stopped = events.iter().filter(|e| e.starts_with("stop ")).count();
        assert_eq!(stopped, 4, "every dyno stopped: {events:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_boot_that_fails_is_kept_and_retried_and_a_restart_restarts_it() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        launcher.behave(Behaviour::Fail(Duration::from_millis(10)));
        f.apply(&target(1, "a"), None).await;
        assert_eq!(names(&f), ["web.1-1"], "no old release to keep: the new one stays and is restarted");
        f.apply(&target(1, "a"), None).await;
        assert_eq!(names(&f), ["web.1-1"], "the spec runs: nothing to do");
        f.apply(&target(1, "a"), Some(FormationCommand::RestartAll)).await;
        assert_eq!(names(&f), ["web.2-2"], "a restart of a crashing release restarts it");
        launcher.behave(Behaviour::Healthy(Duration::from_millis(10)));
        f.apply(&target(1, "a"), Some(FormationCommand::Restart("web.2-2".to_owned()))).await;
        assert_eq!(names(&f), ["web.2-3"]);
        // Now that one is healthy, a failing release leaves it serving.
        launcher.behave(Behaviour::Fail(Duration::from_millis(10)));
        f.apply(&target(1, "b"), None).await;
        assert_eq!(names(&f), ["web.2-3"]);
        assert!(launcher.events().contains(&"R10 3".to_owned()));
    }

    fn on_port(quantity: u32, command: &str, port: u16) -> FormationTarget {
        FormationTarget { quantity, spec: DynoSpec { port: Some(port), ..spec(command) } }
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_on_the_same_fixed_port_stops_the_old_first_and_brings_it_back_if_it_fails() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&on_port(1, "a", 5000), None).await;
        launcher.take_events();
        launcher.behave(Behaviour::Fail(Duration::from_millis(10)));
        f.apply(&on_port(1, "broken", 5000), None).await;
        assert_eq!(
            launcher.take_events(),
            ["stop web.1-1", "start web.2-2", "failed web.2-2", "R10 2", "stop web.2-2", "start web.3-3"],
            "the old release starts again"
        );
        assert_eq!(names(&f), ["web.3-3"]);
        f.apply(&on_port(1, "broken", 5000), None).await;
        assert_eq!(launcher.take_events(), Vec::<String>::new(), "a failed spec is not tried again");
        // Another port rolls the usual way: new first.
        launcher.behave(Behaviour::Healthy(Duration::from_millis(10)));
        f.apply(&on_port(1, "a", 5001), None).await;
        // (The fake's old dyno started while it made every dyno fail: it failed too.)
        let events: Vec<_> = launcher.take_events().into_iter().filter(|e| e != "failed web.3-3").collect();
        assert_eq!(events, ["start web.4-4", "healthy web.4-4", "stop web.3-3"]);
    }

    fn released(quantity: u32, command: &str, version: u32, port: Option<u16>) -> FormationTarget {
        let release = Some(wharf_control_api::DynoRelease { id: uuid::Uuid::from_u128(version.into()), version });
        FormationTarget { quantity, spec: DynoSpec { release, port, ..spec(command) } }
    }

    #[tokio::test(start_paused = true)]
    async fn every_roll_to_a_release_reports_whether_its_dynos_passed() {
        let ok = Behaviour::Healthy(Duration::from_millis(10));
        let fail = Behaviour::Fail(Duration::from_millis(10));
        // (behaviour of the new dynos, target, the report expected); one formation throughout.
        let steps = [
            (ok, released(1, "a", 1, None), Some("v1 succeeded")),
            (ok, released(2, "a", 1, None), None),
            (fail, released(2, "b", 2, None), Some("v2 failed")),
            (ok, released(2, "c", 3, None), Some("v3 succeeded")),
            (ok, released(1, "c", 3, Some(5000)), Some("v3 succeeded")),
            (fail, released(1, "d", 4, Some(5000)), Some("v4 failed")),
            (ok, released(1, "e", 5, Some(5000)), Some("v5 succeeded")),
        ];
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        for (behaviour, target, expected) in steps {
            launcher.behave(behaviour);
            f.apply(&target, None).await;
            let reports: Vec<String> = launcher.take_events().into_iter().filter(|e| e.starts_with('v')).collect();
            assert_eq!(reports, expected.into_iter().collect::<Vec<_>>(), "{target:?}");
        }
        // A restart of every dyno rolls the running release again, and says so again (the
        // registry ignores a release already settled).
        f.apply(&released(1, "e", 5, Some(5000)), Some(FormationCommand::RestartAll)).await;
        assert!(launcher.take_events().contains(&"v5 succeeded".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn dynos_stop_together() {
        let launcher = FakeLauncher::new();
        let mut f = formation(&launcher);
        f.apply(&target(3, "a"), None).await;
        *launcher.stop_delay.lock().unwrap() = Duration::from_secs(10);
        let start = tokio::time::Instant::now();
        f.apply(&target(0, "a"), None).await;
        assert!(start.elapsed() < Duration::from_secs(11), "one grace period, not three: {:?}", start.elapsed());
        assert!(names(&f).is_empty());
    }

    #[test]
    fn a_restart_concerns_every_entry_or_the_named_dyno_s_type_only() {
        let (web, worker) = (DynoType::try_new("web").unwrap(), DynoType::try_new("worker").unwrap());
        let all = Restart { app_id: uuid::Uuid::nil(), dyno: None };
        assert_eq!(restart_command(&all, &web), Some(FormationCommand::RestartAll));
        assert_eq!(restart_command(&all, &worker), Some(FormationCommand::RestartAll));
        let one = Restart { app_id: uuid::Uuid::nil(), dyno: Some("worker.2-abcde".to_owned()) };
        assert_eq!(restart_command(&one, &web), None);
        assert_eq!(restart_command(&one, &worker), Some(FormationCommand::Restart("worker.2-abcde".to_owned())));
    }
}
