//! The Kafka transport: a producer keyed by app, and a consumer-group member on its own thread.
//!
//! Events are keyed by app key, so one app's lines land in one partition and stay in order.
//! The consumer runs librdkafka's poll loop on a dedicated thread and hands batches to the async
//! side through a bounded channel; rebalances are reported in the same channel, in order with
//! the batches. Offsets are never committed automatically: the logshuttle commits what every
//! drain has taken responsibility for.

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
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use wharf_config::KafkaConfig;

use crate::{BusError, LogEvent, Partition, Position, Received, SourceEvent, SourceStats};

/// How long to wait for brokers when checking or creating the topic at start.
const START_TIMEOUT: Duration = Duration::from_secs(15);

fn broker_err(k: &KafkaConfig, what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Broker { brokers: k.brokers.clone(), message: format!("{what}: {e}") }
}

fn base_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers).set_log_level(RDKafkaLogLevel::Warning);
    // A topic created again (see `TopicKeeper`) is seen within seconds rather than librdkafka's
    // default five minutes; a consumer only rejoins its group for it after this refresh.
    c.set("topic.metadata.refresh.interval.ms", "2000");
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

/// Creates the topic when it does not exist.
async fn ensure_topic(k: &KafkaConfig, topic: &str) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(k).create().map_err(|e| BusError::Config(e.to_string()))?;
    let topic = topic.to_owned();
    let (admin, exists) = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || {
            let found = admin.inner().fetch_metadata(Some(&topic), START_TIMEOUT).map(|m| {
                m.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            });
            (admin, found)
        }
    })
    .await
    .map_err(|e| BusError::Config(e.to_string()))?;
    if exists.map_err(|e| broker_err(k, "cannot read metadata", e))? {
        return Ok(());
    }
    let new = NewTopic::new(&topic, k.partitions as i32, TopicReplication::Fixed(k.replication_factor.into()));
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

/// Counts delivery failures; librdkafka retries for `message.timeout.ms` before reporting one.
/// A failure because the topic is gone has it created again.
#[derive(Debug)]
struct ProduceContext {
    failed: std::sync::atomic::AtomicU64,
    keeper: Arc<TopicKeeper>,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if TopicKeeper::is_missing(e) {
                self.keeper.missing();
            }
            let n = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per thousand failures: the counter is exact, the log stays readable.
            if n % 1000 == 1 {
                tracing::error!(error = %e, failed_total = n, "log events could not be delivered to kafka");
            }
        }
    }
}

/// Puts events on the topic, keyed by app.
pub(crate) struct KafkaPublisher {
    producer: ThreadedProducer<ProduceContext>,
    topic: String,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher").field("topic", &self.topic).finish()
    }
}

impl KafkaPublisher {
    /// A librdkafka producer for `k.topic` that lingers 5 ms to batch and retries a message for
    /// up to 5 minutes. Errors with [`BusError::Config`] when librdkafka rejects the settings;
    /// it does not contact the brokers.
    pub(crate) fn new(k: &KafkaConfig) -> Result<Self, BusError> {
        let producer = base_config(k)
            // A short linger batches the router's access lines without delaying them noticeably.
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "500000")
            // Keep retrying across a broker restart for up to five minutes before giving up.
            .set("message.timeout.ms", "300000")
            .create_with_context(ProduceContext { failed: Default::default(), keeper: TopicKeeper::new(k) })
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(KafkaPublisher { producer, topic: k.topic.clone() })
    }

    /// Queues an event; false when librdkafka's queue is full or it knows the topic is gone
    /// (which starts creating it again).
    pub(crate) fn send(&self, event: LogEvent) -> bool {
        let record = BaseRecord::to(&self.topic).key(event.app()).payload(&event.encoded()[..]);
        match self.producer.send(record) {
            Ok(()) => true,
            Err((e, _)) => {
                if TopicKeeper::is_missing(&e) {
                    self.producer.context().keeper.missing();
                }
                false
            }
        }
    }

    /// Waits up to `timeout` for queued events to reach the brokers; events still queued after
    /// that are logged as a warning, not returned as an error.
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "kafka producer did not flush in time");
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
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.report(SourceEvent::Revoked(self.topics.partitions(list)));
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

    /// Reads a message of topic `index`: one event, or one per chunk of a long line, all at the
    /// message's offset.
    fn decode(&self, index: u16, payload: &[u8]) -> Result<Vec<LogEvent>, String> {
        let (name, kind) = &self.0[usize::from(index)];
        match kind {
            // Another producer may have put a longer line on the topic than Wharf's own would.
            Kind::Wharf => {
                LogEvent::decode(Bytes::copy_from_slice(payload)).map(LogEvent::into_chunks).map_err(|e| e.to_string())
            }
            Kind::AkkerisApps => crate::akkeris::app_line(payload, name).map_err(|e| e.to_string()),
            Kind::AkkerisBuilds => crate::akkeris::build_line(payload).map_err(|e| e.to_string()),
        }
    }
}

/// A consumer-group member whose poll loop runs on its own thread.
pub(crate) struct KafkaSource {
    rx: mpsc::Receiver<SourceEvent>,
    consumer: Arc<BaseConsumer<ConsumeContext>>,
    topics: Arc<Topics>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let consumer: BaseConsumer<ConsumeContext> = base_config(k)
            .set("group.id", &k.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group starts at the oldest event still kept: nothing produced before the first
            // logshuttle started is skipped.
            .set("auto.offset.reset", "earliest")
            // A logshuttle that died is replaced within seconds rather than the default 45 s.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // Lag per partition, for the metrics.
            .set("statistics.interval.ms", "2000")
            .create_with_context(ConsumeContext {
                tx: tx.clone(),
                topics: topics.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
            })
            .map_err(|e| BusError::Config(e.to_string()))?;
        consumer.subscribe(&k.topics()).map_err(|e| broker_err(k, "cannot subscribe", e))?;
        let consumer = Arc::new(consumer);
        let thread = std::thread::Builder::new()
            .name("kafka-consumer".into())
            .spawn({
                let (consumer, stop, topics) = (consumer.clone(), stop.clone(), topics.clone());
                let keeper = TopicKeeper::new(k);
                move || poll_loop(&consumer, &topics, &tx, &stop, &stats, &keeper)
            })
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(KafkaSource { rx, consumer, topics, stop, thread: Some(thread) })
    }

    /// The next batch (at most 1024 decoded events; undecodable ones are counted in
    /// [`SourceStats::undecodable`] and skipped) or assignment change, in the order the poll
    /// thread saw them; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<SourceEvent> {
        self.rx.recv().await
    }

    /// Commits, for each partition, the offset of the next message to read. With `wait` the call
    /// blocks until the group coordinator confirms; a failed commit (as during a rebalance) is
    /// logged at debug level and left to the next one.
    pub(crate) fn commit(&self, offsets: &[(Partition, i64)], wait: bool) {
        if offsets.is_empty() {
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
            // A commit fails while the group rebalances; the next one covers it.
            tracing::debug!(error = %e, "kafka commit failed");
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_loop(
    consumer: &BaseConsumer<ConsumeContext>,
    topics: &Topics,
    tx: &mpsc::Sender<SourceEvent>,
    stop: &AtomicBool,
    stats: &SourceStats,
    keeper: &Arc<TopicKeeper>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut bad_frames = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Block briefly for the first message, then take whatever else is already fetched.
        let mut timeout = Duration::from_millis(100);
        while batch.len() < BATCH {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    let Some(topic) = topics.index(m.topic()) else {
                        continue;
                    };
                    let partition = Partition { topic_index: topic, number: m.partition() };
                    match topics.decode(topic, m.payload().unwrap_or_default()) {
                        Ok(events) => {
                            let position = Some(Position { partition, offset: m.offset() });
                            batch.extend(events.into_iter().map(|event| Received { event, position }));
                        }
                        Err(e) => {
                            bad_frames += 1;
                            stats.undecodable.fetch_add(1, Ordering::Relaxed);
                            if bad_frames % 1000 == 1 {
                                tracing::warn!(error = %e, topic = m.topic(), partition = m.partition(), offset = m.offset(), bad_frames, "skipping undecodable log event");
                            }
                        }
                    }
                }
                Some(Err(RdError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    // "Subscribed topic not available": the consumer rejoins its group once the
                    // topic exists again and the metadata refresh shows it.
                    if TopicKeeper::is_missing(&e) {
                        keeper.missing();
                    }
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.blocking_send(SourceEvent::Batch(full)).is_err() {
                return;
            }
        }
    }
}
