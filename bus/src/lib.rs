//! The log bus: how log events travel from their producers (the router, dynos, platform
//! components) to the logshuttle.
//!
//! Two transports share one interface. The embedded bus is an in-process queue for `wharf
//! serve` on one machine; Kafka carries events between machines and keeps them across restarts.
//! Producers hold a [`Publisher`], which never blocks: when the transport cannot take an event
//! it is dropped and counted; a producer that can be slowed down instead (a dyno's output) may
//! wait for room in the embedded bus with [`Publisher::publish_batch_waiting`], and with the
//! embedded bus it is also paced by its app's drains ([`pace`], [`Publisher::pace`]). The logshuttle
//! holds a [`Source`], which yields batches of [`Received`] events with their positions, and
//! commits positions it no longer needs.
//!
//! Why one file: it is the bus's whole public surface over both transports (publishers, sources,
//! catch-up readers and their counters), each a thin dispatch to `kafka.rs` or the embedded queue;
//! split, every part would name the others' private transport types.

// Unsafe code is allowed in `kafka/fetch.rs` alone, to read librdkafka's fetched messages a
// batch at a time.
#![deny(unsafe_code)]

pub mod akkeris;
pub mod event;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod pace;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use akkeris::AkkerisError;
pub use event::{FrameError, LogEvent, LogEventBuilder, Stream, split_message};
pub use pace::{AppPace, DrainState, Pacer};

/// Why the bus could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The brokers did not answer, or refused a request.
    #[error("kafka at {brokers}: {message}")]
    Broker {
        /// The bootstrap brokers.
        brokers: String,
        /// What failed.
        message: String,
    },
    /// The client could not be configured, or this build has no Kafka support.
    #[error("kafka client: {0}")]
    Config(String),
}

/// Counters shared by every publisher of one bus: a pair, so that what was offered is their sum;
/// with Kafka also what became of the published events (see [`PublishStats::render`]).
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Events handed to the transport.
    pub published: AtomicU64,
    /// Events dropped because the transport's queue was full or it failed.
    pub dropped: AtomicU64,
    /// Whether the transport is Kafka: only then are the `kafka_` counters kept and rendered.
    pub kafka: bool,
    /// Kafka: events the brokers acknowledged.
    pub kafka_produced: AtomicU64,
    /// Kafka: failed delivery reports, one per failed attempt of an event (librdkafka's own
    /// retries not counted).
    pub kafka_failed: AtomicU64,
    /// Kafka: events sent again after a failed delivery report (`kafka::resend`).
    pub kafka_retried: AtomicU64,
    /// Kafka: events given up after a failed delivery report (refused on any attempt, the resend
    /// buffer full, or still waiting at shutdown), or held and still waiting at shutdown: lost
    /// lines.
    pub kafka_dropped: AtomicU64,
    /// Kafka: events waiting in the resend buffer now, after a failed delivery report.
    pub kafka_waiting: AtomicU64,
    /// Kafka: events held now before their first sending, until the producer confirms that its
    /// topic exists (after its brokers all went down, or the topic was reported missing).
    pub kafka_held: AtomicU64,
    /// How many events were refused, per [`Refusal`], in its order: for the warning that says
    /// why (one per thousand).
    refused: [AtomicU64; Refusal::ALL.len()],
}

/// Why the bus did not take events ([`Publisher::try_publish_batch`]): each says what a
/// producer's client or operator can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue is full: the consumer (embedded) or the brokers (Kafka) do not keep up.
    Full,
    /// Kafka: every broker is unreachable, and the events held meanwhile fill
    /// `kafka.resend_buffer`.
    BrokersUnreachable,
    /// Kafka: the topic does not exist (a broker that lost its data; it is being created
    /// again), and the events held meanwhile fill `kafka.resend_buffer`.
    TopicMissing,
    /// Kafka: the producer refused the event itself (librdkafka's error, logged).
    Refused,
    /// The bus is shutting down.
    Closed,
}

impl Refusal {
    /// Every kind, in the order of [`PublishStats`]' counts.
    pub const ALL: [Refusal; 5] =
        [Refusal::Full, Refusal::BrokersUnreachable, Refusal::TopicMissing, Refusal::Refused, Refusal::Closed];

    /// The cause in words, for an operator or an API client: what is wrong and where.
    pub fn cause(self) -> &'static str {
        match self {
            Refusal::Full => "the log bus is full (its consumers or brokers do not keep up)",
            Refusal::BrokersUnreachable => {
                "the kafka brokers are unreachable and the lines held meanwhile fill kafka.resend_buffer"
            }
            Refusal::TopicMissing => {
                "the kafka topic is missing (a broker lost it; it is being created again) and the lines held \
                 meanwhile fill kafka.resend_buffer"
            }
            Refusal::Refused => "the kafka producer refused the lines (see the log)",
            Refusal::Closed => "the log bus is shutting down",
        }
    }

    /// Seconds a client should wait before trying again: about how long the cause lasts (a full
    /// queue drains within a second; brokers come back and a topic is created within seconds).
    pub fn retry_after_seconds(self) -> u32 {
        match self {
            Refusal::Full | Refusal::TopicMissing => 1,
            Refusal::BrokersUnreachable | Refusal::Refused | Refusal::Closed => 5,
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Events the bus did not take: how many of the batch it did take (the first ones, in order,
/// unless the transport refused some in the middle), and why the others were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Events the bus took: the batch's first ones.
    pub taken: u64,
    /// Events it did not take.
    pub refused: u64,
    /// Why (the first refusal's cause).
    pub why: Refusal,
}

impl PublishStats {
    /// Counts `n` refused events and says why, once per thousand of each cause (the counters
    /// are exact, the log readable): every producer (routers' access lines, dyno output, posted
    /// events) names the same cause as `POST /log-events`' 503.
    fn note_refused(&self, n: u64, why: Refusal) {
        let before = self.refused[why.index()].fetch_add(n, Ordering::Relaxed);
        if before / 1000 != (before + n) / 1000 || before == 0 {
            tracing::warn!(
                refused_total = before + n,
                cause = why.cause(),
                "log events dropped: the log bus did not take them"
            );
        }
    }
}

impl PublishStats {
    /// Appends the counters in Prometheus' text format: `wharf_bus_events_published_total` and
    /// `wharf_bus_events_dropped_total` (access lines, dyno output and posted log events alike);
    /// with Kafka, `wharf_bus_kafka_events_{produced,failed,retried,dropped}_total` and the
    /// gauges `wharf_bus_kafka_events_waiting` and `wharf_bus_kafka_events_held`: published =
    /// produced + kafka dropped + in flight (held ones included), and failed = retried + kafka
    /// dropped + waiting (but for held events still waiting at shutdown, dropped without a
    /// failure).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# HELP wharf_bus_events_published_total Log events handed to the log bus.\n\
             # TYPE wharf_bus_events_published_total counter\n\
             wharf_bus_events_published_total {}\n\
             # HELP wharf_bus_events_dropped_total Log events the log bus could not take (full or failed), dropped.\n\
             # TYPE wharf_bus_events_dropped_total counter\n\
             wharf_bus_events_dropped_total {}\n",
            self.published.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        );
        if self.kafka {
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "# HELP wharf_bus_kafka_events_produced_total Log events the Kafka brokers acknowledged (published = produced + kafka dropped + in flight).\n\
                 # TYPE wharf_bus_kafka_events_produced_total counter\n\
                 wharf_bus_kafka_events_produced_total {}\n\
                 # HELP wharf_bus_kafka_events_failed_total Failed Kafka delivery reports, one per failed attempt (failed = retried + kafka dropped + waiting).\n\
                 # TYPE wharf_bus_kafka_events_failed_total counter\n\
                 wharf_bus_kafka_events_failed_total {}\n\
                 # HELP wharf_bus_kafka_events_retried_total Log events sent to Kafka again after a failed delivery report.\n\
                 # TYPE wharf_bus_kafka_events_retried_total counter\n\
                 wharf_bus_kafka_events_retried_total {}\n\
                 # HELP wharf_bus_kafka_events_dropped_total Log events given up after a failed delivery report (refused on any attempt, resend buffer full, or at shutdown).\n\
                 # TYPE wharf_bus_kafka_events_dropped_total counter\n\
                 wharf_bus_kafka_events_dropped_total {}\n\
                 # HELP wharf_bus_kafka_events_waiting Log events waiting in the resend buffer to be sent to Kafka again.\n\
                 # TYPE wharf_bus_kafka_events_waiting gauge\n\
                 wharf_bus_kafka_events_waiting {}\n\
                 # HELP wharf_bus_kafka_events_held Log events held before their first sending until the producer confirms its topic exists (after its brokers went down).\n\
                 # TYPE wharf_bus_kafka_events_held gauge\n\
                 wharf_bus_kafka_events_held {}\n",
                load(&self.kafka_produced),
                load(&self.kafka_failed),
                load(&self.kafka_retried),
                load(&self.kafka_dropped),
                load(&self.kafka_waiting),
                load(&self.kafka_held),
            );
        }
    }
}

/// A cheap, cloneable handle that puts events on the bus without waiting (unless asked to, by
/// [`Publisher::publish_batch_waiting`]).
#[derive(Clone, Debug)]
pub struct Publisher {
    inner: PublisherInner,
    stats: Arc<PublishStats>,
}

/// What the embedded bus carries: a publisher's batch, and for paced dyno output the count of
/// it in transit, which lasts until the consumer has handed the batch on (see [`pace`]).
type Handover = (Vec<LogEvent>, Option<pace::Transit>);

#[derive(Clone, Debug)]
enum PublisherInner {
    /// Batches of events: one hand-over (and at most one wake-up of the consumer) per batch;
    /// and the apps' paces, which the source's consumer sets.
    Embedded(tokio::sync::mpsc::Sender<Handover>, Arc<Pacer>),
    #[cfg(feature = "kafka")]
    Kafka(Arc<kafka::KafkaPublisher>),
}

impl Publisher {
    /// Puts an event on the bus, or drops and counts it when the bus is full.
    pub fn publish(&self, event: LogEvent) {
        self.publish_batch(vec![event]);
    }

    /// Puts events on the bus, in order, or drops and counts those the bus cannot take.
    /// Returns how many it put on the bus.
    pub fn publish_batch(&self, events: Vec<LogEvent>) -> u64 {
        let n = events.len() as u64;
        self.try_publish_batch(events).map_or_else(|r| r.taken, |()| n)
    }

    /// As [`Publisher::publish_batch`], and says why when the bus did not take every event
    /// (the dropped ones are counted, and the cause logged once per thousand, either way). The
    /// bus takes the events in order and stops at the first it cannot take: those taken are the
    /// batch's first [`Refused::taken`].
    ///
    /// # Errors
    ///
    /// [`Refused`], with how many were taken and why the others were not.
    pub fn try_publish_batch(&self, events: Vec<LogEvent>) -> Result<(), Refused> {
        let n = events.len() as u64;
        let (published, why) = match &self.inner {
            PublisherInner::Embedded(tx, _) => match tx.try_send((events, None)) {
                Ok(()) => (n, None),
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => (0, Some(Refusal::Full)),
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => (0, Some(Refusal::Closed)),
            },
            #[cfg(feature = "kafka")]
            PublisherInner::Kafka(k) => {
                // In order, stopping at the first refusal: the events taken are the batch's
                // first ones (a caller can say which to send again), and none goes on the bus
                // ahead of an older one of the same batch that was refused.
                let (mut taken, mut why) = (0, None);
                for e in events {
                    match k.send(e) {
                        Ok(()) => taken += 1,
                        Err(w) => {
                            why = Some(w);
                            break;
                        }
                    }
                }
                (taken, why)
            }
        };
        self.counted(n, published, why)
    }

    /// As [`Publisher::try_publish_batch`] for messages that may have been cut into chunks
    /// (`messages`: each message's events, [`LogEventBuilder::messages`]): each message is
    /// taken whole or not at all, so that a client told which messages to send again gets no
    /// chunk twice. With Kafka, a message is held whole or refused whole while the producer
    /// holds its events (the case that fills: `kafka.resend_buffer`); only librdkafka's own
    /// queue (500,000 events) filling between two chunks of one message can still take part of
    /// it. [`Refused::taken`] counts events (chunks).
    ///
    /// # Errors
    ///
    /// [`Refused`], with how many events were taken and why the others were not.
    pub fn try_publish_messages(&self, messages: Vec<Vec<LogEvent>>) -> Result<(), Refused> {
        match &self.inner {
            PublisherInner::Embedded(..) => self.try_publish_batch(messages.into_iter().flatten().collect()),
            #[cfg(feature = "kafka")]
            PublisherInner::Kafka(k) => {
                let n = messages.iter().map(|m| m.len() as u64).sum();
                let (mut taken, mut why) = (0, None);
                for message in messages {
                    match k.send_whole(message) {
                        Ok(chunks) => taken += chunks,
                        Err((chunks, w)) => {
                            taken += chunks;
                            why = Some(w);
                            break;
                        }
                    }
                }
                self.counted(n, taken, why)
            }
        }
    }

    /// Counts `published` of `n` events, and the rest dropped for `why`.
    fn counted(&self, n: u64, published: u64, why: Option<Refusal>) -> Result<(), Refused> {
        self.stats.published.fetch_add(published, Ordering::Relaxed);
        match why {
            None => Ok(()),
            Some(why) => {
                self.stats.dropped.fetch_add(n - published, Ordering::Relaxed);
                self.stats.note_refused(n - published, why);
                Err(Refused { taken: published, refused: n - published, why })
            }
        }
    }

    /// Puts events on the bus, in order, waiting for room in the embedded bus rather than
    /// dropping them: for a producer that can be slowed down instead, such as a dyno's output
    /// pipe (the dyno then blocks on its writes). Kafka's queue is not waited for: what it
    /// cannot take is dropped and counted as by [`Publisher::publish_batch`]. With `pace` (the
    /// app's, from [`Publisher::pace`]) the batch counts as in transit until the consumer has
    /// handed it on; the caller waits for the pace before calling this. Returns how many it put
    /// on the bus; fewer than given only with Kafka or once the bus is closed.
    pub async fn publish_batch_waiting(&self, events: Vec<LogEvent>, pace: Option<&Arc<AppPace>>) -> u64 {
        let n = events.len() as u64;
        let published = match &self.inner {
            PublisherInner::Embedded(tx, _) => {
                if tx.send((events, pace.map(pace::Transit::new))).await.is_ok() {
                    n
                } else {
                    0
                }
            }
            #[cfg(feature = "kafka")]
            PublisherInner::Kafka(_) => return self.publish_batch(events),
        };
        self.stats.published.fetch_add(published, Ordering::Relaxed);
        self.stats.dropped.fetch_add(n - published, Ordering::Relaxed);
        if published < n {
            self.stats.note_refused(n - published, Refusal::Closed);
        }
        published
    }

    /// The pace of app `app`'s dyno output (its key, as events carry it), which its drains set
    /// (see [`pace`]); `None` with Kafka, whose publisher is never paced.
    pub fn pace(&self, app: &str) -> Option<Arc<AppPace>> {
        match &self.inner {
            PublisherInner::Embedded(_, pacer) => Some(pacer.app(app)),
            #[cfg(feature = "kafka")]
            PublisherInner::Kafka(_) => None,
        }
    }

    /// Counters of this bus's publishers, shared with every clone.
    pub fn stats(&self) -> Arc<PublishStats> {
        self.stats.clone()
    }

    /// Waits until events handed to the transport have left the process, up to `timeout`.
    /// A no-op for the embedded bus.
    pub fn flush(&self, timeout: std::time::Duration) {
        #[cfg(feature = "kafka")]
        if let PublisherInner::Kafka(k) = &self.inner {
            k.flush(timeout);
        }
        #[cfg(not(feature = "kafka"))]
        let _ = timeout;
    }
}

/// A partition of one of the topics a source reads: the topic's index in the source's list
/// (Wharf's own topic first, then the Akkeris inputs) and the partition's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The topic's index in the source's list of topics (0 is Wharf's own), not a topic name.
    pub topic_index: u16,
    /// The partition's number within the topic.
    pub number: i32,
}

/// Where an event sits in its transport: a Kafka partition and offset. The embedded bus has no
/// positions; its events are gone once taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The partition.
    pub partition: Partition,
    /// The event's offset in the partition.
    pub offset: i64,
}

/// An event taken from the bus.
#[derive(Debug, Clone)]
pub struct Received {
    /// The event.
    pub event: LogEvent,
    /// Where it came from, for committing.
    pub position: Option<Position>,
}

/// What the consumer side of the bus reports, in order.
#[derive(Debug)]
pub enum SourceEvent {
    /// Events, in bus order per partition.
    Batch(Vec<Received>),
    /// This consumer now owns these partitions (Kafka rebalance).
    Assigned(Vec<Partition>),
    /// This consumer no longer owns these partitions; their events may be redelivered elsewhere.
    Revoked(Vec<Partition>),
}

/// Counters of the consumer side.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Messages skipped because they were not log events (Wharf's or Akkeris').
    pub undecodable: AtomicU64,
    /// Kafka's consumer lag of each assigned partition (newest offset minus committed offset)
    /// by topic name and partition number, as last reported; empty for the embedded bus.
    pub lag: std::sync::Mutex<Vec<(String, i32, i64)>>,
    /// The partitions this Kafka consumer-group member owns now, by topic name and partition
    /// number, sorted: set by each assignment, emptied by each revocation (the eager protocol
    /// always hands over the whole assignment). `None` for the embedded bus and until the first
    /// assignment.
    pub assigned: std::sync::Mutex<Option<Vec<(String, i32)>>>,
    /// Kafka: committed offsets found outside their partition's kept messages at an assignment
    /// (past its end: the topic was created again; before its start: retention), each reset to
    /// the oldest kept message.
    pub positions_reset: AtomicU64,
    /// Kafka: commits of the group's offsets the broker did not take (as during a rebalance).
    /// Each is made again at the next commit interval ([`Source::take_commit_failed`]).
    pub commits_failed: AtomicU64,
    /// Set by a failed commit, until [`Source::take_commit_failed`] reads it.
    commit_failed: std::sync::atomic::AtomicBool,
}

impl SourceStats {
    /// Notes a failed commit of the group's offsets.
    #[cfg(feature = "kafka")]
    pub(crate) fn note_commit_failed(&self) {
        self.commits_failed.fetch_add(1, Ordering::Relaxed);
        self.commit_failed.store(true, Ordering::Relaxed);
    }
}

/// The consumer side of the bus.
#[derive(Debug)]
pub struct Source {
    inner: SourceInner,
    stats: Arc<SourceStats>,
}

#[derive(Debug)]
enum SourceInner {
    Embedded {
        rx: tokio::sync::mpsc::Receiver<Handover>,
        pacer: Arc<Pacer>,
        /// The transit counts of the batches handed out last: they end when the consumer asks
        /// for more, having handed those on.
        handed: Vec<pace::Transit>,
    },
    #[cfg(feature = "kafka")]
    /// Boxed: the member with its configuration is several times the embedded variant's size.
    Kafka(Box<kafka::KafkaSource>),
}

/// Most publishers' batches handed over at once.
const BATCHES: usize = 64;

impl Source {
    /// The next batch or assignment change; `None` once the bus is closed.
    pub async fn recv(&mut self) -> Option<SourceEvent> {
        match &mut self.inner {
            SourceInner::Embedded { rx, handed, .. } => {
                handed.clear();
                let mut batches = Vec::with_capacity(BATCHES);
                if rx.recv_many(&mut batches, BATCHES).await == 0 {
                    return None;
                }
                let mut events = Vec::with_capacity(batches.iter().map(|(b, _)| b.len()).sum());
                for (batch, transit) in batches {
                    events.extend(batch.into_iter().map(|event| Received { event, position: None }));
                    handed.extend(transit);
                }
                Some(SourceEvent::Batch(events))
            }
            #[cfg(feature = "kafka")]
            SourceInner::Kafka(k) => k.recv().await,
        }
    }

    /// `parts` in operators' words, for logs: `[wharf-logs/0, wharf-logs/3]` (topic name and
    /// partition number); a topic this source does not read shows as its index.
    pub fn partition_names(&self, parts: &[Partition]) -> String {
        let name = |p: &Partition| -> String {
            match &self.inner {
                #[cfg(feature = "kafka")]
                SourceInner::Kafka(k) => match k.config().topics().get(usize::from(p.topic_index)) {
                    Some(topic) => format!("{topic}/{}", p.number),
                    None => format!("{}/{}", p.topic_index, p.number),
                },
                _ => format!("{}/{}", p.topic_index, p.number),
            }
        };
        format!("[{}]", parts.iter().map(name).collect::<Vec<_>>().join(", "))
    }

    /// The apps' paces its consumer sets from its drains' buffers (see [`pace`]); `None` with
    /// Kafka, whose publisher is never paced.
    pub fn pacer(&self) -> Option<Arc<Pacer>> {
        match &self.inner {
            SourceInner::Embedded { pacer, .. } => Some(pacer.clone()),
            #[cfg(feature = "kafka")]
            SourceInner::Kafka(_) => None,
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// Whether this source has positions to commit (Kafka) or not (embedded).
    pub fn commits(&self) -> bool {
        !matches!(self.inner, SourceInner::Embedded { .. })
    }

    /// Records that everything before the given next offset of each listed partition is taken
    /// care of. Committing is asynchronous and best effort: a lost commit only means redelivery.
    pub fn commit(&self, offsets: &[(Partition, i64)]) {
        #[cfg(feature = "kafka")]
        if let SourceInner::Kafka(k) = &self.inner {
            k.commit(offsets, false);
        }
        #[cfg(not(feature = "kafka"))]
        let _ = offsets;
    }

    /// Whether a commit failed since the last call: the caller then commits its offsets again,
    /// even those that did not move since (a consumer that commits only what moved would
    /// otherwise leave the group's offsets behind for good, and a restart repeats everything
    /// since them).
    pub fn take_commit_failed(&self) -> bool {
        self.stats.commit_failed.swap(false, Ordering::Relaxed)
    }

    /// Says that the last [`SourceEvent::Revoked`] is handled: what the drains delivered of
    /// those partitions is committed. Kafka's rebalance waits for this (up to 20 s), so the
    /// partitions' new owner starts where this consumer's drains stopped. A no-op for the
    /// embedded bus.
    pub fn revoked_handled(&self) {
        #[cfg(feature = "kafka")]
        if let SourceInner::Kafka(k) = &self.inner {
            k.revoked_handled();
        }
    }

    /// How drains that fell behind read their lines again from the bus: `Some` with Kafka,
    /// which keeps what it carried; `None` for the embedded bus, which keeps nothing.
    pub fn catch_up(&self) -> Option<CatchUp> {
        match &self.inner {
            SourceInner::Embedded { .. } => None,
            #[cfg(feature = "kafka")]
            SourceInner::Kafka(k) => Some(CatchUp { inner: Arc::new(kafka::KafkaCatchUp::new(k.config())) }),
        }
    }

    /// Commits and waits for the broker to confirm: for the last commit before stopping.
    pub fn commit_and_wait(&self, offsets: &[(Partition, i64)]) {
        #[cfg(feature = "kafka")]
        if let SourceInner::Kafka(k) = &self.inner {
            k.commit(offsets, true);
        }
        #[cfg(not(feature = "kafka"))]
        let _ = offsets;
    }
}

/// Reads partitions of the bus again from an offset, for a drain that fell behind, and keeps
/// each such drain's cursor (Kafka only; see [`Source::catch_up`]).
///
/// A drain's cursor is the offset of each partition from which it still needs lines that it
/// could not take live. Kafka keeps it as the committed offsets of a consumer group of the
/// drain's own, `{group_id}.cursor.{name}`, that never has members: every logshuttle of the
/// group can read it, so the member that takes a partition over after a rebalance or a crash
/// carries on where the drain was. A drain that needs nothing more has its cursor set past any
/// offset. Every method blocks (call it from a blocking thread).
#[derive(Debug, Clone)]
pub struct CatchUp {
    #[cfg(feature = "kafka")]
    inner: Arc<kafka::KafkaCatchUp>,
    #[cfg(not(feature = "kafka"))]
    never: std::convert::Infallible,
}

impl CatchUp {
    /// Opens a reader of `partition` from offset `from` for the cursor `name` (a drain's id).
    /// Errors with [`BusError::Broker`] when the brokers do not answer.
    pub fn open(&self, name: &str, partition: Partition, from: i64) -> Result<CatchUpReader, BusError> {
        #[cfg(feature = "kafka")]
        return Ok(CatchUpReader { inner: self.inner.open(name, partition, from)?, catch_up: self.inner.clone() });
        #[cfg(not(feature = "kafka"))]
        match (self.never, name, partition, from) {}
    }

    /// Opens a reader for a log session of app `app` (its key): of the partition of Wharf's
    /// own topic that producers put the app's lines on, from `back` messages before the
    /// partition's end. Returns the reader and that end (the offset the next message written
    /// gets): messages before it are history, the rest are new. Any member of the group may
    /// open one, whoever consumes the partition; it saves no cursor. Errors with
    /// [`BusError::Broker`] when the brokers do not answer or the topic has no partitions.
    pub fn open_tail(&self, app: &str, back: i64) -> Result<(CatchUpReader, i64), BusError> {
        #[cfg(feature = "kafka")]
        return self
            .inner
            .open_tail(app, back)
            .map(|(inner, end)| (CatchUpReader { inner, catch_up: self.inner.clone() }, end));
        #[cfg(not(feature = "kafka"))]
        match (self.never, app, back) {}
    }

    /// Saves cursor `name`'s offsets: per partition, the offset to read from, or `None` when
    /// the drain needs nothing more from it. Errors with [`BusError::Broker`] when the commit
    /// fails.
    pub fn save(&self, name: &str, cursors: &[(Partition, Option<i64>)]) -> Result<(), BusError> {
        #[cfg(feature = "kafka")]
        return self.inner.save(name, cursors);
        #[cfg(not(feature = "kafka"))]
        match (self.never, name, cursors) {}
    }

    /// The saved cursors that still need lines of one of `partitions`, and the group's
    /// committed offsets of those partitions. Errors with [`BusError::Broker`] when the brokers
    /// do not answer.
    pub fn cursors(&self, partitions: &[Partition]) -> Result<SavedCursors, BusError> {
        #[cfg(feature = "kafka")]
        return self.inner.cursors(partitions);
        #[cfg(not(feature = "kafka"))]
        match (self.never, partitions) {}
    }
}

/// What [`CatchUp::cursors`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SavedCursors {
    /// The cursors that still need lines: the cursor's name, the partition, and the offset to
    /// read from.
    pub cursors: Vec<(String, Partition, i64)>,
    /// The consumer group's committed offset (the next to read) of each partition that has one.
    pub committed: Vec<(Partition, i64)>,
}

/// One partition read again from an offset (see [`CatchUp::open`]).
#[derive(Debug)]
pub struct CatchUpReader {
    #[cfg(feature = "kafka")]
    inner: kafka::KafkaReader,
    #[cfg(feature = "kafka")]
    catch_up: Arc<kafka::KafkaCatchUp>,
    #[cfg(not(feature = "kafka"))]
    never: std::convert::Infallible,
}

impl CatchUpReader {
    /// The offset of the next message it reads.
    pub fn next_offset(&self) -> i64 {
        #[cfg(feature = "kafka")]
        return self.inner.next_offset();
        #[cfg(not(feature = "kafka"))]
        match self.never {}
    }

    /// The oldest offset the partition held when the reader opened: what was asked for before
    /// it is gone (past the topic's retention).
    pub fn oldest(&self) -> i64 {
        #[cfg(feature = "kafka")]
        return self.inner.oldest();
        #[cfg(not(feature = "kafka"))]
        match self.never {}
    }

    /// Up to `max` messages (and about `max_bytes` of payload) in offset order, decoded into
    /// events (one per chunk of a long line); waits up to 100 ms for the first. Empty at the
    /// end of the partition.
    pub fn read(&mut self, max: usize, max_bytes: usize) -> Vec<Received> {
        #[cfg(feature = "kafka")]
        return self.inner.read(max, max_bytes);
        #[cfg(not(feature = "kafka"))]
        match (self.never, max, max_bytes) {}
    }

    /// Saves the cursor of this reader's partition (see [`CatchUp::save`]) through the
    /// reader's own client. Errors with [`BusError::Broker`] when the commit fails.
    pub fn save(&self, cursor: Option<i64>) -> Result<(), BusError> {
        #[cfg(feature = "kafka")]
        return self.inner.save(&self.catch_up, cursor);
        #[cfg(not(feature = "kafka"))]
        match (self.never, cursor) {}
    }
}

/// Which transport a bus uses.
#[derive(Debug, Clone)]
pub enum BusConfig {
    /// The in-process queue, holding at most `capacity` batches of events.
    Embedded {
        /// Queue size in publishers' batches.
        capacity: usize,
    },
    /// Kafka.
    Kafka(wharf_config::KafkaConfig),
}

/// A connected bus: its publisher, and its source when this process consumes.
#[derive(Debug)]
pub struct Bus {
    /// Puts events on the bus.
    pub publisher: Publisher,
    /// Takes events off the bus; `None` after [`Bus::take_source`].
    source: Option<Source>,
    config: BusConfig,
}

impl Bus {
    /// Connects to the bus. For Kafka this creates the topic when missing; brokers that do not
    /// answer within 15 s are only a warning (a process restarted during a Kafka outage serves,
    /// its log lines held until they answer: docs/fleet.md), while brokers that answer and
    /// refuse are an error ([`BusError::Broker`]).
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        let stats = Arc::new(PublishStats::default());
        match &config {
            BusConfig::Embedded { capacity } => {
                let (tx, rx) = tokio::sync::mpsc::channel((*capacity).max(1));
                let pacer = Arc::new(Pacer::default());
                Ok(Bus {
                    publisher: Publisher { inner: PublisherInner::Embedded(tx, pacer.clone()), stats },
                    source: Some(Source {
                        inner: SourceInner::Embedded { rx, pacer, handed: Vec::new() },
                        stats: Arc::default(),
                    }),
                    config,
                })
            }
            #[cfg(not(feature = "kafka"))]
            BusConfig::Kafka(_) => Err(BusError::Config("this wharf was built without Kafka support".into())),
            #[cfg(feature = "kafka")]
            BusConfig::Kafka(k) => {
                kafka::ensure_topics_at_start(k).await?;
                let stats = Arc::new(PublishStats { kafka: true, ..PublishStats::default() });
                let publisher = kafka::KafkaPublisher::new(k, stats.clone())?;
                Ok(Bus {
                    publisher: Publisher { inner: PublisherInner::Kafka(Arc::new(publisher)), stats },
                    source: None,
                    config,
                })
            }
        }
    }

    /// The consumer side. For the embedded bus it exists from the start; for Kafka this joins
    /// the consumer group. Errors with [`BusError::Config`] when the source was already taken
    /// from an embedded bus or this build has no Kafka support, and with the errors of joining
    /// the group otherwise.
    pub fn take_source(&mut self) -> Result<Source, BusError> {
        if let Some(s) = self.source.take() {
            return Ok(s);
        }
        match &self.config {
            BusConfig::Embedded { .. } => Err(BusError::Config("the embedded bus has one consumer".into())),
            #[cfg(not(feature = "kafka"))]
            BusConfig::Kafka(_) => Err(BusError::Config("this wharf was built without Kafka support".into())),
            #[cfg(feature = "kafka")]
            BusConfig::Kafka(k) => {
                let stats = Arc::<SourceStats>::default();
                Ok(Source { inner: SourceInner::Kafka(Box::new(kafka::KafkaSource::join(k, stats.clone())?)), stats })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the publishers could not put on the bus shows in `/metrics`, beside what they did.
    #[tokio::test]
    async fn publish_counters_reach_the_metrics_text() {
        let bus = Bus::connect(BusConfig::Embedded { capacity: 1 }).await.unwrap();
        let line = || LogEvent::builder("app-space", "app").message(b"line");
        bus.publisher.publish_batch(vec![line(), line()]);
        bus.publisher.publish(line());
        let mut out = String::new();
        bus.publisher.stats().render(&mut out);
        assert!(out.contains("\nwharf_bus_events_published_total 2\n"), "{out}");
        assert!(out.contains("\nwharf_bus_events_dropped_total 1\n"), "{out}");
    }

    /// A waiting publisher is slowed down by a full embedded bus instead of losing events.
    #[tokio::test]
    async fn a_waiting_publish_waits_for_room_instead_of_dropping() {
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 1 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let line = || LogEvent::builder("app-space", "app").message(b"line");
        assert_eq!(bus.publisher.publish_batch_waiting(vec![line(), line()], None).await, 2);
        let publisher = bus.publisher.clone();
        let waiting = tokio::spawn(async move { publisher.publish_batch_waiting(vec![line()], None).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the bus is full: the publisher waits");
        let Some(SourceEvent::Batch(first)) = source.recv().await else { panic!("closed") };
        assert_eq!(first.len(), 2);
        assert_eq!(waiting.await.unwrap(), 1);
        let mut out = String::new();
        bus.publisher.stats().render(&mut out);
        assert!(out.contains("\nwharf_bus_events_published_total 3\n"), "{out}");
        assert!(out.contains("\nwharf_bus_events_dropped_total 0\n"), "{out}");
    }

    /// The embedded bus names why it did not take a batch: full while its consumer lags, closed
    /// once the consumer is gone.
    #[tokio::test]
    async fn a_refused_batch_says_why() {
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 1 }).await.unwrap();
        let source = bus.take_source().unwrap();
        let line = || LogEvent::builder("app-space", "app").message(b"line");
        assert_eq!(bus.publisher.try_publish_batch(vec![line(), line()]), Ok(()));
        let full = Refused { taken: 0, refused: 1, why: Refusal::Full };
        assert_eq!(bus.publisher.try_publish_batch(vec![line()]), Err(full));
        drop(source);
        let closed = Refused { taken: 0, refused: 2, why: Refusal::Closed };
        assert_eq!(bus.publisher.try_publish_batch(vec![line(), line()]), Err(closed));
    }
}
