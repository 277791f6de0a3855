//! A drain: its buffer, and the task that delivers from it, reconnecting with backoff.
//!
//! Every drain has its own task and its own buffer, so a slow or dead receiver only ever
//! delays itself: the consumer pushes into buffers without waiting, and a full buffer drops
//! its own oldest lines.
//!
//! Nothing is lost without a word in the drain's own stream: lines dropped past the budget are
//! announced by an L10 notice, lines the receiver refused for good by an L13 notice, each at
//! the front of the next batch (source `akkeris/logshuttle`, as Akkeris' logshuttle writes L10):
//!
//! - `Error L10 (output buffer overflow): N messages dropped since T.`
//! - `Error L13 (drain refused): N messages refused by the receiver since T.`
//!
//! where T is the time of the first line concerned. A connection the outbound policy refuses
//! is a counted error, the drain's last error, and a warning in Wharf's own log.
//!
//! With the embedded bus, an app's drain paces the app's dyno output ([`wharf_bus::pace`]) while
//! it is live: from a connection until a connection or a delivery fails, and not while a batch
//! has been on its way for longer than [`PACE_STALL`] (a receiver that stopped reading).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use uuid::Uuid;
use wharf_bus::LogEvent;
use wharf_domain::outbound::Policy;
use wharf_domain::{DrainScheme, DrainSpec, DrainUrl};

use crate::batch::Batch;
use crate::buffer::{Buffer, Overflow};
use crate::transport::{Conn, ConnectError, Endpoint, connect};

pub use crate::batch::UDP_MAX_SIZE;

/// How long one batch may take to write before the connection is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a batch may be on its way before its drain stops pacing its app: a receiver that
/// takes this long for one batch (at most `BATCH`, 512, lines) is not delivering, and must not hold
/// the app's dynos until the write times out. Slower receivers fall back to the budget and L10.
pub const PACE_STALL: Duration = Duration::from_secs(2);
/// Most lines written per batch.
const BATCH: usize = 512;
/// How long a TCP drain with a batch on its way and no lines to write behind it waits before
/// it first looks whether the receiver has acknowledged the batch, and the longest it waits
/// between looks after that. The lines are with the receiver already; the look only lets the
/// drain count them and the logshuttle commit their offsets, so it need not be prompt, and a
/// busy drain's next write settles the batch first (`transport::write_behind`).
const SETTLE_FIRST: Duration = Duration::from_millis(5);
const SETTLE_MAX: Duration = Duration::from_millis(50);
/// Bytes a line adds to its encoded size once framed as RFC 5424 (priority, version,
/// timestamp, separators, octet count), for the HTTPS batch cap.
const FRAME_OVERHEAD: usize = 48;

/// Delivery settings shared by all drains.
#[derive(Debug, Clone)]
pub struct DrainSettings {
    /// Most lines a drain buffers.
    pub buffer_lines: usize,
    /// Most bytes a drain buffers.
    pub buffer_bytes: usize,
    /// First reconnection delay.
    pub reconnect_min: Duration,
    /// Longest reconnection delay.
    pub reconnect_max: Duration,
    /// CAs every TLS and HTTPS drain trusts beside the Mozilla roots.
    pub trusted: Arc<Vec<CertificateDer<'static>>>,
    /// Largest HTTPS POST body, in bytes (estimated before framing).
    pub https_batch_bytes: usize,
    /// Where drains may connect.
    pub outbound: Policy,
    /// The apps' paces, which app drains set: with the embedded bus only.
    pub pacer: Option<Arc<wharf_bus::Pacer>>,
    /// With Kafka (and `catch_up` configured): drains past their budget leave their lines to a
    /// catch-up from Kafka instead of dropping them.
    pub catch_up: bool,
}

pub use wharf_domain::cert::{CaError, read_ca};

/// Per-drain counters, and the last error, for the metrics endpoint.
#[derive(Debug, Default)]
pub struct DrainStats {
    /// Lines delivered.
    pub sent: AtomicU64,
    /// Connection attempts that failed, and writes that failed.
    pub errors: AtomicU64,
    /// Batches sent again after a failed attempt.
    pub retried: AtomicU64,
    /// Lines the receiver refused for good (HTTPS 4xx), dropped rather than retried forever.
    pub rejected: AtomicU64,
    /// Connections not made because the outbound policy refuses every address of the host.
    pub destination_refused: AtomicU64,
    /// Messages cut to fit a UDP datagram.
    pub truncated: AtomicU64,
    /// What went wrong last, if anything has.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl DrainStats {
    pub(crate) fn failed(&self, error: &str) {
        self.errors.fetch_add(1, Relaxed);
        *self.last_error.lock().expect("last error lock") = Some(error.to_owned());
    }
}

/// A running drain.
#[derive(Debug)]
pub struct Drain {
    /// The drain's id.
    pub id: Uuid,
    /// Where it delivers.
    pub url: DrainUrl,
    /// The app key or site domain whose lines it receives, for notices.
    pub label: Arc<str>,
    /// Whether it is a site's drain (`label` is a domain) rather than an app's.
    pub site: bool,
    /// Sent to HTTPS receivers as `Logplex-Drain-Token`, as the control API shows it.
    pub token: Box<str>,
    /// The drain's own trusted CAs, from the API.
    pub ca: Option<wharf_domain::DrainCa>,
    /// Its buffer.
    pub buffer: Buffer,
    /// Its counters.
    pub stats: DrainStats,
}

impl Drain {
    /// Starts a drain's task on the current runtime. An app's drain paces the app's dyno output
    /// when `settings` has a pacer; a site's drain never paces.
    pub fn start(spec: &DrainSpec, label: Arc<str>, settings: &DrainSettings) -> Arc<Drain> {
        let pace = match (&spec.target, &settings.pacer) {
            (wharf_domain::DrainTarget::App(_), Some(pacer)) => Some(pacer.app(&label)),
            _ => None,
        };
        let drain = Arc::new(Drain {
            id: spec.id,
            url: spec.url.clone(),
            label,
            site: matches!(spec.target, wharf_domain::DrainTarget::Site(_)),
            token: spec.token.as_str().into(),
            ca: spec.ca.clone(),
            buffer: Buffer::new(settings.buffer_lines, settings.buffer_bytes)
                .with_pace(pace)
                .with_catch_up(settings.catch_up),
            stats: DrainStats::default(),
        });
        tokio::spawn(run(drain.clone(), settings.clone()));
        drain
    }

    /// Stops the drain's task.
    pub fn stop(&self) {
        self.buffer.close();
    }
}

/// The notice a drain receives after its buffer overflowed, as Heroku's logplex words it.
fn overflow_notice(label: &str, o: Overflow) -> LogEvent {
    let since = wharf_domain::timestamp::format_micros(o.since_micros);
    let text = format!("Error L10 (output buffer overflow): {} messages dropped since {since}.", o.count);
    LogEvent::builder(label, "akkeris/logshuttle").message(text.as_bytes())
}

/// The notice a drain receives after its receiver refused lines for good (HTTPS 4xx).
fn refused_notice(label: &str, r: Overflow) -> LogEvent {
    let since = wharf_domain::timestamp::format_micros(r.since_micros);
    let text = format!("Error L13 (drain refused): {} messages refused by the receiver since {since}.", r.count);
    LogEvent::builder(label, "akkeris/logshuttle").message(text.as_bytes())
}

/// A new HTTPS frame id: 32 hex digits.
fn frame_id() -> String {
    wharf_domain::random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Delivers batches until the drain is stopped. A batch that fails is sent again, as it was,
/// after a backoff with jitter, so a receiver may see a line twice but never misses one it was
/// sent; only a receiver that refuses lines for good (HTTPS 4xx) loses them, counted and
/// announced (L13) with the next batch.
async fn run(drain: Arc<Drain>, settings: DrainSettings) {
    // Allocated on first use: most drains are idle most of the time.
    let mut batch = Batch::default();
    // A TCP drain's batch on its way: written, not yet acknowledged by the receiver's TCP
    // (pipelined acknowledgement, see `transport::write_behind`); `batch` is written behind it.
    let mut flight = Batch::default();
    // Whether `flight` went out on the current connection (a new one must send it again first).
    let mut flight_written = false;
    // When `flight` was written, and how long to wait before looking whether it is acknowledged
    // when no lines come to write behind it.
    let mut flight_since = tokio::time::Instant::now();
    let mut settle_in = SETTLE_FIRST;
    let mut conn: Option<Conn> = None;
    let mut tls = None;
    let mut delays = backoff(&settings);
    // Lines refused since the last announcement.
    let mut refused: Option<Overflow> = None;
    let own_ca = drain.ca.as_ref().map(|c| c.certificates()).unwrap_or_default();
    let https = drain.url.scheme() == DrainScheme::Https;
    let max_bytes = if https { settings.https_batch_bytes } else { usize::MAX };
    // Plain TCP drains write their next batch before the last is acknowledged.
    let pipelined = drain.url.scheme() == DrainScheme::SyslogTcp;
    // What this task last told the buffer, so that it takes the buffer's lock only on a change.
    let mut live = false;
    let mut set_live = |now: bool| {
        if live != now {
            live = now;
            drain.buffer.set_live(now);
        }
    };
    loop {
        if batch.is_empty() && flight.is_empty() {
            if !drain.buffer.wait_ready().await {
                return;
            }
        } else if batch.is_empty() && flight_written {
            // A batch is on its way and nothing is behind it: write the next lines behind it as
            // they come, or look after a while whether the receiver has acknowledged it.
            tokio::select! {
                ready = drain.buffer.wait_ready() => if !ready {
                    return;
                },
                () = tokio::time::sleep(settle_in) => {
                    let settled = match &conn {
                        Some(Conn::Tcp(s)) => crate::transport::settled(s, 0),
                        _ => unreachable!("only a TCP drain has a batch on its way"),
                    };
                    let waited = flight_since.elapsed();
                    let outcome = match settled {
                        Ok(true) => {
                            set_live(true);
                            settle(&drain, &mut flight, &batch.entries);
                            delays = backoff(&settings);
                            continue;
                        }
                        Ok(false) if waited < WRITE_TIMEOUT => {
                            if waited >= PACE_STALL {
                                // Stuck: stop pacing the app until this batch gets through.
                                set_live(false);
                            }
                            settle_in = (settle_in * 2).min(SETTLE_MAX);
                            continue;
                        }
                        Ok(false) => "delivery timed out".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    set_live(false);
                    conn = None;
                    flight_written = false;
                    retry_later(&drain, &mut delays, &settings, &outcome).await;
                    continue;
                }
            }
        }
        if let Some(c) = conn.as_ref().filter(|c| !c.is_open()) {
            // A receiver that closed the connection after its TCP acknowledged the batch on its
            // way has it: only what it did not acknowledge goes again on the new connection.
            if let Conn::Tcp(s) = c
                && flight_written
                && !flight.is_empty()
                && crate::transport::settled(s, 0).unwrap_or(false)
            {
                settle(&drain, &mut flight, &batch.entries);
            }
            conn = None;
            flight_written = false;
        }
        let c = match &mut conn {
            Some(c) => c,
            None => {
                let end = Endpoint {
                    url: &drain.url,
                    trusted: &settings.trusted,
                    own_ca: &own_ca,
                    policy: settings.outbound,
                };
                match connect(&end, &mut tls).await {
                    Ok(c) => {
                        set_live(true);
                        flight_written = false;
                        conn.insert(c)
                    }
                    Err(e) => {
                        set_live(false);
                        if matches!(e, ConnectError::Refused(_)) {
                            drain.stats.destination_refused.fetch_add(1, Relaxed);
                        }
                        drain.stats.failed(&e.to_string());
                        let retry_in = delays.next().unwrap_or(settings.reconnect_max);
                        tracing::warn!(drain = %drain.id, url = %drain.url, error = %e, ?retry_in, "drain unreachable");
                        tokio::time::sleep(retry_in).await;
                        continue;
                    }
                }
            }
        };
        // Lines are taken only once connected: until then they wait in the buffer. A batch on
        // its way that a new connection must send again goes alone, so as not to wait here.
        if batch.is_empty() && (flight.is_empty() || flight_written) {
            let Some(overflow) = drain.buffer.pop_within(&mut batch.entries, BATCH, max_bytes, FRAME_OVERHEAD).await
            else {
                return;
            };
            let mut truncated = 0;
            if let Some(r) = refused.take() {
                batch.announced = Some(r);
                batch.notice(&drain.url, &refused_notice(&drain.label, r), &mut truncated);
            }
            if let Some(o) = overflow {
                batch.notice(&drain.url, &overflow_notice(&drain.label, o), &mut truncated);
            }
            for i in 0..batch.entries.len() {
                let event = batch.entries[i].event.clone();
                batch.append(&drain.url, &event, &mut truncated);
            }
            if truncated > 0 {
                drain.stats.truncated.fetch_add(truncated, Relaxed);
            }
            // Only HTTPS sends it; a stream drain's batch would pay a system call for nothing.
            if https {
                batch.frame_id = frame_id();
            }
        }
        let outcome = {
            let send = async {
                match c {
                    Conn::Https(sender) => crate::https::post_batch(sender, &drain.url, &drain.token, &mut batch).await,
                    Conn::Tcp(s) => crate::transport::write_behind(s, &mut flight, !flight_written, &batch)
                        .await
                        .map_err(|e| crate::https::Retry { reason: e.to_string(), reconnect: true }),
                    stream => match stream.write(&batch).await {
                        Ok(()) => {
                            let (from, to) = (batch.done, batch.messages());
                            batch.delivered(from, to);
                            Ok(())
                        }
                        Err(e) => Err(crate::https::Retry { reason: e.to_string(), reconnect: true }),
                    },
                }
            };
            tokio::pin!(send);
            match tokio::time::timeout(PACE_STALL, &mut send).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // Stuck: stop pacing the app until this batch gets through.
                    set_live(false);
                    match tokio::time::timeout(WRITE_TIMEOUT - PACE_STALL, send).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(crate::https::Retry { reason: "delivery timed out".into(), reconnect: true }),
                    }
                }
            }
        };
        match outcome {
            Ok(()) if pipelined => {
                set_live(true);
                // `flight` is delivered; `batch` goes on its way in its place.
                if !flight.is_empty() {
                    settle(&drain, &mut flight, &batch.entries);
                    delays = backoff(&settings);
                }
                std::mem::swap(&mut flight, &mut batch);
                (flight_written, flight_since, settle_in) = (true, tokio::time::Instant::now(), SETTLE_FIRST);
            }
            Ok(()) => {
                set_live(true);
                drain.stats.sent.fetch_add(batch.sent_lines, Relaxed);
                if let Some((r, reason)) = batch.refused.take() {
                    drain.stats.failed(&reason);
                    drain.stats.rejected.fetch_add(batch.refused_lines, Relaxed);
                    tracing::warn!(drain = %drain.id, url = %drain.url, error = %reason, lines = r.count, "drain refused lines; dropped");
                    let all = refused.get_or_insert(Overflow { count: 0, since_micros: r.since_micros });
                    all.count += r.count;
                    all.since_micros = all.since_micros.min(r.since_micros);
                } else {
                    delays = backoff(&settings);
                }
                drain.buffer.done();
                batch.clear();
            }
            Err(crate::https::Retry { reason, reconnect }) => {
                set_live(false);
                if reconnect {
                    conn = None;
                    flight_written = false;
                }
                retry_later(&drain, &mut delays, &settings, &reason).await;
            }
        }
    }
}

/// Counts a TCP drain's batch on its way as delivered (its receiver's TCP acknowledged it);
/// `behind` are the lines of the batch written after it, still on their way.
fn settle(drain: &Drain, flight: &mut Batch, behind: &[crate::buffer::Entry]) {
    let (from, to) = (flight.done, flight.messages());
    flight.delivered(from, to);
    drain.stats.sent.fetch_add(flight.sent_lines, Relaxed);
    drain.buffer.done_but(behind);
    flight.clear();
}

/// Counts a failed delivery and waits out the next delay before the drain tries again; what
/// was not delivered is sent again as it was.
async fn retry_later(drain: &Drain, delays: &mut backon::ExponentialBackoff, settings: &DrainSettings, reason: &str) {
    drain.stats.failed(reason);
    drain.stats.retried.fetch_add(1, Relaxed);
    let retry_in = delays.next().unwrap_or(settings.reconnect_max);
    tracing::warn!(drain = %drain.id, url = %drain.url, error = %reason, ?retry_in, "drain delivery failed; retrying");
    tokio::time::sleep(retry_in).await;
}

/// The delays between a drain's attempts: from `reconnect_min`, doubling up to `reconnect_max`,
/// each with random jitter of up to as much again (backon's), which spreads out the retries of
/// many drains to one receiver. A delivered batch starts the sequence over.
fn backoff(settings: &DrainSettings) -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(settings.reconnect_min)
        .with_max_delay(settings.reconnect_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use wharf_bus::{Partition, Position};

    use super::*;
    use crate::buffer::Entry;

    const LINES: usize = 2 * BATCH;
    const WAIT: Duration = Duration::from_secs(30);

    fn settings() -> DrainSettings {
        DrainSettings {
            buffer_lines: 10 * LINES,
            buffer_bytes: usize::MAX,
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(50),
            trusted: Arc::default(),
            https_batch_bytes: usize::MAX,
            outbound: Policy::default(),
            pacer: None,
            catch_up: false,
        }
    }

    /// Reads newline-framed messages from `s` into `seen` (each message's line number) until
    /// `until` is among them.
    async fn read_until(s: &mut TcpStream, pending: &mut Vec<u8>, seen: &mut Vec<usize>, until: usize) {
        let mut buf = [0u8; 4096];
        while !seen.contains(&until) {
            let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.expect("the drain goes on writing").unwrap();
            assert!(n > 0, "the drain closed the connection");
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let message: Vec<u8> = pending.drain(..=end).collect();
                let text = String::from_utf8(message).unwrap();
                let number = text.split_once("line ").and_then(|(_, rest)| rest.get(..5)).unwrap();
                seen.push(number.parse().unwrap());
            }
        }
    }

    async fn poll(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A TCP drain writes its next batch before the receiver has acknowledged the one before
    /// (pipelined acknowledgement). A receiver that resets the connection after reading part of
    /// either of two batches on their way still gets every line, in order, once the drain has
    /// reconnected: neither batch counts as delivered before the receiver's TCP acknowledged it,
    /// and both are sent again, the older first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reset_during_two_pipelined_batches_loses_no_line_and_keeps_the_order() {
        // The line after which the receiver resets: in the first batch, in the second.
        for reset_after in [BATCH / 2, BATCH + BATCH / 2] {
            check(reset_after).await;
        }
    }

    async fn check(reset_after: usize) {
        // The receiver listens only once every line is queued, so that the drain takes two
        // whole batches: until then its connections are refused and it retries.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url: DrainUrl = format!("syslog+tcp://{addr}?framing=lf").parse().unwrap();
        let spec = DrainSpec {
            id: Uuid::from_u128(reset_after as u128),
            target: wharf_domain::DrainTarget::Site("example.com".into()),
            url,
            token: String::new(),
            ca: None,
        };
        let drain = Drain::start(&spec, "example.com".into(), &settings());
        // About 1 KB a line: each batch of 512 is far larger than the receiver's window.
        let pad = "x".repeat(1000);
        for i in 0..LINES {
            let event = LogEvent::builder("example.com", "app").message(format!("line {i:05} {pad}").as_bytes());
            let position = Some(Position { partition: Partition { topic_index: 0, number: 0 }, offset: i as i64 });
            drain.buffer.push(Entry { event, position, replayed: false });
        }
        // A small receive window: what the receiver does not read stays in the drain's output
        // queue, unacknowledged, rather than in the receiver's kernel.
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(addr).unwrap();
        let listener: TcpListener = socket.listen(8).unwrap();
        let (mut first, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        let (mut pending, mut seen) = (Vec::new(), Vec::new());
        read_until(&mut first, &mut pending, &mut seen, reset_after).await;
        // Both batches are taken: the second went out behind the first, unacknowledged.
        poll("both batches taken", || drain.buffer.stats.popped.load(Relaxed) == LINES as u64).await;
        assert!(drain.stats.sent.load(Relaxed) < LINES as u64, "{reset_after}: counted before acknowledged");
        first.set_zero_linger().unwrap();
        drop(first);
        let (mut second, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        let mut again = Vec::new();
        read_until(&mut second, &mut Vec::new(), &mut again, LINES - 1).await;
        // The receiver may have read a few lines past `reset_after` in its last read.
        let expected: Vec<usize> = (0..seen.len()).collect();
        assert_eq!(seen, expected, "{reset_after}: the first connection, in order");
        assert!(again.windows(2).all(|w| w[1] == w[0] + 1), "{reset_after}: in order, no gap");
        assert!(again[0] <= seen.len(), "{reset_after}: the second connection starts at {}", again[0]);
        poll("every line counted", || drain.stats.sent.load(Relaxed) == LINES as u64).await;
        poll("nothing in flight", || drain.buffer.is_idle()).await;
        assert!(drain.stats.retried.load(Relaxed) >= 1, "{reset_after}: the reset was a failed delivery");
        drain.stop();
    }
}
