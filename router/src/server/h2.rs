//! HTTP/2 connections, served by hyper: its server drives the connection, and each request goes
//! through the same proxy as HTTP/1.1's, with header maps built at this edge only. A connection
//! with no request in flight on which the router makes no progress for the header timeout
//! (whatever the client sends meanwhile: PINGs, SETTINGS, a head a byte at a time, or nothing)
//! is asked to end with GOAWAY, as an idle HTTP/1.1 one is closed; one whose client leaves a
//! header block unfinished for the header timeout is dropped, as a slow HTTP/1.1 head is.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::client::ClientConnection;
use crate::deadline::Deadline;
use crate::fields::Fields;
use crate::forwarding::{HopByHop, VIA_VALUE};
use crate::proxy::{self, ClientRequest, Reply};
use crate::response_body::ProxyBody;
use crate::state::RouterState;

/// Drives hyper's HTTP/2 connection until it ends. On shutdown, or once the connection is quiet
/// (see [`Activity::quiet`]), hyper is asked to finish the requests in flight and close
/// (GOAWAY); a connection still open when it is quiet again is dropped. A connection whose
/// client leaves a header block unfinished for the header timeout is dropped at once.
pub(super) async fn serve<IO>(
    io: IO,
    conn: Arc<ClientConnection>,
    shared: Arc<RouterState>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // HPACK counts 32 bytes of overhead per field; the limit covers the same fields that
    // HTTP/1.1's does.
    let list = shared.settings.max_header_bytes + 32 * shared.settings.max_headers;
    b.timer(TokioTimer::new()).max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX));
    let limits = Limits { idle: shared.settings.header_timeout, silent_response: shared.settings.idle_timeout };
    let activity = Arc::new(Activity::new());
    let in_flight = activity.clone();
    let svc = service_fn(move |req| {
        let guard = InFlight::enter(&in_flight);
        let (conn, shared) = (conn.clone(), shared.clone());
        // Boxed: the proxy's future is large, and hyper moves the service's future into a
        // stream task, tokio into the task's cell, and back out when it finishes; a box makes
        // each of those moves a pointer's. Unboxed, copying it was a tenth of an HTTP/2
        // request's instructions (benches/RESULTS.md, run 11).
        Box::pin(async move {
            let response = handle(req, conn, shared).await;
            // The request stays in flight until hyper has sent its response body (or the
            // client reset the stream): that is when hyper drops the body.
            let in_flight = guard.into_body();
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _in_flight: in_flight }))
        })
    });
    let watched = Watched { io, activity: activity.clone(), frames: Frames::default() };
    let c = b.serve_connection(TokioIo::new(watched), svc);
    tokio::pin!(c);
    let result = tokio::select! {
        r = c.as_mut() => r,
        // The guard `wait_for` returns must not live across the await below.
        () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            c.as_mut().graceful_shutdown();
            c.await
        }
        quiet = activity.quiet(limits) => {
            if quiet == Quiet::HeadStalled {
                tracing::debug!(timeout = ?limits.idle, "a header block stayed unfinished: connection dropped");
                return;
            }
            c.as_mut().graceful_shutdown();
            tokio::select! {
                r = c.as_mut() => r,
                _ = activity.quiet(limits) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// How long an HTTP/2 connection may stay quiet.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// With no request in flight (the header timeout); also how long a header block may take.
    idle: Duration,
    /// With only response bodies in flight that the router cannot send (the client's flow
    /// control window is closed) and no other progress (the idle timeout).
    silent_response: Duration,
}

/// Why [`Activity::quiet`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// No progress for the limit that applies.
    Idle,
    /// A header block (or a frame header) has been arriving for longer than the header timeout.
    HeadStalled,
}

/// What a connection's requests are doing, shared by its transport, its requests and its
/// watch. Only the router's own progress counts: a request handed to the proxy or finished,
/// and bytes written while a request is in flight. Bytes the client sends do not, so a client
/// cannot hold a connection open with PINGs, SETTINGS, or a request head sent a byte at a time.
///
/// Progress is a counter, not a time: the requests and the transport only bump it, and the
/// watch reads the clock when it wakes and sees it moved, so the per-request path reads no
/// clock (three clock reads a request were a measurable share of an HTTP/2 request's cost).
/// The watch wakes every quarter of the limit, so a connection is found quiet between the limit
/// and a quarter more after its last progress.
struct Activity {
    opened: Instant,
    /// Bumped at every progress.
    progress: AtomicU64,
    /// Requests whose handler runs.
    handlers: AtomicUsize,
    /// Requests whose response body hyper still holds.
    bodies: AtomicUsize,
    /// One more than the milliseconds from `opened` to when an unfinished header block (or frame
    /// header) was first seen; 0 while none is.
    head_open: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            progress: AtomicU64::new(0),
            handlers: AtomicUsize::new(0),
            bodies: AtomicUsize::new(0),
            head_open: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    fn in_flight(&self) -> bool {
        self.handlers.load(Ordering::Relaxed) + self.bodies.load(Ordering::Relaxed) > 0
    }

    /// Notes whether the client is in the middle of a header block.
    fn set_head_open(&self, open: bool) {
        let at = if open { u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX) + 1 } else { 0 };
        self.head_open.store(at, Ordering::Relaxed);
    }

    /// Returns once the connection is quiet: no handler runs, and there was no progress for
    /// `limits.idle` with no response body in flight either, or for `limits.silent_response`
    /// with one; or a header block has been open for `limits.idle` (RFC 9113 §6.10: no other
    /// frame may come while it is, so the client has stalled the connection itself). Quiet is
    /// counted from the call at the earliest.
    async fn quiet(&self, limits: Limits) -> Quiet {
        let step = (limits.idle / 4).max(Duration::from_millis(100));
        let (mut seen, mut moved) = (self.progress.load(Ordering::Relaxed), Instant::now());
        loop {
            let now = Instant::now();
            let mut wait = step;
            let head_open = self.head_open.load(Ordering::Relaxed);
            if head_open > 0 {
                let since = now.duration_since(self.opened).saturating_sub(Duration::from_millis(head_open - 1));
                if since >= limits.idle {
                    return Quiet::HeadStalled;
                }
                wait = wait.min(limits.idle - since);
            }
            let progress = self.progress.load(Ordering::Relaxed);
            if progress != seen {
                (seen, moved) = (progress, now);
            }
            if self.handlers.load(Ordering::Relaxed) == 0 {
                let limit = if self.bodies.load(Ordering::Relaxed) == 0 { limits.idle } else { limits.silent_response };
                if now.duration_since(moved) >= limit {
                    return Quiet::Idle;
                }
            }
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }
}

/// A request in flight on a connection: counted as a handler while the proxy serves it, then
/// as a body until hyper has sent the response body.
struct InFlight {
    activity: Arc<Activity>,
    handler: bool,
}

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.handlers.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight { activity: activity.clone(), handler: true }
    }

    /// The handler returned; the response body is on its way.
    fn into_body(mut self) -> InFlight {
        self.activity.bodies.fetch_add(1, Ordering::Relaxed);
        self.activity.handlers.fetch_sub(1, Ordering::Relaxed);
        self.activity.touch();
        self.handler = false;
        self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.touch();
        let count = if self.handler { &self.activity.handlers } else { &self.activity.bodies };
        count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until hyper drops it.
struct Tracked {
    body: ProxyBody,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = <ProxyBody as http_body::Body>::Data;
    type Error = <ProxyBody as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Where the client's bytes are in HTTP/2's framing (RFC 9113 §3.4, §4.1): enough to tell when
/// a header block (HEADERS and the CONTINUATION frames that must follow it, §6.10) or a frame's
/// 9-byte header is left unfinished at the end of a read. Payloads are skipped, not read.
#[derive(Debug)]
struct Frames {
    /// Bytes of the client's connection preface still to come.
    preface: usize,
    /// The frame header being read, and how much of it has arrived.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload: usize,
    /// Whether a header block has begun and not ended.
    in_block: bool,
    /// Whether the current frame ends its header block (END_HEADERS).
    ends_block: bool,
    /// Whether the transport's activity has been told that a head is unfinished.
    told_open: bool,
}

impl Default for Frames {
    fn default() -> Frames {
        Frames {
            preface: 24,
            header: [0; 9],
            have: 0,
            payload: 0,
            in_block: false,
            ends_block: false,
            told_open: false,
        }
    }
}

/// HEADERS, PUSH_PROMISE and CONTINUATION (RFC 9113 §6.2, §6.6, §6.10), and END_HEADERS.
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// What one read did to the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    /// A header block or a frame header is unfinished after it.
    open: bool,
    /// A header block ended, or a frame header outside one was completed, in it: an unfinished
    /// head after it is a new one.
    advanced: bool,
}

impl Frames {
    /// Follows `bytes`, just read, through the framing.
    fn read(&mut self, mut bytes: &[u8]) -> Step {
        let skip = self.preface.min(bytes.len());
        self.preface -= skip;
        bytes = &bytes[skip..];
        let mut advanced = false;
        while !bytes.is_empty() {
            if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
                if self.payload == 0 && self.ends_block {
                    (self.in_block, self.ends_block, advanced) = (false, false, true);
                }
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < 9 {
                break;
            }
            self.have = 0;
            let [l0, l1, l2, kind, flags, ..] = self.header;
            self.payload = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            if matches!(kind, HEADERS | PUSH_PROMISE | CONTINUATION) {
                // The block began with this frame's header (a HEADERS frame) or before it.
                self.in_block = true;
                self.ends_block = flags & END_HEADERS != 0;
                if self.payload == 0 && self.ends_block {
                    (self.in_block, self.ends_block, advanced) = (false, false, true);
                }
            } else if !self.in_block {
                // Any other frame inside a header block is a connection error that hyper
                // raises; outside one, its header completed.
                advanced = true;
            }
        }
        Step { open: self.in_block || self.have > 0, advanced }
    }
}

/// A client's transport that follows the client's framing and notes the router's progress.
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
    frames: Frames,
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let this = &mut *self;
        if buf.filled().len() > before {
            // The clock of an unfinished head starts when it is first seen unfinished, and only
            // a finished one stops it: bytes that trickle in do not.
            let step = this.frames.read(&buf.filled()[before..]);
            if step.open != this.frames.told_open || (step.open && step.advanced) {
                this.frames.told_open = step.open;
                this.activity.set_head_open(step.open);
            }
        }
        polled
    }
}

impl<IO> Watched<IO> {
    /// Bytes written while a request is in flight are progress; others (a PING's answer, say)
    /// are not.
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) && self.activity.in_flight() {
            self.activity.touch();
        }
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, data);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves an HTTP/2 request through hyper's server.
async fn handle(req: Request<Incoming>, conn: Arc<ClientConnection>, shared: Arc<RouterState>) -> Response<ProxyBody> {
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
    let reply = proxy::handle(&request, Some(&mut body), &conn, &shared, &mut first_byte).await;
    let (status, mut headers, body) = match reply {
        Reply::Router(o) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(o.content_type));
            if let Some(cache_control) = o.cache_control {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
            }
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
    if let Some(v) = conn.hsts(&shared.settings)
        && !headers.contains_key(header::STRICT_TRANSPORT_SECURITY)
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let len = u32::try_from(payload).unwrap().to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        f.resize(9 + payload, 0);
        f
    }

    /// Reads, one after another on one connection, with the step each must give as
    /// (open, advanced).
    fn check(name: &str, reads: &[Vec<u8>], want: &[(bool, bool)]) {
        let mut frames = Frames { preface: 0, ..Frames::default() };
        let got: Vec<(bool, bool)> = reads
            .iter()
            .map(|r| {
                let step = frames.read(r);
                (step.open, step.advanced)
            })
            .collect();
        assert_eq!(got, want, "{name}");
    }

    #[test]
    fn unfinished_heads_are_told_from_finished_ones() {
        let (headers, end) = (HEADERS, END_HEADERS);
        let whole = frame(headers, end, 20);
        let open = frame(headers, 0, 20);
        let cont_end = frame(CONTINUATION, end, 5);
        let data = frame(0, 0, 100);
        check("a whole HEADERS frame", std::slice::from_ref(&whole), &[(false, true)]);
        check("HEADERS then CONTINUATION", &[open.clone(), cont_end.clone()], &[(true, false), (false, true)]);
        check(
            "a HEADERS frame cut in its payload",
            &[whole[..15].to_vec(), whole[15..].to_vec()],
            &[(true, false), (false, true)],
        );
        check("a frame header cut", &[data[..4].to_vec(), data[4..].to_vec()], &[(true, false), (false, true)]);
        check(
            "a DATA frame cut in its payload",
            &[data[..50].to_vec(), data[50..].to_vec()],
            &[(false, true), (false, false)],
        );
        let trickle: Vec<Vec<u8>> = whole.iter().map(|b| vec![*b]).collect();
        let mut want = vec![(true, false); whole.len() - 1];
        want.push((false, true));
        check("a HEADERS frame a byte at a time", &trickle, &want);
        let mut next = cont_end.clone();
        next.extend_from_slice(&open);
        check("one block ends and the next begins in one read", &[open.clone(), next], &[(true, false), (true, true)]);
        check(
            "CONTINUATION frames without END_HEADERS",
            &[open.clone(), frame(CONTINUATION, 0, 1), frame(CONTINUATION, 0, 1)],
            &[(true, false), (true, false), (true, false)],
        );
        check(
            "an empty CONTINUATION that ends the block",
            &[open, frame(CONTINUATION, end, 0)],
            &[(true, false), (false, true)],
        );
        check("PING", &[frame(6, 0, 8)], &[(false, true)]);
    }

    #[test]
    fn the_preface_is_skipped() {
        let mut frames = Frames::default();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(4, 0, 0));
        assert_eq!(frames.read(&bytes[..10]), Step { open: false, advanced: false });
        assert_eq!(frames.read(&bytes[10..]), Step { open: false, advanced: true });
    }
}
