//! Syslog receivers over TCP and TLS with octet counting, and over UDP with a message per
//! datagram: every message is checked by the strict RFC 5424 parser, and anything malformed is
//! kept as an error for the test to assert on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;

use crate::certs::TestCa;
use crate::rfc5424::{self, SyslogMessage};

#[derive(Debug, Default)]
struct Received {
    messages: Vec<SyslogMessage>,
    errors: Vec<String>,
    connections: usize,
    /// Connections that ended (the peer closed, or a read or handshake failed), each read to
    /// its end first.
    ended: usize,
}

/// A running receiver.
#[derive(Debug)]
pub struct SyslogReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    scheme: &'static str,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
    /// Whether stream connections are read: false from [`SyslogReceiver::tcp_paused`] until
    /// [`SyslogReceiver::resume`].
    reading: tokio::sync::watch::Sender<bool>,
}

/// How a stream receiver reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// As fast as frames arrive.
    Full,
    /// At most 16 KiB every 10 ms (1.6 MB/s): a receiver slower than the sender.
    Throttled,
    /// Accepts connections and never reads: a receiver that has hung.
    Never,
}

/// Reads octet-counted frames from one stream until it ends, parsing each, whenever `reading`.
async fn read_frames(
    mut stream: impl AsyncRead + Unpin,
    received: Arc<Mutex<Received>>,
    pace: Pace,
    mut reading: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; if pace == Pace::Throttled { 16 * 1024 } else { 64 * 1024 }];
    if pace == Pace::Never {
        // Hold the connection open, unread, until the receiver is dropped.
        std::future::pending::<()>().await;
    }
    loop {
        if reading.wait_for(|r| *r).await.is_err() {
            return;
        }
        if pace == Pace::Throttled {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let frames = rfc5424::deframe_octet_counted(&mut buf);
        let mut r = received.lock().unwrap();
        match frames {
            Ok(frames) => frames.iter().for_each(|f| r.record(f)),
            Err(e) => {
                r.errors.push(e);
                return;
            }
        }
    }
}

impl Received {
    fn record(&mut self, frame: &[u8]) {
        match rfc5424::parse(frame) {
            Ok(m) => self.messages.push(m),
            Err(e) => self.errors.push(format!("{e}: {:?}", String::from_utf8_lossy(frame))),
        }
    }
}

impl SyslogReceiver {
    /// Starts a TCP receiver expecting octet-counted RFC 5424 frames.
    pub async fn tcp() -> SyslogReceiver {
        SyslogReceiver::stream(None, "127.0.0.1:0".parse().expect("address"), Pace::Full).await
    }

    /// Starts a TCP receiver at `addr`: one that comes (back) up where a drain points.
    pub async fn tcp_at(addr: SocketAddr) -> SyslogReceiver {
        SyslogReceiver::stream(None, addr, Pace::Full).await
    }

    /// Starts a TCP receiver at `addr` that reads at most 1.6 MB/s, so that a stream of lines
    /// takes a while to arrive.
    pub async fn tcp_throttled_at(addr: SocketAddr) -> SyslogReceiver {
        SyslogReceiver::stream(None, addr, Pace::Throttled).await
    }

    /// Starts a TCP receiver that accepts connections and reads nothing from them until
    /// [`SyslogReceiver::resume`], then reads at full speed: a receiver that stalls for a while.
    pub async fn tcp_paused() -> SyslogReceiver {
        let receiver = SyslogReceiver::tcp().await;
        receiver.reading.send_replace(false);
        receiver
    }

    /// Lets a receiver from [`SyslogReceiver::tcp_paused`] read.
    pub fn resume(&self) {
        self.reading.send_replace(true);
    }

    /// Starts a TCP receiver that accepts connections and never reads from them.
    pub async fn tcp_never_reading() -> SyslogReceiver {
        SyslogReceiver::stream(None, "127.0.0.1:0".parse().expect("address"), Pace::Never).await
    }

    /// Starts a TLS receiver expecting octet-counted RFC 5424 frames, presenting a certificate
    /// for 127.0.0.1 issued by `ca`. A failed handshake is recorded as an error.
    pub async fn tls(ca: &TestCa) -> SyslogReceiver {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&["127.0.0.1"], &[]));
        SyslogReceiver::stream(Some(acceptor), "127.0.0.1:0".parse().expect("address"), Pace::Full).await
    }

    /// Starts a TLS receiver at `addr` (`[::1]:0` for IPv6) presenting a certificate for
    /// `names` issued by `ca`.
    pub async fn tls_at(ca: &TestCa, addr: SocketAddr, names: &[&str]) -> SyslogReceiver {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(names, &[]));
        SyslogReceiver::stream(Some(acceptor), addr, Pace::Full).await
    }

    async fn stream(tls: Option<tokio_rustls::TlsAcceptor>, addr: SocketAddr, pace: Pace) -> SyslogReceiver {
        let listener = TcpListener::bind(addr).await.expect("bind syslog receiver");
        let addr = listener.local_addr().expect("receiver address");
        let received = Arc::new(Mutex::new(Received::default()));
        let (reading, _) = tokio::sync::watch::channel(true);
        let task = tokio::spawn({
            let (received, tls, reading) = (received.clone(), tls.clone(), reading.clone());
            async move {
                // Connections end with the receiver: dropping the set aborts them.
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    while conns.try_join_next().is_some() {}
                    received.lock().unwrap().connections += 1;
                    let (received, tls, reading) = (received.clone(), tls.clone(), reading.subscribe());
                    conns.spawn(async move {
                        match tls {
                            None => read_frames(stream, received.clone(), pace, reading).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(s) => read_frames(s, received.clone(), pace, reading).await,
                                Err(e) => received.lock().unwrap().errors.push(format!("tls handshake: {e}")),
                            },
                        }
                        received.lock().unwrap().ended += 1;
                    });
                }
            }
        });
        let scheme = if tls.is_some() { "syslog+tls" } else { "syslog+tcp" };
        SyslogReceiver { addr, scheme, received, task, reading }
    }

    /// Starts a UDP receiver: one RFC 5424 message per datagram.
    pub async fn udp() -> SyslogReceiver {
        SyslogReceiver::udp_at("127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts a UDP receiver at `addr` (`[::1]:0` for IPv6).
    pub async fn udp_at(addr: SocketAddr) -> SyslogReceiver {
        let socket = tokio::net::UdpSocket::bind(addr).await.expect("bind syslog receiver");
        let addr = socket.local_addr().expect("receiver address");
        let received = Arc::new(Mutex::new(Received::default()));
        let task = tokio::spawn({
            let received = received.clone();
            async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = socket.recv(&mut buf).await {
                    received.lock().unwrap().record(&buf[..n]);
                }
            }
        });
        let (reading, _) = tokio::sync::watch::channel(true);
        SyslogReceiver { addr, scheme: "syslog+udp", received, task, reading }
    }

    /// The drain URL that points here.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<SyslogMessage> {
        self.received.lock().unwrap().messages.clone()
    }

    /// Frames that failed to parse.
    pub fn errors(&self) -> Vec<String> {
        self.received.lock().unwrap().errors.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.received.lock().unwrap().connections
    }

    /// Connections accepted so far that ended, each read to its end first: once it equals
    /// [`SyslogReceiver::connections`] after a sender died, the receiver holds every message
    /// the sender wrote, however much its socket still held when it died.
    pub fn connections_ended(&self) -> usize {
        self.received.lock().unwrap().ended
    }
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
