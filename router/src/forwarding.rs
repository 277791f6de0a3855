//! What the platform adds to a request on its way to a dyno, and what it takes out: the
//! hop-by-hop fields (RFC 9110, section 7.6.1) leave, and the platform's own fields replace the
//! client's (`X-Forwarded-For`, `-Proto`, `-Port`, `X-Request-Id`, `X-Request-Start`, Akkeris'
//! `X-Orig-*` and `X-Forwarded-Path`), with `Via` (RFC 9110, section 7.6.3) added on both ways.
//! Request ids follow Heroku's "HTTP Request IDs" article.

use http::HeaderValue;

use crate::fields::{FieldName, Fields};

/// What the router puts in `Via`.
pub(crate) const VIA: &str = "1.1 wharf";

/// [`VIA`] as a header value, for HTTP/2 responses.
pub(crate) static VIA_VALUE: HeaderValue = HeaderValue::from_static(VIA);

/// The platform's fields that are the same for every request on a client connection (the
/// protocol it came in with, the port it connected to, `Via`), as header lines ready to copy
/// into each request head in one piece.
pub(crate) fn connection_fields(https: bool, port: u16) -> Box<[u8]> {
    let proto = if https { "https" } else { "http" };
    let lines = format!(
        "x-forwarded-proto: {proto}\r\nx-forwarded-port: {port}\r\nvia: {VIA}\r\n\
         x-orig-proto: {proto}\r\nx-orig-port: {port}\r\n"
    );
    lines.into_bytes().into_boxed_slice()
}

/// `X-Forwarded-For` for the dyno: the client's values, if any, with the client's address
/// appended. Field lines with one name are one comma-separated list (RFC 9110, section 5.3), so
/// every line the client sent is kept, in order.
pub(crate) fn forwarded_for<'a>(
    mut previous: impl Iterator<Item = &'a [u8]>,
    peer_ip: &'a HeaderValue,
) -> std::borrow::Cow<'a, [u8]> {
    let Some(first) = previous.next() else {
        return peer_ip.as_bytes().into();
    };
    let mut v = Vec::with_capacity(first.len() + 2 + peer_ip.len());
    for value in std::iter::once(first).chain(previous) {
        v.extend_from_slice(value);
        v.extend_from_slice(b", ");
    }
    v.extend_from_slice(peer_ip.as_bytes());
    v.into()
}

/// Whether a request's `Connection` field names a field that is not hop-by-hop but that the
/// router acts on (`Content-Length`, `Host`, `Expect`, the platform's `X-Forwarded-*`,
/// `X-Request-*`, `X-Orig-*`). Such a request is refused: removing a field that frames or routes
/// the message because `Connection` names it is how a body becomes a second request at the
/// dyno (RFC 9110, section 7.6.1, lets a proxy drop them, not the router).
pub(crate) fn connection_names_a_field_acted_on(fields: &Fields) -> bool {
    fields.contains(FieldName::Connection)
        && fields.tokens(FieldName::Connection).any(|option| {
            let known = FieldName::of(option);
            known != FieldName::Other && !is_hop_by_hop(known)
        })
}

/// Whether a client's field would reach a CGI, WSGI or Rack dyno as a field the platform sets or
/// acts on (`X_Forwarded_For` beside `X-Forwarded-For`: `known` is [`FieldName::Underscored`]),
/// or, when `all`, has any underscore in its name. Such fields are dropped, as nginx drops every
/// one.
pub(crate) fn is_underscore_spoof(known: FieldName, name: &[u8], all: bool) -> bool {
    known == FieldName::Underscored || (all && name.contains(&b'_'))
}

/// A request id is kept when it is 20 to 200 characters of `[A-Za-z0-9+/=-]`, as Heroku does.
pub(crate) fn valid_request_id(b: &[u8]) -> bool {
    (20..=200).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b"+/=-".contains(c))
}

/// A random request id in UUID (version 4) form (RFC 9562, section 5.4), as Heroku's router
/// makes them. Not a secret, so a fast generator suffices; the uuid crate sets the version and
/// variant bits and writes the hyphenated text without going through `fmt`.
/// Appended to `out`, which the caller gives room for it (36 bytes), so the id costs no
/// allocation of its own.
pub(crate) fn push_new_request_id(out: &mut String) {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_ne_bytes()).into_uuid();
    out.push_str(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
}

/// Whether the client's field is one the platform writes its own of (`Via` is appended to,
/// the rest replaced), so the dyno does not get it as it came.
pub(crate) fn is_replaced(known: FieldName) -> bool {
    use FieldName::*;
    matches!(
        known,
        Host | XOrigHost
            | XForwardedFor
            | XForwardedProto
            | XForwardedPort
            | XRequestId
            | XRequestStart
            | XForwardedPath
            | XOrigPath
            | XOrigProto
            | XOrigPort
    )
}

/// The fields of a message that stay on its hop and never cross a proxy: the standard
/// hop-by-hop ones and those its `Connection` field names.
pub(crate) struct HopByHop<'a> {
    /// Names from `Connection` that are not standard hop-by-hop names; nearly always none, so
    /// nothing is allocated.
    named: Vec<&'a [u8]>,
}

impl<'a> HopByHop<'a> {
    /// The hop-by-hop fields of a message with these `fields`.
    pub(crate) fn of(fields: &'a Fields) -> HopByHop<'a> {
        let named =
            fields.tokens(FieldName::Connection).filter(|option| !is_hop_by_hop(FieldName::of(option))).collect();
        HopByHop { named }
    }

    /// Whether the field `name` (known as `known`) stays on this hop.
    pub(crate) fn contains(&self, known: FieldName, name: &[u8]) -> bool {
        is_hop_by_hop(known) || self.named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Whether a field describes one connection, not the message. `close` is reserved as a field
/// name because it is a connection option.
fn is_hop_by_hop(known: FieldName) -> bool {
    use FieldName::*;
    matches!(
        known,
        Close
            | Connection
            | KeepAlive
            | ProxyConnection
            | ProxyAuthenticate
            | ProxyAuthorization
            | Te
            | Trailer
            | TransferEncoding
            | Upgrade
            | Http2Settings
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn request_ids() {
        let check = |v: &str, want: bool| assert_eq!(valid_request_id(v.as_bytes()), want, "{v}");
        check("abcdefghij0123456789", true);
        check("24FB1BE9-D54C-4BF8-AE0C-DCAEC5CD2BE1", true);
        check("a+b/c=d-e0123456789xyz", true);
        check("short", false);
        check(&"a".repeat(201), false);
        check("abcdefghij 0123456789", false);
        check("abcdefghij_0123456789", false);
        let new_request_id = || {
            let mut id = String::from("/x");
            push_new_request_id(&mut id);
            id.split_off(2)
        };
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4', "version 4: {id}");
        assert!(b"89ab".contains(&id.as_bytes()[19]), "RFC 9562 variant: {id}");
        assert!(valid_request_id(id.as_bytes()));
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn hop_by_hop_fields_are_named() {
        let mut map = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret, close, Upgrade"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("close", "reserved"),
            ("proxy-authorization", "Basic eA=="),
            ("x-kept", "yes"),
            ("x-forwarded-for", "10.0.0.1"),
        ] {
            map.insert(http::HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let fields = Fields::from_map(&map);
        let hop = HopByHop::of(&fields);
        // Only the option that is not a standard hop-by-hop name is kept aside.
        assert_eq!(hop.named, [b"X-Secret"]);
        let kept: Vec<_> = fields.iter().filter(|&(k, n, _)| !hop.contains(k, n)).map(|(_, n, _)| n).collect();
        assert_eq!(kept, [&b"x-kept"[..], b"x-forwarded-for"]);
        let passed: Vec<_> =
            fields.iter().filter(|&(k, n, _)| !is_replaced(k) && !hop.contains(k, n)).map(|(_, n, _)| n).collect();
        assert_eq!(passed, [b"x-kept"], "the platform writes its own X-Forwarded-For");
    }
}
