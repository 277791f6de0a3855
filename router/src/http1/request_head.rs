//! Request heads as the router accepts them: parsed strictly, so that a request that different
//! servers could frame differently is refused with 400 and never forwarded.
//!
//! RFC 9112 lets a server accept a bare LF as a line end and resolve Content-Length beside
//! Transfer-Encoding by dropping the length; either is how a request is smuggled past one hop
//! and split differently by the next, so the router refuses both, along with obsolete line
//! folding, conflicting or malformed lengths, and a Transfer-Encoding whose last coding is not
//! chunked. A chunked request's first chunk-size line is checked before the request is sent on
//! (the server loop, `http1/mod.rs`, does that), so a body that cannot be framed is never forwarded either.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Version};

use super::decode::{BodyLength, ChunkedState, MAX_LINE, Sender, chunk_size, content_length};
use crate::fields::{FieldName, Fields, Place, Span};

/// Fields parsed without allocating; a head with more is parsed again with room for them all.
const INLINE_FIELDS: usize = 64;

/// A complete request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    /// The method.
    pub(crate) method: Method,
    /// HTTP/1.0 or HTTP/1.1.
    pub(crate) version: Version,
    /// The request target as it came: origin form (`/path?query`) or absolute form.
    pub(crate) target: Bytes,
    /// The header fields.
    pub(crate) fields: Fields,
    /// How the body's length is known: `Empty`, `Remaining` or `Chunked`.
    pub(crate) body: BodyLength,
}

/// Why a request head was refused: the status and a short reason for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// 400, 408, 414 or 431.
    pub(crate) status: StatusCode,
    /// One line for the client and the debug log.
    pub(crate) reason: &'static str,
}

fn bad(reason: &'static str) -> Refusal {
    Refusal { status: StatusCode::BAD_REQUEST, reason }
}

/// Limits on a request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest whole head; a longer one is refused with 431 (414 while still in the line).
    pub(crate) max_head: usize,
    /// Longest request line, in bytes (414 beyond).
    pub(crate) max_request_line: usize,
    /// Most header fields (431 beyond).
    pub(crate) max_headers: usize,
}

/// Parses a request head from the front of `buf`, removing it (and any empty lines before it);
/// `None` when more bytes are needed.
pub(crate) fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, Refusal> {
    // Empty lines before a request line are allowed (RFC 9112, section 2.2).
    let blank = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let _ = buf.split_to(blank);
    if buf.is_empty() {
        return Ok(None);
    }
    let mut inline = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; INLINE_FIELDS];
    let parsed = match parse(buf, &mut inline) {
        Err(httparse::Error::TooManyHeaders) if limits.max_headers >= INLINE_FIELDS => {
            let mut more = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); limits.max_headers];
            parse(buf, &mut more)
        }
        other => other,
    };
    let (len, method, version, target, places) = match parsed {
        Ok(Some(p)) if p.4.len() > limits.max_headers => return Err(too_large()),
        // The limit holds however the head arrived: in one read or in many.
        Ok(Some(p)) if p.0 > limits.max_head => return Err(too_large()),
        Ok(Some(p)) => p,
        Ok(None) if buf.len() > limits.max_head => {
            let in_line = !buf.contains(&b'\n');
            return Err(if in_line { too_long_line() } else { too_large() });
        }
        Ok(None) => {
            if !buf.contains(&b'\n') && buf.len() > limits.max_request_line {
                return Err(too_long_line());
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(httparse::Error::Version) => return Err(bad("unsupported HTTP version")),
        Err(_) => return Err(bad("malformed request head")),
    };
    let head = buf.split_to(len).freeze();
    // httparse takes a bare LF for a line end; the router does not. Only the line ends are
    // looked at: a byte-by-byte scan of a browser's head cost as much as parsing it.
    if memchr::memchr_iter(b'\n', &head).any(|i| i == 0 || head[i - 1] != b'\r') {
        return Err(bad("bare LF in request head"));
    }
    let target = head.slice(target.range());
    // httparse takes bytes above 0x7F in a target; a request-target is ASCII (RFC 9112, section
    // 3.2, RFC 3986, section 2), and what a dyno would make of raw UTF-8 is its own guess.
    if !target.is_ascii() {
        return Err(bad("request target is not ASCII"));
    }
    let fields = Fields::new(head, places);
    let body = body_length(&fields, version)?;
    Ok(Some(RequestHead { method, version, target, fields, body }))
}

fn too_large() -> Refusal {
    Refusal { status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, reason: "request header fields too large" }
}

fn too_long_line() -> Refusal {
    Refusal { status: StatusCode::URI_TOO_LONG, reason: "request line too long" }
}

type Parsed = (usize, Method, Version, Span, Vec<Place>);

/// One httparse pass over `buf` with room for `headers.len()` fields.
fn parse<'b>(
    buf: &'b [u8],
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<Parsed>, httparse::Error> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| httparse::Error::Token)?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let target = Span::of(req.path.unwrap_or_default().as_bytes(), buf);
    Ok(Some((len, method, version, target, Fields::locate(buf, req.headers))))
}

/// How a request's body length is known (RFC 9112, section 6.3), refusing every ambiguous case,
/// and a second `Host` (RFC 9112, section 3.2): the fields that frame and route a request, in
/// one pass over the fields.
fn body_length(fields: &Fields, version: Version) -> Result<BodyLength, Refusal> {
    let (mut length, mut coded, mut hosts) = (None, false, 0);
    for (known, _, value) in fields.iter() {
        match known {
            FieldName::ContentLength => {
                let n = content_length(value.trim_ascii()).ok_or(bad("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad("conflicting Content-Length values"));
                }
                length = Some(n);
            }
            FieldName::TransferEncoding => coded = true,
            FieldName::Host => hosts += 1,
            _ => {}
        }
    }
    if hosts > 1 {
        return Err(bad("more than one Host"));
    }
    if coded {
        if length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if version == Version::HTTP_10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // A request's body must end where its coding says it does: chunked has to be the last one.
        if !fields.tokens(FieldName::TransferEncoding).last().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            return Err(bad("Transfer-Encoding without chunked last"));
        }
        return Ok(BodyLength::Chunked(ChunkedState::Size));
    }
    Ok(match length {
        None | Some(0) => BodyLength::Empty,
        Some(n) => BodyLength::Remaining(n),
    })
}

/// Checks a chunked body's first chunk-size line at the front of `buf`: `Ok(true)` when it is
/// there and valid, `Ok(false)` when more bytes are needed.
pub(crate) fn first_chunk_ok(buf: &[u8]) -> Result<bool, Refusal> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE { Err(bad("chunk size line too long")) } else { Ok(false) };
    };
    let line = buf[..end].strip_suffix(b"\r").ok_or(bad("bare LF in a chunk size line"))?;
    match chunk_size(line, Sender::Client) {
        Ok(_) => Ok(true),
        Err(reason) => Err(bad(reason)),
    }
}

/// For fuzzing: parses `data` as request heads arriving in two pieces split at `split`, checking
/// that nothing panics, that the outcome does not depend on where the bytes were split, and that
/// an accepted head's body length is never ambiguous.
pub fn check_request(data: &[u8], split: usize) {
    let limits = Limits { max_head: 16 * 1024, max_request_line: 8 * 1024, max_headers: 100 };
    let outcome = |pieces: &[&[u8]]| {
        let (mut buf, mut fed) = (BytesMut::new(), 0);
        let mut last = Ok(None);
        for piece in pieces {
            buf.extend_from_slice(piece);
            fed += piece.len();
            last = parse_request(&mut buf, &limits);
            if !matches!(last, Ok(None)) {
                break;
            }
        }
        // What follows the head: what is in the buffer and what was not fed yet.
        let after = buf.len() + data.len() - fed;
        last.map(|h| h.map(|h| (h.method, h.version, h.target, h.body, after)))
    };
    let at = split % (data.len() + 1);
    let whole = outcome(&[data]);
    let split = outcome(&[&data[..at], &data[at..]]);
    assert_eq!(whole, split, "the outcome depends on how the bytes arrive");
    if let Ok(Some((_, _, target, body, _))) = &whole {
        assert!(matches!(body, BodyLength::Empty | BodyLength::Remaining(_) | BodyLength::Chunked(ChunkedState::Size)));
        assert!(target.is_ascii(), "an accepted target is ASCII");
        // The path routes see has no dot segment left, however it was spelled.
        if let Ok(path) = std::str::from_utf8(target) {
            let path = path.split('?').next().unwrap_or_default();
            if path.starts_with('/') {
                let normalized = crate::path::remove_dot_segments(path);
                assert!(normalized.starts_with('/'), "{normalized:?}");
                let dot = |s: &str| {
                    let s = s.to_ascii_lowercase().replace("%2e", ".");
                    s == "." || s == ".."
                };
                assert!(!normalized.split('/').any(dot), "{path:?} normalized to {normalized:?}");
            }
        }
    }
    // What was accepted frames the request by one rule: one Host at most, one length, and a
    // chunked body's first line judged the same by the head's check and the body's decoder.
    let mut buf = BytesMut::from(data);
    if let Ok(Some(head)) = parse_request(&mut buf, &limits) {
        assert!(head.fields.get_all(FieldName::Host).count() <= 1, "a second Host is refused");
        let lengths: Vec<_> = head.fields.get_all(FieldName::ContentLength).collect();
        assert!(lengths.windows(2).all(|w| w[0].trim_ascii() == w[1].trim_ascii()), "one Content-Length value");
        assert!(lengths.is_empty() || !head.fields.contains(FieldName::TransferEncoding));
        if head.body == BodyLength::Chunked(ChunkedState::Size) && buf.len() <= MAX_LINE {
            // Whether the decoder got past the first chunk-size line.
            let mut state = ChunkedState::Size;
            let _ = super::decode::decode_chunk(&mut buf.clone(), &mut state, super::decode::Sender::Client);
            match first_chunk_ok(&buf) {
                Ok(true) => assert_ne!(state, ChunkedState::Size, "{buf:?}"),
                Ok(false) => {}
                Err(_) => assert_eq!(state, ChunkedState::Size, "{buf:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_head: 16 * 1024, max_request_line: 8 * 1024, max_headers: 100 };

    /// Feeds `input` in pieces of `step` bytes and returns the status of a refusal, or the body
    /// length of an accepted head with the bytes left after it.
    fn parse_pieces(input: &[u8], step: usize) -> Result<Option<(BodyLength, usize)>, u16> {
        let mut buf = BytesMut::new();
        let mut fed = 0;
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            fed += piece.len();
            match parse_request(&mut buf, &LIMITS) {
                Ok(None) => {}
                // What follows the head: what is in the buffer and what was not fed yet.
                Ok(Some(head)) => return Ok(Some((head.body, buf.len() + input.len() - fed))),
                Err(r) => return Err(r.status.as_u16()),
            }
        }
        Ok(None)
    }

    fn check(input: &str, want: Result<Option<(BodyLength, usize)>, u16>) {
        for step in [1, 3, 7, input.len().max(1)] {
            assert_eq!(parse_pieces(input.as_bytes(), step), want, "step {step}: {input:?}");
        }
    }

    #[test]
    fn request_heads_and_their_body_lengths() {
        let ok = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        check(ok, Ok(Some((BodyLength::Empty, 0))));
        check(&format!("\r\n{ok}{ok}"), Ok(Some((BodyLength::Empty, ok.len()))));
        check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab\ncd", Ok(Some((BodyLength::Remaining(5), 5))));
        check("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Ok(Some((BodyLength::Empty, 0))));
        check(
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\n",
            Ok(Some((BodyLength::Chunked(ChunkedState::Size), 3))),
        );
        check("GET / HTTP/1.1\r\nHost: a\r\n", Ok(None));
    }

    #[test]
    fn ambiguous_and_malformed_heads_are_refused() {
        check("GET / HTTP/1.1\nHost: a\n\n", Err(400));
        check("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", Err(400));
        check("GET / HTTP/1.1\r\nHost: a\r\n\n", Err(400));
        check("POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Err(400));
        check("POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd", Err(400));
        check("POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\nabcd", Err(400));
        check("POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd", Err(400));
        check("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n", Err(400));
        check("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", Err(400));
        check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Err(400));
        check("GET / HTTP/2.0\r\n\r\n", Err(400));
        check("G\x00T / HTTP/1.1\r\n\r\n", Err(400));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let long = "a".repeat(9 * 1024);
        check(&format!("GET /{long}"), Err(414));
        check(&format!("GET / HTTP/1.1\r\nX: {long}\r\nY: {long}\r\n"), Err(431));
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        check(&format!("GET / HTTP/1.1\r\n{many}\r\n"), Err(431));
        let seventy: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        check(&format!("GET / HTTP/1.1\r\n{seventy}\r\n"), Ok(Some((BodyLength::Empty, 0))));
    }

    #[test]
    fn the_fuzz_targets_rules_hold_on_the_conformance_examples() {
        for input in [
            "GET /docs/../a HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /docs/%2e%2E/a?x=/../ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        ] {
            for split in 0..=input.len() {
                check_request(input.as_bytes(), split);
            }
        }
    }

    #[test]
    fn first_chunk_lines() {
        assert_eq!(first_chunk_ok(b"5;ext=1\r\nhello"), Ok(true));
        assert_eq!(first_chunk_ok(b"5"), Ok(false));
        assert!(first_chunk_ok(b"zz\r\n").is_err());
        assert!(first_chunk_ok(b"\r\n").is_err());
        assert!(first_chunk_ok(b"fffffffffffffffff\r\n").is_err());
    }
}
