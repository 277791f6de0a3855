//! The control plane's operations: each checks its inputs against the current model, computes
//! the changes, makes them durable, applies them, and publishes the new snapshot.
//!
//! Operations take typed values (names and URLs already parsed); what they check here is what
//! depends on state: existence, uniqueness, limits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{RwLock, watch};
use uuid::Uuid;
use wharf_domain::{
    AppName, CanaryEvidence, CanaryPolicy, CanaryState, CanaryVerdict, Certificate, DrainUrl, DynoName, DynoType,
    Hostname, RoutePath, SessionGrant, SessionKey, SiteDomain, Snapshot, SpaceName, Tally, new_id,
    timestamp::now_seconds,
};

use crate::model::{
    App, Canary, Cert, Change, Compliance, ConfigVars, Drain, Dyno, Formation, Kind, Model, Object, Owner, Route, Site,
    Space,
};
use crate::store::{Store, StoreError};

/// Most drains one app or site may have.
pub const MAX_DRAINS_PER_APP: usize = 50;

/// Most certificates the platform holds.
pub const MAX_CERTS: usize = 10_000;

/// Whose drains an operation is about, as the request names it (id, key or domain).
#[derive(Debug, Clone, Copy)]
pub enum Drains<'a> {
    /// An app's, by id or `app-space`.
    App(&'a str),
    /// A site's, by id or domain.
    Site(&'a str),
}

impl Drains<'_> {
    /// The app or site named, or the 404 that says which one is missing.
    pub(crate) fn owner(self, m: &Model) -> Result<Owner, Error> {
        match self {
            Drains::App(app) => Ok(Owner::App(m.app(app).ok_or_else(|| not_found("app", app))?.id)),
            Drains::Site(site) => Ok(Owner::Site(m.site(site).ok_or_else(|| not_found("site", site))?.id)),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Drains::App(_) => "an app",
            Drains::Site(_) => "a site",
        }
    }
}

/// Most routes one site may have.
pub const MAX_ROUTES_PER_SITE: usize = 1000;

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

/// Counts of a canary no request has reached.
fn no_evidence(decision: &str) -> CanaryEvidence {
    CanaryEvidence {
        baseline: Tally::default(),
        canary: Tally::default(),
        e_value: 1.0,
        p_value: 1.0,
        decision: decision.into(),
    }
}

/// The canary of an app named by id or key, or the 404 that says what is missing.
fn canary_of<'m>(m: &'m Model, app: &str) -> Result<&'m Canary, Error> {
    let a = m.app(app).ok_or_else(|| not_found("app", app))?;
    m.canary_of(a.id).ok_or_else(|| not_found("canary of app", app))
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

/// A change to one dyno type of an app's formation: what is given is set.
#[derive(Debug, Clone)]
pub struct FormationUpdate {
    /// The dyno type.
    pub dyno_type: DynoType,
    /// How many dynos.
    pub quantity: Option<u32>,
    /// The command.
    pub command: Option<String>,
    /// The port of a web dyno.
    pub port: Option<u16>,
    /// The health check path of a web dyno.
    pub healthcheck: Option<String>,
}

/// Most config vars an app may have, and the longest name and value, in bytes.
pub const MAX_CONFIG_VARS: usize = 1000;
const MAX_VAR_NAME: usize = 256;
const MAX_VAR_VALUE: usize = 32 * 1024;

/// Checks a config var's name: a letter or underscore, then letters, digits and underscores.
fn check_var_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= MAX_VAR_NAME
        && name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid config var name {name:?}: a letter or underscore, then letters, digits or underscores, at most {MAX_VAR_NAME}"
        )))
    }
}

/// A log session's grant and its URL.
#[derive(Debug, Clone)]
pub struct LogSession {
    /// What the URL allows.
    pub grant: SessionGrant,
    /// The URL that streams the lines.
    pub url: String,
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
    restarts: tokio::sync::broadcast::Sender<Restart>,
    /// Woken when another replica may have committed (PostgreSQL).
    store_changed: Option<Arc<tokio::sync::Notify>>,
    local_dynos: LocalDynos,
}

/// What the plane's blocking tasks share. Lock order: `store`, then `model`.
struct State {
    model: RwLock<Model>,
    store: Mutex<Box<dyn Store>>,
    snapshots: watch::Sender<Arc<Snapshot>>,
}

impl State {
    /// Brings the model up to the store's version, publishing the result if it moved. With
    /// `lock`, it takes the store's write lock first ([`Store::begin`]). Blocking.
    fn sync(&self, store: &mut dyn Store, lock: bool) -> Result<(), StoreError> {
        let from = self.model.blocking_read().version();
        let steps = if lock { store.begin(from)? } else { store.changes_since(from)? };
        let snapshot = match steps {
            Some(steps) if steps.is_empty() => return Ok(()),
            Some(steps) => {
                let mut model = self.model.blocking_write();
                for step in steps {
                    model.apply(step.version, step.changes);
                }
                model.snapshot()
            }
            None => {
                // Too far behind for the log: load everything.
                let loaded = store.load()?;
                let mut model = self.model.blocking_write();
                if loaded.version <= model.version() {
                    return Ok(());
                }
                *model = Model::from_objects(loaded.version, loaded.objects);
                model.snapshot()
            }
        };
        tracing::debug!(version = snapshot.version, "published another replica's changes");
        self.snapshots.send_replace(snapshot);
        Ok(())
    }

    /// Commits `changes` on `base`, then applies and publishes them; releases the store's
    /// write lock either way. Blocking.
    fn commit(&self, store: &mut dyn Store, base: u64, changes: Vec<Change>) -> Result<(), StoreError> {
        let version = match store.commit(base, &changes) {
            Ok(version) => version,
            Err(e) => {
                store.abort();
                return Err(e);
            }
        };
        let snapshot = {
            let mut model = self.model.blocking_write();
            model.apply(version, changes);
            model.snapshot()
        };
        tracing::debug!(version, "published snapshot");
        self.snapshots.send_replace(snapshot);
        Ok(())
    }
}

/// The writer's turn and the store's write lock, released together unless handed to the commit:
/// an operation that refuses, or whose request is dropped while it computes, must not keep other
/// replicas waiting. The next operation starts only after the release.
struct WriteLock {
    state: Arc<State>,
    writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteLock {
    /// Hands the writer's turn to the commit.
    fn commit(mut self) -> tokio::sync::OwnedMutexGuard<()> {
        self.writer.take().expect("held until committed or dropped")
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            let state = self.state.clone();
            tokio::task::spawn_blocking(move || {
                state.store.lock().expect("store lock").abort();
                drop(writer);
            });
        }
    }
}

/// How often a replica checks the store for other replicas' commits even without being told;
/// notifications arrive within milliseconds, this covers one lost with a broken connection.
const STORE_POLL: Duration = Duration::from_secs(5);

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

/// Reads a running canary's live counts and statistics from the router that judges it.
pub type CanaryReader = Box<dyn Fn(Uuid) -> Option<CanaryEvidence> + Send + Sync>;

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
            restarts: tokio::sync::broadcast::channel(64).0,
            store_changed,
            local_dynos: LocalDynos::default(),
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

    /// Follows what other replicas commit to a shared store, applying it and publishing each
    /// new snapshot; returns at once for a store with one writer. Runs until the process ends.
    pub async fn follow_store(self: Arc<Self>) {
        let Some(changed) = self.store_changed.clone() else { return };
        loop {
            tokio::select! {
                () = changed.notified() => {}
                () = tokio::time::sleep(STORE_POLL) => {}
            }
            let _writer = self.writer.lock().await;
            let state = self.state.clone();
            let synced = tokio::task::spawn_blocking(move || {
                let mut store = state.store.lock().expect("store lock");
                state.sync(&mut **store, false)
            })
            .await
            .expect("reading does not panic");
            if let Err(e) = synced {
                tracing::warn!(error = %e, "cannot read other replicas' changes; serving the last known state");
            }
        }
    }

    /// The dynos this process's supervisor runs.
    pub fn local_dynos(&self) -> &LocalDynos {
        &self.local_dynos
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

    /// Runs an operation: `f` computes changes from the current model, or refuses. With a store
    /// shared by replicas, the operation first takes the store's write lock and catches up with
    /// what the others committed, so it is computed on the latest state and cannot be refused
    /// for a stale version; replicas take turns in the order they asked.
    async fn change<T>(&self, f: impl FnOnce(&Model) -> Result<(T, Vec<Change>), Error>) -> Result<T, Error> {
        let writer = self.writer.clone().lock_owned().await;
        let state = self.state.clone();
        let (writer, synced) = tokio::task::spawn_blocking(move || {
            let mut store = state.store.lock().expect("store lock");
            let synced = state.sync(&mut **store, true);
            (writer, synced)
        })
        .await
        .expect("catching up does not panic");
        let lock = WriteLock { state: self.state.clone(), writer: Some(writer) };
        synced?;
        let (out, changes, base) = {
            let model = self.state.model.read().await;
            let (out, changes) = f(&model)?;
            (out, changes, model.version())
        };
        if changes.is_empty() {
            return Ok(out);
        }
        // From here the commit runs to its end even if this request is dropped, so the model
        // never misses a commit the store made.
        let writer = lock.commit();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = state.store.lock().expect("store lock");
            let committed = state.commit(&mut **store, base, changes);
            drop(writer);
            committed
        })
        .await
        .expect("commit does not panic")?;
        Ok(out)
    }

    /// Creates a space.
    pub async fn create_space(&self, name: SpaceName, mut compliance: Vec<Compliance>) -> Result<Space, Error> {
        compliance.sort();
        compliance.dedup();
        self.change(|m| {
            if m.space(name.as_str()).is_some() {
                return Err(Error::Conflict(format!("space {name} already exists")));
            }
            let now = now_seconds();
            let space = Space { id: new_id(), name, compliance, created_at: now, updated_at: now };
            Ok((space.clone(), vec![Change::Put(Object::Space(space))]))
        })
        .await
    }

    /// Creates an app in a space (by id or name).
    pub async fn create_app(&self, name: AppName, space: &str) -> Result<App, Error> {
        self.change(|m| {
            let space = m.space(space).ok_or_else(|| not_found("space", space))?;
            let key = wharf_domain::AppKey::new(&name, &space.name);
            if m.app_by_key(&key).is_some() {
                return Err(Error::Conflict(format!("app {key} already exists")));
            }
            let domain = self.default_domain(&key);
            if m.site(&domain).is_some() {
                return Err(Error::Conflict(format!("site {domain} already uses the app's default domain")));
            }
            let now = now_seconds();
            let app = App { id: new_id(), name, space_id: space.id, created_at: now, updated_at: now };
            Ok((app.clone(), vec![Change::Put(Object::App(app))]))
        })
        .await
    }

    /// Deletes an app with its dynos and drains.
    pub async fn delete_app(&self, app: &str) -> Result<App, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?.clone();
            let mut changes: Vec<Change> = m.dynos_of(a.id).iter().map(|d| Change::Delete(Kind::Dyno, d.id)).collect();
            changes.extend(m.drains_of(Owner::App(a.id)).iter().map(|d| Change::Delete(Kind::Drain, d.id)));
            changes.extend(m.routes_where(|r| r.app_id == a.id).iter().map(|r| Change::Delete(Kind::Route, r.id)));
            let canaries = m.canaries_where(|c| c.app_id == a.id || c.canary_app_id == a.id);
            changes.extend(canaries.iter().map(|c| Change::Delete(Kind::Canary, c.id)));
            changes.extend(m.formation_of(a.id).iter().map(|f| Change::Delete(Kind::Formation, f.id)));
            if m.config_vars_of(a.id).is_some() {
                changes.push(Change::Delete(Kind::ConfigVars, a.id));
            }
            changes.push(Change::Delete(Kind::App, a.id));
            Ok((a, changes))
        })
        .await
    }

    /// Registers or replaces a dyno's endpoint, as an external orchestrator does. Returns the
    /// dyno and whether it is new.
    pub async fn put_dyno(
        &self,
        app: &str,
        name: DynoName,
        dyno_type: DynoType,
        host: Hostname,
        port: u16,
    ) -> Result<(Dyno, bool), Error> {
        if name.dyno_type() != dyno_type.as_str() {
            return Err(Error::Invalid(format!(
                "dyno {name} is not of type {dyno_type}: its name starts with its type"
            )));
        }
        if port == 0 {
            return Err(Error::Invalid("port must be between 1 and 65535".into()));
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let now = now_seconds();
            let existing = m.dyno(a.id, name.as_str());
            let dyno = Dyno {
                id: existing.map_or_else(new_id, |d| d.id),
                app_id: a.id,
                name,
                dyno_type,
                host,
                port,
                created_at: existing.map_or(now, |d| d.created_at),
                updated_at: now,
            };
            if existing == Some(&dyno) {
                return Ok(((dyno, false), vec![]));
            }
            let created = existing.is_none();
            Ok(((dyno.clone(), created), vec![Change::Put(Object::Dyno(dyno))]))
        })
        .await
    }

    /// Changes an app's formation, all of it or nothing: each update sets what it gives on its
    /// dyno type, which is added when the app does not have it yet. Returns the updated entries.
    pub async fn update_formation(&self, app: &str, updates: Vec<FormationUpdate>) -> Result<Vec<Formation>, Error> {
        for (i, u) in updates.iter().enumerate() {
            if updates[..i].iter().any(|o| o.dyno_type == u.dyno_type) {
                return Err(Error::Invalid(format!("dyno type {} is updated twice", u.dyno_type)));
            }
            if let Some(q) = u.quantity
                && q > self.settings.max_quantity
            {
                return Err(Error::Invalid(format!(
                    "quantity of {} must be between 0 and {}, got {q}",
                    u.dyno_type, self.settings.max_quantity
                )));
            }
            if let Some(c) = &u.command
                && (c.trim().is_empty() || c.len() > 4096 || c.contains('\0'))
            {
                return Err(Error::Invalid("command must be 1 to 4096 bytes, not blank".into()));
            }
            if u.port == Some(0) {
                return Err(Error::Invalid("port must be between 1 and 65535".into()));
            }
            if let Some(h) = &u.healthcheck
                && (!h.starts_with('/') || h.len() > 1024 || !h.bytes().all(|c| c.is_ascii_graphic()))
            {
                return Err(Error::Invalid(format!("healthcheck must be a path such as /health, got {h:?}")));
            }
        }
        if updates.is_empty() {
            return Err(Error::Invalid("updates must name at least one dyno type".into()));
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let now = now_seconds();
            let existing = m.formation_of(a.id);
            let mut out = Vec::new();
            for u in &updates {
                let mut f = match existing.iter().find(|f| f.dyno_type == u.dyno_type) {
                    Some(f) => (*f).clone(),
                    None => Formation {
                        id: new_id(),
                        app_id: a.id,
                        dyno_type: u.dyno_type.clone(),
                        quantity: 1,
                        command: None,
                        port: None,
                        healthcheck: None,
                        created_at: now,
                        updated_at: now,
                    },
                };
                f.quantity = u.quantity.unwrap_or(f.quantity);
                f.command = u.command.clone().or(f.command);
                f.port = u.port.or(f.port);
                f.healthcheck = u.healthcheck.clone().or(f.healthcheck);
                f.updated_at = now;
                out.push(f);
            }
            let changes = out.iter().cloned().map(|f| Change::Put(Object::Formation(f))).collect();
            Ok((out, changes))
        })
        .await
    }

    /// Removes a dyno type from an app's formation.
    pub async fn delete_formation(&self, app: &str, dyno_type: &str) -> Result<Formation, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let f = m.formation_of(a.id).into_iter().find(|f| f.dyno_type.as_str() == dyno_type).cloned();
            let f = f.ok_or_else(|| not_found("formation", dyno_type))?;
            let id = f.id;
            Ok((f, vec![Change::Delete(Kind::Formation, id)]))
        })
        .await
    }

    /// Sets (`Some`) and deletes (`None`) an app's config vars, all or nothing; returns them all.
    pub async fn update_config_vars(
        &self,
        app: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<BTreeMap<String, String>, Error> {
        for (name, value) in &changes {
            check_var_name(name)?;
            if value.as_ref().is_some_and(|v| v.len() > MAX_VAR_VALUE) {
                return Err(Error::Invalid(format!("config var {name} is longer than {MAX_VAR_VALUE} bytes")));
            }
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let mut vars = m.config_vars_of(a.id).map(|c| c.vars.clone()).unwrap_or_default();
            for (name, value) in &changes {
                match value {
                    Some(v) => vars.insert(name.clone(), v.clone()),
                    None => vars.remove(name),
                };
            }
            if vars.len() > MAX_CONFIG_VARS {
                return Err(Error::Invalid(format!("an app has at most {MAX_CONFIG_VARS} config vars")));
            }
            let record = ConfigVars { id: a.id, vars: vars.clone(), updated_at: now_seconds() };
            Ok((vars, vec![Change::Put(Object::ConfigVars(record))]))
        })
        .await
    }

    /// Restart requests, for the local supervisor.
    pub fn subscribe_restarts(&self) -> tokio::sync::broadcast::Receiver<Restart> {
        self.restarts.subscribe()
    }

    /// Whether the local supervisor runs this app: its formation has a command.
    pub async fn supervised(&self, app: &str) -> Result<bool, Error> {
        self.read(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            Ok(m.formation_of(a.id).iter().any(|f| f.command.is_some()))
        })
        .await
    }

    /// Asks the local supervisor to restart an app's dynos: all of them, rolling, or one (of
    /// any type). Refused for apps an external runtime runs, which restarts its own dynos.
    pub async fn restart_dynos(&self, app: &str, dyno: Option<&str>) -> Result<(), Error> {
        let restart = self
            .read(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                if !m.formation_of(a.id).iter().any(|f| f.command.is_some()) {
                    return Err(Error::Invalid(format!(
                        "the dynos of {} are run by an external runtime: restart them there",
                        m.app_key(a)
                    )));
                }
                if let Some(d) = dyno
                    && m.dyno(a.id, d).is_none()
                    && self.local_dynos.get(a.id, d).is_none()
                {
                    return Err(not_found("dyno", d));
                }
                Ok(Restart { app_id: a.id, dyno: dyno.map(str::to_owned) })
            })
            .await?;
        // Nobody listening means no supervisor: nothing runs to restart.
        let _ = self.restarts.send(restart);
        Ok(())
    }

    /// Removes a registered dyno.
    pub async fn delete_dyno(&self, app: &str, dyno: &str) -> Result<Dyno, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let d = m.dyno(a.id, dyno).ok_or_else(|| not_found("dyno", dyno))?.clone();
            let id = d.id;
            Ok((d, vec![Change::Delete(Kind::Dyno, id)]))
        })
        .await
    }

    /// Adds a log drain to an app or a site.
    pub async fn add_drain(&self, of: Drains<'_>, url: DrainUrl) -> Result<Drain, Error> {
        self.change(|m| {
            let owner = of.owner(m)?;
            let drains = m.drains_of(owner);
            if drains.iter().any(|d| d.url == url) {
                return Err(Error::Conflict(format!("{} already has a drain to {url}", of.what())));
            }
            if drains.len() >= MAX_DRAINS_PER_APP {
                return Err(Error::Invalid(format!("{} has at most {MAX_DRAINS_PER_APP} drains", of.what())));
            }
            let now = now_seconds();
            let drain =
                Drain { id: new_id(), owner, url, token: format!("d.{}", new_id()), created_at: now, updated_at: now };
            Ok((drain.clone(), vec![Change::Put(Object::Drain(drain))]))
        })
        .await
    }

    /// Removes a log drain of an app or a site, by id or URL.
    pub async fn delete_drain(&self, of: Drains<'_>, drain: &str) -> Result<Drain, Error> {
        self.change(|m| {
            let owner = of.owner(m)?;
            let d = m.drain(owner, drain).ok_or_else(|| not_found("log drain", drain))?.clone();
            let id = d.id;
            Ok((d, vec![Change::Delete(Kind::Drain, id)]))
        })
        .await
    }

    /// Adds a certificate, checked by its constructor. The same leaf twice is a conflict.
    pub async fn add_cert(&self, certificate: Certificate) -> Result<Cert, Error> {
        self.change(|m| {
            if let Some(c) = m.certs().find(|c| c.certificate.fingerprint() == certificate.fingerprint()) {
                return Err(Error::Conflict(format!(
                    "certificate {} is already uploaded as {}",
                    c.certificate.subject(),
                    c.id
                )));
            }
            if m.certs().count() >= MAX_CERTS {
                return Err(Error::Invalid(format!("at most {MAX_CERTS} certificates")));
            }
            let now = now_seconds();
            let cert = Cert { id: new_id(), certificate, created_at: now, updated_at: now };
            Ok((cert.clone(), vec![Change::Put(Object::Cert(cert))]))
        })
        .await
    }

    /// Removes a certificate; the router stops serving it with the next snapshot.
    pub async fn delete_cert(&self, id: &str) -> Result<Cert, Error> {
        self.change(|m| {
            let c = m.cert(id).ok_or_else(|| not_found("certificate", id))?.clone();
            let id = c.id;
            Ok((c, vec![Change::Delete(Kind::Cert, id)]))
        })
        .await
    }

    /// Lets `GET` show a running canary's live counts, read from the router in this process.
    pub fn set_canary_reader(&self, reader: CanaryReader) {
        let _ = self.canary_reader.set(reader);
    }

    /// A canary's counts and statistics: the decision's when it was aborted, else the router's
    /// live ones while it runs.
    pub fn canary_evidence(&self, c: &Canary) -> Option<CanaryEvidence> {
        match c.state {
            CanaryState::Aborted => c.evidence.clone(),
            CanaryState::Running => Some(
                self.canary_reader
                    .get()
                    .and_then(|read| read(c.id))
                    .unwrap_or_else(|| no_evidence("running: the router has not judged a request yet")),
            ),
            CanaryState::Promoted => None,
        }
    }

    /// Starts a canary: `canary_app` takes the policy's share of `app`'s requests, judged from
    /// zero. Replaces the app's previous canary. Returns it and whether the app had none.
    pub async fn put_canary(&self, app: &str, canary_app: &str, policy: CanaryPolicy) -> Result<(Canary, bool), Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let c = m.app(canary_app).ok_or_else(|| not_found("app", canary_app))?;
            let (key, canary_key) = (m.app_key(a), m.app_key(c));
            if a.id == c.id {
                return Err(Error::Invalid(format!("app {key} cannot be its own canary")));
            }
            if m.app_is_internal(a) != m.app_is_internal(c) {
                return Err(Error::Invalid(format!(
                    "apps {key} and {canary_key} must both be internal or both be public: a canary takes the app's traffic"
                )));
            }
            // Splits do not chain: a canary's share goes to the canary app's own dynos.
            let live = |x: &Canary| x.state != CanaryState::Aborted;
            if let Some(x) = m.canaries_where(|x| live(x) && x.app_id == c.id).first() {
                return Err(Error::Conflict(format!(
                    "app {canary_key} has a canary of its own ({}); it cannot be one",
                    x.id
                )));
            }
            if !m.canaries_where(|x| live(x) && x.canary_app_id == a.id).is_empty() {
                return Err(Error::Conflict(format!("app {key} is another app's canary; it cannot have one")));
            }
            let now = now_seconds();
            let previous = m.canary_of(a.id);
            let canary = Canary {
                id: new_id(),
                app_id: a.id,
                canary_app_id: c.id,
                policy,
                state: CanaryState::Running,
                evidence: None,
                created_at: now,
                updated_at: now,
            };
            let mut changes: Vec<Change> = previous.iter().map(|p| Change::Delete(Kind::Canary, p.id)).collect();
            changes.push(Change::Put(Object::Canary(canary.clone())));
            Ok(((canary, previous.is_none()), changes))
        })
        .await
    }

    /// Sends every request of the app to its running canary, and stops judging it.
    pub async fn promote_canary(&self, app: &str) -> Result<Canary, Error> {
        self.change(|m| {
            let c = canary_of(m, app)?;
            match c.state {
                CanaryState::Promoted => return Ok((c.clone(), vec![])),
                CanaryState::Aborted => {
                    return Err(Error::Conflict("the canary was aborted; put a new one to try again".into()));
                }
                CanaryState::Running => {}
            }
            let c = Canary { state: CanaryState::Promoted, updated_at: now_seconds(), ..c.clone() };
            Ok((c.clone(), vec![Change::Put(Object::Canary(c))]))
        })
        .await
    }

    /// Aborts the app's canary by hand: the app's own dynos take every request again.
    pub async fn abort_canary(&self, app: &str) -> Result<Canary, Error> {
        self.change(|m| {
            let c = canary_of(m, app)?;
            if c.state == CanaryState::Aborted {
                return Ok((c.clone(), vec![]));
            }
            let mut evidence = self.canary_evidence(c).unwrap_or_else(|| no_evidence(""));
            evidence.decision = "aborted by hand".into();
            let c = Canary {
                state: CanaryState::Aborted,
                evidence: Some(evidence),
                updated_at: now_seconds(),
                ..c.clone()
            };
            Ok((c.clone(), vec![Change::Put(Object::Canary(c))]))
        })
        .await
    }

    /// Records a router's abort so that every router follows. The first abort of a running
    /// canary wins; a late one (another router's, or for a canary since replaced) changes
    /// nothing. Returns the canary when this verdict aborted it.
    pub async fn record_verdict(&self, verdict: CanaryVerdict) -> Result<Option<Canary>, Error> {
        self.change(|m| match m.canary(verdict.id) {
            Some(c) if c.state == CanaryState::Running => {
                let c = Canary {
                    state: CanaryState::Aborted,
                    evidence: Some(verdict.evidence),
                    updated_at: now_seconds(),
                    ..c.clone()
                };
                Ok((Some(c.clone()), vec![Change::Put(Object::Canary(c))]))
            }
            _ => Ok((None, vec![])),
        })
        .await
    }

    /// Records a router's verdicts as they come, until the router goes away. A verdict the
    /// store cannot take yet is retried: the router that decided has already stopped the split,
    /// and the others should follow as soon as the store is back.
    pub async fn record_verdicts(self: Arc<Self>, mut verdicts: tokio::sync::mpsc::UnboundedReceiver<CanaryVerdict>) {
        while let Some(verdict) = verdicts.recv().await {
            let mut delay = Duration::from_millis(100);
            loop {
                match self.record_verdict(verdict.clone()).await {
                    Ok(Some(c)) => tracing::info!(canary_id = %c.id, "canary abort recorded"),
                    Ok(None) => tracing::debug!(canary_id = %verdict.id, "canary abort already recorded or replaced"),
                    Err(e) => {
                        tracing::error!(canary_id = %verdict.id, error = %e, "cannot record a canary abort; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                        continue;
                    }
                }
                break;
            }
        }
    }

    /// An app's default domain, `app-space.<stack_domain>`.
    pub fn default_domain(&self, key: &wharf_domain::AppKey) -> String {
        format!("{key}.{}", self.settings.stack_domain.to_ascii_lowercase())
    }

    /// Creates a site.
    pub async fn create_site(&self, domain: SiteDomain, internal: bool) -> Result<Site, Error> {
        self.change(|m| {
            if m.site(domain.as_str()).is_some() {
                return Err(Error::Conflict(format!("site {domain} already exists")));
            }
            if let Some(a) = m.apps().find(|a| self.default_domain(&m.app_key(a)) == domain.as_str()) {
                return Err(Error::Conflict(format!("{domain} is the default domain of app {}", m.app_key(a))));
            }
            let now = now_seconds();
            let site = Site { id: new_id(), domain, internal, created_at: now, updated_at: now };
            Ok((site.clone(), vec![Change::Put(Object::Site(site))]))
        })
        .await
    }

    /// Deletes a site with its routes.
    pub async fn delete_site(&self, site: &str) -> Result<Site, Error> {
        self.change(|m| {
            let s = m.site(site).ok_or_else(|| not_found("site", site))?.clone();
            let mut changes: Vec<Change> =
                m.routes_where(|r| r.site_id == s.id).iter().map(|r| Change::Delete(Kind::Route, r.id)).collect();
            changes.extend(m.drains_of(Owner::Site(s.id)).iter().map(|d| Change::Delete(Kind::Drain, d.id)));
            changes.push(Change::Delete(Kind::Site, s.id));
            Ok((s, changes))
        })
        .await
    }

    /// Routes a site's path prefix to an app. Internal apps go only on internal sites and
    /// public apps only on public ones, so that no route exposes an internal app publicly.
    pub async fn create_route(
        &self,
        site: &str,
        app: &str,
        source_path: RoutePath,
        target_path: RoutePath,
    ) -> Result<Route, Error> {
        self.change(|m| {
            let s = m.site(site).ok_or_else(|| not_found("site", site))?;
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            match (s.internal, m.app_is_internal(a)) {
                (false, true) => {
                    return Err(Error::Invalid(format!(
                        "app {} is internal and cannot be routed from the public site {}",
                        m.app_key(a),
                        s.domain
                    )));
                }
                (true, false) => {
                    return Err(Error::Invalid(format!(
                        "app {} is public and cannot be routed from the internal site {}",
                        m.app_key(a),
                        s.domain
                    )));
                }
                _ => {}
            }
            let routes = m.routes_where(|r| r.site_id == s.id);
            if routes.iter().any(|r| r.source_path == source_path) {
                return Err(Error::Conflict(format!("site {} already routes {source_path}", s.domain)));
            }
            if routes.len() >= MAX_ROUTES_PER_SITE {
                return Err(Error::Invalid(format!("a site has at most {MAX_ROUTES_PER_SITE} routes")));
            }
            let now = now_seconds();
            let route = Route {
                id: new_id(),
                site_id: s.id,
                app_id: a.id,
                source_path,
                target_path,
                created_at: now,
                updated_at: now,
            };
            Ok((route.clone(), vec![Change::Put(Object::Route(route))]))
        })
        .await
    }

    /// Removes a route.
    pub async fn delete_route(&self, id: &str) -> Result<Route, Error> {
        self.change(|m| {
            let r = id.parse().ok().and_then(|id| m.route(id)).ok_or_else(|| not_found("route", id))?.clone();
            let rid = r.id;
            Ok((r, vec![Change::Delete(Kind::Route, rid)]))
        })
        .await
    }

    /// Grants a live tail of an app's lines.
    pub async fn create_log_session(
        &self,
        app: &str,
        lines: u32,
        tail: bool,
        source: Option<String>,
        dyno: Option<String>,
    ) -> Result<LogSession, Error> {
        if lines > self.settings.max_session_lines {
            return Err(Error::Invalid(format!("lines must be at most {}", self.settings.max_session_lines)));
        }
        let key = self.read(|m| m.app(app).map(|a| m.app_key(a))).await.ok_or_else(|| not_found("app", app))?;
        let grant = SessionGrant {
            id: new_id(),
            app: key,
            lines,
            tail,
            source,
            dyno,
            expires: now_seconds() + self.settings.session_ttl.as_secs() as i64,
        };
        let url = format!(
            "{}/log-sessions/{}",
            self.settings.session_base_url.trim_end_matches('/'),
            self.sessions.sign(&grant)
        );
        Ok(LogSession { grant, url })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use uuid::Uuid;

    async fn plane() -> ControlPlane {
        let settings = Settings {
            stack_domain: "localhost".into(),
            https_port: 8443,
            session_base_url: "http://127.0.0.1:5000".into(),
            session_ttl: Duration::from_secs(60),
            max_session_lines: 1500,
            max_quantity: 100,
        };
        let store = Box::new(SqliteStore::in_memory().unwrap());
        ControlPlane::open(store, settings, Arc::new(SessionKey::generate())).await.unwrap()
    }

    #[tokio::test]
    async fn every_change_publishes_a_newer_snapshot() {
        let p = plane().await;
        let mut rx = p.subscribe();
        let v0 = rx.borrow_and_update().version;
        p.create_app("api".parse().unwrap(), "default").await.unwrap();
        p.put_dyno("api-default", "web.1".parse().unwrap(), "web".parse().unwrap(), "127.0.0.1".parse().unwrap(), 9000)
            .await
            .unwrap();
        assert!(rx.has_changed().unwrap());
        let snap = rx.borrow_and_update().clone();
        assert_eq!(snap.version, v0 + 2);
        let app = snap.app(&"api-default".parse().unwrap()).unwrap();
        assert_eq!(app.web_dynos.len(), 1);
    }

    #[tokio::test]
    async fn refused_operations_change_nothing() {
        let p = plane().await;
        p.create_app("api".parse().unwrap(), "default").await.unwrap();
        let before = p.subscribe().borrow().clone();
        let errs = [
            p.create_app("api".parse().unwrap(), "default").await.unwrap_err(),
            p.create_app("web".parse().unwrap(), "nope").await.unwrap_err(),
            p.put_dyno("api-default", "web.1".parse().unwrap(), "worker".parse().unwrap(), "h".parse().unwrap(), 1)
                .await
                .unwrap_err(),
            p.put_dyno("nope-default", "web.1".parse().unwrap(), "web".parse().unwrap(), "h".parse().unwrap(), 1)
                .await
                .unwrap_err(),
            p.delete_drain(Drains::App("api-default"), "x").await.unwrap_err(),
            p.create_log_session("api-default", 5000, false, None, None).await.unwrap_err(),
        ];
        assert!(matches!(errs[0], Error::Conflict(_)), "{}", errs[0]);
        assert!(matches!(errs[1], Error::NotFound { what: "space", .. }), "{}", errs[1]);
        assert!(matches!(errs[2], Error::Invalid(_)), "{}", errs[2]);
        assert!(matches!(errs[3], Error::NotFound { what: "app", .. }), "{}", errs[3]);
        assert!(matches!(errs[4], Error::NotFound { what: "log drain", .. }), "{}", errs[4]);
        assert!(matches!(errs[5], Error::Invalid(_)), "{}", errs[5]);
        assert_eq!(*p.subscribe().borrow(), before);
    }

    #[tokio::test]
    async fn routes_keep_internal_and_public_apart() {
        let p = plane().await;
        p.create_space("vpn".parse().unwrap(), vec![Compliance::Internal]).await.unwrap();
        p.create_app("api".parse().unwrap(), "default").await.unwrap();
        p.create_app("hr".parse().unwrap(), "vpn").await.unwrap();
        p.create_site("www.example.com".parse().unwrap(), false).await.unwrap();
        p.create_site("intra.example.com".parse().unwrap(), true).await.unwrap();
        let path = |s: &str| RoutePath::try_new(s).unwrap();
        p.create_route("www.example.com", "api-default", path("/api"), path("/")).await.unwrap();
        p.create_route("intra.example.com", "hr-vpn", path("/"), path("/")).await.unwrap();
        let before = p.subscribe().borrow().clone();
        let errs = [
            p.create_route("www.example.com", "hr-vpn", path("/hr"), path("/")).await.unwrap_err(),
            p.create_route("intra.example.com", "api-default", path("/api"), path("/")).await.unwrap_err(),
            p.create_route("www.example.com", "api-default", path("/api/"), path("/v2")).await.unwrap_err(),
            p.create_route("nope.example.com", "api-default", path("/"), path("/")).await.unwrap_err(),
            p.create_site("www.example.com".parse().unwrap(), false).await.unwrap_err(),
            p.create_site("api-default.localhost".parse().unwrap(), false).await.unwrap_err(),
        ];
        assert!(matches!(errs[0], Error::Invalid(_)), "{}", errs[0]);
        assert!(matches!(errs[1], Error::Invalid(_)), "{}", errs[1]);
        assert!(matches!(errs[2], Error::Conflict(_)), "{}", errs[2]);
        assert!(matches!(errs[3], Error::NotFound { what: "site", .. }), "{}", errs[3]);
        assert!(matches!(errs[4], Error::Conflict(_)), "{}", errs[4]);
        assert!(matches!(errs[5], Error::Conflict(_)), "{}", errs[5]);
        assert_eq!(*p.subscribe().borrow(), before);
        let www = before.sites.iter().find(|s| s.domain.as_str() == "www.example.com").unwrap();
        assert_eq!(www.routes[0].app.as_str(), "api-default");
        // Deleting the app takes its routes with it; deleting a site takes the rest.
        p.delete_app("api-default").await.unwrap();
        assert!(
            p.subscribe().borrow().sites.iter().all(|s| s.domain.as_str() != "www.example.com" || s.routes.is_empty())
        );
        p.delete_site("intra.example.com").await.unwrap();
        assert!(p.read(|m| m.routes_where(|_| true).is_empty()).await);
    }

    #[tokio::test]
    async fn deleting_an_app_removes_its_dynos_and_drains() {
        let p = plane().await;
        p.create_app("api".parse().unwrap(), "default").await.unwrap();
        p.put_dyno("api-default", "web.1".parse().unwrap(), "web".parse().unwrap(), "h".parse().unwrap(), 1)
            .await
            .unwrap();
        p.add_drain(Drains::App("api-default"), "syslog+tcp://h:1".parse().unwrap()).await.unwrap();
        p.delete_app("api-default").await.unwrap();
        let snap = p.subscribe().borrow().clone();
        assert!(snap.apps.is_empty() && snap.drains.is_empty());
        assert!(p.read(|m| m.dyno(Uuid::nil(), "web.1").is_none()).await);
    }

    #[tokio::test]
    async fn site_drains_follow_their_site() {
        let p = plane().await;
        p.create_site("www.example.com".parse().unwrap(), false).await.unwrap();
        let url = || "syslog+tcp://h:1".parse().unwrap();
        p.add_drain(Drains::Site("www.example.com"), url()).await.unwrap();
        let snap = p.subscribe().borrow().clone();
        assert_eq!(snap.drains[0].target, wharf_domain::DrainTarget::Site("www.example.com".into()));
        let err = p.add_drain(Drains::Site("www.example.com"), url()).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        let err = p.add_drain(Drains::Site("nope.example.com"), url()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { what: "site", .. }), "{err}");
        p.delete_site("www.example.com").await.unwrap();
        assert!(p.subscribe().borrow().drains.is_empty(), "a deleted site's drains go with it");
    }

    #[tokio::test]
    async fn canaries_are_checked_and_the_first_abort_wins() {
        let p = plane().await;
        p.create_space("intra".parse().unwrap(), vec![Compliance::Internal]).await.unwrap();
        for (app, space) in [("api", "default"), ("next", "default"), ("third", "default"), ("secret", "intra")] {
            p.create_app(app.parse().unwrap(), space).await.unwrap();
        }
        let policy = || CanaryPolicy::with_weight(wharf_domain::Weight::from_percent(10.0).unwrap());
        let (c, created) = p.put_canary("api-default", "next-default", policy()).await.unwrap();
        assert!(created && c.state == CanaryState::Running);
        let before = p.subscribe().borrow().clone();
        assert_eq!(before.canaries.len(), 1);
        let errs = [
            p.put_canary("api-default", "api-default", policy()).await.unwrap_err(),
            p.put_canary("api-default", "nope-default", policy()).await.unwrap_err(),
            p.put_canary("api-default", "secret-intra", policy()).await.unwrap_err(),
            // Splits do not chain, either way round.
            p.put_canary("third-default", "api-default", policy()).await.unwrap_err(),
            p.put_canary("next-default", "third-default", policy()).await.unwrap_err(),
            p.promote_canary("third-default").await.unwrap_err(),
        ];
        assert!(matches!(errs[0], Error::Invalid(_)), "{}", errs[0]);
        assert!(matches!(errs[1], Error::NotFound { what: "app", .. }), "{}", errs[1]);
        assert!(matches!(errs[2], Error::Invalid(_)), "{}", errs[2]);
        assert!(matches!(errs[3], Error::Conflict(_)), "{}", errs[3]);
        assert!(matches!(errs[4], Error::Conflict(_)), "{}", errs[4]);
        assert!(matches!(errs[5], Error::NotFound { what: "canary of app", .. }), "{}", errs[5]);
        assert_eq!(*p.subscribe().borrow(), before);

        // Two routers decide; the first verdict is recorded and published, the second is not.
        let evidence = |decision: &str| CanaryEvidence {
            baseline: Tally { requests: 900, errors: 1 },
            canary: Tally { requests: 100, errors: 9 },
            e_value: 150.0,
            p_value: 1.0 / 150.0,
            decision: decision.into(),
        };
        let verdict = |d: &str| CanaryVerdict { id: c.id, app: "api-default".parse().unwrap(), evidence: evidence(d) };
        let first = p.record_verdict(verdict("first")).await.unwrap().expect("recorded");
        assert_eq!(
            (first.state, first.evidence.as_ref().map(|e| e.decision.as_str())),
            (CanaryState::Aborted, Some("first"))
        );
        assert!(p.record_verdict(verdict("second")).await.unwrap().is_none());
        let snapshot = p.subscribe().borrow().clone();
        assert_eq!(snapshot.canaries[0].state, CanaryState::Aborted);
        assert_eq!(p.read(|m| m.canary(c.id).unwrap().evidence.clone()).await.unwrap().decision, "first");
        assert!(matches!(p.promote_canary("api-default").await.unwrap_err(), Error::Conflict(_)));

        // A new canary replaces the aborted one; deleting either app removes it.
        let (again, created) = p.put_canary("api-default", "next-default", policy()).await.unwrap();
        assert!(!created && again.id != c.id);
        assert!(p.record_verdict(verdict("late")).await.unwrap().is_none(), "a verdict for a replaced canary");
        p.delete_app("next-default").await.unwrap();
        assert!(p.subscribe().borrow().canaries.is_empty());
        assert!(p.read(|m| m.canary(again.id).is_none()).await);
    }
}
