//! The logshuttle: takes log events off the bus and fans them out to each app's and site's
//! drains and to live tails.
//!
//! The consumer never waits on a drain. Each drain has a bounded buffer and its own delivery
//! task; the consumer pushes into buffers and moves on. Kafka offsets are committed only up to
//! the oldest line some drain has not yet delivered (or dropped past its budget), so a crash
//! redelivers rather than loses, and a dead drain holds the commit back by at most its budget.
//! Delivered means the receiver has it: its TCP acknowledged every byte, or it answered 2xx.
//!
//! With Kafka, a drain past its budget catches up from the topic instead of dropping lines
//! (`catchup.rs`); its own cursor, kept by Kafka, lets the group's commit go on without it.
//! When partitions are revoked, the drains forget their queued lines of them, the drains'
//! cursors are saved and the delivered offsets committed before the rebalance goes on, so
//! the new owner delivers the rest, in order.

// Unsafe code is allowed in `acked` alone, to read a socket's output queue.
#![deny(unsafe_code)]

mod acked;
mod batch;
pub mod buffer;
pub mod catchup;
pub mod drain;
mod https;
pub mod metrics;
pub mod syslog;
pub mod tail;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use uuid::Uuid;
use wharf_bus::{Partition, Position, Received, Source, SourceEvent};
use wharf_config::LogshuttleConfig;
use wharf_domain::outbound::Policy;
use wharf_domain::{DrainTarget, SessionKey, Snapshot};

pub use drain::{Drain, DrainSettings};
pub use tail::History;

use buffer::Entry;

/// Maps looked up once per line use foldhash rather than SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which drains receive which lines, by the app key's or site's bytes.
#[derive(Debug, Default)]
struct DrainTable {
    by_app: Map<Box<[u8]>, Vec<Arc<Drain>>>,
    by_site: Map<Box<[u8]>, Vec<Arc<Drain>>>,
    all: Vec<Arc<Drain>>,
}

impl DrainTable {
    /// The table for a snapshot, keeping the drains (and their buffers) that `old` already runs.
    fn build(
        snapshot: &Snapshot,
        old: &DrainTable,
        settings: &DrainSettings,
        catch_up: Option<&catchup::CatchUpSettings>,
    ) -> DrainTable {
        // A new drain's catch-up task, and the cursors found saved for it, if any.
        let start = |spec, label| {
            let drain = Drain::start(spec, label, settings);
            if let Some(c) = catch_up {
                c.claim(&drain);
                tokio::spawn(catchup::run(drain.clone(), c.clone()));
            }
            drain
        };
        let mut existing: HashMap<Uuid, &Arc<Drain>> = old.all.iter().map(|d| (d.id, d)).collect();
        let mut table = DrainTable::default();
        for spec in &snapshot.drains {
            let label: Arc<str> = match &spec.target {
                DrainTarget::App(k) => k.as_str().into(),
                DrainTarget::Site(s) => s.as_str().into(),
            };
            let drain = match existing.remove(&spec.id) {
                Some(d) if d.url == spec.url && d.ca == spec.ca => d.clone(),
                Some(d) => {
                    d.stop();
                    start(spec, label.clone())
                }
                None => start(spec, label.clone()),
            };
            let map = match spec.target {
                DrainTarget::App(_) => &mut table.by_app,
                DrainTarget::Site(_) => &mut table.by_site,
            };
            map.entry(label.as_bytes().into()).or_default().push(drain.clone());
            table.all.push(drain);
        }
        for gone in existing.into_values() {
            gone.stop();
        }
        table
    }
}

/// A running logshuttle.
pub struct Logshuttle {
    drains: Arc<ArcSwap<DrainTable>>,
    history: Arc<History>,
    /// With Kafka: the log sessions' readers of the topic.
    readers: Option<Arc<tail::Readers>>,
    sessions: Arc<SessionKey>,
    stats: Arc<metrics::ShuttleStats>,
    follower: tokio::task::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    /// True once shutdown starts: every live tail ends then ([`Logshuttle::end_tails`]).
    tails_end: watch::Sender<bool>,
    grace: Duration,
}

impl std::fmt::Debug for Logshuttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logshuttle").field("drains", &self.drains.load().all.len()).finish_non_exhaustive()
    }
}

impl Logshuttle {
    /// Starts consuming `source` and following `snapshots`, on the current runtime, connecting
    /// only where `outbound` allows. Fails only when the configured `trusted_ca` cannot be read.
    pub fn start(
        config: &LogshuttleConfig,
        outbound: Policy,
        source: Source,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        sessions: Arc<SessionKey>,
        commit_interval: Duration,
    ) -> Result<Logshuttle, drain::CaError> {
        let trusted = match &config.trusted_ca {
            Some(path) => drain::read_ca(path)?,
            None => Vec::new(),
        };
        let settings = DrainSettings {
            buffer_lines: config.drain_buffer_lines,
            buffer_bytes: config.drain_buffer_bytes.0 as usize,
            reconnect_min: config.reconnect_min.0,
            reconnect_max: config.reconnect_max.0,
            trusted: Arc::new(trusted),
            https_batch_bytes: config.https_batch_bytes.0 as usize,
            outbound,
            pacer: source.pacer(),
            catch_up: false,
        };
        let catch_up = source.catch_up().filter(|_| config.catch_up).map(catchup::CatchUpSettings::new);
        let settings = DrainSettings { catch_up: catch_up.is_some(), ..settings };
        let first =
            DrainTable::build(&snapshots.borrow_and_update(), &DrainTable::default(), &settings, catch_up.as_ref());
        let drains = Arc::new(ArcSwap::from_pointee(first));
        // History is bounded per app in lines, and in bytes at 512 bytes a line on average.
        // With Kafka, sessions read Wharf's topic themselves, whichever member consumes the
        // app's partition (`tail.rs`): the rings keep the other topics' lines only.
        let (max_lines, max_bytes) = (config.history_lines, config.history_lines.saturating_mul(512));
        let readers = source
            .catch_up()
            .map(|c| Arc::new(tail::Readers::new(c, config.session_readers, config.session_history_messages)));
        let history = Arc::new(if readers.is_some() {
            History::reading_back(max_lines, max_bytes)
        } else {
            History::new(max_lines, max_bytes)
        });
        let follower = tokio::spawn({
            let (drains, catch_up) = (drains.clone(), catch_up.clone());
            async move {
                while snapshots.changed().await.is_ok() {
                    let snapshot = snapshots.borrow_and_update().clone();
                    let table = DrainTable::build(&snapshot, &drains.load(), &settings, catch_up.as_ref());
                    tracing::debug!(version = snapshot.version, drains = table.all.len(), "drain table swapped");
                    drains.store(Arc::new(table));
                }
            }
        });
        let (stop, stopped) = watch::channel(false);
        let grace = config.shutdown_grace.0;
        let stats = Arc::new(metrics::ShuttleStats { source: source.stats(), ..Default::default() });
        let dispatcher = tokio::spawn(dispatch(
            source,
            drains.clone(),
            history.clone(),
            stats.clone(),
            Commits { interval: commit_interval, stop: stopped, grace },
            catch_up,
        ));
        let tails_end = watch::Sender::new(false);
        Ok(Logshuttle { drains, history, readers, sessions, stats, follower, dispatcher, stop, tails_end, grace })
    }

    /// The live-tail endpoint, `GET /log-sessions/{token}`, to serve on an HTTP listener.
    pub fn tail_router(&self) -> axum::Router {
        let state = tail::TailState {
            history: self.history.clone(),
            sessions: self.sessions.clone(),
            ended: self.tails_end.subscribe(),
            readers: self.readers.clone(),
        };
        axum::Router::new().route("/log-sessions/{token}", axum::routing::get(tail::stream)).with_state(state)
    }

    /// Renders the drains' Prometheus metrics, for the admin listener's `/metrics`.
    pub fn metrics(&self) -> impl Fn(&mut String) + Send + Sync + 'static {
        let (drains, stats, readers) = (Arc::downgrade(&self.drains), self.stats.clone(), self.readers.clone());
        move |out| {
            if let Some(drains) = drains.upgrade() {
                metrics::render(out, &drains.load(), &stats, readers.as_deref());
            }
        }
    }

    /// Ends every live tail at once (each stream ends cleanly, so its client sees the end):
    /// called when shutdown starts, before the HTTP server waits for its requests, which a tail
    /// would otherwise hold for the whole grace period. Tails opened afterwards end after
    /// their history.
    pub fn end_tails(&self) {
        self.tails_end.send_replace(true);
    }

    /// Stops consuming, gives drains the grace period to deliver what they hold, commits what
    /// they delivered, and stops them.
    pub async fn shutdown(self) {
        self.follower.abort();
        let _ = self.stop.send(true);
        let mut dispatcher = self.dispatcher;
        if tokio::time::timeout(self.grace + Duration::from_secs(5), &mut dispatcher).await.is_err() {
            dispatcher.abort();
        }
        for d in &self.drains.load().all {
            d.stop();
        }
    }
}

/// When the dispatcher commits, and when it stops.
struct Commits {
    interval: Duration,
    stop: watch::Receiver<bool>,
    grace: Duration,
}

/// Takes batches off the bus, hands each line to its drains and tails, and commits offsets.
async fn dispatch(
    mut source: Source,
    drains: Arc<ArcSwap<DrainTable>>,
    history: Arc<History>,
    stats: Arc<metrics::ShuttleStats>,
    commits: Commits,
    catch_up: Option<catchup::CatchUpSettings>,
) {
    let Commits { interval: commit_interval, mut stop, grace } = commits;
    // Per partition: the offset after the last line received.
    // Written once per line: foldhash, as the drain table.
    let mut consumed: Map<Partition, i64> = Map::default();
    let mut committed: Map<Partition, i64> = Map::default();
    let mut tick = tokio::time::interval(commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The step is chosen first and taken after: a branch that awaits must not hold the
        // stop signal's borrow (which is not `Send`).
        let event = tokio::select! {
            event = source.recv() => event,
            _ = tick.tick(), if source.commits() => {
                if source.take_commit_failed() {
                    // Commit every partition again, moved or not.
                    committed.clear();
                }
                commit(&source, &drains.load(), &consumed, &mut committed);
                continue;
            }
            _ = stop.wait_for(|s| *s) => break,
        };
        match event {
            None => return,
            Some(SourceEvent::Batch(batch)) => {
                stats.received.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                deliver(batch, &drains.load(), &history, &mut consumed);
            }
            Some(SourceEvent::Assigned(parts)) => {
                tracing::info!(partitions = %source.partition_names(&parts), "partitions assigned");
                if let Some(c) = &catch_up {
                    let table = drains.load_full();
                    restore_cursors(c, &table, parts).await;
                }
            }
            Some(SourceEvent::Revoked(parts)) => {
                let table = drains.load_full();
                revoke(&source, &table, &parts, catch_up.as_ref(), &consumed, &mut committed).await;
                for p in &parts {
                    consumed.remove(p);
                    committed.remove(p);
                }
                source.revoked_handled();
                tracing::info!(partitions = %source.partition_names(&parts), "partitions revoked");
            }
        }
    }
    // Nothing new is taken; let the drains deliver what they hold, then commit it.
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && !drains.load().all.iter().all(|d| d.buffer.is_idle()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let offsets = safe_offsets(&drains.load(), &consumed, &mut committed);
    source.commit_and_wait(&offsets);
}

/// Finds the cursors of drains that were behind in the newly assigned partitions (by this
/// logshuttle or another of the group, before a rebalance or a crash) and has those drains
/// carry on catching up from them. The dispatcher waits for this: the partitions' lines must
/// not reach a drain before it knows where it stands.
async fn restore_cursors(c: &catchup::CatchUpSettings, drains: &DrainTable, parts: Vec<Partition>) {
    let source = c.source.clone();
    let found = match tokio::task::spawn_blocking(move || source.cursors(&parts)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the drains' cursors; drains behind before the rebalance start from the group's offsets");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the drains' cursors failed");
            return;
        }
    };
    let by_id: HashMap<String, &Arc<drain::Drain>> = drains.all.iter().map(|d| (d.id.to_string(), d)).collect();
    let live_start = |p: Partition| found.committed.iter().find(|(q, _)| *q == p).map(|&(_, next)| next);
    for (name, p, from) in &found.cursors {
        let (p, from) = (*p, *from);
        match by_id.get(name) {
            Some(d) => {
                tracing::info!(drain = %d.id, partition = ?p, from, "drain was behind; catching up from its saved cursor");
                d.buffer.restore(p, from, live_start(p));
            }
            None => c.unclaimed.lock().expect("unclaimed lock").push((name.clone(), p, from, live_start(p))),
        }
    }
}

/// Hands revoked partitions over: what each drain delivered is committed, after each drain
/// that was catching up has its cursor saved, and the drains forget the partitions' queued
/// lines (the new owner delivers them, in order). Committed and saved before the rebalance
/// goes on (the poll thread waits for [`Source::revoked_handled`]). Each drain's cursor is read
/// and saved under its save lock ([`Drain`]), so that a save its catch-up had under way lands
/// first and none lands after this one.
async fn revoke(
    source: &Source,
    drains: &DrainTable,
    parts: &[Partition],
    catch_up: Option<&catchup::CatchUpSettings>,
    consumed: &Map<Partition, i64>,
    committed: &mut Map<Partition, i64>,
) {
    let offsets = safe_offsets(drains, consumed, committed);
    if let Some(c) = catch_up {
        c.unclaimed.lock().expect("unclaimed lock").retain(|(_, q, _, _)| !parts.contains(q));
    }
    for d in &drains.all {
        let saving = match catch_up {
            Some(_) => Some(d.saving.lock().await),
            None => None,
        };
        let cursors: Vec<(Partition, Option<i64>)> =
            parts.iter().filter_map(|&p| Some((p, d.buffer.forget(p)?))).collect();
        if let Some(c) = catch_up
            && !cursors.is_empty()
        {
            let (source, name) = (c.source.clone(), d.id.to_string());
            let to_save = cursors.clone();
            let saved = tokio::task::spawn_blocking(move || source.save(&name, &to_save).map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|saved| saved);
            for (p, cursor) in cursors {
                catchup::note_save(d, p, cursor, saved.clone());
            }
        }
        drop(saving);
    }
    source.commit_and_wait(&offsets);
}

/// Hands each line of a batch to its app's and site's drains, and the batch to the tails.
///
/// A line's last drain takes the line itself and any other drain a clone, so a line with one
/// drain (the usual case) is never cloned: its bytes stay as the bus decoded them, with no
/// reference count to keep (benches/RESULTS.md, logshuttle run 11). Each line goes into its
/// drains' buffers as it comes, not gathered per drain for the whole batch: a drain takes lines
/// while the batch goes in, and a burst of one app's lines gathered at once would put a drain
/// that keeps up over its budget (run 11 says how that was found).
fn deliver(batch: Vec<Received>, drains: &DrainTable, history: &History, consumed: &mut Map<Partition, i64>) {
    history.record_received(&batch);
    // A batch comes in runs of one partition's lines (a fetch's), so the offset consumed is
    // noted once per run rather than once per line.
    let mut run: Option<Position> = None;
    for Received { event, position } in batch {
        if let Some(p) = position {
            if let Some(r) = run.filter(|r| r.partition != p.partition) {
                consumed.insert(r.partition, r.offset + 1);
            }
            run = Some(p);
        }
        // Looked up by the header fields' bytes: a `&str` would check them as UTF-8 again.
        let app = drains.by_app.get(event.app_bytes()).map(Vec::as_slice).unwrap_or_default();
        let site = match event.site_bytes() {
            [] => &[],
            s => drains.by_site.get(s).map(Vec::as_slice).unwrap_or_default(),
        };
        let mut to = app.iter().chain(site);
        let Some(mut last) = to.next() else { continue };
        for next in to {
            last.buffer.push(Entry { event: event.clone(), position, replayed: false });
            last = next;
        }
        last.buffer.push(Entry { event, position, replayed: false });
    }
    if let Some(r) = run {
        consumed.insert(r.partition, r.offset + 1);
    }
}

/// Commits, per partition, the oldest offset some drain still needs, or everything received.
fn commit(source: &Source, drains: &DrainTable, consumed: &Map<Partition, i64>, committed: &mut Map<Partition, i64>) {
    source.commit(&safe_offsets(drains, consumed, committed));
}

/// The offsets safe to commit that differ from the last ones committed.
fn safe_offsets(
    drains: &DrainTable,
    consumed: &Map<Partition, i64>,
    committed: &mut Map<Partition, i64>,
) -> Vec<(Partition, i64)> {
    let mut offsets = Vec::new();
    for (&p, &next) in consumed {
        let safe = drains.all.iter().filter_map(|d| d.buffer.pending_from(p)).min().unwrap_or(next).min(next);
        if committed.get(&p) != Some(&safe) {
            committed.insert(p, safe);
            offsets.push((p, safe));
        }
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_bus::{LogEvent, Position};
    use wharf_domain::DrainSpec;

    const P: Partition = Partition { topic_index: 0, number: 3 };

    /// A table of drains to `targets` whose receiver the outbound policy refuses (loopback),
    /// tried again only after an hour: the lines handed to them stay in their buffers, for the
    /// test to take.
    fn table(targets: &[DrainTarget]) -> DrainTable {
        let settings = DrainSettings {
            buffer_lines: 1000,
            buffer_bytes: 1 << 20,
            reconnect_min: Duration::from_secs(3600),
            reconnect_max: Duration::from_secs(3600),
            trusted: Arc::default(),
            https_batch_bytes: 1 << 20,
            outbound: Policy { allow_loopback: false, allow_private: false },
            pacer: None,
            catch_up: false,
        };
        let drains = targets
            .iter()
            .map(|target| DrainSpec {
                id: wharf_domain::new_id(),
                target: target.clone(),
                url: "syslog+tcp://127.0.0.1:9".parse().unwrap(),
                token: String::new(),
                ca: None,
            })
            .collect();
        DrainTable::build(&Snapshot { drains, ..Snapshot::default() }, &DrainTable::default(), &settings, None)
    }

    /// Every drain gets each of its lines of a batch once and in the batch's order, however
    /// the batch interleaves apps: an app's drains (two of them here, so one takes clones), a
    /// site's drain (lines of any app through the site), none for an app without drains.
    #[tokio::test]
    async fn each_drain_gets_its_lines_of_a_batch_once_and_in_order() {
        let app = |k: &str| DrainTarget::App(k.parse().unwrap());
        let site = || DrainTarget::Site("www.example.com".into());
        let drains = table(&[app("a-default"), app("a-default"), app("b-default"), site()]);
        // (app, site, message), in the batch's order.
        let lines = [
            ("a-default", "", "a1"),
            ("b-default", "", "b1"),
            ("a-default", "www.example.com", "a2"),
            ("c-default", "www.example.com", "c1"),
            ("c-default", "", "c2"),
            ("b-default", "", "b2"),
            ("a-default", "", "a3"),
        ];
        let batch = lines
            .iter()
            .zip(0..)
            .map(|(&(app, site, msg), offset)| Received {
                event: LogEvent::builder(app, "app").site(site).message(msg.as_bytes()),
                position: Some(Position { partition: P, offset }),
            })
            .collect();
        let mut consumed = Map::default();
        deliver(batch, &drains, &History::new(100, 1 << 20), &mut consumed);
        let expected: [&[&str]; 4] = [&["a1", "a2", "a3"], &["a1", "a2", "a3"], &["b1", "b2"], &["a2", "c1"]];
        for (d, want) in drains.all.iter().zip(expected) {
            let mut out = Vec::new();
            d.buffer.pop(&mut out, 100).await.unwrap();
            d.buffer.done();
            let got: Vec<String> =
                out.iter().map(|e| String::from_utf8_lossy(e.event.message()).into_owned()).collect();
            assert_eq!(got, want, "drain of {}", d.label);
            assert!(d.buffer.is_idle(), "drain of {}: nothing more", d.label);
        }
        assert_eq!(consumed.get(&P), Some(&7), "every line counts as consumed");
    }

    /// What a commit (the periodic one, and the one a revocation makes before the partition is
    /// handed over) may pass: per partition, the oldest line some drain has not delivered (in
    /// flight or queued), or everything consumed once every drain delivered all; only offsets
    /// that changed since the last commit. Rows: what each of the app's two drains took and
    /// delivered of six lines (offsets 0-5), and whether its last batch is still in flight.
    #[tokio::test]
    async fn a_commit_passes_only_what_every_drain_delivered() {
        let app = || DrainTarget::App("a-default".parse().unwrap());
        // (taken by drain 0, delivered?), (taken by drain 1, delivered?), the offset safe to commit.
        let check = async |d0: (usize, bool), d1: (usize, bool), expected: i64| {
            let drains = table(&[app(), app()]);
            let batch = (0..6)
                .map(|offset| Received {
                    event: LogEvent::builder("a-default", "app").message(b"x"),
                    position: Some(Position { partition: P, offset }),
                })
                .collect();
            let mut consumed = Map::default();
            deliver(batch, &drains, &History::new(100, 1 << 20), &mut consumed);
            for (d, (take, delivered)) in drains.all.iter().zip([d0, d1]) {
                if take > 0 {
                    d.buffer.pop(&mut Vec::new(), take).await.unwrap();
                    if delivered {
                        d.buffer.done();
                    }
                }
            }
            let mut committed = Map::default();
            let rows = format!("{d0:?} {d1:?}");
            assert_eq!(safe_offsets(&drains, &consumed, &mut committed), [(P, expected)], "{rows}");
            assert_eq!(safe_offsets(&drains, &consumed, &mut committed), [], "{rows}: unchanged, not committed again");
            // What a revocation then does: the drains forget the partition's queued lines (the new
            // owner delivers them); what it committed stays what was delivered.
            for d in &drains.all {
                d.buffer.forget(P);
            }
            assert_eq!(committed.get(&P), Some(&expected), "{rows}");
        };
        check((0, false), (0, false), 0).await;
        check((3, true), (0, false), 0).await;
        check((3, true), (3, true), 3).await;
        check((6, true), (3, true), 3).await;
        check((6, true), (4, false), 0).await;
        check((6, true), (6, true), 6).await;
    }
}
