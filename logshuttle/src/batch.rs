//! A batch: the lines a drain took from its buffer, framed once for its transport and kept as
//! they are across retries, with how far delivery got.
//!
//! Notices (L13 for refused lines, L10 for overflow) come first, then the lines in buffer order.
//! Every message's end is recorded, so a UDP drain sends one datagram per message and an HTTPS
//! drain can send a batch its receiver found too large (413) in halves.

use wharf_bus::LogEvent;
use wharf_domain::{DrainScheme, DrainUrl, SyslogFraming};

use crate::buffer::{Entry, Overflow};
use crate::syslog;

/// The largest UDP datagram sent unless the URL says `max_size`: what RFC 5426 says every
/// receiver should accept.
pub const UDP_MAX_SIZE: usize = 2048;

/// A batch ready to send.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The lines it carries, for the buffer's bookkeeping.
    pub(crate) entries: Vec<Entry>,
    /// Framed messages for streams and HTTPS, or datagrams back to back for UDP.
    pub(crate) frames: Vec<u8>,
    /// Where each message ends in `frames`.
    pub(crate) ends: Vec<usize>,
    /// How many of the messages, at the front, are notices rather than lines.
    pub(crate) notices: usize,
    /// The refusal an L13 notice at index 0 announces, to announce again if that notice is
    /// itself refused.
    pub(crate) announced: Option<Overflow>,
    /// The HTTPS `Logplex-Frame-Id`, the same on every attempt so the receiver can drop repeats.
    pub(crate) frame_id: String,
    /// Messages at the front already delivered or refused: a retry resumes after them.
    pub(crate) done: usize,
    /// Most messages per HTTPS POST: all of them, until a receiver answers 413.
    pub(crate) piece: usize,
    /// Lines (not notices) the receiver took so far.
    pub(crate) sent_lines: u64,
    /// Lines the receiver refused for good, with the time of the first, and the last reason;
    /// the count includes what a refused L13 notice announced, to announce it again.
    pub(crate) refused: Option<(Overflow, String)>,
    /// Lines of this batch the receiver refused for good.
    pub(crate) refused_lines: u64,
}

impl Batch {
    /// How many messages: the notices and the lines.
    pub(crate) fn messages(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.frames.clear();
        self.ends.clear();
        self.notices = 0;
        self.announced = None;
        self.done = 0;
        self.piece = 0;
        self.sent_lines = 0;
        self.refused = None;
        self.refused_lines = 0;
    }

    /// The bytes of messages `from..to`.
    pub(crate) fn range(&self, from: usize, to: usize) -> &[u8] {
        let start = if from == 0 { 0 } else { self.ends[from - 1] };
        &self.frames[start..self.ends[to - 1]]
    }

    /// How many of messages `from..to` are lines rather than notices.
    pub(crate) fn lines_in(&self, from: usize, to: usize) -> u64 {
        (to - from.max(self.notices).min(to)) as u64
    }

    /// Records messages `from..to` as delivered.
    pub(crate) fn delivered(&mut self, from: usize, to: usize) {
        self.sent_lines += self.lines_in(from, to);
        self.done = to;
    }

    /// Records messages `from..to` as refused for good by the receiver, for `reason`.
    pub(crate) fn refuse(&mut self, from: usize, to: usize, reason: String) {
        let lines = self.lines_in(from, to);
        let first_line = from.max(self.notices) - self.notices;
        self.refused_lines += lines;
        let mut count = lines;
        let mut since = self.entries.get(first_line).map(|e| e.event.time_micros());
        // The refused part held the L13 notice: what it announced is still to be announced.
        if from == 0
            && let Some(a) = self.announced
        {
            count += a.count;
            since = Some(since.map_or(a.since_micros, |s| s.min(a.since_micros)));
        }
        if count > 0 {
            let since = since.unwrap_or_else(now_micros);
            let r = self.refused.get_or_insert((Overflow { count: 0, since_micros: since }, String::new()));
            r.0.count += count;
            r.1 = reason;
        }
        self.done = to;
    }

    /// Appends a notice; notices go before any line.
    pub(crate) fn notice(&mut self, url: &DrainUrl, event: &LogEvent, truncated: &mut u64) {
        debug_assert_eq!(self.messages(), self.notices);
        self.notices += 1;
        self.append(url, event, truncated);
    }

    /// Appends one event: a framed message for streams and HTTPS, a datagram for UDP (counting
    /// in `truncated` a message cut to fit it).
    pub(crate) fn append(&mut self, url: &DrainUrl, event: &LogEvent, truncated: &mut u64) {
        frame(&mut self.frames, &mut self.ends, url, event, truncated);
    }

    /// Appends every line of `entries`, in order, after the notices: the lines are borrowed
    /// where they lie, not cloned (a clone would cost each line a reference count's round
    /// trip).
    pub(crate) fn append_entries(&mut self, url: &DrainUrl, truncated: &mut u64) {
        let Batch { entries, frames, ends, .. } = self;
        for e in entries.iter() {
            frame(frames, ends, url, &e.event, truncated);
        }
    }
}

/// Frames one event onto `frames` and records its end in `ends`: a framed message for streams
/// and HTTPS, a datagram for UDP (counting in `truncated` a message cut to fit it).
fn frame(frames: &mut Vec<u8>, ends: &mut Vec<usize>, url: &DrainUrl, event: &LogEvent, truncated: &mut u64) {
    match url.scheme() {
        DrainScheme::SyslogUdp => {
            let max = url.max_size().unwrap_or(UDP_MAX_SIZE);
            if syslog::write_message(frames, event, Some(max)) {
                *truncated += 1;
            }
        }
        // logplex-1 bodies are octet-counted RFC 5424 frames, whatever the URL says.
        DrainScheme::Https => syslog::write_framed(frames, event, SyslogFraming::OctetCounting),
        _ => syslog::write_framed(frames, event, url.framing()),
    }
    ends.push(frames.len());
}

use crate::buffer::now_micros;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64) -> Entry {
        Entry { event: LogEvent::builder("a-b", "app").time_micros(i).message(b"m"), position: None, replayed: false }
    }

    #[test]
    fn refusals_count_lines_and_reannounce_a_refused_notice() {
        let url: DrainUrl = "https://h/p".parse().unwrap();
        let mut b = Batch::default();
        let mut t = 0;
        b.announced = Some(Overflow { count: 7, since_micros: 5 });
        b.notice(&url, &LogEvent::builder("a-b", "akkeris/logshuttle").message(b"L13"), &mut t);
        for i in 10..14 {
            b.entries.push(entry(i));
            let e = b.entries.last().unwrap().event.clone();
            b.append(&url, &e, &mut t);
        }
        assert_eq!((b.messages(), b.lines_in(0, 5), b.lines_in(0, 1), b.lines_in(3, 5)), (5, 4, 0, 2));
        assert!(b.range(0, 5).len() == b.frames.len() && b.range(1, 2).ends_with(b"- - m"));
        b.delivered(3, 5);
        assert_eq!(b.sent_lines, 2);
        b.refuse(0, 3, "413".into());
        assert_eq!(b.refused.as_ref().unwrap().0, Overflow { count: 2 + 7, since_micros: 5 });
        assert_eq!(b.refused_lines, 2);
    }
}
