//! The local supervisor's live state as the control plane sees it: the dynos it runs and their
//! states ([`LocalDynos`]), and the restart requests it takes ([`Restart`]). Nothing here is
//! stored; it lives as long as the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

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
