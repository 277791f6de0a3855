//! An HTTPS drain receiver: a real HTTP/1.1 server over TLS that takes logplex-1 POSTs, checks
//! every octet-counted frame of each body with the strict RFC 5424 parser, and answers with the
//! statuses a test scripts (then 200), as a log service that fails for a while would. It can
//! listen on any loopback address (IPv6 too), and also over plain HTTP, to stand behind a real
//! reverse proxy (nginx) that terminates TLS.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::certs::TestCa;
use crate::rfc5424::{self, SyslogMessage};

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
pub struct LogplexPost {
    /// The path and query.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The messages of the body, in order.
    pub messages: Vec<SyslogMessage>,
    /// Frames or bodies that were malformed.
    pub errors: Vec<String>,
    /// The status the receiver answered.
    pub status: u16,
    /// The body's length in bytes.
    pub bytes: usize,
}

impl LogplexPost {
    /// A header's value as text, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// A running receiver.
#[derive(Debug)]
pub struct LogplexReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    posts: Arc<Mutex<Vec<LogplexPost>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn handle(
    req: Request<Incoming>,
    posts: Arc<Mutex<Vec<LogplexPost>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let mut post = LogplexPost {
        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers,
        messages: Vec::new(),
        errors: Vec::new(),
        status: answers.lock().unwrap().pop_front().unwrap_or(200),
        bytes: 0,
    };
    match body.collect().await {
        Ok(body) => {
            let mut buf = body.to_bytes().to_vec();
            post.bytes = buf.len();
            match rfc5424::deframe_octet_counted(&mut buf) {
                Ok(frames) => {
                    for f in frames {
                        match rfc5424::parse(&f) {
                            Ok(m) => post.messages.push(m),
                            Err(e) => post.errors.push(format!("{e}: {:?}", String::from_utf8_lossy(&f))),
                        }
                    }
                }
                Err(e) => post.errors.push(e),
            }
            if !buf.is_empty() {
                post.errors.push(format!("{} bytes after the last whole frame", buf.len()));
            }
        }
        Err(e) => post.errors.push(format!("reading the body: {e}")),
    }
    let status = StatusCode::from_u16(post.status).expect("a scripted status");
    posts.lock().unwrap().push(post);
    let reply = Response::builder().status(status).body(Full::new(Bytes::from_static(b"noted\n")));
    Ok(reply.expect("response"))
}

impl LogplexReceiver {
    /// Starts a receiver on 127.0.0.1 with a certificate issued by `ca`, answering the first
    /// POSTs with `answers` in order and every later one with 200.
    pub async fn start(ca: &TestCa, answers: &[u16]) -> LogplexReceiver {
        LogplexReceiver::start_at(ca, "127.0.0.1:0".parse().expect("address"), &["127.0.0.1"], answers).await
    }

    /// Starts a receiver at `addr` (`[::1]:0` for IPv6) whose certificate, issued by `ca`,
    /// names `names`; answering as [`LogplexReceiver::start`] does.
    pub async fn start_at(ca: &TestCa, addr: SocketAddr, names: &[&str], answers: &[u16]) -> LogplexReceiver {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(names, &[b"http/1.1"]));
        LogplexReceiver::serve(Some(acceptor), addr, answers).await
    }

    /// Starts a plain-HTTP receiver on 127.0.0.1, for a TLS-terminating proxy to stand in front
    /// of; answering as [`LogplexReceiver::start`] does.
    pub async fn plain(answers: &[u16]) -> LogplexReceiver {
        LogplexReceiver::serve(None, "127.0.0.1:0".parse().expect("address"), answers).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, addr: SocketAddr, answers: &[u16]) -> LogplexReceiver {
        let listener = TcpListener::bind(addr).await.expect("bind https receiver");
        let addr = listener.local_addr().expect("receiver address");
        let posts = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.iter().copied().collect::<VecDeque<_>>()));
        let task = tokio::spawn({
            let posts = posts.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (tls, posts, answers) = (tls.clone(), posts.clone(), answers.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(req, posts.clone(), answers.clone()));
                        let http = hyper::server::conn::http1::Builder::new();
                        let _ = match tls {
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(s) => http.serve_connection(TokioIo::new(s), service).await,
                                Err(_) => return,
                            },
                            None => http.serve_connection(TokioIo::new(stream), service).await,
                        };
                    });
                }
            }
        });
        LogplexReceiver { addr, posts, task }
    }

    /// The drain URL that points here, with `userinfo` (`user:password`, or empty) and `path`.
    pub fn url(&self, userinfo: &str, path: &str) -> String {
        let at = if userinfo.is_empty() { String::new() } else { format!("{userinfo}@") };
        format!("https://{at}{}{path}", self.addr)
    }

    /// The POSTs received so far, in arrival order.
    pub fn posts(&self) -> Vec<LogplexPost> {
        self.posts.lock().unwrap().clone()
    }
}

impl Drop for LogplexReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
