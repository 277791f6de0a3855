//! Wharf's log event and its versioned binary encoding.
//!
//! An event is kept in its encoded form: the bytes that travel on the bus are the event, and
//! the accessors read fields out of them. Fanning an event out to many drains clones a
//! reference-counted buffer, never the fields.
//!
//! Encoding, version 1 (all integers big-endian):
//!
//! ```text
//! u8   version (1)
//! i64  event time, microseconds since the Unix epoch
//! u8   stream: 0 none, 1 stdout, 2 stderr
//! u8   app key length,  then the app key (`app-space`)
//! u8   site length,     then the site's domain (0: no site)
//! u8   source length,   then the source (`app`, `akkeris/router`, ...)
//! u8   process length,  then the process (`web.1562910588-cg82f`, or empty)
//!      the message: every remaining byte
//! ```
//!
//! The header fields are printable ASCII without spaces, so they can go into RFC 5424 header
//! fields as they are; the message is any bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// The encoding version this code writes.
pub const VERSION: u8 = 1;

/// Longest message one event can be built with by [`LogEventBuilder::message`]; longer ones
/// are cut there. Inputs never rely on this cut: they split lines longer than [`MAX_CHUNK`]
/// with [`LogEventBuilder::messages`] first, so that nothing is cut without notice.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Longest message of one event made from input, in bytes: longer lines are split into
/// chunks of at most this many bytes, as Heroku's logplex splits at 10,000 bytes, so that a
/// receiver gets every byte, in order, and can join the chunks again.
pub const MAX_CHUNK: usize = 10_000;

/// Splits a line into consecutive chunks of at most `max` bytes (at least 4), in order, whose
/// concatenation is the line. Every cut falls on a UTF-8 character boundary: a chunk ends
/// before a character that would not fit whole. Where the bytes there are not valid UTF-8
/// (no lead byte whose character crosses the limit), the cut is at the limit. An empty line is
/// one empty chunk.
///
/// This is the one function every input uses (`POST /log-events`, Akkeris' topics, events on
/// Wharf's topic, dyno output), with `max` = [`MAX_CHUNK`].
pub fn split_message(message: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let max = max.max(4);
    let mut rest = Some(message);
    std::iter::from_fn(move || {
        let line = rest.take()?;
        if line.len() <= max {
            return Some(line);
        }
        let cut = char_boundary(line, max);
        rest = Some(&line[cut..]);
        Some(&line[..cut])
    })
}

/// The largest cut at or below `limit` (for `limit < bytes.len()`) that does not fall inside a
/// UTF-8 character: `limit` itself unless a lead byte in the three bytes before it starts a
/// character that `limit` would split, followed only by continuation bytes. For bytes that are
/// not UTF-8 there, `limit`. Never 0 for `limit > 3`.
pub fn char_boundary(bytes: &[u8], limit: usize) -> usize {
    if limit >= bytes.len() {
        return bytes.len();
    }
    for back in 1..=3.min(limit) {
        let at = limit - back;
        let b = bytes[at];
        if b & 0xC0 == 0x80 {
            // A continuation byte: the lead byte is further back.
            continue;
        }
        let width = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return limit,
        };
        return if at + width > limit { at } else { limit };
    }
    limit
}

const FIXED: usize = 1 + 8 + 1;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Written by the platform, not by a process's standard streams: router access lines,
    /// events posted to `/log-events`, build output.
    Platform,

    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Why bytes are not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The version byte names an encoding this code does not know.
    #[error("unsupported log event version {0}")]
    Version(u8),
    /// The bytes end inside the header.
    #[error("log event is truncated")]
    Truncated,
    /// A header field has bytes outside printable ASCII, or a space.
    #[error("log event field {0} is not printable ASCII")]
    Field(&'static str),
    /// The stream byte is not 0, 1 or 2.
    #[error("log event has an unknown stream {0}")]
    Stream(u8),
    /// The app key is empty.
    #[error("log event has no app")]
    NoApp,
}

/// A log event, in its encoded form.
#[derive(Clone, PartialEq, Eq)]
pub struct LogEvent {
    buf: Bytes,
    /// Start offsets of app, site, source, process and message; each field ends where the
    /// next begins minus its length byte.
    app: (u16, u8),
    site: (u16, u8),
    source: (u16, u8),
    process: (u16, u8),
    message: u16,
}

impl LogEvent {
    /// Starts an event for the app `app-space` from `source`.
    pub fn builder<'a>(app: &'a str, source: &'a str) -> LogEventBuilder<'a> {
        LogEventBuilder { app, source, site: "", process: "", stream: Stream::Platform, time: None }
    }

    /// Checks and wraps bytes in the version 1 encoding (see the module docs) without copying
    /// them. Errors with the first [`FrameError`] found: version, truncation, stream byte, a
    /// header field outside printable ASCII, or an empty app key.
    pub fn decode(buf: Bytes) -> Result<LogEvent, FrameError> {
        let b = &buf[..];
        if b.is_empty() {
            return Err(FrameError::Truncated);
        }
        if b[0] != VERSION {
            return Err(FrameError::Version(b[0]));
        }
        if b.len() < FIXED {
            return Err(FrameError::Truncated);
        }
        match b[9] {
            0..=2 => {}
            s => return Err(FrameError::Stream(s)),
        }
        let mut at = FIXED;
        let mut field = |name: &'static str| -> Result<(u16, u8), FrameError> {
            let len = *b.get(at).ok_or(FrameError::Truncated)? as usize;
            let start = at + 1;
            let bytes = b.get(start..start + len).ok_or(FrameError::Truncated)?;
            // Every byte is looked at, without stopping at the first bad one: the check then
            // runs on many bytes at once (it is on the way of every line the consumer reads).
            if !bytes.iter().fold(true, |ok, c| ok & c.is_ascii_graphic()) {
                return Err(FrameError::Field(name));
            }
            at = start + len;
            Ok((start as u16, len as u8))
        };
        let app = field("app")?;
        let site = field("site")?;
        let source = field("source")?;
        let process = field("process")?;
        if app.1 == 0 {
            return Err(FrameError::NoApp);
        }
        Ok(LogEvent { message: at as u16, app, site, source, process, buf })
    }

    /// The encoded bytes, as they travel on the bus.
    pub fn encoded(&self) -> &Bytes {
        &self.buf
    }

    /// Whether both lines belong to the same app; cheaper than comparing [`LogEvent::app`]s.
    pub fn same_app(&self, other: &LogEvent) -> bool {
        self.raw(self.app) == other.raw(other.app)
    }

    fn raw(&self, (start, len): (u16, u8)) -> &[u8] {
        &self.buf[start as usize..start as usize + len as usize]
    }

    fn field(&self, place: (u16, u8)) -> &str {
        let bytes = self.raw(place);
        // Header fields were checked to be ASCII when built or decoded.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// When the line was written, in microseconds since the Unix epoch.
    pub fn time_micros(&self) -> i64 {
        i64::from_be_bytes(self.buf[1..9].try_into().expect("header length checked"))
    }

    /// When the line was written.
    pub fn time(&self) -> SystemTime {
        let us = self.time_micros();
        if us >= 0 {
            UNIX_EPOCH + Duration::from_micros(us as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
        }
    }

    /// The stream the line came from.
    pub fn stream(&self) -> Stream {
        match self.buf[9] {
            1 => Stream::Stdout,
            2 => Stream::Stderr,
            _ => Stream::Platform,
        }
    }

    /// The app's key, `app-space`.
    pub fn app(&self) -> &str {
        self.field(self.app)
    }

    /// The site the request came through, for router lines.
    pub fn site(&self) -> Option<&str> {
        Some(self.field(self.site)).filter(|s| !s.is_empty())
    }

    /// Who wrote the line: `app`, `akkeris/router`, ...
    pub fn source(&self) -> &str {
        self.field(self.source)
    }

    /// The process (dyno) that wrote the line; empty when none.
    pub fn process(&self) -> &str {
        self.field(self.process)
    }

    /// [`LogEvent::app`] as bytes, not checked again as UTF-8 (they are printable ASCII by
    /// construction): for what looks at every line's header fields, the logshuttle's drain
    /// lookup and syslog writer.
    pub fn app_bytes(&self) -> &[u8] {
        self.raw(self.app)
    }

    /// [`LogEvent::site`] as bytes (empty when none); see [`LogEvent::app_bytes`].
    pub fn site_bytes(&self) -> &[u8] {
        self.raw(self.site)
    }

    /// [`LogEvent::source`] as bytes; see [`LogEvent::app_bytes`].
    pub fn source_bytes(&self) -> &[u8] {
        self.raw(self.source)
    }

    /// [`LogEvent::process`] as bytes (empty when none); see [`LogEvent::app_bytes`].
    pub fn process_bytes(&self) -> &[u8] {
        self.raw(self.process)
    }

    /// The line itself.
    pub fn message(&self) -> &[u8] {
        &self.buf[self.message as usize..]
    }
}

impl std::fmt::Debug for LogEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEvent")
            .field("time_micros", &self.time_micros())
            .field("app", &self.app())
            .field("site", &self.site())
            .field("source", &self.source())
            .field("process", &self.process())
            .field("message", &String::from_utf8_lossy(self.message()))
            .finish()
    }
}

/// Builds a [`LogEvent`]. Header fields are cleaned rather than rejected: bytes outside
/// printable ASCII become `_` and each is cut at 255 bytes, because a producer's log line must
/// never be lost to a formatting mistake.
#[derive(Debug, Clone)]
pub struct LogEventBuilder<'a> {
    app: &'a str,
    source: &'a str,
    site: &'a str,
    process: &'a str,
    stream: Stream,
    time: Option<i64>,
}

impl<'a> LogEventBuilder<'a> {
    /// The site the request came through.
    pub fn site(mut self, site: &'a str) -> Self {
        self.site = site;
        self
    }

    /// The process (dyno) name.
    pub fn process(mut self, process: &'a str) -> Self {
        self.process = process;
        self
    }

    /// The output stream.
    pub fn stream(mut self, stream: Stream) -> Self {
        self.stream = stream;
        self
    }

    /// When the line was written; now, if not set.
    pub fn time(mut self, time: SystemTime) -> Self {
        self.time = Some(match time.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
        });
        self
    }

    /// When the line was written, in microseconds since the Unix epoch.
    pub fn time_micros(mut self, micros: i64) -> Self {
        self.time = Some(micros);
        self
    }

    /// Encodes the event with this message, cut at [`MAX_MESSAGE`] bytes: for messages the
    /// platform writes itself, which are short. Input lines go through
    /// [`LogEventBuilder::messages`].
    pub fn message(self, message: &[u8]) -> LogEvent {
        let message = &message[..message.len().min(MAX_MESSAGE)];
        let fields = [self.app, self.site, self.source, self.process];
        let header: usize = fields.iter().map(|f| 1 + f.len().min(255)).sum();
        let mut buf = BytesMut::with_capacity(FIXED + header + message.len());
        let micros = self
            .time
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64));
        buf.put_u8(VERSION);
        buf.put_i64(micros);
        buf.put_u8(match self.stream {
            Stream::Platform => 0,
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        });
        let app = if self.app.is_empty() { "unknown" } else { self.app };
        let mut offsets = [(0u16, 0u8); 4];
        for (i, f) in [app, self.site, self.source, self.process].into_iter().enumerate() {
            let f = &f.as_bytes()[..f.len().min(255)];
            buf.put_u8(f.len() as u8);
            offsets[i] = (buf.len() as u16, f.len() as u8);
            if f.iter().all(u8::is_ascii_graphic) {
                buf.put_slice(f);
            } else {
                buf.extend(f.iter().map(|&c| if c.is_ascii_graphic() { c } else { b'_' }));
            }
        }
        let message_at = buf.len() as u16;
        buf.put_slice(message);
        // Written valid by construction, so it is not decoded again.
        let [app, site, source, process] = offsets;
        LogEvent { buf: buf.freeze(), app, site, source, process, message: message_at }
    }

    /// Encodes one event per chunk of `message` ([`split_message`] at [`MAX_CHUNK`] bytes), in
    /// order, all with the same header and time: a long line arrives whole, in pieces a receiver
    /// can join. An empty message is one event.
    pub fn messages(self, message: &[u8]) -> Vec<LogEvent> {
        let mut b = self;
        if b.time.is_none() {
            // One time for every chunk, so that receivers that sort by time keep their order.
            b = b.time(SystemTime::now());
        }
        split_message(message, MAX_CHUNK).map(|chunk| b.clone().message(chunk)).collect()
    }
}

impl LogEvent {
    /// This event as events of at most [`MAX_CHUNK`] message bytes each (itself, when it is
    /// short enough): for events read from a topic some other producer wrote.
    pub fn into_chunks(self) -> Vec<LogEvent> {
        if self.message().len() <= MAX_CHUNK {
            return vec![self];
        }
        let builder = LogEvent::builder(self.app(), self.source())
            .site(self.site().unwrap_or_default())
            .process(self.process())
            .stream(self.stream())
            .time_micros(self.time_micros());
        builder.messages(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let e = LogEvent::builder("api-default", "app")
            .process("web.1-abcde")
            .site("www.example.com")
            .stream(Stream::Stderr)
            .time(t)
            .message(b"hello world");
        assert_eq!(
            (e.app(), e.source(), e.process(), e.site(), e.stream(), e.time(), e.message()),
            ("api-default", "app", "web.1-abcde", Some("www.example.com"), Stream::Stderr, t, &b"hello world"[..])
        );
        let again = LogEvent::decode(e.encoded().clone()).unwrap();
        assert_eq!(again, e);
        let bytes = (again.app_bytes(), again.source_bytes(), again.process_bytes(), again.site_bytes());
        assert_eq!(bytes, (&b"api-default"[..], &b"app"[..], &b"web.1-abcde"[..], &b"www.example.com"[..]));
        let bare = LogEvent::builder("api-default", "app").message(b"");
        assert_eq!((bare.process_bytes(), bare.site_bytes()), (&b""[..], &b""[..]), "none: empty");
    }

    #[test]
    fn builder_cleans_header_fields() {
        let e = LogEvent::builder("", "a b\u{e9}").process(&"p".repeat(300)).message(b"");
        assert_eq!(e.app(), "unknown");
        assert_eq!(e.source(), "a_b__");
        assert_eq!(e.process().len(), 255);
        assert_eq!(e.site(), None);
        let long = vec![b'x'; MAX_MESSAGE + 10];
        assert_eq!(LogEvent::builder("a-b", "app").message(&long).message().len(), MAX_MESSAGE);
    }

    #[test]
    fn long_lines_are_split_in_order_on_character_boundaries() {
        // 200,000 bytes of a dyno line: 20 chunks of 10,000 that join to the line.
        let line: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let events = LogEvent::builder("a-b", "app").messages(&line);
        assert_eq!(events.len(), 20);
        assert!(events.iter().all(|e| e.message().len() == MAX_CHUNK));
        assert!(events.iter().all(|e| e.time_micros() == events[0].time_micros()));
        assert_eq!(events.iter().flat_map(|e| e.message().iter().copied()).collect::<Vec<u8>>(), line);
        // Two-, three- and four-byte characters: no chunk ends inside one.
        for ch in ["\u{e9}", "\u{20ac}", "\u{1f600}"] {
            let text = format!("x{}", ch.repeat(6000));
            let chunks: Vec<&[u8]> = split_message(text.as_bytes(), MAX_CHUNK).collect();
            assert!(chunks.len() > 1, "{ch}");
            for c in &chunks {
                assert!(c.len() <= MAX_CHUNK && std::str::from_utf8(c).is_ok(), "{ch}: a chunk is valid UTF-8");
            }
            assert_eq!(chunks.concat(), text.as_bytes());
        }
        // Bytes that are not UTF-8 are cut at the limit, and nothing is lost.
        let bad = vec![0xffu8; 25_000];
        let chunks: Vec<&[u8]> = split_message(&bad, MAX_CHUNK).collect();
        assert_eq!(chunks.iter().map(|c| c.len()).collect::<Vec<_>>(), [10_000, 10_000, 5_000]);
        assert_eq!(split_message(b"", MAX_CHUNK).count(), 1);
        assert_eq!(LogEvent::builder("a-b", "app").messages(b"").len(), 1);
        let long = LogEvent::builder("a-b", "app").site("w.example.com").message(&line[..25_000]);
        let chunks = long.clone().into_chunks();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.site() == Some("w.example.com") && c.time_micros() == long.time_micros()));
    }

    #[test]
    fn char_boundaries() {
        let s = "a\u{e9}\u{20ac}".as_bytes(); // a, é (2 bytes), € (3 bytes)
        assert_eq!([1, 2, 3, 4, 5, 6].map(|l| char_boundary(s, l)), [1, 1, 3, 3, 3, 6]);
        assert_eq!(char_boundary(&[0x80, 0x80, 0x80, 0x80, 0x80], 3), 3);
    }

    #[test]
    fn decode_rejects_bad_frames() {
        let good = LogEvent::builder("api-default", "app").message(b"m").encoded().to_vec();
        let check = |mut bytes: Vec<u8>, edit: &dyn Fn(&mut Vec<u8>), want: FrameError| {
            edit(&mut bytes);
            assert_eq!(LogEvent::decode(Bytes::from(bytes)), Err(want));
        };
        check(good.clone(), &|b| b.clear(), FrameError::Truncated);
        check(good.clone(), &|b| b[0] = 2, FrameError::Version(2));
        check(good.clone(), &|b| b.truncate(5), FrameError::Truncated);
        check(good.clone(), &|b| b[9] = 7, FrameError::Stream(7));
        check(good.clone(), &|b| b[10] = 200, FrameError::Truncated);
        check(good.clone(), &|b| b[11] = b' ', FrameError::Field("app"));
        check(good, &|b| *b = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], FrameError::NoApp);
    }
}
