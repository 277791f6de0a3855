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

    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.at as usize..(self.at + self.len) as usize
    }

    fn get(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.range()]
    }
}

/// A message head's header fields, in their order, with names as the peer spelled them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    bytes: Bytes,
    list: Vec<(Span, Span)>,
}

impl Fields {
    /// The places of httparse's `headers` inside `base`, the buffer they were parsed from.
    /// `base` must be the start of what later becomes the `Bytes` given to [`Fields::new`].
    pub(crate) fn locate(base: &[u8], headers: &[httparse::Header<'_>]) -> Vec<(Span, Span)> {
        headers.iter().map(|h| (Span::of(h.name.as_bytes(), base), Span::of(h.value, base))).collect()
    }

    /// Fields over `bytes`, at places [`Fields::locate`] found.
    pub(crate) fn new(bytes: Bytes, list: Vec<(Span, Span)>) -> Fields {
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
            list.push((name, value));
        }
        Fields { bytes: bytes.into(), list }
    }

    /// How many fields there are.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Every field, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.list.iter().map(|&(n, v)| (n.get(&self.bytes), v.get(&self.bytes)))
    }

    /// The value of the first field named `name` (lowercase).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| is(n, name)).map(|(_, v)| v)
    }

    /// The values of every field named `name` (lowercase), in order.
    pub(crate) fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |(n, _)| is(n, name)).map(|(_, v)| v)
    }

    /// Whether a field named `name` is present.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether the comma-separated lists of the fields named `name` hold `token`.
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        // A plain loop: this runs for every request and response, and the iterator chain of
        // `tokens` cost several times as much.
        for (n, value) in self.iter() {
            if is(n, name) && value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
            {
                return true;
            }
        }
        false
    }

    /// The items of the comma-separated lists of the fields named `name`, trimmed.
    pub(crate) fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
    }

    /// The fields as a header map (for an HTTP/2 response), leaving out those `skip` names.
    /// Fails on a name or value that a header map cannot hold.
    pub(crate) fn to_map(&self, skip: impl Fn(&[u8]) -> bool) -> Result<HeaderMap, http::Error> {
        let mut map = HeaderMap::with_capacity(self.list.len());
        for (name, value) in self.iter().filter(|(n, _)| !skip(n)) {
            map.append(HeaderName::from_bytes(name)?, HeaderValue::from_bytes(value)?);
        }
        Ok(map)
    }
}

/// Whether a field name is `lower`, compared without regard to case.
pub(crate) fn is(name: &[u8], lower: &str) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower.as_bytes())
}

/// Whether a field name is one of `list` (lowercase), compared without regard to case.
pub(crate) fn is_one_of(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|l| is(name, l))
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
    fn fields_are_found_by_name_without_regard_to_case() {
        let f = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        assert_eq!(f.len(), 4);
        assert_eq!(f.get("host"), Some(&b"a"[..]));
        assert_eq!(f.get_all("x-a").collect::<Vec<_>>(), [b"1", b"2"]);
        assert!(f.has_token("connection", "x-secret"));
        assert!(!f.has_token("connection", "close"));
        assert!(!f.contains("x-b"));
        let map = f.to_map(|n| is(n, "connection")).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map.get_all("x-a").iter().count(), 2);
        let back = Fields::from_map(&map);
        assert_eq!(back.iter().map(|(n, _)| n.to_vec()).collect::<Vec<_>>(), [&b"host"[..], b"x-a", b"x-a"]);
    }
}
