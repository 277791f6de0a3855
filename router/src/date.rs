//! The `Date` field the router adds to a response that has none, on HTTP/1.1 and HTTP/2 alike.
//!
//! RFC 9110, section 6.6.1: an origin server with a clock sends `Date` on its final responses
//! (the router's own answers are an origin's), and a recipient with a clock that forwards a
//! final response without one adds it (a dyno's response that has none). A `Date` the dyno sent
//! goes on unchanged, and interim (1xx) responses get none, where RFC 9110 makes it optional.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// What a clock that cannot be read gives: the epoch, still a valid IMF-fixdate.
const EPOCH: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

/// The current time as an IMF-fixdate (RFC 9110, section 5.6.7; 29 bytes, such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`), as a field value. Formatted with `httpdate` at most once a
/// second per thread and cloned from there (a reference count), so a response pays for a clock
/// read and a copy, not for formatting.
pub(crate) fn now() -> HeaderValue {
    thread_local! {
        /// The second (since the epoch) the value was formatted for, and the value.
        static CACHED: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, value)| {
        if *at != second || value.is_none() {
            *at = second;
            *value = HeaderValue::try_from(httpdate::fmt_http_date(now)).ok();
        }
        value.clone().unwrap_or_else(|| HeaderValue::from_static(EPOCH))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_imf_fixdate_of_now() {
        let value = now();
        let text = value.to_str().unwrap();
        assert_eq!(text.len(), 29, "{text}");
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).unwrap();
        let skew = SystemTime::now().duration_since(parsed).unwrap();
        assert!(skew.as_secs() < 60, "{text} is not now");
        // A second call within the same second gives the same value (the cache).
        let again = now();
        assert!(again == value || httpdate::parse_http_date(again.to_str().unwrap()).unwrap() > parsed);
    }
}
