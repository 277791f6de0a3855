//! One request through the router, in four phases: route it (host and path to an app, and the
//! app or its canary), build the request head the dyno gets, attempt it on the app's dynos
//! (another dyno only while the error says it may be tried), and finish (judge the canary,
//! answer the client, write the access line or hand it to the response body).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode, Version};

use crate::access_log::{AccessLog, RequestText};
use crate::canary::Outcome;
use crate::client::{ClientConnection, Listener};
use crate::deadline::Deadline;
use crate::dyno_client::{DynoConnection, Failed, RequestBody};
use crate::error::{Code, ProxyError};
use crate::fields::{FieldName, Fields};
use crate::forwarding::{self, HopByHop, is_replaced};
use crate::http1::encode::encode_request_head;
use crate::http1::response_head::ResponseHead;
use crate::judged::{self, Pending, Waited};
use crate::path;
use crate::pool;
use crate::response_body::{DynoBody, ProxyBody};
use crate::state::RouterState;
use crate::table::{Busy, Chosen, Dyno, WebDynos, millis_at, normalize_host_bytes};

mod canary_ended;

/// A client's request as the proxy sees it, whichever protocol it came in.
#[derive(Debug)]
pub(crate) struct ClientRequest<'a> {
    /// The method.
    pub(crate) method: &'a Method,
    /// The protocol version the client spoke.
    pub(crate) version: Version,
    /// The target's authority, when the request named one (absolute form, or HTTP/2's
    /// `:authority`); it takes the place of `Host`.
    pub(crate) authority: Option<&'a str>,
    /// The path and query, in origin form.
    pub(crate) target: &'a str,
    /// The header fields as the client sent them.
    pub(crate) fields: &'a Fields,
    /// Whether a body follows the head.
    pub(crate) has_body: bool,
}

impl ClientRequest<'_> {
    /// The path, without the query.
    fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query, without its `?`.
    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The host the request is for, as it came: the authority, or the `Host` field.
    fn raw_host(&self) -> Option<&[u8]> {
        match self.authority {
            Some(a) => Some(a.as_bytes()),
            None => self.fields.get(FieldName::Host),
        }
    }

    /// The host the request is for, as routing compares it.
    fn host(&self) -> Option<String> {
        normalize_host_bytes(self.raw_host()?)
    }

    /// The client's request id, when it sent a valid one (see
    /// [`forwarding::valid_request_id`]).
    fn request_id(&self) -> Option<&[u8]> {
        self.fields.get(FieldName::XRequestId).filter(|v| forwarding::valid_request_id(v))
    }
}

/// What the client gets.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The dyno's response: its head and its body on the way.
    Dyno(ResponseHead, ProxyBody),
    /// A response the router wrote.
    Router(RouterResponse),
    /// The dyno switched protocols: its head, the connection to join with the client's, and
    /// the access log line, written when the tunnel closes.
    Upgrade(ResponseHead, DynoConnection, Box<AccessLog>),
}

/// A response the router writes itself: a refusal, an error, a redirect, or an app's
/// maintenance page.
#[derive(Debug)]
pub(crate) struct RouterResponse {
    /// Its status.
    pub(crate) status: StatusCode,
    /// Its body: plain text, or the maintenance page's HTML.
    pub(crate) body: Bytes,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Its `Cache-Control`, when it must not be kept (a maintenance page outlives maintenance
    /// in a cache otherwise).
    pub(crate) cache_control: Option<&'static str>,
    /// Where a redirect sends the client.
    pub(crate) location: Option<String>,
}

/// The `Content-Type` of the router's plain-text answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// A plain-text response the router writes, without a `Location`.
pub(crate) fn router_response(status: StatusCode, body: &'static str) -> RouterResponse {
    RouterResponse {
        status,
        body: Bytes::from_static(body.as_bytes()),
        content_type: TEXT,
        cache_control: None,
        location: None,
    }
}

/// The answer for an app in maintenance mode (Heroku's H80): 503 with the app's page, which no
/// cache may keep. No `Retry-After`: when maintenance ends is the app owner's to decide, and
/// RFC 9110 (section 10.2.3) makes the field optional.
fn maintenance_response(page: &Bytes) -> RouterResponse {
    RouterResponse {
        status: Code::H80.status(),
        body: page.clone(),
        content_type: "text/html; charset=utf-8",
        cache_control: Some("no-store"),
        location: None,
    }
}

/// Serves one request. `first_byte` times the wait for the dyno's response head.
pub(crate) async fn handle(
    req: &ClientRequest<'_>,
    body: Option<&mut (dyn RequestBody + Send)>,
    conn: &ClientConnection,
    shared: &Arc<RouterState>,
    first_byte: &mut Deadline,
) -> Reply {
    match conn.listener {
        Listener::Http if shared.settings.http_redirect => Reply::Router(redirect(req, shared)),
        Listener::Http | Listener::Https | Listener::Internal => {
            match proxy(req, body, conn, shared, first_byte).await {
                Ok(reply) => reply,
                Err(refusal) => {
                    // Refused before the request reached an app: counted, but no access line.
                    shared.metrics.record(refusal.status.as_u16(), 0);
                    Reply::Router(refusal)
                }
            }
        }
    }
}

/// Checks the request line and header fields against the configured limits: the head's
/// parser bounds the whole head, and these bound its parts the way operators configure them.
fn check_limits(req: &ClientRequest<'_>, shared: &RouterState) -> Result<(), (StatusCode, &'static str)> {
    let s = &shared.settings;
    let target = req.target.len() + req.authority.map_or(0, str::len);
    if target + req.method.as_str().len() + 10 > s.max_request_line {
        return Err((StatusCode::URI_TOO_LONG, "request line too long\n"));
    }
    let fields = req.fields;
    // A message framed by both Content-Length and Transfer-Encoding is how requests are
    // smuggled past proxies that pick one and servers that pick the other: refuse it outright.
    if fields.contains(FieldName::TransferEncoding) && fields.contains(FieldName::ContentLength) {
        return Err((StatusCode::BAD_REQUEST, "ambiguous framing: both Content-Length and Transfer-Encoding\n"));
    }
    // Removing a field that frames or routes the request because `Connection` names it lets its
    // body reach the dyno as a request of its own.
    if forwarding::connection_names_a_field_acted_on(fields) {
        return Err((StatusCode::BAD_REQUEST, "Connection names a field the router acts on\n"));
    }
    // A coding the router would have to undo or leave unsaid is not forwarded (RFC 9112,
    // section 6.1): chunked, once, is the only transfer coding.
    if fields.contains(FieldName::TransferEncoding) {
        let mut codings = fields.tokens(FieldName::TransferEncoding);
        let only_chunked =
            codings.next().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) && codings.next().is_none();
        if !only_chunked {
            return Err((StatusCode::NOT_IMPLEMENTED, "transfer coding not implemented\n"));
        }
    }
    // One rule for every route: a request-target is ASCII (RFC 9112, section 3.2).
    if !req.target.is_ascii() {
        return Err((StatusCode::BAD_REQUEST, "invalid request target\n"));
    }
    let bytes: usize = fields.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    if bytes > s.max_header_bytes || fields.len() > s.max_headers {
        return Err((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request header fields too large\n"));
    }
    Ok(())
}

/// Sends a plain-HTTP request to the same URL over HTTPS.
fn redirect(req: &ClientRequest<'_>, shared: &RouterState) -> RouterResponse {
    let Some(host) = req.host() else {
        return router_response(StatusCode::BAD_REQUEST, "missing or invalid Host header\n");
    };
    let port = shared.settings.https_port;
    let port = if port == 443 { String::new() } else { format!(":{port}") };
    let location = format!("https://{host}{port}{}", req.target);
    if http::HeaderValue::try_from(location.as_str()).is_err() {
        return router_response(StatusCode::BAD_REQUEST, "invalid request target\n");
    }
    // 301 keeps browsers' habits for GET; 308 keeps the method and body for everything else.
    let status = if matches!(req.method, &Method::GET | &Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    RouterResponse { location: Some(location), ..router_response(status, "") }
}

/// The response for a request that failed at the dyno, by its code.
fn error_response(code: Code) -> RouterResponse {
    let body = match code {
        Code::H12 => "the app did not respond in time\n",
        Code::C10 => "the app's canary was aborted while this request waited for it\n",
        Code::H14 => "the app has no web dynos running\n",
        Code::H17 => "the app sent an invalid response\n",
        Code::H19 | Code::H21 => "the app is not accepting connections\n",
        _ => "the request could not be completed\n",
    };
    router_response(code.status(), body)
}

/// Proxies a request through its four phases; `Err` is a refusal before it reached an app.
async fn proxy(
    req: &ClientRequest<'_>,
    body: Option<&mut (dyn RequestBody + Send)>,
    conn: &ClientConnection,
    shared: &Arc<RouterState>,
    first_byte: &mut Deadline,
) -> Result<Reply, RouterResponse> {
    let started = Instant::now();
    let mut routed = route(req, conn, shared)?;
    let Chosen { web_dynos, judged, baseline } = routed.chosen;
    let started_micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    routed.request.finish(req.target, |out| match req.request_id() {
        // A valid id is ASCII.
        Some(id) => out.push_str(&String::from_utf8_lossy(id)),
        None => forwarding::push_new_request_id(out),
    });
    let request_id = routed.request.request_id();
    // An app in maintenance mode answers with its page and contacts no dyno; the table paused
    // its canary split, so nothing is judged (see `RoutingTable::compile`).
    let dyno_request = match &web_dynos.maintenance {
        Some(page) => Err(maintenance_response(page)),
        None => Ok(dyno_request(req, conn, shared, routed.path, &routed.prefix, request_id, started_micros)?),
    };
    let mut log = AccessLog {
        app: web_dynos.app.clone(),
        stats: web_dynos.stats.clone(),
        site: routed.site,
        request: routed.request,
        fwd: conn.peer_ip.clone(),
        method: req.method.clone(),
        dyno: None,
        status: 0,
        started,
        started_micros,
        connect_ms: 0,
        service_ms: 0,
        code: None,
    };
    let dyno_request = match dyno_request {
        Ok(dyno_request) => dyno_request,
        Err(page) => {
            log.status = page.status.as_u16();
            log.code = Some(Code::H80);
            log.emit(shared, page.body.len() as u64, Instant::now());
            return Ok(Reply::Router(page));
        }
    };
    let body = if req.has_body { body } else { None };
    let attempt = Attempt { request: &dyno_request, method: req.method, table_version: routed.table_version };
    let mut pending = judged.map(|(canary, arm)| Pending::new(canary, arm, shared.clone()));
    let run = attempt.run(&web_dynos, body, shared, first_byte, &mut log);
    let waited = judged::timed(pending.as_mut(), started, run).await;
    match waited {
        Waited::Done(outcome) => Ok(finish(outcome, pending, &web_dynos, log, shared)),
        Waited::CanaryEnded => {
            // Boxed: the proxy's future, which every request carries, stays as large as it was.
            let again = Box::pin(canary_ended::canary_ended(
                baseline,
                &web_dynos,
                req.has_body,
                &attempt,
                shared,
                first_byte,
                log,
            ));
            Ok(again.await)
        }
    }
}

/// Where routing sent a request.
struct Routed {
    /// The app whose dynos serve it (the routed app, or its canary), and the canary judging it.
    chosen: Chosen,
    /// The site's domain, when the host is a site's.
    site: Option<Arc<str>>,
    /// The host, normalized, with room after it for the target and the request id.
    request: RequestText,
    /// The path the dyno gets, when the route rewrites it.
    path: Option<String>,
    /// The route's prefix, for `X-Orig-Path`.
    prefix: String,
    /// The version of the routing table that routed it.
    table_version: u64,
}

/// Phase one: the request's limits, its host, the route for its path, and the app (or canary)
/// that serves it. 404 for a host or path no route serves, and for a host on the wrong listener.
fn route(req: &ClientRequest<'_>, conn: &ClientConnection, shared: &RouterState) -> Result<Routed, RouterResponse> {
    if let Err((status, body)) = check_limits(req, shared) {
        return Err(router_response(status, body));
    }
    // A UUID, the id the router makes, is 36 bytes.
    let more = req.target.len() + req.request_id().map_or(36, <[u8]>::len);
    let Some(request) = req.raw_host().and_then(|raw| RequestText::for_host(raw, more)) else {
        return Err(router_response(StatusCode::BAD_REQUEST, "missing or invalid Host header\n"));
    };
    let host = request.host();
    let table = shared.table.load();
    // Internal hosts exist only on the internal listener, and public ones only elsewhere:
    // to a client on the wrong side, the host does not exist.
    let internal = conn.listener == Listener::Internal;
    let not_found = || router_response(StatusCode::NOT_FOUND, "no such app\n");
    let entry = table.host(host).filter(|e| e.internal == internal).ok_or_else(not_found)?;
    // Dot segments go before the path is matched, so that the route that matches is the one
    // whose path the dyno resolves.
    let path = path::remove_dot_segments(req.path());
    let route = entry.route(&path).ok_or_else(not_found)?;
    let path = if route.is_identity() {
        // A route from `/` to `/` (every app's default domain) sends the path as it came, less
        // its dot segments.
        match path {
            Cow::Borrowed(_) => None,
            Cow::Owned(normalized) => Some(normalized),
        }
    } else {
        path::check_rewritable(&path)
            .map_err(|_| router_response(StatusCode::BAD_REQUEST, "invalid request path\n"))?;
        Some(route.rewrite(&path))
    };
    Ok(Routed {
        chosen: route.web_dynos.choose(),
        site: entry.site.clone(),
        request,
        path,
        prefix: route.prefix.to_string(),
        table_version: table.version,
    })
}

/// The request as a dyno gets it, the same for every attempt.
struct DynoRequest {
    /// The request head, encoded.
    head: Vec<u8>,
    /// Whether the body follows it chunked.
    chunked: bool,
    /// Whether it asks to switch protocols.
    upgrade: bool,
}

/// Phase two: the request head the dyno gets: HTTP/1.1, origin form, the client's fields but the
/// hop-by-hop ones and those the platform replaces, then the platform's. 400 for a rewritten
/// target that is not one.
fn dyno_request(
    req: &ClientRequest<'_>,
    conn: &ClientConnection,
    shared: &RouterState,
    rewritten_path: Option<String>,
    prefix: &str,
    request_id: &str,
    started_micros: i64,
) -> Result<DynoRequest, RouterResponse> {
    let fields = req.fields;
    // A WebSocket upgrade (or another the operator allows) keeps its Upgrade and Connection
    // fields; any other is forwarded as a plain request, its Upgrade left behind as hop-by-hop.
    let upgrade = is_upgrade(req.version, fields)
        .then(|| fields.get(FieldName::Upgrade))
        .flatten()
        .filter(|_| upgrade_allowed(fields, &shared.settings.upgrades));
    let rewritten;
    let target = match rewritten_path {
        Some(path) => {
            rewritten = match req.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            if !rewritten.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(router_response(StatusCode::BAD_REQUEST, "invalid request target\n"));
            }
            rewritten.as_str()
        }
        None => req.target,
    };
    let orig_host = match req.authority {
        Some(a) => Some(a.as_bytes()),
        None => fields.get(FieldName::Host),
    };
    // The platform's headers are written straight into the request head, after the client's
    // minus those they replace and the hop-by-hop ones: no header map is built for the dyno.
    let xff = forwarding::forwarded_for(fields.get_all(FieldName::XForwardedFor), &conn.peer_ip);
    let mut start_text = itoa::Buffer::new();
    let orig_prefix = if prefix.is_empty() { "/" } else { prefix };
    let upgrade_fields = upgrade.map(|protocol| [("upgrade", protocol), ("connection", &b"upgrade"[..])]);
    let host_fields = orig_host.map(|orig_host| [("host", orig_host), ("x-orig-host", orig_host)]);
    let rest = [
        ("x-forwarded-for", &*xff),
        ("x-request-id", request_id.as_bytes()),
        ("x-request-start", start_text.format(started_micros / 1000).as_bytes()),
        ("x-forwarded-path", req.target.as_bytes()),
        ("x-orig-path", orig_prefix.as_bytes()),
    ];
    let none: &[(&str, &[u8])] = &[];
    let platform = [host_fields.as_ref().map_or(none, |f| f), &rest, upgrade_fields.as_ref().map_or(none, |f| f)];
    let hop = HopByHop::of(fields);
    let all_underscores = shared.settings.drop_all_underscore_fields;
    let skip = |known: FieldName, name: &[u8]| {
        is_replaced(known) || hop.contains(known, name) || forwarding::is_underscore_spoof(known, name, all_underscores)
    };
    let (head, chunked) =
        encode_request_head(req.method, target, fields, skip, &platform, &conn.fixed_fields, req.has_body);
    Ok(DynoRequest { head, chunked, upgrade: upgrade.is_some() })
}

/// Phase three: a request's attempts on an app's dynos.
struct Attempt<'a> {
    request: &'a DynoRequest,
    method: &'a Method,
    /// The version of the routing table that routed the request, for the pool's pruning.
    table_version: u64,
}

impl Attempt<'_> {
    /// Sends the request to the next dyno in turn until one answers or a failure may not be
    /// retried: another dyno is tried when the error's code says it may be
    /// ([`Code::retryable`], connecting failed) while connect attempts remain, and a fresh
    /// connection when a pooled one turned out closed before it took any of the request.
    async fn run(
        &self,
        web_dynos: &WebDynos,
        mut body: Option<&mut (dyn RequestBody + Send)>,
        shared: &Arc<RouterState>,
        first_byte: &mut Deadline,
        log: &mut AccessLog,
    ) -> Result<(ResponseHead, DynoConnection), ProxyError> {
        let settings = &shared.settings;
        let mut failed_connects = 0u32;
        let mut stale = 0u32;
        // The clock is read once per attempt, when its connection is ready (or failed): that
        // reading times the exchange, or starts the next attempt. The first attempt starts at
        // the request's start.
        let mut attempt_start = log.started;
        loop {
            let now = millis_at(attempt_start);
            let Some(dyno) = web_dynos.pick(now).cloned() else {
                return Err(ProxyError::bare(Code::H14));
            };
            log.dyno = Some(Busy::new(dyno.clone()));
            let connect_from = attempt_start;
            let checkout =
                pool::checkout(&dyno, settings.connect_timeout, shared, self.table_version, connect_from).await;
            attempt_start = Instant::now();
            let mut c = match checkout {
                Ok(c) => {
                    dyno.mark_reached();
                    c
                }
                Err(e) => {
                    quarantine(&dyno, web_dynos, shared, &e, attempt_start);
                    failed_connects += 1;
                    if e.code.retryable()
                        && failed_connects < settings.connect_attempts
                        && (failed_connects as usize) < web_dynos.dynos.len()
                    {
                        continue;
                    }
                    return Err(e);
                }
            };
            let sent = attempt_start;
            log.connect_ms = sent.saturating_duration_since(connect_from).as_millis() as u64;
            let answer = {
                let request = self.request;
                let exchange =
                    std::pin::pin!(c.exchange(&request.head, &mut body, request.chunked, self.method, request.upgrade));
                first_byte.timeout_at(sent + settings.first_byte_timeout, exchange).await
            };
            match answer {
                Err(_) => return Err(ProxyError::bare(Code::H12)),
                Ok(Ok(resp)) => {
                    log.service_ms = sent.elapsed().as_millis() as u64;
                    return Ok((resp, c));
                }
                // Nothing was sent: a pooled connection closed under us. Try a fresh one.
                Ok(Err(Failed::NotSent(_))) if c.reused && stale < 2 => stale += 1,
                Ok(Err(Failed::NotSent(e))) => return Err(ProxyError::new(Code::H13, e)),
                Ok(Err(Failed::Sent(e))) => return Err(e),
            }
        }
    }
}

/// Quarantines a dyno that could not be connected to, from when the connect failed (not when
/// it began). Out of line and cold, so that the path of a request whose connection is ready
/// stays in one piece (benches/RESULTS.md, router run 20).
#[cold]
#[inline(never)]
fn quarantine(dyno: &Dyno, web_dynos: &WebDynos, shared: &RouterState, e: &ProxyError, failed_at: Instant) {
    dyno.quarantine(millis_at(failed_at) + shared.settings.quarantine.as_millis() as u64);
    shared.metrics.connect_error();
    shared.metrics.quarantine();
    tracing::info!(app = %web_dynos.app, dyno = %dyno.name, code = e.code.as_str(), "dyno quarantined after a failed connect");
}

/// Phase four: the canary judges the outcome (unless it counted the request as slow already),
/// and the client gets the dyno's response (whose body writes the access line when it ends), a
/// tunnel, or the router's error response (the access line written now).
fn finish(
    outcome: Result<(ResponseHead, DynoConnection), ProxyError>,
    judged: Option<Pending>,
    web_dynos: &WebDynos,
    mut log: AccessLog,
    shared: &Arc<RouterState>,
) -> Reply {
    // Only outcomes that say something about a side's code are judged. The router's own "no
    // web dynos" (H14) says nothing about either side's code, only that a side has no dyno (the
    // app's web scaled down or crashing): counted on the baseline, it would make any canary look
    // better. (A canary without dynos takes no share at all, see `RoutingTable::compile`; an
    // H14 there is a request routed by the table before.) Nor does a failed connect (H19,
    // H21) to a dyno this router has never reached: after a `kill -9` of Wharf, the dynos the
    // dead process registered stay in the store, their processes gone, until the new one
    // removes them, and every request routed to them fails this way on both sides alike.
    // Counted, they filled a soak with requests that never reached the canary's code and
    // drowned the baseline's rate. A failed connect to a dyno that answered before is its
    // process gone (a crash), and counts.
    let unjudged = matches!(&outcome, Err(e) if e.code == Code::H14
        || (e.code.retryable() && log.dyno.as_ref().is_some_and(|d| !d.was_reached())));
    if let Some(mut pending) = judged {
        match &outcome {
            // Not counted at all: dropped counted, so not taken for abandoned either.
            _ if unjudged => pending.skip(),
            Ok((resp, _)) => pending.count(Outcome::Status(resp.status.as_u16())),
            Err(e) => pending.count(Outcome::Status(e.code.status().as_u16())),
        }
    }
    match outcome {
        Ok((resp, c)) if resp.status == StatusCode::SWITCHING_PROTOCOLS => {
            log.status = 101;
            Reply::Upgrade(resp, c, Box::new(log))
        }
        Ok((resp, c)) => {
            log.status = resp.status.as_u16();
            let body = DynoBody::wrap(c, resp.body, resp.keep_alive, log, shared.clone());
            Reply::Dyno(resp, body)
        }
        Err(e) => {
            let code = e.code;
            log.status = code.status().as_u16();
            log.code = Some(code);
            tracing::debug!(app = %web_dynos.app, error = %e, "request failed");
            let response = error_response(code);
            log.emit(shared, response.body.len() as u64, Instant::now());
            Reply::Router(response)
        }
    }
}

/// Whether every protocol a request's `Upgrade` names is one the router tunnels (`allowed`,
/// lowercase names without versions). `h2c` never is (RFC 9113, section 3.1): HTTP/2 frames
/// tunnelled to a dyno would pass the router unseen.
fn upgrade_allowed(fields: &Fields, allowed: &[Box<str>]) -> bool {
    fields.tokens(FieldName::Upgrade).all(|protocol| {
        let name = protocol.split(|&b| b == b'/').next().unwrap_or_default().trim_ascii();
        !name.eq_ignore_ascii_case(b"h2c") && allowed.iter().any(|a| name.eq_ignore_ascii_case(a.as_bytes()))
    })
}

/// Whether a request asks to switch protocols (a WebSocket handshake, most often).
fn is_upgrade(version: Version, fields: &Fields) -> bool {
    version == Version::HTTP_11
        && fields.contains(FieldName::Upgrade)
        && fields.has_token(FieldName::Connection, "upgrade")
}
