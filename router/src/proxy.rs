//! One request through the router: find the app by host and path, pick a dyno, forward with the
//! platform's headers, and stream the response back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Shared;
use crate::body::{AccessLog, ProxyBody, UpstreamBody};
use crate::error::{Code, ProxyError};
use crate::pool;
use crate::table::{normalize_host, now_millis};
use crate::upstream::Failed;

/// What kind of listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Plain HTTP: every request is redirected to HTTPS.
    Http,
    /// Public HTTPS: never serves internal sites or apps.
    Https,
    /// Internal HTTPS: serves only internal sites and apps.
    Internal,
}

/// Facts about a client connection that every request on it shares.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) listener: Listener,
    /// The client's address as text, formatted once for all of the connection's requests.
    pub(crate) peer_ip: HeaderValue,
    /// The port the client connected to, for `X-Forwarded-Port`.
    pub(crate) port: HeaderValue,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, listener: Listener, port: u16) -> Self {
        let peer_ip = HeaderValue::try_from(peer.ip().to_string()).expect("an IP address is a valid header value");
        ConnInfo { peer, listener, peer_ip, port: HeaderValue::from(port) }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 wharf");

/// Serves one request.
pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(match conn.listener {
        Listener::Http if shared.settings.http_redirect => redirect(&req, &shared),
        Listener::Http | Listener::Https | Listener::Internal => {
            let mut resp = proxy(req, &conn, shared.clone()).await;
            if conn.listener != Listener::Http
                && let Some(hsts) = &shared.settings.hsts
                && !resp.headers().contains_key(header::STRICT_TRANSPORT_SECURITY)
            {
                resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
            resp
        }
    })
}

/// A response the router writes before the request reaches an app, counted in the metrics.
fn refuse(shared: &Shared, status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    shared.metrics.record(status.as_u16(), 0);
    text(status, body)
}

/// Checks the request line and header fields against the configured limits: hyper bounds the
/// whole head, and these bound its parts the way operators configure them.
fn check_limits<B>(req: &Request<B>, shared: &Shared) -> Result<(), (StatusCode, &'static str)> {
    let s = &shared.settings;
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if target + req.method().as_str().len() + 10 > s.max_request_line {
        return Err((StatusCode::URI_TOO_LONG, "request line too long\n"));
    }
    let headers = req.headers();
    // A message framed by both Content-Length and Transfer-Encoding is how requests are
    // smuggled past proxies that pick one and servers that pick the other: refuse it outright.
    if headers.contains_key(header::TRANSFER_ENCODING) && headers.contains_key(header::CONTENT_LENGTH) {
        return Err((StatusCode::BAD_REQUEST, "ambiguous framing: both Content-Length and Transfer-Encoding\n"));
    }
    let bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if bytes > s.max_header_bytes || headers.len() > s.max_headers {
        return Err((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request header fields too large\n"));
    }
    Ok(())
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn request_host(req: &Request<Incoming>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    normalize_host(raw)
}

/// Sends a plain-HTTP request to the same URL over HTTPS.
fn redirect(req: &Request<Incoming>, shared: &Shared) -> Response<ProxyBody> {
    let Some(host) = request_host(req) else {
        return text(StatusCode::BAD_REQUEST, "missing or invalid Host header\n");
    };
    let port = shared.settings.https_port;
    let port = if port == 443 { String::new() } else { format!(":{port}") };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(location) = HeaderValue::try_from(format!("https://{host}{port}{path}")) else {
        return text(StatusCode::BAD_REQUEST, "invalid request target\n");
    };
    // 301 keeps browsers' habits for GET; 308 keeps the method and body for everything else.
    let status = if matches!(req.method(), &http::Method::GET | &http::Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut r = text(status, "");
    r.headers_mut().insert(header::LOCATION, location);
    r
}

/// A request id is kept when it is 20 to 200 characters of `[A-Za-z0-9+/=-]`, as Heroku does.
fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (20..=200).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b"+/=-".contains(c))
}

/// A random request id in UUID (version 4) form. Not a secret, so a fast generator suffices.
fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// Headers that describe one connection, not the message, and never cross a proxy.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present finds the few to remove; most messages have none, and
    // removing every listed name by lookup would hash each of them for nothing.
    let mut remove: Vec<HeaderName> = headers.keys().filter(|k| HOP_BY_HOP.contains(k)).cloned().collect();
    if remove.is_empty() {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    if remove.contains(&header::CONNECTION) {
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok());
        remove.extend(named.collect::<Vec<_>>());
    }
    for name in &remove {
        headers.remove(name);
    }
}

/// Header fields of the client's request that the dyno does not get as they came: the platform
/// writes its own (`Via` is appended to, the rest replaced), and hop-by-hop fields stay behind.
fn replaced_or_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "x-orig-host"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-port"
            | "x-request-id"
            | "x-request-start"
            | "x-forwarded-path"
            | "x-orig-path"
            | "x-orig-proto"
            | "x-orig-port"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The fields a `Connection` header names, which are hop-by-hop too; usually none.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

fn error_response(code: Code) -> Response<ProxyBody> {
    let body = match code {
        Code::H12 => "the app did not respond in time\n",
        Code::H14 => "the app has no web dynos running\n",
        Code::H17 => "the app sent an invalid response\n",
        Code::H19 | Code::H21 => "the app is not accepting connections\n",
        _ => "the request could not be completed\n",
    };
    text(code.status(), body)
}

async fn proxy(mut req: Request<Incoming>, conn: &ConnInfo, shared: Arc<Shared>) -> Response<ProxyBody> {
    let started = Instant::now();
    if let Err((status, body)) = check_limits(&req, &shared) {
        return refuse(&shared, status, body);
    }
    let Some(host) = request_host(&req) else {
        return refuse(&shared, StatusCode::BAD_REQUEST, "missing or invalid Host header\n");
    };
    let (backend, site, upstream_path, orig_prefix) = {
        let table = shared.table.load();
        // Internal hosts exist only on the internal listener, and public ones only elsewhere:
        // to a client on the wrong side, the host does not exist.
        let internal = conn.listener == Listener::Internal;
        let Some(entry) = table.host(&host).filter(|e| e.internal == internal) else {
            return refuse(&shared, StatusCode::NOT_FOUND, "no such app\n");
        };
        let Some(route) = entry.route(req.uri().path()) else {
            return refuse(&shared, StatusCode::NOT_FOUND, "no such app\n");
        };
        // A route from `/` to `/` (every app's default domain) sends the path as it came.
        let rewritten = (!route.is_identity()).then(|| route.rewrite(req.uri().path()));
        (route.backend.choose(), entry.site.clone(), rewritten, route.prefix.to_string())
    };
    let crate::table::Chosen { backend, judged } = backend;

    // A WebSocket (or other HTTP/1.1) upgrade keeps its Upgrade and Connection headers, and
    // the client's side of the upgraded connection is claimed before the request moves on.
    let upgrade = is_upgrade(req.version(), req.headers())
        .then(|| (req.headers().get(header::UPGRADE).cloned(), hyper::upgrade::on(&mut req)));
    let (mut parts, body) = req.into_parts();
    let orig_path = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let request_id = match parts.headers.get(&X_REQUEST_ID) {
        Some(v) if valid_request_id(v) => v.to_str().unwrap_or_default().to_owned(),
        _ => new_request_id(),
    };
    let mut log = AccessLog {
        app: backend.app.clone(),
        stats: backend.stats.clone(),
        site,
        host: host.clone(),
        fwd: conn.peer_ip.clone(),
        method: parts.method.clone(),
        path: orig_path.clone(),
        request_id,
        dyno: None,
        status: 0,
        started,
        connect_ms: 0,
        service_ms: 0,
        code: None,
    };

    // The request as the dyno sees it: HTTP/1.1, origin-form, the platform's headers.
    let uri = match upstream_path {
        Some(path) => {
            let target = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            match Uri::try_from(target) {
                Ok(uri) => Some(uri),
                Err(_) => return refuse(&shared, StatusCode::BAD_REQUEST, "invalid request target\n"),
            }
        }
        None if parts.uri.authority().is_some() => {
            Some(Uri::from(parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"))))
        }
        None => None,
    };
    let orig_host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    if let Some(uri) = uri {
        parts.uri = uri;
    }
    parts.version = Version::HTTP_11;
    // The platform's headers are written straight into the request head, after the client's
    // minus those they replace and the hop-by-hop ones: no header map is built for the dyno.
    let h = &parts.headers;
    let xff = match h.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_ip.as_bytes());
            v
        }
        None => conn.peer_ip.as_bytes().to_vec(),
    };
    let start_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut start_text = itoa::Buffer::new();
    let proto: &[u8] = if conn.listener == Listener::Http { b"http" } else { b"https" };
    let port = conn.port.as_bytes();
    let orig_prefix = if orig_prefix.is_empty() { "/" } else { orig_prefix.as_str() };
    let mut platform: Vec<(&str, &[u8])> = Vec::with_capacity(14);
    if let Some(orig_host) = &orig_host {
        platform.push(("host", orig_host.as_bytes()));
        platform.push(("x-orig-host", orig_host.as_bytes()));
    }
    platform.push(("x-forwarded-for", &xff));
    if let Some((Some(protocol), _)) = &upgrade {
        platform.push(("upgrade", protocol.as_bytes()));
        platform.push(("connection", b"upgrade"));
    }
    platform.extend([
        ("x-forwarded-proto", proto),
        ("x-forwarded-port", port),
        ("x-request-id", log.request_id.as_bytes()),
        ("x-request-start", start_text.format(start_ms).as_bytes()),
        ("via", VIA_VALUE.as_bytes()),
        ("x-forwarded-path", orig_path.as_bytes()),
        ("x-orig-path", orig_prefix.as_bytes()),
        ("x-orig-proto", proto),
        ("x-orig-port", port),
    ]);
    let named = connection_named(h);
    let skip = |name: &HeaderName| replaced_or_hop_by_hop(name) || named.contains(name);
    let has_body = !body.is_end_stream();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let (head, chunked) = crate::upstream::encode_head(&parts.method, target, h, skip, &platform, has_body);
    let mut body = has_body.then_some(body);

    let settings = &shared.settings;
    let mut failed_connects = 0u32;
    let mut stale = 0u32;
    let outcome = loop {
        let now = now_millis();
        let Some(dyno) = backend.pick(now).cloned() else {
            break Err(ProxyError::bare(Code::H14));
        };
        log.dyno = Some(dyno.name.clone());
        let connect_start = Instant::now();
        let mut c = match pool::checkout(&dyno, settings.connect_timeout, &shared.pool_stats).await {
            Ok(c) => c,
            Err(e) => {
                dyno.quarantine(now + settings.quarantine.as_millis() as u64);
                shared.metrics.connect_error();
                shared.metrics.quarantine();
                tracing::info!(app = %backend.app, dyno = %dyno.name, code = e.code.as_str(), "dyno quarantined after a failed connect");
                failed_connects += 1;
                if failed_connects < settings.connect_attempts && (failed_connects as usize) < backend.dynos.len() {
                    continue;
                }
                break Err(e);
            }
        };
        log.connect_ms = connect_start.elapsed().as_millis() as u64;
        let sent = Instant::now();
        let exchange = c.exchange(&head, &mut body, chunked, &parts.method, upgrade.is_some());
        match tokio::time::timeout(settings.first_byte_timeout, exchange).await {
            Err(_) => break Err(ProxyError::bare(Code::H12)),
            Ok(Ok(resp)) => {
                log.service_ms = sent.elapsed().as_millis() as u64;
                break Ok((resp, c));
            }
            // Nothing was sent: a pooled connection closed under us. Try a fresh one.
            Ok(Err(Failed::NotSent(_))) if c.reused && stale < 2 => stale += 1,
            Ok(Err(Failed::NotSent(e))) => break Err(ProxyError::new(Code::H13, e)),
            Ok(Err(Failed::Sent(e))) => break Err(e),
        }
    };

    if let Some((canary, arm)) = judged {
        let status = match &outcome {
            Ok((resp, _)) => resp.parts.status.as_u16(),
            Err(e) => e.code.status().as_u16(),
        };
        canary.judge(&shared, arm, status);
    }

    match outcome {
        Ok((resp, c)) if resp.parts.status == StatusCode::SWITCHING_PROTOCOLS => {
            let (_, client) = upgrade.expect("a 101 is only accepted for an upgrade request");
            let mut parts = resp.parts;
            let protocol = parts.headers.get(header::UPGRADE).cloned();
            strip_hop_by_hop(&mut parts.headers);
            if let Some(p) = protocol {
                parts.headers.insert(header::UPGRADE, p);
                parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            log.status = 101;
            let idle = settings.idle_timeout;
            tokio::spawn(async move {
                match client.await {
                    Ok(client) => {
                        let mut client = TokioIo::new(client);
                        // What the dyno sent right after its head is the tunnel's first bytes.
                        let early = c.buf.len() as u64;
                        let bytes = match client.write_all(&c.buf).await {
                            Ok(()) => early + tunnel(client, c.stream, idle).await,
                            Err(_) => 0,
                        };
                        log.emit(&shared, bytes);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "upgrade failed");
                        log.code = Some(Code::H13);
                        log.emit(&shared, 0);
                    }
                }
            });
            Response::from_parts(parts, ProxyBody::full(""))
        }
        Ok((resp, c)) => {
            let mut parts = resp.parts;
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.append(header::VIA, VIA_VALUE.clone());
            log.status = parts.status.as_u16();
            let body = UpstreamBody::wrap(c, resp.framing, resp.keep_alive, log, shared);
            Response::from_parts(parts, body)
        }
        Err(e) => {
            let code = e.code;
            log.status = code.status().as_u16();
            log.code = Some(code);
            tracing::debug!(app = %backend.app, error = %e, "request failed");
            let resp = error_response(code);
            log.emit(&shared, resp.body().size_hint().exact().unwrap_or(0));
            resp
        }
    }
}

/// Whether a request asks to switch protocols (a WebSocket handshake, most often).
fn is_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Copies an upgraded connection both ways until both sides close, or until neither has sent
/// anything for `idle`. Returns the bytes sent to the client.
async fn tunnel(
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    mut dyno: impl AsyncRead + AsyncWrite + Unpin,
    idle: std::time::Duration,
) -> u64 {
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut client_open, mut dyno_open) = (true, true);
    let mut sent = 0u64;
    while client_open || dyno_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = client.read(&mut up), if client_open => match r {
                    Ok(0) | Err(_) => { client_open = false; let _ = dyno.shutdown().await; Ok(()) }
                    Ok(n) => dyno.write_all(&up[..n]).await,
                },
                r = dyno.read(&mut down), if dyno_open => match r {
                    Ok(0) | Err(_) => { dyno_open = false; let _ = client.shutdown().await; Ok(()) }
                    Ok(n) => { sent += n as u64; client.write_all(&down[..n]).await }
                },
            }
        })
        .await;
        if !matches!(step, Ok(Ok(()))) {
            break;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let check = |v: &str, want: bool| assert_eq!(valid_request_id(&HeaderValue::from_str(v).unwrap()), want, "{v}");
        check("abcdefghij0123456789", true);
        check("24FB1BE9-D54C-4BF8-AE0C-DCAEC5CD2BE1", true);
        check("a+b/c=d-e0123456789xyz", true);
        check("short", false);
        check(&"a".repeat(201), false);
        check("abcdefghij 0123456789", false);
        check("abcdefghij_0123456789", false);
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert!(valid_request_id(&HeaderValue::from_str(&id).unwrap()));
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }
}
