//! The exchange with a dyno over HTTP/1.1: writes the request head (and body) on a
//! [`DynoConnection`] and reads the dyno's response head, on the client connection's own task;
//! the response body is then read from the same connection as the client's side asks for it.
//!
//! hyper's client runs a task per connection and hands each request and response across channels;
//! on a proxy's hot path that was a large share of a request's cost. Here the request head is
//! written and the response head parsed (httparse) by the task serving the client, and the body
//! is read straight from the socket as the client's side asks for it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BodyError;
use crate::error::{Code, ProxyError};
use crate::http1::decode::{self, BodyLength, READ_SIZE};
use crate::http1::encode::{chunk_size_line, write_interim_head};
use crate::http1::response_head::{Interim, MAX_HEAD, ResponseHead, is_interim, parse_response_head};

/// A connection to a dyno.
#[derive(Debug)]
pub(crate) struct DynoConnection {
    /// The socket.
    pub(crate) stream: TcpStream,
    /// Bytes read and not yet used.
    pub(crate) buf: BytesMut,
    /// The dyno's address.
    pub(crate) addr: SocketAddr,
    /// The version of the routing table under which it was last checked out of the pool (or
    /// opened): the pool drops a connection checked out before a table that no longer has its
    /// dyno.
    pub(crate) table_version: u64,
    /// Whether it came from the pool (and so may turn out to be closed).
    pub(crate) reused: bool,
    /// The interim responses of the exchange in progress, kept for the client; boxed, and none
    /// until one comes, so that the connection stays small.
    interim: Option<Box<Interim>>,
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
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>>;

    /// Whether the client waits for `100 Continue` before it sends the body, which the first
    /// [`RequestBody::poll_data`] sends it.
    fn expects_continue(&self) -> bool {
        false
    }
}

/// How long the router waits for a dyno's `100 Continue` (or its final answer) before it tells
/// a waiting client to send its body anyway, as clients themselves wait about a second.
const CONTINUE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl DynoConnection {
    /// A new connection.
    pub(crate) fn new(stream: TcpStream, addr: SocketAddr) -> DynoConnection {
        DynoConnection { stream, buf: BytesMut::new(), addr, table_version: 0, reused: false, interim: None }
    }

    /// Whether an idle connection is still open: nothing to read yet, and no end of stream.
    pub(crate) fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends the request and reads the response head; interim (1xx) responses but 101 (which
    /// only an upgrade request may get) are kept in the final head's `interim`, but
    /// `100 Continue`, which the router sends the client itself.
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        body: &mut Option<&mut (dyn RequestBody + Send)>,
        chunked: bool,
        method: &Method,
        upgrade: bool,
    ) -> Result<ResponseHead, Failed> {
        self.interim = None;
        self.stream.write_all(head).await.map_err(Failed::NotSent)?;
        if let Some(body) = body.take()
            && let Some(mut early) = self.upload(body, chunked, method).await.map_err(Failed::Sent)?
        {
            // The dyno answered before it had the whole upload: the connection carries the
            // rest of it unread, and goes no further.
            early.keep_alive = false;
            early.interim = self.interim.take();
            return check_upgrade(early, upgrade);
        }
        loop {
            let mut head = self.read_head(method).await.map_err(Failed::Sent)?;
            if is_interim(head.status) {
                self.keep_interim(&head);
                continue;
            }
            head.interim = self.interim.take();
            return check_upgrade(head, upgrade);
        }
    }

    /// Keeps an interim response for the client, but `100 Continue`: the router answers a
    /// client's `Expect` itself, and a second one would be one too many.
    fn keep_interim(&mut self, head: &ResponseHead) {
        let interim = self.interim.get_or_insert_with(Box::default);
        if head.status == StatusCode::CONTINUE {
            interim.continued = true;
        } else {
            write_interim_head(&mut interim.bytes, head);
        }
    }

    /// [`DynoConnection::send_body`]'s future, boxed behind `dyn`: most requests have no body,
    /// and the upload's code (a few KiB: the watch for an early answer, `100 Continue`, the
    /// chunked framing) then stays out of the exchange's, whose instructions every request
    /// fetches (benches/RESULTS.md, router run 20). One allocation per request with a body.
    #[cold]
    #[inline(never)]
    fn upload<'a>(
        &'a mut self,
        body: &'a mut (dyn RequestBody + Send),
        chunked: bool,
        method: &'a Method,
    ) -> Pin<Box<dyn Future<Output = Result<Option<ResponseHead>, ProxyError>> + Send + 'a>> {
        Box::pin(self.send_body(body, chunked, method))
    }

    /// Streams the client's body to the dyno, as it came or chunked, while watching for an
    /// answer: a dyno may refuse an upload before reading it all (413, say), and stop reading or
    /// close. Returns such an early final answer; interim ones (100 Continue) are passed over.
    async fn send_body(
        &mut self,
        body: &mut (dyn RequestBody + Send),
        chunked: bool,
        method: &Method,
    ) -> Result<Option<ResponseHead>, ProxyError> {
        if body.expects_continue() {
            // The dyno got the client's `Expect` too (RFC 9110, section 10.1.1): its answer, or
            // its `100 Continue`, decides whether the client is asked for the body.
            let wait = tokio::time::sleep(CONTINUE_WAIT);
            tokio::pin!(wait);
            while !self.interim.as_ref().is_some_and(|i| i.continued) {
                tokio::select! {
                    biased;
                    r = self.stream.readable() => {
                        if let Some(head) = self.read_early(r, method)? {
                            return Ok(Some(head));
                        }
                    }
                    () = &mut wait => break,
                }
            }
        }
        loop {
            // While the client's body is slow to come, the dyno may answer (413, say) and close:
            // its answer goes to the client at once, not after the first-byte timeout.
            let data = tokio::select! {
                biased;
                r = self.stream.readable() => {
                    if let Some(head) = self.read_early(r, method)? {
                        return Ok(Some(head));
                    }
                    continue;
                }
                data = std::future::poll_fn(|cx| body.poll_data(cx)) => data,
            };
            let Some(data) = data else { break };
            let data = data.map_err(|e| ProxyError::new(Code::H27, e))?;
            if data.is_empty() {
                continue;
            }
            let size = chunk_size_line(data.len());
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
    async fn write_watching(&mut self, data: &[u8], method: &Method) -> Result<Option<ResponseHead>, ProxyError> {
        enum Ready {
            Read(std::io::Result<()>),
            Write(std::io::Result<()>),
        }
        let dyno_failed = |e: std::io::Error| ProxyError::new(Code::H13, e);
        let mut written = 0;
        while written < data.len() {
            let ready = tokio::select! {
                biased;
                r = self.stream.readable() => Ready::Read(r),
                w = self.stream.writable() => Ready::Write(w),
            };
            match ready {
                Ready::Read(r) => {
                    if let Some(head) = self.read_early(r, method)? {
                        return Ok(Some(head));
                    }
                }
                Ready::Write(w) => {
                    w.map_err(dyno_failed)?;
                    match self.stream.try_write(&data[written..]) {
                        Ok(n) => written += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            // It may have answered and closed: what it said is the answer.
                            self.read_what_is_left().await;
                            return self.early(method)?.map(Some).ok_or_else(|| dyno_failed(e));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Reads what the dyno sent during the upload, once its socket is readable (`ready`): its
    /// final answer when it is whole, an error when it closed without one.
    fn read_early(&mut self, ready: std::io::Result<()>, method: &Method) -> Result<Option<ResponseHead>, ProxyError> {
        let dyno_failed = |e: std::io::Error| ProxyError::new(Code::H13, e);
        ready.map_err(dyno_failed)?;
        match self.stream.try_read_buf(&mut self.buf) {
            Ok(0) => self
                .early(method)?
                .map(Some)
                .ok_or_else(|| ProxyError::new(Code::H13, "the dyno closed the connection during the upload")),
            Ok(_) => self.early(method),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(dyno_failed(e)),
        }
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
    fn early(&mut self, method: &Method) -> Result<Option<ResponseHead>, ProxyError> {
        while let Some(head) = parse_response_head(&mut self.buf, method)? {
            if !is_interim(head.status) {
                return Ok(Some(head));
            }
            self.keep_interim(&head);
        }
        Ok(None)
    }

    /// Reads and parses one response head.
    async fn read_head(&mut self, method: &Method) -> Result<ResponseHead, ProxyError> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) = parse_response_head(&mut self.buf, method)?
            {
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ProxyError::new(Code::H17, "response head too large"));
            }
            decode::room_to_read(&mut self.buf, READ_SIZE);
            let n = self.stream.read_buf(&mut self.buf).await.map_err(|e| ProxyError::new(Code::H13, e))?;
            if n == 0 {
                let what = if self.buf.is_empty() { Code::H13 } else { Code::H17 };
                return Err(ProxyError::new(what, "the dyno closed the connection before a whole response head"));
            }
        }
    }

    /// The next piece of a response body of `length`, which it advances; `None` at its end.
    pub(crate) fn poll_body(
        &mut self,
        length: &mut BodyLength,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        decode::poll_body(&mut self.stream, &mut self.buf, length, decode::Sender::Dyno, cx)
    }
}

/// Refuses a 101 to a request that asked for no upgrade.
fn check_upgrade(head: ResponseHead, upgrade: bool) -> Result<ResponseHead, Failed> {
    if head.status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(Failed::Sent(ProxyError::new(Code::H17, "101 to a request that asked for no upgrade")));
    }
    Ok(head)
}
