//! A syslog receiver over TCP with octet counting: every frame is checked by the strict RFC
//! 5424 parser, and anything malformed is kept as an error for the test to assert on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::rfc5424::{self, SyslogMessage};

#[derive(Debug, Default)]
struct Received {
    messages: Vec<SyslogMessage>,
    errors: Vec<String>,
    connections: usize,
}

/// A running receiver.
#[derive(Debug)]
pub struct SyslogReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl SyslogReceiver {
    /// Starts a TCP receiver expecting octet-counted RFC 5424 frames.
    pub async fn tcp() -> SyslogReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind syslog receiver");
        let addr = listener.local_addr().expect("receiver address");
        let received = Arc::new(Mutex::new(Received::default()));
        let task = tokio::spawn({
            let received = received.clone();
            async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        continue;
                    };
                    received.lock().unwrap().connections += 1;
                    let received = received.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = vec![0u8; 64 * 1024];
                        loop {
                            let n = match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            buf.extend_from_slice(&chunk[..n]);
                            let frames = rfc5424::deframe_octet_counted(&mut buf);
                            let mut r = received.lock().unwrap();
                            match frames {
                                Ok(frames) => {
                                    for f in frames {
                                        match rfc5424::parse(&f) {
                                            Ok(m) => r.messages.push(m),
                                            Err(e) => r.errors.push(format!("{e}: {:?}", String::from_utf8_lossy(&f))),
                                        }
                                    }
                                }
                                Err(e) => {
                                    r.errors.push(e);
                                    return;
                                }
                            }
                        }
                    });
                }
            }
        });
        SyslogReceiver { addr, received, task }
    }

    /// The drain URL that points here.
    pub fn url(&self) -> String {
        format!("syslog+tcp://{}", self.addr)
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
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
