//! HTTP/1.1 message bodies as they are read (RFC 9112, sections 6 and 7): how a body's length is
//! known ([`BodyLength`]), the chunked decoder ([`ChunkedState`], after hyper's), and the reader
//! that takes a body off a connection by its length, for the dyno's responses and the client's
//! requests alike.

use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest chunk-size line (with extensions) or trailer line accepted, in bytes.
pub(crate) const MAX_LINE: usize = 4096;

/// How much is read from a connection at once while reading a body, in bytes.
pub(crate) const READ_SIZE: usize = 16 * 1024;

/// Makes room in `buf` for a read of about `size` bytes: `size` more, unless half of it is free
/// already, in which case the read goes into what is free.
///
/// Why not always `reserve(size)`: a message's head and body are split off the front of the
/// buffer (and shared with the response on its way), so after one small message the free part
/// is a little short of `size`, and `reserve` then leaves its inline check for `BytesMut`'s
/// out-of-line reclaiming path on every message (155-168 instructions an HTTP/2 request, and a
/// fresh buffer when the last message is still shared; 56 with this, callgrind, benches/
/// RESULTS.md, router run 20). Reading into the free part instead, a buffer is reclaimed or
/// replaced once per many small messages. A read may then be as small as half of `size`.
pub(crate) fn room_to_read(buf: &mut BytesMut, size: usize) {
    if buf.capacity() - buf.len() < size / 2 {
        buf.reserve(size);
    }
}

/// How a message body's length is known, and how much of it is still to come (RFC 9112,
/// section 6.3); a reader advances it as it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body: a request without one, or a response to HEAD, 1xx, 204 or 304.
    Empty,
    /// So many bytes still to come (Content-Length).
    Remaining(u64),
    /// Chunked transfer coding (RFC 9112, section 7.1), its decoder in this state.
    Chunked(ChunkedState),
    /// Until the sender closes the connection (a response with neither length nor chunked).
    UntilClose,
}

/// Where a chunked body's decoder is (RFC 9112, section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkedState {
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

impl BodyLength {
    /// Whether the body has been read to its end.
    pub(crate) fn is_done(self) -> bool {
        matches!(self, BodyLength::Empty | BodyLength::Remaining(0) | BodyLength::Chunked(ChunkedState::Done))
    }
}

/// The next piece of a body whose length is `length` (which it advances), from `buf` and then
/// `io`; `None` at its end. Used for the dyno's responses and the client's requests alike. Errors
/// are the connection's, `UnexpectedEof` for a body cut short and `InvalidData` for a chunked body
/// that does not decode.
pub(crate) fn poll_body(
    io: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    length: &mut BodyLength,
    sender: Sender,
    cx: &mut Context<'_>,
) -> Poll<Option<std::io::Result<Bytes>>> {
    use std::future::Future as _;
    use std::io::{Error, ErrorKind};
    let truncated = || Error::new(ErrorKind::UnexpectedEof, "the connection closed mid-body");
    // Reads more into the buffer; `Ok(0)` at the end of the stream.
    let mut fill = |buf: &mut BytesMut, cx: &mut Context<'_>| {
        room_to_read(buf, READ_SIZE);
        std::pin::pin!(io.read_buf(buf)).poll(cx)
    };
    loop {
        match length {
            BodyLength::Empty | BodyLength::Remaining(0) | BodyLength::Chunked(ChunkedState::Done) => {
                return Poll::Ready(None);
            }
            BodyLength::Remaining(left) => {
                if buf.is_empty() && ready!(fill(buf, cx))? == 0 {
                    return Poll::Ready(Some(Err(truncated())));
                }
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                return Poll::Ready(Some(Ok(buf.split_to(take as usize).freeze())));
            }
            BodyLength::UntilClose => {
                if buf.is_empty() && ready!(fill(buf, cx))? == 0 {
                    *length = BodyLength::Empty;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(buf.split().freeze())));
            }
            BodyLength::Chunked(state) => match decode_chunk(buf, state, sender) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if *state == ChunkedState::Done => return Poll::Ready(None),
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

/// A Content-Length value: digits only, no sign, no spaces.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Decodes what it can of a chunked body from the front of `buf`: a piece of a chunk's data,
/// or `None` when it needs more bytes (or reached the end, `state` then being `Done`).
pub(crate) fn decode_chunk(
    buf: &mut BytesMut,
    state: &mut ChunkedState,
    sender: Sender,
) -> Result<Option<Bytes>, &'static str> {
    loop {
        match *state {
            ChunkedState::Done => return Ok(None),
            ChunkedState::Size => {
                let Some(end) = find_crlf(buf) else {
                    return if buf.len() > MAX_LINE { Err("chunk size line too long") } else { Ok(None) };
                };
                if end > MAX_LINE {
                    return Err("chunk size line too long");
                }
                let size = chunk_size(&buf[..end], sender)?;
                buf.advance(end + 2);
                *state = if size == 0 { ChunkedState::Trailers } else { ChunkedState::Data(size) };
            }
            ChunkedState::Data(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = left.min(buf.len() as u64);
                *state = if take == left { ChunkedState::DataEnd } else { ChunkedState::Data(left - take) };
                return Ok(Some(buf.split_to(take as usize).freeze()));
            }
            ChunkedState::DataEnd => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF");
                }
                buf.advance(2);
                *state = ChunkedState::Size;
            }
            ChunkedState::Trailers => {
                // Trailer fields are dropped: the client's side has already sent its head.
                let Some(end) = find_crlf(buf) else {
                    return if buf.len() > MAX_LINE { Err("trailer line too long") } else { Ok(None) };
                };
                if end > MAX_LINE {
                    return Err("trailer line too long");
                }
                if end > 0 && !trailer_line_ok(&buf[..end]) {
                    return Err("invalid trailer field");
                }
                buf.advance(end + 2);
                if end == 0 {
                    *state = ChunkedState::Done;
                    return Ok(None);
                }
            }
        }
    }
}

/// Who sent a chunked body, which decides how its chunk-size lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// The client: strictly, as h11 and llhttp read them. Whitespace after the size is refused:
    /// parsers disagree on it, and a request is where a disagreement smuggles.
    Client,
    /// A dyno: whitespace (SP, HTAB) after the size, before `;` or the line's end, is removed,
    /// as RFC 9112 §7.1.1's BWS ("a recipient MUST parse for such bad whitespace and remove
    /// it") and as nginx and HAProxy read responses. The router re-chunks what it relays, so
    /// the client never sees it, and the size the router reads is the one the dyno meant.
    Dyno,
}

/// The size of a chunk-size line (without its CRLF): `chunk-size [ chunk-ext ]` (RFC 9112,
/// section 7.1): hex digits from the first byte (upper or lower case; leading zeros allowed, at
/// most 15 digits in all from a client and 15 significant ones from a dyno, so a size fits a
/// u64 with room), then, from a dyno only, whitespace, then nothing or a `;` extension (which is
/// passed over) without control bytes but HTAB, so that a bare CR or LF never ends a line for
/// the router that ends it for someone else.
pub(crate) fn chunk_size(line: &[u8], sender: Sender) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let zeros = line[..digits].iter().take_while(|&&b| b == b'0').count();
    let counted = if sender == Sender::Client { digits } else { digits - zeros };
    if digits == 0 || counted > 15 {
        return Err("invalid chunk size");
    }
    let mut extension = &line[digits..];
    if sender == Sender::Dyno {
        let bws = extension.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        extension = &extension[bws..];
    }
    if !(extension.is_empty() || extension[0] == b';') {
        return Err("invalid chunk size");
    }
    if extension.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("control character in a chunk extension");
    }
    // Fifteen significant hex digits fit in a u64.
    let text = std::str::from_utf8(&line[zeros.min(digits - 1)..digits]).map_err(|_| "invalid chunk size")?;
    u64::from_str_radix(text, 16).map_err(|_| "invalid chunk size")
}

/// Whether a trailer line is a field line (RFC 9112, section 7.1.2, and section 5): a token, a
/// colon, and a value without control bytes but HTAB.
fn trailer_line_ok(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    !name.is_empty()
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && value.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// Where the first CRLF in `buf` starts.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Decodes a chunked body arriving in `pieces`: the data, the decoder's final state and how many
/// bytes were left over, or the error that stopped it with the state it stopped in. For tests and
/// fuzzing, which compare decodings of the same bytes split differently.
pub(crate) fn decode_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    sender: Sender,
) -> Result<(Vec<u8>, ChunkedState, usize), (&'static str, ChunkedState)> {
    let (mut buf, mut state, mut out) = (BytesMut::new(), ChunkedState::Size, Vec::new());
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decode_chunk(&mut buf, &mut state, sender) {
                Ok(Some(data)) => out.extend_from_slice(&data),
                Ok(None) => break,
                Err(e) => return Err((e, state)),
            }
        }
    }
    Ok((out, state, buf.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_goes_into_what_is_free_until_less_than_half_a_read_is() {
        // `taken` bytes of a message split off the front and still held (as a response on its
        // way to the client holds them), `unread` bytes after them: whether making room for a
        // read left the buffer where it was, and what it keeps.
        let check = |taken: usize, unread: usize, stays: bool| {
            let mut buf = BytesMut::with_capacity(READ_SIZE);
            buf.extend_from_slice(&vec![b'x'; taken + unread]);
            let held = buf.split_to(taken).freeze();
            let before = buf.as_ptr();
            room_to_read(&mut buf, READ_SIZE);
            assert_eq!(buf.as_ptr() == before, stays, "taken {taken}, unread {unread}");
            assert!(buf.capacity() - buf.len() >= READ_SIZE / 2, "taken {taken}, unread {unread}: room for a read");
            assert_eq!(&buf[..], &vec![b'x'; unread][..], "taken {taken}, unread {unread}: the unread bytes are kept");
            drop(held);
        };
        check(0, 0, true);
        check(200, 0, true);
        check(200, 100, true);
        check(READ_SIZE / 2, 0, true);
        check(READ_SIZE / 2 + 1, 0, false);
        check(READ_SIZE - 10, 10, false);
        check(READ_SIZE, 0, false);
    }

    /// Decodes `input` from `sender` fed in pieces of `step` bytes; returns the data and the
    /// final state.
    fn decode(input: &[u8], step: usize, sender: Sender) -> (Result<Vec<u8>, &'static str>, ChunkedState) {
        match decode_pieces(input.chunks(step), sender) {
            Ok((out, state, _)) => (Ok(out), state),
            Err((e, state)) => (Err(e), state),
        }
    }

    /// Checks `input` from a client and from a dyno: the data and whether it was read to its
    /// end, or the error, for each, whatever the pieces it arrives in.
    fn check(input: &str, client: Result<&str, &str>, dyno: Result<&str, &str>, done: bool) {
        for (sender, want) in [(Sender::Client, client), (Sender::Dyno, dyno)] {
            for step in [1, 2, 3, 7, input.len().max(1)] {
                let (got, state) = decode(input.as_bytes(), step, sender);
                let got = got.map(|v| String::from_utf8(v).unwrap());
                assert_eq!(got.as_deref().map_err(|e| *e), want, "{input:?} from {sender:?} in steps of {step}");
                if want.is_ok() {
                    assert_eq!(
                        state == ChunkedState::Done,
                        done,
                        "{input:?} from {sender:?}, steps of {step}: {state:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn chunked_bodies() {
        let both = |input: &str, want: Result<&str, &str>, done: bool| check(input, want, want, done);
        both("5\r\nhello\r\n0\r\n\r\n", Ok("hello"), true);
        both("5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", Ok("hello world"), true);
        both("A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n", Ok("0123456789"), true);
        both("a\r\n0123456789\r\n0\r\n\r\n", Ok("0123456789"), true);
        both("5\r\nhel", Ok("hel"), false);
        both("0\r\n\r\nleftover", Ok(""), true);
        both("z\r\n", Err("invalid chunk size"), false);
        both("\r\n", Err("invalid chunk size"), false);
        both("5\r\nhelloXX", Err("chunk data not followed by CRLF"), false);
        both("5;a\nb\r\nhello\r\n0\r\n\r\n", Err("control character in a chunk extension"), false);
        both("5\rx\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size"), false);
        both(" 5\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size"), false);
        both("\t5\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size"), false);
        both("0x5\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size"), false);
        both("+5\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size"), false);
        both("5;a=b\r\nhello\r\n0\r\n\r\n", Ok("hello"), true);
        both("5; a = b\r\nhello\r\n0\r\n\r\n", Ok("hello"), true);
        both("0\r\nX-Bad\nY: 1\r\n\r\n", Err("invalid trailer field"), false);
        both("0\r\nno colon\r\n\r\n", Err("invalid trailer field"), false);
        let long_trailer = format!("0\r\nX-Long: {}\r\n\r\n", "x".repeat(5000));
        both(&long_trailer, Err("trailer line too long"), false);
        // Whitespace after the size (RFC 9112's BWS): removed from a dyno's, refused from a
        // client's, in every spelling.
        let bws = |input: &str| check(input, Err("invalid chunk size"), Ok("hello"), true);
        bws("5 ;a=b\r\nhello\r\n0\r\n\r\n");
        bws("5\t;a\r\nhello\r\n0\r\n\r\n");
        bws("5   ;a\r\nhello\r\n0\r\n\r\n");
        bws("5 \t ;\r\nhello\r\n0\r\n\r\n");
        bws("5 \r\nhello\r\n0\r\n\r\n");
        bws("5\t\r\nhello\r\n0\r\n\r\n");
        bws("5\r\nhello\r\n0 \r\n\r\n");
        // ... but not whitespace inside the size, nor anything else after it.
        both("5 5\r\nhello\r\n", Err("invalid chunk size"), false);
        both("5 x\r\nhello\r\n", Err("invalid chunk size"), false);
        both("5 \x0b;\r\nhello\r\n", Err("invalid chunk size"), false);
        // Leading zeros: up to 15 digits in all from a client, any number before 15 significant
        // ones from a dyno; a size of 16 significant digits from neither.
        both("0005\r\nhello\r\n00\r\n\r\n", Ok("hello"), true);
        both("000000000000005\r\nhello\r\n0\r\n\r\n", Ok("hello"), true);
        check("00000000000000000005\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size"), Ok("hello"), true);
        both("fffffffffffffffff\r\n", Err("invalid chunk size"), false);
        both("1000000000000000\r\n", Err("invalid chunk size"), false);
        both("0001000000000000000\r\n", Err("invalid chunk size"), false);
        let most = format!("fffffffffffffff\r\n{}", "x".repeat(3));
        both(&most, Ok("xxx"), false);
    }
}
