//! Request paths as routes match and rewrite them: dot segments removed first (RFC 3986,
//! section 5.2.4), in their percent-encoded forms too, so that `/docs/../private` can never
//! reach a route's app as `/public/../private` and be resolved by the dyno outside the route's
//! target path.

use std::borrow::Cow;

/// Why a path was refused (400).
pub(crate) type PathRefusal = &'static str;

/// The path with its dot segments removed; borrowed, and unchanged, when it has none (nearly
/// always: a path without `.` or `%` is returned at once). A segment is a dot segment when it
/// is `.` or `..` once `%2E`/`%2e` are read as `.`; every other segment is kept as it came.
pub(crate) fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'.', b'%', path.as_bytes()).is_none() {
        return Cow::Borrowed(path);
    }
    let mut segments = path.split('/').skip(1).peekable();
    if !path.split('/').skip(1).any(|s| dots(s).is_some()) {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<&str> = Vec::new();
    // Whether the path ends with a slash: after a dot segment at its end, it does.
    let mut trailing = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dots(segment) {
            Some(1) => trailing = last,
            Some(_) => {
                out.pop();
                trailing = last;
            }
            None => {
                out.push(segment);
                trailing = false;
            }
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &out {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing || normalized.is_empty() {
        normalized.push('/');
    }
    Cow::Owned(normalized)
}

/// How many dots a dot segment has (1 or 2), `None` for any other segment.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut count = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && rest[2].eq_ignore_ascii_case(&b'e') {
            rest = &rest[3..];
        } else {
            return None;
        }
        count += 1;
    }
    (1..=2).contains(&count).then_some(count)
}

/// Refuses a path that a dyno decoding it could resolve outside its route's target: one with an
/// encoded slash or backslash (`%2F`, `%5C`) or a raw backslash. Checked only on routes that
/// rewrite the path; on a route that hands the path as it came (every app's default domain) the
/// app owns every path, and such bytes stay opaque.
pub(crate) fn check_rewritable(path: &str) -> Result<(), PathRefusal> {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return Err("backslash in a routed path");
    }
    let encoded_separator = memchr::memchr_iter(b'%', bytes).any(|i| {
        let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
        hex.eq_ignore_ascii_case(b"2f") || hex.eq_ignore_ascii_case(b"5c")
    });
    if encoded_separator {
        return Err("encoded slash or backslash in a routed path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_removed_in_every_spelling() {
        let check = |path: &str, want: &str| assert_eq!(remove_dot_segments(path), want, "{path}");
        check("/", "/");
        check("/a/b", "/a/b");
        check("/a.b/c..d/.e/f.", "/a.b/c..d/.e/f.");
        check("/docs/../private", "/private");
        check("/docs/./a", "/docs/a");
        check("/docs/%2e%2e/private", "/private");
        check("/docs/%2E./private", "/private");
        check("/docs/.%2E/private", "/private");
        check("/docs/%2e/a", "/docs/a");
        check("/../../etc", "/etc");
        check("/a/b/..", "/a/");
        check("/a/b/.", "/a/b/");
        check("/a/..", "/");
        check("/..", "/");
        check("/a/...", "/a/...");
        check("/a/%2e%2e%2e", "/a/%2e%2e%2e");
        check("/a//../b", "/a/b");
        check("/a%2fb", "/a%2fb");
        assert!(matches!(remove_dot_segments("/plain/path"), Cow::Borrowed(_)));
    }

    #[test]
    fn encoded_separators_are_refused_where_a_route_rewrites() {
        assert!(check_rewritable("/docs/a%20b").is_ok());
        assert!(check_rewritable("/docs/..%2fprivate").is_err());
        assert!(check_rewritable("/docs/..%2Fprivate").is_err());
        assert!(check_rewritable("/docs/..%5cprivate").is_err());
        assert!(check_rewritable("/docs/..\\private").is_err());
        assert!(check_rewritable("/docs/100%").is_ok());
    }
}
