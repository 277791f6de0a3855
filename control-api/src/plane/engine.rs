//! The commit engine: how an operation's changes become durable, applied and published, one
//! writer at a time, and how a replica follows what other replicas commit to a shared store.
//!
//! [`ControlPlane`] itself lives here with its construction and reads; the operations are in
//! one file per aggregate beside this one. Lock order: the writer's turn, then the store, then
//! the model.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{RwLock, watch};
use uuid::Uuid;
use wharf_domain::{CanaryEvidence, SessionKey, Snapshot, SpaceName};

use super::error::Error;
use super::local::{LocalRuntime, NoLocalRuntime};
use crate::model::{Change, Model};
use crate::store::{Store, StoreError};

/// What the plane's blocking tasks share. Lock order: `store`, then `model`.
pub(super) struct State {
    pub(super) model: RwLock<Model>,
    pub(super) store: Mutex<Box<dyn Store>>,
    pub(super) snapshots: watch::Sender<Arc<Snapshot>>,
    /// Whether the store's last operation failed (a catch-up, a poll, a commit): what
    /// `/healthz` reports as `"storage"`. Polled every [`STORE_POLL`] with a shared store, so it
    /// turns within seconds even while nobody writes.
    pub(super) storage_down: std::sync::atomic::AtomicBool,
    /// Store operations that failed since start (`wharf_control_api_storage_failures_total`).
    pub(super) storage_failures: std::sync::atomic::AtomicU64,
}

impl State {
    /// Records how a store operation ended, for `/healthz` and the failure counter, and passes
    /// its result on. An outage is logged once, at its first failure (`error!`: writes are
    /// refused, an outage), and its end once (`info!`), not once per request: while the
    /// database is down every write and every 5 s poll fails, and a line for each would bury
    /// the log; the counter says how many failed.
    fn record<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let was_down = self.storage_down.swap(result.is_err(), Relaxed);
        match (&result, was_down) {
            (Err(e), false) => {
                self.storage_failures.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "storage is unavailable: writes answer 503 and change nothing until it answers again; reads and the feed are served from memory");
            }
            (Err(_), true) => {
                self.storage_failures.fetch_add(1, Relaxed);
            }
            (Ok(_), true) => tracing::info!(
                failures = self.storage_failures.load(Relaxed),
                "storage answers again; writes are accepted"
            ),
            (Ok(_), false) => {}
        }
        result
    }

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

impl ControlPlane {
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
                let synced = state.sync(&mut **store, false);
                state.record(synced)
            })
            .await
            .expect("reading does not panic");
            if let Err(e) = synced {
                // The outage itself is logged once by `State::record`.
                tracing::debug!(error = %e, "cannot read other replicas' changes; serving the last known state");
            }
        }
    }

    /// Runs an operation: `f` computes changes from the current model, or refuses. With a store
    /// shared by replicas, the operation first takes the store's write lock and catches up with
    /// what the others committed, so it is computed on the latest state and cannot be refused
    /// for a stale version; replicas take turns in the order they asked.
    pub(super) async fn change<T>(
        &self,
        f: impl FnOnce(&Model) -> Result<(T, Vec<Change>), Error>,
    ) -> Result<T, Error> {
        let writer = self.writer.clone().lock_owned().await;
        let state = self.state.clone();
        let (writer, synced) = tokio::task::spawn_blocking(move || {
            let mut store = state.store.lock().expect("store lock");
            let synced = state.sync(&mut **store, true);
            (writer, state.record(synced))
        })
        .await
        .expect("catching up does not panic");
        let lock = WriteLock { state: self.state.clone(), writer: Some(writer) };
        synced?;
        let (out, changes, base, deliveries) = {
            let model = self.state.model.read().await;
            let (out, changes) = f(&model)?;
            // Worked out on the model before the changes, so a deleted app's hooks still hear of it.
            let deliveries = super::hooks::deliveries_for(&model, &changes);
            (out, changes, model.version(), deliveries)
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
            state.record(committed)
        })
        .await
        .expect("commit does not panic")?;
        self.queue_deliveries(deliveries);
        Ok(out)
    }
}

/// Reads a running canary's live counts and statistics from the router that judges it, and
/// whether that router's judge has aborted it (its verdict may not have reached the model yet).
pub type CanaryReader = Box<dyn Fn(Uuid) -> Option<(CanaryEvidence, bool)> + Send + Sync>;

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
    /// The dyno sizes formation entries may ask for.
    pub dyno_sizes: super::DynoSizes,
}

/// The control plane: the model, the store and the published snapshot, with the operations
/// (one `impl` file per aggregate beside this one). Shared as `Arc<ControlPlane>` by the HTTP
/// edge, the local supervisor and `wharf serve`.
pub struct ControlPlane {
    /// The records, the store, and the published snapshot, shared with the blocking tasks that
    /// write them (which run to the end even when the request that started them is dropped).
    pub(super) state: Arc<State>,
    /// Serializes writers: an operation computes its changes against the model it commits on.
    /// Blocking tasks that finish an operation hold it until they are done.
    pub(super) writer: Arc<tokio::sync::Mutex<()>>,
    pub(super) settings: Settings,
    /// Where drains may point (see `set_outbound` in `drains.rs`); the default policy until set.
    pub(super) outbound: OnceLock<wharf_domain::outbound::Policy>,
    /// TLS for fetching the pages apps name (`maintenance.rs`): the system's trust store and the
    /// operator's `control_api.trusted_ca`; the system's trust store alone until set.
    pub(super) page_tls: OnceLock<Arc<rustls::ClientConfig>>,
    /// True once the process is shutting down: every endless response stream (the snapshot
    /// watch) ends when it turns, so that no client holds the shutdown for its whole grace.
    pub(super) streams_end: watch::Sender<bool>,
    pub(super) sessions: Arc<SessionKey>,
    pub(super) canary_reader: OnceLock<CanaryReader>,
    /// Since when (seconds since the epoch) each running canary release's canary app, and its
    /// production app, has had no web dyno, as this process saw it (`canary_down.rs`); gone when
    /// it has one again.
    pub(super) canary_dyno_down: Mutex<std::collections::HashMap<(Uuid, super::canary_down::Side), i64>>,
    /// How long a side of a running canary release may have no web dyno (see `canary_down`);
    /// [`super::canary_down::CANARY_DYNO_DOWN_SECONDS`] until set.
    pub(super) canary_down_after: OnceLock<std::time::Duration>,
    /// Woken when another replica may have committed (PostgreSQL).
    pub(super) store_changed: Option<Arc<tokio::sync::Notify>>,
    /// The local runtime (the supervisor, in `wharf serve`), once it has started.
    pub(super) local: OnceLock<Arc<dyn LocalRuntime>>,
    /// Webhook deliveries waiting to be sent, and each hook's recent ones (`hooks.rs`).
    pub(super) hooks: super::hooks::HookQueue,
    /// Where slugs and builds live (`slugs.rs`), once `wharf serve` set it.
    pub(super) deploy: OnceLock<super::slugs::DeploySettings>,
    /// Where build output lines go (`builds.rs`): the log bus, once `wharf serve` set it.
    pub(super) build_publisher: OnceLock<wharf_bus::Publisher>,
    /// The output of each build and release phase running in this process, by the build's or
    /// the release's id, for its `output_stream_url` (`outputs.rs`).
    pub(super) outputs: Mutex<std::collections::HashMap<Uuid, watch::Sender<super::outputs::Output>>>,
    /// Bumped each time an output opens, so that a follower waiting for one to start wakes.
    pub(super) outputs_opened: watch::Sender<u64>,
    /// The slots builds take to run (`builds.rs`: `max_concurrent_builds` of them), made at the
    /// first build.
    pub(super) build_slots: OnceLock<Arc<tokio::sync::Semaphore>>,
    /// The local runtime's dyno figures (`metrics.rs`), once plugged in.
    pub(super) dyno_metrics: OnceLock<Arc<dyn super::metrics::DynoMetrics>>,
    /// The in-process router's request counts (`metrics.rs`), once plugged in.
    pub(super) request_metrics: OnceLock<Arc<dyn super::metrics::RequestMetrics>>,
    /// Remote routers' requests at stopping dynos, as they reported them (`crate::in_flight`).
    pub(super) routers_in_flight: Arc<crate::in_flight::RoutersInFlight>,
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
            state: Arc::new(State {
                model: RwLock::new(model),
                store: Mutex::new(store),
                snapshots,
                storage_down: std::sync::atomic::AtomicBool::new(false),
                storage_failures: std::sync::atomic::AtomicU64::new(0),
            }),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            settings,
            sessions,
            canary_reader: OnceLock::new(),
            canary_dyno_down: Mutex::default(),
            canary_down_after: OnceLock::new(),
            outbound: OnceLock::new(),
            page_tls: OnceLock::new(),
            streams_end: watch::Sender::new(false),
            store_changed,
            local: OnceLock::new(),
            hooks: super::hooks::HookQueue::new(),
            deploy: OnceLock::new(),
            build_publisher: OnceLock::new(),
            outputs: Mutex::default(),
            outputs_opened: watch::Sender::new(0),
            build_slots: OnceLock::new(),
            dyno_metrics: OnceLock::new(),
            request_metrics: OnceLock::new(),
            routers_in_flight: Arc::default(),
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

    /// Plugs in the runtime that runs this process's dynos (the supervisor calls it as it
    /// starts). Only the first call counts: one process has one local runtime.
    pub fn set_local_runtime(&self, runtime: Arc<dyn LocalRuntime>) {
        let _ = self.local.set(runtime);
    }

    /// The local runtime, as the plane and the HTTP edge read it: one that runs nothing until a
    /// runtime is plugged in.
    pub fn local_runtime(&self) -> &dyn LocalRuntime {
        static NONE: NoLocalRuntime = NoLocalRuntime;
        self.local.get().map_or(&NONE as &dyn LocalRuntime, |r| r.as_ref())
    }

    /// Ends every endless response stream the API serves (the snapshot watch) at once: called
    /// when shutdown starts, so that the server's graceful shutdown waits only for requests
    /// that end by themselves. Streams opened afterwards end after their first piece.
    pub fn end_streams(&self) {
        self.streams_end.send_replace(true);
    }

    /// Resolves once [`ControlPlane::end_streams`] was called (at once if it was already).
    pub fn streams_ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.streams_end.subscribe();
        async move {
            // The sender lives as long as the plane, so the wait only ends when it turns true.
            let _ = rx.wait_for(|ended| *ended).await;
        }
    }

    /// Whether the store answered its last operation: false while the database is down (reads
    /// are still served from memory; writes fail with 503), true again once an operation works.
    pub fn storage_available(&self) -> bool {
        !self.state.storage_down.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends the store's Prometheus series to `out`: `wharf_control_api_storage_available`
    /// (gauge, 1 or 0, as `/healthz`'s `storage`) and `wharf_control_api_storage_failures_total`
    /// (counter: store operations that failed since start, writes and the 5 s polls alike).
    pub fn render_storage_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let failures = self.state.storage_failures.load(std::sync::atomic::Ordering::Relaxed);
        let _ =
            writeln!(out, "# HELP wharf_control_api_storage_available Whether the store answered its last operation.");
        let _ = writeln!(out, "# TYPE wharf_control_api_storage_available gauge");
        let _ = writeln!(out, "wharf_control_api_storage_available {}", u8::from(self.storage_available()));
        let _ = writeln!(out, "# HELP wharf_control_api_storage_failures_total Store operations that failed.");
        let _ = writeln!(out, "# TYPE wharf_control_api_storage_failures_total counter");
        let _ = writeln!(out, "wharf_control_api_storage_failures_total {failures}");
    }

    /// Follows every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.state.snapshots.subscribe()
    }

    /// The remote routers' reports of their requests at stopping dynos (`POST
    /// /v1/router-in-flight`), for the supervisor's wait before a dyno's SIGTERM.
    pub fn routers_in_flight(&self) -> Arc<crate::in_flight::RoutersInFlight> {
        self.routers_in_flight.clone()
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
