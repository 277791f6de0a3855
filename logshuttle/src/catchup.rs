//! A drain's catch-up from Kafka: the lines it fell behind on, read back from the topic and
//! put into its buffer as room allows, until it joins the live stream again.
//!
//! Each drain with Kafka as the bus has a catch-up task that sleeps until its buffer falls
//! behind in a partition ([`crate::buffer`]). It then waits for one of a few reader slots
//! ([`READERS`]: the memory and threads of many drains behind at once stay bounded), opens a
//! reader of that partition at the first offset the drain missed, saves the drain's cursor in
//! Kafka ([`wharf_bus::CatchUp`]), and reads: each time the buffer holds at most half its
//! budget, up to half a budget more of the drain's own lines (those of its app, or of its
//! site). When it has read past every line the live stream offered the drain meanwhile, the
//! buffer joins the live stream and the reader closes; the task keeps the cursor following
//! delivery until every line read back is delivered, and then saves it as done.
//!
//! The cursor is the oldest offset of the partition the drain has not delivered, live or read
//! back ([`crate::buffer::Buffer::cursor_to_save`]). It is saved every `SAVE_EVERY` (a second)
//! while it moves, each save under the drain's save lock, so the newest value read is the last
//! one to land. A restart (or the partition's next owner) reads this drain's lines back from
//! the newest cursor saved and skips the live stream's lines before it, however far the group's
//! commit lagged: a crash repeats to this drain exactly the lines it delivered since the last
//! save that landed, and nothing to any other. A failed save is counted
//! (`wharf_drain_cursor_saves_total{result="failed"}`) and warned about; the next one covers it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use wharf_bus::{CatchUp, LogEvent, Partition};

use crate::buffer::{Entry, Replayed};
use crate::drain::Drain;

/// How many drains read back from Kafka at once; the others wait their turn (they are behind
/// already, and each reader holds up to a mebibyte of fetched messages and a few threads).
pub const READERS: usize = 8;
/// How often a moving cursor is saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before trying again when the brokers do not answer a reader.
const RETRY: Duration = Duration::from_secs(1);
/// How often a caught-up drain looks again at the delivery of the lines it read back.
const LOOK: Duration = Duration::from_millis(50);

/// A cursor found saved for a drain this logshuttle does not run (yet): the drain's id, the
/// partition, the cursor, and where the partition's live stream starts.
pub type Unclaimed = (String, Partition, i64, Option<i64>);

/// What every drain's catch-up shares.
#[derive(Debug, Clone)]
pub struct CatchUpSettings {
    /// Kafka's readers and cursors.
    pub source: CatchUp,
    /// The reader slots ([`READERS`]).
    pub readers: Arc<Semaphore>,
    /// Cursors found saved for drains this logshuttle does not run yet (its first snapshot may
    /// come after its partitions): drain id, partition, cursor, and where the partition's live
    /// stream starts; a drain started later takes its own up.
    pub unclaimed: Arc<Mutex<Vec<Unclaimed>>>,
}

impl CatchUpSettings {
    /// Settings for drains catching up through `source`.
    pub fn new(source: CatchUp) -> Self {
        CatchUpSettings { source, readers: Arc::new(Semaphore::new(READERS)), unclaimed: Arc::default() }
    }

    /// Has a newly started `drain` carry on from the cursors saved for it, if any.
    pub(crate) fn claim(&self, drain: &Drain) {
        let name = drain.id.to_string();
        self.unclaimed.lock().expect("unclaimed lock").retain(|(n, p, from, live_start)| {
            if *n != name {
                return true;
            }
            drain.buffer.restore(*p, *from, *live_start);
            false
        });
    }
}

/// Whether `e` is one of `drain`'s lines: its app's, or its site's.
fn wants(drain: &Drain, e: &LogEvent) -> bool {
    if drain.site { e.site() == Some(&*drain.label) } else { e.app() == &*drain.label }
}

/// Catches `drain` up, spell after spell, until it is stopped.
pub(crate) async fn run(drain: Arc<Drain>, settings: CatchUpSettings) {
    while let Some((partition, epoch)) = drain.buffer.wait_behind().await {
        if let Err(e) = catch_up(&drain, &settings, partition, epoch).await {
            tracing::warn!(drain = %drain.id, partition = ?partition, error = %e, retry_in = ?RETRY, "drain catch-up failed");
            drain.stats.failed(&e);
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Runs blocking work of the Kafka client on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())
}

/// Counts a save of `drain`'s cursor for `partition` and warns when it failed: until a later
/// save lands, a restart or the partition's next owner repeats this drain's lines from the last
/// cursor saved (repeats, never losses). Returns whether it was saved.
pub(crate) fn note_save(drain: &Drain, partition: Partition, cursor: Option<i64>, result: Result<(), String>) -> bool {
    match result {
        Ok(()) => {
            drain.stats.cursor_saves.fetch_add(1, Relaxed);
            true
        }
        Err(e) => {
            drain.stats.cursor_save_failures.fetch_add(1, Relaxed);
            tracing::warn!(drain = %drain.id, partition = ?partition, cursor = ?cursor, error = %e, "cannot save a drain's cursor; after a restart it repeats its lines from the last cursor saved");
            false
        }
    }
}

/// One spell of being behind in `partition`, to its end: joined and delivered, or over because
/// the drain stopped or the partition went to another logshuttle.
///
/// Every save of the cursor reads its value and writes it while holding the drain's save lock
/// (which a revocation holds too, around [`crate::buffer::Buffer::forget`] and its own save), so
/// that saves land in the order their values were read and none lands after the partition was
/// handed over: the newest cursor saved is always the one a restart reads.
async fn catch_up(drain: &Arc<Drain>, s: &CatchUpSettings, partition: Partition, epoch: u64) -> Result<(), String> {
    // A spell found saved in Kafka may start after where the live stream starts (the group's
    // commit may lag behind the drain's cursor): the live lines before its start are skipped
    // ([`crate::buffer::Buffer::restore`]), so reading back starts at once.
    let Some(from) = drain.buffer.behind_from(partition, epoch) else { return Ok(()) };
    let permit = s.readers.clone().acquire_owned().await.map_err(|e| e.to_string())?;
    let name = drain.id.to_string();
    let reader = blocking({
        let (source, name) = (s.source.clone(), name.clone());
        move || source.open(&name, partition, from).map_err(|e| e.to_string())
    })
    .await??;
    // The cursor covers the spell's start, lines of an earlier spell still waiting for
    // delivery, and live lines queued before the spell began.
    let saving = drain.saving.lock().await;
    if drain.buffer.behind_from(partition, epoch).is_none() {
        return Ok(());
    }
    let cursor = drain.buffer.cursor_to_save(partition).flatten().unwrap_or(from).min(from);
    let (reader, saved) = blocking(move || {
        let saved = reader.save(Some(cursor)).map_err(|e| e.to_string());
        (reader, saved)
    })
    .await?;
    if !note_save(drain, partition, Some(cursor), saved.clone()) {
        return saved;
    }
    drop(saving);
    // Only now may the group's commit pass the spell's start.
    drain.buffer.saved(partition, cursor);
    drain.buffer.lost(partition, epoch, from, reader.oldest());
    tracing::info!(drain = %drain.id, partition = ?partition, from, cursor, "drain fell behind; catching up from kafka");
    let (max_lines, max_bytes) = drain.buffer.replay_chunk();
    let mut reader = Some(reader);
    let mut saved_at = tokio::time::Instant::now();
    loop {
        if !drain.buffer.wait_room().await {
            return Ok(());
        }
        let mut r = reader.take().expect("the reader is back after each read");
        let (mut r, got) = blocking(move || {
            let got = r.read(max_lines, max_bytes);
            (r, got)
        })
        .await?;
        let next = r.next_offset();
        let entries: Vec<Entry> = got
            .into_iter()
            .filter(|r| wants(drain, &r.event))
            .map(|r| Entry { event: r.event, position: r.position, replayed: true })
            .collect();
        match drain.buffer.push_replayed(partition, epoch, entries, next) {
            Replayed::Stale => return Ok(()),
            Replayed::Joined => break,
            Replayed::Queued => {}
        }
        if saved_at.elapsed() >= SAVE_EVERY {
            let saving = drain.saving.lock().await;
            // Revoked meanwhile: the revocation saved the cursor.
            let Some(cursor) = drain.buffer.cursor_to_save(partition) else { return Ok(()) };
            let saved;
            (r, saved) = blocking(move || {
                let saved = r.save(cursor).map_err(|e| e.to_string());
                (r, saved)
            })
            .await?;
            drop(saving);
            // A failed save is counted and warned about; the next one covers it.
            note_save(drain, partition, cursor, saved);
            saved_at = tokio::time::Instant::now();
        }
        reader = Some(r);
    }
    drop((reader, permit));
    tracing::info!(drain = %drain.id, partition = ?partition, "drain caught up; back on the live stream");
    // Joined: the cursor follows the delivery of what was read back, and is then done.
    let mut last = Some(cursor);
    loop {
        // Behind again: the next spell's catch-up saves the cursor from now on.
        if drain.buffer.is_behind(partition) || drain.buffer.is_closed() {
            return Ok(());
        }
        let saving = drain.saving.lock().await;
        // Revoked meanwhile: the revocation saved the cursor.
        let Some(cursor) = drain.buffer.cursor_to_save(partition) else { return Ok(()) };
        if (cursor.is_none() || saved_at.elapsed() >= SAVE_EVERY) && cursor != last {
            let (source, name2) = (s.source.clone(), name.clone());
            let saved =
                blocking(move || source.save(&name2, &[(partition, cursor)]).map_err(|e| e.to_string())).await?;
            saved_at = tokio::time::Instant::now();
            if !note_save(drain, partition, cursor, saved) {
                // Tried again after a while, done or not.
                drop(saving);
                tokio::time::sleep(RETRY).await;
                continue;
            }
            last = cursor;
        }
        drop(saving);
        if cursor.is_none() {
            drain.buffer.replay_done(partition);
            return Ok(());
        }
        tokio::time::sleep(LOOK).await;
    }
}
