//! The commit engine: how an operation's changes become durable, applied and published, one
//! writer at a time, and how a replica follows what other replicas commit to a shared store.
//!
//! Lock order: the writer's turn, then the store, then the model.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use wharf_domain::Snapshot;

use super::{ControlPlane, Error};
use crate::model::{Change, Model};
use tokio::sync::RwLock;

use crate::store::{Store, StoreError};

/// What the plane's blocking tasks share. Lock order: `store`, then `model`.
pub(super) struct State {
    pub(super) model: RwLock<Model>,
    pub(super) store: Mutex<Box<dyn Store>>,
    pub(super) snapshots: watch::Sender<Arc<Snapshot>>,
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
                state.sync(&mut **store, false)
            })
            .await
            .expect("reading does not panic");
            if let Err(e) = synced {
                tracing::warn!(error = %e, "cannot read other replicas' changes; serving the last known state");
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
}
