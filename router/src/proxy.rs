//! One request through the router: find the app by host and path, pick a dyno, forward with the
//! platform's headers, and stream the response back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Shared;
use crate::body::{AccessLog, ProxyBody, UpstreamBody};
use crate::deadline::Deadline;
use crate::error::{Code, ProxyError};
use crate::fields::{Fields, Name};
use crate::pool;
use crate::table::{millis_at, normalize_host, normalize_host_bytes};
use crate::upstream::{Failed, Head, RequestBody, UpConn};

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
    /// The platform's fields that are the same for every request on the connection (protocol,
    /// the port the client connected to, `Via`), as header lines ready to copy into each request
    /// head in one piece.
    pub(crate) fixed_fields: Box<[u8]>,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, listener: Listener, port: u16) -> Self {
        let peer_ip = HeaderValue::try_from(peer.ip().to_string()).expect("an IP address is a valid header value");
        let proto = if listener == Listener::Http { "http" } else { "https" };
        let fixed_fields = format!(
            "x-forwarded-proto: {proto}\r\nx-forwarded-port: {port}\r\nvia: {VIA}\r\n\
             x-orig-proto: {proto}\r\nx-orig-port: {port}\r\n"
        );
        ConnInfo { peer, listener, peer_ip, fixed_fields: fixed_fields.into_bytes().into_boxed_slice() }
    }
}

/// What the router puts in `Via`.
pub(crate) const VIA: &str = "1.1 wharf";

static VIA_VALUE: HeaderValue = HeaderValue::from_static(VIA);

/// A client's request as the proxy sees it, whichever protocol it came in.
#[derive(Debug)]
pub(crate) struct ClientRequest<'a> {
    pub(crate) method: &'a Method,
    pub(crate) version: Version,
    /// The target's authority, when the request named one (absolute form, or HTTP/2's
    /// `:authority`); it takes the place of `Host`.
    pub(crate) authority: Option<&'a str>,
    /// The path and query, in origin form.
    pub(crate) target: &'a str,
    pub(crate) fields: &'a Fields,
    /// Whether a body follows the head.
    pub(crate) has_body: bool,
}

impl ClientRequest<'_> {
    fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The host the request is for, as routing compares it.
    fn host(&self) -> Option<String> {
        match self.authority {
            Some(a) => normalize_host(a),
            None => normalize_host_bytes(self.fields.get(Name::Host)?),
        }
    }
}

/// What the client gets.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The dyno's response: its head and its body on the way.
    Dyno(Head, ProxyBody),
    /// A response the router wrote.
    Own(Own),
    /// The dyno switched protocols: its head, the connection to join with the client's, and
    /// the access log line, written when the tunnel closes.
    Upgrade(Head, UpConn, Box<AccessLog>),
}

/// A response the router writes itself: a refusal, an error or a redirect.
#[derive(Debug)]
pub(crate) struct Own {
    pub(crate) status: StatusCode,
    pub(crate) body: &'static str,
    pub(crate) location: Option<String>,
}

fn own(status: StatusCode, body: &'static str) -> Reply {
    Reply::Own(Own { status, body, location: None })
}

/// Serves one request. `first_byte` times the wait for the dyno's response head.
pub(crate) async fn handle(
    req: &ClientRequest<'_>,
    body: Option<&mut (dyn RequestBody + Send)>,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    first_byte: &mut Deadline,
) -> Reply {
    match conn.listener {
        Listener::Http if shared.settings.http_redirect => redirect(req, shared),
        Listener::Http | Listener::Https | Listener::Internal => proxy(req, body, conn, shared, first_byte).await,
    }
}

/// The `Strict-Transport-Security` value to add to a response, if any: on HTTPS, when the
/// response sets none of its own.
pub(crate) fn hsts<'a>(conn: &ConnInfo, shared: &'a Shared, has_own: bool) -> Option<&'a HeaderValue> {
    if conn.listener == Listener::Http || has_own { None } else { shared.settings.hsts.as_ref() }
}

/// Serves an HTTP/2 request through hyper's server.
pub(crate) async fn handle_h2(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let fields = Fields::from_map(&parts.headers);
    let request = ClientRequest {
        method: &parts.method,
        version: parts.version,
        authority: parts.uri.authority().map(|a| a.as_str()),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        fields: &fields,
        has_body: !http_body::Body::is_end_stream(&body),
    };
    let mut first_byte = Deadline::new(shared.settings.first_byte_timeout);
    let reply = handle(&request, Some(&mut body), &conn, &shared, &mut first_byte).await;
    let (status, mut headers, body) = match reply {
        Reply::Own(o) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            if let Some(location) = o.location.and_then(|l| HeaderValue::try_from(l).ok()) {
                headers.insert(header::LOCATION, location);
            }
            (o.status, headers, ProxyBody::full(o.body))
        }
        Reply::Dyno(head, body) => {
            let hop = HopByHop::of(&head.fields);
            let mut headers = head.fields.to_map(|known, n| hop.contains(known, n)).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "a response field HTTP/2 cannot carry was left out");
                HeaderMap::new()
            });
            headers.append(header::VIA, VIA_VALUE.clone());
            (head.status, headers, body)
        }
        // Only an HTTP/1.1 request asks for an upgrade, and only such a request accepts a 101.
        Reply::Upgrade(..) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), ProxyBody::full("")),
    };
    if let Some(v) = hsts(&conn, &shared, headers.contains_key(header::STRICT_TRANSPORT_SECURITY)) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// A response the router writes before the request reaches an app, counted in the metrics.
fn refuse(shared: &Shared, status: StatusCode, body: &'static str) -> Reply {
    shared.metrics.record(status.as_u16(), 0);
    own(status, body)
}

/// Checks the request line and header fields against the configured limits: the head's
/// parser bounds the whole head, and these bound its parts the way operators configure them.
fn check_limits(req: &ClientRequest<'_>, shared: &Shared) -> Result<(), (StatusCode, &'static str)> {
    let s = &shared.settings;
    let target = req.target.len() + req.authority.map_or(0, str::len);
    if target + req.method.as_str().len() + 10 > s.max_request_line {
        return Err((StatusCode::URI_TOO_LONG, "request line too long\n"));
    }
    let fields = req.fields;
    // A message framed by both Content-Length and Transfer-Encoding is how requests are
    // smuggled past proxies that pick one and servers that pick the other: refuse it outright.
    if fields.contains(Name::TransferEncoding) && fields.contains(Name::ContentLength) {
        return Err((StatusCode::BAD_REQUEST, "ambiguous framing: both Content-Length and Transfer-Encoding\n"));
    }
    let bytes: usize = fields.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    if bytes > s.max_header_bytes || fields.len() > s.max_headers {
        return Err((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request header fields too large\n"));
    }
    Ok(())
}

/// Sends a plain-HTTP request to the same URL over HTTPS.
fn redirect(req: &ClientRequest<'_>, shared: &Shared) -> Reply {
    let Some(host) = req.host() else {
        return own(StatusCode::BAD_REQUEST, "missing or invalid Host header\n");
    };
    let port = shared.settings.https_port;
    let port = if port == 443 { String::new() } else { format!(":{port}") };
    let location = format!("https://{host}{port}{}", req.target);
    if HeaderValue::try_from(location.as_str()).is_err() {
        return own(StatusCode::BAD_REQUEST, "invalid request target\n");
    }
    // 301 keeps browsers' habits for GET; 308 keeps the method and body for everything else.
    let status = if matches!(req.method, &Method::GET | &Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    Reply::Own(Own { status, body: "", location: Some(location) })
}

/// A request id is kept when it is 20 to 200 characters of `[A-Za-z0-9+/=-]`, as Heroku does.
fn valid_request_id(b: &[u8]) -> bool {
    (20..=200).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b"+/=-".contains(c))
}

/// A random request id in UUID (version 4) form. Not a secret, so a fast generator suffices.
fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    bytes[8..].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut id = [b'-'; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        id[at] = HEX[usize::from(b >> 4)];
        id[at + 1] = HEX[usize::from(b & 15)];
        at += 2;
    }
    String::from_utf8(id.to_vec()).expect("hex digits and dashes are ASCII")
}

/// Whether the client's field is one the platform writes its own of (`Via` is appended to,
/// the rest replaced), so the dyno does not get it as it came.
fn is_replaced(known: Name) -> bool {
    use Name::*;
    matches!(
        known,
        Host | XOrigHost
            | XForwardedFor
            | XForwardedProto
            | XForwardedPort
            | XRequestId
            | XRequestStart
            | XForwardedPath
            | XOrigPath
            | XOrigProto
            | XOrigPort
    )
}

/// The fields of a message that stay on its hop and never cross a proxy: the standard
/// hop-by-hop ones and those its `Connection` field names.
pub(crate) struct HopByHop<'a> {
    /// Names from `Connection` that are not standard hop-by-hop names; nearly always none, so
    /// nothing is allocated.
    named: Vec<&'a [u8]>,
}

impl<'a> HopByHop<'a> {
    pub(crate) fn of(fields: &'a Fields) -> HopByHop<'a> {
        let named = fields.tokens(Name::Connection).filter(|option| !is_hop_by_hop(Name::of(option))).collect();
        HopByHop { named }
    }

    /// Whether the field `name` (known as `known`) stays on this hop.
    pub(crate) fn contains(&self, known: Name, name: &[u8]) -> bool {
        is_hop_by_hop(known) || self.named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Whether a field describes one connection, not the message. `close` is reserved as a field
/// name because it is a connection option.
fn is_hop_by_hop(known: Name) -> bool {
    use Name::*;
    matches!(
        known,
        Close
            | Connection
            | KeepAlive
            | ProxyConnection
            | ProxyAuthenticate
            | ProxyAuthorization
            | Te
            | Trailer
            | TransferEncoding
            | Upgrade
    )
}

fn error_reply(code: Code) -> Own {
    let body = match code {
        Code::H12 => "the app did not respond in time\n",
        Code::H14 => "the app has no web dynos running\n",
        Code::H17 => "the app sent an invalid response\n",
        Code::H19 | Code::H21 => "the app is not accepting connections\n",
        _ => "the request could not be completed\n",
    };
    Own { status: code.status(), body, location: None }
}

async fn proxy(
    req: &ClientRequest<'_>,
    body: Option<&mut (dyn RequestBody + Send)>,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    first_byte: &mut Deadline,
) -> Reply {
    let started = Instant::now();
    if let Err((status, body)) = check_limits(req, shared) {
        return refuse(shared, status, body);
    }
    let Some(host) = req.host() else {
        return refuse(shared, StatusCode::BAD_REQUEST, "missing or invalid Host header\n");
    };
    let (backend, site, upstream_path, orig_prefix) = {
        let table = shared.table.load();
        // Internal hosts exist only on the internal listener, and public ones only elsewhere:
        // to a client on the wrong side, the host does not exist.
        let internal = conn.listener == Listener::Internal;
        let Some(entry) = table.host(&host).filter(|e| e.internal == internal) else {
            return refuse(shared, StatusCode::NOT_FOUND, "no such app\n");
        };
        let Some(route) = entry.route(req.path()) else {
            return refuse(shared, StatusCode::NOT_FOUND, "no such app\n");
        };
        // A route from `/` to `/` (every app's default domain) sends the path as it came.
        let rewritten = (!route.is_identity()).then(|| route.rewrite(req.path()));
        (route.backend.choose(), entry.site.clone(), rewritten, route.prefix.to_string())
    };
    let crate::table::Chosen { backend, judged } = backend;

    let fields = req.fields;
    // A WebSocket (or other HTTP/1.1) upgrade keeps its Upgrade and Connection headers.
    let upgrade = is_upgrade(req.version, fields).then(|| fields.get(Name::Upgrade)).flatten();
    let request_id = match fields.get(Name::XRequestId) {
        Some(v) if valid_request_id(v) => String::from_utf8_lossy(v).into_owned(),
        _ => new_request_id(),
    };
    let started_micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    let mut log = AccessLog {
        app: backend.app.clone(),
        stats: backend.stats.clone(),
        site,
        host,
        fwd: conn.peer_ip.clone(),
        method: req.method.clone(),
        path: req.target.to_owned(),
        request_id,
        dyno: None,
        status: 0,
        started,
        started_micros,
        connect_ms: 0,
        service_ms: 0,
        code: None,
    };

    // The request as the dyno sees it: HTTP/1.1, origin-form, the platform's headers.
    let rewritten;
    let target = match upstream_path {
        Some(path) => {
            rewritten = match req.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            if !rewritten.bytes().all(|b| b.is_ascii_graphic()) {
                return refuse(shared, StatusCode::BAD_REQUEST, "invalid request target\n");
            }
            rewritten.as_str()
        }
        None => req.target,
    };
    let orig_host = match req.authority {
        Some(a) => Some(a.as_bytes()),
        None => fields.get(Name::Host),
    };
    // The platform's headers are written straight into the request head, after the client's
    // minus those they replace and the hop-by-hop ones: no header map is built for the dyno.
    let xff: std::borrow::Cow<'_, [u8]> = match fields.get(Name::XForwardedFor) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.peer_ip.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_ip.as_bytes());
            v.into()
        }
        None => conn.peer_ip.as_bytes().into(),
    };
    let start_ms = started_micros / 1000;
    let mut start_text = itoa::Buffer::new();
    let orig_prefix = if orig_prefix.is_empty() { "/" } else { orig_prefix.as_str() };
    let upgrade_fields = upgrade.map(|protocol| [("upgrade", protocol), ("connection", &b"upgrade"[..])]);
    let host_fields = orig_host.map(|orig_host| [("host", orig_host), ("x-orig-host", orig_host)]);
    let rest = [
        ("x-forwarded-for", &*xff),
        ("x-request-id", log.request_id.as_bytes()),
        ("x-request-start", start_text.format(start_ms).as_bytes()),
        ("x-forwarded-path", req.target.as_bytes()),
        ("x-orig-path", orig_prefix.as_bytes()),
    ];
    let none: &[(&str, &[u8])] = &[];
    let platform = [host_fields.as_ref().map_or(none, |f| f), &rest, upgrade_fields.as_ref().map_or(none, |f| f)];
    let hop = HopByHop::of(fields);
    let skip = |known: Name, name: &[u8]| is_replaced(known) || hop.contains(known, name);
    let (head, chunked) =
        crate::upstream::encode_head(req.method, target, fields, skip, &platform, &conn.fixed_fields, req.has_body);
    let mut body = if req.has_body { body } else { None };

    let settings = &shared.settings;
    let mut failed_connects = 0u32;
    let mut stale = 0u32;
    // The clock is read once per attempt, when its connection is ready (or failed): that
    // reading times the exchange, or starts the next attempt. The first attempt starts at the
    // request's start.
    let mut attempt_start = started;
    let outcome = loop {
        let now = millis_at(attempt_start);
        let Some(dyno) = backend.pick(now).cloned() else {
            break Err(ProxyError::bare(Code::H14));
        };
        log.dyno = Some(dyno.clone());
        let connect_from = attempt_start;
        let checkout = pool::checkout(&dyno, settings.connect_timeout, &shared.pool_stats, connect_from).await;
        attempt_start = Instant::now();
        let mut c = match checkout {
            Ok(c) => c,
            Err(e) => {
                // The quarantine counts from when the connect failed, not when it began.
                dyno.quarantine(millis_at(attempt_start) + settings.quarantine.as_millis() as u64);
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
        let sent = attempt_start;
        log.connect_ms = sent.saturating_duration_since(connect_from).as_millis() as u64;
        let answer = {
            let exchange = std::pin::pin!(c.exchange(&head, &mut body, chunked, req.method, upgrade.is_some()));
            first_byte.timeout_at(sent + settings.first_byte_timeout, exchange).await
        };
        match answer {
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
            Ok((resp, _)) => resp.status.as_u16(),
            Err(e) => e.code.status().as_u16(),
        };
        canary.judge(shared, arm, status);
    }

    match outcome {
        Ok((resp, c)) if resp.status == StatusCode::SWITCHING_PROTOCOLS => {
            log.status = 101;
            Reply::Upgrade(resp, c, Box::new(log))
        }
        Ok((resp, c)) => {
            log.status = resp.status.as_u16();
            let body = UpstreamBody::wrap(c, resp.framing, resp.keep_alive, log, shared.clone());
            Reply::Dyno(resp, body)
        }
        Err(e) => {
            let code = e.code;
            log.status = code.status().as_u16();
            log.code = Some(code);
            tracing::debug!(app = %backend.app, error = %e, "request failed");
            let reply = error_reply(code);
            log.emit(shared, reply.body.len() as u64, Instant::now());
            Reply::Own(reply)
        }
    }
}

/// Whether a request asks to switch protocols (a WebSocket handshake, most often).
fn is_upgrade(version: Version, fields: &Fields) -> bool {
    version == Version::HTTP_11 && fields.contains(Name::Upgrade) && fields.has_token(Name::Connection, "upgrade")
}

/// Copies an upgraded connection both ways until both sides close, or until neither has sent
/// anything for `idle`. Returns the bytes sent to the client.
pub(crate) async fn tunnel(
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
        let check = |v: &str, want: bool| assert_eq!(valid_request_id(v.as_bytes()), want, "{v}");
        check("abcdefghij0123456789", true);
        check("24FB1BE9-D54C-4BF8-AE0C-DCAEC5CD2BE1", true);
        check("a+b/c=d-e0123456789xyz", true);
        check("short", false);
        check(&"a".repeat(201), false);
        check("abcdefghij 0123456789", false);
        check("abcdefghij_0123456789", false);
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert!(valid_request_id(id.as_bytes()));
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn hop_by_hop_fields_are_named() {
        let mut map = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret, close, Upgrade"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("close", "reserved"),
            ("proxy-authorization", "Basic eA=="),
            ("x-kept", "yes"),
            ("x-forwarded-for", "10.0.0.1"),
        ] {
            map.insert(http::HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let fields = Fields::from_map(&map);
        let hop = HopByHop::of(&fields);
        // Only the option that is not a standard hop-by-hop name is kept aside.
        assert_eq!(hop.named, [b"X-Secret"]);
        let kept: Vec<_> = fields.iter().filter(|&(k, n, _)| !hop.contains(k, n)).map(|(_, n, _)| n).collect();
        assert_eq!(kept, [&b"x-kept"[..], b"x-forwarded-for"]);
        let passed: Vec<_> =
            fields.iter().filter(|&(k, n, _)| !is_replaced(k) && !hop.contains(k, n)).map(|(_, n, _)| n).collect();
        assert_eq!(passed, [b"x-kept"], "the platform writes its own X-Forwarded-For");
    }
}
