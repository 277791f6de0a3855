//! The logshuttle's delivery guarantees, through a real Kafka-protocol broker (tansu, started
//! here) and real receivers: HTTPS drains retried with the same frame id, a drain that was
//! down receiving what fit its budget and the exact L10 count of the rest (with catch-up from
//! Kafka turned off; `tests/catch_up.rs` has it on), a hung drain that holds up nobody and
//! leaves what it cannot take in Kafka, a `kill -9` in the middle of a stream that loses no line, and long lines
//! from every Kafka input (Akkeris' fluentd and build topics, Wharf's own) arriving whole in
//! chunks; and a heap without transparent huge pages.
//!
//! Lines enter through `POST /log-events`, the platform components' ingest, with times set
//! by the test so that the notices that quote them can be checked exactly.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::certs::TestCa;
use wharf_testkit::client::{self, Api, Req};
use wharf_testkit::logplex::LogplexReceiver;
use wharf_testkit::numbered;
use wharf_testkit::rfc5424::{SyslogMessage, line_numbers, numbered_line};
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(90);
/// Event times start here and go up a second per line.
const EPOCH: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// Puts lines `range` of `app` on the bus, 500 to a request, line `i` written at `EPOCH + i`.
async fn ingest(api: &Api, app: &str, range: std::ops::Range<usize>, size: usize) {
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(500) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let time = wharf_domain::timestamp::format_seconds(EPOCH + i as i64);
                json!({"app": app, "source": "akkeris/build", "process": "build.1", "time": time, "message": numbered_line(i, size)})
            })
            .collect();
        let out = api.expect("POST", "/log-events", Value::Array(events), 202).await;
        assert_eq!(out["accepted"], chunk.len());
    }
}

/// The value of the metric `name` whose labels include each of `labels` (`key="value"`).
async fn metric(wharf: &Wharf, name: &str, labels: &[&str]) -> Option<u64> {
    let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
    let text = r.text();
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// The consumer lag summed over the partitions of Wharf's topic, once Kafka has reported it.
async fn consumer_lag(wharf: &Wharf) -> Option<i64> {
    let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
    let lags: Vec<i64> = r
        .text()
        .lines()
        .filter(|l| l.starts_with("wharf_logshuttle_consumer_lag{topic=\"wharf-logs\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    (!lags.is_empty()).then(|| lags.iter().sum())
}

/// Adds a drain and waits until the logshuttle runs it (its counters are on `/metrics`);
/// returns its id.
async fn add_drain(wharf: &Wharf, app: &str, url: &str) -> String {
    add_drain_out(wharf, app, url).await["id"].as_str().expect("drain id").to_owned()
}

/// As [`add_drain`], returning the API's answer.
async fn add_drain_out(wharf: &Wharf, app: &str, url: &str) -> Value {
    let out = wharf.api.expect("POST", &format!("/apps/{app}/log-drains"), json!({"url": url}), 201).await;
    let id = out["id"].as_str().expect("drain id").to_owned();
    let label = format!("drain=\"{id}\"");
    eventually(WAIT, "the logshuttle to run the new drain", || async {
        metric(wharf, "wharf_drain_lines_pushed_total", &[&label]).await
    })
    .await;
    out
}

/// Waits until `receiver` holds at least `n` messages, and returns them.
async fn at_least(receiver: &SyslogReceiver, n: usize, what: &str) -> Vec<SyslogMessage> {
    eventually(WAIT, what, || async {
        let msgs = receiver.messages();
        (msgs.len() >= n).then_some(msgs)
    })
    .await
}

#[tokio::test]
async fn https_drains_retry_a_batch_with_its_frame_id_and_drop_what_is_refused() {
    let broker = Tansu::start().await;
    let ca = TestCa::new("HTTPS drain receivers' CA");
    let dir = TempDir::new("https-drains");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let wharf = Wharf::serve_on_kafka(
        WHARF,
        &broker,
        &dir.path().join("data"),
        &[("WHARF_LOGSHUTTLE__TRUSTED_CA", ca_file.to_str().unwrap())],
    )
    .await;
    let api = &wharf.api;
    api.create_app("api-default", &[]).await;

    // One receiver fails three times before it takes the batch, the other refuses the first.
    let flaky = LogplexReceiver::start(&ca, &[500, 503, 429]).await;
    let strict = LogplexReceiver::start(&ca, &[400]).await;
    let flaky_out = add_drain_out(&wharf, "api-default", &flaky.url("user:s3cret", "/logs?token=abc")).await;
    let flaky_id = flaky_out["id"].as_str().unwrap().to_owned();
    let flaky_token = flaky_out["token"].as_str().expect("the drain's token").to_owned();
    let strict_id = add_drain(&wharf, "api-default", &strict.url("", "")).await;
    let (_, listed) = api.call("GET", "/apps/api-default/log-drains", None).await;
    assert!(!listed.to_string().contains("s3cret"), "the drain's password is never shown: {listed}");

    ingest(api, "api-default", 0..5, 40).await;
    // The lines may reach the drain in more than one batch; the first batch is the one retried.
    let delivered = |posts: &[wharf_testkit::logplex::LogplexPost]| -> Vec<usize> {
        posts.iter().filter(|p| p.status == 200).flat_map(|p| line_numbers(&p.messages)).collect()
    };
    let posts = eventually(WAIT, "the flaky receiver to take every line", || async {
        let posts = flaky.posts();
        (delivered(&posts) == [0, 1, 2, 3, 4]).then_some(posts)
    })
    .await;
    let statuses: Vec<u16> = posts.iter().map(|p| p.status).collect();
    assert_eq!(statuses[..4], [500, 503, 429, 200], "retried after 5xx and 429 until accepted");
    let first = &posts[0];
    assert!(!first.messages.is_empty());
    for p in &posts[..4] {
        assert_eq!(p.header("logplex-frame-id"), first.header("logplex-frame-id"), "one frame id across retries");
        assert_eq!(line_numbers(&p.messages), line_numbers(&first.messages), "the same batch on every attempt");
    }
    for p in &posts {
        assert_eq!(p.errors, Vec::<String>::new(), "every frame parses as RFC 5424");
        assert_eq!(p.header("logplex-msg-count"), p.messages.len().to_string());
        assert_eq!(p.header("content-type"), "application/logplex-1");
        assert_eq!(p.header("logplex-drain-token"), flaky_token, "the token the API shows");
        // "user:s3cret" in base64.
        assert_eq!(p.header("authorization"), "Basic dXNlcjpzM2NyZXQ=");
        assert_eq!(p.path, "/logs?token=abc", "the receiver's own query is passed through");
    }
    assert_eq!(first.header("logplex-frame-id").len(), 32);
    let m = &first.messages[0];
    assert_eq!(
        (m.hostname.as_str(), m.app_name.as_str(), m.procid.as_str()),
        ("api-default", "akkeris/build", "build.1")
    );
    assert_eq!(m.timestamp, "2026-01-01T00:00:00.000000Z", "the event's own time");
    let label = format!("drain=\"{flaky_id}\"");
    assert_eq!(metric(&wharf, "wharf_drain_retries_total", &[&label]).await, Some(3));
    assert_eq!(metric(&wharf, "wharf_drain_lines_sent_total", &[&label]).await, Some(5));

    // A refused batch is dropped and counted, not retried; later batches are delivered.
    let strict_label = format!("drain=\"{strict_id}\"");
    let refused = eventually(WAIT, "the strict receiver to refuse a batch", || async {
        strict.posts().first().map(|p| line_numbers(&p.messages))
    })
    .await;
    eventually(WAIT, "the refused batch to be counted", || async {
        let dropped = metric(&wharf, "wharf_drain_lines_dropped_total", &[&strict_label, "reason=\"refused\""]).await;
        (dropped == Some(refused.len() as u64)).then_some(())
    })
    .await;
    let last_error = metric(&wharf, "wharf_drain_last_error_info", &[&strict_label]).await;
    assert_eq!(last_error, Some(1), "the refusal is the drain's last error");
    ingest(api, "api-default", 5..8, 40).await;
    let want: Vec<usize> = (0..8).filter(|i| !refused.contains(i)).collect();
    let posts = eventually(WAIT, "every line not refused at the strict receiver", || async {
        let posts = strict.posts();
        (delivered(&posts) == want).then_some(posts)
    })
    .await;
    assert_eq!(posts[0].status, 400);
    assert!(posts[1..].iter().all(|p| p.status == 200), "only the first batch is refused");
    assert_ne!(posts[0].header("logplex-frame-id"), posts[1].header("logplex-frame-id"));
    assert_eq!(posts[0].header("authorization"), "", "no credentials unless the url has them");
}

#[tokio::test]
async fn a_drain_that_was_down_gets_what_fit_its_budget_and_the_exact_count_of_the_rest() {
    let broker = Tansu::start().await;
    let dir = TempDir::new("drain-down");
    // Without catch-up from Kafka (logplex's way): past the budget the oldest lines go.
    let env = [("WHARF_LOGSHUTTLE__DRAIN_BUFFER_LINES", "50"), ("WHARF_LOGSHUTTLE__CATCH_UP", "false")];
    let wharf = Wharf::serve_on_kafka(WHARF, &broker, &dir.path().join("data"), &env).await;
    wharf.api.create_app("api-default", &[]).await;
    // Nothing listens at the drain's address until the receiver comes up.
    let addr: SocketAddr = format!("127.0.0.1:{}", wharf_testkit::free_port()).parse().unwrap();
    let id = add_drain(&wharf, "api-default", &format!("syslog+tcp://{addr}")).await;
    let label = format!("drain=\"{id}\"");

    ingest(&wharf.api, "api-default", 0..80, 40).await;
    eventually(WAIT, "the 30 lines beyond the budget to be dropped", || async {
        let dropped = metric(&wharf, "wharf_drain_lines_dropped_total", &[&label, "reason=\"overflow\""]).await;
        (dropped == Some(30)).then_some(())
    })
    .await;
    // The lines overflow on arrival, while the first failed connection may still be counted.
    eventually(WAIT, "the failed connections to be counted", || async {
        (metric(&wharf, "wharf_drain_errors_total", &[&label]).await? >= 1).then_some(())
    })
    .await;
    // What was put on the log bus is counted where an operator looks (and so would a drop be).
    assert!(metric(&wharf, "wharf_bus_events_published_total", &[]).await.unwrap() >= 80, "the posted lines");
    assert_eq!(metric(&wharf, "wharf_bus_events_dropped_total", &[]).await, Some(0));
    // Nothing is committed past what the drain still holds: the 50 lines in its buffer are
    // Kafka's lag (the 30 dropped ones are taken care of).
    eventually(WAIT, "the consumer lag to show the undelivered lines", || async {
        (consumer_lag(&wharf).await == Some(50)).then_some(())
    })
    .await;

    let receiver = SyslogReceiver::tcp_at(addr).await;
    let msgs = at_least(&receiver, 51, "the notice and the 50 lines that fit").await;
    assert_eq!(
        msgs[0].text(),
        "Error L10 (output buffer overflow): 30 messages dropped since 2026-01-01T00:00:00.000000Z."
    );
    assert_eq!((msgs[0].hostname.as_str(), msgs[0].app_name.as_str()), ("api-default", "akkeris/logshuttle"));
    assert_eq!(line_numbers(&msgs[1..]), (30..80).collect::<Vec<_>>(), "the newest 50, in order");
    assert_eq!(receiver.errors(), Vec::<String>::new());
    ingest(&wharf.api, "api-default", 80..81, 40).await;
    let msgs = at_least(&receiver, 52, "a later line").await;
    assert_eq!(line_numbers(&msgs[51..]), [80], "the notice is sent once");
    eventually(WAIT, "the lag to fall to zero once everything is delivered", || async {
        (consumer_lag(&wharf).await == Some(0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hung_drain_holds_up_no_other_drain() {
    const LINES: usize = 20_000;
    let broker = Tansu::start().await;
    let dir = TempDir::new("hung-drain");
    let wharf = Wharf::serve_on_kafka(
        WHARF,
        &broker,
        &dir.path().join("data"),
        &[("WHARF_LOGSHUTTLE__DRAIN_BUFFER_BYTES", "1MiB")],
    )
    .await;
    let api = &wharf.api;
    api.create_app("busy-default", &[]).await;
    api.create_app("other-default", &[]).await;
    let (hung, same_app, other_app) =
        (SyslogReceiver::tcp_never_reading().await, SyslogReceiver::tcp().await, SyslogReceiver::tcp().await);
    let hung_id = add_drain(&wharf, "busy-default", &hung.url()).await;
    add_drain(&wharf, "busy-default", &same_app.url()).await;
    add_drain(&wharf, "other-default", &other_app.url()).await;

    // 20 MB for the busy app, far more than the hung receiver's socket buffers and its drain's
    // 1 MiB budget hold, sent as fast as the healthy receivers take it: each batch once the
    // last one has arrived at both.
    for (i, start) in (0..LINES).step_by(500).enumerate() {
        ingest(api, "busy-default", start..start + 500, 1000).await;
        ingest(api, "other-default", i * 25..(i + 1) * 25, 100).await;
        at_least(&same_app, start + 500, "the batch at the busy app's other drain").await;
        at_least(&other_app, (i + 1) * 25, "the batch at the other app's drain").await;
    }
    let msgs = same_app.messages();
    assert_eq!(line_numbers(&msgs), (0..LINES).collect::<Vec<_>>(), "all of them, in order");
    assert_eq!(line_numbers(&other_app.messages()), (0..1000).collect::<Vec<_>>());
    // Past its budget the hung drain leaves its lines in Kafka (it is behind, catching up as
    // room allows) rather than dropping them.
    let label = format!("drain=\"{hung_id}\"");
    eventually(WAIT, "the hung drain to fall behind", || async {
        (metric(&wharf, "wharf_drain_partitions_behind", &[&label]).await == Some(1)).then_some(())
    })
    .await;
    let dropped = metric(&wharf, "wharf_drain_lines_dropped_total", &[&label, "reason=\"overflow\""]).await;
    assert_eq!(dropped, Some(0));
    assert!(hung.messages().is_empty());
}

#[tokio::test]
async fn kill_9_in_the_middle_of_a_stream_loses_no_line() {
    const LINES: usize = 5_000;
    let broker = Tansu::start().await;
    let dir = TempDir::new("kill-9");
    let data = dir.path().join("data");
    let wharf = Wharf::serve_on_kafka(WHARF, &broker, &data, &[]).await;
    wharf.api.create_app("api-default", &[]).await;
    // A receiver slower than the stream, so that the kill lands while lines are on their way.
    let addr: SocketAddr = format!("127.0.0.1:{}", wharf_testkit::free_port()).parse().unwrap();
    let receiver = SyslogReceiver::tcp_throttled_at(addr).await;
    add_drain(&wharf, "api-default", &format!("syslog+tcp://{addr}")).await;
    ingest(&wharf.api, "api-default", 0..LINES, 1000).await;
    at_least(&receiver, 500, "the stream to be under way").await;

    let status = std::process::Command::new("kill").args(["-9", &wharf.pid()]).status().unwrap();
    assert!(status.success());
    let (clean, _) = wharf.wait_exit().await;
    assert!(!clean, "killed, not stopped");
    let at_kill = receiver.messages().len();
    assert!(at_kill < LINES, "the kill landed in the middle of the stream ({at_kill} of {LINES} delivered)");

    let again = Wharf::serve_on_kafka(WHARF, &broker, &data, &[]).await;
    let msgs = eventually(WAIT, "every line after the restart", || async {
        let msgs = receiver.messages();
        let mut seen = line_numbers(&msgs);
        seen.sort_unstable();
        seen.dedup();
        (seen.len() == LINES).then_some(msgs)
    })
    .await;
    let got = line_numbers(&msgs);
    assert_eq!(got.len(), msgs.len(), "every message is a line");
    let duplicates = got.len() - LINES;
    eprintln!("kill -9 after {at_kill} of {LINES} lines: every line delivered, {duplicates} delivered twice");
    assert_eq!(receiver.errors(), Vec::<String>::new(), "no torn frame reaches the receiver as a message");
    drop(again);
}

#[tokio::test]
async fn log_events_refuses_a_bad_batch_whole() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    api.create_app("api-default", &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    add_drain(&wharf, "api-default", &receiver.url()).await;
    let good = json!({"app": "api-default", "source": "akkeris/build", "message": "kept"});
    for (body, status, says) in [
        (
            json!([good, {"app": "nope-default", "source": "s", "message": "m"}]),
            422,
            "event 1: no app \"nope-default\"",
        ),
        (json!([good, {"app": "api-default", "source": "a b", "message": "m"}]), 422, "event 1: source must be"),
        (
            json!([good, {"app": "api-default", "source": "s", "message": "m", "level": 3}]),
            422,
            "unknown field `level`",
        ),
        (json!([good, {"app": "api-default", "source": "s", "stream": "out", "message": "m"}]), 422, "stream is"),
        (json!([good, {"app": "api-default", "source": "s", "time": "today", "message": "m"}]), 422, "RFC 3339"),
        (json!([]), 422, "at least one event"),
        (json!(good), 422, "invalid type: the body is an object, expected a JSON array"),
        (Value::Array(vec![good.clone(); 1001]), 422, "at most 1000 events"),
    ] {
        let out = api.expect("POST", "/log-events", body, status).await;
        let message = out["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
    let anonymous = Api { addr: api.addr, token: None };
    let (status, _) = anonymous.call("POST", "/log-events", Some(json!([good]))).await;
    assert_eq!(status, 401, "ingest needs the token");

    // Nothing of the refused batches reached the bus: the next line is the first delivered.
    let mut last = good.clone();
    last["message"] = json!("the only line");
    api.expect("POST", "/log-events", json!([last]), 202).await;
    let msgs = at_least(&receiver, 1, "the accepted line").await;
    assert_eq!(msgs.iter().map(SyslogMessage::text).collect::<Vec<_>>(), ["the only line"]);
}

/// Wharf's heap asks for no transparent huge pages (`madvise(MADV_HUGEPAGE)`, shown as `hg` in a
/// mapping's `VmFlags`): a huge page is zeroed whole on first touch, which was 43% of the
/// logshuttle's CPU while a thousand drains' buffers grew (benches/RESULTS.md, logshuttle run
/// 10). Checked on a running Wharf that has delivered lines, so its allocator has its arenas.
#[tokio::test]
async fn the_heap_asks_for_no_transparent_huge_pages() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    api.create_app("api-default", &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    add_drain(&wharf, "api-default", &receiver.url()).await;
    let line = json!({"app": "api-default", "source": "akkeris/build", "message": "x".repeat(1000)});
    for _ in 0..10 {
        api.expect("POST", "/log-events", Value::Array(vec![line.clone(); 100]), 202).await;
    }
    at_least(&receiver, 1000, "the lines").await;
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", wharf.pid())).expect("smaps");
    let advised: Vec<&str> =
        smaps.lines().filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "hg")).collect();
    assert!(smaps.contains("VmFlags:"), "this kernel shows no VmFlags");
    assert_eq!(advised, Vec::<&str>::new(), "mappings advised to use huge pages");
}

/// A broker, and Wharf reading Akkeris' app topic `perf` and build topic `akkeris-builds` from
/// it, with the app `api-perf` draining to a TCP syslog receiver. The directory holds Wharf's data.
async fn start_akkeris(name: &str) -> (Tansu, TempDir, Wharf, SyslogReceiver) {
    let broker = Tansu::start().await;
    let dir = TempDir::new(name);
    let env =
        [("WHARF_KAFKA__AKKERIS_APP_TOPICS", r#"["perf"]"#), ("WHARF_KAFKA__AKKERIS_BUILD_TOPIC", "akkeris-builds")];
    let wharf = Wharf::serve_on_kafka(WHARF, &broker, &dir.path().join("data"), &env).await;
    wharf.api.expect("POST", "/spaces", json!({"name": "perf"}), 201).await;
    wharf.api.create_app("api-perf", &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    add_drain(&wharf, "api-perf", &receiver.url()).await;
    (broker, dir, wharf, receiver)
}

#[tokio::test]
async fn akkeris_app_and_build_topics_reach_the_apps_drains() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let (broker, _dir, wharf, receiver) = start_akkeris("akkeris-inputs").await;

    // As fluentd and the build workers write them; Wharf created the topics at start.
    let fluentd = |container: &str, pod: &str, stream: &str, log: &str| {
        json!({
            "log": log, "stream": stream, "time": "2019-07-16T20:05:21.123456789Z", "docker": {"container_id": "c0ffee"},
            "kubernetes": {"namespace_name": "perf", "pod_id": "p1", "pod_name": pod, "container_name": container,
                           "labels": {"name": container}, "host": "node-1"},
            "topic": "perf", "tag": "kubernetes.var.log.containers"
        })
        .to_string()
    };
    let lines = [
        ("perf", fluentd("api", "api-1562910588-cg82f", "stdout", "listening on 5000\n")),
        ("perf", fluentd("api--worker", "api--worker-1562910588-x7k2p", "stderr", "job failed\n")),
        ("perf", "{\"log\": \"not for anyone\"}".to_owned()),
        (
            "akkeris-builds",
            json!({"build": 7, "job": "12", "message": "Step 3/9 : ARG NPM_TOKEN=s3cret", "metadata": "api-perf"})
                .to_string(),
        ),
    ];
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", broker.brokers()).create().expect("producer");
    for (topic, payload) in &lines {
        producer.send(BaseRecord::<str, str>::to(topic).key("api").payload(payload)).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("the broker takes the lines");

    let msgs = at_least(&receiver, 3, "the app's and the build's lines").await;
    let find = |text: &str| msgs.iter().find(|m| m.text().contains(text)).unwrap_or_else(|| panic!("{text}: {msgs:?}"));
    let web = find("listening on 5000");
    assert_eq!(
        (web.pri, web.hostname.as_str(), web.app_name.as_str(), web.procid.as_str(), web.timestamp.as_str()),
        (190, "api-perf", "app", "web.1562910588-cg82f", "2019-07-16T20:05:21.123456Z")
    );
    assert_eq!(web.text(), "listening on 5000", "fluentd's newline is not part of the line");
    let worker = find("job failed");
    assert_eq!((worker.pri, worker.procid.as_str()), (187, "worker.1562910588-x7k2p"), "stderr is severity error");
    let build = find("Step 3/9");
    assert_eq!((build.app_name.as_str(), build.text().as_str()), ("akkeris/build", "Step 3/9 : ARG NPM_TOKEN=..."));
    assert!(msgs.iter().all(|m| !m.text().contains("s3cret")), "build arguments never reach a drain");
    eventually(WAIT, "the malformed line to be counted", || async {
        (metric(&wharf, "wharf_logshuttle_events_undecodable_total", &[]).await == Some(1)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn long_lines_from_every_kafka_input_arrive_whole_in_chunks() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let (broker, _dir, _wharf, receiver) = start_akkeris("long-kafka-lines").await;

    // 25,000 bytes each, of three-byte characters after a one-byte mark, so that a cut at
    // exactly 10,000 bytes would fall inside a character.
    let long = |mark: char| format!("{mark}{}", "\u{20ac}".repeat(8_333));
    let (app, build, own) = (long('a'), long('b'), long('w'));
    let fluentd = json!({"log": format!("{app}\n"), "stream": "stdout",
        "kubernetes": {"pod_name": "api-1562910588-cg82f", "container_name": "api"}})
    .to_string();
    let builds = json!({"message": build, "metadata": "api-perf"}).to_string();
    // Another producer's event on Wharf's own topic, longer than Wharf's inputs write.
    let event = wharf_bus::LogEvent::builder("api-perf", "app").message(own.as_bytes());
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", broker.brokers()).create().expect("producer");
    producer.send(BaseRecord::<str, str>::to("perf").key("api").payload(&fluentd)).expect("queued");
    producer.send(BaseRecord::<str, str>::to("akkeris-builds").key("api").payload(&builds)).expect("queued");
    producer.send(BaseRecord::<str, [u8]>::to("wharf-logs").key("api").payload(&event.encoded()[..])).expect("queued");
    producer.flush(Duration::from_secs(30)).expect("the broker takes the lines");

    let msgs = at_least(&receiver, 9, "three chunks of each line").await;
    assert_eq!(receiver.errors(), Vec::<String>::new());
    for (name, line) in [("fluentd", &app), ("build", &build), ("wharf-logs", &own)] {
        let mark = line.as_bytes()[0];
        // The chunks of one message are consecutive events: the one that starts with the mark,
        // and the two after it.
        let at = msgs.iter().position(|m| m.msg.first() == Some(&mark)).unwrap_or_else(|| panic!("{name}"));
        let mine: Vec<&[u8]> = msgs[at..at + 3].iter().map(|m| m.msg.as_slice()).collect();
        assert!(mine.iter().all(|c| c.len() <= 10_000 && std::str::from_utf8(c).is_ok()), "{name}");
        assert_eq!(mine.concat(), line.as_bytes(), "{name}: the chunks join to the line");
    }
}

/// Opens a log session with `body` and returns its streaming response.
async fn open_session(api: &Api, body: Value) -> (String, http::Response<hyper::body::Incoming>) {
    let session = api.expect("POST", "/apps/api-default/log-sessions", body, 201).await;
    let url = session["logplex_url"].as_str().expect("logplex_url");
    let path = url[url.find("/log-sessions/").expect("session path")..].to_owned();
    let resp = client::send_streaming(api.addr, None, &Req::get(&api.addr.to_string(), &path)).await.unwrap();
    (path, resp)
}

/// Reads a session's stream until a line contains `last`; returns the lines.
async fn lines_until(body: &mut hyper::body::Incoming, last: &str) -> Vec<String> {
    use http_body_util::BodyExt;
    let (mut lines, mut partial) = (Vec::<String>::new(), Vec::new());
    while !lines.last().is_some_and(|l| l.contains(last)) {
        let frame = tokio::time::timeout(WAIT, body.frame()).await.expect("the session streams").unwrap().unwrap();
        partial.extend_from_slice(frame.data_ref().unwrap());
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
            if lines.last().is_some_and(|l| l.contains(last)) {
                break;
            }
        }
    }
    lines
}

/// Reads a session that ends (no `tail`) to its end; returns the lines.
async fn all_lines(body: &mut hyper::body::Incoming) -> Vec<String> {
    use http_body_util::BodyExt;
    let bytes = tokio::time::timeout(WAIT, body.collect()).await.expect("the session ends").unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn log_sessions_filter_on_the_server_tell_a_slow_reader_what_it_missed_and_expire() {
    let dir = TempDir::new("log-sessions");
    let env = [("WHARF_LOGSHUTTLE__SESSION_TTL", "2s")];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    api.create_app("api-default", &[]).await;
    let event = |source: &str, process: &str, message: &str| json!({"app": "api-default", "source": source, "process": process, "message": message});
    api.expect(
        "POST",
        "/log-events",
        json!([
            event("app", "web.1-aaaaa", "web one"),
            event("app", "worker.1-bbbbb", "worker one"),
            event("akkeris/router", "", "router one"),
            event("app", "web.2-ccccc", "web two"),
        ]),
        202,
    )
    .await;

    // History, filtered by source and dyno type on the server. The lines reach the history through
    // the bus after the 202, so a session opened at once may end before them: open until one has.
    let got = eventually(WAIT, "the posted lines in a session's history", || async {
        let (_, mut resp) = open_session(api, json!({"lines": 10, "source": "app", "dyno": "web"})).await;
        let got = all_lines(resp.body_mut()).await;
        got.last().is_some_and(|l| l.contains("web two")).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].ends_with(" api-default app[web.1-aaaaa]: web one"), "{got:?}");
    assert!(got[1].ends_with(" api-default app[web.2-ccccc]: web two"), "{got:?}");

    // A live tail of one dyno sees its new lines and nothing else.
    let (_, mut resp) = open_session(api, json!({"lines": 0, "tail": true, "dyno": "worker.1-bbbbb"})).await;
    api.expect(
        "POST",
        "/log-events",
        json!([event("app", "web.1-aaaaa", "web three"), event("app", "worker.1-bbbbb", "worker three")]),
        202,
    )
    .await;
    let got = lines_until(resp.body_mut(), "worker three").await;
    assert_eq!(got.len(), 1, "{got:?}");

    // A reader that does not read: its session drops what it cannot hold, and says how much.
    let (_, mut slow) = open_session(api, json!({"lines": 0, "tail": true})).await;
    // 10 MB: more than the session's 1,024 lines and the socket buffers between hold.
    const LINES: usize = 10_000;
    ingest(api, "api-default", 0..LINES, 1000).await;
    api.expect("POST", "/log-events", json!([event("app", "web.1-aaaaa", "the end")]), 202).await;
    let got = lines_until(slow.body_mut(), "the end").await;
    let notices: Vec<&String> = got.iter().filter(|l| l.contains("Error L11")).collect();
    assert!(!notices.is_empty(), "a session that fell behind is told so");
    let dropped: usize = notices
        .iter()
        .map(|l| {
            let n = l.split("): ").nth(1).and_then(|r| r.split(' ').next()).expect("a count");
            n.parse::<usize>().expect("a number")
        })
        .sum();
    let shown = got.len() - notices.len();
    assert_eq!(shown + dropped, LINES + 1, "every line is either shown or counted");
    assert!(
        notices[0].contains(" api-default akkeris/logshuttle: Error L11 (tail buffer overflow): "),
        "{}",
        notices[0]
    );

    // A session URL expires.
    let (path, _) = open_session(api, json!({"lines": 1})).await;
    eventually(WAIT, "the session url to expire", || async {
        let r = client::send(api.addr, None, &Req::get(&api.addr.to_string(), &path)).await.ok()?;
        (r.status == 410).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_remote_logshuttle_follows_the_control_api_and_serves_its_sessions() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use wharf_testkit::wharf::WharfLogshuttle;

    let broker = Tansu::start().await;
    let dir = TempDir::new("remote-logshuttle");
    let (api_listen, tails_listen) =
        (format!("127.0.0.1:{}", wharf_testkit::free_port()), format!("127.0.0.1:{}", wharf_testkit::free_port()));
    // The control API runs on its own embedded bus; the remote logshuttle reads Akkeris' topic.
    let public_url = format!("http://{tails_listen}");
    let env =
        [("WHARF_CONTROL_API__LISTEN", api_listen.as_str()), ("WHARF_LOGSHUTTLE__PUBLIC_URL", public_url.as_str())];
    let control = dir.path().join("control");
    let wharf = Wharf::serve_with(WHARF, &[], &control, &env).await;
    wharf.api.create_app("api-default", &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    let drain = wharf.api.expect("POST", "/apps/api-default/log-drains", json!({"url": receiver.url()}), 201).await;

    let read = |name: &str| std::fs::read_to_string(control.join(name)).expect(name).trim().to_owned();
    let (token, secret) = (read("logshuttle-token"), read("session-secret"));
    let env = [
        ("WHARF_LOGSHUTTLE_TOKEN", token.as_str()),
        ("WHARF_SESSION_SECRET", secret.as_str()),
        ("WHARF_LOGSHUTTLE__LISTEN", tails_listen.as_str()),
        ("WHARF_KAFKA__AKKERIS_APP_TOPICS", r#"["default"]"#),
        // A grace far longer than the tail's deadline below: stopping must not need it.
        ("WHARF_LOGSHUTTLE__SHUTDOWN_GRACE", "60s"),
    ];
    let url = format!("http://{api_listen}");
    let remote = WharfLogshuttle::start(WHARF, &url, &broker.brokers(), &dir.path().join("remote"), &env).await;
    let label = format!("drain=\"{}\"", drain["id"].as_str().unwrap());
    eventually(WAIT, "the remote logshuttle to run the drain it follows", || async {
        let r = client::send(remote.addr, None, &Req::get("localhost", "/metrics")).await.ok()?;
        r.text().contains(&label).then_some(())
    })
    .await;

    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", broker.brokers()).create().expect("producer");
    for i in 0..3 {
        let line = json!({"log": format!("remote line {i}\n"), "stream": "stdout",
                          "kubernetes": {"pod_name": "api-1-abcde", "container_name": "api"}})
        .to_string();
        producer.send(BaseRecord::<str, str>::to("default").key("api").payload(&line)).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("the broker takes the lines");
    let msgs = at_least(&receiver, 3, "the lines at the drain").await;
    assert_eq!(
        msgs.iter().map(SyslogMessage::text).collect::<Vec<_>>(),
        ["remote line 0", "remote line 1", "remote line 2"]
    );

    // A log session the control API grants opens at the remote logshuttle, which has the lines.
    let session = wharf.api.expect("POST", "/apps/api-default/log-sessions", json!({"lines": 10}), 201).await;
    let session_url = session["logplex_url"].as_str().unwrap();
    assert!(session_url.starts_with(&public_url), "{session_url}");
    let path = &session_url[public_url.len()..];
    let r = client::send(remote.addr, None, &Req::get("localhost", path)).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text().lines().filter(|l| l.contains(" api-default app[web.1-abcde]: remote line ")).count(),
        3,
        "{}",
        r.text()
    );
    let forged = format!("{path}x");
    assert_eq!(client::send(remote.addr, None, &Req::get("localhost", &forged)).await.unwrap().status, 404);

    // An open tail ends, cleanly, as soon as the remote logshuttle is asked to stop: it does
    // not hold the stop for the server's grace.
    let session = wharf.api.expect("POST", "/apps/api-default/log-sessions", json!({"tail": true}), 201).await;
    let path = session["logplex_url"].as_str().unwrap()[public_url.len()..].to_owned();
    let mut tail = tokio::net::TcpStream::connect(remote.addr).await.unwrap();
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
        tail.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("remote line 2") {
            let mut buf = [0u8; 8192];
            let n = tokio::time::timeout(WAIT, tail.read(&mut buf)).await.expect("the tail's history").unwrap();
            assert!(n > 0, "the tail ended early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let killed = std::process::Command::new("kill").args(["-TERM", &remote.pid()]).status().unwrap();
        assert!(killed.success());
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tail.read_to_end(&mut rest))
            .await
            .expect("the tail ends at SIGTERM, not after the grace")
            .unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.ends_with("0\r\n\r\n"), "the tail's last chunk, not a cut: {rest:?}");
    }
}

#[tokio::test]
async fn a_receiver_that_closed_an_idle_connection_gets_the_next_line_on_a_new_one() {
    use tokio::io::AsyncReadExt;

    /// Reads from `conn` until one whole frame has arrived, and returns its message.
    async fn one_frame(conn: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, conn.read(&mut chunk)).await.expect("a frame").expect("read");
            assert!(n > 0, "the drain closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(f) = wharf_testkit::rfc5424::deframe_octet_counted(&mut buf).unwrap().first() {
                return wharf_testkit::rfc5424::parse(f).unwrap().text();
            }
        }
    }

    let wharf = Wharf::serve(WHARF, &[]).await;
    wharf.api.create_app("api-default", &[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let id = add_drain(&wharf, "api-default", &format!("syslog+tcp://{}", listener.local_addr().unwrap())).await;
    ingest(&wharf.api, "api-default", 0..1, 40).await;
    let (mut first, _) = tokio::time::timeout(WAIT, listener.accept()).await.expect("a connection").unwrap();
    assert!(one_frame(&mut first).await.starts_with("line 000000"));
    // The receiver closes the connection while the drain has nothing to send.
    drop(first);
    ingest(&wharf.api, "api-default", 1..2, 40).await;
    let (mut second, _) = tokio::time::timeout(WAIT, listener.accept()).await.expect("a new connection").unwrap();
    assert!(one_frame(&mut second).await.starts_with("line 000001"));
    let label = format!("drain=\"{id}\"");
    assert_eq!(metric(&wharf, "wharf_drain_retries_total", &[&label]).await, Some(0), "seen closed before writing");
    assert_eq!(metric(&wharf, "wharf_drain_errors_total", &[&label]).await, Some(0));
}

/// A group whose committed offsets are past its partitions' ends, as after a broker that lost
/// its data while a logshuttle kept committing the old topic's offsets into the new group
/// (FE25 F0: the fleet then delivered nothing, for good): the logshuttle resets them to the
/// oldest kept message at its assignment, warns, counts them, and delivers every line.
#[tokio::test]
async fn committed_offsets_past_the_partitions_end_are_reset_and_lines_delivered() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    const PARTITIONS: i32 = 8;
    const APP: &str = "api-default";
    let broker = Tansu::start().await;
    let dir = TempDir::new("offsets-past-the-end");
    // The topic, and the logshuttles' group with offsets far past anything the topic holds.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.brokers()).create().expect("admin");
    let topic = NewTopic::new("wharf-logs", PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.expect("topic created");
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "wharf-logshuttle")
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        offsets.add_partition_offset("wharf-logs", p, Offset::Offset(5_000)).expect("offset");
    }
    tokio::task::spawn_blocking(move || committer.commit(&offsets, CommitMode::Sync))
        .await
        .unwrap()
        .expect("offsets committed");

    let wharf = Wharf::serve_on_kafka(WHARF, &broker, &dir.path().join("data"), &[]).await;
    wharf.api.create_app(APP, &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    add_drain(&wharf, APP, &receiver.url()).await;
    numbered::post(&wharf.api, APP, 0..20, 100).await;
    let got = numbered::all_lines(&receiver, 20, WAIT, "every line, from the reset offsets").await;
    numbered::check_all_in_order(APP, &got, 20);
    let reset = metric(&wharf, "wharf_logshuttle_positions_reset_total", &[]).await;
    assert_eq!(reset, Some(PARTITIONS as u64), "every partition's offset was reset");
    assert!(wharf.stderr().contains("committed offset outside the partition"), "a warning says so");
}
