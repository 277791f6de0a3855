//! Wharf's own HTTP/1.1 server loop: reads each request head off a client connection, hands it
//! to the proxy, and writes the response head and body back, until the connection ends.
//!
//! hyper's server builds a header map for every request and needs one for every response, and
//! runs a general state machine around them; on a proxy's hot path those were a third of a
//! request's cost. Here the request head is parsed strictly in place (`http1/request_head.rs`),
//! the dyno's response head is written from the bytes the dyno sent (`http1/encode.rs`), and a
//! small response goes out in one write with its head. HTTP/2 is served with the `h2` crate (`server/h2.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{StatusCode, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::client::ClientConnection;
use crate::deadline::Deadline;
use crate::dyno_client::RequestBody;
use crate::error::BodyError;
use crate::fields::FieldName;
use crate::http1::decode::{self, BodyLength};
use crate::http1::encode::{chunk_size_line, write_dyno_head, write_router_head};
use crate::http1::request_head::{self, Limits, Refusal, RequestHead};
use crate::proxy::{self, ClientRequest, Reply, RouterResponse};
use crate::response_body::ProxyBody;
use crate::state::RouterState;
use crate::tunnel;

/// How much is read from the client at once.
const READ_SIZE: usize = 8 * 1024;

/// Output gathered before it is written: a response head and the first pieces of its body go
/// out together, and larger pieces are written as they come.
const GATHER: usize = 64 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves HTTP/1.1 on a client connection until the client closes it, it idles past the header
/// timeout, a request is refused, or the router shuts down (after the request in flight).
pub(crate) async fn serve<IO>(
    mut io: IO,
    conn: Arc<ClientConnection>,
    shared: Arc<RouterState>,
    shutdown: watch::Receiver<bool>,
) where
    IO: Transport,
{
    let s = &shared.settings;
    let limits = Limits {
        max_head: (s.max_request_line + s.max_header_bytes + 4 * s.max_headers + 4).max(8192),
        max_request_line: s.max_request_line,
        max_headers: s.max_headers,
    };
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut out = Vec::with_capacity(READ_SIZE);
    // One shutdown watch for the connection's life.
    let mut stop = {
        let mut shutdown = shutdown.clone();
        Box::pin(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
    };
    let mut stopping = *shutdown.borrow();
    // The connection's two waits, each with a timer of its own that moves without touching
    // tokio's timer wheel on every request.
    let mut head_timer = Deadline::new(s.header_timeout);
    let mut first_byte = Deadline::new(s.first_byte_timeout);
    loop {
        // The header timeout counts from the end of the previous response: it bounds both a
        // slow head and an idle keep-alive connection.
        head_timer.set(s.header_timeout);
        let head = loop {
            match request_head::parse_request(&mut buf, &limits) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(refusal) => {
                    refuse(&mut io, &mut out, refusal, &conn, &shared).await;
                    return close(&mut io, true).await;
                }
            }
            if buf.is_empty() && stopping {
                return;
            }
            decode::room_to_read(&mut buf, READ_SIZE);
            tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = head_timer.elapsed() => {
                    if !buf.is_empty() {
                        let timeout = Refusal { status: StatusCode::REQUEST_TIMEOUT, reason: "request head not received in time" };
                        refuse(&mut io, &mut out, timeout, &conn, &shared).await;
                        return close(&mut io, true).await;
                    }
                    return;
                },
                () = &mut stop, if !stopping => stopping = true,
            }
        };
        let scope = ConnectionScope { conn: &conn, shared: &shared, shutdown: &shutdown };
        match serve_one(&mut io, &mut buf, &mut out, head, scope, &mut first_byte).await {
            Next::KeepAlive => {}
            Next::Close => return close(&mut io, false).await,
            Next::Linger => return close(&mut io, true).await,
        }
        stopping = stopping || *shutdown.borrow();
    }
}

/// What becomes of the connection after a response.
enum Next {
    /// It carries the next request.
    KeepAlive,
    /// It closes.
    Close,
    /// It closes, but the client may still be sending what the router did not read.
    Linger,
}

/// Ends a connection. When the client may still be sending (a body the router did not read),
/// what it sends is read and dropped for a moment first: closing a socket with unread data
/// makes the kernel send a reset, and a reset can make the client's kernel discard the answer
/// before the client has read it.
async fn close<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO, linger: bool) {
    let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
    if linger {
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut total = 0;
            while total < LINGER_BYTES {
                match io.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

/// How long, and how much, a closing connection's unread input is read and dropped.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Answers a request that was refused; the connection ends after it.
async fn refuse<IO: Transport>(
    io: &mut IO,
    out: &mut Vec<u8>,
    refusal: Refusal,
    conn: &ClientConnection,
    shared: &RouterState,
) {
    tracing::debug!(peer = %conn.peer, reason = refusal.reason, "request refused before routing");
    shared.metrics.record(refusal.status.as_u16(), 0);
    out.clear();
    let body = format!("{}\n", refusal.reason);
    let fields = [Some(("content-type", "text/plain; charset=utf-8"))];
    write_router_head(out, refusal.status, &fields, body.len(), false, conn.hsts(&shared.settings));
    out.extend_from_slice(body.as_bytes());
    let _ = write_out(io, out, shared.settings.idle_timeout, true).await;
}

/// What every request on a connection shares.
#[derive(Clone, Copy)]
struct ConnectionScope<'a> {
    conn: &'a ClientConnection,
    shared: &'a Arc<RouterState>,
    shutdown: &'a watch::Receiver<bool>,
}

/// Serves one request; returns what becomes of the connection.
async fn serve_one<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    head: RequestHead,
    scope: ConnectionScope<'_>,
    first_byte: &mut Deadline,
) -> Next
where
    IO: Transport,
{
    let ConnectionScope { conn, shared, shutdown } = scope;
    let version = head.version;
    let fields = &head.fields;
    let mut keep = match version {
        Version::HTTP_10 => fields.has_token(FieldName::Connection, "keep-alive"),
        _ => !fields.has_token(FieldName::Connection, "close"),
    };
    let Some((authority, target)) = split_target(&head.target) else {
        let refusal = Refusal { status: StatusCode::BAD_REQUEST, reason: "invalid request target" };
        refuse(io, out, refusal, conn, shared).await;
        return Next::Linger;
    };
    let expects_continue = version == Version::HTTP_11
        && fields.get(FieldName::Expect).is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let chunked = matches!(head.body, BodyLength::Chunked(_));
    let mut body = ClientBody {
        io: &mut *io,
        buf: &mut *buf,
        length: head.body,
        continue_left: if expects_continue { CONTINUE.len() } else { 0 },
        first_chunk_unchecked: chunked && expects_continue,
        refused: None,
    };
    if chunked && !expects_continue {
        // The first chunk-size line is checked before anything is forwarded, so that a body
        // that cannot be framed never reaches a dyno. A client that waits for `100 Continue`
        // sends no chunk before the dyno is asked (RFC 9110 §10.1.1: the dyno's answer decides
        // whether the body is sent at all), so its first line is checked as the body is read,
        // before any of it goes to the dyno (`ClientBody::first_chunk_unchecked`).
        match body.first_chunk(shared.settings.header_timeout).await {
            Ok(()) => {}
            Err(refusal) => {
                refuse(io, out, refusal, conn, shared).await;
                return Next::Linger;
            }
        }
    }
    let has_body = !body.length.is_done();
    let request = ClientRequest {
        method: &head.method,
        version,
        authority: authority.as_deref(),
        target: &target,
        fields,
        has_body,
    };
    let reply = proxy::handle(
        &request,
        has_body.then_some(&mut body as &mut (dyn RequestBody + Send)),
        conn,
        shared,
        first_byte,
    )
    .await;
    if let Some(refusal) = body.refused.take() {
        // The first chunk-size line, read after `100 Continue`, was malformed: the dyno's
        // connection was closed with the head alone, and the client gets the same 400 as when
        // the line is checked before forwarding.
        refuse(io, out, refusal, conn, shared).await;
        return Next::Linger;
    }
    // A body left unread (the request never reached a dyno, or the dyno answered early) would
    // be taken for the next request: the connection ends after this response instead.
    let unread = !body.length.is_done();
    keep &= !unread && !*shutdown.borrow();
    let idle = shared.settings.idle_timeout;
    out.clear();
    let sent = match reply {
        Reply::Router(RouterResponse { status, body, content_type, cache_control, location }) => {
            let fields = [
                Some(("content-type", content_type)),
                cache_control.map(|c| ("cache-control", c)),
                location.as_deref().map(|l| ("location", l)),
            ];
            write_router_head(out, status, &fields, body.len(), keep, conn.hsts(&shared.settings));
            if head.method != http::Method::HEAD {
                out.extend_from_slice(&body);
            }
            write_out(io, out, idle, !keep).await
        }
        Reply::Dyno(resp, body) => {
            let chunked = match resp.body {
                BodyLength::Chunked(_) | BodyLength::UntilClose => {
                    // A body of unknown length goes chunked to an HTTP/1.1 client, and until the
                    // connection closes to an HTTP/1.0 one.
                    keep &= version == Version::HTTP_11;
                    version == Version::HTTP_11
                }
                BodyLength::Empty | BodyLength::Remaining(_) => false,
            };
            interim(out, &resp, version);
            write_dyno_head(out, &resp, chunked, keep, version, conn.hsts(&shared.settings));
            drop(resp);
            send_body(io, out, body, chunked, idle, !keep).await
        }
        Reply::Upgrade(resp, mut dyno, log) => {
            interim(out, &resp, version);
            write_dyno_head(out, &resp, false, true, version, conn.hsts(&shared.settings));
            drop(resp);
            // What the client sent after its head is the tunnel's first bytes to the dyno, and
            // what the dyno sent after its head the first bytes to the client.
            out.extend_from_slice(&dyno.buf);
            let early_to_client = dyno.buf.len() as u64;
            dyno.buf.clear();
            let early_to_dyno = buf.split();
            let mut bytes = 0;
            if write_out(io, out, idle, false).await && dyno.stream.write_all(&early_to_dyno).await.is_ok() {
                bytes = early_to_client + tunnel::tunnel(&mut *io, dyno.stream, idle).await;
            }
            log.emit(shared, bytes, std::time::Instant::now());
            return Next::Close;
        }
    };
    match (sent && keep, unread) {
        (true, _) => Next::KeepAlive,
        (false, false) => Next::Close,
        (false, true) => Next::Linger,
    }
}

/// Puts the dyno's interim responses ahead of its final one, for an HTTP/1.1 client only: an
/// HTTP/1.0 client does not expect them (RFC 9110, section 15.2).
fn interim(out: &mut Vec<u8>, resp: &crate::http1::response_head::ResponseHead, version: Version) {
    if let Some(interim) = resp.interim.as_ref().filter(|_| version == Version::HTTP_11) {
        out.extend_from_slice(&interim.bytes);
    }
}

/// The authority (absolute form only) and the origin-form path and query of a request target;
/// `None` for a target the router does not serve (asterisk or authority form).
fn split_target(target: &[u8]) -> Option<(Option<String>, std::borrow::Cow<'_, str>)> {
    let target = std::str::from_utf8(target).ok()?;
    if target.starts_with('/') {
        return Some((None, target.into()));
    }
    let scheme_end = target.find("://")?;
    if !target[..scheme_end].eq_ignore_ascii_case("http") && !target[..scheme_end].eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let path = match path.as_bytes().first() {
        None => "/".into(),
        Some(b'?') => format!("/{path}").into(),
        Some(_) => path.into(),
    };
    Some((Some(authority.to_owned()), path))
}

/// A client's transport: TCP, or TLS over it.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Queues the last bytes the connection will carry with the end of the stream behind them,
    /// so that both leave in one write at the next flush; returns how many bytes were queued
    /// (the rest, if any, are written as usual, and the end follows at shutdown).
    fn queue_last(&mut self, _data: &[u8]) -> usize {
        0
    }
}

impl Transport for tokio::net::TcpStream {}

impl Transport for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn queue_last(&mut self, data: &[u8]) -> usize {
        use std::io::Write as _;
        // A response and its close_notify as one write: the client's kernel handles a segment
        // less per closed connection.
        let conn = self.get_mut().1;
        let queued = conn.writer().write(data).unwrap_or(0);
        if queued == data.len() {
            conn.send_close_notify();
        }
        queued
    }
}

/// Writes and empties `out`; `false` when the client is gone or took nothing for `idle`. When
/// `last`, nothing more will follow on the connection.
async fn write_out<IO: Transport>(io: &mut IO, out: &mut Vec<u8>, idle: Duration, last: bool) -> bool {
    let queued = if last { io.queue_last(out) } else { 0 };
    let written = write_all(io, &out[queued..], idle).await;
    out.clear();
    written
}

async fn write_all<IO: AsyncWrite + Unpin>(io: &mut IO, mut data: &[u8], idle: Duration) -> bool {
    // Most writes are taken whole at once; the idle timer is only armed for a client that
    // makes the router wait.
    let first = std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *io).poll_write(cx, data) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
    });
    match first.await {
        Some(Ok(0) | Err(_)) => return false,
        Some(Ok(n)) => data = &data[n..],
        None => {}
    }
    if data.is_empty() {
        // Flushing is immediate for a plain socket, and for TLS once its records are written.
        if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *io).poll_flush(cx))).await {
            return r.is_ok();
        }
    }
    let write = async {
        io.write_all(data).await?;
        io.flush().await
    };
    matches!(tokio::time::timeout(idle, write).await, Ok(Ok(())))
}

/// What the body stream gave: a frame, or a pause in which gathered output should go out.
enum Step {
    Frame(Option<Result<Bytes, BodyError>>),
    Flush,
}

/// Sends the response head gathered in `out` and the body after it; returns whether the whole
/// response went out. When `last`, the connection carries nothing after it.
async fn send_body<IO: Transport>(
    io: &mut IO,
    out: &mut Vec<u8>,
    mut body: ProxyBody,
    chunked: bool,
    idle: Duration,
    last: bool,
) -> bool {
    loop {
        let step = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Pending if !out.is_empty() => Poll::Ready(Step::Flush),
            Poll::Pending => Poll::Pending,
            Poll::Ready(frame) => Poll::Ready(Step::Frame(frame.map(|f| f.map(|f| f.into_data().unwrap_or_default())))),
        })
        .await;
        match step {
            Step::Flush => {
                if !write_out(io, out, idle, false).await {
                    return false;
                }
            }
            Step::Frame(None) => break,
            // The dyno's body broke off: the client must not take what it got for the whole.
            Step::Frame(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body ended early");
                let _ = write_out(io, out, idle, false).await;
                return false;
            }
            Step::Frame(Some(Ok(data))) if data.is_empty() => {}
            Step::Frame(Some(Ok(data))) => {
                if chunked {
                    out.extend_from_slice(chunk_size_line(data.len()).as_bytes());
                }
                if out.len() + data.len() <= GATHER {
                    out.extend_from_slice(&data);
                } else if !write_out(io, out, idle, false).await || !write_all(io, &data, idle).await {
                    return false;
                }
                if chunked {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    write_out(io, out, idle, last).await
}

/// The client's request body, read from its connection as the dyno's side asks for it.
struct ClientBody<'a, IO> {
    io: &'a mut IO,
    buf: &'a mut BytesMut,
    length: BodyLength,
    /// How much of `100 Continue` is still to be sent: all of it when the client waits for it
    /// before sending its body, none when it did not ask.
    continue_left: usize,
    /// Whether the first chunk-size line of a chunked body is still to be checked before any
    /// of the body is passed on (a client that waited for `100 Continue`).
    first_chunk_unchecked: bool,
    /// Why the body was refused while it was read, for the client's answer.
    refused: Option<Refusal>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ClientBody<'_, IO> {
    /// Tells a client waiting for it to send its body.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.continue_left > 0 {
            let left = &CONTINUE[CONTINUE.len() - self.continue_left..];
            match ready!(Pin::new(&mut *self.io).poll_write(cx, left))? {
                0 => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                n => self.continue_left -= n,
            }
            if self.continue_left == 0 {
                ready!(Pin::new(&mut *self.io).poll_flush(cx))?;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Waits for a chunked body's first chunk-size line and checks it.
    async fn first_chunk(&mut self, timeout: Duration) -> Result<(), Refusal> {
        let timed_out = Refusal { status: StatusCode::REQUEST_TIMEOUT, reason: "request body not received in time" };
        let wait = async {
            std::future::poll_fn(|cx| self.poll_continue(cx)).await.map_err(|_| timed_out)?;
            while !request_head::first_chunk_ok(self.buf)? {
                decode::room_to_read(self.buf, READ_SIZE);
                match self.io.read_buf(self.buf).await {
                    Ok(0) | Err(_) => {
                        return Err(Refusal { status: StatusCode::BAD_REQUEST, reason: "request body cut short" });
                    }
                    Ok(_) => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(Err(timed_out))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> RequestBody for ClientBody<'_, IO> {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        ready!(self.poll_continue(cx))?;
        while self.first_chunk_unchecked {
            match request_head::first_chunk_ok(self.buf) {
                Ok(true) => self.first_chunk_unchecked = false,
                Ok(false) => {
                    decode::room_to_read(self.buf, READ_SIZE);
                    let read = ready!(std::pin::pin!(self.io.read_buf(self.buf)).poll(cx));
                    if matches!(read, Ok(0) | Err(_)) {
                        self.refused =
                            Some(Refusal { status: StatusCode::BAD_REQUEST, reason: "request body cut short" });
                        return Poll::Ready(Some(Err("request body cut short".into())));
                    }
                }
                Err(refusal) => {
                    self.refused = Some(refusal);
                    return Poll::Ready(Some(Err(refusal.reason.into())));
                }
            }
        }
        decode::poll_body(&mut *self.io, self.buf, &mut self.length, decode::Sender::Client, cx)
            .map(|d| d.map(|d| d.map_err(Into::into)))
    }

    fn expects_continue(&self) -> bool {
        self.continue_left == CONTINUE.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets() {
        let check = |target: &str, want: Option<(Option<&str>, &str)>| {
            let got = split_target(target.as_bytes());
            let got = got.as_ref().map(|(a, p)| (a.as_deref(), p.as_ref()));
            assert_eq!(got, want, "{target}");
        };
        check("/a/b?c=d", Some((None, "/a/b?c=d")));
        check("http://Host.example:80/a?b", Some((Some("Host.example:80"), "/a?b")));
        check("https://host.example", Some((Some("host.example"), "/")));
        check("http://host.example?x=1", Some((Some("host.example"), "/?x=1")));
        check("*", None);
        check("host.example:443", None);
        check("ftp://host/", None);
        check("http://user@host/", None);
        check("http:///path", None);
    }
}
