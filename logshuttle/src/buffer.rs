//! A drain's bounded buffer: the consumer pushes without ever waiting, the drain's task takes
//! batches, and past the budget the oldest lines are dropped and counted.
//!
//! The buffer also keeps, per Kafka partition, how far this drain has taken care of the lines
//! it was given (delivered or dropped). The logshuttle commits no offset beyond what every drain
//! has taken care of, so a crash loses nothing a reachable drain had not yet received.
//!
//! With Kafka as the bus, a drain that would go past its budget does not drop its oldest lines:
//! it falls *behind* in that partition. From the first line it could not take, the live stream's
//! lines of that partition are left for the drain's catch-up (`catchup.rs`), which reads
//! them again from Kafka and puts them here as room allows ([`Buffer::push_replayed`]); once
//! it has read past every line the live stream offered meanwhile, the drain *joins* the live
//! stream again, taking only live lines after the last one read back, so nothing is missed and
//! nothing comes twice or out of order. Lines read back are tracked apart from live ones: the
//! group's commit follows the live lines, the drain's own cursor the lines read back.
//!
//! Why one file: the queue, its per-partition cursors and the catch-up's spells change together
//! under one lock, on every push and take; split, each part would need the others' insides.
//!
//! An app's drain buffer also sets the app's pace on the embedded bus ([`wharf_bus::pace`]):
//! it is *full* from when it holds more than half its budget (lines or bytes) until it holds at
//! most a quarter of it, and its drain's task says whether it is *live*. The marks are checked
//! under the buffer's lock on every push and take; only a change takes the app's pace lock.

use std::collections::{HashMap, VecDeque};

/// Per-partition maps, touched on every push and take: foldhash rather than SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use std::sync::Arc;

use tokio::sync::Notify;
use wharf_bus::{AppPace, DrainState, LogEvent, Partition, Position};

/// A line waiting for its drain.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The event.
    pub event: LogEvent,
    /// Where it came from on the bus.
    pub position: Option<Position>,
    /// Read back from the bus by the drain's catch-up rather than taken from the live stream.
    pub replayed: bool,
}

/// How far a drain got in one partition. Lines arrive in offset order per partition, and
/// leave the queue in the same order, so two offsets say what is still queued.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// The offset of the last line given to the drain.
    pushed: i64,
    /// The offset of the last line that left the queue (taken for delivery, or dropped).
    taken: i64,
}

/// Lines dropped since the drain last heard about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// How many.
    pub count: u64,
    /// When the first of them was dropped, microseconds since the epoch.
    pub since_micros: i64,
}

/// A partition in which the drain is behind: its live lines are left to the catch-up.
#[derive(Debug, Clone, Copy)]
struct Behind {
    /// The first offset the drain needs read back.
    from: i64,
    /// The offset from which the catch-up reads next (`from` until it starts).
    read_to: i64,
    /// The last offset the live stream offered this drain while it was behind.
    live_seen: i64,
    /// Whether the drain's cursor in Kafka holds `from` or later progress, so that the group's
    /// commit may pass `from`.
    saved: bool,
    /// Tells this spell of being behind from a later one in the same partition.
    epoch: u64,
}

/// What [`Buffer::push_replayed`] made of lines read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Queued; the catch-up goes on.
    Queued,
    /// Queued, and the drain has joined the live stream in this partition.
    Joined,
    /// Not queued: the drain is closed or no longer behind in this spell (the partition was
    /// revoked).
    Stale,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Entry>,
    bytes: usize,
    /// Per partition, live lines (index 0) and lines read back (index 1).
    cursors: [Map<Partition, Cursor>; 2],
    /// The lowest offset per partition among lines taken but not yet delivered, live (index 0)
    /// and read back (index 1).
    in_flight: [Map<Partition, i64>; 2],
    /// Partitions in which the drain is behind.
    behind: Map<Partition, Behind>,
    /// Per partition, where the drain last joined the live stream: live lines before it came
    /// read back already.
    joined: Map<Partition, i64>,
    epochs: u64,
    overflow: Option<Overflow>,
    closed: bool,
    /// What this drain last told its app's pace.
    pace: DrainState,
}

/// Counters of one drain, as paired pushed/popped counts rather than a depth gauge.
#[derive(Debug, Default)]
pub struct BufferStats {
    /// Lines given to the drain.
    pub pushed: AtomicU64,
    /// Lines taken by the drain's task for delivery.
    pub popped: AtomicU64,
    /// Lines dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Lines read back from Kafka by the drain's catch-up (counted in `pushed` as well).
    pub replayed: AtomicU64,
    /// Times the drain fell behind in a partition and left its lines to the catch-up.
    pub fell_behind: AtomicU64,
}

/// The buffer.
#[derive(Debug)]
pub struct Buffer {
    inner: Mutex<Inner>,
    ready: Notify,
    /// Woken when lines leave the queue, for a catch-up waiting for room.
    room: Notify,
    /// Woken when the drain falls behind, for its catch-up.
    behind: Notify,
    /// Whether lines past the budget are left to a catch-up from Kafka rather than dropped.
    catch_up: bool,
    max_lines: usize,
    max_bytes: usize,
    /// The pace of the app whose drain this is, with the embedded bus; `None` for a site's
    /// drain and with Kafka.
    pace: Option<Arc<AppPace>>,
    /// Its counters.
    pub stats: BufferStats,
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn cost(e: &Entry) -> usize {
    e.event.encoded().len()
}

impl Buffer {
    /// A buffer holding at most `max_lines` lines and `max_bytes` bytes.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Buffer {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            room: Notify::new(),
            behind: Notify::new(),
            catch_up: false,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
            pace: None,
            stats: BufferStats::default(),
        }
    }

    /// The same buffer, setting `pace` (its app's, see [`wharf_bus::pace`]) as it fills and
    /// drains and as its drain's task says whether it is live.
    pub fn with_pace(mut self, pace: Option<Arc<AppPace>>) -> Self {
        self.pace = pace;
        self
    }

    /// The same buffer, leaving lines past the budget to a catch-up from Kafka instead of
    /// dropping them (see the module's documentation).
    pub fn with_catch_up(mut self, catch_up: bool) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// The most lines and bytes a catch-up puts in at once: half the budget, so that with the
    /// wait for half the budget of room ([`Buffer::wait_room`]) the buffer stays within it.
    pub fn replay_chunk(&self) -> (usize, usize) {
        ((self.max_lines / 2).max(1), (self.max_bytes / 2).max(1))
    }

    /// Whether `inner` is above the high-water mark (half the budget, in lines or bytes).
    fn above_high(&self, inner: &Inner) -> bool {
        inner.queue.len() > self.max_lines / 2 || inner.bytes > self.max_bytes / 2
    }

    /// Whether `inner` is at or below the low-water mark (a quarter of the budget, both).
    fn at_or_below_low(&self, inner: &Inner) -> bool {
        inner.queue.len() <= self.max_lines / 4 && inner.bytes <= self.max_bytes / 4
    }

    /// Tells the app's pace that this drain is now in state `to`, if that is news.
    fn set_pace(&self, inner: &mut Inner, to: DrainState) {
        if let Some(pace) = &self.pace
            && inner.pace != to
        {
            pace.update(inner.pace, to);
            inner.pace = to;
        }
    }

    /// Records whether the drain is live: connected and delivering (see [`wharf_bus::pace`]).
    pub fn set_live(&self, live: bool) {
        let mut inner = self.inner.lock().expect("buffer lock");
        if inner.closed {
            return;
        }
        let to = DrainState { live, ..inner.pace };
        self.set_pace(&mut inner, to);
    }

    /// Adds a line; drops the oldest ones when over budget. Never waits.
    pub fn push(&self, entry: Entry) {
        let mut inner = self.inner.lock().expect("buffer lock");
        if inner.closed {
            return;
        }
        if self.catch_up
            && let Some(p) = entry.position
            && !self.take_live(&mut inner, p, cost(&entry))
        {
            return;
        }
        let was_empty = inner.queue.is_empty();
        Self::mark_pushed(&mut inner.cursors, &entry);
        inner.bytes += cost(&entry);
        inner.queue.push_back(entry);
        let mut dropped = 0;
        while inner.queue.len() > self.max_lines || (inner.bytes > self.max_bytes && inner.queue.len() > 1) {
            let old = inner.queue.pop_front().expect("over budget means not empty");
            inner.bytes -= cost(&old);
            Self::mark_taken(&mut inner.cursors, &old);
            let since = old.event.time_micros();
            let o = inner.overflow.get_or_insert(Overflow { count: 0, since_micros: since });
            o.count += 1;
            dropped += 1;
        }
        if !inner.pace.full && self.pace.is_some() && self.above_high(&inner) {
            let to = DrainState { full: true, ..inner.pace };
            self.set_pace(&mut inner, to);
        }
        drop(inner);
        self.stats.pushed.fetch_add(1, Relaxed);
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Relaxed);
        }
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Whether a live line at `p` of `cost` bytes goes into the queue, with catch-up on: not
    /// while the drain is behind in its partition (it is noted as seen), not when it came read
    /// back already, and not when it would go past the budget, which makes the drain fall
    /// behind from it.
    fn take_live(&self, inner: &mut Inner, p: Position, cost: usize) -> bool {
        if let Some(b) = inner.behind.get_mut(&p.partition)
            && p.offset >= b.from
        {
            b.live_seen = b.live_seen.max(p.offset);
            return false;
        }
        if inner.joined.get(&p.partition).is_some_and(|&j| p.offset < j) {
            return false;
        }
        let over =
            inner.queue.len() >= self.max_lines || (inner.bytes + cost > self.max_bytes && !inner.queue.is_empty());
        if !over {
            return true;
        }
        match inner.behind.get_mut(&p.partition) {
            // A live line older than the spell's start. Not reached by construction: a
            // restored spell skips the live lines before its start, and the live stream's
            // offsets only grow. Were it reached, the spell starts here instead, which repeats
            // lines rather than lose them.
            Some(b) => {
                b.from = p.offset;
                b.read_to = p.offset;
                b.saved = false;
                b.live_seen = b.live_seen.max(p.offset);
            }
            None => {
                inner.epochs += 1;
                let epoch = inner.epochs;
                let b = Behind { from: p.offset, read_to: p.offset, live_seen: p.offset, saved: false, epoch };
                inner.behind.insert(p.partition, b);
                self.stats.fell_behind.fetch_add(1, Relaxed);
                self.behind.notify_one();
            }
        }
        false
    }

    fn mark_pushed(cursors: &mut [Map<Partition, Cursor>; 2], entry: &Entry) {
        if let Some(p) = entry.position {
            let c = cursors[usize::from(entry.replayed)]
                .entry(p.partition)
                .or_insert(Cursor { pushed: p.offset - 1, taken: p.offset - 1 });
            c.pushed = p.offset;
        }
    }

    fn mark_taken(cursors: &mut [Map<Partition, Cursor>; 2], entry: &Entry) {
        if let Some(p) = entry.position {
            Self::mark_taken_to(cursors, (usize::from(entry.replayed), p.partition, p.offset));
        }
    }

    /// Records that lines of `kind` (0 live, 1 read back) in a partition left the queue, up to
    /// `offset`.
    fn mark_taken_to(cursors: &mut [Map<Partition, Cursor>; 2], (kind, partition, offset): (usize, Partition, i64)) {
        if let Some(c) = cursors[kind].get_mut(&partition) {
            c.taken = c.taken.max(offset);
        }
    }

    /// Puts lines read back from `partition` (up to, not including, offset `next`) at the end
    /// of the queue, for the spell of being behind `epoch`; joins the live stream when the
    /// catch-up has read past every live line offered meanwhile. Never drops: the caller waits
    /// for room first ([`Buffer::wait_room`]) and puts in at most [`Buffer::replay_chunk`].
    pub fn push_replayed(&self, partition: Partition, epoch: u64, entries: Vec<Entry>, next: i64) -> Replayed {
        let mut inner = self.inner.lock().expect("buffer lock");
        if inner.closed {
            return Replayed::Stale;
        }
        let Some(b) = inner.behind.get_mut(&partition).filter(|b| b.epoch == epoch) else {
            return Replayed::Stale;
        };
        b.read_to = b.read_to.max(next);
        let (joined, from) = (b.read_to > b.live_seen, b.from);
        // The partition's books of lines read back exist from the first read on, even when
        // none was this drain's, so that the cursor is saved as done once the spell is over
        // (see [`Buffer::cursor_to_save`]).
        inner.cursors[1].entry(partition).or_insert(Cursor { pushed: from - 1, taken: from - 1 });
        if joined {
            inner.behind.remove(&partition);
            inner.joined.insert(partition, next);
        }
        let (was_empty, n) = (inner.queue.is_empty(), entries.len() as u64);
        for mut e in entries {
            e.replayed = true;
            Self::mark_pushed(&mut inner.cursors, &e);
            inner.bytes += cost(&e);
            inner.queue.push_back(e);
        }
        if !inner.pace.full && self.pace.is_some() && self.above_high(&inner) {
            let to = DrainState { full: true, ..inner.pace };
            self.set_pace(&mut inner, to);
        }
        drop(inner);
        self.stats.pushed.fetch_add(n, Relaxed);
        self.stats.replayed.fetch_add(n, Relaxed);
        if was_empty && n > 0 {
            self.ready.notify_one();
        }
        if joined { Replayed::Joined } else { Replayed::Queued }
    }

    /// Notes that lines of `partition` from `from` to `oldest` are gone from Kafka (past its
    /// retention) before the catch-up of spell `epoch` could read them: counted as dropped and
    /// announced with the next batch (L10), as Kafka messages, since which of them were this
    /// drain's is unknown.
    pub fn lost(&self, partition: Partition, epoch: u64, from: i64, oldest: i64) {
        let mut inner = self.inner.lock().expect("buffer lock");
        if oldest <= from || inner.behind.get(&partition).is_none_or(|b| b.epoch != epoch) {
            return;
        }
        let n = (oldest - from) as u64;
        let since = now_micros();
        let o = inner.overflow.get_or_insert(Overflow { count: 0, since_micros: since });
        o.count += n;
        drop(inner);
        self.stats.dropped.fetch_add(n, Relaxed);
    }

    /// Waits until the drain is behind in some partition; returns the lowest such partition
    /// and its spell, or `None` once the buffer is closed.
    pub async fn wait_behind(&self) -> Option<(Partition, u64)> {
        loop {
            let notified = self.behind.notified();
            {
                let inner = self.inner.lock().expect("buffer lock");
                if inner.closed {
                    return None;
                }
                if let Some((&p, b)) = inner.behind.iter().min_by_key(|(p, _)| **p) {
                    return Some((p, b.epoch));
                }
            }
            notified.await;
        }
    }

    /// Whether the drain is behind in `partition`.
    pub fn is_behind(&self, partition: Partition) -> bool {
        self.inner.lock().expect("buffer lock").behind.contains_key(&partition)
    }

    /// How many partitions the drain is behind in.
    pub fn behind_count(&self) -> usize {
        self.inner.lock().expect("buffer lock").behind.len()
    }

    /// Whether the drain is stopped.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().expect("buffer lock").closed
    }

    /// Where spell `epoch` in `partition` reads from, while it lasts.
    pub fn behind_from(&self, partition: Partition, epoch: u64) -> Option<i64> {
        let inner = self.inner.lock().expect("buffer lock");
        inner.behind.get(&partition).filter(|b| b.epoch == epoch).map(|b| b.from)
    }

    /// Records that the drain's cursor in Kafka now holds `cursor` for `partition`: once it
    /// holds the start of the spell (or later progress), the group's commit may pass the start.
    pub fn saved(&self, partition: Partition, cursor: i64) {
        let mut inner = self.inner.lock().expect("buffer lock");
        if let Some(b) = inner.behind.get_mut(&partition)
            && cursor <= b.from
        {
            b.saved = true;
        }
    }

    /// Starts a spell of being behind in `partition` from `from`, found saved in Kafka when this
    /// logshuttle took the partition on, whose live stream starts at `live_start` (the group's
    /// committed offset, if any). Live lines before `from` are skipped: a saved cursor is the
    /// oldest line the drain had not delivered, live or read back ([`Buffer::cursor_to_save`]),
    /// so they were delivered, however far the group's commit lagged. The spell joins only once
    /// read past `live_start`, since the live stream never offers what lies before it.
    pub fn restore(&self, partition: Partition, from: i64, live_start: Option<i64>) {
        let mut inner = self.inner.lock().expect("buffer lock");
        inner.epochs += 1;
        let epoch = inner.epochs;
        let live_seen = from.max(live_start.unwrap_or(from)) - 1;
        let b = Behind { from, read_to: from, live_seen, saved: true, epoch };
        inner.behind.insert(partition, b);
        // The cursor holds every line the drain had not delivered when it was saved, live ones
        // included: the live stream's lines before it (the group's commit may lag behind the
        // cursor) came to the receiver already.
        inner.joined.insert(partition, from);
        drop(inner);
        self.behind.notify_one();
    }

    /// The oldest offset of `partition` the drain still needs read back (queued, in flight, or
    /// not read yet), or `None` when it needs nothing more.
    pub fn replay_cursor(&self, partition: Partition) -> Option<i64> {
        Self::cursor(&self.inner.lock().expect("buffer lock"), partition)
    }

    /// The drain's cursor for `partition`, to save in Kafka: `Some(Some(offset))`, the oldest
    /// offset of the partition the drain has not delivered, read back or live (lines queued
    /// before the spell began count too), from which a restart reads it back and before which
    /// it skips the live stream ([`Buffer::restore`]); `Some(None)` once it needs nothing more
    /// read back (the group's commit covers its live lines); `None` when the buffer no longer
    /// keeps the partition's catch-up books (the partition was revoked, and the revocation
    /// saved the cursor [`Buffer::forget`] handed back: a save now would overwrite it).
    pub fn cursor_to_save(&self, partition: Partition) -> Option<Option<i64>> {
        let inner = self.inner.lock().expect("buffer lock");
        Self::catching_up(&inner, partition).then(|| Self::save_cursor(&inner, partition))
    }

    /// Whether the buffer keeps catch-up books for `partition`: behind there, or holding lines
    /// read back there that are not all delivered yet.
    fn catching_up(inner: &Inner, partition: Partition) -> bool {
        inner.behind.contains_key(&partition) || inner.cursors[1].contains_key(&partition)
    }

    /// See [`Buffer::cursor_to_save`].
    fn save_cursor(inner: &Inner, partition: Partition) -> Option<i64> {
        let live = Self::pending(inner, 0, partition);
        Self::cursor(inner, partition).map(|c| live.map_or(c, |l| l.min(c)))
    }

    fn cursor(inner: &Inner, partition: Partition) -> Option<i64> {
        let unread = inner.behind.get(&partition).map(|b| b.read_to);
        [Self::pending(inner, 1, partition), unread].into_iter().flatten().min()
    }

    /// Waits until the queue holds at most half the budget (lines and bytes); `false` once
    /// the buffer is closed.
    pub async fn wait_room(&self) -> bool {
        loop {
            let notified = self.room.notified();
            {
                let inner = self.inner.lock().expect("buffer lock");
                if inner.closed {
                    return false;
                }
                if inner.queue.len() <= self.max_lines / 2 && inner.bytes <= self.max_bytes / 2 {
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Waits until lines are queued, without taking them: `Some(waited)`, whether there were
    /// none at first; `None` once the buffer is closed. A drain connects after this and takes
    /// lines only once connected, so that while its receiver is down the lines stay here,
    /// where the budget and the overflow count apply.
    pub async fn wait_ready(&self) -> Option<bool> {
        let mut waited = false;
        loop {
            let notified = self.ready.notified();
            {
                let inner = self.inner.lock().expect("buffer lock");
                if inner.closed {
                    return None;
                }
                if !inner.queue.is_empty() {
                    return Some(waited);
                }
            }
            notified.await;
            waited = true;
        }
    }

    /// Waits for lines and moves up to `max` of them into `out`, with any overflow to report
    /// first. `None` once the buffer is closed.
    pub async fn pop(&self, out: &mut Vec<Entry>, max: usize) -> Option<Option<Overflow>> {
        self.pop_within(out, max, usize::MAX, 0).await
    }

    /// As [`Buffer::pop`], taking lines only while their encoded sizes plus `overhead` bytes
    /// each add up to at most `max_bytes` (at least one line, however large): an HTTPS drain's
    /// cap on its POST bodies.
    pub async fn pop_within(
        &self,
        out: &mut Vec<Entry>,
        max: usize,
        max_bytes: usize,
        overhead: usize,
    ) -> Option<Option<Overflow>> {
        loop {
            let notified = self.ready.notified();
            {
                let mut inner = self.inner.lock().expect("buffer lock");
                if inner.closed {
                    return None;
                }
                if !inner.queue.is_empty() {
                    let mut n = 0;
                    let mut bytes = 0usize;
                    for e in inner.queue.iter().take(max) {
                        bytes = bytes.saturating_add(cost(e) + overhead);
                        if n > 0 && bytes > max_bytes {
                            break;
                        }
                        n += 1;
                    }
                    let Inner { queue, cursors, in_flight, .. } = &mut *inner;
                    // The books are kept per run of lines of one partition and kind (a drain's
                    // lines are mostly all of one partition): the run's first offset is in
                    // flight, and its last is taken.
                    let mut run: Option<(usize, Partition, i64)> = None;
                    for e in queue.drain(..n) {
                        if let Some(p) = e.position {
                            let kind = usize::from(e.replayed);
                            match &mut run {
                                Some((k, q, last)) if *k == kind && *q == p.partition => *last = (*last).max(p.offset),
                                _ => {
                                    if let Some(r) = run.take() {
                                        Self::mark_taken_to(cursors, r);
                                    }
                                    in_flight[kind].entry(p.partition).or_insert(p.offset);
                                    run = Some((kind, p.partition, p.offset));
                                }
                            }
                        }
                        out.push(e);
                    }
                    if let Some(r) = run {
                        Self::mark_taken_to(cursors, r);
                    }
                    let taken: usize = out[out.len() - n..].iter().map(cost).sum();
                    inner.bytes -= taken;
                    if inner.pace.full && self.at_or_below_low(&inner) {
                        let to = DrainState { full: false, ..inner.pace };
                        self.set_pace(&mut inner, to);
                    }
                    self.stats.popped.fetch_add(n as u64, Relaxed);
                    let overflow = inner.overflow.take();
                    drop(inner);
                    self.room.notify_one();
                    return Some(overflow);
                }
            }
            notified.await;
        }
    }

    /// Records that every line taken by [`Buffer::pop`] so far is delivered (or given up on).
    /// A drain has one batch in flight at a time.
    pub fn done(&self) {
        let mut inner = self.inner.lock().expect("buffer lock");
        inner.in_flight[0].clear();
        inner.in_flight[1].clear();
    }

    /// The lowest offset of `partition` not yet taken care of among live lines (`kind` 0) or
    /// lines read back (1): the oldest in flight, else the oldest queued.
    fn pending(inner: &Inner, kind: usize, partition: Partition) -> Option<i64> {
        let queued = inner.cursors[kind].get(&partition).filter(|c| c.taken < c.pushed).map(|c| c.taken + 1);
        [inner.in_flight[kind].get(&partition).copied(), queued].into_iter().flatten().min()
    }

    /// The lowest offset of `partition` this drain has not taken care of, if any, as far as
    /// the group's commit is concerned: the oldest live line in flight, else the oldest still
    /// queued, and the start of a spell behind until the drain's cursor holds it.
    pub fn pending_from(&self, partition: Partition) -> Option<i64> {
        let inner = self.inner.lock().expect("buffer lock");
        let unsaved = inner.behind.get(&partition).filter(|b| !b.saved).map(|b| b.from);
        [Self::pending(&inner, 0, partition), unsaved].into_iter().flatten().min()
    }

    /// Whether the drain holds nothing: nothing queued, nothing in flight.
    pub fn is_idle(&self) -> bool {
        let inner = self.inner.lock().expect("buffer lock");
        inner.queue.is_empty() && inner.in_flight.iter().all(Map::is_empty)
    }

    /// Forgets a partition this logshuttle no longer owns: its queued lines are dropped
    /// uncounted (the partition's new owner delivers them, in order, from the committed
    /// offset and the drain's cursor), and its spell behind ends. Returns, when the drain had
    /// lines read back or to read back there, its cursor as it was (see
    /// [`Buffer::cursor_to_save`]), to be saved before the group's commit.
    pub fn forget(&self, partition: Partition) -> Option<Option<i64>> {
        let mut inner = self.inner.lock().expect("buffer lock");
        let replaying = Self::catching_up(&inner, partition);
        let cursor = Self::save_cursor(&inner, partition);
        let before = inner.queue.len();
        let mut freed = 0;
        inner.queue.retain(|e| {
            let keep = e.position.is_none_or(|p| p.partition != partition);
            if !keep {
                freed += cost(e);
            }
            keep
        });
        let removed = (before - inner.queue.len()) as u64;
        inner.bytes -= freed;
        inner.behind.remove(&partition);
        inner.joined.remove(&partition);
        for kind in 0..2 {
            inner.cursors[kind].remove(&partition);
            inner.in_flight[kind].remove(&partition);
        }
        drop(inner);
        // What was queued counts as taken: the pushed/popped pair stays a depth.
        self.stats.popped.fetch_add(removed, Relaxed);
        self.room.notify_one();
        replaying.then_some(cursor)
    }

    /// Forgets the lines read back in `partition` once the drain needs nothing more there (its
    /// cursor is saved as done).
    pub fn replay_done(&self, partition: Partition) {
        let mut inner = self.inner.lock().expect("buffer lock");
        if Self::cursor(&inner, partition).is_none() {
            inner.cursors[1].remove(&partition);
        }
    }

    /// Stops the drain: its task's next `pop` returns `None`.
    pub fn close(&self) {
        let mut inner = self.inner.lock().expect("buffer lock");
        inner.closed = true;
        // A drain that is gone no longer paces its app.
        self.set_pace(&mut inner, DrainState::default());
        drop(inner);
        self.ready.notify_one();
        self.room.notify_one();
        self.behind.notify_one();
    }
}

impl Drop for Buffer {
    /// A buffer dropped without being closed leaves its app's pace as if it had never been.
    fn drop(&mut self) {
        let inner = self.inner.get_mut().expect("buffer lock");
        if let Some(pace) = &self.pace {
            pace.update(inner.pace, DrainState::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: Partition = Partition { topic_index: 0, number: 0 };

    fn entry(offset: i64, msg: &str) -> Entry {
        Entry {
            event: LogEvent::builder("a-b", "app").message(msg.as_bytes()),
            position: Some(Position { partition: P0, offset }),
            replayed: false,
        }
    }

    fn messages(v: &[Entry]) -> Vec<String> {
        v.iter().map(|e| String::from_utf8_lossy(e.event.message()).into_owned()).collect()
    }

    #[tokio::test]
    async fn overflow_drops_the_oldest_and_counts_them() {
        let b = Buffer::new(3, usize::MAX);
        for i in 0..5 {
            b.push(entry(i, &i.to_string()));
        }
        let mut out = Vec::new();
        let overflow = b.pop(&mut out, 10).await.unwrap().unwrap();
        assert_eq!(messages(&out), ["2", "3", "4"]);
        assert_eq!(overflow.count, 2);
        assert_eq!(b.stats.dropped.load(Relaxed), 2);
        b.push(entry(5, "5"));
        out.clear();
        assert_eq!(b.pop(&mut out, 10).await.unwrap(), None, "overflow is reported once");
    }

    #[tokio::test]
    async fn byte_budget_is_honoured() {
        let one = entry(0, "x").event.encoded().len();
        let b = Buffer::new(100, one * 2);
        for i in 0..4 {
            b.push(entry(i, "x"));
        }
        let mut out = Vec::new();
        b.pop(&mut out, 10).await.unwrap();
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn a_batch_takes_lines_up_to_its_byte_cap_and_at_least_one() {
        let one = entry(0, &"x".repeat(100)).event.encoded().len();
        let b = Buffer::new(100, usize::MAX);
        for i in 0..10 {
            b.push(entry(i, &"x".repeat(100)));
        }
        let mut out = Vec::new();
        b.pop_within(&mut out, 512, 3 * (one + 48), 48).await.unwrap();
        assert_eq!(out.len(), 3, "three lines fit");
        out.clear();
        b.pop_within(&mut out, 512, 10, 48).await.unwrap();
        assert_eq!(out.len(), 1, "one line however large");
        out.clear();
        b.pop_within(&mut out, 2, usize::MAX, 48).await.unwrap();
        assert_eq!(out.len(), 2, "the line cap still holds");
    }

    #[tokio::test]
    async fn cursors_follow_delivery_and_drops() {
        let b = Buffer::new(2, usize::MAX);
        assert_eq!(b.pending_from(P0), None);
        b.push(entry(10, "a"));
        b.push(entry(11, "b"));
        assert_eq!(b.pending_from(P0), Some(10));
        let mut out = Vec::new();
        b.pop(&mut out, 1).await.unwrap();
        assert_eq!(b.pending_from(P0), Some(10), "taken is not delivered");
        b.push(entry(12, "c"));
        b.push(entry(13, "d"));
        assert_eq!(b.pending_from(P0), Some(10), "a drop behind a line in flight does not pass it");
        b.done();
        assert_eq!(b.pending_from(P0), Some(12), "the dropped line 11 counts as taken care of");
        out.clear();
        b.pop(&mut out, 10).await.unwrap();
        b.done();
        assert_eq!(b.pending_from(P0), None);
    }

    /// The buffer's marks, as its app's pace sees them: full above half the budget, until a
    /// take leaves a quarter or less; only while its drain is live; never once it is closed.
    #[tokio::test]
    async fn a_live_drain_paces_its_app_between_half_and_a_quarter_of_its_budget() {
        let pace = Arc::new(AppPace::default());
        let b = Buffer::new(8, usize::MAX).with_pace(Some(pace.clone()));
        let mut out = Vec::new();
        b.set_live(true);
        for i in 0..4 {
            b.push(entry(i, "x"));
        }
        assert!(!pace.is_paused(), "half the budget is not above it");
        b.push(entry(4, "x"));
        assert!(pace.is_paused(), "above half the budget");
        b.pop(&mut out, 2).await.unwrap();
        assert!(pace.is_paused(), "three left: above a quarter");
        b.pop(&mut out, 1).await.unwrap();
        assert!(!pace.is_paused(), "two left: a quarter");
        for i in 5..8 {
            b.push(entry(i, "x"));
        }
        assert!(pace.is_paused());
        b.set_live(false);
        assert!(!pace.is_paused(), "a drain that is not delivering never paces");
        b.set_live(true);
        assert!(pace.is_paused());
        b.close();
        assert!(!pace.is_paused(), "a closed drain no longer paces");
        // The byte budget has the same marks.
        let one = entry(0, "x").event.encoded().len();
        let b = Buffer::new(100, one * 4).with_pace(Some(pace.clone()));
        b.set_live(true);
        b.push(entry(0, "x"));
        b.push(entry(1, "x"));
        assert!(!pace.is_paused());
        b.push(entry(2, "x"));
        assert!(pace.is_paused(), "above half the bytes");
        drop(b);
        assert!(!pace.is_paused(), "a dropped buffer no longer paces");
    }

    fn replayed(offsets: std::ops::Range<i64>) -> Vec<Entry> {
        offsets.map(|o| entry(o, &o.to_string())).collect()
    }

    async fn take_all(b: &Buffer) -> Vec<String> {
        let mut out = Vec::new();
        b.pop(&mut out, 100).await.unwrap();
        b.done();
        messages(&out)
    }

    /// Past its budget a catching-up buffer drops nothing: the partition falls behind from the
    /// first line that did not fit, the group's commit stays before it until the cursor holds
    /// it, lines read back join the live stream once past every live line offered meanwhile,
    /// and live lines already read back are not taken twice.
    #[tokio::test]
    async fn past_its_budget_a_catching_up_buffer_falls_behind_and_joins_without_gap_or_repeat() {
        let b = Buffer::new(3, usize::MAX).with_catch_up(true);
        for i in 0..6 {
            b.push(entry(i, &i.to_string()));
        }
        assert_eq!(b.stats.dropped.load(Relaxed), 0, "nothing dropped");
        assert!(b.is_behind(P0));
        let (p, epoch) = b.wait_behind().await.unwrap();
        assert_eq!((p, b.behind_from(p, epoch)), (P0, Some(3)));
        assert_eq!(take_all(&b).await, ["0", "1", "2"]);
        assert_eq!(b.pending_from(P0), Some(3), "the group's commit waits for the cursor");
        b.saved(P0, 3);
        assert_eq!(b.pending_from(P0), None, "the cursor holds it now");
        assert_eq!(b.replay_cursor(P0), Some(3));
        // Read back up to 5: the live stream offered 5, so the drain is still behind.
        assert_eq!(b.push_replayed(P0, epoch, replayed(3..5), 5), Replayed::Queued);
        b.push(entry(6, "6"));
        assert_eq!(b.push_replayed(P0, epoch + 1, replayed(5..6), 6), Replayed::Stale, "another spell's lines");
        assert_eq!(b.push_replayed(P0, epoch, replayed(5..8), 8), Replayed::Joined);
        b.push(entry(7, "7"));
        assert_eq!(b.replay_cursor(P0), Some(3), "read back, not yet delivered");
        assert_eq!(take_all(&b).await, ["3", "4", "5", "6", "7"], "in order, 7 once");
        assert_eq!(b.replay_cursor(P0), None);
        b.push(entry(8, "8"));
        assert_eq!(take_all(&b).await, ["8"], "live again");
        assert_eq!(b.stats.replayed.load(Relaxed), 5);
        assert_eq!(b.stats.fell_behind.load(Relaxed), 1);
    }

    /// A spell found saved in Kafka skips the live lines before its start (the drain delivered
    /// them: the group's commit lagged), leaves the later ones to the catch-up, and joins only
    /// past the lines the live stream offered. Revoking the partition forgets its queued lines
    /// and hands back the cursor.
    #[tokio::test]
    async fn a_restored_spell_skips_older_live_lines_and_revoking_hands_back_the_cursor() {
        // The live stream starts at the group's offset, 20, past the cursor: the spell joins
        // only once read past 19, which the live stream never offers.
        let late = Buffer::new(100, usize::MAX).with_catch_up(true);
        late.restore(P0, 10, Some(20));
        let (_, epoch) = late.wait_behind().await.unwrap();
        assert_eq!(late.push_replayed(P0, epoch, replayed(10..15), 15), Replayed::Queued);
        assert_eq!(late.push_replayed(P0, epoch, replayed(15..20), 20), Replayed::Joined);
        late.push(entry(20, "20"));
        assert_eq!(take_all(&late).await.len(), 11, "10 to 20, once each");
        let b = Buffer::new(100, usize::MAX).with_catch_up(true);
        b.restore(P0, 10, Some(8));
        let (_, epoch) = b.wait_behind().await.unwrap();
        assert_eq!(b.pending_from(P0), None, "the cursor is saved already");
        for i in 8..12 {
            b.push(entry(i, &i.to_string()));
        }
        assert_eq!(b.push_replayed(P0, epoch, replayed(10..11), 11), Replayed::Queued, "11 came live");
        assert_eq!(b.push_replayed(P0, epoch, replayed(11..12), 12), Replayed::Joined);
        assert_eq!(take_all(&b).await, ["10", "11"], "8 and 9 came before the cursor was saved");
        // Behind again, then revoked with lines read back still queued.
        let small = Buffer::new(2, usize::MAX).with_catch_up(true);
        for i in 0..4 {
            small.push(entry(i, &i.to_string()));
        }
        let (_, epoch) = small.wait_behind().await.unwrap();
        small.saved(P0, 2);
        let mut out = Vec::new();
        small.pop(&mut out, 2).await.unwrap();
        small.done();
        assert_eq!(small.push_replayed(P0, epoch, replayed(2..3), 3), Replayed::Queued);
        assert_eq!(small.forget(P0), Some(Some(2)), "the oldest line read back and not delivered");
        assert!(small.is_idle(), "its queued lines are the new owner's");
        assert!(!small.is_behind(P0));
        assert_eq!(small.push_replayed(P0, epoch, replayed(3..4), 4), Replayed::Stale);
        assert_eq!(b.forget(P0), Some(None), "caught up and delivered: the cursor is done");
        let live_only = Buffer::new(2, usize::MAX).with_catch_up(true);
        live_only.push(entry(0, "0"));
        assert_eq!(live_only.forget(P0), None, "never behind: no cursor to save");
    }

    /// A drain restarted from its saved cursor gets exactly the lines from the cursor on, once
    /// each and in order, wherever the live stream starts (the group's commit: before the
    /// cursor, after it, or none) and whether the live stream or the catch-up comes first.
    #[tokio::test]
    async fn a_restored_cursor_gives_exactly_the_lines_from_it_on() {
        const CURSOR: i64 = 10;
        const END: i64 = 16;
        async fn check(live_start: Option<i64>, live_first: bool) {
            let b = Buffer::new(100, usize::MAX).with_catch_up(true);
            b.restore(P0, CURSOR, live_start);
            let (_, epoch) = b.wait_behind().await.unwrap();
            let live = |b: &Buffer| (live_start.unwrap_or(0)..END).for_each(|i| b.push(entry(i, &i.to_string())));
            if live_first {
                live(&b);
            }
            // Read back as the catch-up does: chunk after chunk until joined.
            for (from, to) in [(CURSOR, 12), (12, END)] {
                match b.push_replayed(P0, epoch, replayed(from..to), to) {
                    Replayed::Joined => break,
                    r => assert_eq!(r, Replayed::Queued, "live from {live_start:?}, live first: {live_first}"),
                }
            }
            if !live_first {
                live(&b);
            }
            b.push(entry(END, &END.to_string()));
            let want: Vec<String> = (CURSOR..=END).map(|i| i.to_string()).collect();
            assert_eq!(take_all(&b).await, want, "live from {live_start:?}, live first: {live_first}");
        }
        for live_start in [Some(4), Some(CURSOR), Some(14), None] {
            for live_first in [true, false] {
                check(live_start, live_first).await;
            }
        }
    }

    /// The cursor to save is the oldest line the drain has not delivered, live or read back:
    /// live lines queued before the spell count, lines in flight count until done; it is done
    /// once everything read back is delivered (also when nothing read back was the drain's),
    /// and there is none to save once the partition is forgotten.
    #[tokio::test]
    async fn the_cursor_to_save_is_the_oldest_line_not_delivered_live_or_read_back() {
        let b = Buffer::new(3, usize::MAX).with_catch_up(true);
        for i in 0..5 {
            b.push(entry(i, &i.to_string()));
        }
        let (_, epoch) = b.wait_behind().await.unwrap();
        assert_eq!(b.cursor_to_save(P0), Some(Some(0)), "live lines queued before the spell");
        let mut out = Vec::new();
        b.pop(&mut out, 2).await.unwrap();
        assert_eq!(b.cursor_to_save(P0), Some(Some(0)), "in flight");
        b.done();
        assert_eq!(b.cursor_to_save(P0), Some(Some(2)));
        assert_eq!(take_all(&b).await, ["2"]);
        assert_eq!(b.cursor_to_save(P0), Some(Some(3)), "the spell's start");
        assert_eq!(b.push_replayed(P0, epoch, replayed(3..5), 5), Replayed::Joined);
        assert_eq!(b.cursor_to_save(P0), Some(Some(3)), "read back, not delivered");
        assert_eq!(take_all(&b).await, ["3", "4"]);
        assert_eq!(b.cursor_to_save(P0), Some(None), "done");
        b.replay_done(P0);
        assert_eq!(b.cursor_to_save(P0), None, "nothing to save once done");
        // A spell whose lines read back were none of the drain's is done too.
        let other = Buffer::new(1, usize::MAX).with_catch_up(true);
        other.push(entry(0, "0"));
        other.push(entry(1, "1"));
        let (_, epoch) = other.wait_behind().await.unwrap();
        assert_eq!(other.push_replayed(P0, epoch, Vec::new(), 2), Replayed::Joined);
        assert_eq!(take_all(&other).await, ["0"]);
        assert_eq!(other.cursor_to_save(P0), Some(None), "joined with nothing read back: done");
        // Forgotten: the revocation saves what forget handed back; nothing more is saved.
        let revoked = Buffer::new(1, usize::MAX).with_catch_up(true);
        revoked.push(entry(0, "0"));
        revoked.push(entry(1, "1"));
        assert_eq!(revoked.forget(P0), Some(Some(0)));
        assert_eq!(revoked.cursor_to_save(P0), None);
    }

    const P1: Partition = Partition { topic_index: 0, number: 1 };

    fn entry_in(p: Partition, offset: i64) -> Entry {
        Entry { position: Some(Position { partition: p, offset }), ..entry(offset, &format!("{}:{offset}", p.number)) }
    }

    /// A pop of lines of two partitions interleaved keeps, per partition, its first line as in
    /// flight and its last as taken: the commit waits for the batch, then for what is queued.
    #[tokio::test]
    async fn a_pop_across_partitions_keeps_each_partitions_books() {
        let b = Buffer::new(100, usize::MAX);
        for (p, o) in [(P0, 10), (P0, 11), (P1, 20), (P1, 21), (P0, 12), (P1, 22)] {
            b.push(entry_in(p, o));
        }
        let mut out = Vec::new();
        b.pop(&mut out, 4).await.unwrap();
        assert_eq!((b.pending_from(P0), b.pending_from(P1)), (Some(10), Some(20)), "in flight");
        b.done();
        assert_eq!((b.pending_from(P0), b.pending_from(P1)), (Some(12), Some(22)), "still queued");
        b.pop(&mut out, 100).await.unwrap();
        b.done();
        assert_eq!((b.pending_from(P0), b.pending_from(P1)), (None, None));
        assert_eq!(messages(&out), ["0:10", "0:11", "1:20", "1:21", "0:12", "1:22"]);
    }

    #[tokio::test]
    async fn close_wakes_the_drain() {
        let b = std::sync::Arc::new(Buffer::new(2, 100));
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.pop(&mut Vec::new(), 1).await }
        });
        tokio::task::yield_now().await;
        b.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
