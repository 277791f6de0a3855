//! The upstream side of HTTP/1.1: writes a request head (and body) to a dyno and reads its
//! response head and body, on the client connection's own task.
//!
//! hyper's client runs a task per connection and hands each request and response across channels;
//! on a proxy's hot path that was a large share of a request's cost. Here the request head is
//! written and the response head parsed (httparse) by the task serving the client, and the body
//! is read straight from the socket as the client's side asks for it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Code, ProxyError};
use crate::fields::{Fields, Name};

/// Largest response head accepted; a larger one is a bad response (H17).
const MAX_HEAD: usize = 64 * 1024;

/// Most header fields in a response head.
const MAX_HEADERS: usize = 128;

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

/// How much is read from the dyno at once.
const READ_SIZE: usize = 16 * 1024;

/// A connection to a dyno.
#[derive(Debug)]
pub(crate) struct UpConn {
    pub(crate) stream: TcpStream,
    /// Bytes read and not yet used.
    pub(crate) buf: BytesMut,
    pub(crate) addr: SocketAddr,
    /// Whether it came from the pool (and so may turn out to be closed).
    pub(crate) reused: bool,
}

/// How a response body is delimited (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a response to HEAD, 1xx, 204 or 304.
    Empty,
    /// So many bytes still to come.
    Length(u64),
    /// Chunked, in this state.
    Chunked(Chunk),
    /// Until the dyno closes the connection.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, so many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Reading trailer lines after the last chunk, until an empty one.
    Trailers,
    /// Read to the end.
    Done,
}

impl Framing {
    /// Whether the body has been read to its end.
    pub(crate) fn is_done(self) -> bool {
        matches!(self, Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunk::Done))
    }
}

/// A dyno's response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    /// The header fields as the dyno sent them, hop-by-hop ones included.
    pub(crate) fields: Fields,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body is read.
    pub(crate) keep_alive: bool,
}

/// Why an exchange failed, and whether any of the request was sent.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Writing the head failed: the dyno took none of the request (a pooled connection that
    /// closed under us), so the request may go to another connection.
    NotSent(std::io::Error),
    /// The dyno may have the request: not retried.
    Sent(ProxyError),
}

/// A request body on its way to the dyno: the client's, read as the dyno's side asks for it.
pub(crate) trait RequestBody {
    /// The next piece of the body; `None` at its end.
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, crate::BodyError>>>;
}

/// An HTTP/2 request's body.
impl RequestBody for hyper::body::Incoming {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, crate::BodyError>>> {
        use http_body::Body as _;
        loop {
            return match ready!(Pin::new(&mut *self).poll_frame(cx)) {
                None => Poll::Ready(None),
                Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                // Trailers do not travel: the dyno's request head has gone.
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_) => continue,
                },
            };
        }
    }
}

/// The request head as the dyno gets it, and whether the body follows it chunked.
/// The client's `headers` go as they are but those `skip` names, then the groups of `extra`,
/// then `lines`, header lines already formatted.
pub(crate) fn encode_head(
    method: &Method,
    target: &str,
    headers: &Fields,
    skip: impl Fn(Name, &[u8]) -> bool,
    extra: &[&[(&str, &[u8])]],
    lines: &[u8],
    has_body: bool,
) -> (Vec<u8>, bool) {
    let size: usize = headers.iter().map(|(_, k, v)| k.len() + v.len() + 4).sum::<usize>()
        + extra.iter().flat_map(|e| e.iter()).map(|(k, v)| k.len() + v.len() + 4).sum::<usize>()
        + lines.len();
    let mut out = Vec::with_capacity(method.as_str().len() + target.len() + size + 64);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |k: &[u8], v: &[u8]| {
        out.extend_from_slice(k);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    };
    for (known, k, v) in headers.iter() {
        if !skip(known, k) {
            line(k, v);
        }
    }
    for (k, v) in extra.iter().flat_map(|e| e.iter()) {
        line(k.as_bytes(), v);
    }
    out.extend_from_slice(lines);
    let has_length = headers.contains(Name::ContentLength);
    // A body of unknown length (the client's was chunked, or HTTP/2) goes chunked; a request
    // without a body whose method normally has one says so, so the dyno does not wait for one.
    let chunked = has_body && !has_length;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if !has_body && !has_length && matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (out, chunked)
}

impl UpConn {
    /// A new connection.
    pub(crate) fn new(stream: TcpStream, addr: SocketAddr) -> UpConn {
        UpConn { stream, buf: BytesMut::new(), addr, reused: false }
    }

    /// Whether an idle connection is still open: nothing to read yet, and no end of stream.
    pub(crate) fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends the request and reads the response head, skipping interim (1xx) responses but
    /// 101, which only an upgrade request may get.
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        body: &mut Option<&mut (dyn RequestBody + Send)>,
        chunked: bool,
        method: &Method,
        upgrade: bool,
    ) -> Result<Head, Failed> {
        self.stream.write_all(head).await.map_err(Failed::NotSent)?;
        if let Some(body) = body.take()
            && let Some(mut early) = self.send_body(body, chunked, method).await.map_err(Failed::Sent)?
        {
            // The dyno answered before it had the whole upload: the connection carries the
            // rest of it unread, and goes no further.
            early.keep_alive = false;
            return check_upgrade(early, upgrade);
        }
        loop {
            let head = self.read_head(method).await.map_err(Failed::Sent)?;
            if is_interim(head.status) {
                continue;
            }
            return check_upgrade(head, upgrade);
        }
    }

    /// Streams the client's body to the dyno, as it came or chunked, while watching for an
    /// answer: a dyno may refuse an upload before reading it all (413, say), and stop reading or
    /// close. Returns such an early final answer; interim ones (100 Continue) are passed over.
    async fn send_body(
        &mut self,
        body: &mut (dyn RequestBody + Send),
        chunked: bool,
        method: &Method,
    ) -> Result<Option<Head>, ProxyError> {
        while let Some(data) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
            let data = data.map_err(|e| ProxyError::new(Code::H27, e))?;
            if data.is_empty() {
                continue;
            }
            let size = format!("{:x}\r\n", data.len());
            let pieces: [&[u8]; 3] = if chunked { [size.as_bytes(), &data, b"\r\n"] } else { [&data, b"", b""] };
            for piece in pieces {
                if let Some(head) = self.write_watching(piece, method).await? {
                    return Ok(Some(head));
                }
            }
        }
        if chunked {
            return self.write_watching(b"0\r\n\r\n", method).await;
        }
        Ok(None)
    }

    /// Writes `data` unless the dyno gives its final answer first, which it returns.
    async fn write_watching(&mut self, data: &[u8], method: &Method) -> Result<Option<Head>, ProxyError> {
        enum Ready {
            Read(std::io::Result<()>),
            Write(std::io::Result<()>),
        }
        let upstream = |e: std::io::Error| ProxyError::new(Code::H13, e);
        let mut written = 0;
        while written < data.len() {
            let ready = tokio::select! {
                biased;
                r = self.stream.readable() => Ready::Read(r),
                w = self.stream.writable() => Ready::Write(w),
            };
            match ready {
                Ready::Read(r) => {
                    r.map_err(upstream)?;
                    match self.stream.try_read_buf(&mut self.buf) {
                        Ok(0) => {
                            return self.early(method)?.map(Some).ok_or_else(|| {
                                ProxyError::new(Code::H13, "the dyno closed the connection during the upload")
                            });
                        }
                        Ok(_) => {
                            if let Some(head) = self.early(method)? {
                                return Ok(Some(head));
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(upstream(e)),
                    }
                }
                Ready::Write(w) => {
                    w.map_err(upstream)?;
                    match self.stream.try_write(&data[written..]) {
                        Ok(n) => written += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            // It may have answered and closed: what it said is the answer.
                            self.read_what_is_left().await;
                            return self.early(method)?.map(Some).ok_or_else(|| upstream(e));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Reads what a connection that failed still holds, until its end or error. The failure
    /// makes it readable at once; the bound only guards against a kernel that says otherwise.
    async fn read_what_is_left(&mut self) {
        let drain = async {
            loop {
                if self.stream.readable().await.is_err() {
                    return;
                }
                match self.stream.try_read_buf(&mut self.buf) {
                    Ok(0) => return,
                    Ok(_) if self.buf.len() > MAX_HEAD => return,
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }

    /// A final answer complete in the buffer, passing over interim ones; `None` if there is
    /// none yet.
    fn early(&mut self, method: &Method) -> Result<Option<Head>, ProxyError> {
        while let Some(head) = parse_head(&mut self.buf, method)? {
            if !is_interim(head.status) {
                return Ok(Some(head));
            }
        }
        Ok(None)
    }

    /// Reads and parses one response head.
    async fn read_head(&mut self, method: &Method) -> Result<Head, ProxyError> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) = parse_head(&mut self.buf, method)?
            {
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ProxyError::new(Code::H17, "response head too large"));
            }
            self.buf.reserve(READ_SIZE);
            let n = self.stream.read_buf(&mut self.buf).await.map_err(|e| ProxyError::new(Code::H13, e))?;
            if n == 0 {
                let what = if self.buf.is_empty() { Code::H13 } else { Code::H17 };
                return Err(ProxyError::new(what, "the dyno closed the connection before a whole response head"));
            }
        }
    }

    /// The next piece of a body framed by `framing`, which it advances; `None` at its end.
    pub(crate) fn poll_body(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        poll_body(&mut self.stream, &mut self.buf, framing, cx)
    }
}

/// The next piece of a body framed by `framing` (which it advances) from `buf` and then `io`;
/// `None` at its end. Used for the dyno's responses and the client's requests alike.
pub(crate) fn poll_body(
    io: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    framing: &mut Framing,
    cx: &mut Context<'_>,
) -> Poll<Option<std::io::Result<Bytes>>> {
    use std::future::Future as _;
    use std::io::{Error, ErrorKind};
    let truncated = || Error::new(ErrorKind::UnexpectedEof, "the connection closed mid-body");
    // Reads more into the buffer; `Ok(0)` at the end of the stream.
    let mut fill = |buf: &mut BytesMut, cx: &mut Context<'_>| {
        buf.reserve(READ_SIZE);
        std::pin::pin!(io.read_buf(buf)).poll(cx)
    };
    loop {
        match framing {
            Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunk::Done) => return Poll::Ready(None),
            Framing::Length(left) => {
                if buf.is_empty() && ready!(fill(buf, cx))? == 0 {
                    return Poll::Ready(Some(Err(truncated())));
                }
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                return Poll::Ready(Some(Ok(buf.split_to(take as usize).freeze())));
            }
            Framing::Close => {
                if buf.is_empty() && ready!(fill(buf, cx))? == 0 {
                    *framing = Framing::Empty;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(buf.split().freeze())));
            }
            Framing::Chunked(state) => match decode_chunk(buf, state) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if *state == Chunk::Done => return Poll::Ready(None),
                Ok(None) => {
                    if ready!(fill(buf, cx))? == 0 {
                        return Poll::Ready(Some(Err(truncated())));
                    }
                }
                Err(e) => return Poll::Ready(Some(Err(Error::new(ErrorKind::InvalidData, e)))),
            },
        }
    }
}

/// An interim response, passed over: 1xx but 101, which ends HTTP on the connection.
fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}

/// Refuses a 101 to a request that asked for no upgrade.
fn check_upgrade(head: Head, upgrade: bool) -> Result<Head, Failed> {
    if head.status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(Failed::Sent(ProxyError::new(Code::H17, "101 to a request that asked for no upgrade")));
    }
    Ok(head)
}

/// Parses a response head from the front of `buf`, removing it; `None` when more is needed.
pub(crate) fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, ProxyError> {
    let bad = |e: &dyn std::fmt::Display| ProxyError::new(Code::H17, e.to_string());
    // Uninitialised slots: initialising 128 empty headers cost more than parsing a small head.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(&e)),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|e| bad(&e))?;
    let version = if resp.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let places = Fields::locate(buf, resp.headers);
    let fields = Fields::new(buf.split_to(len).freeze(), places);
    let framing = framing(method, status, &fields)?;
    let keep_alive = framing != Framing::Close && persistent(version, &fields);
    Ok(Some(Head { status, fields, framing, keep_alive }))
}

/// How the body of a response with this status and these fields is delimited.
fn framing(method: &Method, status: StatusCode, fields: &Fields) -> Result<Framing, ProxyError> {
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if no_body {
        return Ok(Framing::Empty);
    }
    // One pass over the fields finds both framing fields; Transfer-Encoding wins.
    let (mut length, mut coding) = (None, None);
    for (known, _, value) in fields.iter() {
        if known == Name::TransferEncoding {
            coding = Some(value);
        } else if known == Name::ContentLength {
            for part in value.split(|&b| b == b',') {
                let n = content_length(part.trim_ascii())
                    .ok_or_else(|| ProxyError::new(Code::H17, "invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ProxyError::new(Code::H17, "conflicting Content-Length values"));
                }
                length = Some(n);
            }
        }
    }
    if coding.is_some() {
        // Chunked only when it is the last coding; any other is read until the dyno closes.
        let chunked = fields.tokens(Name::TransferEncoding).last().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked { Framing::Chunked(Chunk::Size) } else { Framing::Close });
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// A Content-Length value: digits only, no sign, no spaces.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether the dyno keeps the connection open after this response.
fn persistent(version: Version, fields: &Fields) -> bool {
    match version {
        Version::HTTP_10 => fields.has_token(Name::Connection, "keep-alive"),
        _ => !fields.has_token(Name::Connection, "close"),
    }
}

/// Decodes what it can of a chunked body from the front of `buf`: a piece of a chunk's data,
/// or `None` when it needs more bytes (or reached the end, `state` then being `Done`).
pub(crate) fn decode_chunk(buf: &mut BytesMut, state: &mut Chunk) -> Result<Option<Bytes>, &'static str> {
    loop {
        match *state {
            Chunk::Done => return Ok(None),
            Chunk::Size => {
                let Some(end) = find_crlf(buf) else {
                    return if buf.len() > MAX_LINE { Err("chunk size line too long") } else { Ok(None) };
                };
                if end > MAX_LINE {
                    return Err("chunk size line too long");
                }
                let line = &buf[..end];
                let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                let digits = std::str::from_utf8(digits).map_err(|_| "invalid chunk size")?.trim_matches([' ', '\t']);
                if digits.is_empty() || digits.len() > 15 {
                    return Err("invalid chunk size");
                }
                let size = u64::from_str_radix(digits, 16).map_err(|_| "invalid chunk size")?;
                buf.advance(end + 2);
                *state = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = left.min(buf.len() as u64);
                *state = if take == left { Chunk::DataEnd } else { Chunk::Data(left - take) };
                return Ok(Some(buf.split_to(take as usize).freeze()));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF");
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                // Trailer fields are dropped: the client's side has already sent its head.
                let Some(end) = find_crlf(buf) else {
                    return if buf.len() > MAX_LINE { Err("trailer line too long") } else { Ok(None) };
                };
                if end > MAX_LINE {
                    return Err("trailer line too long");
                }
                buf.advance(end + 2);
                if end == 0 {
                    *state = Chunk::Done;
                    return Ok(None);
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Decodes a chunked body arriving in `pieces`: the data, the decoder's final state and how many
/// bytes were left over, or the error that stopped it with the state it stopped in.
fn decode_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<u8>, Chunk, usize), (&'static str, Chunk)> {
    let (mut buf, mut state, mut out) = (BytesMut::new(), Chunk::Size, Vec::new());
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decode_chunk(&mut buf, &mut state) {
                Ok(Some(data)) => out.extend_from_slice(&data),
                Ok(None) => break,
                Err(e) => return Err((e, state)),
            }
        }
    }
    Ok((out, state, buf.len()))
}

/// For fuzzing: parses a response head from `data` and decodes a chunked body after it, checking
/// that nothing panics, that a head is consumed only when whole, and that the body decodes the
/// same whether its bytes arrive at once or split at `split`.
pub fn check_response(data: &[u8], split: usize) {
    let mut buf = BytesMut::from(data);
    let head = match parse_head(&mut buf, &Method::GET) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => {
            assert_eq!(&buf[..], data, "an incomplete or bad head consumes nothing");
            return;
        }
    };
    assert!(buf.len() < data.len(), "a head was consumed");
    if head.framing != Framing::Chunked(Chunk::Size) {
        return;
    }
    let body = buf.to_vec();
    let at = split % (body.len() + 1);
    let whole = decode_pieces([&body[..]]);
    let split = decode_pieces([&body[..at], &body[at..]]);
    assert_eq!(whole, split, "decoding depends on how the bytes arrive");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the data and the final state.
    fn decode(input: &[u8], step: usize) -> (Result<Vec<u8>, &'static str>, Chunk) {
        match decode_pieces(input.chunks(step)) {
            Ok((out, state, _)) => (Ok(out), state),
            Err((e, state)) => (Err(e), state),
        }
    }

    #[test]
    fn chunked_bodies() {
        let check = |input: &str, want: Result<&str, &str>, done: bool| {
            for step in [1, 2, 3, 7, input.len().max(1)] {
                let (got, state) = decode(input.as_bytes(), step);
                let got = got.map(|v| String::from_utf8(v).unwrap());
                assert_eq!(got.as_deref().map_err(|e| *e), want, "{input:?} in steps of {step}");
                if want.is_ok() {
                    assert_eq!(state == Chunk::Done, done, "{input:?} in steps of {step}: {state:?}");
                }
            }
        };
        check("5\r\nhello\r\n0\r\n\r\n", Ok("hello"), true);
        check("5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", Ok("hello world"), true);
        check("A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n", Ok("0123456789"), true);
        check("5\r\nhel", Ok("hel"), false);
        check("0\r\n\r\nleftover", Ok(""), true);
        check("z\r\n", Err("invalid chunk size"), false);
        check("\r\n", Err("invalid chunk size"), false);
        check("5\r\nhelloXX", Err("chunk data not followed by CRLF"), false);
        check("fffffffffffffffff\r\n", Err("invalid chunk size"), false);
        let long_trailer = format!("0\r\nX-Long: {}\r\n\r\n", "x".repeat(5000));
        check(&long_trailer, Err("trailer line too long"), false);
    }

    #[test]
    fn response_framing() {
        let check = |method: Method, status: u16, headers: &[(&str, &str)], want: Result<Framing, ()>| {
            let mut map = http::HeaderMap::new();
            for (k, v) in headers {
                map.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            let fields = Fields::from_map(&map);
            let got = framing(&method, StatusCode::from_u16(status).unwrap(), &fields).map_err(|_| ());
            assert_eq!(got, want, "{method} {status} {headers:?}");
        };
        check(Method::GET, 200, &[("content-length", "12")], Ok(Framing::Length(12)));
        check(Method::HEAD, 200, &[("content-length", "12")], Ok(Framing::Empty));
        check(Method::GET, 204, &[], Ok(Framing::Empty));
        check(Method::GET, 304, &[("content-length", "12")], Ok(Framing::Empty));
        check(Method::GET, 200, &[("transfer-encoding", "chunked")], Ok(Framing::Chunked(Chunk::Size)));
        check(Method::GET, 200, &[("transfer-encoding", "gzip, chunked")], Ok(Framing::Chunked(Chunk::Size)));
        check(Method::GET, 200, &[("transfer-encoding", "gzip")], Ok(Framing::Close));
        // Transfer-Encoding wins over Content-Length.
        check(
            Method::GET,
            200,
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            Ok(Framing::Chunked(Chunk::Size)),
        );
        check(Method::GET, 200, &[], Ok(Framing::Close));
        check(Method::GET, 200, &[("content-length", "5, 5")], Ok(Framing::Length(5)));
        check(Method::GET, 200, &[("content-length", "5"), ("content-length", "6")], Err(()));
        check(Method::GET, 200, &[("content-length", "-1")], Err(()));
        check(Method::GET, 200, &[("content-length", "+5")], Err(()));
    }

    #[test]
    fn response_heads() {
        let check = |input: &str, want: Option<(u16, Framing, bool, usize)>| {
            let mut buf = BytesMut::from(input);
            let got = parse_head(&mut buf, &Method::GET)
                .ok()
                .flatten()
                .map(|h| (h.status.as_u16(), h.framing, h.keep_alive, buf.len()));
            assert_eq!(got, want, "{input:?}");
        };
        check("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Some((200, Framing::Length(2), true, 2)));
        check(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            Some((200, Framing::Length(2), false, 2)),
        );
        check("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", Some((200, Framing::Length(2), false, 2)));
        check(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Some((200, Framing::Length(0), true, 0)),
        );
        check("HTTP/1.1 200 OK\r\n\r\nuntil close", Some((200, Framing::Close, false, 11)));
        check("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", Some((100, Framing::Empty, true, 17)));
        check("HTTP/1.1 200 OK\r\nContent-Len", None);
    }

    #[test]
    fn request_heads() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, http::HeaderValue::from_static("app.example.com"));
        let head = |m: Method, h: &http::HeaderMap, body| {
            let (bytes, chunked) = encode_head(&m, "/p?q=1", &Fields::from_map(h), |_, _| false, &[], b"", body);
            (String::from_utf8(bytes).unwrap(), chunked)
        };
        assert_eq!(
            head(Method::GET, &h, false),
            ("GET /p?q=1 HTTP/1.1\r\nhost: app.example.com\r\n\r\n".into(), false)
        );
        assert_eq!(
            head(Method::POST, &h, false),
            ("POST /p?q=1 HTTP/1.1\r\nhost: app.example.com\r\ncontent-length: 0\r\n\r\n".into(), false)
        );
        assert_eq!(
            head(Method::POST, &h, true),
            ("POST /p?q=1 HTTP/1.1\r\nhost: app.example.com\r\ntransfer-encoding: chunked\r\n\r\n".into(), true)
        );
        h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static("3"));
        assert!(!head(Method::POST, &h, true).1, "a body with a length goes as it is");
        h.insert(http::HeaderName::from_static("x-request-id"), http::HeaderValue::from_static("client's"));
        let (bytes, _) = encode_head(
            &Method::GET,
            "/",
            &Fields::from_map(&h),
            |known, _| known == Name::XRequestId,
            &[&[("x-request-id", b"platform's")], &[("via", b"1.1 wharf")]],
            b"x-orig-port: 443\r\n",
            false,
        );
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "GET / HTTP/1.1\r\nhost: app.example.com\r\ncontent-length: 3\r\nx-request-id: platform's\r\nvia: 1.1 wharf\r\n\
             x-orig-port: 443\r\n\r\n",
            "skipped fields give way to the extra ones, then the ready lines, which come last"
        );
    }
}
