//! Connections to receivers: TCP, TLS, UDP and HTTPS, each opened only to addresses the
//! outbound-destination policy allows, and the writes that say when a receiver has a batch.
//!
//! The host of a drain URL is resolved here, on every connection, and each address is checked
//! against [`wharf_domain::outbound::Policy`]: a name that resolves to a refused address (the
//! cloud metadata service, a broadcast address, loopback where the operator refused it) gets
//! no connection, and the refusal is the drain's error, counted and announced by the caller.
//! TLS verifies the receiver's certificate against the system's trust store, the operator's
//! `trusted_ca` and the drain's own CAs; an IP literal gets no SNI (RFC 6066 §3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use wharf_domain::outbound::Policy;
use wharf_domain::{DrainScheme, DrainUrl};

use crate::batch::Batch;

/// How long to wait for a receiver to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a receiver.
pub(crate) enum Conn {
    Tcp(Tcp),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A connected UDP socket: each message is its own datagram.
    Udp(UdpSocket),
    /// An HTTP/1.1 connection over TLS, kept alive between batches.
    Https(http1::SendRequest<Full<Bytes>>),
}

/// A plain TCP connection, with what was written to it, so that one system call says whether
/// the receiver has acknowledged all of it (`TCP_INFO`, see [`crate::acked`]).
pub(crate) struct Tcp {
    stream: TcpStream,
    /// The receiver's `tcpi_bytes_acked` once it has acknowledged everything written so far:
    /// its value at connection (the SYN's one) plus every byte written since. `None` where the
    /// kernel does not say; the output queue is asked then.
    acked_at_end: Option<u64>,
    /// Whether the last acknowledgement check found the connection open both ways. Until the
    /// drain waits for lines again, the connection need not be asked again whether the receiver
    /// closed it (a read, [`Conn::is_open`]): it was open when it acknowledged the last batch.
    open_at_ack: bool,
}

/// Why a connection was not made or a write failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// Every address of the host is one the outbound policy refuses.
    Refused(String),
    /// The network or the receiver failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused(why) => write!(f, "destination refused: {why}"),
            ConnectError::Io(e) => e.fmt(f),
        }
    }
}

impl From<std::io::Error> for ConnectError {
    fn from(e: std::io::Error) -> Self {
        ConnectError::Io(e)
    }
}

/// What a drain needs to connect: where, and whom to trust and reach.
#[derive(Debug)]
pub(crate) struct Endpoint<'a> {
    pub(crate) url: &'a DrainUrl,
    /// The operator's CAs and the drain's own, beside the system's trust store.
    pub(crate) trusted: &'a [CertificateDer<'static>],
    pub(crate) own_ca: &'a [CertificateDer<'static>],
    pub(crate) policy: Policy,
}

impl Conn {
    /// Writes a batch's messages from `batch.done` on, for streams and UDP, and waits until the
    /// receiver's TCP has acknowledged them (UDP: until they are sent).
    pub(crate) async fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        let (from, to) = (batch.done, batch.messages());
        match self {
            Conn::Tcp(t) => {
                let bytes = batch.range(from, to);
                t.stream.write_all(bytes).await?;
                if let Some(end) = &mut t.acked_at_end {
                    *end += bytes.len() as u64;
                }
                t.open_at_ack = acknowledged(&t.stream, t.acked_at_end).await?;
                Ok(())
            }
            Conn::Tls(s) => {
                s.write_all(batch.range(from, to)).await?;
                s.flush().await?;
                // TLS writes records, not the batch's bytes: the output queue says it.
                acknowledged(s.get_ref().0, None).await.map(|_| ())
            }
            Conn::Udp(s) => {
                for i in from..to {
                    s.send(batch.range(i, i + 1)).await?;
                }
                Ok(())
            }
            Conn::Https(_) => unreachable!("HTTPS batches are posted, not written"),
        }
    }

    /// Whether the connection can take another batch: an HTTP connection the receiver closed
    /// while idle cannot, and is replaced without counting an error. `waited` says whether the
    /// drain waited for lines since its last batch: if not, a TCP connection found open when
    /// the receiver acknowledged that batch, moments ago, is taken as open without a read
    /// (a receiver closing it since shows in the next batch's acknowledgement check, and that
    /// batch is sent again).
    ///
    /// Saves one `recvfrom` per batch a drain writes back to back (by construction; with K9's
    /// other per-line changes, -1,020 instructions a line under callgrind with 1,000 drains,
    /// benches/RESULTS.md logshuttle run 15; the system calls themselves were not counted).
    pub(crate) fn is_open(&self, waited: bool) -> bool {
        match self {
            Conn::Https(sender) => !sender.is_closed(),
            Conn::Tcp(t) => (t.open_at_ack && !waited) || peer_open(&t.stream),
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
/// batch delivered (see [`crate::acked`]). Bounded by the caller's delivery timeout. Returns
/// whether the connection was then open both ways (known only from `TCP_INFO`).
///
/// It yields once before the first check: a receiver's TCP acknowledges when the receiver
/// reads (delayed acknowledgement), so a check straight after the write mostly finds the bytes
/// unacknowledged, and costs two system calls (`SIOCOUTQ`, `SO_ERROR`) for nothing. After the
/// yield, which lets the runtime's other tasks (other drains' writes) run first, a loopback or
/// LAN receiver has mostly read and acknowledged (benches/RESULTS.md, logshuttle run 8: 2.1
/// checks per write before, about 1 after).
///
/// An empty output queue is looked at together with the socket's pending error: a reset
/// empties the queue too (the kernel drops what it can no longer send), so an empty queue with
/// a reset behind it is not an acknowledgement. A receiver killed with the batch acknowledged
/// by its TCP but not yet read resets the connection the same way; when the reset has arrived
/// by the check, the batch is sent again (at least once) rather than counted.
///
/// With `acked_at_end` (the receiver's `tcpi_bytes_acked` once everything written is
/// acknowledged), one `getsockopt(TCP_INFO)` replaces the two calls while the connection is
/// open (established, or closed by the peer after its last read: `CLOSE_WAIT`): the bytes
/// acknowledged only ever count what the receiver's TCP took, a reset does not move them, and
/// a reset or a timeout moves the connection out of those states, to the two calls, which
/// report its error. One system call a check instead of two, by construction (K8's profile of
/// main, run 14: 20,726 `ioctl` and 21,353 `getsockopt` per million lines with 1,000 drains;
/// run 15's callgrind pair counts the instructions of K9's changes together, -1,020 a line, but
/// not the system calls).
async fn acknowledged(s: &TcpStream, acked_at_end: Option<u64>) -> std::io::Result<bool> {
    use crate::acked::{CLOSE_WAIT, ESTABLISHED};
    tokio::task::yield_now().await;
    let mut wait = Duration::from_millis(1);
    loop {
        let info = match acked_at_end {
            Some(_) => crate::acked::tcp_info(s)?,
            None => None,
        };
        match (info, acked_at_end) {
            (Some(info), Some(want)) if matches!(info.state, ESTABLISHED | CLOSE_WAIT) => {
                if info.bytes_acked >= want {
                    return Ok(info.state == ESTABLISHED);
                }
            }
            _ => {
                let unacked = crate::acked::unacked(s)?;
                // A receiver that reset the connection will never acknowledge the rest.
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                if unacked == 0 {
                    return Ok(false);
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// The host's addresses that the policy allows, in the resolver's order; a
/// [`ConnectError::Refused`] naming the first refusal when there are none.
async fn allowed_addresses(url: &DrainUrl, policy: &Policy) -> Result<Vec<SocketAddr>, ConnectError> {
    let resolved = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((url.host().as_str(), url.port())))
        .await
        .map_err(|_| timed_out("name resolution"))??;
    let mut allowed = Vec::new();
    let mut refused = None;
    for addr in resolved {
        match policy.check(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(e) => {
                refused.get_or_insert(e);
            }
        }
    }
    match (allowed.is_empty(), refused) {
        (false, _) => Ok(allowed),
        (true, Some(e)) => Err(ConnectError::Refused(format!("{} resolves to a refused address: {e}", url.host()))),
        (true, None) => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host").into()),
    }
}

async fn tcp(url: &DrainUrl, policy: &Policy) -> Result<TcpStream, ConnectError> {
    let addrs = allowed_addresses(url, policy).await?;
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| timed_out("connect"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The TLS settings of a drain: the system's trust store, the configured trusted CAs, and the drain's
/// own CAs from the API.
fn tls_config(end: &Endpoint<'_>) -> std::io::Result<Arc<rustls::ClientConfig>> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    let roots =
        wharf_domain::trust::roots(end.trusted.iter().chain(end.own_ca)).map_err(|e| invalid(format!("ca: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if end.url.scheme() == DrainScheme::Https {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

async fn tls(
    end: &Endpoint<'_>,
    config: &mut Option<Arc<rustls::ClientConfig>>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    let config = match config {
        Some(c) => c.clone(),
        None => config.insert(tls_config(end)?).clone(),
    };
    // An IP literal becomes an IP server name, for which rustls sends no SNI and checks the
    // certificate's IP addresses; a name is sent as it is.
    let name = rustls::pki_types::ServerName::try_from(end.url.host().as_str().to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = tcp(end.url, &end.policy).await?;
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, stream))
        .await
        .map_err(|_| timed_out("tls handshake"))?
        .map_err(|e| {
            let server = format!("the drain at {}:{}", end.url.host(), end.url.port());
            let words =
                wharf_domain::trust::handshake_error(&e, &server, "logshuttle.trusted_ca or the drain's own CA");
            std::io::Error::new(e.kind(), words)
        })?;
    Ok(tls)
}

/// Opens a connection for the drain's scheme, to an address the policy allows; `tls` keeps the
/// drain's TLS settings between connections.
pub(crate) async fn connect(
    end: &Endpoint<'_>,
    tls_settings: &mut Option<Arc<rustls::ClientConfig>>,
) -> Result<Conn, ConnectError> {
    match end.url.scheme() {
        DrainScheme::SyslogTcp => {
            let stream = tcp(end.url, &end.policy).await?;
            let acked_at_end = crate::acked::tcp_info(&stream)?.map(|i| i.bytes_acked);
            Ok(Conn::Tcp(Tcp { stream, acked_at_end, open_at_ack: false }))
        }
        DrainScheme::SyslogTls => Ok(Conn::Tls(Box::new(tls(end, tls_settings).await?))),
        DrainScheme::Https => {
            let stream = tls(end, tls_settings).await?;
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
            let addr = allowed_addresses(end.url, &end.policy).await?[0];
            let local: SocketAddr =
                if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
            let s = UdpSocket::bind(local).await?;
            s.connect(addr).await?;
            Ok(Conn::Udp(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A receiver that resets the connection with a batch its TCP acknowledged but it never read
    /// (as a killed receiver does) has not been delivered the batch: the reset has emptied the
    /// output queue, and the empty queue must not count as an acknowledgement.
    #[tokio::test]
    async fn a_reset_with_the_batch_unread_is_not_an_acknowledgement() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        sender.write_all(b"<13>1 - - - - - - a line\n").await.unwrap();
        // The bytes are in the receiver's kernel (acknowledged), unread by its application.
        let mut one = [0u8; 1];
        receiver.peek(&mut one).await.unwrap();
        receiver.set_zero_linger().unwrap();
        drop(receiver);
        // On loopback the reset is processed within the receiver's close.
        let e = acknowledged(&sender, None).await.expect_err("a reset is not an acknowledgement");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }

    /// The same through `TCP_INFO` (the bytes acknowledged against the bytes written): the
    /// reset's connection is closed, and its error is what the check reports.
    #[tokio::test]
    async fn a_reset_is_not_an_acknowledgement_by_the_bytes_acknowledged_either() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        let at_connect = crate::acked::tcp_info(&sender).unwrap().unwrap().bytes_acked;
        let line = b"<13>1 - - - - - - a line\n";
        sender.write_all(line).await.unwrap();
        let mut one = [0u8; 1];
        receiver.peek(&mut one).await.unwrap();
        receiver.set_zero_linger().unwrap();
        drop(receiver);
        let e = acknowledged(&sender, Some(at_connect + line.len() as u64)).await.expect_err("a reset");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }

    /// Bytes the receiver has not taken are not acknowledged, however the check asks: a
    /// receiver that does not read, with more written than its window, holds the check until it
    /// reads everything; then the connection is open both ways.
    #[tokio::test]
    async fn bytes_the_receiver_has_not_taken_are_not_acknowledged() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut receiver, _) = listener.accept().await.unwrap();
        let at_connect = crate::acked::tcp_info(&sender).unwrap().unwrap().bytes_acked;
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0u64;
        while written < 64 << 20 {
            match sender.try_write(&chunk) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        for want in [None, Some(at_connect + written)] {
            let waited = tokio::time::timeout(Duration::from_millis(300), acknowledged(&sender, want)).await;
            assert!(waited.is_err(), "acknowledged with the receiver's window full ({want:?}): {waited:?}");
        }
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 1 << 20];
            let mut read = 0u64;
            while read < written {
                read += tokio::io::AsyncReadExt::read(&mut receiver, &mut sink).await.unwrap() as u64;
            }
            receiver
        });
        let open = tokio::time::timeout(Duration::from_secs(30), acknowledged(&sender, Some(at_connect + written)))
            .await
            .expect("acknowledged once read")
            .unwrap();
        assert!(open, "the receiver has not closed the connection");
        drop(reader.await.unwrap());
    }
}
