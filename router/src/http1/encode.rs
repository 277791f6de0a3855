//! Encoding HTTP/1.1 message heads: the request head a dyno gets (RFC 9112, section 3, in
//! origin form) and the response heads a client gets (RFC 9112, section 4), written as bytes
//! straight from [`Fields`] and the platform's own fields, with no header map built; and the
//! chunk-size line of a body sent chunked (RFC 9112, section 7.1).

use http::{HeaderValue, Method, StatusCode, Version};

use super::decode::BodyLength;
use super::response_head::ResponseHead;
use crate::date;
use crate::fields::{FieldName, Fields};
use crate::forwarding::{HopByHop, VIA};

/// The request head as the dyno gets it, and whether the body follows it chunked.
/// The client's `headers` go as they are but those `skip` names, then the groups of `extra`,
/// then `lines`, header lines already formatted.
pub(crate) fn encode_request_head(
    method: &Method,
    target: &str,
    headers: &Fields,
    skip: impl Fn(FieldName, &[u8]) -> bool,
    extra: &[&[(&str, &[u8])]],
    lines: &[u8],
    has_body: bool,
) -> (Vec<u8>, bool) {
    let size: usize = headers.iter().map(|(_, k, v)| k.len() + v.len() + 4).sum::<usize>()
        + extra.iter().flat_map(|e| e.iter()).map(|(k, v)| k.len() + v.len() + 4).sum::<usize>()
        + lines.len();
    let mut out = Vec::with_capacity(method.as_str().len() + target.len() + size + 64);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |k: &[u8], v: &[u8]| {
        out.extend_from_slice(k);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    };
    // Repeated Content-Length fields (all of one value, or the head would have been refused)
    // go on as one (RFC 9110, section 8.6).
    let mut has_length = false;
    for (known, k, v) in headers.iter() {
        if known == FieldName::ContentLength {
            if has_length {
                continue;
            }
            has_length = true;
        }
        if !skip(known, k) {
            line(k, v);
        }
    }
    for (k, v) in extra.iter().flat_map(|e| e.iter()) {
        line(k.as_bytes(), v);
    }
    out.extend_from_slice(lines);
    // A body of unknown length (the client's was chunked, or HTTP/2) goes chunked; a request
    // without a body whose method normally has one says so, so the dyno does not wait for one.
    let chunked = has_body && !has_length;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if !has_body && !has_length && matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (out, chunked)
}

/// Writes the head of a response the router wrote itself: `fields` (its `Content-Type`, and
/// `Cache-Control` or `Location` when it has them; `None`s are skipped), `Date` (the router
/// answers as an origin server, RFC 9110 section 6.6.1), a body of `len` bytes, and `hsts`, the
/// `Strict-Transport-Security` value of the client's connection (none on plain HTTP).
pub(crate) fn write_router_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    fields: &[Option<(&str, &str)>],
    len: usize,
    keep_alive: bool,
    hsts: Option<&HeaderValue>,
) {
    status_line(out, status);
    for (name, value) in fields.iter().flatten() {
        field(out, name.as_bytes(), value.as_bytes());
    }
    field(out, b"date", date::now().as_bytes());
    if let Some(hsts) = hsts {
        field(out, b"strict-transport-security", hsts.as_bytes());
    }
    field(out, b"content-length", itoa::Buffer::new().format(len).as_bytes());
    if !keep_alive {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the head of the dyno's response for a client of `version`: its fields as they came
/// but the hop-by-hop ones (RFC 9110, section 7.6.1), `Via`, `hsts` (the connection's
/// `Strict-Transport-Security`) unless the dyno set its own, `Date` on a final response that has
/// none (RFC 9110, section 6.6.1; a 101 is interim and goes without), and the length the client's side
/// needs: the dyno's length, chunked when `chunked`, or neither (the connection closes).
pub(crate) fn write_dyno_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    chunked: bool,
    keep_alive: bool,
    version: Version,
    hsts: Option<&HeaderValue>,
) {
    status_line(out, resp.status);
    let hop = HopByHop::of(&resp.fields);
    let mut has_hsts = false;
    let mut has_date = false;
    for (known, name, value) in resp.fields.iter() {
        if hop.contains(known, name) {
            continue;
        }
        // The router states the length itself, but the one of a body that is not sent (a
        // response to HEAD, a 304) belongs to the dyno.
        if known == FieldName::ContentLength && resp.body != BodyLength::Empty {
            continue;
        }
        has_hsts |= known == FieldName::StrictTransportSecurity;
        has_date |= known == FieldName::Date;
        field(out, name, value);
    }
    if !has_date && !resp.status.is_informational() {
        field(out, b"date", date::now().as_bytes());
    }
    field(out, b"via", VIA.as_bytes());
    if let Some(hsts) = hsts.filter(|_| !has_hsts) {
        field(out, b"strict-transport-security", hsts.as_bytes());
    }
    if resp.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(protocol) = resp.fields.get(FieldName::Upgrade) {
            field(out, b"upgrade", protocol);
        }
        field(out, b"connection", b"upgrade");
    } else {
        match resp.body {
            BodyLength::Remaining(n) => field(out, b"content-length", itoa::Buffer::new().format(n).as_bytes()),
            _ if chunked => field(out, b"transfer-encoding", b"chunked"),
            _ => {}
        }
        if !keep_alive {
            field(out, b"connection", b"close");
        } else if version == Version::HTTP_10 {
            field(out, b"connection", b"keep-alive");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an interim (1xx) response of the dyno's for an HTTP/1.1 client: its status and its
/// fields but the hop-by-hop ones (RFC 9110, section 15.2: a proxy forwards 1xx responses).
pub(crate) fn write_interim_head(out: &mut Vec<u8>, resp: &ResponseHead) {
    status_line(out, resp.status);
    let hop = HopByHop::of(&resp.fields);
    for (known, name, value) in resp.fields.iter() {
        if !hop.contains(known, name) {
            field(out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a status line; the version is always HTTP/1.1, which an HTTP/1.0 client accepts
/// (RFC 9110, section 6.2).
fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes one field line.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The chunk-size line that goes before a chunk of `len` bytes: the size in hex and CRLF. `fmt`
/// rather than itoa, which writes decimal only.
pub(crate) fn chunk_size_line(len: usize) -> String {
    format!("{len:x}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, http::HeaderValue::from_static("app.example.com"));
        let head = |m: Method, h: &http::HeaderMap, body| {
            let (bytes, chunked) =
                encode_request_head(&m, "/p?q=1", &Fields::from_map(h), |_, _| false, &[], b"", body);
            (String::from_utf8(bytes).unwrap(), chunked)
        };
        assert_eq!(
            head(Method::GET, &h, false),
            ("GET /p?q=1 HTTP/1.1\r\nhost: app.example.com\r\n\r\n".into(), false)
        );
        assert_eq!(
            head(Method::POST, &h, false),
            ("POST /p?q=1 HTTP/1.1\r\nhost: app.example.com\r\ncontent-length: 0\r\n\r\n".into(), false)
        );
        assert_eq!(
            head(Method::POST, &h, true),
            ("POST /p?q=1 HTTP/1.1\r\nhost: app.example.com\r\ntransfer-encoding: chunked\r\n\r\n".into(), true)
        );
        h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static("3"));
        assert!(!head(Method::POST, &h, true).1, "a body with a length goes as it is");
        h.insert(http::HeaderName::from_static("x-request-id"), http::HeaderValue::from_static("client's"));
        let (bytes, _) = encode_request_head(
            &Method::GET,
            "/",
            &Fields::from_map(&h),
            |known, _| known == FieldName::XRequestId,
            &[&[("x-request-id", b"platform's")], &[("via", b"1.1 wharf")]],
            b"x-orig-port: 443\r\n",
            false,
        );
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "GET / HTTP/1.1\r\nhost: app.example.com\r\ncontent-length: 3\r\nx-request-id: platform's\r\nvia: 1.1 wharf\r\n\
             x-orig-port: 443\r\n\r\n",
            "skipped fields give way to the extra ones, then the ready lines, which come last"
        );
    }
}
