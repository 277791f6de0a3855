//! `[kafka]`: the Kafka log bus: brokers, Wharf's topic and consumer group, how long a fetch may
//! wait, and the Akkeris topics read beside Wharf's own.

use serde::{Deserialize, Serialize};

use wharf_domain::names::Hostname;
use wharf_domain::units::{ByteSize, HumanDuration};

/// The Kafka log bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` separated by commas.
    pub brokers: String,
    /// The topic of log events; created at start when missing.
    pub topic: String,
    /// Partitions of the topic when Wharf creates it.
    pub partitions: u32,
    /// Replication factor of the topic when Wharf creates it.
    pub replication_factor: u16,
    /// The logshuttles' consumer group.
    pub group_id: String,
    /// How often the logshuttle commits the offsets every drain has taken responsibility for.
    pub commit_interval: HumanDuration,
    /// The longest a broker may hold one of the logshuttle's fetches while it has no new lines
    /// (librdkafka's `fetch.wait.max.ms`), for the group's consumer and the catch-up readers;
    /// 1 ms to 10 s. A Kafka broker answers as soon as a line arrives, so
    /// there this only sets how many empty fetches an idle consumer sends (1,000 / this, a
    /// second, per broker). Some Kafka-protocol brokers (tansu 0.6) hold every fetch for about
    /// this long (half of it from 250 ms up) even when lines are waiting, so there it is added
    /// to every line's delivery time: librdkafka's default of 500 ms made lines about 400 ms
    /// late (benches/RESULTS.md, logshuttle run 8).
    pub fetch_wait_max: HumanDuration,
    /// The most bytes of log events (keys and payloads) a producer holds to send again after a
    /// delivery failure librdkafka does not retry (a broker answering `UNKNOWN_SERVER_ERROR`
    /// while it shuts down, a topic gone with its broker's data). An event that fails while the
    /// buffer is full is dropped and counted (`wharf_bus_kafka_events_dropped_total`); the
    /// oldest are kept. 64 MiB by default: about 130,000 access lines; 0 sends nothing again.
    pub resend_buffer: ByteSize,
    /// Akkeris' per-space topics of fluentd/Kubernetes JSON lines to read as well. A topic's
    /// name is its space; the container name is the app (or `app--type`).
    pub akkeris_app_topics: Vec<String>,
    /// Akkeris' topic of build-log JSON (`{"build", "job", "message", "metadata": "app-space"}`).
    pub akkeris_build_topic: Option<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "wharf-logs".into(),
            partitions: 8,
            replication_factor: 1,
            group_id: "wharf-logshuttle".into(),
            commit_interval: HumanDuration::secs(1),
            fetch_wait_max: HumanDuration::millis(50),
            resend_buffer: ByteSize(64 << 20),
            akkeris_app_topics: Vec::new(),
            akkeris_build_topic: None,
        }
    }
}

impl KafkaConfig {
    /// Every topic to read, Wharf's own first, then the Akkeris app topics, then the build topic.
    pub fn topics(&self) -> Vec<&str> {
        let mut all = vec![self.topic.as_str()];
        all.extend(self.akkeris_app_topics.iter().map(String::as_str));
        all.extend(self.akkeris_build_topic.as_deref());
        all
    }

    /// A Kafka section with these brokers and defaults for the rest.
    pub fn with_brokers(brokers: impl Into<String>) -> Self {
        KafkaConfig { brokers: brokers.into(), ..KafkaConfig::default() }
    }
}

/// Whether `b` is one bootstrap broker, `host:port` (an IPv6 host in brackets), port not 0.
pub(crate) fn valid_broker(b: &str) -> bool {
    let Some((host, port)) = b.rsplit_once(':') else {
        return false;
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Hostname::try_new(host).is_ok() && port.parse::<u16>().is_ok_and(|p| p > 0)
}
