//! A Kafka broker restarted under a running Wharf (`wharf serve --kafka`, which produces and
//! consumes), through a real tansu and a real syslog drain.
//!
//! With its data kept (tansu on SQLite, as a Kafka keeps its logs on disk) a restart crashes
//! nothing and loses nothing: lines posted before, during (queued by the producer) and after
//! each restart all reach the drain, each app's first arrivals in order.
//!
//! With its data lost (tansu's in-memory storage: the topic, the offsets and the group are gone)
//! Wharf creates the topic again, and lines posted once it exists again arrive. Lines the
//! producer sent between the broker's return and the topic's re-creation are lost: tansu 0.6.0
//! acknowledges a produce to a topic it does not have (Kafka answers
//! `UNKNOWN_TOPIC_OR_PARTITION` and the producer retries). Those two tests are ignored: librdkafka
//! (2.12.1, and 2.15.0 still) can crash the process with SIGSEGV when tansu answers a fetch for
//! the vanished topic (benches/RESULTS.md, "Fleet drill", finding 3).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use wharf_testkit::numbered;
use wharf_testkit::rfc5424::line_numbers;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
const APP: &str = "api-default";
const LINES: usize = 50;

/// Whether the broker has `topic` with `partitions` partitions.
fn topic_exists(brokers: &str, topic: &str, partitions: usize) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().expect("client");
    client.fetch_metadata(Some(topic), Duration::from_secs(5)).is_ok_and(|m| {
        m.topics().iter().any(|t| t.name() == topic && t.error().is_none() && t.partitions().len() == partitions)
    })
}

/// Waits until the broker has Wharf's topic with its 8 partitions, failing at once (with
/// Wharf's log) if Wharf stops meanwhile.
async fn topic_again(broker: &Tansu, wharf: &mut Wharf) {
    eventually(WAIT, "the topic to exist (again)", || {
        let (brokers, exit) = (broker.brokers(), wharf.exit_status());
        let log = wharf.stderr();
        async move {
            assert_eq!(exit, None, "wharf stopped:\n{log}");
            tokio::task::spawn_blocking(move || topic_exists(&brokers, "wharf-logs", 8)).await.unwrap().then_some(())
        }
    })
    .await;
}

/// Waits until the drain holds every line `0..n`, failing at once (with Wharf's log) if Wharf
/// stops meanwhile; checks first arrivals in order and returns the repeats.
async fn every_line(receiver: &SyslogReceiver, wharf: &mut Wharf, n: usize, what: &str) -> usize {
    let got = eventually(WAIT, what, || {
        let (exit, log) = (wharf.exit_status(), wharf.stderr());
        let got = line_numbers(&receiver.messages());
        async move {
            assert_eq!(exit, None, "wharf stopped:\n{log}");
            (got.iter().collect::<BTreeSet<_>>().len() >= n).then_some(got)
        }
    })
    .await;
    numbered::check_all_in_order(what, &got, n)
}

/// `wharf serve --kafka` on `broker`, with the app and a drain.
async fn wharf_with_drain(broker: &Tansu, dir: &TempDir) -> (Wharf, SyslogReceiver) {
    let env = [("WHARF_LOGSHUTTLE__RECONNECT_MIN", "20ms"), ("WHARF_LOGSHUTTLE__RECONNECT_MAX", "200ms")];
    let wharf = Wharf::serve_with(WHARF, &["--kafka", &broker.brokers()], &dir.path().join("data"), &env).await;
    wharf.api.create_app(APP, &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    wharf.api.expect("POST", &format!("/apps/{APP}/log-drains"), json!({"url": receiver.url()}), 201).await;
    (wharf, receiver)
}

/// Needs the tansu with SQLite storage under `~/.cargo/tansu-sqlite` (./scripts/test installs it).
#[tokio::test]
async fn a_broker_restarted_with_its_data_crashes_nothing_and_loses_nothing() {
    const RESTARTS: usize = 3;
    let dir = TempDir::new("broker-restart-kept");
    let mut broker = Tansu::start_keeping(&dir.path().join("tansu.db")).await;
    let (mut wharf, receiver) = wharf_with_drain(&broker, &dir).await;
    let mut posted = 0;
    for restart in 0..RESTARTS {
        numbered::post(&wharf.api, APP, posted..posted + LINES, 100).await;
        posted += LINES;
        every_line(&receiver, &mut wharf, posted, &format!("the lines posted before restart {restart}")).await;
        // Lines posted while the broker is down wait in the producer's queue.
        broker.stop().await;
        numbered::post(&wharf.api, APP, posted..posted + LINES, 100).await;
        posted += LINES;
        broker.start_again().await;
    }
    numbered::post(&wharf.api, APP, posted..posted + LINES, 100).await;
    posted += LINES;
    let repeats = every_line(&receiver, &mut wharf, posted, "every line, after the last restart").await;
    eprintln!("{RESTARTS} broker restarts with the data kept: {posted} lines, none lost, {repeats} repeats");
}

/// Ignored: librdkafka can crash Wharf with SIGSEGV right after the restart (see the file's
/// doc comment); run with `--ignored`. It fails when `TopicKeeper` does nothing.
#[tokio::test]
#[ignore = "librdkafka can crash wharf (SIGSEGV) when tansu answers a fetch for a vanished topic"]
async fn a_topic_lost_by_the_broker_is_created_again_while_wharf_runs() {
    let mut broker = Tansu::start().await;
    let dir = TempDir::new("topic-again");
    let mut wharf = Wharf::serve_with(WHARF, &["--kafka", &broker.brokers()], &dir.path().join("data"), &[]).await;
    topic_again(&broker, &mut wharf).await;
    broker.restart().await;
    topic_again(&broker, &mut wharf).await;
    assert!(wharf.stderr().contains("kafka topic missing; creating it again"), "{}", wharf.stderr());
}

/// Ignored for the same crash. Each round waits for the topic to be created again before it
/// posts: what was produced before that is lost on tansu (see the file's doc comment).
#[tokio::test]
#[ignore = "librdkafka can crash wharf (SIGSEGV) when tansu answers a fetch for a vanished topic"]
async fn after_a_broker_that_lost_its_data_the_topic_comes_back_and_delivery_resumes() {
    const RESTARTS: usize = 3;
    let mut broker = Tansu::start().await;
    let dir = TempDir::new("broker-restart-lost");
    let (mut wharf, receiver) = wharf_with_drain(&broker, &dir).await;
    for restart in 0..=RESTARTS {
        numbered::post(&wharf.api, APP, restart * LINES..(restart + 1) * LINES, 100).await;
        every_line(&receiver, &mut wharf, (restart + 1) * LINES, &format!("the lines posted after restart {restart}"))
            .await;
        if restart < RESTARTS {
            broker.restart().await;
            topic_again(&broker, &mut wharf).await;
        }
    }
}
