//! Sending again the log events whose delivery failed in a way librdkafka does not retry.
//!
//! librdkafka retries a produce that failed with a retriable error (a lost connection, a broker
//! not yet the leader, a timeout) for `message.timeout.ms` by itself. Some failures it reports at
//! once instead: a broker shutting down answers the produces in flight with
//! `UNKNOWN_SERVER_ERROR` (tansu 0.6 on SIGTERM does), which Kafka's protocol does not mark
//! retriable, and a topic that vanished with its broker's data is `UNKNOWN_TOPIC_OR_PARTITION`
//! once librdkafka's own retries end. Each such event was already accepted from its producer
//! (an access line, a posted log event, a dyno's output), so dropping it would lose a line while
//! the broker comes back (benches/RESULTS.md, "Fleet drill", finding 6).
//!
//! So a failed delivery report puts the event in this buffer, which a thread of its own sends
//! again after a backoff (100 ms doubling to 5 s per attempt of the event), oldest first. The
//! buffer holds at most `kafka.resend_buffer` bytes of events: an event that fails while it is
//! full is dropped (the oldest are kept, in order) and counted, as is an event whose failure
//! another attempt cannot cure (too large for the broker, a record it calls invalid). An event
//! sent again reaches the topic after the events its producer handed over after it: an app's
//! lines around a broker restart may arrive out of order (their RFC 5424 timestamps are the
//! original ones).
//!
//! The same buffer holds events back while the producer is not sure that its topic exists
//! ([`Hold`]): from its start, and from the moment the brokers all went down or a send or a
//! delivery said the topic is unknown, until a metadata request shows the topic (created again
//! if the broker lost it).
//! A broker that came back without its data (tansu in memory) acknowledges a produce to a topic
//! it does not have and loses it when the topic is created again; a producer that waits for the
//! topic loses nothing there, whichever process creates the topic (a router-only fleet has no
//! consumer to notice). Events held are never a failed delivery: `wharf_bus_kafka_events_held`
//! counts them apart from those waiting to be sent again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};

use crate::PublishStats;

/// The first attempt's backoff; each later attempt of the same event waits twice as long.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest backoff, so that a broker that is back is written to within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often a producer holding events asks the brokers whether its topic exists.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Why the producer holds events back rather than handing them to librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Every broker connection went down: the broker that answers next may have lost the topic.
    BrokersDown,
    /// A broker said the topic does not exist (it is being created again).
    TopicMissing,
}

impl Hold {
    fn code(self) -> u8 {
        match self {
            Hold::BrokersDown => 1,
            Hold::TopicMissing => 2,
        }
    }

    fn of(code: u8) -> Option<Hold> {
        match code {
            1 => Some(Hold::BrokersDown),
            2 => Some(Hold::TopicMissing),
            _ => None,
        }
    }
}

/// What a failed delivery report says to do with its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Send it again: the broker or the topic may come back.
    Resend,
    /// Drop it: the same event would fail the same way on any attempt.
    Permanent,
}

impl Failure {
    /// Sorts a delivery error. Only errors about the event itself are permanent: its size, its
    /// format or its compression. Everything else (the broker's own errors, a missing topic,
    /// librdkafka's local timeout after its retries) may pass once the broker is back.
    pub(super) fn of(e: &RdError) -> Failure {
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::UnsupportedCompressionType,
            ) => Failure::Permanent,
            _ => Failure::Resend,
        }
    }
}

/// How long an event waits before its `attempt`th sending again (1 for the first).
pub(super) fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(BACKOFF_MAX)
}

/// An event waiting to be sent again: its key (the app) and its encoded payload as produced.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) key: Vec<u8>,
    pub(super) payload: Vec<u8>,
    /// How many times it has been sent again so far, plus one: its delivery opaque. 0 for an
    /// event held before its first sending ([`Hold`]), which has never failed.
    pub(super) attempt: u32,
    /// Whether it waits after a failed delivery (counted in `kafka_waiting`, and in
    /// `kafka_retried` when sent), rather than held (counted in `kafka_held`): an event sent
    /// again and then taken back from librdkafka's queue is held, its failure already matched by
    /// its retry.
    failed: bool,
    /// Whether librdkafka had it before it came here (failed, or taken back from its queue):
    /// older than every event held here that was never handed to librdkafka.
    handed_over: bool,
    /// Not sent again before this.
    due: Instant,
}

impl Pending {
    fn bytes(&self) -> u64 {
        (self.key.len() + self.payload.len()) as u64
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Pending>,
    bytes: u64,
    /// How many of `queue` are held events (not `failed`).
    held: u64,
    stopped: bool,
    /// Set when the producer starts holding, until the resend thread has taken librdkafka's
    /// queue back ([`Resend::run`]).
    purge: bool,
    /// Counts the calls to [`Resend::start_holding`]: a check that confirmed the topic opens
    /// only if no reason to hold came meanwhile.
    holds: u64,
    /// Where in `queue` the next event taken back from librdkafka goes: the index of the first
    /// event never handed to librdkafka (held, not `handed_over`), or the queue's length when
    /// there is none. librdkafka had every event it gives back before any of those (held
    /// events leave this queue from the front, in order), so one taken back goes in front of
    /// them, behind those taken back before it. Kept by every change to `queue`, whether
    /// holding or not: a hold may start, or be said again, while librdkafka's reports of the
    /// events its last purge took back are still to come (the stop 33 CI run: a reason said
    /// again moved this behind ten events held since, and forty lines taken back then arrived
    /// after them).
    taken_back_at: usize,
}

impl State {
    /// Sets the gauges from the queue: events that failed, and events held.
    fn gauges(&self, stats: &PublishStats) {
        stats.kafka_waiting.store(self.queue.len() as u64 - self.held, Ordering::Relaxed);
        stats.kafka_held.store(self.held, Ordering::Relaxed);
    }

    fn add(&mut self, p: &Pending) {
        self.bytes += p.bytes();
        self.held += u64::from(!p.failed);
    }

    fn remove(&mut self, p: &Pending) {
        self.bytes -= p.bytes();
        self.held -= u64::from(!p.failed);
    }

    /// Puts an event librdkafka had (taken back from its queue, or failed while holding) in
    /// front of every event never handed to it, behind those it gave back before.
    fn insert_taken_back(&mut self, p: Pending) {
        let at = self.taken_back_at.min(self.queue.len());
        self.queue.insert(at, p);
        self.taken_back_at = at + 1;
    }
}

/// The buffer of events to send again, shared by the producer's delivery reports (which fill
/// it) and the resend thread (which empties it).
#[derive(Debug)]
pub(super) struct Resend {
    state: Mutex<State>,
    wake: Condvar,
    /// Most bytes of keys and payloads held.
    limit: u64,
    stats: Arc<PublishStats>,
    /// [`Hold::code`] while events are held, 0 when they go to librdkafka: read on every send.
    hold: AtomicU8,
    /// Held events not yet handed to librdkafka: until none is left, new events queue behind
    /// them rather than overtake them ([`Resend::draining`]).
    unsent_held: std::sync::atomic::AtomicU64,
}

impl Resend {
    pub(super) fn new(limit: u64, stats: Arc<PublishStats>) -> Arc<Resend> {
        Arc::new(Resend {
            state: Mutex::default(),
            wake: Condvar::new(),
            limit,
            stats,
            hold: AtomicU8::new(0),
            unsent_held: Default::default(),
        })
    }

    /// Why events are held now, if they are.
    pub(super) fn holding(&self) -> Option<Hold> {
        Hold::of(self.hold.load(Ordering::Acquire))
    }

    /// Whether held events are still to be handed to librdkafka (the topic confirmed, the
    /// resend thread sending them): a new event then queues behind them, so that one process's
    /// lines keep their order through a hold.
    pub(super) fn draining(&self) -> bool {
        self.unsent_held.load(Ordering::Acquire) > 0
    }

    /// Starts holding events (or says why anew): the resend thread takes back what librdkafka
    /// still queues and looks for the topic until it is there ([`Resend::run`]).
    pub(super) fn start_holding(&self, why: Hold) {
        let mut s = self.state.lock().expect("resend lock");
        let before = self.hold.swap(why.code(), Ordering::AcqRel);
        if before == 0 {
            tracing::warn!(why = ?why, "kafka producer holding log events until its topic is confirmed");
        }
        s.purge = true;
        s.holds += 1;
        self.wake.notify_all();
    }

    /// Holds events from the start, quietly, until the topic is confirmed: a producer that has
    /// never reached a broker hears of no broker going down, and the first broker it reaches may
    /// be one that came back without its data.
    pub(super) fn hold_from_the_start(&self) {
        self.hold.store(Hold::BrokersDown.code(), Ordering::Release);
    }

    /// Holds an event that has not been delivered yet, to be sent when the topic is confirmed:
    /// one taken while holding (`attempt` 0, behind the others), or one librdkafka's queue gave
    /// back (`taken_back`, in front of those held since holding started). False, and nothing
    /// held, when it does not fit.
    pub(super) fn hold(&self, key: &[u8], payload: &[u8], attempt: u32, taken_back: bool) -> bool {
        let p = Pending {
            key: key.to_vec(),
            payload: payload.to_vec(),
            attempt,
            failed: false,
            handed_over: taken_back,
            due: Instant::now(),
        };
        let mut s = self.state.lock().expect("resend lock");
        if s.bytes + p.bytes() > self.limit {
            return false;
        }
        s.add(&p);
        self.unsent_held.fetch_add(1, Ordering::AcqRel);
        if taken_back {
            s.insert_taken_back(p);
        } else {
            // Behind the others: `taken_back_at` stays (at this one when it was the length).
            s.queue.push_back(p);
        }
        s.gauges(&self.stats);
        self.wake.notify_one();
        true
    }

    /// Holds every one of `events` (keys and payloads, never handed to librdkafka, in order)
    /// behind the others, or none when they do not all fit: one message's chunks.
    pub(super) fn hold_all(&self, events: &[(&[u8], &[u8])]) -> bool {
        let mut s = self.state.lock().expect("resend lock");
        let bytes: u64 = events.iter().map(|(k, p)| (k.len() + p.len()) as u64).sum();
        if s.bytes + bytes > self.limit {
            return false;
        }
        for (key, payload) in events {
            let p = Pending {
                key: key.to_vec(),
                payload: payload.to_vec(),
                attempt: 0,
                failed: false,
                handed_over: false,
                due: Instant::now(),
            };
            s.add(&p);
            s.queue.push_back(p);
        }
        self.unsent_held.fetch_add(events.len() as u64, Ordering::AcqRel);
        s.gauges(&self.stats);
        self.wake.notify_one();
        true
    }

    /// Takes a failed event (`attempt` is the number of times it was sent again, 0 for none).
    /// Counts it dropped, and says so, when the failure is permanent or the buffer is full.
    pub(super) fn failed(&self, key: &[u8], payload: &[u8], attempt: u32, error: &RdError) {
        let failed = self.stats.kafka_failed.fetch_add(1, Ordering::Relaxed) + 1;
        let why = match Failure::of(error) {
            Failure::Permanent => "the broker refuses it on any attempt",
            Failure::Resend => {
                let pending = Pending {
                    key: key.to_vec(),
                    payload: payload.to_vec(),
                    attempt: attempt + 1,
                    failed: true,
                    handed_over: true,
                    due: Instant::now(),
                };
                match self.push(pending) {
                    Ok(waiting) => {
                        // One line per thousand failures: the counters are exact, the log readable.
                        if failed % 1000 == 1 {
                            tracing::warn!(error = %error, failed_total = failed, waiting, "log events could not be delivered to kafka; sending them again");
                        }
                        return;
                    }
                    Err(()) => "the resend buffer (kafka.resend_buffer) is full",
                }
            }
        };
        let dropped = self.stats.kafka_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped % 1000 == 1 {
            tracing::error!(error = %error, dropped_total = dropped, why, "log events could not be delivered to kafka; dropped");
        }
    }

    /// Queues `p` behind the others, due after its backoff; the number now waiting, or `Err`
    /// when it does not fit.
    fn push(&self, mut p: Pending) -> Result<u64, ()> {
        let mut s = self.state.lock().expect("resend lock");
        if s.bytes + p.bytes() > self.limit {
            return Err(());
        }
        p.due = Instant::now() + backoff(p.attempt);
        s.add(&p);
        // While holding, a failed event was handed to librdkafka before holding started: in
        // front of those held since, as one taken back.
        if self.holding().is_some() {
            s.insert_taken_back(p);
        } else {
            if s.taken_back_at == s.queue.len() {
                s.taken_back_at += 1;
            }
            s.queue.push_back(p);
        }
        let waiting = s.queue.len() as u64 - s.held;
        s.gauges(&self.stats);
        self.wake.notify_one();
        Ok(waiting)
    }

    /// Puts back, in front and in order, events taken by [`Resend::due`] but not sent, to be
    /// tried again after `wait`.
    fn put_back(&self, events: impl DoubleEndedIterator<Item = Pending>, wait: Duration) {
        let mut s = self.state.lock().expect("resend lock");
        let due = Instant::now() + wait;
        for mut p in events.rev() {
            p.due = due;
            s.add(&p);
            // A held event never handed over is now the first such; any other moves it on.
            s.taken_back_at = if p.handed_over { s.taken_back_at + 1 } else { 0 };
            s.queue.push_front(p);
        }
        s.gauges(&self.stats);
    }

    /// Waits until the oldest event is due and takes every due event from the front, in order;
    /// `None` once stopped, and nothing once events are held.
    fn due(&self) -> Option<Vec<Pending>> {
        let mut s = self.state.lock().expect("resend lock");
        loop {
            if s.stopped {
                return None;
            }
            if self.holding().is_some() {
                return Some(Vec::new());
            }
            let now = Instant::now();
            match s.queue.front().map(|p| p.due) {
                Some(due) if due <= now => break,
                Some(due) => s = self.wake.wait_timeout(s, due - now).expect("resend lock").0,
                None => s = self.wake.wait(s).expect("resend lock"),
            }
        }
        let now = Instant::now();
        let mut taken = Vec::new();
        while s.queue.front().is_some_and(|p| p.due <= now) {
            let p = s.queue.pop_front().expect("a front");
            s.remove(&p);
            s.taken_back_at = match s.taken_back_at.checked_sub(1) {
                Some(at) => at,
                // The first held event left: the next one is the first again.
                None => s.queue.iter().position(|p| !p.handed_over).unwrap_or(s.queue.len()),
            };
            taken.push(p);
        }
        s.gauges(&self.stats);
        Some(taken)
    }

    /// How many events wait to be sent again.
    pub(super) fn waiting(&self) -> usize {
        self.state.lock().expect("resend lock").queue.len()
    }

    /// Stops the thread; events still waiting are counted dropped (and said, as lost lines).
    pub(super) fn stop(&self) {
        let mut s = self.state.lock().expect("resend lock");
        s.stopped = true;
        let left = s.queue.len() as u64;
        s.queue.clear();
        s.bytes = 0;
        s.held = 0;
        s.taken_back_at = 0;
        self.unsent_held.store(0, Ordering::Release);
        s.gauges(&self.stats);
        if left > 0 {
            self.stats.kafka_dropped.fetch_add(left, Ordering::Relaxed);
            tracing::error!(dropped = left, "log events still waiting to be sent to kafka again at shutdown; dropped");
        }
        self.wake.notify_all();
    }

    /// Waits `wait`, whatever wakes the thread meanwhile (every held event does), or until
    /// stopped; true when stopped. Under load the checks would otherwise follow each other
    /// milliseconds apart (FE44), a metadata request per held line.
    fn pause(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut s = self.state.lock().expect("resend lock");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if s.stopped || left.is_zero() {
                return s.stopped;
            }
            s = self.wake.wait_timeout(s, left).expect("resend lock").0;
        }
    }

    /// The resend thread's loop: sends due events with `send` (which gives back an event
    /// librdkafka's queue could not take), until [`Resend::stop`]. Such an event goes back in
    /// front with the ones after it, to be tried again after the shortest backoff.
    ///
    /// While events are held ([`Hold`]) it sends nothing: every [`CHECK_EVERY`] it calls
    /// `check` (with `true` the first time after holding started, for it to take librdkafka's
    /// queue back first), which answers `None` once the topic is confirmed (the held events then
    /// go, oldest first) or why it still holds.
    pub(super) fn run(
        &self,
        mut check: impl FnMut(bool) -> Option<Hold>,
        send: impl Fn(Pending) -> Result<(), Pending>,
    ) {
        loop {
            if self.holding().is_some() {
                let (purge, holds) = {
                    let mut s = self.state.lock().expect("resend lock");
                    (std::mem::take(&mut s.purge), s.holds)
                };
                match check(purge) {
                    None => {
                        let s = self.state.lock().expect("resend lock");
                        if s.holds == holds {
                            self.hold.store(0, Ordering::Release);
                            tracing::info!(held = s.held, "kafka topic confirmed; sending the held log events");
                        }
                    }
                    Some(why) => {
                        self.hold.store(why.code(), Ordering::Release);
                        if self.pause(CHECK_EVERY) {
                            return;
                        }
                    }
                }
                continue;
            }
            let Some(batch) = self.due() else { return };
            let mut events = batch.into_iter();
            while let Some(p) = events.next() {
                if self.holding().is_some() {
                    self.put_back(std::iter::once(p).chain(events), Duration::ZERO);
                    break;
                }
                let failed = p.failed;
                match send(p) {
                    Ok(()) => {
                        if failed {
                            self.stats.kafka_retried.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.unsent_held.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    Err(p) => {
                        self.put_back(std::iter::once(p).chain(events), BACKOFF_MIN);
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
