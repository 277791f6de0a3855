//! Header fields as they arrived: the bytes of a message head and where each name and value
//! lies in them, so that a head passes through the router without a header map being built.
//!
//! Building an `http::HeaderMap` hashes and copies every field, and the proxy only ever looks
//! up a handful of them; for HTTP/1.1 on both sides the fields are compared and copied as bytes.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Where a piece of the head lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    at: u32,
    len: u32,
}

impl Span {
    /// Where `piece`, a part of `base`, lies in it.
    pub(crate) fn of(piece: &[u8], base: &[u8]) -> Span {
        // Both slices point into the same buffer, so the difference of their addresses is the
        // piece's offset; no pointer is ever made from a number.
        let at = piece.as_ptr() as usize - base.as_ptr() as usize;
        debug_assert!(at + piece.len() <= base.len());
        Span { at: at as u32, len: piece.len() as u32 }
    }

    /// The byte range it covers.
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.at as usize..(self.at + self.len) as usize
    }

    fn get(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.range()]
    }
}

/// The field names the router acts on. Each field's name is looked up once, when its head is
/// parsed, so that every later question about it compares one byte instead of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldName {
    /// Any name the router passes along without looking at it.
    Other,
    /// A known name spelled with `_` for one or more of its `-` (`X_Forwarded_For`): what CGI,
    /// WSGI and Rack servers would read as the known one. Found as names are looked up, at no
    /// cost to other names.
    Underscored,
    Close,
    Connection,
    ContentLength,
    /// The response's origination time (RFC 9110, section 6.6.1): the router adds one when
    /// the dyno sent none.
    Date,
    Expect,
    Host,
    /// HTTP/2's settings for an `h2c` upgrade (RFC 9113, section 3.2.1): hop-by-hop.
    Http2Settings,
    KeepAlive,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyConnection,
    StrictTransportSecurity,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    XForwardedFor,
    XForwardedPath,
    XForwardedPort,
    XForwardedProto,
    XOrigHost,
    XOrigPath,
    XOrigPort,
    XOrigProto,
    XRequestId,
    XRequestStart,
}

impl FieldName {
    /// The name's lowercase text; empty for [`FieldName::Other`].
    pub(crate) fn text(self) -> &'static str {
        match self {
            FieldName::Other | FieldName::Underscored => "",
            FieldName::Close => "close",
            FieldName::Connection => "connection",
            FieldName::ContentLength => "content-length",
            FieldName::Date => "date",
            FieldName::Expect => "expect",
            FieldName::Host => "host",
            FieldName::Http2Settings => "http2-settings",
            FieldName::KeepAlive => "keep-alive",
            FieldName::ProxyAuthenticate => "proxy-authenticate",
            FieldName::ProxyAuthorization => "proxy-authorization",
            FieldName::ProxyConnection => "proxy-connection",
            FieldName::StrictTransportSecurity => "strict-transport-security",
            FieldName::Te => "te",
            FieldName::Trailer => "trailer",
            FieldName::TransferEncoding => "transfer-encoding",
            FieldName::Upgrade => "upgrade",
            FieldName::XForwardedFor => "x-forwarded-for",
            FieldName::XForwardedPath => "x-forwarded-path",
            FieldName::XForwardedPort => "x-forwarded-port",
            FieldName::XForwardedProto => "x-forwarded-proto",
            FieldName::XOrigHost => "x-orig-host",
            FieldName::XOrigPath => "x-orig-path",
            FieldName::XOrigPort => "x-orig-port",
            FieldName::XOrigProto => "x-orig-proto",
            FieldName::XRequestId => "x-request-id",
            FieldName::XRequestStart => "x-request-start",
        }
    }

    /// The name as an `http` header name, for the names a message may carry past the router
    /// (none for the hop-by-hop ones, `Other` and `Underscored`): constants, where making one
    /// from the field's bytes looks the name up again among `http`'s standard names (about 150
    /// instructions a field on an HTTP/2 response; benches/RESULTS.md, router run 15).
    pub(crate) fn header_name(self) -> Option<HeaderName> {
        use http::header;
        Some(match self {
            FieldName::ContentLength => header::CONTENT_LENGTH,
            FieldName::Date => header::DATE,
            FieldName::Expect => header::EXPECT,
            FieldName::Host => header::HOST,
            FieldName::StrictTransportSecurity => header::STRICT_TRANSPORT_SECURITY,
            FieldName::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            FieldName::XForwardedPath => HeaderName::from_static("x-forwarded-path"),
            FieldName::XForwardedPort => HeaderName::from_static("x-forwarded-port"),
            FieldName::XForwardedProto => HeaderName::from_static("x-forwarded-proto"),
            FieldName::XOrigHost => HeaderName::from_static("x-orig-host"),
            FieldName::XOrigPath => HeaderName::from_static("x-orig-path"),
            FieldName::XOrigPort => HeaderName::from_static("x-orig-port"),
            FieldName::XOrigProto => HeaderName::from_static("x-orig-proto"),
            FieldName::XRequestId => HeaderName::from_static("x-request-id"),
            FieldName::XRequestStart => HeaderName::from_static("x-request-start"),
            _ => return None,
        })
    }

    /// The known name `name` is, without regard to case, or [`FieldName::Other`].
    pub(crate) fn of(name: &[u8]) -> FieldName {
        use FieldName::*;
        // By length first: most fields are none of these, and few of these share a length.
        let candidates: &[FieldName] = match name.len() {
            2 => &[Te],
            4 => &[Host, Date],
            5 => &[Close],
            6 => &[Expect],
            7 => &[Trailer, Upgrade],
            10 => &[Connection, KeepAlive],
            11 => &[XOrigHost, XOrigPath, XOrigPort],
            12 => &[XOrigProto, XRequestId],
            14 => &[ContentLength, Http2Settings],
            15 => &[XForwardedFor, XRequestStart],
            16 => &[ProxyConnection, XForwardedPath, XForwardedPort],
            17 => &[TransferEncoding, XForwardedProto],
            18 => &[ProxyAuthenticate],
            19 => &[ProxyAuthorization],
            25 => &[StrictTransportSecurity],
            _ => &[],
        };
        // Every known name starts with a letter, so its first byte decides most comparisons.
        let first = name.first().map_or(0, u8::to_ascii_lowercase);
        for &c in candidates {
            if c.text().as_bytes()[0] == first {
                if eq_known(name, c.text()) {
                    return c;
                }
                // Rare: a name of a known one's length and first letter that is not it.
                if eq_underscored(name, c.text()) {
                    return Underscored;
                }
            }
        }
        Other
    }
}

/// Whether `name` is the known name `lower` (lowercase) spelled with `_` for one or more of its
/// `-`, without regard to case.
#[cold]
fn eq_underscored(name: &[u8], lower: &str) -> bool {
    name.len() == lower.len()
        && name.contains(&b'_')
        && name.iter().zip(lower.as_bytes()).all(|(&b, &l)| b.to_ascii_lowercase() == l || (b == b'_' && l == b'-'))
}

/// Whether `name` is the known name `lower` without regard to case, compared eight bytes at a
/// time. `lower` holds only lowercase letters, digits and `-` (every known name does), so a byte
/// of `name` matches a letter of `lower` when it equals it once bit 0x20 is set, and must equal
/// any other byte exactly: the same answer as [`eq_lowercase`], for any `name`.
///
/// Why by hand: every header field's name is looked up as its head is parsed, on both sides of
/// every request; comparing a byte at a time was about 80 instructions for `content-length`
/// and this is about 20 (callgrind, benches/RESULTS.md, router run 15).
fn eq_known(name: &[u8], lower: &str) -> bool {
    let lower = lower.as_bytes();
    debug_assert!(lower.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    if n < 8 {
        let mut a = [0; 8];
        let mut b = [0; 8];
        a[..n].copy_from_slice(name);
        b[..n].copy_from_slice(lower);
        return eq_word(u64::from_le_bytes(a), u64::from_le_bytes(b));
    }
    let word = |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    // Whole words from the start, then the last eight bytes (overlapping the one before).
    let mut at = 0;
    while at + 8 < n {
        if !eq_word(word(name, at), word(lower, at)) {
            return false;
        }
        at += 8;
    }
    eq_word(word(name, n - 8), word(lower, n - 8))
}

/// Names a dyno's response often has that the router does not act on (so [`FieldName::of`]
/// knows none of them), with `http`'s constants for them.
static COMMON_RESPONSE_NAMES: [(&str, HeaderName); 14] = {
    use http::header::*;
    [
        ("age", AGE),
        ("etag", ETAG),
        ("vary", VARY),
        ("server", SERVER),
        ("expires", EXPIRES),
        ("location", LOCATION),
        ("set-cookie", SET_COOKIE),
        ("content-type", CONTENT_TYPE),
        ("accept-ranges", ACCEPT_RANGES),
        ("cache-control", CACHE_CONTROL),
        ("last-modified", LAST_MODIFIED),
        ("content-encoding", CONTENT_ENCODING),
        ("x-content-type-options", X_CONTENT_TYPE_OPTIONS),
        ("access-control-allow-origin", ACCESS_CONTROL_ALLOW_ORIGIN),
    ]
};

/// `http`'s constant for `name` (any case) when it is one of [`COMMON_RESPONSE_NAMES`]; `None`
/// for any other name, which `HeaderName::from_bytes` then parses.
///
/// Why by hand: `from_bytes` lowers the name into a buffer and looks it up among `http`'s ~90
/// standard names, about 150 instructions a field; this compares a few names of the same
/// length eight bytes at a time ([`eq_known`]): building the map of an HTTP/2 response with
/// `Server` and `Content-Type` (benches/router.py's backend) went from 3,494 to 3,332
/// instructions (callgrind, benches/RESULTS.md, router run 17).
fn common_response_name(name: &[u8]) -> Option<HeaderName> {
    COMMON_RESPONSE_NAMES
        .iter()
        .find(|(text, _)| text.len() == name.len() && eq_known(name, text))
        .map(|(_, h)| h.clone())
}

/// Whether the eight bytes `word` match `lower`'s (lowercase letters, digits, `-` and zero
/// bytes): each byte of `lower` from `a` (0x61) up is a letter, whose byte in `word` may have
/// bit 0x20 clear (its uppercase); adding 0x1f to each byte of `lower` sets the top bit of
/// exactly those (no byte carries into the next, as all are below 0x80), which becomes the
/// mask of the 0x20 bits to set.
fn eq_word(word: u64, lower: u64) -> bool {
    let letters = ((lower + 0x1f1f_1f1f_1f1f_1f1f) & 0x8080_8080_8080_8080) >> 2;
    word | letters == lower
}

/// Whether `bytes` are `lower` (which is lowercase) without regard to case; half the work of
/// `eq_ignore_ascii_case`, which lowers both sides.
pub(crate) fn eq_lowercase(bytes: &[u8], lower: &str) -> bool {
    bytes.len() == lower.len() && bytes.iter().zip(lower.as_bytes()).all(|(b, &l)| b.to_ascii_lowercase() == l)
}

/// One field: where its name and value lie, and which known name it has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    name: Span,
    value: Span,
    known: FieldName,
}

/// A message head's header fields, in their order, with names as the peer spelled them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    bytes: Bytes,
    list: Vec<Place>,
}

impl Fields {
    /// The places of httparse's `headers` inside `base`, the buffer they were parsed from.
    /// `base` must be the start of what later becomes the `Bytes` given to [`Fields::new`].
    pub(crate) fn locate(base: &[u8], headers: &[httparse::Header<'_>]) -> Vec<Place> {
        headers
            .iter()
            .map(|h| Place {
                name: Span::of(h.name.as_bytes(), base),
                value: Span::of(h.value, base),
                known: FieldName::of(h.name.as_bytes()),
            })
            .collect()
    }

    /// Fields over `bytes`, at places [`Fields::locate`] found.
    pub(crate) fn new(bytes: Bytes, list: Vec<Place>) -> Fields {
        Fields { bytes, list }
    }

    /// The fields of a header map (an HTTP/2 request), copied into one buffer.
    pub(crate) fn from_map(map: &HeaderMap) -> Fields {
        let mut bytes = Vec::with_capacity(map.iter().map(|(k, v)| k.as_str().len() + v.len()).sum());
        let mut list = Vec::with_capacity(map.len());
        for (k, v) in map {
            let name = Span { at: bytes.len() as u32, len: k.as_str().len() as u32 };
            bytes.extend_from_slice(k.as_str().as_bytes());
            let value = Span { at: bytes.len() as u32, len: v.len() as u32 };
            bytes.extend_from_slice(v.as_bytes());
            list.push(Place { name, value, known: FieldName::of(k.as_str().as_bytes()) });
        }
        Fields { bytes: bytes.into(), list }
    }

    /// How many fields there are.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Every field, in order: its known name, its name as spelled, and its value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (FieldName, &[u8], &[u8])> {
        self.list.iter().map(|p| (p.known, p.name.get(&self.bytes), p.value.get(&self.bytes)))
    }

    /// The value of the first field named `name`.
    pub(crate) fn get(&self, name: FieldName) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    /// The values of every field named `name`, in order.
    pub(crate) fn get_all(&self, name: FieldName) -> impl Iterator<Item = &[u8]> {
        debug_assert_ne!(name, FieldName::Other, "only known names are looked up");
        self.list.iter().filter(move |p| p.known == name).map(|p| p.value.get(&self.bytes))
    }

    /// Whether a field named `name` is present.
    pub(crate) fn contains(&self, name: FieldName) -> bool {
        self.list.iter().any(|p| p.known == name)
    }

    /// Whether the comma-separated lists of the fields named `name` hold `token` (lowercase).
    pub(crate) fn has_token(&self, name: FieldName, token: &str) -> bool {
        // Not through `tokens`: this runs for every request and response, and that iterator
        // chain cost several times as much.
        self.get_all(name).any(|v| v.split(|&b| b == b',').any(|t| eq_lowercase(t.trim_ascii(), token)))
    }

    /// The items of the comma-separated lists of the fields named `name`, trimmed; empty items
    /// are left out.
    pub(crate) fn tokens(&self, name: FieldName) -> Tokens<'_> {
        Tokens { fields: self, name, next: 0, rest: &[] }
    }

    /// The fields as a header map (for an HTTP/2 response), leaving out those `skip` names.
    /// Fails on a name or value that a header map cannot hold.
    pub(crate) fn to_map(&self, skip: impl Fn(FieldName, &[u8]) -> bool) -> Result<HeaderMap, http::Error> {
        let mut map = HeaderMap::with_capacity(self.list.len());
        for p in self.list.iter().filter(|p| !skip(p.known, p.name.get(&self.bytes))) {
            // Values are slices of the head's buffer, not copies: one allocation and copy a
            // field fewer on every HTTP/2 response.
            let value = HeaderValue::from_maybe_shared(self.bytes.slice(p.value.range()))?;
            let name = match p.known.header_name() {
                Some(name) => name,
                None => {
                    let name = p.name.get(&self.bytes);
                    match common_response_name(name) {
                        Some(name) => name,
                        None => HeaderName::from_bytes(name)?,
                    }
                }
            };
            map.append(name, value);
        }
        Ok(map)
    }
}

/// The items of the comma-separated lists of the fields with one name ([`Fields::tokens`]).
///
/// Why by hand: the adapter chain it replaces (fields filtered by name, each value split at
/// commas, each item trimmed, empty ones filtered out) cost about 300 instructions for one
/// `Connection: keep-alive`, and every response's hop-by-hop fields are found through it
/// (callgrind, benches/RESULTS.md, router run 15).
#[derive(Debug)]
pub(crate) struct Tokens<'a> {
    fields: &'a Fields,
    name: FieldName,
    /// The index of the next field to look at.
    next: usize,
    /// What is left of the value being split.
    rest: &'a [u8],
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            while !self.rest.is_empty() {
                let (item, rest) = match self.rest.iter().position(|&b| b == b',') {
                    Some(comma) => (&self.rest[..comma], &self.rest[comma + 1..]),
                    None => (self.rest, &[][..]),
                };
                self.rest = rest;
                let item = item.trim_ascii();
                if !item.is_empty() {
                    return Some(item);
                }
            }
            let found = self.fields.list[self.next..].iter().position(|p| p.known == self.name)?;
            let place = self.fields.list[self.next + found];
            self.next += found + 1;
            self.rest = place.value.get(&self.fields.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &'static str) -> Fields {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(head.as_bytes()).unwrap();
        let list = Fields::locate(head.as_bytes(), req.headers);
        Fields::new(Bytes::from_static(head.as_bytes()), list)
    }

    #[test]
    fn common_response_names_are_the_header_names_their_text_makes() {
        for (text, constant) in &COMMON_RESPONSE_NAMES {
            assert_eq!(HeaderName::from_bytes(text.as_bytes()).unwrap(), *constant, "{text}");
            let upper = text.to_ascii_uppercase();
            for spelled in [text.to_string(), upper.clone(), format!("{}{}", &upper[..1], &text[1..])] {
                assert_eq!(common_response_name(spelled.as_bytes()).as_ref(), Some(constant), "{spelled}");
            }
        }
        // Names of the same lengths that are not these, and names with `_` for `-`, are left to
        // `HeaderName::from_bytes`.
        for other in ["agf", "etah", "sErvex", "set_cookie", "content_type", "x-content-type-option", "", "x"] {
            assert_eq!(common_response_name(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn response_maps_carry_every_kept_field_under_its_own_name() {
        let head = "HTTP/1.1 200 OK\r\nServer: nginx\r\nCONTENT-TYPE: text/plain\r\nX-Custom: 1\r\nset_cookie: a\r\nDate: d\r\nConnection: close\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(head.as_bytes()).unwrap();
        let list = Fields::locate(head.as_bytes(), res.headers);
        let fields = Fields::new(Bytes::from_static(head.as_bytes()), list);
        let map = fields.to_map(|known, _| known == FieldName::Connection).unwrap();
        let got: Vec<(&str, &[u8])> = map.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(
            got,
            [
                ("server", &b"nginx"[..]),
                ("content-type", b"text/plain"),
                ("x-custom", b"1"),
                ("set_cookie", b"a"),
                ("date", b"d"),
            ]
        );
    }

    #[test]
    fn fields_are_found_by_name_without_regard_to_case() {
        let f = parse(
            "GET / HTTP/1.1\r\nHOST: a\r\nConnection: keep-alive, X-Secret\r\nX-Forwarded-For: 1\r\nx-forwarded-for: 2\r\nX-A: 3\r\n\r\n",
        );
        assert_eq!(f.len(), 5);
        assert_eq!(f.get(FieldName::Host), Some(&b"a"[..]));
        assert_eq!(f.get_all(FieldName::XForwardedFor).collect::<Vec<_>>(), [b"1", b"2"]);
        assert!(f.has_token(FieldName::Connection, "x-secret"));
        assert!(!f.has_token(FieldName::Connection, "close"));
        assert_eq!(f.tokens(FieldName::Connection).collect::<Vec<_>>(), [&b"keep-alive"[..], b"X-Secret"]);
        assert!(!f.contains(FieldName::Upgrade));
        let kinds: Vec<_> = f.iter().map(|(k, _, _)| k).collect();
        assert_eq!(
            kinds,
            [
                FieldName::Host,
                FieldName::Connection,
                FieldName::XForwardedFor,
                FieldName::XForwardedFor,
                FieldName::Other
            ]
        );
        let map = f.to_map(|k, _| k == FieldName::Connection).unwrap();
        assert_eq!(map.len(), 4);
        assert_eq!(map.get_all("x-forwarded-for").iter().count(), 2);
        let back = Fields::from_map(&map);
        assert_eq!(back.get(FieldName::Host), Some(&b"a"[..]));
        assert_eq!(
            back.iter().map(|(_, n, _)| n.to_vec()).collect::<Vec<_>>(),
            [&b"host"[..], b"x-forwarded-for", b"x-forwarded-for", b"x-a"]
        );
    }

    #[test]
    fn tokens_are_the_trimmed_non_empty_items_of_every_field_with_the_name() {
        let check = |head: &'static str, want: &[&str]| {
            let f = parse(head);
            let got: Vec<_> =
                f.tokens(FieldName::Connection).map(|t| String::from_utf8_lossy(t).into_owned()).collect();
            assert_eq!(got, want, "{head:?}");
        };
        check("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &[]);
        check("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &["close"]);
        check("GET / HTTP/1.1\r\nConnection:\r\n\r\n", &[]);
        check("GET / HTTP/1.1\r\nConnection: ,\r\n\r\n", &[]);
        check("GET / HTTP/1.1\r\nConnection: , a ,, b\t,\r\n\r\n", &["a", "b"]);
        check("GET / HTTP/1.1\r\nConnection: a,b\r\nHost: x, y\r\nconnection: c\r\n\r\n", &["a", "b", "c"]);
        check(
            "GET / HTTP/1.1\r\nConnection: \r\nX: 1\r\nCONNECTION: keep-alive , Upgrade\r\n\r\n",
            &["keep-alive", "Upgrade"],
        );
    }

    #[test]
    fn known_names_compare_word_by_word_as_byte_by_byte() {
        // Every byte in place of each byte of each known name, in every length class the
        // comparison has (under 8, 8 to 16, over 16 bytes): the word-wise comparison agrees
        // with `eq_lowercase`, so case is the only thing it ignores.
        let mut checked = 0;
        for known in ALL {
            let text = known.text();
            assert!(eq_known(text.as_bytes(), text) && eq_known(text.to_uppercase().as_bytes(), text));
            for at in 0..text.len() {
                for b in 0..=255u8 {
                    let mut name = text.as_bytes().to_vec();
                    name[at] = b;
                    assert_eq!(eq_known(&name, text), eq_lowercase(&name, text), "{text} with {b:#x} at {at}");
                    checked += 1;
                }
            }
            assert!(!eq_known(&text.as_bytes()[1..], text) && !eq_known(format!("{text}-").as_bytes(), text));
        }
        assert!(checked > 25 * 256 * 2);
    }

    /// Every known name.
    const ALL: [FieldName; 26] = {
        use FieldName::*;
        [
            Close,
            Connection,
            ContentLength,
            Date,
            Expect,
            Host,
            Http2Settings,
            KeepAlive,
            ProxyAuthenticate,
            ProxyAuthorization,
            ProxyConnection,
            StrictTransportSecurity,
            Te,
            Trailer,
            TransferEncoding,
            Upgrade,
            XForwardedFor,
            XForwardedPath,
            XForwardedPort,
            XForwardedProto,
            XOrigHost,
            XOrigPath,
            XOrigPort,
            XOrigProto,
            XRequestId,
            XRequestStart,
        ]
    };

    #[test]
    fn known_names_map_to_the_header_names_their_text_makes() {
        // Each known name that crosses the router has a constant, the one its text parses to;
        // the hop-by-hop ones (forwarding.rs) have none: they never reach a header map.
        use FieldName::*;
        let hop_by_hop = [
            Close,
            Connection,
            Http2Settings,
            KeepAlive,
            ProxyAuthenticate,
            ProxyAuthorization,
            ProxyConnection,
            Te,
            Trailer,
            TransferEncoding,
            Upgrade,
        ];
        for known in ALL {
            match known.header_name() {
                Some(name) => assert_eq!(name, HeaderName::from_bytes(known.text().as_bytes()).unwrap()),
                None => assert!(hop_by_hop.contains(&known), "{} has no constant", known.text()),
            }
        }
        assert_eq!(FieldName::Other.header_name(), None);
        assert_eq!(FieldName::Underscored.header_name(), None);
    }

    #[test]
    fn every_known_name_is_recognised_in_any_case_and_nothing_else_is() {
        use FieldName::*;
        // `ALL`, which has `Date` too (this list once left it out).
        for name in ALL {
            assert_eq!(FieldName::of(name.text().as_bytes()), name);
            assert_eq!(FieldName::of(name.text().to_uppercase().as_bytes()), name);
            // One letter off, or one longer, is another name.
            let mut near = name.text().as_bytes().to_vec();
            near[0] ^= 1;
            assert_eq!(FieldName::of(&near), Other, "{}", name.text());
            assert_eq!(FieldName::of(format!("{}s", name.text()).as_bytes()), Other);
        }
        for underscored in ["X_Forwarded_For", "x_request_id", "Content_Length", "x-forwarded_proto", "HTTP2_SETTINGS"]
        {
            assert_eq!(FieldName::of(underscored.as_bytes()), Underscored, "{underscored:?}");
        }
        for other in
            ["", "x-a", "hosts", "content-type", "x-request-ids", "connection\0", "x_custom", "x__forwarded-for"]
        {
            assert_eq!(FieldName::of(other.as_bytes()), Other, "{other:?}");
        }
    }
}
