//! A drain's bounded buffer: the consumer pushes without ever waiting, the drain's task takes
//! batches, and past the budget the oldest lines are dropped and counted.
//!
//! The buffer also keeps, per Kafka partition, how far this drain has taken care of the lines
//! it was given (delivered or dropped). The logshuttle commits no offset beyond what every drain
//! has taken care of, so a crash loses nothing a reachable drain had not yet received.
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

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Entry>,
    bytes: usize,
    cursors: Map<Partition, Cursor>,
    /// The lowest offset per partition among lines taken but not yet delivered.
    in_flight: Map<Partition, i64>,
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
}

/// The buffer.
#[derive(Debug)]
pub struct Buffer {
    inner: Mutex<Inner>,
    ready: Notify,
    max_lines: usize,
    max_bytes: usize,
    /// The pace of the app whose drain this is, with the embedded bus; `None` for a site's
    /// drain and with Kafka.
    pace: Option<Arc<AppPace>>,
    /// Its counters.
    pub stats: BufferStats,
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
        let was_empty = inner.queue.is_empty();
        if let Some(p) = entry.position {
            let c = inner.cursors.entry(p.partition).or_insert(Cursor { pushed: p.offset - 1, taken: p.offset - 1 });
            c.pushed = p.offset;
        }
        inner.bytes += cost(&entry);
        inner.queue.push_back(entry);
        let mut dropped = 0;
        while inner.queue.len() > self.max_lines || (inner.bytes > self.max_bytes && inner.queue.len() > 1) {
            let old = inner.queue.pop_front().expect("over budget means not empty");
            inner.bytes -= cost(&old);
            Self::mark_taken(&mut inner.cursors, old.position);
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

    fn mark_taken(cursors: &mut Map<Partition, Cursor>, position: Option<Position>) {
        if let Some(p) = position
            && let Some(c) = cursors.get_mut(&p.partition)
        {
            c.taken = c.taken.max(p.offset);
        }
    }

    /// Waits until lines are queued, without taking them; `false` once the buffer is closed.
    /// A drain connects after this and takes lines only once connected, so that while its
    /// receiver is down the lines stay here, where the budget and the overflow count apply.
    pub async fn wait_ready(&self) -> bool {
        loop {
            let notified = self.ready.notified();
            {
                let inner = self.inner.lock().expect("buffer lock");
                if inner.closed {
                    return false;
                }
                if !inner.queue.is_empty() {
                    return true;
                }
            }
            notified.await;
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
                    for e in queue.drain(..n) {
                        if let Some(p) = e.position {
                            in_flight.entry(p.partition).or_insert(p.offset);
                        }
                        Self::mark_taken(cursors, e.position);
                        out.push(e);
                    }
                    let taken: usize = out[out.len() - n..].iter().map(cost).sum();
                    inner.bytes -= taken;
                    if inner.pace.full && self.at_or_below_low(&inner) {
                        let to = DrainState { full: false, ..inner.pace };
                        self.set_pace(&mut inner, to);
                    }
                    self.stats.popped.fetch_add(n as u64, Relaxed);
                    return Some(inner.overflow.take());
                }
            }
            notified.await;
        }
    }

    /// Records that every line taken by [`Buffer::pop`] so far is delivered (or given up on).
    /// A drain has one batch in flight at a time.
    pub fn done(&self) {
        self.inner.lock().expect("buffer lock").in_flight.clear();
    }

    /// The lowest offset of `partition` this drain has not taken care of, if any: the oldest
    /// line in flight, else the oldest still queued.
    pub fn pending_from(&self, partition: Partition) -> Option<i64> {
        let inner = self.inner.lock().expect("buffer lock");
        let queued = inner.cursors.get(&partition).filter(|c| c.taken < c.pushed).map(|c| c.taken + 1);
        match (inner.in_flight.get(&partition).copied(), queued) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the drain holds nothing: nothing queued, nothing in flight.
    pub fn is_idle(&self) -> bool {
        let inner = self.inner.lock().expect("buffer lock");
        inner.queue.is_empty() && inner.in_flight.is_empty()
    }

    /// Forgets a partition this logshuttle no longer owns.
    pub fn forget(&self, partition: Partition) {
        let mut inner = self.inner.lock().expect("buffer lock");
        inner.cursors.remove(&partition);
        inner.in_flight.remove(&partition);
    }

    /// Stops the drain: its task's next `pop` returns `None`.
    pub fn close(&self) {
        let mut inner = self.inner.lock().expect("buffer lock");
        inner.closed = true;
        // A drain that is gone no longer paces its app.
        self.set_pace(&mut inner, DrainState::default());
        drop(inner);
        self.ready.notify_one();
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
