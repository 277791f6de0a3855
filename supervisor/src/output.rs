//! A dyno's output: its stdout and stderr read in bounded pieces, cut into lines (a line longer
//! than [`MAX_LINE`] bytes into several), and put on the log bus in batches, never dropped
//! without saying so.
//!
//! Memory per pipe is bounded: one read buffer, one partial line of at most [`MAX_LINE`] bytes
//! plus a read, and one batch. When the embedded bus is full the reader waits, so the pipe fills
//! and the dyno blocks on its writes (backpressure, which a local runtime can afford where
//! Heroku's logplex drops). Kafka's queue is not waited for: what it drops is counted and
//! announced in the app's stream as Heroku's `Error L12 (local buffer overflow)`
//! (<https://devcenter.heroku.com/articles/error-codes#l12-local-buffer-overflow>).
//!
//! With the embedded bus the reader is also paced by the app's fastest live drain: before each
//! batch it waits while every live drain of the app holds more than half its budget (see
//! [`wharf_bus::pace`]), so a burst reaches a drain whole instead of overflowing its buffer.
//! Once the dyno is being stopped the reader no longer waits for the pace, so that a dyno
//! logging its way out is not held until SIGKILL by a drain: what a drain cannot take is then
//! dropped past its budget and announced (L10), as it is for a drain that is down.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use wharf_bus::event::{char_boundary, split_message};
use wharf_bus::{AppPace, LogEvent, Publisher, Stream};
use wharf_control_api::plane::OutputWriter;

/// The longest line put on the bus, in bytes: the bus's chunk size for every input, Heroku's limit
/// on a log line (<https://devcenter.heroku.com/articles/logging#log-format>: "split into 10000
/// byte chunks"); a longer line is split into several, each cut on a UTF-8 character boundary
/// by the bus's `char_boundary`, as every other input is.
pub(crate) const MAX_LINE: usize = wharf_bus::event::MAX_CHUNK;

/// How much is read from a pipe at once, in bytes: a Linux pipe's default capacity.
const READ_SIZE: usize = 64 * 1024;

/// A batch is handed to the bus once it holds this many message bytes...
const BATCH_BYTES: usize = 16 * 1024;

/// ... or this many lines, whichever comes first, and after each read.
const BATCH_LINES: usize = 256;

/// Cuts a byte stream into lines without their endings (LF or CRLF), and lines longer than
/// [`MAX_LINE`] bytes into pieces of at most that, cut on a UTF-8 character boundary.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    /// The current line's bytes so far: at most [`MAX_LINE`] between calls.
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `data`, handing each finished line or piece to `emit`.
    pub(crate) fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            let line = &data[..i];
            data = &data[i + 1..];
            if self.partial.is_empty() {
                emit_line(line, emit);
            } else {
                self.partial.extend_from_slice(line);
                emit_line(&self.partial, emit);
                self.partial.clear();
            }
        }
        self.partial.extend_from_slice(data);
        // Keep at most MAX_LINE bytes, plus a `\r` that may be the end of a CRLF.
        while self.partial.len() > MAX_LINE && !(self.partial.len() == MAX_LINE + 1 && self.partial.ends_with(b"\r")) {
            let cut = char_boundary(&self.partial, MAX_LINE);
            emit(&self.partial[..cut]);
            self.partial.drain(..cut);
        }
    }

    /// Hands what is left after the end of the stream to `emit`, as a last line.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit_line(&self.partial, emit);
            self.partial.clear();
        }
    }
}

/// Emits one finished line without its `\r`, in pieces of at most [`MAX_LINE`] bytes.
fn emit_line(line: &[u8], emit: &mut impl FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    split_message(line, MAX_LINE).for_each(emit);
}

/// Lines the bus did not take and the app's stream has not been told of yet.
#[derive(Debug, Default)]
struct Overflow {
    /// How many.
    count: u64,
    /// When the first of them was dropped, in microseconds since the epoch.
    since_micros: i64,
}

/// Reads `pipe` until its end, putting each line on the log bus as the app's (`app[DYNO]`),
/// paced by the app's drains until `stopping` says true (or its sender is gone); each line is
/// also pushed to `tee` when given: the output a release phase's `output_stream_url` streams
/// (`plane::outputs`), which holds a bounded number of lines.
pub(crate) async fn forward(
    mut pipe: impl AsyncRead + Unpin + Send + 'static,
    publisher: Publisher,
    app: String,
    dyno: String,
    stream: Stream,
    stopping: watch::Receiver<bool>,
    tee: Option<OutputWriter>,
) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut splitter = LineSplitter::default();
    let pace = publisher.pace(&app);
    let mut out = Batcher {
        publisher,
        pace,
        stopping,
        app,
        dyno,
        stream,
        batch: Vec::new(),
        bytes: 0,
        overflow: Overflow::default(),
        tee,
    };
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut full = Vec::new();
        splitter.push(&buf[..n], &mut |line| {
            if let Some(batch) = out.add(line) {
                full.push(batch);
            }
        });
        for batch in full {
            out.publish(batch).await;
        }
        out.flush().await;
    }
    let mut last = None;
    splitter.finish(&mut |line| last = out.add(line));
    if let Some(batch) = last {
        out.publish(batch).await;
    }
    out.flush().await;
}

/// Collects one pipe's lines into batches and hands them to the bus.
struct Batcher {
    publisher: Publisher,
    /// The app's pace, with the embedded bus.
    pace: Option<Arc<AppPace>>,
    /// True once the dyno is being stopped: then the pace is no longer waited for.
    stopping: watch::Receiver<bool>,
    app: String,
    dyno: String,
    stream: Stream,
    batch: Vec<LogEvent>,
    bytes: usize,
    overflow: Overflow,
    /// Where each line goes besides the bus, if anywhere.
    tee: Option<OutputWriter>,
}

impl Batcher {
    /// Adds a line; returns the batch when it is full.
    fn add(&mut self, line: &[u8]) -> Option<Vec<LogEvent>> {
        if let Some(tee) = &self.tee {
            tee.push(String::from_utf8_lossy(line).into_owned());
        }
        let event = LogEvent::builder(&self.app, "app").process(&self.dyno).stream(self.stream).message(line);
        self.batch.push(event);
        self.bytes += line.len();
        (self.bytes >= BATCH_BYTES || self.batch.len() >= BATCH_LINES).then(|| self.take())
    }

    fn take(&mut self) -> Vec<LogEvent> {
        self.bytes = 0;
        std::mem::take(&mut self.batch)
    }

    /// Hands what is collected to the bus.
    async fn flush(&mut self) {
        if !self.batch.is_empty() {
            let batch = self.take();
            self.publish(batch).await;
        }
    }

    /// Hands `batch` to the bus, waiting for the app's pace and for room; counts what it drops,
    /// and tells the app's stream of earlier drops as soon as the bus takes the notice.
    async fn publish(&mut self, batch: Vec<LogEvent>) {
        if let Some(pace) = &self.pace
            && pace.must_wait()
            && !*self.stopping.borrow()
        {
            // Until a drain has room again and the bus took the app's earlier batches on, or the
            // dyno is stopped (or its process dropped).
            tokio::select! {
                () = pace.ready() => {}
                _ = self.stopping.wait_for(|s| *s) => {}
            }
        }
        let n = batch.len() as u64;
        let published = self.publisher.publish_batch_waiting(batch, self.pace.as_ref()).await;
        if published < n {
            if self.overflow.count == 0 {
                self.overflow.since_micros = now_micros();
            }
            self.overflow.count += n - published;
        }
        if self.overflow.count > 0 {
            let since = wharf_domain::timestamp::format_micros(self.overflow.since_micros);
            let text =
                format!("Error L12 (local buffer overflow): {} messages dropped since {since}.", self.overflow.count);
            let notice = LogEvent::builder(&self.app, "akkeris/supervisor")
                .process(&self.dyno)
                .stream(Stream::Platform)
                .message(text.as_bytes());
            if self.publisher.publish_batch(vec![notice]) == 1 {
                self.overflow = Overflow::default();
            }
        }
    }
}

/// Microseconds since the epoch, now.
fn now_micros() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_bus::{Bus, BusConfig, SourceEvent};

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |l| out.push(l.to_vec()));
            assert!(s.partial.len() <= MAX_LINE + 1, "bounded between reads");
        }
        s.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_lose_their_endings_wherever_the_reads_cut_them() {
        let got = split(&[b"one\r", b"\ntw", b"o\n\nthree"]);
        assert_eq!(got, [&b"one"[..], b"two", b"", b"three"]);
    }

    #[test]
    fn a_long_line_is_split_into_pieces_of_at_most_10000_bytes_on_character_boundaries() {
        // 'é' is two bytes: a cut at 10,000 would fall inside one when preceded by one ASCII byte.
        let mut line = b"x".to_vec();
        line.extend("é".repeat(12_000).as_bytes());
        let pieces = split(&[&line, b"\n"]);
        assert!(pieces.iter().all(|p| p.len() <= MAX_LINE && std::str::from_utf8(p).is_ok()), "{:?}", pieces.len());
        assert_eq!(pieces.concat(), line);
        assert_eq!(pieces[0].len(), 9_999);
        // Without a newline, read in small pieces: the same pieces, and bounded memory.
        let reads: Vec<&[u8]> = line.chunks(4096).collect();
        assert_eq!(split(&reads), pieces);
        // Exactly 10,000 bytes, with CRLF: one line.
        let exact = [vec![b'a'; MAX_LINE], b"\r\n".to_vec()].concat();
        assert_eq!(split(&[&exact]), [vec![b'a'; MAX_LINE]]);
        assert_eq!(split(&[&exact[..MAX_LINE + 1], b"\n"]), [vec![b'a'; MAX_LINE]]);
    }

    #[tokio::test]
    async fn output_lines_reach_the_bus_in_order_and_a_full_bus_slows_the_reader_down() {
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 2 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let pipe = std::io::Cursor::new(text.into_bytes());
        let (_running, stopping) = watch::channel(false);
        let reader = tokio::spawn(forward(
            pipe,
            bus.publisher.clone(),
            "api-default".into(),
            "worker.1-abcde".into(),
            Stream::Stdout,
            stopping,
            None,
        ));
        let mut got = Vec::new();
        while got.len() < 20_000 {
            let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("closed") };
            for r in batch {
                assert_eq!((r.event.app(), r.event.process()), ("api-default", "worker.1-abcde"));
                got.push(String::from_utf8_lossy(r.event.message()).into_owned());
            }
        }
        reader.await.unwrap();
        assert!(got.iter().enumerate().all(|(i, l)| *l == format!("line {i}")));
        let mut out = String::new();
        bus.publisher.stats().render(&mut out);
        assert!(out.contains("\nwharf_bus_events_dropped_total 0\n"), "{out}");
    }

    /// The lines that reach `source` within an hour of paused time (none while the reader waits).
    async fn lines_within_an_hour(source: &mut wharf_bus::Source) -> usize {
        let mut n = 0;
        while let Ok(Some(SourceEvent::Batch(batch))) =
            tokio::time::timeout(std::time::Duration::from_secs(3600), source.recv()).await
        {
            n += batch.len();
        }
        n
    }

    /// With the embedded bus the reader waits while the app's drains are all full, for its own
    /// app only, and not once the dyno is being stopped.
    #[tokio::test(start_paused = true)]
    async fn the_reader_waits_for_its_app_s_pace_until_the_dyno_is_stopped() {
        use wharf_bus::DrainState;
        const FULL: DrainState = DrainState { live: true, full: true };
        const ROOM: DrainState = DrainState { live: true, full: false };
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 1024 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let pacer = source.pacer().expect("the embedded bus paces");
        let pace = pacer.app("api-default");
        pace.update(DrainState::default(), FULL);
        let text = || std::io::Cursor::new((0..1000).map(|i| format!("line {i}\n")).collect::<String>().into_bytes());
        let start = |app: &str, stopping| {
            tokio::spawn(forward(
                text(),
                bus.publisher.clone(),
                app.into(),
                "worker.1-abcde".into(),
                Stream::Stdout,
                stopping,
                None,
            ))
        };
        let (running, stopping) = watch::channel(false);
        let reader = start("api-default", stopping.clone());
        assert_eq!(lines_within_an_hour(&mut source).await, 0, "paused: every live drain of the app is full");
        pace.update(FULL, ROOM);
        assert_eq!(lines_within_an_hour(&mut source).await, 1000, "a drain has room again");
        reader.await.unwrap();

        pace.update(ROOM, FULL);
        let reader = start("api-default", stopping);
        assert_eq!(lines_within_an_hour(&mut source).await, 0);
        running.send_replace(true);
        assert_eq!(lines_within_an_hour(&mut source).await, 1000, "a dyno being stopped is not paced");
        reader.await.unwrap();

        let (_running, stopping) = watch::channel(false);
        assert!(pace.is_paused());
        let reader = start("other-default", stopping);
        assert_eq!(lines_within_an_hour(&mut source).await, 1000, "another app's drains never pace it");
        reader.await.unwrap();
    }
}
