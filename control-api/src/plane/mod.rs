//! The control plane: typed operations on the state, each checking its inputs against the
//! current model, computing the changes, and handing them to the commit engine (`engine`),
//! which makes them durable, applies them and publishes the new snapshot.
//!
//! Operations take typed values (names and URLs already parsed); what they check is what
//! depends on state: existence, uniqueness, limits. There is one `impl ControlPlane` file per
//! aggregate: `apps` (spaces and apps), `formation`, `dynos`, `config_vars`,
//! `drains`, `routing` (sites, routes, certificates), `canaries`, `sessions`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{RwLock, watch};
use wharf_domain::{SessionKey, Snapshot, SpaceName};

use crate::model::Model;
use crate::store::{Store, StoreError};

mod apps;
mod canaries;
mod config_vars;
mod drains;
mod dynos;
mod engine;
mod formation;
pub mod local;
mod routing;
mod sessions;
#[cfg(test)]
mod tests;

pub use canaries::CanaryReader;
pub use config_vars::MAX_CONFIG_VARS;
pub use drains::{Drains, MAX_DRAINS_PER_APP};
pub use formation::FormationUpdate;
pub use local::{DynoState, InProcess, LocalDyno, LocalDynos, LocalRuntime, Restart};
pub use routing::{MAX_CERTS, MAX_ROUTES_PER_SITE};
pub use sessions::LogSession;

use engine::State;

/// Why an operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A named resource does not exist.
    #[error("no {what} {key:?}")]
    NotFound {
        /// What kind of resource.
        what: &'static str,
        /// The id or name asked for.
        key: String,
    },
    /// The request contradicts existing state (a duplicate, a resource in use).
    #[error("{0}")]
    Conflict(String),
    /// A value is well formed but not allowed.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed; nothing changed.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

fn not_found(what: &'static str, key: &str) -> Error {
    Error::NotFound { what, key: key.to_owned() }
}

/// Settings the control plane needs from the rest of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Apps are served on `app-space.<stack_domain>`.
    pub stack_domain: String,
    /// The router's public HTTPS port, for `web_url`.
    pub https_port: u16,
    /// Base URL of live-tail links.
    pub session_base_url: String,
    /// How long a log session URL stays valid.
    pub session_ttl: Duration,
    /// Most history lines a session may ask for.
    pub max_session_lines: u32,
    /// Most dynos of one type an app may ask for.
    pub max_quantity: u32,
}

/// The state and its operations.
pub struct ControlPlane {
    /// The records, the store, and the published snapshot, shared with the blocking tasks that
    /// write them (which run to the end even when the request that started them is dropped).
    state: Arc<State>,
    /// Serializes writers: an operation computes its changes against the model it commits on.
    /// Blocking tasks that finish an operation hold it until they are done.
    writer: Arc<tokio::sync::Mutex<()>>,
    settings: Settings,
    sessions: Arc<SessionKey>,
    canary_reader: OnceLock<CanaryReader>,
    /// Woken when another replica may have committed (PostgreSQL).
    store_changed: Option<Arc<tokio::sync::Notify>>,
    /// The local supervisor's side of the port; the plane itself uses only [`LocalRuntime`].
    local: InProcess,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Loads the stored state, creating the `default` space on first start.
    pub async fn open(
        mut store: Box<dyn Store>,
        settings: Settings,
        sessions: Arc<SessionKey>,
    ) -> Result<ControlPlane, Error> {
        let store_changed = store.changed();
        let (store, loaded) = tokio::task::spawn_blocking(move || {
            let loaded = store.load();
            (store, loaded)
        })
        .await
        .expect("loading does not panic");
        let loaded = loaded?;
        let model = Model::from_objects(loaded.version, loaded.objects);
        let (snapshots, _) = watch::channel(model.snapshot());
        let plane = ControlPlane {
            state: Arc::new(State { model: RwLock::new(model), store: Mutex::new(store), snapshots }),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            settings,
            sessions,
            canary_reader: OnceLock::new(),
            store_changed,
            local: InProcess::default(),
        };
        if plane.read(|m| m.spaces().next().is_none()).await {
            // Another replica starting at the same time may create it first.
            match plane.create_space(SpaceName::try_new("default").expect("valid"), vec![]).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(plane)
    }

    /// The dynos this process's supervisor runs.
    pub fn local_dynos(&self) -> &LocalDynos {
        self.local.dynos()
    }

    /// The local runtime, as the plane and the HTTP edge read it.
    pub fn local_runtime(&self) -> &dyn LocalRuntime {
        &self.local
    }

    /// Follows every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.state.snapshots.subscribe()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reads the model.
    pub async fn read<T>(&self, f: impl FnOnce(&Model) -> T) -> T {
        f(&*self.state.model.read().await)
    }
}
