//! HTTP/2 connections, served with the `h2` crate directly: one task per connection drives the
//! connection and all of its streams (no task per stream), and each request goes through the
//! same proxy as HTTP/1.1's, with header maps built at this edge only. A connection with no
//! request in flight on which the router makes no progress for the header timeout (whatever
//! the client sends meanwhile: PINGs, SETTINGS, a head a byte at a time, or nothing) is asked
//! to end with GOAWAY, as an idle HTTP/1.1 one is closed; one whose client leaves a header
//! block unfinished for the header timeout is dropped, as a slow HTTP/1.1 head is.
//!
//! Why not hyper's server, which served HTTP/2 before: it spawns a task per stream, wraps
//! every body and response, and has no way to send a 1xx response; serving with `h2` directly
//! forwards a dyno's interim responses (RFC 9110 §15.2, RFC 9113 §8.1) and costs fewer
//! instructions a request (benches/RESULTS.md, the HTTP/2 runs).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use tokio::sync::watch;

use crate::client::ClientConnection;
use crate::deadline::Deadline;
use crate::dyno_client::RequestBody;
use crate::error::BodyError;
use crate::fields::Fields;
use crate::forwarding::{HopByHop, VIA_VALUE};
use crate::http1::response_head::Interim;
use crate::proxy::{self, ClientRequest, Reply, RouterResponse};
use crate::response_body::ProxyBody;
use crate::state::RouterState;

/// The flow-control windows the router opens for each stream and for the connection (RFC 9113
/// §6.9.2), in bytes: a request body of up to this much is read without a round trip for
/// WINDOW_UPDATE, and no more is buffered for a stream whose dyno reads slowly. 1 MiB, hyper's
/// value, which served HTTP/2 before.
const WINDOW: u32 = 1024 * 1024;

/// The largest frame payload the router accepts (RFC 9113 §4.2), in bytes: the protocol's
/// initial value.
const MAX_FRAME: u32 = 16 * 1024;

/// How many bytes of response data `h2` may hold for a stream beyond what the client's window
/// lets it send. The router hands it one piece of a dyno's body at a time, and only once the
/// stream has window for it, so this bounds a piece, not a backlog; hyper's value.
const MAX_SEND_BUFFER: usize = 400 * 1024;

/// How many streams a client may open at once (RFC 9113 §5.1.2, SETTINGS_MAX_CONCURRENT_STREAMS),
/// hyper's value; h2load's benchmark opens 10.
const MAX_STREAMS: u32 = 200;

/// How many streams the router may reset for errors of the client's before it ends the
/// connection (the `h2` crate's guard against "rapid reset", CVE-2023-44487), hyper's value.
const MAX_ERROR_RESETS: usize = 1024;

/// The `h2` settings for a client connection.
fn builder(shared: &RouterState) -> h2::server::Builder {
    // HPACK counts 32 bytes of overhead per field; the limit covers the same fields that
    // HTTP/1.1's does.
    let list = shared.settings.max_header_bytes + 32 * shared.settings.max_headers;
    let mut b = h2::server::Builder::new();
    b.initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_STREAMS)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_ERROR_RESETS));
    b
}

/// Where a connection is in its ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Serving.
    No,
    /// Shutdown began: GOAWAY sent, the requests in flight finish (the worker's shutdown grace
    /// bounds them).
    Shutdown,
    /// The connection was quiet: GOAWAY sent, and it is dropped if it is quiet as long again.
    Quiet,
}

/// Serves an HTTP/2 connection until it ends. On shutdown, or once the connection is quiet (see
/// [`Activity::quiet`]), the client is sent GOAWAY and the requests in flight finish; a
/// connection still open when it is quiet again is dropped. A connection whose client leaves a
/// header block unfinished for the header timeout, or sends no preface within it, is dropped
/// at once.
pub(super) async fn serve<IO>(
    io: IO,
    conn: Arc<ClientConnection>,
    shared: Arc<RouterState>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = Limits { idle: shared.settings.header_timeout, silent_response: shared.settings.idle_timeout };
    let activity = Arc::new(Activity::new());
    let watched = Watched { io, activity: activity.clone(), frames: Frames::default() };
    // The guard `wait_for` returns must not live across an await.
    let mut stop = pin!(async { drop(shutdown.wait_for(|stop| *stop).await) });
    let mut connection = tokio::select! {
        r = builder(&shared).handshake::<_, Bytes>(watched) => match r {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/2 handshake failed");
                return;
            }
        },
        () = stop.as_mut() => return,
        _ = activity.quiet(limits) => {
            tracing::debug!(timeout = ?limits.idle, "no HTTP/2 preface: connection dropped");
            return;
        }
    };
    let mut streams = FuturesUnordered::new();
    let mut quiet = pin!(activity.quiet(limits));
    let mut ending = Ending::No;
    let ended = poll_fn(|cx| {
        match ending {
            Ending::No => {
                if stop.as_mut().poll(cx).is_ready() {
                    connection.graceful_shutdown();
                    ending = Ending::Shutdown;
                } else if let Poll::Ready(why) = quiet.as_mut().poll(cx) {
                    if why == Quiet::HeadStalled {
                        tracing::debug!(timeout = ?limits.idle, "a header block stayed unfinished: connection dropped");
                        return Poll::Ready(Ok(()));
                    }
                    connection.graceful_shutdown();
                    ending = Ending::Quiet;
                    quiet.set(activity.quiet(limits));
                    // Polled once, so that its timer is armed.
                    if quiet.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            Ending::Quiet => {
                if quiet.as_mut().poll(cx).is_ready() {
                    tracing::debug!("still quiet after GOAWAY: connection dropped");
                    return Poll::Ready(Ok(()));
                }
            }
            Ending::Shutdown => {}
        }
        loop {
            // The streams first: the frames they queue are written by the connection's poll,
            // in the same turn.
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
            match ready!(connection.poll_accept(cx)) {
                Some(Ok((req, respond))) => streams.push(serve_stream(req, respond, &conn, &shared, &activity)),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    })
    .await;
    if let Err(e) = ended {
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
    /// Requests whose response body is being sent.
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
/// as a body until its response body has been sent (or the client reset the stream).
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

/// Serves one request of a connection: the proxy's answer, then its body as the client's
/// flow-control windows let it go. The request is in flight (see [`Activity`]) until its
/// response has been sent or the client reset its stream.
async fn serve_stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn: &ClientConnection,
    shared: &Arc<RouterState>,
    activity: &Arc<Activity>,
) {
    let in_flight = InFlight::enter(activity);
    let (parts, mut body) = req.into_parts();
    let head_only = parts.method == Method::HEAD;
    let reply = if parts.method == Method::CONNECT {
        // CONNECT's target is an authority, not a path (RFC 9113 §8.5), and the router serves
        // origin-form targets only, as it refuses an HTTP/1.1 CONNECT.
        shared.metrics.record(StatusCode::BAD_REQUEST.as_u16(), 0);
        Reply::Router(RouterResponse {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::from_static(b"invalid request target\n"),
            content_type: "text/plain; charset=utf-8",
            cache_control: None,
            location: None,
        })
    } else {
        let fields = Fields::from_map(&parts.headers);
        let request = ClientRequest {
            method: &parts.method,
            version: Version::HTTP_2,
            authority: parts.uri.authority().map(|a| a.as_str()),
            target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            fields: &fields,
            has_body: !body.is_end_stream(),
        };
        let mut first_byte = Deadline::new(shared.settings.first_byte_timeout);
        let handled = proxy::handle(&request, Some(&mut body), conn, shared, &mut first_byte);
        match unless_reset(&mut respond, handled).await {
            Some(reply) => reply,
            None => {
                tracing::debug!("the client reset a stream before its response");
                return;
            }
        }
    };
    // What the dyno did not read of the body is not wanted any more: dropping it tells `h2` so,
    // which resets the stream after the response if the client is still sending.
    drop(body);
    drop(parts);
    let (response, interim, body) = response(reply, conn, shared, head_only);
    for head in interim.iter().flat_map(|i| interim_responses(i)) {
        if let Err(e) = respond.send_informational(head) {
            tracing::debug!(error = %e, "an interim response could not be sent");
        }
    }
    let end = http_body::Body::is_end_stream(&body);
    let tx = match respond.send_response(response, end) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(error = %e, "a response could not be sent");
            respond.send_reset(Reason::INTERNAL_ERROR);
            return;
        }
    };
    let _in_flight = in_flight.into_body();
    if !end && let Err(e) = send_body(tx, body).await {
        tracing::debug!(error = %e, "a response body was not sent whole");
    }
}

/// Runs `work` until it finishes, or until the client resets the stream (RST_STREAM, RFC 9113
/// §6.4): then `None`, and `work` is dropped unfinished, as the client no longer wants its
/// answer.
async fn unless_reset<F: Future>(respond: &mut SendResponse<Bytes>, work: F) -> Option<F::Output> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The response head the client gets for `reply`, the dyno's interim responses to send ahead of
/// it, and the body.
fn response(
    reply: Reply,
    conn: &ClientConnection,
    shared: &RouterState,
    head_only: bool,
) -> (Response<()>, Option<Box<Interim>>, ProxyBody) {
    let (status, mut headers, interim, body) = match reply {
        Reply::Router(o) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(o.content_type));
            if let Some(cache_control) = o.cache_control {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
            }
            if let Some(location) = o.location.and_then(|l| HeaderValue::try_from(l).ok()) {
                headers.insert(header::LOCATION, location);
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(o.body.len()));
            // A response to HEAD has no content (RFC 9110 §9.3.2), only the length GET's has.
            let body = if head_only { ProxyBody::Full(None) } else { ProxyBody::full(o.body) };
            (o.status, headers, None, body)
        }
        Reply::Dyno(head, body) => {
            let hop = HopByHop::of(&head.fields);
            let mut headers = head.fields.to_map(|known, n| hop.contains(known, n)).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "a response field HTTP/2 cannot carry was left out");
                HeaderMap::new()
            });
            headers.append(header::VIA, VIA_VALUE.clone());
            (head.status, headers, head.interim, body)
        }
        // Only an HTTP/1.1 request asks for an upgrade, and only such a request accepts a 101.
        Reply::Upgrade(..) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), None, ProxyBody::full("")),
    };
    if let Some(v) = conn.hsts(&shared.settings)
        && !headers.contains_key(header::STRICT_TRANSPORT_SECURITY)
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date());
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    (response, interim, body)
}

/// The dyno's interim responses, kept as HTTP/1.1 heads (`dyno_client`, which left their
/// hop-by-hop fields out), as HTTP/2 responses: each goes as a HEADERS frame ahead of the final
/// one (RFC 9113 §8.1). A head that cannot be read back, or a field an HTTP/2 response cannot
/// carry, ends the list or is left out: a hint is lost, never the final response.
fn interim_responses(interim: &Interim) -> Vec<Response<()>> {
    let mut out = Vec::new();
    let mut rest = &interim.bytes[..];
    while !rest.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = parsed.parse(rest) else {
            break;
        };
        let Some(status) = parsed.code.and_then(|c| StatusCode::from_u16(c).ok()) else {
            break;
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        for f in parsed.headers.iter() {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(f.name.as_bytes()), HeaderValue::from_bytes(f.value))
            {
                response.headers_mut().append(name, value);
            }
        }
        out.push(response);
        rest = &rest[len..];
    }
    out
}

/// A `Date` for a response that has none: RFC 9110 §6.6.1 has a recipient with a clock that
/// forwards such a response add one, and the router's own answers are an origin's. Formatted
/// once a second per worker thread (IMF-fixdate, with `httpdate`).
fn date() -> HeaderValue {
    thread_local! {
        static CACHED: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, value)| {
        if *at != second || value.is_none() {
            *at = second;
            *value = HeaderValue::try_from(httpdate::fmt_http_date(now)).ok();
        }
        value.clone().unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    })
}

/// Sends a response body on its stream. A piece of the dyno's body is read only once the one
/// before has been given to `h2` with window to send it (RFC 9113 §5.2), so a client whose
/// window stays closed holds one piece per stream, and the dyno's connection waits, not the
/// router's memory. A body that fails (the dyno's connection cut it off) resets the stream, so
/// the client does not take a part for the whole.
async fn send_body(mut tx: SendStream<Bytes>, mut body: ProxyBody) -> Result<(), BodyError> {
    use http_body::Body as _;
    let mut waiting: Option<(Bytes, bool)> = None;
    let sent = poll_fn(|cx| {
        loop {
            if let Poll::Ready(reset) = tx.poll_reset(cx) {
                return Poll::Ready(Err(Sent::Stream(match reset {
                    Ok(reason) => format!("the client reset the stream: {reason}").into(),
                    Err(e) => e.into(),
                })));
            }
            if let Some((data, end)) = waiting.take() {
                while tx.capacity() == 0 {
                    match tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(None) => return Poll::Ready(Err(Sent::Stream("the stream closed".into()))),
                        Poll::Pending => {
                            waiting = Some((data, end));
                            return Poll::Pending;
                        }
                    }
                }
                tx.send_data(data, end)?;
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(Pin::new(&mut body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = body.is_end_stream();
                        if data.is_empty() {
                            tx.send_data(data, end)?;
                            if end {
                                return Poll::Ready(Ok(()));
                            }
                        } else {
                            // One byte asked for, not the piece's length: asking for more pins
                            // connection window that other streams could use, and `h2` raises
                            // the claim to what is buffered when the data is given to it.
                            tx.reserve_capacity(1);
                            waiting = Some((data, end));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            tx.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Err(Sent::Cut(e))),
                None => {
                    tx.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    })
    .await;
    match sent {
        Ok(()) => Ok(()),
        Err(Sent::Stream(e)) => Err(e),
        Err(Sent::Cut(e)) => {
            // A reset takes back what `h2` has not written yet of the stream, the head
            // included; the connection writes it once this task's turn ends, so the reset
            // waits a turn, and the client gets the head and the body up to the cut, as an
            // HTTP/1.1 client does.
            tokio::task::yield_now().await;
            tx.send_reset(Reason::INTERNAL_ERROR);
            Err(e)
        }
    }
}

/// Why a response body was not sent whole.
enum Sent {
    /// The stream failed: the client reset it, or the connection ended.
    Stream(BodyError),
    /// The dyno's body failed (`ProxyBody`'s error).
    Cut(BodyError),
}

impl From<h2::Error> for Sent {
    fn from(e: h2::Error) -> Sent {
        Sent::Stream(e.into())
    }
}

/// An HTTP/2 request's body, read as the dyno's side asks for it. Each piece read is given back
/// to the client's window at once (RFC 9113 §6.9): the proxy writes it to the dyno before it
/// asks for the next, so what is buffered for a stream stays within [`WINDOW`]. Trailers are
/// not read: the dyno's request head has gone.
impl RequestBody for RecvStream {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        match ready!(RecvStream::poll_data(self, cx)) {
            Some(Ok(data)) => {
                let _ = self.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(data)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
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
                // Any other frame inside a header block is a connection error that `h2`
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
