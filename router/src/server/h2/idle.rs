//! How long an HTTP/2 connection may stay quiet, and the client's transport that tells: the
//! router's progress on the connection's requests ([`Activity`]), and where the client's bytes
//! are in HTTP/2's framing ([`Frames`]), so that a header block left unfinished is seen.
//! Only the router's progress counts, never bytes the client sends (ARCHITECTURE.md, "every
//! client connection has a deadline in every state").

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long an HTTP/2 connection may stay quiet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// With no request in flight (the header timeout); also how long a header block may take.
    pub(super) idle: Duration,
    /// With only response bodies in flight that the router cannot send (the client's flow
    /// control window is closed) and no other progress (the idle timeout).
    pub(super) silent_response: Duration,
}

/// Why [`Activity::quiet`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quiet {
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
pub(super) struct Activity {
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
    pub(super) fn new() -> Activity {
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
    pub(super) async fn quiet(&self, limits: Limits) -> Quiet {
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
pub(super) struct InFlight {
    activity: Arc<Activity>,
    handler: bool,
}

impl InFlight {
    pub(super) fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.handlers.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight { activity: activity.clone(), handler: true }
    }

    /// The handler returned; the response body is on its way.
    pub(super) fn into_body(mut self) -> InFlight {
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

/// Where the client's bytes are in HTTP/2's framing (RFC 9113 §3.4, §4.1): enough to tell when
/// a header block (HEADERS and the CONTINUATION frames that must follow it, §6.10) or a frame's
/// 9-byte header is left unfinished at the end of a read. Payloads are skipped, not read.
#[derive(Debug)]
pub(super) struct Frames {
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
pub(super) struct Watched<IO> {
    pub(super) io: IO,
    pub(super) activity: Arc<Activity>,
    pub(super) frames: Frames,
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
