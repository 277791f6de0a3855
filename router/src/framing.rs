//! A strict gate in front of hyper's HTTP/1 parser: request heads that different servers could
//! frame differently never reach the parser intact, so they are never forwarded.
//!
//! hyper follows RFC 9112's lenient options: it accepts a bare LF as a line end, and resolves
//! Content-Length beside Transfer-Encoding by dropping the length. Either is how a request is
//! smuggled past one hop and split differently by the next, so the router refuses both. The
//! gate holds each request head until it is complete, checks it, and passes it on unchanged;
//! a refused head is replaced by a line hyper cannot parse, so that hyper answers 400 and
//! closes the connection, as it does for every other malformed request. To find where the
//! next head starts, the gate follows each message's body framing (Content-Length or chunked).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What hyper sees instead of a refused head: not a request line, so it answers 400.
const REFUSED: &[u8] = b"\x00 refused-ambiguous-framing\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head.
    Head,
    /// Passing `n` more body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Passing a chunk's data and its CRLF: `n` more bytes.
    ChunkData(u64),
    /// Reading trailer lines until an empty one.
    Trailers,
    /// No more checks on this connection: an upgrade, a refusal, or framing the gate does
    /// not follow (which hyper then refuses on its own).
    Passthrough,
}

/// An HTTP/1 client connection with the gate in front of it.
pub(crate) struct Gate<IO> {
    inner: IO,
    state: State,
    /// Bytes read but not yet handed to hyper: a partial head, or a partial chunk line.
    pending: Vec<u8>,
    /// A chunked request's head, held until its first chunk-size line is checked too, so that
    /// a body that cannot be framed is refused before the request is forwarded.
    held: Vec<u8>,
    /// Validated bytes waiting for hyper to read them.
    ready: Vec<u8>,
    ready_at: usize,
    /// Longest head held before giving up and letting hyper's own limit (431) answer.
    max_head: usize,
}

impl<IO> Gate<IO> {
    pub(crate) fn new(inner: IO, max_head: usize) -> Self {
        Gate {
            inner,
            state: State::Head,
            pending: Vec::new(),
            held: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            max_head,
        }
    }

    /// Moves what can be judged from `input` to `ready`.
    fn process(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match self.state {
                State::Passthrough => {
                    self.ready.extend_from_slice(input);
                    return;
                }
                State::Body(n) | State::ChunkData(n) => {
                    let take = (n as usize).min(input.len());
                    self.ready.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::ChunkData(_), 0) => State::ChunkSize,
                        (State::Body(_), _) => State::Body(left),
                        _ => State::ChunkData(left),
                    };
                }
                State::Head => {
                    let start = self.pending.len().saturating_sub(3);
                    self.pending.extend_from_slice(input);
                    input = &[];
                    // Blank lines before a request line are allowed, and hyper skips them.
                    let Some(end) = find_head_end(&self.pending, start) else {
                        if self.pending.len() > self.max_head {
                            self.state = State::Passthrough;
                            self.ready.append(&mut self.pending);
                        }
                        return;
                    };
                    let rest = self.pending.split_off(end);
                    let head = std::mem::take(&mut self.pending);
                    match judge(&head) {
                        Ok(State::ChunkSize) => {
                            self.held = head;
                            self.state = State::ChunkSize;
                        }
                        Ok(next) => {
                            self.ready.extend_from_slice(&head);
                            self.state = next;
                        }
                        Err(why) => {
                            tracing::debug!(why, "request refused before parsing");
                            self.ready.extend_from_slice(REFUSED);
                            self.state = State::Passthrough;
                            return;
                        }
                    }
                    if !rest.is_empty() {
                        self.process(&rest);
                    }
                }
                State::ChunkSize | State::Trailers => {
                    self.pending.extend_from_slice(input);
                    input = &[];
                    while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.pending.drain(..=nl).collect();
                        let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
                        let size = (self.state == State::ChunkSize).then(|| chunk_size(text));
                        if !self.held.is_empty() {
                            if size == Some(None) {
                                tracing::debug!("request refused before parsing: invalid chunk size");
                                self.held.clear();
                                self.pending.clear();
                                self.ready.extend_from_slice(REFUSED);
                                self.state = State::Passthrough;
                                return;
                            }
                            self.ready.append(&mut self.held);
                        }
                        self.ready.extend_from_slice(&line);
                        self.state = match size {
                            Some(Some(0)) => State::Trailers,
                            Some(Some(n)) => State::ChunkData(n + 2),
                            // A later chunk that cannot be framed is hyper's to refuse.
                            Some(None) => State::Passthrough,
                            None if text.is_empty() => State::Head,
                            None => State::Trailers,
                        };
                        if !matches!(self.state, State::ChunkSize | State::Trailers) {
                            let rest = std::mem::take(&mut self.pending);
                            self.process(&rest);
                            return;
                        }
                    }
                    if self.pending.len() > 4096 {
                        self.state = State::Passthrough;
                        self.ready.append(&mut self.held);
                        self.ready.append(&mut self.pending);
                    }
                }
            }
        }
    }
}

/// The end of the head that starts `buf` (after any blank lines), searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let from = from.max(skip);
    // Either terminator ends the head; a bare LF in it is judged afterwards.
    (from..buf.len())
        .find(|&i| {
            buf[i] == b'\n'
                && i > skip
                && (buf[i - 1] == b'\n' || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'))
        })
        .map(|i| i + 1)
}

/// Checks a complete head; returns the state its body puts the gate in.
fn judge(head: &[u8]) -> Result<State, &'static str> {
    let skip = head.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let head = &head[skip..];
    if head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r')) {
        return Err("bare LF in request head");
    }
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let (mut length, mut chunked, mut te, mut upgrade) = (None, false, false, false);
    for line in lines.filter(|l| !l.is_empty()) {
        if line[0] == b' ' || line[0] == b'\t' {
            return Err("obsolete line folding in request head");
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
            match (length, n) {
                (_, None) => return Err("invalid Content-Length"),
                (Some(prev), Some(n)) if prev != n => return Err("conflicting Content-Length values"),
                (_, n) => length = n,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            chunked =
                value.rsplit(|&b| b == b',').next().is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    if te && length.is_some() {
        return Err("both Content-Length and Transfer-Encoding");
    }
    let http10 = request_line.ends_with(b"HTTP/1.0");
    Ok(if upgrade || (te && !chunked) || http10 && te {
        // An upgraded connection stops being HTTP; a bad Transfer-Encoding is hyper's to refuse.
        // When the dyno declines an upgrade, the connection stays HTTP but unchecked by the
        // gate from here on (hyper still parses it): the gate cannot see the dyno's answer.
        State::Passthrough
    } else if chunked {
        State::ChunkSize
    } else {
        match length {
            Some(0) | None => State::Head,
            Some(n) => State::Body(n),
        }
    })
}

/// A chunk-size line's size, ignoring extensions; `None` when it is not hex.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&b| b == b';').next()?.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

impl<IO: AsyncRead + Unpin> AsyncRead for Gate<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = (this.ready.len() - this.ready_at).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // Unchecked connections go straight into hyper's buffer.
            if let State::Passthrough = this.state {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Read into hyper's buffer too, and judge the new bytes there: when they are whole
            // heads and bodies that pass, as almost all are, they stay where they are. Only a
            // partial or refused head is taken back out and held.
            let start = buf.filled().len();
            let nothing_held = this.pending.is_empty() && this.held.is_empty();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() == start {
                // End of stream: whatever was held goes to hyper, which judges a partial head.
                this.ready.append(&mut this.held);
                this.ready.append(&mut this.pending);
                this.state = State::Passthrough;
                if this.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let new = &buf.filled()[start..];
            this.process(new);
            if nothing_held && this.pending.is_empty() && this.held.is_empty() && this.ready == new {
                this.ready.clear();
                return Poll::Ready(Ok(()));
            }
            buf.set_filled(start);
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Gate<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes and returns what hyper would read.
    fn gate(input: &[u8], step: usize) -> Vec<u8> {
        let mut g = Gate::new((), 16 * 1024);
        for piece in input.chunks(step) {
            g.process(piece);
        }
        g.ready
    }

    fn check(input: &str, refused: bool) {
        for step in [1, 3, 7, input.len().max(1)] {
            let out = gate(input.as_bytes(), step);
            let was_refused = out.windows(REFUSED.len()).any(|w| w == REFUSED);
            assert_eq!(was_refused, refused, "step {step}: {input:?}");
            if !refused {
                assert_eq!(out, input.as_bytes(), "step {step}: accepted input passes unchanged");
            }
        }
    }

    #[test]
    fn judges_every_head_on_a_connection() {
        let ok = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        check(ok, false);
        check(&format!("\r\n{ok}{ok}"), false);
        check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab\ncdGET / HTTP/1.1\r\n\r\n", false);
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\na\nb\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            false,
        );
        check("GET / HTTP/1.1\nHost: a\n\n", true);
        check("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", true);
        check("POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true);
        check("POST / HTTP/1.1\r\ncontent-length: 4\r\nContent-Length: 5\r\n\r\nabcd", true);
        check("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", true);
        check("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", true);
        // A smuggled head after a body is judged too.
        check("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\nHost: a\n\n", true);
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        );
    }
}
