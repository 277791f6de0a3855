//! A drain: its buffer, and the task that delivers from it, reconnecting with backoff.
//!
//! Every drain has its own task and its own buffer, so a slow or dead receiver only ever
//! delays itself: the consumer pushes into buffers without waiting, and a full buffer drops
//! its own oldest lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
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
/// The largest UDP datagram sent unless the URL says `max_size`: what RFC 5426 says every
/// receiver should accept.
pub const UDP_MAX_SIZE: usize = 2048;

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
    /// Messages cut to fit a UDP datagram.
    pub truncated: AtomicU64,
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

/// A connection to a receiver.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A connected UDP socket: each message is its own datagram.
    Udp(UdpSocket),
}

impl Conn {
    /// Writes a batch: `frames` for streams, or the datagrams `frames[ends[i-1]..ends[i]]`.
    async fn send(&mut self, frames: &[u8], ends: &[usize]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(frames).await,
            Conn::Tls(s) => {
                s.write_all(frames).await?;
                s.flush().await
            }
            Conn::Udp(s) => {
                let mut start = 0;
                for &end in ends {
                    s.send(&frames[start..end]).await?;
                    start = end;
                }
                Ok(())
            }
        }
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

async fn tcp(url: &DrainUrl) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((url.host().as_str(), url.port())))
        .await
        .map_err(|_| timed_out("connect"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The TLS settings of a drain: the Mozilla roots, and the URL's `ca` when it names one.
fn tls_config(url: &DrainUrl) -> std::io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(ca) = url.ca() {
        let pem = std::fs::read(ca).map_err(|e| invalid(format!("ca {}: {e}", ca.display())))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| invalid(format!("ca {}: {e}", ca.display())))?;
            roots.add(cert).map_err(|e| invalid(format!("ca {}: {e}", ca.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn connect(url: &DrainUrl, tls: &mut Option<Arc<rustls::ClientConfig>>) -> std::io::Result<Conn> {
    match url.scheme() {
        DrainScheme::SyslogTcp => Ok(Conn::Tcp(tcp(url).await?)),
        DrainScheme::SyslogTls => {
            let config = match tls {
                Some(c) => c.clone(),
                None => tls.insert(tls_config(url)?).clone(),
            };
            let name = rustls::pki_types::ServerName::try_from(url.host().as_str().to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tcp(url).await?;
            let tls =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, stream))
                    .await
                    .map_err(|_| timed_out("tls handshake"))??;
            Ok(Conn::Tls(Box::new(tls)))
        }
        DrainScheme::SyslogUdp => {
            let addr = tokio::net::lookup_host((url.host().as_str(), url.port()))
                .await?
                .next()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host"))?;
            let local: std::net::SocketAddr =
                if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
            let s = UdpSocket::bind(local).await?;
            s.connect(addr).await?;
            Ok(Conn::Udp(s))
        }
        other => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{} drains are not supported yet", other.as_str()),
        )),
    }
}

/// Appends one event to a batch: a framed message for streams, a datagram for UDP.
fn append(drain: &Drain, frames: &mut Vec<u8>, ends: &mut Vec<usize>, event: &LogEvent) {
    if drain.url.scheme() == DrainScheme::SyslogUdp {
        let max = drain.url.max_size().unwrap_or(UDP_MAX_SIZE);
        if syslog::write_message(frames, event, Some(max)) {
            drain.stats.truncated.fetch_add(1, Relaxed);
        }
        ends.push(frames.len());
    } else {
        syslog::write_framed(frames, event, drain.url.framing());
    }
}

/// Delivers batches until the drain is stopped. A batch that fails to write is sent again on
/// a new connection, so a receiver may see a line twice but never misses one it was sent.
async fn run(drain: Arc<Drain>, settings: DrainSettings) {
    // Allocated on first use: most drains are idle most of the time.
    let mut batch: Vec<Entry> = Vec::new();
    let mut frames = Vec::new();
    let mut ends = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut tls = None;
    let mut backoff = settings.reconnect_min;
    loop {
        if batch.is_empty() {
            let Some(overflow) = drain.buffer.pop(&mut batch, BATCH).await else {
                return;
            };
            frames.clear();
            ends.clear();
            if let Some(o) = overflow {
                append(&drain, &mut frames, &mut ends, &overflow_notice(&drain.label, o));
            }
            for e in &batch {
                append(&drain, &mut frames, &mut ends, &e.event);
            }
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match connect(&drain.url, &mut tls).await {
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
        match tokio::time::timeout(WRITE_TIMEOUT, c.send(&frames, &ends)).await {
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
