//! A drain: its buffer, and the task that delivers from it, reconnecting with backoff.
//!
//! Every drain has its own task and its own buffer, so a slow or dead receiver only ever
//! delays itself: the consumer pushes into buffers without waiting, and a full buffer drops
//! its own oldest lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use uuid::Uuid;
use wharf_bus::LogEvent;
use wharf_domain::{DrainScheme, DrainSpec, DrainUrl, SyslogFraming};

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
    /// CAs every TLS and HTTPS drain trusts beside the Mozilla roots.
    pub trusted: Arc<Vec<CertificateDer<'static>>>,
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
    /// Messages cut to fit a UDP datagram.
    pub truncated: AtomicU64,
    /// What went wrong last, if anything has.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl DrainStats {
    fn failed(&self, error: &str) {
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
    /// Sent to HTTPS receivers as `Logplex-Drain-Token`, as the control API shows it.
    pub token: Box<str>,
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
            token: spec.token.as_str().into(),
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
    let since = wharf_domain::timestamp::format_micros(o.since_micros);
    let text = format!("Error L10 (output buffer overflow): {} messages dropped since {since}.", o.count);
    LogEvent::builder(label, "akkeris/logshuttle").message(text.as_bytes())
}

/// A connection to a receiver.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A connected UDP socket: each message is its own datagram.
    Udp(UdpSocket),
    /// An HTTP/1.1 connection over TLS, kept alive between batches.
    Https(http1::SendRequest<Full<Bytes>>),
}

/// Why a batch was not delivered.
#[derive(Debug)]
enum Failure {
    /// The connection failed or the receiver asked to retry (HTTPS 5xx, 429): send the same
    /// batch again, on a new connection when this one is gone.
    Retry { reason: String, reconnect: bool },
    /// The receiver refused the batch for good (HTTPS 4xx other than 429): drop it and count it.
    Rejected(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Retry { reason: e.to_string(), reconnect: true }
    }
}

/// A batch ready to send, kept as it is across retries.
#[derive(Debug, Default)]
struct Batch {
    /// The lines it carries, for the buffer's bookkeeping.
    entries: Vec<Entry>,
    /// Framed messages for streams and HTTPS, or datagrams back to back for UDP.
    frames: Vec<u8>,
    /// Where each UDP datagram ends in `frames`.
    ends: Vec<usize>,
    /// How many messages: the lines, and the overflow notice if there is one.
    messages: usize,
    /// The HTTPS `Logplex-Frame-Id`, the same on every attempt so the receiver can drop repeats.
    frame_id: String,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.messages == 0
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.frames.clear();
        self.ends.clear();
        self.messages = 0;
    }

    /// Appends one event: a framed message for streams and HTTPS, a datagram for UDP.
    fn append(&mut self, drain: &Drain, event: &LogEvent) {
        self.messages += 1;
        match drain.url.scheme() {
            DrainScheme::SyslogUdp => {
                let max = drain.url.max_size().unwrap_or(UDP_MAX_SIZE);
                if syslog::write_message(&mut self.frames, event, Some(max)) {
                    drain.stats.truncated.fetch_add(1, Relaxed);
                }
                self.ends.push(self.frames.len());
            }
            // logplex-1 bodies are octet-counted RFC 5424 frames, whatever the URL says.
            DrainScheme::Https => syslog::write_framed(&mut self.frames, event, SyslogFraming::OctetCounting),
            _ => syslog::write_framed(&mut self.frames, event, drain.url.framing()),
        }
    }
}

impl Conn {
    /// Sends a batch: `frames` for streams, the datagrams for UDP, a logplex-1 POST for HTTPS.
    async fn send(&mut self, drain: &Drain, batch: &Batch) -> Result<(), Failure> {
        match self {
            Conn::Tcp(s) => {
                s.write_all(&batch.frames).await?;
                acknowledged(s).await
            }
            Conn::Tls(s) => {
                s.write_all(&batch.frames).await?;
                s.flush().await?;
                acknowledged(s.get_ref().0).await
            }
            Conn::Udp(s) => {
                let mut start = 0;
                for &end in &batch.ends {
                    s.send(&batch.frames[start..end]).await?;
                    start = end;
                }
                Ok(())
            }
            Conn::Https(sender) => post(sender, drain, batch).await,
        }
    }

    /// Whether the connection can take another batch: an HTTP connection the receiver closed
    /// while idle cannot, and is replaced without counting an error.
    fn is_open(&self) -> bool {
        match self {
            Conn::Https(sender) => !sender.is_closed(),
            Conn::Tcp(s) => peer_open(s),
            // Bytes waiting under TLS may be the server's session tickets; a closed TLS
            // connection shows when a write's acknowledgement check sees the reset.
            Conn::Tls(_) | Conn::Udp(_) => true,
        }
    }
}

/// Whether a TCP syslog receiver still has the connection open: end of stream or an error mean
/// it closed it while the drain was idle, and writing to it would only be refused later.
fn peer_open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.try_read(&mut buf) {
        Ok(0) => false,
        // A receiver that talks back is unusual but alive; what it said is of no use here.
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Waits until the receiver's TCP has acknowledged every byte written to `s`: only then is a
/// batch delivered (see [`crate::acked`]). Bounded by the caller's delivery timeout.
async fn acknowledged(s: &TcpStream) -> Result<(), Failure> {
    let mut wait = Duration::ZERO;
    while crate::acked::unacked(s)? > 0 {
        // A receiver that reset the connection will never acknowledge the rest.
        if let Some(e) = s.take_error()? {
            return Err(e.into());
        }
        if wait.is_zero() {
            // On a fast link the acknowledgement is already on its way back.
            tokio::task::yield_now().await;
            wait = Duration::from_millis(1);
        } else {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// POSTs a batch as logplex-1, as Heroku's HTTPS drains do.
async fn post(sender: &mut http1::SendRequest<Full<Bytes>>, drain: &Drain, batch: &Batch) -> Result<(), Failure> {
    let url = &drain.url;
    let host = match url.port() {
        443 => url.host().as_str().to_owned(),
        port => format!("{}:{port}", url.host().as_str()),
    };
    let mut req = http::Request::post(url.path_and_query())
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/logplex-1")
        .header(http::header::USER_AGENT, concat!("wharf-logshuttle/", env!("CARGO_PKG_VERSION")))
        .header("logplex-msg-count", batch.messages)
        .header("logplex-frame-id", &batch.frame_id)
        .header("logplex-drain-token", &*drain.token);
    if let Some((user, password)) = url.basic_auth() {
        let credentials = format!("{user}:{}", password.unwrap_or_default());
        req = req.header(http::header::AUTHORIZATION, format!("Basic {}", BASE64.encode(credentials)));
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(&batch.frames)))
        .map_err(|e| Failure::Rejected(format!("cannot build the request: {e}")))?;
    let retry = |reason: String| Failure::Retry { reason, reconnect: true };
    sender.ready().await.map_err(|e| retry(format!("connection closed: {e}")))?;
    let resp = sender.send_request(req).await.map_err(|e| retry(format!("request failed: {e}")))?;
    let status = resp.status();
    // Read the answer to the end so that the connection can carry the next batch.
    let body = resp.into_body().collect().await.map_err(|e| retry(format!("reading the response: {e}")))?;
    let reason = || {
        let text = String::from_utf8_lossy(&body.to_bytes()).chars().take(200).collect::<String>();
        format!("receiver answered {status}: {}", text.trim())
    };
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
        Err(Failure::Retry { reason: reason(), reconnect: false })
    } else {
        Err(Failure::Rejected(reason()))
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

/// The TLS settings of a drain: the Mozilla roots, the configured trusted CAs, and the URL's
/// `ca` when it names one.
fn tls_config(url: &DrainUrl, trusted: &[CertificateDer<'static>]) -> std::io::Result<Arc<rustls::ClientConfig>> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let own = match url.ca() {
        Some(ca) => read_ca(ca).map_err(|e| invalid(e.to_string()))?,
        None => Vec::new(),
    };
    for cert in trusted.iter().chain(&own) {
        roots.add(cert.clone()).map_err(|e| invalid(format!("ca: {e}")))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if url.scheme() == DrainScheme::Https {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

async fn tls(
    url: &DrainUrl,
    config: &mut Option<Arc<rustls::ClientConfig>>,
    settings: &DrainSettings,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = match config {
        Some(c) => c.clone(),
        None => config.insert(tls_config(url, &settings.trusted)?).clone(),
    };
    let name = rustls::pki_types::ServerName::try_from(url.host().as_str().to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = tcp(url).await?;
    tokio::time::timeout(CONNECT_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, stream))
        .await
        .map_err(|_| timed_out("tls handshake"))?
}

async fn connect(
    url: &DrainUrl,
    config: &mut Option<Arc<rustls::ClientConfig>>,
    settings: &DrainSettings,
) -> std::io::Result<Conn> {
    match url.scheme() {
        DrainScheme::SyslogTcp => Ok(Conn::Tcp(tcp(url).await?)),
        DrainScheme::SyslogTls => Ok(Conn::Tls(Box::new(tls(url, config, settings).await?))),
        DrainScheme::Https => {
            let stream = tls(url, config, settings).await?;
            let (sender, conn) = http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| std::io::Error::other(format!("http handshake: {e}")))?;
            // The connection's task ends when the sender is dropped or the receiver closes it.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Conn::Https(sender))
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
    }
}

/// A new HTTPS frame id: 32 hex digits.
fn frame_id() -> String {
    wharf_domain::random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Delivers batches until the drain is stopped. A batch that fails is sent again, as it was,
/// after a backoff with jitter, so a receiver may see a line twice but never misses one it was
/// sent; only a receiver that refuses a batch for good (HTTPS 4xx) loses it, counted.
async fn run(drain: Arc<Drain>, settings: DrainSettings) {
    // Allocated on first use: most drains are idle most of the time.
    let mut batch = Batch::default();
    let mut conn: Option<Conn> = None;
    let mut tls = None;
    let mut delays = backoff(&settings);
    loop {
        if batch.is_empty() && !drain.buffer.wait_ready().await {
            return;
        }
        if conn.as_ref().is_some_and(|c| !c.is_open()) {
            conn = None;
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match connect(&drain.url, &mut tls, &settings).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    drain.stats.failed(&e.to_string());
                    let retry_in = delays.next().unwrap_or(settings.reconnect_max);
                    tracing::warn!(drain = %drain.id, url = %drain.url, error = %e, ?retry_in, "drain unreachable");
                    tokio::time::sleep(retry_in).await;
                    continue;
                }
            },
        };
        // Lines are taken only once connected: until then they wait in the buffer.
        if batch.is_empty() {
            let Some(overflow) = drain.buffer.pop(&mut batch.entries, BATCH).await else {
                return;
            };
            if let Some(o) = overflow {
                batch.append(&drain, &overflow_notice(&drain.label, o));
            }
            for i in 0..batch.entries.len() {
                let event = batch.entries[i].event.clone();
                batch.append(&drain, &event);
            }
            batch.frame_id = frame_id();
        }
        let outcome = match tokio::time::timeout(WRITE_TIMEOUT, c.send(&drain, &batch)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Retry { reason: "delivery timed out".into(), reconnect: true }),
        };
        match outcome {
            Ok(()) => {
                drain.stats.sent.fetch_add(batch.entries.len() as u64, Relaxed);
                drain.buffer.done();
                batch.clear();
                delays = backoff(&settings);
            }
            Err(Failure::Rejected(reason)) => {
                drain.stats.failed(&reason);
                drain.stats.rejected.fetch_add(batch.entries.len() as u64, Relaxed);
                tracing::warn!(drain = %drain.id, url = %drain.url, error = %reason, lines = batch.entries.len(), "drain refused a batch; dropped");
                drain.buffer.done();
                batch.clear();
            }
            Err(Failure::Retry { reason, reconnect }) => {
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
