//! The access line: what the router says about each request in the app's log stream, in
//! Heroku's router log format (`at=`, `method=`, `path=`, `status=`, `connect=`, `service=`,
//! `dyno=`, ...), and the request's counts in the metrics.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use crate::error::Code;
use crate::metrics::AppStats;
use crate::state::RouterState;
use crate::table::Busy;

thread_local! {
    /// The worker thread's buffer for the line being written (see [`AccessLog::write_line`]):
    /// it keeps its capacity from line to line, up to [`LINE_KEPT`] bytes.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The most a thread's line buffer keeps between lines, in bytes: a line is about 250 bytes
/// and its target's length, and one very long target should not hold its memory for good.
const LINE_KEPT: usize = 4096;

/// What the access log line says about one request.
#[derive(Debug)]
pub(crate) struct AccessLog {
    /// The app's key, whose log stream gets the line.
    pub(crate) app: Arc<str>,
    /// The app's request counters.
    pub(crate) stats: Arc<AppStats>,
    /// The site's domain, whose log stream gets the line too.
    pub(crate) site: Option<Arc<str>>,
    /// The request's host, target and id.
    pub(crate) request: RequestText,
    /// The client's address.
    pub(crate) fwd: http::HeaderValue,
    /// The request's method.
    pub(crate) method: http::Method,
    /// The dyno the request went to (its name is logged), counted among its requests in flight
    /// until the line is written and dropped.
    pub(crate) dyno: Option<Busy>,
    /// The status the client got.
    pub(crate) status: u16,
    /// When the router began serving the request.
    pub(crate) started: Instant,
    /// The wall-clock time at `started`, in microseconds since the Unix epoch: the line's time
    /// is this plus the request's duration, so the wall clock is read once per request.
    pub(crate) started_micros: i64,
    /// Milliseconds to get a connection to the dyno.
    pub(crate) connect_ms: u64,
    /// Milliseconds from sending the request to the dyno's response head.
    pub(crate) service_ms: u64,
    /// The error code, when the request failed.
    pub(crate) code: Option<Code>,
}

/// What the access line says of the request itself: its host (normalized, see
/// [`crate::table::normalize_host`]), its target as the client sent it and its request id
/// (`X-Request-Id`), in one buffer. The line is written when the response has ended, after the
/// request is gone, so they are owned; one allocation a request holds all three, where three
/// `String`s took three (benches/RESULTS.md, router run 19).
#[derive(Debug)]
pub(crate) struct RequestText {
    /// The host, then the target, then the id.
    text: String,
    /// Where the host ends in `text`.
    host_end: usize,
    /// Where the target ends in `text`.
    target_end: usize,
}

impl RequestText {
    /// The text of a request to the host in `raw_host` (a `Host` field's or an authority's
    /// bytes), normalized, with room for `more` bytes after it (the target and the id);
    /// `None` when the bytes cannot be a host.
    pub(crate) fn for_host(raw_host: &[u8], more: usize) -> Option<RequestText> {
        let mut text = String::with_capacity(raw_host.len() + more);
        if !crate::table::push_normalized_host(raw_host, &mut text) {
            return None;
        }
        let host_end = text.len();
        Some(RequestText { text, host_end, target_end: host_end })
    }

    /// Adds the target and the request id, which `id` writes (see
    /// [`crate::forwarding::push_new_request_id`]) after it.
    pub(crate) fn finish(&mut self, target: &str, id: impl FnOnce(&mut String)) {
        self.text.truncate(self.host_end);
        self.text.push_str(target);
        self.target_end = self.text.len();
        id(&mut self.text);
    }

    /// The host, normalized.
    pub(crate) fn host(&self) -> &str {
        &self.text[..self.host_end]
    }

    /// The target as the client sent it.
    pub(crate) fn target(&self) -> &str {
        &self.text[self.host_end..self.target_end]
    }

    /// The request id.
    pub(crate) fn request_id(&self) -> &str {
        &self.text[self.target_end..]
    }
}

impl AccessLog {
    /// Formats the line and puts it on the bus, in the app's stream (and the site's); the
    /// request ended at `now`.
    pub(crate) fn emit(self, shared: &Arc<RouterState>, bytes: u64, now: Instant) {
        let took = now.saturating_duration_since(self.started);
        let total = took.as_millis() as u64;
        let micros = self.started_micros.saturating_add(i64::try_from(took.as_micros()).unwrap_or(i64::MAX));
        crate::batch::publish(&shared.publisher, self.event(micros, total, bytes));
        shared.metrics.record(self.status, total);
        self.stats.record(self.status);
        crate::series::record(&shared.series, &self.app, micros, self.status, self.code.map(Code::as_str), total);
    }

    /// The line as a log event of the app (and the site) at `micros` (microseconds since the
    /// Unix epoch), for a request of `total` milliseconds whose response body had `bytes`.
    fn event(&self, micros: i64, total: u64, bytes: u64) -> wharf_bus::LogEvent {
        let mut event = wharf_bus::LogEvent::builder(&self.app, "akkeris/router").time_micros(micros);
        if let Some(site) = &self.site {
            event = event.site(site);
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            self.write_line(line, total, bytes);
            let event = event.message(line.as_bytes());
            if line.capacity() > LINE_KEPT {
                *line = String::new();
            }
            event
        })
    }

    /// Writes the line's text to `line`: `total` is the request's milliseconds, `bytes` the
    /// response body's length.
    ///
    /// Built by hand (formatting machinery was a measurable share of a request's cost), into a
    /// buffer that the worker's thread keeps for its next line: the event copies the text
    /// once, and no line allocates (callgrind, benches/RESULTS.md, router run 17).
    fn write_line(&self, line: &mut String, total: u64, bytes: u64) {
        let mut num = itoa::Buffer::new();
        if let Some(code) = self.code {
            line.push_str("at=");
            line.push_str(code.level());
            line.push_str(" code=");
            line.push_str(code.as_str());
            line.push_str(" desc=\"");
            line.push_str(code.desc());
            line.push_str("\" ");
        }
        for (key, value) in [
            ("host=", self.request.host()),
            (" fwd=", self.fwd.to_str().unwrap_or("-")),
            (" method=", self.method.as_str()),
            (" path=", self.request.target()),
            (" request_id=", self.request.request_id()),
        ] {
            line.push_str(key);
            line.push_str(value);
        }
        for (key, value) in [
            (" status=", u64::from(self.status)),
            (" service=", self.service_ms),
            (" connect=", self.connect_ms),
            (" total=", total),
            (" bytes=", bytes),
        ] {
            line.push_str(key);
            line.push_str(num.format(value));
        }
        if let Some(dyno) = &self.dyno {
            line.push_str(" dyno=");
            line.push_str(&dyno.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(host: &str, target: &str, id: &str) -> RequestText {
        let mut text = RequestText::for_host(host.as_bytes(), 0).expect("a host");
        text.finish(target, |out| out.push_str(id));
        text
    }

    #[test]
    fn request_texts_keep_their_parts_apart() {
        // (raw host, target, id) and the parts read back; the host as routing compares it.
        for (raw, target, id, want) in [
            ("Api.Example.COM:443", "/a?b=c", "r1", Some(("api.example.com", "/a?b=c", "r1"))),
            (
                "[::1]:8443",
                "/",
                "24FB1BE9-D54C-4BF8-AE0C-DCAEC5CD2BE1",
                Some(("[::1]", "/", "24FB1BE9-D54C-4BF8-AE0C-DCAEC5CD2BE1")),
            ),
            ("h.", "", "", Some(("h", "", ""))),
            ("a b", "/", "r1", None),
            ("", "/", "r1", None),
        ] {
            let got = RequestText::for_host(raw.as_bytes(), target.len() + id.len()).map(|mut t| {
                t.finish(target, |out| out.push_str(id));
                (t.host().to_owned(), t.target().to_owned(), t.request_id().to_owned())
            });
            let want = want.map(|(h, t, i)| (h.to_owned(), t.to_owned(), i.to_owned()));
            assert_eq!(got, want, "{raw:?} {target:?} {id:?}");
        }
        // Finishing twice leaves only the second target and id.
        let mut t = text("h", "/first", "id-one");
        t.finish("/second", |out| out.push_str("id-two"));
        assert_eq!((t.host(), t.target(), t.request_id()), ("h", "/second", "id-two"));
    }

    fn log(path: &str, status: u16, code: Option<Code>) -> AccessLog {
        AccessLog {
            app: "api-default".into(),
            stats: Arc::default(),
            site: None,
            request: text("api.example.com", path, "r1"),
            fwd: http::HeaderValue::from_static("10.0.0.1"),
            method: http::Method::GET,
            dyno: None,
            status,
            started: Instant::now(),
            started_micros: 0,
            connect_ms: 1,
            service_ms: 2,
            code,
        }
    }

    #[test]
    fn each_line_is_its_own_whatever_the_thread_wrote_before() {
        let long = format!("/{}", "a".repeat(2 * LINE_KEPT));
        // A long line, a short one and a refused one in turn on one thread: each event carries
        // exactly its own line, and the long one's buffer is not kept.
        for (path, status, code, want) in [
            (
                long.as_str(),
                200,
                None,
                format!(
                    "host=api.example.com fwd=10.0.0.1 method=GET path={long} request_id=r1 status=200 service=2 connect=1 total=3 bytes=4"
                ),
            ),
            (
                "/x",
                200,
                None,
                "host=api.example.com fwd=10.0.0.1 method=GET path=/x request_id=r1 status=200 service=2 connect=1 total=3 bytes=4".into(),
            ),
            (
                "/y",
                503,
                Some(Code::H12),
                format!(
                    "at=error code=H12 desc=\"{}\" host=api.example.com fwd=10.0.0.1 method=GET path=/y request_id=r1 status=503 service=2 connect=1 total=3 bytes=4",
                    Code::H12.desc()
                ),
            ),
        ] {
            let event = log(path, status, code).event(7, 3, 4);
            assert_eq!(std::str::from_utf8(event.message()).unwrap(), want);
            assert_eq!((event.app(), event.source(), event.time_micros()), ("api-default", "akkeris/router", 7));
            assert!(LINE.with_borrow(String::capacity) <= LINE_KEPT);
        }
    }
}
