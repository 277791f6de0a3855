//! The dyno's response head (RFC 9112, section 4; RFC 9110, section 15): parsed with httparse
//! into [`Fields`], with the body's length (RFC 9112, section 6.3) and whether the connection
//! stays open (RFC 9112, section 9.3) decided from it.

use bytes::BytesMut;
use http::{Method, StatusCode, Version};

use super::decode::{BodyLength, ChunkedState, Sender, content_length, decode_pieces};
use crate::error::{Code, ProxyError};
use crate::fields::{FieldName, Fields};

/// Largest response head accepted, in bytes; a larger one is a bad response (H17).
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// Most header fields in a response head.
const MAX_HEADERS: usize = 128;

/// A dyno's response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// The final (or interim) status.
    pub(crate) status: StatusCode,
    /// The header fields as the dyno sent them, hop-by-hop ones included.
    pub(crate) fields: Fields,
    /// How the body's length is known.
    pub(crate) body: BodyLength,
    /// Whether the connection may carry another request once the body is read.
    pub(crate) keep_alive: bool,
    /// The interim (1xx) responses the dyno sent before this one, encoded for an HTTP/1.1
    /// client: forwarded ahead of it (RFC 9110, section 15.2). None for nearly every response,
    /// and boxed so that the head, moved through every layer of the proxy, stays small.
    pub(crate) interim: Option<Box<Interim>>,
}

/// The interim responses of one exchange with a dyno.
#[derive(Debug, Default)]
pub(crate) struct Interim {
    /// Those the client gets (all but `100 Continue` and 101), encoded as HTTP/1.1.
    pub(crate) bytes: Vec<u8>,
    /// Whether the dyno sent `100 Continue`.
    pub(crate) continued: bool,
}

/// An interim response, passed over: 1xx but 101, which ends HTTP on the connection.
pub(crate) fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}

/// Parses a response head from the front of `buf`, removing it; `None` when more is needed.
pub(crate) fn parse_response_head(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, ProxyError> {
    let bad = |e: &dyn std::fmt::Display| ProxyError::new(Code::H17, e.to_string());
    // Uninitialised slots: initialising 128 empty headers cost more than parsing a small head.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(&e)),
    };
    // The limit holds however the head arrived: in one read or in many.
    if len > MAX_HEAD {
        return Err(ProxyError::new(Code::H17, "response head too large"));
    }
    // `StatusCode` takes 100 to 999; HTTP's status codes are 100 to 599 (RFC 9110, section 15).
    let code = resp.code.unwrap_or(0);
    if !(100..=599).contains(&code) {
        return Err(ProxyError::new(Code::H17, "status code outside 100 to 599"));
    }
    let status = StatusCode::from_u16(code).map_err(|e| bad(&e))?;
    let version = if resp.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let places = Fields::locate(buf, resp.headers);
    let fields = Fields::new(buf.split_to(len).freeze(), places);
    let body = body_length(method, status, &fields)?;
    let keep_alive = body != BodyLength::UntilClose && persistent(version, &fields);
    Ok(Some(ResponseHead { status, fields, body, keep_alive, interim: None }))
}

/// How the length of the body of a response with this status and these fields is known (RFC
/// 9112, section 6.3); H17 for conflicting or malformed lengths.
fn body_length(method: &Method, status: StatusCode, fields: &Fields) -> Result<BodyLength, ProxyError> {
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if no_body {
        return Ok(BodyLength::Empty);
    }
    // One pass over the fields finds both length fields; Transfer-Encoding wins.
    let (mut length, mut coding) = (None, None);
    for (known, _, value) in fields.iter() {
        if known == FieldName::TransferEncoding {
            coding = Some(value);
        } else if known == FieldName::ContentLength {
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
        let chunked =
            fields.tokens(FieldName::TransferEncoding).last().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked { BodyLength::Chunked(ChunkedState::Size) } else { BodyLength::UntilClose });
    }
    Ok(length.map_or(BodyLength::UntilClose, BodyLength::Remaining))
}

/// Whether the dyno keeps the connection open after this response.
fn persistent(version: Version, fields: &Fields) -> bool {
    match version {
        Version::HTTP_10 => fields.has_token(FieldName::Connection, "keep-alive"),
        _ => !fields.has_token(FieldName::Connection, "close"),
    }
}

/// For fuzzing: parses a response head from `data` and decodes a chunked body after it, checking
/// that nothing panics, that a head is consumed only when whole, and that the body decodes the
/// same whether its bytes arrive at once or split at `split`.
pub fn check_response(data: &[u8], split: usize) {
    let mut buf = BytesMut::from(data);
    let head = match parse_response_head(&mut buf, &Method::GET) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => {
            assert_eq!(&buf[..], data, "an incomplete or bad head consumes nothing");
            return;
        }
    };
    assert!(buf.len() < data.len(), "a head was consumed");
    assert!((100..=599).contains(&head.status.as_u16()), "a status outside 100 to 599 is a bad response");
    assert!(data.len() - buf.len() <= MAX_HEAD, "the head limit holds however the head arrives");
    if head.body != BodyLength::Chunked(ChunkedState::Size) {
        return;
    }
    let body = buf.to_vec();
    let at = split % (body.len() + 1);
    let whole = decode_pieces([&body[..]], Sender::Dyno);
    let split = decode_pieces([&body[..at], &body[at..]], Sender::Dyno);
    assert_eq!(whole, split, "decoding depends on how the bytes arrive");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_body_lengths() {
        let check = |method: Method, status: u16, headers: &[(&str, &str)], want: Result<BodyLength, ()>| {
            let mut map = http::HeaderMap::new();
            for (k, v) in headers {
                map.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            let fields = Fields::from_map(&map);
            let got = body_length(&method, StatusCode::from_u16(status).unwrap(), &fields).map_err(|_| ());
            assert_eq!(got, want, "{method} {status} {headers:?}");
        };
        check(Method::GET, 200, &[("content-length", "12")], Ok(BodyLength::Remaining(12)));
        check(Method::HEAD, 200, &[("content-length", "12")], Ok(BodyLength::Empty));
        check(Method::GET, 204, &[], Ok(BodyLength::Empty));
        check(Method::GET, 304, &[("content-length", "12")], Ok(BodyLength::Empty));
        check(Method::GET, 200, &[("transfer-encoding", "chunked")], Ok(BodyLength::Chunked(ChunkedState::Size)));
        check(Method::GET, 200, &[("transfer-encoding", "gzip, chunked")], Ok(BodyLength::Chunked(ChunkedState::Size)));
        check(Method::GET, 200, &[("transfer-encoding", "gzip")], Ok(BodyLength::UntilClose));
        // Transfer-Encoding wins over Content-Length.
        check(
            Method::GET,
            200,
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            Ok(BodyLength::Chunked(ChunkedState::Size)),
        );
        check(Method::GET, 200, &[], Ok(BodyLength::UntilClose));
        check(Method::GET, 200, &[("content-length", "5, 5")], Ok(BodyLength::Remaining(5)));
        check(Method::GET, 200, &[("content-length", "5"), ("content-length", "6")], Err(()));
        check(Method::GET, 200, &[("content-length", "-1")], Err(()));
        check(Method::GET, 200, &[("content-length", "+5")], Err(()));
    }

    #[test]
    fn the_fuzz_targets_rules_hold_on_the_conformance_examples() {
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(70 * 1024));
        for input in [
            "HTTP/1.1 600 Weird\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            &big,
        ] {
            for split in [0, 1, 7, input.len() / 2, input.len()] {
                check_response(input.as_bytes(), split);
            }
        }
    }

    #[test]
    fn response_heads() {
        let check = |input: &str, want: Option<(u16, BodyLength, bool, usize)>| {
            let mut buf = BytesMut::from(input);
            let got = parse_response_head(&mut buf, &Method::GET)
                .ok()
                .flatten()
                .map(|h| (h.status.as_u16(), h.body, h.keep_alive, buf.len()));
            assert_eq!(got, want, "{input:?}");
        };
        check("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Some((200, BodyLength::Remaining(2), true, 2)));
        check(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            Some((200, BodyLength::Remaining(2), false, 2)),
        );
        check("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", Some((200, BodyLength::Remaining(2), false, 2)));
        check(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Some((200, BodyLength::Remaining(0), true, 0)),
        );
        check("HTTP/1.1 200 OK\r\n\r\nuntil close", Some((200, BodyLength::UntilClose, false, 11)));
        check("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", Some((100, BodyLength::Empty, true, 17)));
        check("HTTP/1.1 200 OK\r\nContent-Len", None);
        check("HTTP/1.1 600 Weird\r\nContent-Length: 0\r\n\r\n", None);
        check("HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", None);
        check("HTTP/1.1 999 High\r\nContent-Length: 0\r\n\r\n", None);
        check("HTTP/1.1 20 Short\r\nContent-Length: 0\r\n\r\n", None);
        let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(70 * 1024));
        check(&huge, None);
    }
}
