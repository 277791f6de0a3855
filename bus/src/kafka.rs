//! The Kafka transport: a producer keyed by app, and a consumer-group member on its own thread.
//!
//! Events are keyed by app key, so one app's lines land in one partition and stay in order.
//! The consumer runs librdkafka's poll loop on a dedicated thread, reads the fetched messages a
//! batch at a time from a queue of their own (`fetch`), and hands batches to the async side
//! through a bounded channel; rebalances are reported in the same channel, in order with the
//! batches. Offsets are never committed automatically: the logshuttle commits what every
//! drain has taken responsibility for.
//!
//! Why one file: the producer, the group member and the catch-up readers share librdkafka's
//! configuration, the topics' decoding and the rewind past brokers' batch boundaries; apart,
//! those would have to be exposed to the rest of the bus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use wharf_config::KafkaConfig;

use crate::{BusError, LogEvent, Partition, Position, PublishStats, Received, Refusal, SourceEvent, SourceStats};

mod fetch;
mod group_watch;
mod resend;
use fetch::FetchQueue;
use group_watch::GroupSignals;
use resend::{Hold, Pending, Resend};

/// How long to wait for brokers when checking or creating the topic at start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many messages a partition is read from before the offset asked for, the earlier ones
/// skipped. Kafka answers a fetch with the batch that holds the offset; some brokers (tansu 0.6)
/// answer with the batches that start at or after it, so a read starting in the middle of a
/// producer's batch would miss the rest of that batch. Starting earlier and skipping costs a
/// little reading on every broker and loses nothing on any.
const REWIND: i64 = 10_000;
/// How long a rebalance waits for the logshuttle to commit what it delivered of the revoked
/// partitions: well under the group's rebalance timeout (`max.poll.interval.ms`, 300 s).
const REVOKE_WAIT: Duration = Duration::from_secs(20);

fn broker_err(k: &KafkaConfig, what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Broker { brokers: k.brokers.clone(), message: format!("{what}: {e}") }
}

/// librdkafka's `fetch.wait.max.ms` for every consumer that reads lines: see
/// [`KafkaConfig::fetch_wait_max`] for why it is short.
fn fetch_wait_max(k: &KafkaConfig) -> String {
    k.fetch_wait_max.0.as_millis().to_string()
}

/// Every consumer's `isolation.level`: read what the brokers hold, committed or not. No Wharf
/// producer is transactional, so on Wharf's topic both levels read the same lines and the same
/// end (a partition's last stable offset is its high watermark), and Akkeris' producers are
/// not transactional either. librdkafka's default, `read_committed`, makes every latest-offset
/// lookup (the watermarks a member reads at each assignment, and a log session's) ask for the
/// last stable offset, which tansu 0.6 on PostgreSQL answers with a query PostgreSQL 15
/// refuses (a subquery without an alias, valid from 16): the broker drops the connection, and
/// the group's heartbeats and joins with it, so every rebalance stalled about 30 s and a
/// killed member's partitions were not taken over in 60 s (benches/RESULTS.md, fleet run 18).
const ISOLATION_LEVEL: &str = "read_uncommitted";

fn base_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers).set_log_level(RDKafkaLogLevel::Warning);
    // A topic created again (see `TopicKeeper`) is seen within seconds rather than librdkafka's
    // default five minutes; a consumer only rejoins its group for it after this refresh.
    c.set("topic.metadata.refresh.interval.ms", "2000");
    // A broker that restarts is connected to again within a second of its return, rather than
    // after librdkafka's backoff of up to ten seconds (doubling from 100 ms while it was away):
    // a producer holding its lines asks it for the topic, and a consumer reads again, that much
    // sooner (seen: 4-8 s after a 0.3 s restart with the default).
    c.set("reconnect.backoff.max.ms", "1000");
    c
}

/// Creates the topics again when a client learns that they are gone while running (a broker
/// that came back without its data, as tansu's in-memory storage does, or an operator's
/// delete). Without it every line produced meanwhile is dropped and the consumer group reads
/// nothing until a process restarts. Called from librdkafka's threads; the creation runs on
/// the Tokio runtime the client was made on, at most one attempt a second.
#[derive(Debug)]
struct TopicKeeper {
    config: KafkaConfig,
    runtime: Option<tokio::runtime::Handle>,
    /// When the last attempt started.
    last: Mutex<Option<Instant>>,
}

impl TopicKeeper {
    fn new(k: &KafkaConfig) -> Arc<TopicKeeper> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        Arc::new(TopicKeeper { config: k.clone(), runtime, last: Mutex::new(None) })
    }

    /// Whether `e` says that a topic does not exist.
    fn is_missing(e: &RdError) -> bool {
        matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic)
        )
    }

    /// Starts creating the missing topics, unless an attempt started less than a second ago.
    fn missing(self: &Arc<Self>) {
        let Some(runtime) = &self.runtime else { return };
        {
            let mut last = self.last.lock().expect("topic keeper lock");
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let keeper = self.clone();
        runtime.spawn(async move {
            tracing::warn!(topics = ?keeper.config.topics(), "kafka topic missing; creating it again");
            if let Err(e) = ensure_topics(&keeper.config).await {
                tracing::warn!(error = %e, "kafka topic could not be created again; retrying on the next error");
            }
        });
    }
}

/// Creates each topic to read that does not exist: Wharf's own, and the Akkeris inputs (so that
/// a space with no lines yet does not leave the consumer without its topic).
pub(crate) async fn ensure_topics(k: &KafkaConfig) -> Result<(), BusError> {
    for topic in k.topics() {
        ensure_topic(k, topic).await?;
    }
    Ok(())
}

/// [`ensure_topics`] at a process's start, where brokers that do not answer at all are no error:
/// a router (or any Wharf) restarted during a Kafka outage must serve, not exit and loop under
/// its service manager (FE46). It starts with a warning; its producers hold their lines (up to
/// `kafka.resend_buffer`) from their start until they have seen the topic, creating it if
/// missing, and its consumer joins the group once the brokers answer. A broker that answers and
/// refuses (to create the topic, say) is still an error here.
pub(crate) async fn ensure_topics_at_start(k: &KafkaConfig) -> Result<(), BusError> {
    for topic in k.topics() {
        match topic_exists(k, topic).await {
            Ok(true) => {}
            Ok(false) => create_topic(k, topic).await?,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "kafka does not answer at start; starting anyway: log lines are held until the brokers answer \
                     and the topic is there (check the address if this stays)"
                );
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Creates the topic when it does not exist.
async fn ensure_topic(k: &KafkaConfig, topic: &str) -> Result<(), BusError> {
    if topic_exists(k, topic).await? {
        return Ok(());
    }
    create_topic(k, topic).await
}

/// Whether the brokers know `topic` with partitions; an error when they do not answer within
/// [`START_TIMEOUT`].
async fn topic_exists(k: &KafkaConfig, topic: &str) -> Result<bool, BusError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(k).create().map_err(|e| BusError::Config(e.to_string()))?;
    let topic = topic.to_owned();
    let exists = tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(Some(&topic), START_TIMEOUT)
            .map(|m| m.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
    })
    .await
    .map_err(|e| BusError::Config(e.to_string()))?;
    exists.map_err(|e| broker_err(k, "cannot read metadata", e))
}

/// Creates `topic` with the configured partitions and replication; one that already exists
/// (another process created it meanwhile) is no error.
async fn create_topic(k: &KafkaConfig, topic: &str) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(k).create().map_err(|e| BusError::Config(e.to_string()))?;
    let new = NewTopic::new(topic, k.partitions as i32, TopicReplication::Fixed(k.replication_factor.into()));
    let opts = AdminOptions::new().operation_timeout(Some(START_TIMEOUT));
    let results = admin.create_topics([&new], &opts).await.map_err(|e| broker_err(k, "cannot create topic", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(broker_err(k, &format!("cannot create topic {t}"), code)),
        }
    }
    tracing::info!(topic = %topic, partitions = k.partitions, "created kafka topic");
    Ok(())
}

/// Counts deliveries and hands failed ones to the resend buffer ([`resend`]); librdkafka retries
/// a retriable failure for `message.timeout.ms` before reporting it. A failure because the topic
/// is gone has it created again, and the producer hold events until it exists; so does the
/// news that every broker went down ([`Hold`]).
#[derive(Debug)]
struct ProduceContext {
    stats: Arc<PublishStats>,
    resend: Arc<Resend>,
    keeper: Arc<TopicKeeper>,
}

impl ClientContext for ProduceContext {
    /// Logs librdkafka's global error as the default does; when every broker went down, starts
    /// holding events: the broker that answers next may have lost the topic.
    fn error(&self, error: RdError, reason: &str) {
        tracing::error!("librdkafka: {error}: {reason}");
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.resend.start_holding(Hold::BrokersDown);
        }
    }
}

impl ProducerContext for ProduceContext {
    /// How many times the event was sent again before this attempt.
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, attempt: usize) {
        match result {
            Ok(_) => {
                self.stats.kafka_produced.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, message)) => {
                let (key, payload) = (message.key().unwrap_or_default(), message.payload().unwrap_or_default());
                // Taken back from librdkafka's queue when holding started (`send_held`): held
                // again, not a failure.
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) {
                    if !self.resend.hold(key, payload, attempt as u32, true) {
                        // One line per thousand, as every drop: a purge reports a whole queue at once.
                        let dropped = self.stats.kafka_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        if dropped % 1000 == 1 {
                            tracing::error!(
                                dropped_total = dropped,
                                "log events taken back from the kafka producer's queue do not fit kafka.resend_buffer; dropped"
                            );
                        }
                    }
                    return;
                }
                if TopicKeeper::is_missing(e) {
                    self.keeper.missing();
                    self.resend.start_holding(Hold::TopicMissing);
                }
                self.resend.failed(key, payload, attempt as u32, e);
            }
        }
    }
}

/// The resend thread's check while events are held ([`Resend::run`]): the first time, takes
/// back every event librdkafka still queues (delivered to [`ProduceContext::delivery`] as
/// purged, and held); then asks the brokers for the topic, has it created when they answer
/// without it, and answers `None` once two answers [`resend::CHECK_EVERY`] apart have it with
/// its partitions: a topic just created by another process is then past its creation (tansu
/// resets a new topic's offsets after announcing it), and librdkafka's metadata has it.
struct TopicCheck {
    producer: ThreadedProducer<ProduceContext>,
    topic: String,
    /// How many answers in a row had the topic.
    seen: u32,
}

impl TopicCheck {
    fn check(&mut self, purge: bool) -> Option<Hold> {
        if purge {
            self.seen = 0;
            self.take_back();
        }
        let found = self.producer.client().fetch_metadata(Some(&self.topic), Duration::from_secs(1)).map(|m| {
            m.topics().iter().any(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty())
        });
        match found {
            Ok(true) => {
                self.seen += 1;
                if self.seen < 2 {
                    return Some(Hold::TopicMissing);
                }
                // Once more before the held events go: an event handed to librdkafka by a
                // sender that saw no hold an instant before it started is in its queue now,
                // and would otherwise go before the held ones (or to a topic not there yet).
                self.take_back();
                None
            }
            Ok(false) => {
                self.seen = 0;
                self.producer.context().keeper.missing();
                Some(Hold::TopicMissing)
            }
            Err(e) => {
                tracing::debug!(error = %e, "kafka brokers do not answer the topic check yet");
                self.seen = 0;
                Some(Hold::BrokersDown)
            }
        }
    }
}

impl TopicCheck {
    /// Takes back every event librdkafka still queues or has in flight, and waits (up to a
    /// second) until their reports have put them in the hold, so that a hold said again or
    /// ended after this finds them in their place ([`Resend::hold`]).
    fn take_back(&self) {
        self.producer.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Puts events on the topic, keyed by app.
pub(crate) struct KafkaPublisher {
    producer: ThreadedProducer<ProduceContext>,
    topic: String,
    /// Sends again what failed; stopped when the publisher is dropped.
    resend_thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher").field("topic", &self.topic).finish()
    }
}

impl KafkaPublisher {
    /// A librdkafka producer for `k.topic` that lingers 5 ms to batch and retries a message for
    /// up to 5 minutes, then sends again what still failed from a buffer of `k.resend_buffer`
    /// bytes ([`resend`]); it counts in `stats`. It holds events from the start until its resend
    /// thread has seen the topic ([`Hold`]). Errors with [`BusError::Config`] when librdkafka
    /// rejects the settings or the resend thread cannot start; it does not contact the brokers.
    pub(crate) fn new(k: &KafkaConfig, stats: Arc<PublishStats>) -> Result<Self, BusError> {
        let resend = Resend::new(k.resend_buffer.0, stats.clone());
        resend.hold_from_the_start();
        let producer: ThreadedProducer<ProduceContext> = base_config(k)
            // A short linger batches the router's access lines without delaying them noticeably.
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "500000")
            // Keep retrying across a broker restart for up to five minutes before giving up.
            .set("message.timeout.ms", "300000")
            // librdkafka's default, named because a log session's reader finds an app's
            // partition by the same rule ([`partition_of`]); another partitioner would send it
            // to a partition that holds none of the app's lines.
            .set("partitioner", "consistent_random")
            .create_with_context(ProduceContext { stats, resend: resend.clone(), keeper: TopicKeeper::new(k) })
            .map_err(|e| BusError::Config(e.to_string()))?;
        let resend_thread = std::thread::Builder::new()
            .name("kafka-resend".into())
            .spawn({
                let (producer, topic) = (producer.clone(), k.topic.clone());
                let mut check = TopicCheck { producer: producer.clone(), topic: topic.clone(), seen: 0 };
                move || {
                    resend.run(
                        |purge| check.check(purge),
                        |p: Pending| {
                            let record = BaseRecord::with_opaque_to(&topic, p.attempt as usize)
                                .key(&p.key)
                                .payload(&p.payload);
                            match producer.send(record) {
                                Ok(()) => Ok(()),
                                Err((e, _)) => {
                                    if TopicKeeper::is_missing(&e) {
                                        producer.context().keeper.missing();
                                        producer.context().resend.start_holding(Hold::TopicMissing);
                                    }
                                    tracing::debug!(error = %e, "kafka producer did not take an event to send again; waiting");
                                    Err(p)
                                }
                            }
                        },
                    )
                }
            })
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(KafkaPublisher { producer, topic: k.topic.clone(), resend_thread: Some(resend_thread) })
    }

    /// Queues an event, or holds it while the producer is not sure its topic exists
    /// ([`Hold`]). Refused when librdkafka's queue is full, when the events held fill
    /// `kafka.resend_buffer`, or when librdkafka refuses the event itself.
    pub(crate) fn send(&self, event: LogEvent) -> Result<(), Refusal> {
        let resend = &self.producer.context().resend;
        if let Some(why) = resend.holding() {
            return self.send_held(&event, Some(why));
        }
        if resend.draining() {
            // Behind the held events still to go, in order; refused as any full queue.
            return self.send_held(&event, None);
        }
        let record = BaseRecord::with_opaque_to(&self.topic, 0).key(event.app()).payload(&event.encoded()[..]);
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((e, _)) if TopicKeeper::is_missing(&e) => {
                self.producer.context().keeper.missing();
                resend.start_holding(Hold::TopicMissing);
                self.send_held(&event, Some(Hold::TopicMissing))
            }
            Err((e, _)) if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull)) => Err(Refusal::Full),
            Err((e, _)) => {
                tracing::debug!(error = %e, "kafka producer refused a log event");
                Err(Refusal::Refused)
            }
        }
    }

    /// Sends one message's chunks ([`crate::Publisher::try_publish_messages`]): while the
    /// producer holds events, all of them held or none; otherwise each in turn. The number of
    /// chunks taken, and why the rest were not.
    pub(crate) fn send_whole(&self, chunks: Vec<LogEvent>) -> Result<u64, (u64, Refusal)> {
        let resend = &self.producer.context().resend;
        let why = resend.holding();
        if chunks.len() > 1 && (why.is_some() || resend.draining()) {
            let encoded: Vec<_> = chunks.iter().map(|e| (e.app().as_bytes(), e.encoded())).collect();
            let pairs: Vec<(&[u8], &[u8])> = encoded.iter().map(|(k, p)| (*k, &p[..])).collect();
            if resend.hold_all(&pairs) {
                return Ok(chunks.len() as u64);
            }
            return Err((0, Self::hold_refusal(why)));
        }
        let mut taken = 0;
        for e in chunks {
            self.send(e).map_err(|w| (taken, w))?;
            taken += 1;
        }
        Ok(taken)
    }

    /// Why an event the hold did not fit is refused, while holding for `why` (`None`: while
    /// the held events are sent).
    fn hold_refusal(why: Option<Hold>) -> Refusal {
        match why {
            Some(Hold::BrokersDown) => Refusal::BrokersUnreachable,
            Some(Hold::TopicMissing) => Refusal::TopicMissing,
            None => Refusal::Full,
        }
    }

    /// Holds `event` while the producer holds events for `why` (`None`: while it sends the held
    /// ones).
    fn send_held(&self, event: &LogEvent, why: Option<Hold>) -> Result<(), Refusal> {
        if self.producer.context().resend.hold(event.app().as_bytes(), &event.encoded()[..], 0, false) {
            return Ok(());
        }
        Err(Self::hold_refusal(why))
    }

    /// Waits up to `timeout` for queued events, and those waiting to be sent again, to reach
    /// the brokers; events still queued after that are logged as a warning, not returned as an
    /// error.
    pub(crate) fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let flushed = self.producer.flush(left.min(Duration::from_millis(200))).is_ok();
            let waiting = self.producer.context().resend.waiting();
            if flushed && waiting == 0 {
                return;
            }
            if left.is_zero() {
                let in_flight = self.producer.in_flight_count();
                tracing::warn!(in_flight, waiting, "kafka producer did not flush in time");
                return;
            }
            if flushed {
                // Only the resend buffer holds events, until their backoff ends.
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
        }
    }
}

impl Drop for KafkaPublisher {
    fn drop(&mut self) {
        self.producer.context().resend.stop();
        if let Some(t) = self.resend_thread.take() {
            let _ = t.join();
        }
    }
}

/// Reports rebalances to the async side, in order with the batches.
struct ConsumeContext {
    tx: mpsc::Sender<SourceEvent>,
    topics: Arc<Topics>,
    stats: Arc<SourceStats>,
    /// Set when the source is dropped: closing the consumer then revokes its partitions, and
    /// nobody is listening any more (the close may even run on an async thread, where a
    /// blocking send is not allowed).
    stop: Arc<AtomicBool>,
    /// The async side's word that it has handled a revocation ([`KafkaSource::revoked_handled`]).
    revoke_ack: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    /// Per assigned partition, the committed offset: the poll thread skips messages before it,
    /// read only because the assignment starts [`REWIND`] messages earlier.
    skip_below: std::sync::Mutex<std::collections::HashMap<Partition, i64>>,
    /// Rebalances and the assignment's size for the group watch, and its request to rejoin.
    signals: Arc<GroupSignals>,
    /// Set from a lost assignment's revocation, or from the moment the subscribed topic is
    /// found missing, to the next assignment: no offset is committed meanwhile (see
    /// [`KafkaSource::commit`]).
    lost: Arc<AtomicBool>,
    /// The fetched messages' own queue (`fetch`), read a batch at a time: set by
    /// [`KafkaSource::join`], given back by the poll thread when it ends (before the consumer is
    /// closed). Locked by the poll thread only, between its calls to `BaseConsumer::poll`, and
    /// by the rebalance callbacks, which run inside those calls.
    fetched: Mutex<Option<FetchQueue<ConsumeContext>>>,
    /// Partitions' errors read from the fetch queue while handing it over at a revocation, for
    /// the poll thread to act on.
    fetch_errors: Mutex<Vec<RdError>>,
}

impl ConsumeContext {
    /// Starts each partition of `tpl` [`REWIND`] messages before its committed offset (not
    /// before the oldest kept), and notes the committed offset for the poll thread to skip to.
    /// A committed offset outside the partition's kept messages is reset to the oldest kept one,
    /// with a warning and [`SourceStats::positions_reset`]: past its end it belongs to a topic
    /// that was created again since (a broker that lost its data, while a member committed the
    /// old topic's offsets into its new group), and waiting for the new partition to reach it
    /// would deliver nothing, as no broker answers `OFFSET_OUT_OF_RANGE` to a committed offset;
    /// before its start, the messages in between are gone with the broker's retention.
    fn rewind(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let committed = match consumer.committed_offsets(tpl.clone(), START_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the committed offsets; partitions start where the broker says");
                return;
            }
        };
        let mut skip = self.skip_below.lock().expect("skip lock");
        for e in committed.elements() {
            let (Offset::Offset(next), Some(topic_index)) = (e.offset(), self.topics.index(e.topic())) else {
                continue;
            };
            let marks = consumer.fetch_watermarks(e.topic(), e.partition(), START_TIMEOUT).ok();
            let low = marks.map_or(0, |(low, _)| low);
            if let Some((low, high)) = marks
                && (next > high || next < low)
            {
                let why = if next > high {
                    "past the partition's end (the topic was created again)"
                } else {
                    "before its oldest kept message"
                };
                tracing::warn!(
                    topic = e.topic(),
                    partition = e.partition(),
                    committed = next,
                    low,
                    high,
                    why,
                    "committed offset outside the partition; reading from its oldest kept message"
                );
                self.stats.positions_reset.fetch_add(1, Ordering::Relaxed);
                let _ = tpl.set_partition_offset(e.topic(), e.partition(), Offset::Offset(low));
                continue;
            }
            let start = (next - REWIND).max(low);
            if start < next && tpl.set_partition_offset(e.topic(), e.partition(), Offset::Offset(start)).is_ok() {
                skip.insert(Partition { topic_index, number: e.partition() }, next);
            }
        }
    }

    /// Whether a message at `offset` of `p` was read only because of the rewind. The first
    /// message at or past the committed offset ends the skipping for the partition: messages
    /// come in offset order, so none of the assignment's is skipped after it, and a partition
    /// created again under a consumer that is never reassigned (its offsets starting over from
    /// 0) does not have its new messages skipped up to the old topic's offset.
    fn skipped(&self, p: Partition, offset: i64) -> bool {
        skipped_in(&mut self.skip_below.lock().expect("skip lock"), p, offset)
    }

    /// Decodes the message at `offset` of `p` onto `batch`; an undecodable one is counted
    /// ([`SourceStats::undecodable`]), warned about once in a thousand, and skipped.
    fn decode(&self, p: Partition, offset: i64, payload: &[u8], batch: &mut Vec<Received>) {
        let position = Some(Position { partition: p, offset });
        if let Err(e) = self.topics.decode_into(p.topic_index, payload, position, batch) {
            let bad_frames = self.stats.undecodable.fetch_add(1, Ordering::Relaxed) + 1;
            if bad_frames % 1000 == 1 {
                let topic = &self.topics.0[usize::from(p.topic_index)].0;
                tracing::warn!(error = %e, topic, partition = p.number, offset, bad_frames, "skipping undecodable log event");
            }
        }
    }

    /// Reads the fetch queue onto `batch`, at most [`BATCH`] events in all: what it holds, or,
    /// when it holds nothing, what arrives first within `wait` and with it. Messages read only
    /// because of the rewind are left out; partitions' errors go onto `errors`, in order.
    /// Returns how many messages and errors were taken off the queue.
    fn read_fetched(&self, wait: Duration, batch: &mut Vec<Received>, errors: &mut Vec<RdError>) -> usize {
        let queue = self.fetched.lock().expect("fetch queue lock");
        let Some(q) = queue.as_ref() else {
            // Only once the poll thread has ended; not to spin meanwhile.
            std::thread::sleep(wait);
            return 0;
        };
        let fetched = q.read(wait, BATCH.saturating_sub(batch.len()));
        let mut skip = self.skip_below.lock().expect("skip lock");
        // The last topic seen, as its handle and its index: a batch is mostly one topic's.
        let mut last: Option<(usize, Option<u16>)> = None;
        for m in fetched.iter() {
            if let Some(e) = m.error() {
                errors.push(e);
                continue;
            }
            let index = match last {
                Some((id, index)) if id == m.topic_id() => index,
                _ => {
                    let index = m.topic().and_then(|name| self.topics.index(name));
                    last = Some((m.topic_id(), index));
                    index
                }
            };
            let Some(topic_index) = index else { continue };
            let p = Partition { topic_index, number: m.partition };
            if !skip.is_empty() && skipped_in(&mut skip, p, m.offset) {
                continue;
            }
            self.decode(p, m.offset, m.payload, batch);
        }
        fetched.len()
    }

    /// Sends what the fetch queue still holds, before a revocation is reported: lines read
    /// before a rebalance reach the logshuttle before it, as they would read one by one. What
    /// arrives after the revocation is outdated once the partitions stop, and librdkafka drops it.
    fn hand_over_fetched(&self) {
        // Bounded: the partitions keep fetching until they are unassigned.
        for _ in 0..64 {
            let (mut batch, mut errors) = (Vec::with_capacity(BATCH), Vec::new());
            let taken = self.read_fetched(Duration::ZERO, &mut batch, &mut errors);
            self.fetch_errors.lock().expect("fetch errors lock").append(&mut errors);
            if !batch.is_empty() {
                self.report(SourceEvent::Batch(batch));
            }
            if taken < BATCH {
                break;
            }
        }
    }
}

/// [`ConsumeContext::skipped`] on the locked map.
fn skipped_in(skip: &mut std::collections::HashMap<Partition, i64>, p: Partition, offset: i64) -> bool {
    match skip.get(&p) {
        Some(&next) if offset < next => true,
        Some(_) => {
            skip.remove(&p);
            false
        }
        None => false,
    }
}

impl ConsumeContext {
    fn report(&self, event: SourceEvent) {
        if !self.stop.load(Ordering::Relaxed) {
            let _ = self.tx.blocking_send(event);
        }
    }
}

impl ClientContext for ConsumeContext {
    /// Keeps each partition's lag: the newest offset minus the committed one, which is what the
    /// logshuttle has yet to deliver to every drain (or has delivered but not committed yet).
    /// Read from the raw JSON for the few fields needed, so that a broker's omissions elsewhere in
    /// the statistics do not lose them.
    fn stats_raw(&self, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(json) else {
            return;
        };
        let mut lag = Vec::new();
        for (name, _) in &self.topics.0 {
            let Some(parts) = stats["topics"][name]["partitions"].as_object() else { continue };
            for (number, p) in parts {
                // Partition -1 is librdkafka's internal "unassigned" one; -1 lag means unknown.
                let (Ok(number), Some(n)) = (number.parse::<i32>(), p["consumer_lag"].as_i64()) else { continue };
                if number >= 0 && n >= 0 {
                    lag.push((name.clone(), number, n));
                }
            }
        }
        lag.sort_unstable();
        *self.stats.lag.lock().expect("lag lock") = lag;
    }
}

impl ConsumerContext for ConsumeContext {
    /// As rust-rdkafka's, for the eager protocol that the default assignors use, but an
    /// assignment starts [`REWIND`] messages before the committed offsets (see [`REWIND`]).
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        self.signals.rebalances.fetch_add(1, Ordering::Relaxed);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.lost.store(false, Ordering::Relaxed);
                self.signals.assigned.store(tpl.count(), Ordering::Relaxed);
                let mut owned: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                owned.sort_unstable();
                *self.stats.assigned.lock().expect("assigned lock") = Some(owned);
                self.rewind(consumer, tpl);
                // Before the assignment starts fetching: see `fetch` for why every time.
                if let Some(q) = self.fetched.lock().expect("fetch queue lock").as_ref() {
                    for e in tpl.elements() {
                        if !q.route(e.topic(), e.partition()) {
                            tracing::warn!(
                                topic = e.topic(),
                                partition = e.partition(),
                                "partition not routed to the fetch queue; its messages are read one by one"
                            );
                        }
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::warn!(error = %e, "kafka assignment failed");
                }
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Before the revocation is reported: the commits made for it are then skipped.
                if consumer.assignment_lost() {
                    self.lost.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        partitions = tpl.count(),
                        "the group no longer knows this member (its session expired, or the broker lost the group); \
                         its partitions' offsets are not committed: their next owner starts from the group's last commit"
                    );
                }
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                self.skip_below.lock().expect("skip lock").clear();
                self.signals.assigned.store(0, Ordering::Relaxed);
                *self.stats.assigned.lock().expect("assigned lock") = Some(Vec::new());
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "kafka unassignment failed");
                }
            }
            other => tracing::warn!(error = ?other, "kafka rebalance failed"),
        }
    }

    /// Reports the revocation and waits, up to [`REVOKE_WAIT`], for the async side to have
    /// committed what its drains delivered: the rebalance goes on only then, so that the
    /// commit is made in the generation that owned the partitions and the new owner starts
    /// where this member's drains stopped.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let acks = self.revoke_ack.lock().expect("revoke ack lock");
            while acks.try_recv().is_ok() {}
            self.hand_over_fetched();
            self.report(SourceEvent::Revoked(self.topics.partitions(list)));
            // Looked at every 100 ms, so that a source being dropped does not wait.
            let deadline = std::time::Instant::now() + REVOKE_WAIT;
            while !self.stop.load(Ordering::Relaxed) && acks.recv_timeout(Duration::from_millis(100)).is_err() {
                if std::time::Instant::now() >= deadline {
                    tracing::warn!(wait = ?REVOKE_WAIT, "revoked partitions were not handled in time; the rebalance goes on");
                    break;
                }
            }
        }
    }

    /// Counts a commit the broker did not take and has the logshuttle commit again
    /// ([`crate::Source::take_commit_failed`]).
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            self.stats.note_commit_failed();
            tracing::warn!(error = %e, "kafka commit failed; committed again at the next interval");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                self.report(SourceEvent::Assigned(self.topics.partitions(list)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Wharf's own encoding.
    Wharf,
    /// Akkeris' fluentd/Kubernetes JSON lines; the topic is the space.
    AkkerisApps,
    /// Akkeris' build-log JSON lines.
    AkkerisBuilds,
}

/// The topics a source reads, in the order of [`KafkaConfig::topics`]; a topic's index there
/// is its [`Partition::topic_index`].
#[derive(Debug)]
struct Topics(Vec<(String, Kind)>);

impl Topics {
    fn new(k: &KafkaConfig) -> Topics {
        let kinds = std::iter::once(Kind::Wharf)
            .chain(k.akkeris_app_topics.iter().map(|_| Kind::AkkerisApps))
            .chain(k.akkeris_build_topic.iter().map(|_| Kind::AkkerisBuilds));
        Topics(k.topics().into_iter().map(str::to_owned).zip(kinds).collect())
    }

    fn index(&self, name: &str) -> Option<u16> {
        self.0.iter().position(|(t, _)| t == name).map(|i| i as u16)
    }

    fn partitions(&self, list: &TopicPartitionList) -> Vec<Partition> {
        let known = |e: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>| {
            Some(Partition { topic_index: self.index(e.topic())?, number: e.partition() })
        };
        list.elements().iter().filter_map(known).collect()
    }

    /// Reads a message of topic `index` at `position` onto `out`: one event, or one per chunk of
    /// a long line, all at the message's offset. Nothing is added when it errs.
    fn decode_into(
        &self,
        index: u16,
        payload: &[u8],
        position: Option<Position>,
        out: &mut Vec<Received>,
    ) -> Result<(), String> {
        let (name, kind) = &self.0[usize::from(index)];
        let events = match kind {
            Kind::Wharf => {
                let event = LogEvent::decode(Bytes::copy_from_slice(payload)).map_err(|e| e.to_string())?;
                // The usual line goes on as it is, with no vector of one around it: this runs
                // for every message the consumer reads.
                if event.message().len() <= crate::event::MAX_CHUNK {
                    out.push(Received { event, position });
                    return Ok(());
                }
                // Another producer may have put a longer line on the topic than Wharf's own would.
                event.into_chunks()
            }
            Kind::AkkerisApps => crate::akkeris::app_line(payload, name).map_err(|e| e.to_string())?,
            Kind::AkkerisBuilds => crate::akkeris::build_line(payload).map_err(|e| e.to_string())?,
        };
        out.extend(events.into_iter().map(|event| Received { event, position }));
        Ok(())
    }
}

/// A consumer-group member whose poll loop runs on its own thread.
pub(crate) struct KafkaSource {
    rx: mpsc::Receiver<SourceEvent>,
    config: KafkaConfig,
    consumer: Arc<BaseConsumer<ConsumeContext>>,
    topics: Arc<Topics>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The group watch's thread (`group_watch`).
    watch: Option<std::thread::JoinHandle<()>>,
    revoke_ack: std::sync::mpsc::SyncSender<()>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").field("topics", &self.topics).finish()
    }
}

/// Most messages handed over in one batch.
const BATCH: usize = 1024;

impl KafkaSource {
    /// Joins the consumer group `k.group_id`, subscribes to [`KafkaConfig::topics`] and starts
    /// the poll thread. Offsets are committed only through [`KafkaSource::commit`]; a new group
    /// starts at the earliest kept offset. Errors with [`BusError::Config`] for bad settings or
    /// a failed thread spawn, [`BusError::Broker`] when the subscription fails.
    pub(crate) fn join(k: &KafkaConfig, stats: Arc<SourceStats>) -> Result<Self, BusError> {
        let (tx, rx) = mpsc::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let topics = Arc::new(Topics::new(k));
        let (revoke_ack, acks) = std::sync::mpsc::sync_channel(1);
        // Unique to this member (the process and the moment it joined), so that the group watch
        // can tell its own member ids, `{client.id}-{uuid}`, from the others'.
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let client_id = format!("wharf-{}-{}", std::process::id(), since_epoch.as_nanos());
        let signals = Arc::new(GroupSignals::default());
        let consumer: BaseConsumer<ConsumeContext> = base_config(k)
            .set("client.id", &client_id)
            .set("group.id", &k.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", ISOLATION_LEVEL)
            // A new group starts at the oldest event still kept: nothing produced before the first
            // logshuttle started is skipped.
            .set("auto.offset.reset", "earliest")
            // A logshuttle that died is replaced within seconds rather than the default 45 s.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // Lag per partition, for the metrics.
            .set("statistics.interval.ms", "2000")
            .set("fetch.wait.max.ms", fetch_wait_max(k))
            .create_with_context(ConsumeContext {
                tx: tx.clone(),
                topics: topics.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                revoke_ack: std::sync::Mutex::new(acks),
                skip_below: std::sync::Mutex::default(),
                signals: signals.clone(),
                lost: Arc::new(AtomicBool::new(false)),
                fetched: Mutex::new(None),
                fetch_errors: Mutex::default(),
            })
            .map_err(|e| BusError::Config(e.to_string()))?;
        consumer.subscribe(&k.topics()).map_err(|e| broker_err(k, "cannot subscribe", e))?;
        let consumer = Arc::new(consumer);
        // Before the poll thread starts: the first assignment is routed to it.
        let queue =
            FetchQueue::new(&consumer).ok_or_else(|| BusError::Config("librdkafka made no fetch queue".into()))?;
        *consumer.context().fetched.lock().expect("fetch queue lock") = Some(queue);
        let thread = std::thread::Builder::new()
            .name("kafka-consumer".into())
            .spawn({
                let (consumer, stop, topics) = (consumer.clone(), stop.clone(), topics.clone());
                let keeper = TopicKeeper::new(k);
                move || poll_loop(&consumer, &topics, &tx, &stop, &keeper)
            })
            .map_err(|e| {
                // The queue holds the consumer: given back here, or neither would ever be freed.
                consumer.context().fetched.lock().expect("fetch queue lock").take();
                BusError::Config(e.to_string())
            })?;
        let watch = std::thread::Builder::new()
            .name("kafka-group-watch".into())
            .spawn({
                let (consumer, stop, group) = (consumer.clone(), stop.clone(), k.group_id.clone());
                let names: Vec<String> = topics.0.iter().map(|(name, _)| name.clone()).collect();
                move || group_watch::run(&consumer, &group, &client_id, &names, &stop)
            })
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(KafkaSource {
            rx,
            config: k.clone(),
            consumer,
            topics,
            stop,
            thread: Some(thread),
            watch: Some(watch),
            revoke_ack,
        })
    }

    /// The configuration it joined with.
    pub(crate) fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Tells the poll thread that the last [`SourceEvent::Revoked`] is handled (its offsets
    /// committed), so the rebalance may go on.
    pub(crate) fn revoked_handled(&self) {
        let _ = self.revoke_ack.try_send(());
    }

    /// The next batch (at most 1024 decoded events; undecodable ones are counted in
    /// [`SourceStats::undecodable`] and skipped) or assignment change, in the order the poll
    /// thread saw them; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<SourceEvent> {
        self.rx.recv().await
    }

    /// Commits, for each partition, the offset of the next message to read. With `wait` the call
    /// blocks until the group coordinator confirms. A failed commit (as during a rebalance) is
    /// counted and warned about, here or in [`ConsumeContext::commit_callback`], and the
    /// logshuttle commits again ([`crate::Source::take_commit_failed`]).
    ///
    /// Nothing is committed between a lost assignment's revocation and the next assignment
    /// (librdkafka's `rd_kafka_assignment_lost`: the coordinator no longer knows this member, so
    /// the partitions may already be another's), nor between the moment the topic is found
    /// missing and the next assignment (the offsets held are the old topic's). Kafka refuses
    /// the first kind anyway (the generation is fenced); a broker that lost its group with its
    /// data (tansu in memory) would take both into its new group, where offsets of the old topic
    /// would make the new owner skip the re-created partition's lines below them.
    pub(crate) fn commit(&self, offsets: &[(Partition, i64)], wait: bool) {
        if offsets.is_empty() {
            return;
        }
        if self.consumer.context().lost.load(Ordering::Relaxed) {
            tracing::debug!(partitions = offsets.len(), "not committing the offsets of a lost assignment");
            return;
        }
        let mut list = TopicPartitionList::new();
        for &(p, next) in offsets {
            let topic = &self.topics.0[usize::from(p.topic_index)].0;
            if list.add_partition_offset(topic, p.number, Offset::Offset(next)).is_err() {
                return;
            }
        }
        let mode = if wait { CommitMode::Sync } else { CommitMode::Async };
        if let Err(e) = self.consumer.commit(&list, mode) {
            self.consumer.context().stats.note_commit_failed();
            tracing::warn!(error = %e, "kafka commit failed; committed again at the next interval");
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        for t in [self.thread.take(), self.watch.take()].into_iter().flatten() {
            let _ = t.join();
        }
    }
}

/// The poll thread's view of the subscribed topics: whether one went missing, and when to look
/// again or leave and join the group once it is back.
#[derive(Debug, Default)]
struct TopicWatch {
    /// While a subscribed topic is missing: when to ask the broker next whether it is back.
    gone: Option<Instant>,
    /// Whether the broker was seen without a subscribed topic since the last rejoin.
    missing: bool,
    /// When to leave and join once it is back: after librdkafka's own metadata refresh saw it.
    rejoin_at: Option<Instant>,
}

impl TopicWatch {
    /// Asks the broker whether a missing topic is back, and rejoins once it is, when it is time.
    fn tick(&mut self, consumer: &BaseConsumer<ConsumeContext>, topics: &Topics, keeper: &Arc<TopicKeeper>) {
        if let Some(next) = self.gone
            && Instant::now() >= next
        {
            self.gone = Some(Instant::now() + TOPIC_BACK_EVERY);
            match topics_exist(consumer, topics) {
                Some(true) => {
                    self.gone = None;
                    if std::mem::take(&mut self.missing) {
                        self.rejoin_at = Some(Instant::now() + TOPIC_SEEN_AFTER);
                    }
                }
                // Asked again until it exists: librdkafka reports the topic missing once, late
                // (seconds after a broker's return), and the keeper drops a request less than a
                // second after its last attempt. Until it exists, tansu acknowledges what the
                // producers send and loses it when the topic is created again.
                Some(false) => {
                    self.missing = true;
                    keeper.missing();
                }
                // The broker does not answer (yet): asked again.
                None => {}
            }
        }
        if let Some(at) = self.rejoin_at
            && Instant::now() >= at
        {
            self.rejoin_at = None;
            tracing::info!(
                "kafka topic exists again; leaving and joining the consumer group so that its partitions are assigned"
            );
            rejoin(consumer, topics);
        }
    }

    /// Acts on a consumer error (other than a partition's end).
    fn error(&mut self, consumer: &BaseConsumer<ConsumeContext>, keeper: &Arc<TopicKeeper>, e: &RdError) {
        tracing::warn!(error = %e, "kafka consumer error");
        // "Subscribed topic not available": the consumer rejoins its group once the topic
        // exists again and the metadata refresh shows it. The offsets this member holds are the
        // old topic's from now on: none is committed until the next assignment, so that none
        // lands in the new topic's group. The group may then be assigned while the topic is
        // still missing in this member's metadata, with no partition to anyone, and neither
        // librdkafka nor tansu 0.6 rebalances when the topic appears (the group keeps its
        // generation): once the broker has the topic again, this member leaves and joins,
        // which starts a new generation assigned with it.
        if TopicKeeper::is_missing(e) {
            consumer.context().lost.store(true, Ordering::Relaxed);
            keeper.missing();
            self.missing = true;
            self.gone.get_or_insert_with(|| Instant::now() + TOPIC_BACK_EVERY);
        }
        // The brokers went away: when they answer again, the topics are looked for at once (a
        // broker may come back without its data), not at the next metadata refresh that
        // reports them missing.
        if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.gone.get_or_insert_with(|| Instant::now() + TOPIC_BACK_EVERY);
        }
    }
}

/// How long the poll thread waits for a message when none is there, between its looks at the
/// consumer's events and its stop flag.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Most events served between two reads of the fetch queue.
const EVENTS_PER_TURN: usize = 64;

/// Gives the fetch queue back to librdkafka when the poll thread ends, however it ends: before
/// the consumer is closed, and so that the queue no longer holds the consumer.
struct FetchQueueBack<'a>(&'a ConsumeContext);

impl Drop for FetchQueueBack<'_> {
    fn drop(&mut self) {
        // Even after a panic that poisoned the lock: the queue holds the consumer.
        let queue = self.0.fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        drop(queue);
    }
}

/// The poll thread: serves the consumer's events (rebalances through [`ConsumeContext`], commit
/// results, statistics, errors) with `BaseConsumer::poll`, and reads the fetched messages a batch
/// at a time from the fetch queue (`fetch`), handing each batch to the async side.
fn poll_loop(
    consumer: &BaseConsumer<ConsumeContext>,
    topics: &Topics,
    tx: &mpsc::Sender<SourceEvent>,
    stop: &AtomicBool,
    keeper: &Arc<TopicKeeper>,
) {
    let context = consumer.context();
    let _back = FetchQueueBack(context);
    let mut batch = Vec::with_capacity(BATCH);
    let mut errors = Vec::new();
    let mut watch = TopicWatch::default();
    while !stop.load(Ordering::Relaxed) {
        if context.signals.rejoin.swap(false, Ordering::Relaxed) {
            rejoin(consumer, topics);
        }
        watch.tick(consumer, topics, keeper);
        // Events first, each `poll` serving one. A rebalance's callbacks run in it: the batch
        // read before is sent already, so the revocation follows the lines read before it.
        for _ in 0..EVENTS_PER_TURN {
            if !context.fetched.lock().expect("fetch queue lock").as_ref().is_none_or(FetchQueue::events_waiting) {
                break;
            }
            match consumer.poll(Duration::ZERO) {
                None => {}
                // A partition librdkafka did not route to the fetch queue: its messages come
                // here. Sent before the next event is served, for the same order.
                Some(Ok(m)) => {
                    let Some(topic_index) = topics.index(m.topic()) else { continue };
                    let p = Partition { topic_index, number: m.partition() };
                    if !context.skipped(p, m.offset()) {
                        context.decode(p, m.offset(), m.payload().unwrap_or_default(), &mut batch);
                    }
                    break;
                }
                Some(Err(RdError::PartitionEOF(_))) => {}
                Some(Err(e)) => errors.push(e),
            }
        }
        errors.append(&mut context.fetch_errors.lock().expect("fetch errors lock"));
        // Then the messages: waiting briefly for the first when there is nothing to send, then
        // whatever else is already fetched.
        let wait = if batch.is_empty() && errors.is_empty() { POLL_WAIT } else { Duration::ZERO };
        context.read_fetched(wait, &mut batch, &mut errors);
        for e in errors.drain(..) {
            if !matches!(e, RdError::PartitionEOF(_)) {
                watch.error(consumer, keeper, &e);
            }
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.blocking_send(SourceEvent::Batch(full)).is_err() {
                return;
            }
        }
    }
}

/// How often a member whose subscribed topic went missing asks the broker whether it is back.
const TOPIC_BACK_EVERY: Duration = Duration::from_millis(500);
/// How long after the topic is back the member leaves and joins: past the next periodic metadata
/// refresh (`topic.metadata.refresh.interval.ms`, 2 s), from which librdkafka's group code takes
/// the topics it assigns.
const TOPIC_SEEN_AFTER: Duration = Duration::from_millis(2500);

/// Whether the broker has every subscribed topic, each with partitions (asked now, not from
/// librdkafka's cache, whose answer also refreshes the cache for the join that follows).
/// `None` when the broker does not answer.
fn topics_exist(consumer: &BaseConsumer<ConsumeContext>, topics: &Topics) -> Option<bool> {
    let mut all = true;
    for (name, _) in &topics.0 {
        let m = consumer.fetch_metadata(Some(name), Duration::from_secs(1)).ok()?;
        all &= m.topics().iter().any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty());
    }
    Some(all)
}

/// Leaves the group and joins it again (`group_watch`, or a topic back after it went missing): the leave starts a new generation, in
/// which the coordinator assigns every partition to the members there are. This member's
/// partitions are revoked first, through the rebalance callback, as in any rebalance.
fn rejoin(consumer: &BaseConsumer<ConsumeContext>, topics: &Topics) {
    let names: Vec<&str> = topics.0.iter().map(|(name, _)| name.as_str()).collect();
    consumer.unsubscribe();
    if let Err(e) = consumer.subscribe(&names) {
        tracing::warn!(error = %e, "cannot leave and join the consumer group again");
    }
}

/// The cursor value that says a drain needs nothing more from a partition: larger than any
/// offset, so that it can never be mistaken for a place to read from.
pub(crate) const CURSOR_DONE: i64 = i64::MAX;

/// Reads partitions again for drains that fell behind, and keeps their cursors.
///
/// A drain's cursor is kept by Kafka as the committed offset of the drain's own consumer group,
/// `{group_id}.cursor.{name}`, one offset per partition: a member of the logshuttle group that
/// takes the partition over (after a rebalance or a `kill -9`) finds it there. A group is only
/// ever used for commits and offset fetches through manual assignment; it never has members.
#[derive(Debug)]
pub(crate) struct KafkaCatchUp {
    config: KafkaConfig,
    topics: Arc<Topics>,
}

impl KafkaCatchUp {
    pub(crate) fn new(k: &KafkaConfig) -> Self {
        KafkaCatchUp { config: k.clone(), topics: Arc::new(Topics::new(k)) }
    }

    fn prefix(&self) -> String {
        format!("{}.cursor.", self.config.group_id)
    }

    fn consumer(&self, name: &str) -> Result<BaseConsumer, BusError> {
        self.consumer_in(&format!("{}{name}", self.prefix()))
    }

    /// A reader's client in consumer group `group`, which it only ever commits to (a
    /// cursor's) or never uses (a log session's): partitions are assigned by hand.
    fn consumer_in(&self, group: &str) -> Result<BaseConsumer, BusError> {
        base_config(&self.config)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", ISOLATION_LEVEL)
            // An offset the topic no longer holds reads from the oldest it does; the reader
            // tells the lines in between apart by the low watermark.
            .set("auto.offset.reset", "earliest")
            // One reader holds at most about a mebibyte of fetched messages, so that many drains
            // catching up at once stay within a known amount of memory.
            .set("queued.max.messages.kbytes", "1024")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "1048576")
            .set("fetch.wait.max.ms", fetch_wait_max(&self.config))
            .create()
            .map_err(|e| BusError::Config(e.to_string()))
    }

    fn list(&self, offsets: &[(Partition, i64)]) -> Result<TopicPartitionList, BusError> {
        let mut list = TopicPartitionList::new();
        for &(p, next) in offsets {
            let topic = &self.topics.0[usize::from(p.topic_index)].0;
            list.add_partition_offset(topic, p.number, Offset::Offset(next))
                .map_err(|e| BusError::Config(e.to_string()))?;
        }
        Ok(list)
    }

    /// Opens a reader of `partition` from offset `from` for the cursor `name`. Blocking.
    pub(crate) fn open(&self, name: &str, partition: Partition, from: i64) -> Result<KafkaReader, BusError> {
        let consumer = self.consumer(name)?;
        let topic = self.topics.0[usize::from(partition.topic_index)].0.clone();
        let (low, _) = consumer
            .fetch_watermarks(&topic, partition.number, START_TIMEOUT)
            .map_err(|e| broker_err(&self.config, "cannot read watermarks", e))?;
        self.reader(consumer, partition, from.max(low), low)
    }

    /// A reader of `partition` through `consumer` from offset `next`, the partition's oldest
    /// kept message being `oldest`, assigned and ready to read. Blocking.
    fn reader(
        &self,
        consumer: BaseConsumer,
        partition: Partition,
        next: i64,
        oldest: i64,
    ) -> Result<KafkaReader, BusError> {
        let mut reader = KafkaReader {
            consumer,
            topics: self.topics.clone(),
            partition,
            next,
            oldest,
            start: next,
            rewind: REWIND,
            checked: false,
            config: self.config.clone(),
        };
        reader.assign()?;
        Ok(reader)
    }

    /// Opens a reader of the partition of Wharf's topic that producers put `app`'s lines on
    /// ([`partition_of`] the topic's partition count), `back` messages before the partition's
    /// end (not before its oldest kept message); returns it with that end, the offset of the
    /// next message to be written when it opened. For a log session: the reader is in no
    /// group and saves no cursor. Blocking.
    pub(crate) fn open_tail(&self, app: &str, back: i64) -> Result<(KafkaReader, i64), BusError> {
        let consumer = self.consumer_in(&format!("{}.sessions", self.config.group_id))?;
        let topic = self.topics.0[0].0.clone();
        let metadata = consumer
            .fetch_metadata(Some(&topic), START_TIMEOUT)
            .map_err(|e| broker_err(&self.config, "cannot read metadata", e))?;
        let count = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
        if count == 0 {
            return Err(broker_err(&self.config, "cannot read metadata", format!("topic {topic} has no partitions")));
        }
        let partition = Partition { topic_index: 0, number: partition_of(app.as_bytes(), count as i32) };
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition.number, START_TIMEOUT)
            .map_err(|e| broker_err(&self.config, "cannot read watermarks", e))?;
        let reader = self.reader(consumer, partition, (high - back.max(0)).max(low), low)?;
        Ok((reader, high))
    }

    /// Saves cursor `name`'s offsets (`None`: nothing more needed) through a client of its own.
    /// Blocking.
    pub(crate) fn save(&self, name: &str, cursors: &[(Partition, Option<i64>)]) -> Result<(), BusError> {
        let consumer = self.consumer(name)?;
        save(&self.config, &consumer, &self.list(&done_or(cursors))?)
    }

    /// Every saved cursor that still needs lines of one of `partitions` (its name, the
    /// partition, and the offset to read from), and the group's committed offset of each of
    /// them that has one. Blocking: it lists the groups, then fetches the offsets of those
    /// that are cursors.
    pub(crate) fn cursors(&self, partitions: &[Partition]) -> Result<crate::SavedCursors, BusError> {
        let mut saved = crate::SavedCursors::default();
        if partitions.is_empty() {
            return Ok(saved);
        }
        let prefix = self.prefix();
        let wanted = self.list(&partitions.iter().map(|&p| (p, 0)).collect::<Vec<_>>())?;
        let fetch = |consumer: &BaseConsumer| {
            let offsets = consumer
                .committed_offsets(wanted.clone(), START_TIMEOUT)
                .map_err(|e| broker_err(&self.config, "cannot read committed offsets", e))?;
            let mut found = Vec::new();
            for e in offsets.elements() {
                if let (Some(topic_index), Offset::Offset(next)) = (self.topics.index(e.topic()), e.offset()) {
                    found.push((Partition { topic_index, number: e.partition() }, next));
                }
            }
            Ok::<_, BusError>(found)
        };
        let group = base_config(&self.config)
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .create::<BaseConsumer>()
            .map_err(|e| BusError::Config(e.to_string()))?;
        saved.committed = fetch(&group)?;
        let groups = group
            .fetch_group_list(None, START_TIMEOUT)
            .map_err(|e| broker_err(&self.config, "cannot list groups", e))?;
        let names: Vec<String> =
            groups.groups().iter().filter_map(|g| g.name().strip_prefix(&prefix).map(str::to_owned)).collect();
        for name in names {
            for (p, next) in fetch(&self.consumer(&name)?)? {
                if next != CURSOR_DONE && next >= 0 {
                    saved.cursors.push((name.clone(), p, next));
                }
            }
        }
        Ok(saved)
    }
}

/// The partition, of `partitions`, that librdkafka's `consistent_random` partitioner (the
/// producer's, [`KafkaPublisher::new`]) puts a message with key `key` on: the key's CRC-32
/// (IEEE 802.3, reflected, as zlib's and librdkafka's `rd_crc32`) modulo the partition count.
/// Java clients hash keys with murmur2 instead; Wharf's producers are all librdkafka.
pub(crate) fn partition_of(key: &[u8], partitions: i32) -> i32 {
    (crc32(key) % partitions.max(1) as u32) as i32
}

/// CRC-32 as zlib computes it (polynomial 0xEDB88320, reflected, inverted in and out); one key
/// per log session, so bit by bit rather than by table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// `None` as [`CURSOR_DONE`].
fn done_or(cursors: &[(Partition, Option<i64>)]) -> Vec<(Partition, i64)> {
    cursors.iter().map(|&(p, c)| (p, c.unwrap_or(CURSOR_DONE))).collect()
}

fn save(k: &KafkaConfig, consumer: &BaseConsumer, list: &TopicPartitionList) -> Result<(), BusError> {
    consumer.commit(list, CommitMode::Sync).map_err(|e| broker_err(k, "cannot save a drain's cursor", e))
}

/// One partition read again from an offset, outside the consumer group.
pub(crate) struct KafkaReader {
    consumer: BaseConsumer,
    topics: Arc<Topics>,
    partition: Partition,
    next: i64,
    oldest: i64,
    /// Where the assignment starts: `rewind` messages before `next` (see [`REWIND`]).
    start: i64,
    rewind: i64,
    /// Whether the first message read showed the rewind was far enough.
    checked: bool,
    config: KafkaConfig,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader").field("partition", &self.partition).field("next", &self.next).finish()
    }
}

impl KafkaReader {
    /// Assigns the partition from `rewind` messages before `next`.
    fn assign(&mut self) -> Result<(), BusError> {
        self.start = (self.next - self.rewind).max(self.oldest);
        let topic = &self.topics.0[usize::from(self.partition.topic_index)].0;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, self.partition.number, Offset::Offset(self.start))
            .map_err(|e| BusError::Config(e.to_string()))?;
        self.consumer.assign(&list).map_err(|e| broker_err(&self.config, "cannot assign", e))
    }

    /// The offset of the next message to read.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next
    }

    /// The oldest offset the partition held when the reader opened.
    pub(crate) fn oldest(&self) -> i64 {
        self.oldest
    }

    /// Up to `max` messages (and about `max_bytes` of payload), decoded; waits up to 100 ms
    /// for the first. Undecodable messages are skipped (the live consumer counts them).
    pub(crate) fn read(&mut self, max: usize, max_bytes: usize) -> Vec<Received> {
        let mut out = Vec::new();
        let (mut n, mut bytes) = (0, 0);
        let mut timeout = Duration::from_millis(100);
        while n < max.max(1) && bytes < max_bytes {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    if !self.checked {
                        self.checked = true;
                        // The broker skipped past the offset asked for: a producer's batch
                        // longer than the rewind. Start further back.
                        if m.offset() > self.next && self.start > self.oldest {
                            self.rewind = self.rewind.saturating_mul(8);
                            self.checked = false;
                            if let Err(e) = self.assign() {
                                tracing::warn!(error = %e, "kafka catch-up cannot rewind further");
                            }
                            break;
                        }
                    }
                    if m.offset() < self.next {
                        continue;
                    }
                    let payload = m.payload().unwrap_or_default();
                    n += 1;
                    bytes += payload.len();
                    self.next = m.offset() + 1;
                    let position = Some(Position { partition: self.partition, offset: m.offset() });
                    let _ = self.topics.decode_into(self.partition.topic_index, payload, position, &mut out);
                }
                Some(Err(RdError::PartitionEOF(_))) => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, partition = ?self.partition, "kafka catch-up read failed");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        out
    }

    /// Saves the cursor of this reader's partition: the offset to read from after a restart or
    /// a rebalance, or `None` when the drain needs nothing more from it.
    pub(crate) fn save(&self, k: &KafkaCatchUp, cursor: Option<i64>) -> Result<(), BusError> {
        save(&k.config, &self.consumer, &k.list(&done_or(&[(self.partition, cursor)]))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC-32 check values (the catalogue's "123456789", and zlib's for other inputs), and
    /// the partitions they give. That librdkafka's producer agrees is checked with a real one by
    /// `tests/fleet.rs` (a session through a member that does not own the app's partition).
    #[test]
    fn keys_hash_as_librdkafka_partitions_them() {
        for (key, crc) in [("", 0), ("123456789", 0xCBF4_3926), ("a", 0xE8B7_BE43)] {
            assert_eq!(crc32(key.as_bytes()), crc, "{key:?}");
        }
        for (key, partitions, want) in [("123456789", 8, 6), ("a", 3, 0), ("a", 7, 4), ("x", 1, 0)] {
            assert_eq!(partition_of(key.as_bytes(), partitions), want, "{key:?} of {partitions}");
        }
    }
}
