//! The port between the control plane and a local runtime (the supervisor in `wharf serve`):
//! [`LocalRuntime`] is all the plane and the HTTP edge ask of it, namely which dynos it runs and
//! in what state, and to restart some. [`InProcess`] is today's implementation: the supervisor
//! writes its dynos into [`LocalDynos`] and takes [`Restart`]s from a broadcast. Nothing here is
//! stored; it lives as long as the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use uuid::Uuid;
use wharf_domain::DynoType;

/// A request to restart an app's dynos run by the local supervisor: all of them (rolling), or
/// one. An action, not state: it is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The app.
    pub app_id: Uuid,
    /// One dyno's name, or every dyno when `None`.
    pub dyno: Option<String>,
}

/// What a dyno the local supervisor runs is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoState {
    /// Started, not yet healthy.
    Starting,
    /// Running (and, for a web dyno, passing its health check).
    Up,
    /// Exited, and waiting to be started again.
    Crashed,
}

impl DynoState {
    /// Heroku's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
        }
    }
}

/// A dyno the local supervisor runs, as it reports it. Workers appear only here (they have no
/// endpoint to register), and web dynos appear here before they are healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDyno {
    /// `type.release-xxxxx`.
    pub name: String,
    /// Its formation entry's type.
    pub dyno_type: DynoType,
    /// What it is doing.
    pub state: DynoState,
    /// When it was started, in seconds since the epoch.
    pub started_at: i64,
}

/// The dynos this process's supervisor runs, by app: live state, not stored.
#[derive(Debug, Default)]
pub struct LocalDynos(Mutex<BTreeMap<Uuid, BTreeMap<String, LocalDyno>>>);

impl LocalDynos {
    /// Records a dyno, or its new state.
    pub fn set(&self, app_id: Uuid, dyno: LocalDyno) {
        self.0.lock().expect("local dynos lock").entry(app_id).or_default().insert(dyno.name.clone(), dyno);
    }

    /// Sets a known dyno's state.
    pub fn set_state(&self, app_id: Uuid, name: &str, state: DynoState) {
        let mut all = self.0.lock().expect("local dynos lock");
        if let Some(d) = all.get_mut(&app_id).and_then(|a| a.get_mut(name)) {
            d.state = state;
        }
    }

    /// Forgets a dyno that stopped.
    pub fn remove(&self, app_id: Uuid, name: &str) {
        let mut all = self.0.lock().expect("local dynos lock");
        if let Some(app) = all.get_mut(&app_id) {
            app.remove(name);
            if app.is_empty() {
                all.remove(&app_id);
            }
        }
    }

    /// An app's dynos, by name.
    pub fn of(&self, app_id: Uuid) -> Vec<LocalDyno> {
        self.0.lock().expect("local dynos lock").get(&app_id).map(|a| a.values().cloned().collect()).unwrap_or_default()
    }

    /// One dyno.
    pub fn get(&self, app_id: Uuid, name: &str) -> Option<LocalDyno> {
        self.0.lock().expect("local dynos lock").get(&app_id).and_then(|a| a.get(name)).cloned()
    }
}

/// What the control plane needs from a runtime that runs dynos on this machine. The plane reads
/// dynos through it to show unregistered ones (workers, web dynos not yet healthy) and to check
/// a restart names a dyno that exists; it never reaches into the runtime otherwise.
pub trait LocalRuntime: Send + Sync {
    /// The app's dynos this runtime runs, by name; empty for an app it does not run.
    fn dynos(&self, app_id: Uuid) -> Vec<LocalDyno>;

    /// One of the app's dynos, by name.
    fn dyno(&self, app_id: Uuid, name: &str) -> Option<LocalDyno> {
        self.dynos(app_id).into_iter().find(|d| d.name == name)
    }

    /// Asks for a restart: every dyno of the app, rolling, or one. Fire and forget: the runtime
    /// restarts in its own time, and a request with no runtime listening is dropped.
    fn restart(&self, restart: Restart);
}

/// The in-process runtime port: the supervisor reports its dynos into [`InProcess::dynos`] and
/// subscribes to [`InProcess::subscribe_restarts`].
#[derive(Debug)]
pub struct InProcess {
    dynos: LocalDynos,
    restarts: broadcast::Sender<Restart>,
}

impl Default for InProcess {
    fn default() -> Self {
        // Restarts are rare and the supervisor takes them at once; 64 queued is plenty.
        InProcess { dynos: LocalDynos::default(), restarts: broadcast::channel(64).0 }
    }
}

impl InProcess {
    /// The dynos the supervisor reports.
    pub fn dynos(&self) -> &LocalDynos {
        &self.dynos
    }

    /// Restart requests, for the supervisor.
    pub fn subscribe_restarts(&self) -> broadcast::Receiver<Restart> {
        self.restarts.subscribe()
    }
}

impl LocalRuntime for InProcess {
    fn dynos(&self, app_id: Uuid) -> Vec<LocalDyno> {
        self.dynos.of(app_id)
    }

    fn dyno(&self, app_id: Uuid, name: &str) -> Option<LocalDyno> {
        self.dynos.get(app_id, name)
    }

    fn restart(&self, restart: Restart) {
        // Nobody listening means no supervisor: nothing runs to restart.
        let _ = self.restarts.send(restart);
    }
}
