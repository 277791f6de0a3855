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
//!
//! Why one file: the connection's loop, a stream's future, the response head it builds and the
//! body it sends are one request's path, read and measured together (the rare paths beside it
//! are small cold functions); the connection's deadlines already live apart, in `h2/idle.rs`.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use tokio::sync::watch;

use crate::client::ClientConnection;
use crate::date;
use crate::deadline::Deadline;
use crate::dyno_client::RequestBody;
use crate::error::BodyError;
use crate::fields::{FieldName, Fields};
use crate::forwarding::{HopByHop, VIA_VALUE};
use crate::http1::response_head::Interim;
use crate::proxy::{self, ClientRequest, Reply};
use crate::response_body::ProxyBody;
use crate::state::RouterState;

mod idle;

use idle::{Activity, Frames, InFlight, Limits, Quiet, Watched};

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

/// How many finished streams' first-byte deadlines and futures' boxes a connection keeps for
/// its next streams (see [`Spare`]): more than the streams a browser or h2load's benchmark (10)
/// has open at once, and few enough that what they hold (a few KiB each) stays small beside
/// the connection's buffers and windows.
const SPARE: usize = 16;

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
    let mut spare = Spare { deadlines: Vec::new(), boxes: Vec::new() };
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
            while let Poll::Ready(Some(ended)) = streams.poll_next_unpin(cx) {
                spare.keep(ended);
            }
            // Then every request the connection has ready, before any of them is served: the
            // client's frames arrive together (h2load's ten streams in one read), and taking
            // them all first runs `h2`'s accepting code for each in turn, then the proxy's for
            // each in turn, rather than alternating the two, so each stays in the instruction
            // cache for the next request (benches/RESULTS.md, router run 20).
            let mut accepted = false;
            loop {
                match connection.poll_accept(cx) {
                    // Boxed: the stream's future holds the proxy's, several KiB, and
                    // `FuturesUnordered` moves what it is given into a node of its own.
                    Poll::Ready(Some(Ok((req, respond)))) => {
                        let first_byte =
                            spare.deadlines.pop().unwrap_or_else(|| Deadline::new(shared.settings.first_byte_timeout));
                        let stream = serve_stream(req, respond, &conn, &shared, &activity, first_byte);
                        streams.push(Reusable(Some(boxed(spare.boxes.pop(), stream))));
                        accepted = true;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            if !accepted {
                return Poll::Pending;
            }
        }
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Serves one request of a connection: the proxy's answer, then its body as the client's
/// flow-control windows let it go. The request is in flight (see [`Activity`]) until its
/// response has been sent or the client reset its stream. `first_byte` times the wait for the
/// dyno's response head; it is given back for the connection's next streams (see [`Spare`]).
async fn serve_stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn: &ClientConnection,
    shared: &Arc<RouterState>,
    activity: &Arc<Activity>,
    mut first_byte: Deadline,
) -> Deadline {
    let in_flight = InFlight::enter(activity);
    let (parts, mut body) = req.into_parts();
    let head_only = parts.method == Method::HEAD;
    let reply = if parts.method == Method::CONNECT {
        connect_refused(shared)
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
        // Pinned where it is made and lent to `unless_reset`, not moved into it: the proxy's
        // future is several KiB, and each move is a copy of all of it.
        let reply = {
            let handled = pin!(proxy::handle(&request, Some(&mut body), conn, shared, &mut first_byte));
            unless_reset(&mut respond, handled).await
        };
        match reply {
            Some(reply) => reply,
            None => {
                reset_before_response();
                return first_byte;
            }
        }
    };
    // What the dyno did not read of the body is not wanted any more: dropping it tells `h2` so,
    // which resets the stream after the response if the client is still sending.
    drop(body);
    drop(parts);
    let (response, interim, body) = response(reply, conn, shared, head_only);
    if let Some(interim) = interim {
        send_interim(&mut respond, &interim);
    }
    let end = http_body::Body::is_end_stream(&body);
    let tx = match respond.send_response(response, end) {
        Ok(tx) => tx,
        Err(e) => {
            response_failed(&mut respond, &e);
            return first_byte;
        }
    };
    let _in_flight = in_flight.into_body();
    if !end && let Err(e) = send_body(tx, body).await {
        body_failed(&e);
    }
    first_byte
}

// The paths a stream seldom takes, out of line and marked cold: the compiler then lays the
// common path out in one piece, and a request's instruction fetches touch fewer cache lines
// (benches/RESULTS.md, router run 20).

/// The answer to CONNECT: its target is an authority, not a path (RFC 9113 §8.5), and the
/// router serves origin-form targets only, as it refuses an HTTP/1.1 CONNECT.
#[cold]
#[inline(never)]
fn connect_refused(shared: &RouterState) -> Reply {
    shared.metrics.record(StatusCode::BAD_REQUEST.as_u16(), 0);
    Reply::Router(proxy::router_response(StatusCode::BAD_REQUEST, "invalid request target\n"))
}

/// Notes a stream the client reset before its response.
#[cold]
#[inline(never)]
fn reset_before_response() {
    tracing::debug!("the client reset a stream before its response");
}

/// Sends the dyno's interim responses ahead of the final one.
#[cold]
#[inline(never)]
fn send_interim(respond: &mut SendResponse<Bytes>, interim: &Interim) {
    for head in interim_responses(interim) {
        if let Err(e) = respond.send_informational(head) {
            tracing::debug!(error = %e, "an interim response could not be sent");
        }
    }
}

/// Ends a stream whose response head could not be sent.
#[cold]
#[inline(never)]
fn response_failed(respond: &mut SendResponse<Bytes>, e: &h2::Error) {
    tracing::debug!(error = %e, "a response could not be sent");
    respond.send_reset(Reason::INTERNAL_ERROR);
}

/// Notes a response body that was not sent whole.
#[cold]
#[inline(never)]
fn body_failed(e: &BodyError) {
    tracing::debug!(error = %e, "a response body was not sent whole");
}

/// What a connection's finished streams leave for its next ones: their first-byte deadlines and
/// the boxes their futures lived in.
///
/// A stream waits for its dyno's first byte under a deadline of its own, and a new one is a
/// timer allocated, entered in tokio's timer wheel when first polled and taken out when
/// dropped; one reused is only moved later (a later time only changes a field), so a busy
/// connection touches the wheel about once per timeout period per stream it has open at once,
/// as an HTTP/1.1 connection does with its one deadline. The proxy sets the time of each wait
/// ([`Deadline::timeout_at`]), so a reused deadline's old time never counts. A spare deadline
/// whose timer fires wakes the stream that last used it, which has finished: a wake-up for
/// nothing, once per timeout period.
///
/// A stream's future is several KiB, and a new box for it is one of the allocator's slower
/// paths (mimalloc's above 1 KiB); a finished stream's box takes the next stream's future in
/// place. They are kept while the connection lives, which is not long once it is idle (see
/// [`Activity::quiet`]). Dropping them whenever no stream was in flight kept none under
/// h2load's load: a connection's streams often all finish in one turn.
///
/// Together about 1,000 instructions a request (callgrind, benches/RESULTS.md, router run 15).
#[derive(Debug)]
struct Spare<B> {
    deadlines: Vec<Deadline>,
    boxes: Vec<B>,
}

impl<B> Spare<B> {
    /// Keeps what a finished stream leaves, up to [`SPARE`] of each.
    fn keep(&mut self, (boxed, deadline): (B, Deadline)) {
        if self.deadlines.len() < SPARE {
            self.deadlines.push(deadline);
        }
        if self.boxes.len() < SPARE {
            self.boxes.push(boxed);
        }
    }
}

/// `future` in a box: `spare`, where a finished one lived, or a new one.
fn boxed<F: Future>(spare: Option<Pin<Box<F>>>, future: F) -> Pin<Box<F>> {
    match spare {
        Some(mut boxed) => {
            boxed.as_mut().set(future);
            boxed
        }
        None => Box::pin(future),
    }
}

/// A stream's future in its box, which it gives back when the stream ends with what the future
/// returned (see [`Spare`]).
struct Reusable<F>(Option<Pin<Box<F>>>);

impl<F: Future> Future for Reusable<F> {
    type Output = (Pin<Box<F>>, F::Output);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = ready!(self.0.as_mut().expect("a stream is not polled once it ended").as_mut().poll(cx));
        Poll::Ready((self.0.take().expect("a stream is not polled once it ended"), out))
    }
}

/// Runs `work` until it finishes, or until the client resets the stream (RST_STREAM, RFC 9113
/// §6.4): then `None`, and the caller drops `work` unfinished, as the client no longer wants
/// its answer.
async fn unless_reset<F: Future>(respond: &mut SendResponse<Bytes>, mut work: Pin<&mut F>) -> Option<F::Output> {
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
    // Whether the map already has a `Date` and a `Strict-Transport-Security`, told from the
    // names found when the dyno's head was parsed rather than by looking them up in the map:
    // two hash look-ups a response fewer.
    let (status, mut headers, interim, body, has_date, has_hsts) = match reply {
        Reply::Router(o) => {
            let (headers, body) = router_head(o.content_type, o.cache_control, o.location, o.body, head_only);
            (o.status, headers, None, body, false, false)
        }
        Reply::Dyno(head, body) => {
            let hop = HopByHop::of(&head.fields);
            let kept = |name| head.fields.iter().any(|(known, n, _)| known == name && !hop.contains(known, n));
            let (mut headers, has_date, has_hsts) = match head.fields.to_map(|known, n| hop.contains(known, n)) {
                Ok(map) => (map, kept(FieldName::Date), kept(FieldName::StrictTransportSecurity)),
                Err(e) => (field_left_out(&e), false, false),
            };
            headers.append(header::VIA, VIA_VALUE.clone());
            (head.status, headers, head.interim, body, has_date, has_hsts)
        }
        // Only an HTTP/1.1 request asks for an upgrade, and only such a request accepts a 101.
        Reply::Upgrade(..) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), None, ProxyBody::full(""), false, false),
    };
    if let Some(v) = conn.hsts(&shared.settings)
        && !has_hsts
    {
        headers.append(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    // RFC 9110 §6.6.1, as on HTTP/1.1 (see `crate::date`).
    if !has_date {
        headers.append(header::DATE, date::now());
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    (response, interim, body)
}

/// The header fields and body of a response the router wrote (a `RouterResponse`'s); out of
/// line, as the dyno's responses are the common case.
#[cold]
#[inline(never)]
fn router_head(
    content_type: &'static str,
    cache_control: Option<&'static str>,
    location: Option<String>,
    body: Bytes,
    head_only: bool,
) -> (HeaderMap, ProxyBody) {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(cache_control) = cache_control {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    }
    if let Some(location) = location.and_then(|l| HeaderValue::try_from(l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    // A response to HEAD has no content (RFC 9110 §9.3.2), only the length GET's has.
    let body = if head_only { ProxyBody::Full(None) } else { ProxyBody::full(body) };
    (headers, body)
}

/// The map for a dyno's response with a field HTTP/2 cannot carry: empty, the fields left out.
#[cold]
#[inline(never)]
fn field_left_out(e: &http::Error) -> HeaderMap {
    tracing::debug!(error = %e, "a response field HTTP/2 cannot carry was left out");
    HeaderMap::new()
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

/// Sends a response body on its stream. A piece of the dyno's body is read only once the one
/// before has been given to `h2` with window to send it (RFC 9113 §5.2), so a client whose
/// window stays closed holds one piece per stream, and the dyno's connection waits, not the
/// router's memory; the last piece is given at once, as nothing is read after it. A body that
/// fails (the dyno's connection cut it off) resets the stream, so the client does not take a
/// part for the whole.
async fn send_body(mut tx: SendStream<Bytes>, mut body: ProxyBody) -> Result<(), BodyError> {
    use http_body::Body as _;
    let mut waiting: Option<(Bytes, bool)> = None;
    let sent = poll_fn(|cx| {
        loop {
            if let Some((data, end)) = waiting.take() {
                while tx.capacity() == 0 {
                    match tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(None) => return Poll::Ready(Err(Sent::Stream("the stream closed".into()))),
                        Poll::Pending => {
                            waiting = Some((data, end));
                            return reset_or_pending(&mut tx, cx);
                        }
                    }
                }
                tx.send_data(data, end)?;
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) else {
                return reset_or_pending(&mut tx, cx);
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = body.is_end_stream();
                        if end || data.is_empty() {
                            // The body's last piece is read already, and nothing more will be
                            // read from the dyno for it: handed to `h2` at once, which sends it
                            // as the window allows, without reserving window for it first
                            // (`reserve_capacity`, then `capacity` and `poll_reset` again: about
                            // 800 instructions of every small response; benches/RESULTS.md,
                            // router run 14).
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

/// What a body's sending does when it must wait (for the dyno's next piece, or for window):
/// end if the client has reset the stream (RST_STREAM, RFC 9113 §6.4), or wait, woken by the
/// reset if one comes. Asked only before waiting, not before each piece: `poll_reset` takes
/// the connection's lock (about 100 instructions), and a piece given to a reset stream fails
/// anyway (`send_data`'s error), so a small response, whose one piece is ready at once, no
/// longer asks at all (benches/RESULTS.md, router run 19).
fn reset_or_pending(tx: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> Poll<Result<(), Sent>> {
    match tx.poll_reset(cx) {
        Poll::Ready(reset) => Poll::Ready(Err(Sent::Stream(match reset {
            Ok(reason) => format!("the client reset the stream: {reason}").into(),
            Err(e) => e.into(),
        }))),
        Poll::Pending => Poll::Pending,
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
