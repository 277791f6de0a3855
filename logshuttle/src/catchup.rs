//! A drain's catch-up from Kafka: the lines it fell behind on, read back from the topic and
//! put into its buffer as room allows, until it joins the live stream again.
//!
//! Each drain with Kafka as the bus has a catch-up task that sleeps until its buffer falls
//! behind in a partition ([`crate::buffer`]). It then waits for one of a few reader slots
//! ([`READERS`]: the memory and threads of many drains behind at once stay bounded), opens a
//! reader of that partition at the first offset the drain missed, saves that offset as the
//! drain's cursor in Kafka ([`wharf_bus::CatchUp`]), and reads: each time the buffer holds at
//! most half its budget, up to half a budget more of the drain's own lines (those of its app,
//! or of its site). When it has read past every line the live stream offered the drain
//! meanwhile, the buffer joins the live stream and the reader closes; the task keeps the
//! cursor following delivery until every line read back is delivered, and then saves it as
//! done. The cursor is saved every `SAVE_EVERY` (a second) while it moves, so a crash repeats at most
//! that much to this drain, and nothing to any other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use wharf_bus::{CatchUp, CatchUpReader, LogEvent, Partition};

use crate::Map;
use crate::buffer::{Entry, Replayed};
use crate::drain::Drain;

/// How many drains read back from Kafka at once; the others wait their turn (they are behind
/// already, and each reader holds up to a mebibyte of fetched messages and a few threads).
pub const READERS: usize = 8;
/// How often a moving cursor is saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before trying again when the brokers do not answer a reader.
const RETRY: Duration = Duration::from_secs(1);
/// How often a waiting catch-up looks again at the live stream's position or the delivery of
/// the lines it read back.
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
    /// How far the live stream has come per partition.
    pub positions: Arc<Positions>,
    /// Cursors found saved for drains this logshuttle does not run yet (its first snapshot may
    /// come after its partitions): drain id, partition, cursor, and where the partition's live
    /// stream starts; a drain started later takes its own up.
    pub unclaimed: Arc<Mutex<Vec<Unclaimed>>>,
}

impl CatchUpSettings {
    /// Settings for drains catching up through `source`.
    pub fn new(source: CatchUp) -> Self {
        CatchUpSettings {
            source,
            readers: Arc::new(Semaphore::new(READERS)),
            positions: Arc::default(),
            unclaimed: Arc::default(),
        }
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

/// Per partition, the offset after the last message the live consumer handed to the drains
/// (or the group's committed offset when the partition was assigned, if higher).
#[derive(Debug, Default)]
pub struct Positions(Mutex<Map<Partition, i64>>);

impl Positions {
    /// Raises each partition's position to at least the given one.
    pub(crate) fn raise<'a>(&self, to: impl IntoIterator<Item = (&'a Partition, &'a i64)>) {
        let mut map = self.0.lock().expect("positions lock");
        for (&p, &next) in to {
            let at = map.entry(p).or_insert(next);
            *at = (*at).max(next);
        }
    }

    /// Forgets a partition this logshuttle no longer owns.
    pub(crate) fn forget(&self, partition: Partition) {
        self.0.lock().expect("positions lock").remove(&partition);
    }

    fn get(&self, partition: Partition) -> Option<i64> {
        self.0.lock().expect("positions lock").get(&partition).copied()
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

/// One spell of being behind in `partition`, to its end: joined and delivered, or over because
/// the drain stopped or the partition went to another logshuttle.
async fn catch_up(drain: &Arc<Drain>, s: &CatchUpSettings, partition: Partition, epoch: u64) -> Result<(), String> {
    // A spell found saved in Kafka may start after where the live stream starts (what the group
    // had not committed): its lines come first, so reading back waits for the live stream to
    // pass the spell's start, and lines stay in order.
    let from = loop {
        let Some(from) = drain.buffer.behind_from(partition, epoch) else { return Ok(()) };
        if s.positions.get(partition).is_some_and(|at| at >= from) {
            break from;
        }
        tokio::time::sleep(LOOK).await;
    };
    let permit = s.readers.clone().acquire_owned().await.map_err(|e| e.to_string())?;
    let name = drain.id.to_string();
    // Lines of an earlier spell may still wait for delivery: the cursor covers them too.
    let cursor = drain.buffer.replay_cursor(partition).unwrap_or(from).min(from);
    let reader = blocking({
        let (source, name) = (s.source.clone(), name.clone());
        move || -> Result<CatchUpReader, String> {
            let reader = source.open(&name, partition, from).map_err(|e| e.to_string())?;
            reader.save(Some(cursor)).map_err(|e| e.to_string())?;
            Ok(reader)
        }
    })
    .await??;
    // Only now may the group's commit pass the spell's start.
    drain.buffer.saved(partition, cursor);
    drain.buffer.lost(partition, epoch, from, reader.oldest());
    tracing::info!(drain = %drain.id, partition = ?partition, from, "drain fell behind; catching up from kafka");
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
            let cursor = drain.buffer.replay_cursor(partition);
            r = blocking(move || {
                if let Err(e) = r.save(cursor) {
                    tracing::debug!(error = %e, "saving a drain's cursor failed; the next save covers it");
                }
                r
            })
            .await?;
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
        let cursor = drain.buffer.replay_cursor(partition);
        if (cursor.is_none() || saved_at.elapsed() >= SAVE_EVERY) && cursor != last {
            let (source, name2) = (s.source.clone(), name.clone());
            blocking(move || source.save(&name2, &[(partition, cursor)])).await?.map_err(|e| e.to_string())?;
            saved_at = tokio::time::Instant::now();
            last = cursor;
        }
        if cursor.is_none() {
            drain.buffer.replay_done(partition);
            return Ok(());
        }
        tokio::time::sleep(LOOK).await;
    }
}
