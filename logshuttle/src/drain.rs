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
    /// CAs every TLS and HTTPS drain trusts beside the system's trust store.
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
    /// Saves of the drain's catch-up cursor in Kafka that the broker confirmed.
    pub cursor_saves: AtomicU64,
    /// Saves of the drain's catch-up cursor that failed: until a later one lands, a restart or
    /// the partition's next owner repeats this drain's lines from the last cursor saved.
    pub cursor_save_failures: AtomicU64,
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
    /// Held from reading the drain's cursor until Kafka has it saved (`catchup.rs`, and a
    /// revocation's [`Buffer::forget`]), so that saves land in the order their values were
    /// read and none lands after the partition was handed over.
    pub(crate) saving: tokio::sync::Mutex<()>,
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
            saving: tokio::sync::Mutex::new(()),
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
    let mut conn: Option<Conn> = None;
    let mut tls = None;
    let mut delays = backoff(&settings);
    // Lines refused since the last announcement.
    let mut refused: Option<Overflow> = None;
    let own_ca = drain.ca.as_ref().map(|c| c.certificates()).unwrap_or_default();
    let https = drain.url.scheme() == DrainScheme::Https;
    let max_bytes = if https { settings.https_batch_bytes } else { usize::MAX };
    // What this task last told the buffer, so that it takes the buffer's lock only on a change.
    let mut live = false;
    let mut set_live = |now: bool| {
        if live != now {
            live = now;
            drain.buffer.set_live(now);
        }
    };
    loop {
        // Whether the drain waited since its last batch (for lines, or a batch carried over
        // waited out a backoff), so that the connection may have been idle for long.
        let mut waited = !batch.is_empty();
        if batch.is_empty() {
            match drain.buffer.wait_ready().await {
                Some(w) => waited = w,
                None => return,
            }
        }
        if conn.as_ref().is_some_and(|c| !c.is_open(waited)) {
            conn = None;
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
        // Lines are taken only once connected: until then they wait in the buffer.
        if batch.is_empty() {
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
            batch.append_entries(&drain.url, &mut truncated);
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
                drain.stats.failed(&reason);
                drain.stats.retried.fetch_add(1, Relaxed);
                let retry_in = delays.next().unwrap_or(settings.reconnect_max);
                tracing::warn!(drain = %drain.id, url = %drain.url, error = %reason, ?retry_in, "drain delivery failed; retrying");
                if reconnect {
                    conn = None;
                }
                tokio::time::sleep(retry_in).await;
            }
        }
    }
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
