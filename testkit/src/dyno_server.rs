//! Dyno servers: real HTTP/1.1 servers on loopback standing in for an app's web dynos, that
//! answer with a fixed body and record every request they receive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A request as a dyno server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Seen {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A running dyno server.
#[derive(Debug)]
pub struct DynoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    conns: Conns,
}

/// A failing dyno server's error rate and its seeded draws.
#[derive(Debug, Clone)]
struct Errors {
    rate: f64,
    rng: Arc<Mutex<fastrand::Rng>>,
}

/// The tasks serving a dyno server's connections, so that killing it closes them too.
type Conns = Arc<Mutex<Vec<tokio::task::AbortHandle>>>;

/// Accepts connections on `listener` and serves each with `serve` until the dyno server is killed.
fn accept_loop<F, Fut>(listener: TcpListener, conns: Conns, serve: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = tokio::spawn(serve(stream));
            conns.lock().unwrap().push(handle.abort_handle());
        }
    })
}

/// Lets a [`DynoServer::held`] answer the requests it holds, and every later one.
#[derive(Debug)]
pub struct Hold(tokio::sync::watch::Sender<bool>);

impl Hold {
    /// Answers every held request now.
    pub fn release(&self) {
        let _ = self.0.send(true);
    }

    /// Holds the requests that come from now on again, until the next [`Hold::release`]; those
    /// already answered are not affected.
    pub fn hold(&self) {
        let _ = self.0.send(false);
    }
}

impl DynoServer {
    /// Starts a dyno server answering every request with `200` and `body`.
    pub async fn start(reply: &'static str) -> DynoServer {
        DynoServer::start_gated(reply, None, None).await
    }

    /// Starts a dyno server that answers `500` to each request with probability `error_rate` and
    /// `200` otherwise, always with `body`: a release with a known error rate. The draws come
    /// from `seed`, so a run repeats. It keeps no record of the requests, only their number.
    pub async fn failing(reply: &'static str, error_rate: f64, seed: u64) -> DynoServer {
        let errors = Errors { rate: error_rate, rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))) };
        DynoServer::start_gated(reply, None, Some(errors)).await
    }

    /// Starts a dyno server that records each request at once but answers only after
    /// [`Hold::release`]: a dyno with requests in flight.
    pub async fn held(reply: &'static str) -> (DynoServer, Hold) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (DynoServer::start_gated(reply, Some(rx), None).await, Hold(tx))
    }

    async fn start_gated(
        reply: &'static str,
        gate: Option<tokio::sync::watch::Receiver<bool>>,
        errors: Option<Errors>,
    ) -> DynoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind dyno server");
        let addr = listener.local_addr().expect("dyno server address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let conns = Conns::default();
        let task = accept_loop(listener, conns.clone(), {
            let (seen, count) = (seen.clone(), count.clone());
            move |stream| {
                let (seen, count, gate, errors) = (seen.clone(), count.clone(), gate.clone(), errors.clone());
                async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (seen, count, gate, errors) = (seen.clone(), count.clone(), gate.clone(), errors.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            count.fetch_add(1, Ordering::Relaxed);
                            if let Some(errors) = errors {
                                let fail = errors.rng.lock().unwrap().f64() < errors.rate;
                                let mut r = Response::new(Full::new(Bytes::from_static(reply.as_bytes())));
                                if fail {
                                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                                }
                                return Ok::<_, Infallible>(r);
                            }
                            seen.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            });
                            if let Some(mut gate) = gate {
                                let _ = gate.wait_for(|open| *open).await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(reply.as_bytes()))))
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
        DynoServer { addr, seen, count, task, conns }
    }

    /// Starts a dyno server that accepts connections, reads what it is sent, and never answers:
    /// a dyno stuck before its first byte.
    pub async fn silent() -> DynoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind dyno server");
        let addr = listener.local_addr().expect("dyno server address");
        let conns = Conns::default();
        let task = accept_loop(listener, conns.clone(), |mut stream| async move {
            let mut buf = [0u8; 4096];
            while tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await.is_ok_and(|n| n > 0) {}
        });
        DynoServer { addr, seen: Arc::default(), count: Arc::default(), task, conns }
    }

    /// Starts a WebSocket server that echoes every text and binary message back.
    pub async fn websocket_echo() -> DynoServer {
        use futures_util::{SinkExt, StreamExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind dyno server");
        let addr = listener.local_addr().expect("dyno server address");
        let conns = Conns::default();
        let task = accept_loop(listener, conns.clone(), |stream| async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    return;
                }
            }
        });
        DynoServer { addr, seen: Arc::default(), count: Arc::default(), task, conns }
    }

    /// Stops accepting and closes every open connection, as a crashed dyno would.
    pub fn kill(&self) {
        self.task.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Connections accepted and not yet closed (by the client, or by [`DynoServer::kill`]).
    pub fn open_connections(&self) -> usize {
        self.conns.lock().unwrap().iter().filter(|c| !c.is_finished()).count()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for DynoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A web dyno for the supervisor's tests, as a Python script run with `python3 SCRIPT`: listens on
/// `127.0.0.1:$PORT`, answers `GET /` with `$GREETING` and `GET /NAME` with `$NAME` (or `none`),
/// and prints `listening on PORT as DYNO PID` once it listens. With `FAIL_EVERY=N`, every `N`th
/// request it serves answers 500 with the same body (a release with a known error rate); with
/// `NOT_FOUND_EVERY=N`, every `N`th answers 404 (a release whose routes broke); with
/// `DELAY_SECONDS=S`, every answer waits `S` seconds first (a slow release, or with a long
/// delay one that hangs); with `HANG_UP=1`, it closes every connection without an answer (one
/// that crashes mid-request). `GET /sleep/S` prints `sleeping for /sleep/S` and answers
/// `$GREETING` after `S` seconds (a long request, in flight while the dyno is stopped).
pub const PYTHON_WEB_DYNO: &str = r#"
import http.server, itertools, os, time
fail_every = int(os.environ.get("FAIL_EVERY", "0"))
not_found_every = int(os.environ.get("NOT_FOUND_EVERY", "0"))
delay = float(os.environ.get("DELAY_SECONDS", "0"))
hang_up = os.environ.get("HANG_UP") == "1"
served = itertools.count(1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if hang_up:
            self.close_connection = True
            return
        name = self.path[1:] or "GREETING"
        if self.path.startswith("/sleep/"):
            print("sleeping for", self.path, flush=True)
            time.sleep(float(self.path[len("/sleep/"):]))
            name = "GREETING"
        time.sleep(delay)
        body = os.environ.get(name, "none").encode()
        n = next(served)
        failed = fail_every > 0 and n % fail_every == 0
        missing = not_found_every > 0 and n % not_found_every == 0
        self.send_response(500 if failed else 404 if missing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
port = int(os.environ["PORT"])
print("listening on", port, "as", os.environ["DYNO"], os.getpid(), flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// A web dyno's program for tests that deploy code (`app.py`, run by `python3 app.py` from a
/// Procfile): an HTTP/1.1 server on `$PORT` answering every GET with the bytes of `body.txt` in its
/// working directory, so that an answer tells which release's files the dyno runs in. It prints
/// `listening on PORT in DIR` once it listens.
pub const BODY_TXT_APP_PY: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = open("body.txt", "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
port = int(os.environ["PORT"])
print("listening on", port, "in", os.getcwd(), flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;
