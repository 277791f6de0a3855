//! Plain HTTP/1.1 servers standing in for the peers Wharf calls out to: a webhook receiver
//! ([`HookReceiver`]) that records every request and answers scripted statuses, and a file host
//! ([`FileHost`]) that answers `GET`s of the paths it was given, or redirects them, as GitHub's
//! archive endpoints do. Each answers one request per connection and closes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request a peer took.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request target (path and query).
    pub target: String,
    /// Its header fields, names in lowercase.
    pub headers: HashMap<String, String>,
    /// Its body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// When the whole request had been read (to compare gaps between attempts, never to
    /// assert a duration).
    pub at: std::time::Instant,
}

impl Received {
    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// Reads one request (head, then `Content-Length` bytes of body); `None` when the peer closed
/// first.
async fn read_request(conn: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    Some(Received { target, headers, body, at: std::time::Instant::now() })
}

/// Writes an answer with these extra header lines (each ending in CRLF) and body, and closes.
async fn answer(conn: &mut TcpStream, status: u16, extra: &str, body: &[u8]) {
    let head = format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body).await;
    let _ = conn.shutdown().await;
}

/// A webhook's receiver: records every request and answers it with the next scripted status
/// (200 once the script is used up).
#[derive(Debug)]
pub struct HookReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HookReceiver {
    /// Listens on a free loopback port, answering with `script`'s statuses in turn.
    pub async fn start(script: &[u16]) -> HookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.to_vec()));
        let seen = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut conn).await else { return };
                    let status = {
                        let mut s = script.lock().expect("script");
                        if s.is_empty() { 200 } else { s.remove(0) }
                    };
                    seen.lock().expect("received").push(request);
                    answer(&mut conn, status, "", b"").await;
                });
            }
        });
        HookReceiver { addr, received, task }
    }

    /// The URL to give Wharf: `http://ADDR/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every request taken so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a [`FileHost`] answers for a path.
#[derive(Debug, Clone)]
enum Route {
    /// 200 with these bytes.
    File(Vec<u8>),
    /// 302 to this `Location`.
    Redirect(String),
}

/// A host of files: `GET PATH` answers what [`FileHost::serve`] or [`FileHost::redirect`] set
/// for exactly that path, 404 otherwise.
#[derive(Debug)]
pub struct FileHost {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    /// The targets of the requests taken, oldest first.
    taken: Arc<Mutex<Vec<String>>>,
    /// Connections accepted, a request read from them or not.
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FileHost {
    /// Listens on a free loopback port, with nothing to serve yet.
    pub async fn start() -> FileHost {
        FileHost::start_on(std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Listens on a free port of `ip` (an address of this machine), with nothing to serve yet.
    pub async fn start_on(ip: std::net::IpAddr) -> FileHost {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let taken: Arc<Mutex<Vec<String>>> = Arc::default();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, seen, accepted) = (routes.clone(), taken.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (served, seen) = (served.clone(), seen.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut conn).await else { return };
                    seen.lock().expect("taken").push(request.target.clone());
                    let route = served.lock().expect("routes").get(&request.target).cloned();
                    match route {
                        Some(Route::File(body)) => answer(&mut conn, 200, "", &body).await,
                        Some(Route::Redirect(to)) => answer(&mut conn, 302, &format!("Location: {to}\r\n"), b"").await,
                        None => answer(&mut conn, 404, "", b"").await,
                    }
                });
            }
        });
        FileHost { addr, routes, taken, connections, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (an IPv6 address in brackets), to put a path after.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The targets of the requests taken so far, oldest first.
    pub fn taken(&self) -> Vec<String> {
        self.taken.lock().expect("taken").clone()
    }

    /// How many connections it accepted so far, whether a request came on them or not.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers `GET path` with `body`.
    pub fn serve(&self, path: &str, body: Vec<u8>) {
        self.routes.lock().expect("routes").insert(path.to_owned(), Route::File(body));
    }

    /// Answers `GET path` with a 302 to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.routes.lock().expect("routes").insert(path.to_owned(), Route::Redirect(location.to_owned()));
    }
}

impl Drop for FileHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}
