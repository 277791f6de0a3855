//! Logshuttle benchmark, in one run, on tansu brokers:
//!
//! 1. a raw rdkafka consumer reading the backlog (the limit);
//! 2. Wharf from Kafka to one TCP syslog drain;
//! 3. Wharf from Kafka to 1,000 drains of 1,000 apps;
//! 4. Wharf from Kafka to 1 and to 100 HTTPS drains (logplex-1 POSTs over TLS to a receiver in
//!    the harness);
//! 5. rsyslog relaying the same number of lines from TCP to TCP;
//! 6. rsyslog relaying them from TCP to 1,000 destinations, each app's lines to its own (the
//!    fan-out Wharf's 1,000 drains do), with a queue per destination (isolated, as Wharf's
//!    drains are) and without (every destination run by the main queue's worker).
//!
//! For each: lines/s, MB/s, CPU seconds per million lines (and the kernel's share), lines per
//! receive at the sink (per read for TCP, per POST for HTTPS: how many lines a write carried,
//! roughly), with the ratios to the raw consumer and to rsyslog; and Wharf's memory per idle
//! drain. Wharf cases read a backlog that was produced while Wharf was stopped, so they measure
//! consuming and delivering, not producing.
//!
//!     cargo bench --bench logshuttle -- [--lines N]
//!
//! `WHARF_BENCH_FETCH_WAIT_MAX=500ms` (for example) runs Wharf and the plain consumer with that
//! `kafka.fetch_wait_max` instead of Wharf's default.
//!
//! After its backlog, the 1,000-drains case also gets live lines for five seconds at each of
//! [`LIVE`]'s rates, and the harness prints their delivery latency (p50, p99, max: the line's
//! timestamp, set by the producer, to its arrival at the sink; so it includes the producer's
//! linger and the broker). A plain consumer then gets the same live loads, for comparison: the
//! difference is Wharf's.
//!
//! Wharf runs with `WHARF_LOG=info`, as an operator runs it (the test kit's default turns on
//! debug events for the logshuttle); `WHARF_BENCH_LOG=FILTER` sets another filter.
//!
//! With `WHARF_BENCH_WRAPPER=SCRIPT`, the 1,000-drains case runs `SCRIPT ARGS...` with
//! Wharf's path in `WHARF_BENCH_BIN` instead of Wharf itself (to profile it, for example with a
//! script that runs `exec valgrind --tool=callgrind "$WHARF_BENCH_BIN" "$@"`).
//!
//! With `WHARF_BENCH_PERF=DIR`, `perf stat` counts each Wharf and rsyslog case's system calls
//! by kind, CPU time and context switches over its measured span into `DIR/CASE.txt`;
//! `WHARF_BENCH_PERF_RECORD=1` adds `perf record -g` over the same span, and
//! `WHARF_BENCH_PERF_RECORD=dwarf` the same with DWARF call graphs (callers through code built
//! without frame pointers, such as the vDSO's `clock_gettime`).
//!
//! Side by side in one run: `WHARF_BENCH_BASE=PATH` runs the 1,000-drains case with the Wharf
//! at PATH too (another build, say main's), each on a broker, topic and data directory of its
//! own, alternating, `WHARF_BENCH_PAIRS` times (1 unless set). On a shared machine only such
//! pairs say whether a change helped.
//!
//! `WHARF_BENCH_LIVE=0` leaves out the live loads and their latency (for a run under
//! callgrind).
//!
//! `WHARF_BENCH_CASES=many,one,https,rsyslog-many` (all of them unless set) chooses the cases
//! beside the raw consumer and rsyslog TCP to TCP, which every run measures, as every ratio is
//! against them.
//!
//! Needs tansu (`./scripts/test` installs it) and rsyslog (Debian).

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::json;
use tokio::io::AsyncReadExt;
use wharf_bus::LogEvent;
use wharf_testkit::certs::TestCa;
use wharf_testkit::rsyslog::Rsyslog;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// Drain budgets that hold the whole backlog. A backlog read at Kafka's speed overflows the
/// default budget of a drain that is merely slower than the read; this measures the pipeline,
/// not the budget.
const BIG_BUFFERS: &[(&str, &str)] =
    &[("WHARF_LOGSHUTTLE__DRAIN_BUFFER_LINES", "5000000"), ("WHARF_LOGSHUTTLE__DRAIN_BUFFER_BYTES", "4GiB")];
const TOPIC: &str = "wharf-logs";

/// CPU seconds a process has used in user space and in the kernel, from /proc.
fn cpu_split(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, f)| f.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (ticks(11), ticks(12))
}

/// CPU seconds (user and system) each thread name of a process has used, from /proc: the
/// threads of one name (the runtime's workers, librdkafka's broker threads) summed.
fn cpu_by_thread(pid: &str) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_name };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        let (user, system) = cpu_split(&format!("{pid}/task/{tid}"));
        *by_name.entry(name.trim().to_owned()).or_insert(0.0) += user + system;
    }
    by_name
}

/// Prints, per thread name, the share of `seconds` of wall-clock time its threads were on a
/// CPU between the two samples: a thread near 100% is a serial bound on the rate.
fn print_thread_shares(name: &str, before: &std::collections::BTreeMap<String, f64>, pid: &str, seconds: f64) {
    let after = cpu_by_thread(pid);
    let shares: Vec<String> = after
        .iter()
        .map(|(thread, cpu)| (thread, cpu - before.get(thread).copied().unwrap_or(0.0)))
        .filter(|(_, cpu)| *cpu > 0.0)
        .map(|(thread, cpu)| format!("{thread} {:.0}%", cpu / seconds * 100.0))
        .collect();
    println!("{name}: CPU per thread name over the measured {seconds:.1} s (100% = one core): {}", shares.join(", "));
}

/// Resident memory of a process, in bytes.
fn rss(pid: &str) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// What a receiver counts: octet-counted frames, their bytes, the reads (TCP) or POSTs (HTTPS)
/// they came in, and, while recording, each frame's delivery latency.
#[derive(Default)]
struct Counts {
    frames: AtomicU64,
    bytes: AtomicU64,
    receives: AtomicU64,
    /// While set, each frame's delivery latency (now minus its RFC 5424 timestamp, which the
    /// producer set when it built the line), in microseconds.
    latencies: std::sync::Mutex<Option<Vec<i64>>>,
}

impl Counts {
    /// Counts the complete frames at the start of `buf`; the bytes they take, or `None` when
    /// the framing is broken.
    fn frames_in(&self, buf: &[u8]) -> Option<usize> {
        let mut at = 0;
        let (mut frames, mut bytes) = (0, 0);
        let mut latencies = self.latencies.lock().unwrap();
        while let Some(sp) = buf[at..].iter().position(|&c| c == b' ') {
            let len: usize = std::str::from_utf8(&buf[at..at + sp]).ok()?.parse().ok()?;
            if buf.len() - at - sp - 1 < len {
                break;
            }
            let frame = &buf[at + sp + 1..at + sp + 1 + len];
            if let Some(record) = latencies.as_mut() {
                // `<PRI>1 TIMESTAMP ...`: the timestamp is the second field.
                let ts = frame.split(|&c| c == b' ').nth(1).and_then(|t| std::str::from_utf8(t).ok());
                if let Some(us) = ts.and_then(wharf_domain::timestamp::parse_micros) {
                    record.push(now_micros() - us);
                }
            }
            at += sp + 1 + len;
            frames += 1;
            bytes += len as u64;
        }
        drop(latencies);
        self.frames.fetch_add(frames, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        Some(at)
    }
}

/// A receiver that counts octet-counted frames and their bytes, on every connection: over TCP
/// (syslog), or as the bodies of HTTPS POSTs (logplex-1).
struct Sink {
    addr: SocketAddr,
    counts: Arc<Counts>,
}

impl Sink {
    /// A TCP syslog receiver.
    async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { continue };
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut filled = 0;
                    loop {
                        let n = match s.read(&mut buf[filled..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        c.receives.fetch_add(1, Ordering::Relaxed);
                        filled += n;
                        let Some(at) = c.frames_in(&buf[..filled]) else { return };
                        buf.copy_within(at..filled, 0);
                        filled -= at;
                        if filled == buf.len() {
                            buf.resize(buf.len() * 2, 0);
                        }
                    }
                });
            }
        });
        Sink { addr, counts }
    }

    /// An HTTPS logplex-1 receiver with a certificate for `localhost` from `ca`, answering 200
    /// to every POST.
    async fn start_https(ca: &TestCa) -> Sink {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&["localhost"], &[b"http/1.1"]));
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let (c, acceptor) = (c.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(s).await else { return };
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let c = c.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            c.receives.fetch_add(1, Ordering::Relaxed);
                            c.frames_in(&body);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Empty::<bytes::Bytes>::new(),
                            ))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Sink { addr, counts }
    }

    /// Starts recording latencies.
    fn record_latencies(&self) {
        *self.counts.latencies.lock().unwrap() = Some(Vec::new());
    }

    /// Stops recording; the latencies recorded, sorted, in microseconds.
    fn take_latencies(&self) -> Vec<i64> {
        let mut l = self.counts.latencies.lock().unwrap().take().unwrap_or_default();
        l.sort_unstable();
        l
    }

    fn frames(&self) -> u64 {
        self.counts.frames.load(Ordering::Relaxed)
    }

    /// Reads (TCP) or POSTs (HTTPS) the frames came in.
    fn receives(&self) -> u64 {
        self.counts.receives.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.counts.frames.store(0, Ordering::Relaxed);
        self.counts.bytes.store(0, Ordering::Relaxed);
        self.counts.receives.store(0, Ordering::Relaxed);
    }
}

/// The bench's own setting of Wharf's `kafka.fetch_wait_max`, given to the Wharf cases on
/// Kafka (as `WHARF_KAFKA__FETCH_WAIT_MAX`; not inherited by every Wharf, since any `kafka`
/// variable makes the embedded-bus Wharf of the memory measure look for a broker).
const FETCH_WAIT_VAR: &str = "WHARF_BENCH_FETCH_WAIT_MAX";

/// The `fetch.wait.max.ms` Wharf's consumer uses in this run: [`FETCH_WAIT_VAR`] when set,
/// else Wharf's default. The plain consumer uses it too, so that it stays the limit of what a
/// consumer with Wharf's settings gets from the same broker.
fn fetch_wait_max_ms() -> String {
    let configured = std::env::var(FETCH_WAIT_VAR)
        .ok()
        .map(|v| v.parse::<wharf_domain::units::HumanDuration>().expect("WHARF_BENCH_FETCH_WAIT_MAX is a duration"));
    configured.unwrap_or(wharf_config::KafkaConfig::default().fetch_wait_max).0.as_millis().to_string()
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The `p`th percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize).copied().unwrap_or(0)
}

fn message(i: u64) -> Vec<u8> {
    format!(
        "host=api-default.example.com fwd=10.1.2.3 method=GET path=/v1/items/{i} request_id=8a8f7c2e-1b9d-4e0a-9c3f-{i:012} status=200 service=12 connect=1 total=13 bytes=512"
    )
    .into_bytes()
}

/// Produces `n` events for `apps` apps, keyed by app, and waits until the broker has them.
fn produce(brokers: &str, n: u64, apps: &[String]) -> u64 {
    produce_at(brokers, n, apps, None)
}

/// A live load: lines a second, spread over the apps, and the producer's `linger.ms`.
#[derive(Debug, Clone, Copy)]
struct Live {
    rate: u64,
    linger_ms: u64,
}

/// The live loads whose delivery latency the harness prints, each for five seconds: one near
/// the raw consumer's rate (where the producer and tansu alone take about half a second on
/// this testbed, run 6), and a lower one with a short producer linger, where they are fast, so
/// that what is left is Wharf's.
const LIVE: [Live; 2] = [Live { rate: 80_000, linger_ms: 20 }, Live { rate: 20_000, linger_ms: 5 }];

/// `loads`, or none with `WHARF_BENCH_LIVE=0` (under callgrind, say, where Wharf is far too
/// slow for them).
fn live_loads(loads: &[Live]) -> &[Live] {
    if std::env::var("WHARF_BENCH_LIVE").is_ok_and(|v| v == "0") { &[] } else { loads }
}

/// As [`produce`], at most `live.rate` lines a second with its linger when given.
fn produce_at(brokers: &str, n: u64, apps: &[String], live: Option<Live>) -> u64 {
    let began = Instant::now();
    let rate = live.map(|l| l.rate);
    let linger = live.map_or(20, |l| l.linger_ms).to_string();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger)
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut bytes = 0;
    for i in 0..n {
        if let Some(rate) = rate
            && i % 100 == 0
        {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let app = &apps[(i as usize) % apps.len()];
        let event = LogEvent::builder(app, "akkeris/router").message(&message(i));
        bytes += event.encoded().len() as u64;
        loop {
            match producer.send(BaseRecord::<str, [u8]>::to(TOPIC).key(app.as_str()).payload(&event.encoded()[..])) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("the broker takes the backlog");
    bytes
}

struct Row {
    name: String,
    lines: u64,
    /// Reads (TCP) or POSTs (HTTPS) at the sink, when a sink received the lines.
    receives: Option<u64>,
    seconds: f64,
    bytes: u64,
    cpu: f64,
    /// Of `cpu`, the seconds spent in the kernel.
    system: f64,
}

impl Row {
    fn lines_per_sec(&self) -> f64 {
        self.lines as f64 / self.seconds
    }
    fn cpu_per_million(&self) -> f64 {
        self.cpu / self.lines as f64 * 1e6
    }
}

/// Prints latency percentiles (sorted microseconds) as milliseconds.
fn print_latency(what: &str, live: Live, l: &[i64]) {
    println!(
        "{what}: delivery latency of {} lines produced at {} lines/s, producer linger {} ms: p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        l.len(),
        live.rate,
        live.linger_ms,
        percentile(l, 50.0) as f64 / 1000.0,
        percentile(l, 99.0) as f64 / 1000.0,
        l.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

/// The delivery latency of five seconds of `live` lines to a plain consumer in a new group
/// reading from the end: what the producer, the broker and a fetch cost without Wharf, to set
/// beside Wharf's latency. Sorted, in microseconds.
fn raw_latency(brokers: &str, apps: &[String], live: Live) -> Vec<i64> {
    let m = live.rate * 5;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-live-{}-{}", std::process::id(), live.rate))
        .set("fetch.wait.max.ms", fetch_wait_max_ms())
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let waited = Instant::now();
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(waited.elapsed() < Duration::from_secs(120), "the raw consumer got no partition");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    // Joined: its position is the end of the topic once the first fetch settles it.
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let (brokers, apps) = (brokers.to_owned(), apps.to_vec());
    let producer = std::thread::spawn(move || produce_at(&brokers, m, &apps, Some(live)));
    let mut latencies = Vec::with_capacity(m as usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while (latencies.len() as u64) < m && Instant::now() < deadline {
        if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100))
            && let Some(p) = msg.payload()
            && let Ok(e) = LogEvent::decode(bytes::Bytes::copy_from_slice(p))
        {
            latencies.push(now_micros() - e.time_micros());
        }
    }
    producer.join().unwrap();
    latencies.sort_unstable();
    latencies
}

/// Reads the whole backlog with a plain consumer in a new group: the most any consumer gets.
fn raw_consumer(brokers: &str, n: u64) -> Row {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-{}", std::process::id()))
        .set("fetch.wait.max.ms", fetch_wait_max_ms())
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let (mut got, mut bytes) = (0u64, 0u64);
    let mut start = None;
    let cpu0 = cpu_split("self");
    while got < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(Instant::now);
            got += 1;
            bytes += m.payload().map_or(0, |p| p.len() as u64);
        }
    }
    let seconds = start.unwrap().elapsed().as_secs_f64();
    let cpu1 = cpu_split("self");
    let (cpu, system) = (cpu1.0 + cpu1.1 - cpu0.0 - cpu0.1, cpu1.1 - cpu0.1);
    Row { name: "raw rdkafka consumer".into(), lines: got, receives: None, seconds, bytes, cpu, system }
}

/// Starts Wharf on the broker, sets up `apps` apps with a drain each to the sink (`url`, with
/// the sink's port for `PORT`), and stops it again, leaving the data directory configured.
async fn configure(
    broker: Option<&Tansu>,
    data: &std::path::Path,
    sink: Option<(&Sink, &str)>,
    apps: usize,
) -> Vec<String> {
    let kafka = broker.map(|b| b.brokers());
    let args: Vec<&str> = kafka.as_deref().map_or(vec![], |k| vec!["--kafka", k]);
    let wharf = Wharf::serve_in(WHARF, &args, data).await;
    let mut keys = Vec::new();
    for i in 0..apps {
        let (s, _) = wharf.api.call("POST", "/apps", Some(json!({"name": format!("app{i}")}))).await;
        assert_eq!(s, 201);
        if let Some((sink, url)) = sink {
            let url = url.replace("PORT", &sink.addr.port().to_string());
            let path = format!("/apps/app{i}-default/log-drains");
            let (s, body) = wharf.api.call("POST", &path, Some(json!({ "url": url }))).await;
            assert_eq!(s, 201, "{body}");
        }
        keys.push(format!("app{i}-default"));
    }
    let (ok, _) = wharf.terminate().await;
    assert!(ok);
    keys
}

/// A backlog waiting in the topic: lines and their bytes.
#[derive(Debug, Clone, Copy)]
struct Backlog {
    lines: u64,
    bytes: u64,
}

/// Restarts Wharf on a configured data directory (with `env` beside the big buffers) with a
/// backlog waiting, and measures from the first line at the sink to the last; then, for each
/// of `live` over `apps`, prints the delivery latency of lines produced while it runs.
async fn wharf_drains(
    name: &str,
    bin: &str,
    env: &[(&str, &str)],
    (broker, data): (&Tansu, &std::path::Path),
    sink: &Sink,
    backlog: Backlog,
    (apps, live): (&[String], &[Live]),
) -> Row {
    let Backlog { lines: n, bytes } = backlog;
    sink.reset();
    // For profiling: `WHARF_BENCH_WRAPPER=/path/to/script` runs the 1,000-drains case as
    // `script ARGS...` with Wharf's path in `WHARF_BENCH_BIN` (for example a script that runs
    // `exec valgrind --tool=callgrind "$WHARF_BENCH_BIN" "$@"`), so the profile covers exactly
    // the measured run.
    let wrapper = std::env::var("WHARF_BENCH_WRAPPER").ok().filter(|_| name.starts_with("wharf, 1,000 drains"));
    let mut env = [BIG_BUFFERS, env].concat();
    env.push(("WHARF_BENCH_BIN", bin));
    let fetch_wait = format!("{}ms", fetch_wait_max_ms());
    env.push(("WHARF_KAFKA__FETCH_WAIT_MAX", &fetch_wait));
    let log = std::env::var("WHARF_BENCH_LOG").unwrap_or_else(|_| "info".into());
    env.push(("WHARF_LOG", &log));
    let wharf = Wharf::serve_with(wrapper.as_deref().unwrap_or(bin), &["--kafka", &broker.brokers()], data, &env).await;
    let pid = wharf.pid();
    // Counted from before the first line (so with the drains' connections) to the last line
    // of the backlog.
    let perf = Perf::attach(name, &pid);
    let waited = Instant::now();
    while sink.frames() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "{name}: no line in 60 s; wharf logged:\n{}",
            wharf.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (start, cpu0, threads0) = (Instant::now(), cpu_split(&pid), cpu_by_thread(&pid));
    let mut last = (0, Instant::now());
    while sink.frames() < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sink.frames();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            panic!(
                "{name}: the sink has {now} of {n} lines and nothing arrived for 30 s; wharf logged:\n{}",
                wharf.stderr()
            );
        }
    }
    let cpu1 = cpu_split(&pid);
    let (cpu, system) = (cpu1.0 + cpu1.1 - cpu0.0 - cpu0.1, cpu1.1 - cpu0.1);
    let seconds = start.elapsed().as_secs_f64();
    print_thread_shares(name, &threads0, &pid, seconds);
    perf.stop();
    let row = Row { name: name.into(), lines: n, receives: Some(sink.receives()), seconds, bytes, cpu, system };
    // Delivery latency: lines produced while Wharf runs, at a steady rate, from the line's
    // timestamp (set by the producer) to its arrival at the sink.
    for &l in live_loads(live) {
        let m = l.rate * 5;
        sink.reset();
        sink.record_latencies();
        let (brokers, apps) = (broker.brokers(), apps.to_vec());
        tokio::task::spawn_blocking(move || produce_at(&brokers, m, &apps, Some(l))).await.unwrap();
        eventually(Duration::from_secs(120), "every live line at the sink", || async {
            (sink.frames() >= m).then_some(())
        })
        .await;
        print_latency(&format!("{name} (line's timestamp to the sink)"), l, &sink.take_latencies());
    }
    let (ok, _) = wharf.terminate().await;
    assert!(ok);
    row
}

/// The system calls and scheduler events [`Perf`] counts.
const PERF_EVENTS: &str = "syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,\
syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_ioctl,\
syscalls:sys_enter_getsockopt,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,task-clock,context-switches,\
page-faults";

/// `perf stat` attached to a measured process, when `WHARF_BENCH_PERF=DIR` is set: it counts
/// [`PERF_EVENTS`] (system calls by kind, CPU time, context switches, page faults) over the
/// measured span and writes them to `DIR/CASE.txt`, so that Wharf and rsyslog are counted the
/// same way; with `WHARF_BENCH_PERF_RECORD=1` also `perf record -g` (CPU-clock samples at
/// 999 Hz) over the same span, to `DIR/CASE.perf.data`.
struct Perf(Vec<std::process::Child>);

impl Perf {
    /// Attaches to `pid` (all its threads) for the case `name`; does nothing without the
    /// variable. perf needs a moment to attach, so it starts before the measured span does.
    fn attach(name: &str, pid: &str) -> Perf {
        let Ok(dir) = std::env::var("WHARF_BENCH_PERF") else { return Perf(Vec::new()) };
        let file: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let out = |ext: &str| std::path::Path::new(&dir).join(format!("{file}.{ext}"));
        let mut children = vec![
            std::process::Command::new("perf")
                .args(["stat", "-e", PERF_EVENTS, "-p", pid, "-o"])
                .arg(out("txt"))
                .spawn()
                .expect("perf runs"),
        ];
        let graph = match std::env::var("WHARF_BENCH_PERF_RECORD").as_deref() {
            Ok("1") => Some(["-F", "999", "-g"]),
            // DWARF unwinding copies each sample's stack: fewer samples keep the file small.
            Ok("dwarf") => Some(["-F", "499", "--call-graph=dwarf"]),
            _ => None,
        };
        if let Some(graph) = graph {
            let record = std::process::Command::new("perf")
                .args(["record", "-q", "-e", "cpu-clock"])
                .args(graph)
                .args(["-p", pid, "-o"])
                .arg(out("perf.data"))
                .spawn()
                .expect("perf runs");
            children.push(record);
        }
        std::thread::sleep(Duration::from_millis(500));
        Perf(children)
    }

    /// Stops counting (perf writes its counts on SIGINT) and waits for the file.
    fn stop(self) {
        for mut child in self.0 {
            let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

/// rsyslog receiving octet-counted frames over TCP and forwarding them over TCP to the sink,
/// each app's lines to a destination of its own when there are several `apps`: a lookup table
/// from the RFC 5424 HOSTNAME (the app, as Wharf writes it) to a ruleset per destination with
/// one `omfwd` action and its own queue, as isolated as a Wharf drain (its own buffer and
/// task). The frames name `app{i % apps}-default`, as the Wharf cases' backlogs do.
///
/// Without `queued`, the actions have no queue of their own: the main queue's worker runs
/// them, a batch of lines at a time, so a slow destination holds up every other one.
async fn rsyslog_relay(name: &str, sink: &Sink, n: u64, apps: usize, queued: bool) -> Row {
    let port = wharf_testkit::free_port();
    let queue = if queued { r#" queue.type="LinkedList" queue.size="1000000""# } else { "" };
    let action = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{sink}" protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format"{queue})"#,
        sink = sink.addr.port()
    );
    let rsyslog = Rsyslog::start(
        |dir| {
            let global =
                format!("global(workDirectory=\"{}\")\nmodule(load=\"imtcp\" MaxSessions=\"100\")\n", dir.display());
            if apps == 1 {
                return format!("{global}input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n{action}\n");
            }
            let table: Vec<serde_json::Value> =
                (0..apps).map(|i| json!({"index": format!("app{i}-default"), "value": format!("d{i}")})).collect();
            let file = dir.join("drains.json");
            let lookup = json!({"version": 1, "nomatch": "none", "type": "string", "table": table});
            std::fs::write(&file, lookup.to_string()).expect("write the lookup table");
            let mut conf = format!("{global}lookup_table(name=\"drains\" file=\"{}\")\n", file.display());
            for i in 0..apps {
                conf.push_str(&format!("ruleset(name=\"d{i}\") {{\n{action}\n}}\n"));
            }
            conf.push_str(
                "ruleset(name=\"route\") {\n set $.d = lookup(\"drains\", $hostname);\n call_indirect $.d;\n}\n",
            );
            conf.push_str(&format!("input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"route\")\n"));
            conf
        },
        &[port],
    )
    .await;
    let pid = rsyslog.pid();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect to rsyslog");
    sink.reset();
    let mut frames = Vec::new();
    let mut bytes = 0;
    for i in 0..n {
        let mut msg = Vec::new();
        let app = format!("app{}-default", i as usize % apps);
        let app = if apps == 1 { "api-default" } else { &app };
        let event = LogEvent::builder(app, "akkeris/router").message(&message(i));
        wharf_logshuttle::syslog::write_message(&mut msg, &event, None);
        bytes += event.encoded().len() as u64;
        frames.extend_from_slice(format!("{} ", msg.len()).as_bytes());
        frames.extend_from_slice(&msg);
    }
    let perf = Perf::attach(name, &pid);
    let (start, cpu0) = (Instant::now(), cpu_split(&pid));
    tokio::io::AsyncWriteExt::write_all(&mut conn, &frames).await.unwrap();
    eventually(Duration::from_secs(600), "every line through rsyslog", || async { (sink.frames() >= n).then_some(()) })
        .await;
    let cpu1 = cpu_split(&pid);
    let seconds = start.elapsed().as_secs_f64();
    perf.stop();
    let row = Row {
        name: name.into(),
        lines: n,
        receives: Some(sink.receives()),
        seconds,
        bytes,
        cpu: cpu1.0 + cpu1.1 - cpu0.0 - cpu0.1,
        system: cpu1.1 - cpu0.1,
    };
    if !rsyslog.stderr().trim().is_empty() {
        eprintln!("{name}: rsyslog's standard error:\n{}", rsyslog.stderr());
    }
    drop(rsyslog);
    row
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets; this one is for `cargo bench`.
        return;
    }
    let n: u64 =
        args.iter().position(|a| a == "--lines").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(500_000);
    let broker = Tansu::start().await;
    let sink = Sink::start().await;
    eprintln!("benchmarking with {n} lines");
    let dir = TempDir::new("logshuttle-bench");
    const TCP: &str = "syslog+tcp://127.0.0.1:PORT";

    // Which cases run beside the raw consumer and rsyslog TCP to TCP.
    let cases = std::env::var("WHARF_BENCH_CASES").ok();
    let case = |c: &str| cases.as_deref().is_none_or(|cs| cs.split(',').any(|x| x.trim() == c));

    // One app, one drain.
    let one = dir.path().join("one");
    let apps = configure(Some(&broker), &one, Some((&sink, TCP)), 1).await;
    let bytes = produce(&broker.brokers(), n, &apps);
    eprintln!("produced {n} lines for one app");
    let raw = raw_consumer(&broker.brokers(), n);
    eprintln!("raw consumer: {:.0} lines/s", raw.lines_per_sec());
    let backlog = Backlog { lines: n, bytes };
    let mut rows = vec![raw];
    if case("one") {
        rows.push(wharf_drains("wharf, 1 drain", WHARF, &[], (&broker, &one), &sink, backlog, (&[], &[])).await);
    }

    // A thousand apps with a drain each, each run on a fresh topic. Every Wharf case has a
    // broker and topic of its own: a group member that starts from a committed offset reads
    // each partition from 10,000 messages earlier (tansu's fix in `bus/src/kafka.rs`), which
    // would burden a case that came second on a topic.
    let mut idle = None;
    if case("many") {
        let base = std::env::var("WHARF_BENCH_BASE").ok();
        let pairs: usize = std::env::var("WHARF_BENCH_PAIRS").ok().and_then(|p| p.parse().ok()).unwrap_or(1);
        let mut runs: Vec<(String, String)> = Vec::new();
        for _ in 0..pairs {
            if let Some(b) = &base {
                runs.push(("wharf, 1,000 drains, base".into(), b.clone()));
            }
            runs.push(("wharf, 1,000 drains".into(), WHARF.into()));
        }
        for (i, (name, bin)) in runs.iter().enumerate() {
            let broker2 = Tansu::start().await;
            let many_dir = dir.path().join(format!("many-{i}"));
            let apps = configure(Some(&broker2), &many_dir, Some((&sink, TCP)), 1000).await;
            // Memory per idle drain, once: a process with a thousand apps that have a drain
            // each, against one with the same apps and no drains. The bus does not matter
            // here, so both use the embedded one (two members leaving a tansu group at once
            // leave it waiting minutes for a departed leader).
            if idle.is_none() {
                let bare = dir.path().join("bare");
                configure(None, &bare, None, 1000).await;
                let empty = Wharf::serve_in(WHARF, &[], &bare).await;
                let loaded = Wharf::serve_in(WHARF, &[], &many_dir).await;
                // Both have started their drains from the stored snapshot before printing
                // their addresses; let their allocators settle before reading memory.
                tokio::time::sleep(Duration::from_secs(2)).await;
                idle = Some((rss(&loaded.pid()) as f64 - rss(&empty.pid()) as f64) / 1000.0);
                let _ = loaded.terminate().await;
                let _ = empty.terminate().await;
            }
            let bytes = produce(&broker2.brokers(), n, &apps);
            let backlog = Backlog { lines: n, bytes };
            rows.push(wharf_drains(name, bin, &[], (&broker2, &many_dir), &sink, backlog, (&apps, &LIVE)).await);
            // The same live loads without Wharf, on the same topic, after Wharf has stopped.
            for &live in live_loads(&LIVE) {
                let (brokers, apps) = (broker2.brokers(), apps.clone());
                let l = tokio::task::spawn_blocking(move || raw_latency(&brokers, &apps, live)).await.unwrap();
                print_latency("raw rdkafka consumer (line's timestamp to the consumer)", live, &l);
            }
        }
    }

    // HTTPS drains (logplex-1 POSTs over TLS) to one receiver, 1 and 100 of them, each on a
    // fresh broker; Wharf trusts the receiver's CA through `trusted_ca`.
    if case("https") {
        let ca = TestCa::new("bench receiver CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let https_sink = Sink::start_https(&ca).await;
        let trust = [("WHARF_LOGSHUTTLE__TRUSTED_CA", ca_file.to_str().unwrap())];
        const HTTPS: &str = "https://localhost:PORT/logs";
        for (name, count) in [("wharf, 1 HTTPS drain", 1), ("wharf, 100 HTTPS drains", 100)] {
            let broker3 = Tansu::start().await;
            let data = dir.path().join(format!("https-{count}"));
            let apps = configure(Some(&broker3), &data, Some((&https_sink, HTTPS)), count).await;
            let bytes = produce(&broker3.brokers(), n, &apps);
            let backlog = Backlog { lines: n, bytes };
            rows.push(wharf_drains(name, WHARF, &trust, (&broker3, &data), &https_sink, backlog, (&[], &[])).await);
        }
    }

    let rsyslog = rsyslog_relay("rsyslog TCP to TCP", &sink, n, 1, true).await;
    let mut rsyslog_many = None;
    if case("rsyslog-many") {
        let queued = rsyslog_relay("rsyslog TCP to 1,000 destinations", &sink, n, 1000, true).await;
        let direct = rsyslog_relay("rsyslog TCP to 1,000 destinations, no action queues", &sink, n, 1000, false).await;
        rsyslog_many = Some(queued.cpu_per_million());
        rows.push(queued);
        rows.push(direct);
    }
    let raw_rate = rows[0].lines_per_sec();
    rows.insert(rows.len() - if rsyslog_many.is_some() { 2 } else { 0 }, rsyslog);
    let rsyslog = rows.iter().find(|r| r.name == "rsyslog TCP to TCP").expect("measured");
    let (rsyslog_rate, rsyslog_cpu) = (rsyslog.lines_per_sec(), rsyslog.cpu_per_million());

    println!(
        "\nlogshuttle benchmark: {n} lines of about 200 bytes, tansu broker, 2 cores; Wharf reads a backlog \
         produced while it was stopped, with drain budgets that hold it; fetch.wait.max.ms {} (Wharf and the raw \
         consumer)\n",
        fetch_wait_max_ms()
    );
    println!(
        "| case | lines/s | MB/s | CPU s per million lines | of which kernel | lines per receive | vs raw consumer (lines/s) | vs rsyslog (lines/s) | vs rsyslog (lines per CPU s) | vs rsyslog to 1,000 (lines per CPU s) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {:.2}x | {:.2}x | {:.2}x | {} |",
            r.name,
            r.lines_per_sec(),
            r.bytes as f64 / r.seconds / 1e6,
            r.cpu_per_million(),
            r.system / r.lines as f64 * 1e6,
            r.receives.map_or("".into(), |k| format!("{:.1}", r.lines as f64 / k.max(1) as f64)),
            r.lines_per_sec() / raw_rate,
            r.lines_per_sec() / rsyslog_rate,
            rsyslog_cpu / r.cpu_per_million(),
            rsyslog_many.map_or("".into(), |m| format!("{:.2}x", m / r.cpu_per_million())),
        );
    }
    if let Some(idle) = idle {
        println!(
            "\nWharf memory per idle drain: {:.1} KiB (resident memory with 1,000 apps that have a drain each, \
             minus the same apps without drains, per drain; an idle drain holds no connection until it has lines)",
            idle / 1024.0
        );
    }
}
