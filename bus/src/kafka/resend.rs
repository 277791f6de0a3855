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
//! ([`Hold`]): from the moment the brokers all went down, or a send or a delivery said the topic
//! is unknown, until a metadata request shows the topic (created again if the broker lost it).
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
    /// Where in `queue` the next event taken back from librdkafka goes: behind those queued
    /// before holding started and those taken back before it, in front of those held since (it
    /// was handed to librdkafka before them).
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
}

impl Resend {
    pub(super) fn new(limit: u64, stats: Arc<PublishStats>) -> Arc<Resend> {
        Arc::new(Resend { state: Mutex::default(), wake: Condvar::new(), limit, stats, hold: AtomicU8::new(0) })
    }

    /// Why events are held now, if they are.
    pub(super) fn holding(&self) -> Option<Hold> {
        Hold::of(self.hold.load(Ordering::Acquire))
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
        s.taken_back_at = s.queue.len();
        self.wake.notify_all();
    }

    /// Holds an event that has not been delivered yet, to be sent when the topic is confirmed:
    /// one taken while holding (`attempt` 0, behind the others), or one librdkafka's queue gave
    /// back (`taken_back`, in front of those held since holding started). False, and nothing
    /// held, when it does not fit.
    pub(super) fn hold(&self, key: &[u8], payload: &[u8], attempt: u32, taken_back: bool) -> bool {
        let p = Pending { key: key.to_vec(), payload: payload.to_vec(), attempt, failed: false, due: Instant::now() };
        let mut s = self.state.lock().expect("resend lock");
        if s.bytes + p.bytes() > self.limit {
            return false;
        }
        s.add(&p);
        if taken_back {
            let at = s.taken_back_at.min(s.queue.len());
            s.queue.insert(at, p);
            s.taken_back_at = at + 1;
        } else {
            s.queue.push_back(p);
        }
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
            let at = s.taken_back_at.min(s.queue.len());
            s.queue.insert(at, p);
            s.taken_back_at = at + 1;
        } else {
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
            s.queue.push_front(p);
            s.taken_back_at += 1;
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
            s.taken_back_at = s.taken_back_at.saturating_sub(1);
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
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    fn err(code: RDKafkaErrorCode) -> RdError {
        KafkaError::MessageProduction(code)
    }

    /// Which delivery errors are sent again: the broker's and the topic's, not the event's own.
    #[test]
    fn failures_are_sent_again_unless_the_event_itself_is_refused() {
        let check = |code, expected| assert_eq!(Failure::of(&err(code)), expected, "{code:?}");
        check(RDKafkaErrorCode::Unknown, Failure::Resend);
        check(RDKafkaErrorCode::UnknownTopicOrPartition, Failure::Resend);
        check(RDKafkaErrorCode::MessageTimedOut, Failure::Resend);
        check(RDKafkaErrorCode::NotLeaderForPartition, Failure::Resend);
        check(RDKafkaErrorCode::BrokerTransportFailure, Failure::Resend);
        check(RDKafkaErrorCode::MessageSizeTooLarge, Failure::Permanent);
        check(RDKafkaErrorCode::InvalidMessageSize, Failure::Permanent);
        check(RDKafkaErrorCode::InvalidRecord, Failure::Permanent);
        check(RDKafkaErrorCode::UnsupportedCompressionType, Failure::Permanent);
    }

    #[test]
    fn backoff_doubles_from_100_ms_to_5_s() {
        let check = |attempt, ms| assert_eq!(backoff(attempt), Duration::from_millis(ms), "attempt {attempt}");
        check(1, 100);
        check(2, 200);
        check(3, 400);
        check(6, 3200);
        check(7, 5000);
        check(1000, 5000);
    }

    fn stats(out: &Resend) -> [u64; 4] {
        let s = &out.stats;
        [&s.kafka_failed, &s.kafka_retried, &s.kafka_dropped, &s.kafka_waiting].map(|c| c.load(Ordering::Relaxed))
    }

    /// The buffer keeps the oldest events within its bytes and sends them again in order; what
    /// does not fit, and what can never be delivered, is counted dropped; failed = retried +
    /// dropped + waiting.
    #[test]
    fn the_oldest_events_are_kept_in_order_and_the_rest_counted() {
        let resend = Resend::new(30, Arc::default());
        let unknown = err(RDKafkaErrorCode::Unknown);
        for n in 0..4 {
            resend.failed(b"app", format!("line {n}").as_bytes(), 0, &unknown);
        }
        resend.failed(b"app", b"too big", 0, &err(RDKafkaErrorCode::MessageSizeTooLarge));
        // Each event is 3 + 6 bytes: three fit in 30.
        assert_eq!(stats(&resend), [5, 0, 2, 3]);
        let sent = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                resend.run(
                    |_| None,
                    |p| {
                        let mut sent = sent.lock().unwrap();
                        // The producer's queue is full once: the event and the rest wait, in order.
                        if sent.len() == 1 && p.attempt == 1 {
                            sent.push((String::from("full"), 0));
                            return Err(p);
                        }
                        sent.push((String::from_utf8(p.payload).unwrap(), p.attempt));
                        Ok(())
                    },
                )
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while resend.waiting() > 0 || sent.lock().unwrap().len() < 4 {
                assert!(Instant::now() < deadline, "sent: {:?}", sent.lock().unwrap());
                std::thread::sleep(Duration::from_millis(5));
            }
            resend.stop();
        });
        let sent: Vec<_> = sent.into_inner().unwrap().into_iter().filter(|(p, _)| p != "full").collect();
        let expected = [("line 0", 1), ("line 1", 1), ("line 2", 1)].map(|(p, a)| (p.to_owned(), a));
        assert_eq!(sent, expected);
        assert_eq!(stats(&resend), [5, 3, 2, 0]);
    }

    /// While held, events go nowhere and the check runs (told to take librdkafka's queue back
    /// the first time after each start); once it confirms the topic, the events go in the order
    /// they were handed to librdkafka, held ones counted neither failed nor retried; a new start
    /// holds again.
    #[test]
    fn held_events_wait_for_the_topic_and_then_go_in_order() {
        let resend = Resend::new(1 << 20, Arc::default());
        let gauges =
            |r: &Resend| [r.stats.kafka_held.load(Ordering::Relaxed), r.stats.kafka_waiting.load(Ordering::Relaxed)];
        resend.start_holding(Hold::BrokersDown);
        for n in 0..3 {
            assert!(resend.hold(b"app", format!("held {n}").as_bytes(), 0, false));
        }
        // Handed to librdkafka before holding started, and failed or given back by its queue's
        // purge: ahead of those held since.
        resend.failed(b"app", b"failed", 0, &err(RDKafkaErrorCode::Unknown));
        assert!(resend.hold(b"app", b"taken back 0", 0, true));
        // One that had failed and been sent again: its retry is counted once, already.
        assert!(resend.hold(b"app", b"taken back 1", 1, true));
        assert_eq!(gauges(&resend), [5, 1]);
        // The check's answers, in order: the brokers down, the topic missing, then there.
        let answers = Mutex::new(vec![None, Some(Hold::TopicMissing), Some(Hold::BrokersDown)]);
        let (checks, sent) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                resend.run(
                    |purge| {
                        checks.lock().unwrap().push(purge);
                        answers.lock().unwrap().pop().unwrap_or(None)
                    },
                    |p| {
                        sent.lock().unwrap().push(String::from_utf8(p.payload).unwrap());
                        Ok(())
                    },
                )
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while sent.lock().unwrap().len() < 6 {
                assert!(Instant::now() < deadline, "sent: {:?}", sent.lock().unwrap());
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(*checks.lock().unwrap(), [true, false, false], "the queue is taken back once, first");
            assert_eq!(resend.holding(), None);
            // Held again: nothing goes until the next check confirms the topic.
            resend.start_holding(Hold::TopicMissing);
            assert!(resend.hold(b"app", b"held 3", 0, false));
            while checks.lock().unwrap().len() < 4 || resend.holding().is_some() {
                assert!(Instant::now() < deadline, "checks: {:?}", checks.lock().unwrap());
                std::thread::sleep(Duration::from_millis(5));
            }
            while sent.lock().unwrap().len() < 7 {
                assert!(Instant::now() < deadline, "sent: {:?}", sent.lock().unwrap());
                std::thread::sleep(Duration::from_millis(5));
            }
            resend.stop();
        });
        // What librdkafka had before holding started (failed, then taken back, as reported)
        // goes before what was held since.
        let want = ["failed", "taken back 0", "taken back 1", "held 0", "held 1", "held 2", "held 3"];
        assert_eq!(*sent.lock().unwrap(), want);
        assert_eq!(checks.lock().unwrap()[3], true, "a new start takes the queue back again");
        assert_eq!(stats(&resend), [1, 1, 0, 0], "failed, retried, dropped, waiting: only the failed one counts");
        assert_eq!(gauges(&resend), [0, 0]);
    }

    /// Held events fill the buffer like failed ones: the one that does not fit is refused.
    #[test]
    fn held_events_are_bounded_by_the_buffer() {
        let resend = Resend::new(20, Arc::default());
        resend.start_holding(Hold::BrokersDown);
        assert!(resend.hold(b"app", b"line 0", 0, false));
        assert!(!resend.hold(b"app", b"line 1 is too long", 0, true));
        assert_eq!(resend.waiting(), 1);
    }

    /// Held events arriving without pause do not hurry the checks: one per [`CHECK_EVERY`]
    /// (FE44: each held event woke the thread into another check, milliseconds apart).
    #[test]
    fn held_events_do_not_hurry_the_checks() {
        let resend = Resend::new(1 << 20, Arc::default());
        resend.start_holding(Hold::TopicMissing);
        let checks = std::sync::atomic::AtomicUsize::new(0);
        let start = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                resend.run(
                    |_| {
                        checks.fetch_add(1, Ordering::Relaxed);
                        Some(Hold::TopicMissing)
                    },
                    |_| Ok(()),
                )
            });
            for n in 0..300 {
                assert!(resend.hold(b"app", format!("line {n}").as_bytes(), 0, false));
                std::thread::sleep(Duration::from_millis(2));
            }
            resend.stop();
        });
        let periods = (start.elapsed().as_millis() / CHECK_EVERY.as_millis()) as usize;
        let checks = checks.load(Ordering::Relaxed);
        assert!(checks <= periods + 1, "{checks} checks in {periods} periods of {CHECK_EVERY:?}");
    }
}
