//! The supervisor's side of the control API's local-runtime port: which dynos it runs, in what
//! state, and the restart requests the control plane hands it.
//!
//! The control plane sees this only as a `wharf_control_api::LocalRuntime` (plugged in with
//! `ControlPlane::set_local_runtime` when the supervisor starts). Dynos record themselves here
//! as they start, change state and stop; nothing here is stored, it lives as long as the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::broadcast;
use uuid::Uuid;
use wharf_control_api::{DynoState, LocalDyno, LocalRuntime, Restart};

/// The dynos this supervisor runs, by app and name, and the channel restart requests arrive on.
#[derive(Debug)]
pub(crate) struct Registry {
    dynos: Mutex<BTreeMap<Uuid, BTreeMap<String, LocalDyno>>>,
    restarts: broadcast::Sender<Restart>,
}

impl Default for Registry {
    fn default() -> Self {
        // Restarts are rare and the top task takes them at once; 64 queued is plenty.
        Registry { dynos: Mutex::default(), restarts: broadcast::channel(64).0 }
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

    /// Restart requests from the control plane, from now on.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_domain::DynoType;

    fn listing(name: &str, state: DynoState) -> LocalDyno {
        LocalDyno { name: name.to_owned(), dyno_type: DynoType::try_new("web").unwrap(), state, started_at: 0 }
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

    #[tokio::test]
    async fn restarts_reach_the_subscribers() {
        let r = Registry::default();
        let mut rx = r.subscribe_restarts();
        let restart = Restart { app_id: Uuid::from_u128(2), dyno: Some("web.1-aaaaa".into()) };
        r.restart(restart.clone());
        assert_eq!(rx.recv().await.unwrap(), restart);
    }
}
