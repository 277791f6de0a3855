//! RFC 5424 messages and RFC 6587 framing.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`, where HOSTNAME is the app's key,
//! APP-NAME the source (`app`, `akkeris/router`), PROCID the dyno, MSGID and SD nil. Header
//! fields are cut at RFC 5424's byte limits; they are printable ASCII by construction of the
//! event. Every cut made here (a header field's limit, a UDP datagram's size) falls on a UTF-8
//! character boundary ([`wharf_bus::event::char_boundary`]), so a receiver that checks UTF-8,
//! as Vector's syslog source does, never sees half a character.

use wharf_bus::{LogEvent, Stream};
use wharf_domain::SyslogFraming;

/// Facility local7: the platform's, as Heroku's logplex uses.
const FACILITY: u8 = 23;
/// Severities: informational for output, error for standard error.
const INFO: u8 = 6;
const ERR: u8 = 3;

/// RFC 5424 field limits, in bytes.
const HOSTNAME_MAX: usize = 255;
const APP_NAME_MAX: usize = 48;
const PROCID_MAX: usize = 128;

fn field(out: &mut Vec<u8>, value: &[u8], max: usize) {
    if value.is_empty() {
        out.push(b'-');
    } else {
        out.extend_from_slice(&value[..wharf_bus::event::char_boundary(value, max)]);
    }
}

/// Appends the RFC 5424 message for an event, without framing. `max_len` cuts the message
/// (UDP datagrams) at the last character boundary within that many bytes; it returns whether
/// it had to.
pub fn write_message(out: &mut Vec<u8>, e: &LogEvent, max_len: Option<usize>) -> bool {
    let start = out.len();
    write_header(out, e);
    out.extend_from_slice(e.message());
    match max_len {
        Some(max) if out.len() - start > max => {
            let cut = wharf_bus::event::char_boundary(&out[start..], max);
            out.truncate(start + cut);
            true
        }
        _ => false,
    }
}

/// Appends everything of the RFC 5424 message for an event that comes before its text: a
/// few dozen bytes, the header fields read as bytes (they are printable ASCII by construction,
/// so not checked again).
fn write_header(out: &mut Vec<u8>, e: &LogEvent) {
    let severity = if e.stream() == Stream::Stderr { ERR } else { INFO };
    out.push(b'<');
    push_u64(out, u64::from(FACILITY * 8 + severity));
    out.extend_from_slice(b">1 ");
    // A producer's clock can say anything; RFC 5424 has four-digit years, and a nil timestamp
    // for times it cannot write.
    match wharf_domain::timestamp::micros_bytes(e.time_micros()) {
        Some(ts) => out.extend_from_slice(&ts),
        None => out.push(b'-'),
    }
    out.push(b' ');
    field(out, e.app_bytes(), HOSTNAME_MAX);
    out.push(b' ');
    field(out, e.source_bytes(), APP_NAME_MAX);
    out.push(b' ');
    field(out, e.process_bytes(), PROCID_MAX);
    out.extend_from_slice(b" - - ");
}

/// Appends one framed message for a stream transport.
pub fn write_framed(out: &mut Vec<u8>, e: &LogEvent, framing: SyslogFraming) {
    match framing {
        SyslogFraming::OctetCounting => {
            // Write the header first, then splice the message's length in front of it and
            // append the text: moving the header (a few dozen bytes) up by the prefix's few
            // bytes costs less than an allocation per line, or than moving the whole message.
            let start = out.len();
            write_header(out, e);
            let end = out.len();
            let mut digits = itoa::Buffer::new();
            let len = digits.format(end - start + e.message().len()).as_bytes();
            let shift = len.len() + 1;
            out.resize(end + shift, 0);
            out.copy_within(start..end, start + shift);
            out[start..start + len.len()].copy_from_slice(len);
            out[start + len.len()] = b' ';
            out.extend_from_slice(e.message());
        }
        SyslogFraming::NonTransparent => {
            let start = out.len();
            write_message(out, e, None);
            // A newline inside the message would end the frame early.
            for b in &mut out[start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
            out.push(b'\n');
        }
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn event(msg: &[u8]) -> LogEvent {
        LogEvent::builder("api-default", "app")
            .process("web.1-abcde")
            .stream(Stream::Stdout)
            .time(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456))
            .message(msg)
    }

    #[test]
    fn formats_rfc5424() {
        let mut out = Vec::new();
        write_message(&mut out, &event(b"hello"), None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<190>1 2023-11-14T22:13:20.123456Z api-default app web.1-abcde - - hello"
        );
        let mut out = Vec::new();
        let router =
            LogEvent::builder("api-default", "akkeris/router").stream(Stream::Stderr).time(UNIX_EPOCH).message(b"x");
        write_message(&mut out, &router, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<187>1 1970-01-01T00:00:00.000000Z api-default akkeris/router - - - x"
        );
    }

    #[test]
    fn times_rfc_5424_cannot_write_are_nil() {
        for micros in [i64::MIN, i64::MAX, wharf_domain::timestamp::MAX_MICROS + 1] {
            let mut out = Vec::new();
            write_message(&mut out, &LogEvent::builder("a-b", "app").time_micros(micros).message(b"m"), None);
            assert!(out.starts_with(b"<190>1 - a-b app"), "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn long_header_fields_are_cut_to_rfc_limits() {
        let long = "s".repeat(100);
        let e = LogEvent::builder("api-default", &long).process(&"p".repeat(200)).message(b"m");
        let mut out = Vec::new();
        write_message(&mut out, &e, None);
        let text = String::from_utf8(out).unwrap();
        let fields: Vec<&str> = text.split(' ').collect();
        assert_eq!((fields[3].len(), fields[4].len()), (APP_NAME_MAX, PROCID_MAX));
    }

    #[test]
    fn a_datagram_is_never_cut_inside_a_character() {
        // 6,000 bytes of é to a 2,048-byte datagram, at every offset of the header's length.
        for pad in 0..4 {
            let e = LogEvent::builder("api-default", &"s".repeat(1 + pad)).message("\u{e9}".repeat(3000).as_bytes());
            let mut out = Vec::new();
            assert!(write_message(&mut out, &e, Some(2048)));
            assert!(out.len() <= 2048 && out.len() >= 2047, "{}", out.len());
            assert!(std::str::from_utf8(&out).is_ok(), "the datagram is valid UTF-8");
        }
    }

    #[test]
    fn framings() {
        let mut out = Vec::new();
        write_framed(&mut out, &event(b"a\nb"), SyslogFraming::OctetCounting);
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.ends_with("a\nb"));
        let mut out = Vec::new();
        write_framed(&mut out, &event(b"a\nb"), SyslogFraming::NonTransparent);
        assert!(out.ends_with(b"a b\n"));
        let mut out = Vec::new();
        assert!(write_message(&mut out, &event(&[b'x'; 100]), Some(80)));
        assert_eq!(out.len(), 80);
    }
}
