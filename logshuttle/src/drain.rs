//! A drain: its buffer, and the task that delivers from it, reconnecting with backoff.
//!
//! Every drain has its own task and its own buffer, so a slow or dead receiver only ever
//! delays itself: the consumer pushes into buffers without waiting, and a full buffer drops
//! its own oldest lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;
use wharf_bus::LogEvent;
use wharf_config::{DrainScheme, DrainSpec, DrainUrl};

use crate::buffer::{Buffer, Entry, Overflow};
use crate::syslog;

/// How long to wait for a receiver to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one batch may take to write before the connection is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most lines written per batch.
const BATCH: usize = 512;

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
}

/// Per-drain counters.
#[derive(Debug, Default)]
pub struct DrainStats {
    /// Lines delivered.
    pub sent: AtomicU64,
    /// Connection attempts that failed, and writes that failed.
    pub errors: AtomicU64,
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
    /// Its buffer.
    pub buffer: Buffer,
    /// Its counters.
    pub stats: DrainStats,
}

impl Drain {
    /// Starts a drain's task on the current runtime.
    pub fn start(spec: &DrainSpec, label: Arc<str>, settings: &DrainSettings) -> Arc<Drain> {
        let drain = Arc::new(Drain {
            id: spec.id,
            url: spec.url.clone(),
            label,
            buffer: Buffer::new(settings.buffer_lines, settings.buffer_bytes),
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
    let since = wharf_config::timestamp::format_micros(o.since_micros);
    let text = format!("Error L10 (output buffer overflow): {} messages dropped since {since}.", o.count);
    LogEvent::builder(label, "akkeris/logshuttle").message(text.as_bytes())
}

enum Conn {
    Tcp(TcpStream),
}

impl Conn {
    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(buf).await,
        }
    }
}

async fn connect(url: &DrainUrl) -> std::io::Result<Conn> {
    let addr = (url.host().as_str(), url.port());
    match url.scheme() {
        DrainScheme::SyslogTcp => {
            let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
            s.set_nodelay(true)?;
            Ok(Conn::Tcp(s))
        }
        other => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{} drains are not supported yet", other.as_str()),
        )),
    }
}

/// Delivers batches until the drain is stopped. A batch that fails to write is sent again on
/// a new connection, so a receiver may see a line twice but never misses one it was sent.
async fn run(drain: Arc<Drain>, settings: DrainSettings) {
    // Allocated on first use: most drains are idle most of the time.
    let mut batch: Vec<Entry> = Vec::new();
    let mut frames = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut backoff = settings.reconnect_min;
    loop {
        if batch.is_empty() {
            let Some(overflow) = drain.buffer.pop(&mut batch, BATCH).await else {
                return;
            };
            frames.clear();
            if let Some(o) = overflow {
                syslog::write_framed(&mut frames, &overflow_notice(&drain.label, o), drain.url.framing());
            }
            for e in &batch {
                syslog::write_framed(&mut frames, &e.event, drain.url.framing());
            }
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match connect(&drain.url).await {
                Ok(c) => {
                    backoff = settings.reconnect_min;
                    conn.insert(c)
                }
                Err(e) => {
                    drain.stats.errors.fetch_add(1, Relaxed);
                    tracing::warn!(drain = %drain.id, url = %drain.url, error = %e, retry_in = ?backoff, "drain unreachable");
                    // Jitter spreads out reconnections of many drains to one receiver.
                    let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = (backoff * 2).min(settings.reconnect_max);
                    continue;
                }
            },
        };
        match tokio::time::timeout(WRITE_TIMEOUT, c.write_all(&frames)).await {
            Ok(Ok(())) => {
                drain.stats.sent.fetch_add(batch.len() as u64, Relaxed);
                drain.buffer.done();
                batch.clear();
            }
            Ok(Err(e)) => {
                drain.stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(drain = %drain.id, url = %drain.url, error = %e, "drain write failed; reconnecting");
                conn = None;
            }
            Err(_) => {
                drain.stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(drain = %drain.id, url = %drain.url, "drain write timed out; reconnecting");
                conn = None;
            }
        }
    }
}
