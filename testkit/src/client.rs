//! A small HTTP/1.1 and HTTP/2 client over plain TCP or rustls, one connection per request, so
//! tests control exactly which address, SNI name and Host header each request uses.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// A response read to the end.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The protocol version the server answered with.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// TLS settings trusting one CA, offering h2 and http/1.1 (or only one of them).
pub fn tls_config(ca_pem: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca_pem).expect("CA file");
    tls_config_trusting(&pem, alpn, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

/// TLS settings trusting the CAs in `ca_pem`, offering these ALPN protocols and TLS versions.
pub fn tls_config_trusting(
    ca_pem: &[u8],
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA certificate")).expect("CA is a valid trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A request to send: method, host (for Host and SNI), path, headers, body.
#[derive(Debug, Clone)]
pub struct Req {
    /// The method.
    pub method: Method,
    /// The host the request names.
    pub host: String,
    /// The path and query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Req {
    /// A GET of `path` on `host`.
    pub fn get(host: &str, path: &str) -> Req {
        Req { method: Method::GET, host: host.into(), path: path.into(), headers: vec![], body: Bytes::new() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn build(&self, version: Version) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(self.method.clone()).version(version);
        b = if version == Version::HTTP_2 {
            b.uri(format!("https://{}{}", self.host, self.path))
        } else {
            b.uri(&self.path).header("host", &self.host)
        };
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(self.body.clone())).expect("valid request")
    }
}

/// Sends a request over a new connection to `addr`, with TLS when `tls` is given, and returns
/// the response with its body still streaming.
pub async fn send_streaming(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    req: &Req,
) -> Result<http::Response<Incoming>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let Some(tls) = tls else {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        return sender.send_request(req.build(Version::HTTP_11)).await.map_err(|e| e.to_string());
    };
    let name = ServerName::try_from(req.host.clone()).map_err(|e| e.to_string())?;
    let stream =
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req.build(Version::HTTP_2)).await.map_err(|e| e.to_string())
    } else {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req.build(Version::HTTP_11)).await.map_err(|e| e.to_string())
    }
}

/// What a TLS handshake settled on.
#[derive(Debug)]
pub struct Handshake {
    /// The leaf certificate the server presented, in DER.
    pub leaf_der: Vec<u8>,
    /// The protocol version.
    pub version: rustls::ProtocolVersion,
}

/// Completes a TLS handshake with `addr` naming `sni`, verifying the server's certificate.
/// The error is a message naming the step that failed: connecting, the name, or TLS.
pub async fn handshake(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>, sni: &str) -> Result<Handshake, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let stream =
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
    let conn = stream.get_ref().1;
    let leaf_der = conn.peer_certificates().and_then(|c| c.first()).ok_or("no certificate")?.to_vec();
    Ok(Handshake { leaf_der, version: conn.protocol_version().ok_or("no version")? })
}

/// What one request over a new TLS connection showed about session resumption.
#[derive(Debug)]
pub struct Resumption {
    /// TLS 1.3 session tickets the server sent.
    pub tickets: u32,
    /// Whether the handshake resumed an earlier session (with a ticket from `tls`'s store)
    /// instead of being a full one.
    pub resumed: bool,
    /// Everything the server sent back, until it closed.
    pub response: String,
}

/// Sends a GET for `host` with `Connection: close` over a new TLS connection naming `host`,
/// reads until the server closes, and says how many session tickets came and whether the
/// handshake resumed a session; the tickets go to `tls`'s session store for the next one.
/// The error is a message: connecting, TLS, writing, or no close within 10 seconds.
pub async fn resumption(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>, host: &str) -> Result<Resumption, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let mut stream =
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .map_err(|_| "no end of response within 10s".to_owned())?
        .map_err(|e| e.to_string())?;
    let conn = stream.get_ref().1;
    Ok(Resumption {
        tickets: conn.tls13_tickets_received(),
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        response: String::from_utf8_lossy(&out).into_owned(),
    })
}

/// Sends a request (over TLS when `tls` is given) and reads the whole response body into
/// memory. The error is a message from connecting, TLS, HTTP or reading the body.
pub async fn send(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>, req: &Req) -> Result<Response, String> {
    let resp = send_streaming(addr, tls, req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response { status: parts.status, version: parts.version, headers: parts.headers, body })
}

/// Writes `bytes` as they are over a new connection (TLS with SNI `host` when `tls` is given)
/// and returns everything the server sends until it closes, or for at most five seconds.
pub async fn send_raw(
    addr: SocketAddr,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
    bytes: &[u8],
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn exchange(mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, bytes: &[u8]) -> String {
        let mut out = Vec::new();
        if s.write_all(bytes).await.is_err() {
            return String::new();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    match tls {
        None => Ok(exchange(tcp, bytes).await),
        Some((config, host)) => {
            let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            Ok(exchange(stream, bytes).await)
        }
    }
}

/// Opens a WebSocket (RFC 6455) through TLS to `addr`, naming `host`, at `path`. The error is
/// a message from connecting, TLS or the opening handshake.
pub async fn websocket(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    path: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let stream =
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
    let (ws, resp) = tokio_tungstenite::client_async(format!("wss://{host}{path}"), stream)
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("websocket handshake answered {}", resp.status()));
    }
    Ok(ws)
}

/// A client of the control API.
#[derive(Debug, Clone)]
pub struct Api {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The bearer token, if any.
    pub token: Option<String>,
}

impl Api {
    /// Calls `method path` with an optional JSON body; returns the status and the JSON answer.
    pub async fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
        let mut req = Req::get(&self.addr.to_string(), path);
        req.method = Method::from_bytes(method.as_bytes()).expect("method");
        if let Some(t) = &self.token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json");
            req.body = Bytes::from(b.to_string());
        }
        self.raw(&req).await
    }

    /// Calls `method path` with a JSON body and asserts the status; returns the JSON answer.
    pub async fn expect(&self, method: &str, path: &str, body: serde_json::Value, want: u16) -> serde_json::Value {
        let (status, out) = self.call(method, path, Some(body)).await;
        assert_eq!(status, want, "{method} {path}: {out}");
        out
    }

    /// The text of app `app`'s log history through a new log session with `filters`
    /// (`POST /apps/{app}/log-sessions`, then a `GET` of its `logplex_url`), asked again until it
    /// contains `wanted`; panics after `wait`.
    pub async fn log_session_until(
        &self,
        app: &str,
        filters: serde_json::Value,
        wanted: &str,
        wait: std::time::Duration,
    ) -> String {
        let path = format!("/apps/{app}/log-sessions");
        crate::eventually(wait, wanted, || async {
            let session = self.expect("POST", &path, filters.clone(), 201).await;
            let url = session["logplex_url"].as_str().expect("a logplex_url").to_owned();
            let rest = url.split_once("://").expect("an absolute logplex_url").1;
            let (authority, path) = rest.split_once('/').expect("a path in the logplex_url");
            let r = send(authority.parse().ok()?, None, &Req::get(authority, &format!("/{path}"))).await.ok()?;
            let text = r.text();
            text.contains(wanted).then_some(text)
        })
        .await
    }

    /// Creates the app `key` (`name-space`) with one web dyno per backend.
    pub async fn create_app(&self, key: &str, backends: &[&crate::dyno_server::DynoServer]) {
        let (name, space) = key.split_once('-').expect("an app key");
        self.expect("POST", "/apps", serde_json::json!({"name": name, "space": space}), 201).await;
        for (i, b) in backends.iter().enumerate() {
            let body = serde_json::json!({"type": "web", "host": "127.0.0.1", "port": b.port()});
            self.expect("PUT", &format!("/apps/{key}/dynos/web.{i}"), body, 201).await;
        }
    }

    /// Sends a prepared request; returns the status and the JSON answer (`null` when empty).
    pub async fn raw(&self, req: &Req) -> (u16, serde_json::Value) {
        let r = send(self.addr, None, req).await.expect("control API answers");
        let json = if r.body.is_empty() { serde_json::Value::Null } else { r.json() };
        (r.status.as_u16(), json)
    }
}

/// One answer of a [`load`] run.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// Sends `GET /` on `host` to `addr` in rounds of [`load`] (100 requests over 4 connections)
/// until `done` turns true, as a client keeps using an app while it rolls; returns every answer,
/// or the first request that failed outright.
pub fn load_until(
    addr: SocketAddr,
    host: &'static str,
    done: &Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Result<Vec<Answer>, String>> {
    let done = done.clone();
    tokio::spawn(async move {
        let mut answers = Vec::new();
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            answers.extend(load(addr, host, "/", 100, 4).await?);
        }
        Ok(answers)
    })
}

/// Sends `total` GETs of `path` on `host` over `connections` plain-HTTP keep-alive connections
/// at once, each connection sending its next request when the last one is answered. Returns
/// the answers in the order they arrived; a request that fails outright is an error.
pub async fn load(
    addr: SocketAddr,
    host: &str,
    path: &str,
    total: usize,
    connections: usize,
) -> Result<Vec<Answer>, String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answers = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (next, answers, req) = (next.clone(), answers.clone(), Req::get(host, path));
        tasks.spawn(async move {
            let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                sender.ready().await.map_err(|e| e.to_string())?;
                let resp = sender.send_request(req.build(Version::HTTP_11)).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
                answers.lock().expect("answers lock").push(Answer { status, body });
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    let answers = std::mem::take(&mut *answers.lock().expect("answers lock"));
    Ok(answers)
}

/// A response body read as it streams (an `output_stream_url`, a log session): what arrived so
/// far, and whether it ended.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The status.
    pub status: StatusCode,
    body: Arc<std::sync::Mutex<(String, bool)>>,
}

impl Followed {
    /// `GET path` at `addr` (plain HTTP/1.1), its body read in the background as it comes.
    pub async fn start(addr: SocketAddr, path: &str) -> Followed {
        let res =
            send_streaming(addr, None, &Req::get(&addr.to_string(), path)).await.expect("the request is answered");
        let status = res.status();
        let body = Arc::new(std::sync::Mutex::new((String::new(), false)));
        let into = body.clone();
        tokio::spawn(async move {
            let mut stream = res.into_body();
            while let Some(Ok(frame)) = stream.frame().await {
                if let Ok(data) = frame.into_data() {
                    into.lock().unwrap().0.push_str(&String::from_utf8_lossy(&data));
                }
            }
            into.lock().unwrap().1 = true;
        });
        Followed { status, body }
    }

    /// What arrived so far.
    pub fn text(&self) -> String {
        self.body.lock().unwrap().0.clone()
    }

    /// Waits (at most `timeout`) until what arrived contains `piece`; returns it all. Panics,
    /// naming `piece` and what arrived, past the deadline or if the body ends without it.
    pub async fn until(&self, piece: &str, timeout: std::time::Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (text, ended) = self.body.lock().unwrap().clone();
            if text.contains(piece) {
                return text;
            }
            assert!(!ended, "the stream ended without {piece:?}: {text}");
            assert!(tokio::time::Instant::now() < deadline, "no {piece:?} within {timeout:?}: {text}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most `timeout`) for the body to end; returns it all.
    pub async fn ended(&self, timeout: std::time::Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (text, ended) = self.body.lock().unwrap().clone();
            if ended {
                return text;
            }
            assert!(tokio::time::Instant::now() < deadline, "the stream did not end within {timeout:?}: {text}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
