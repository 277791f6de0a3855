//! The access line: what the router says about each request in the app's log stream, in
//! Heroku's router log format (`at=`, `method=`, `path=`, `status=`, `connect=`, `service=`,
//! `dyno=`, ...), and the request's counts in the metrics.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use crate::error::Code;
use crate::metrics::AppStats;
use crate::state::RouterState;
use crate::table::Dyno;

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
    /// The host, normalized.
    pub(crate) host: String,
    /// The client's address.
    pub(crate) fwd: http::HeaderValue,
    /// The request's method.
    pub(crate) method: http::Method,
    /// The request's target as the client sent it.
    pub(crate) path: String,
    /// The request id (`X-Request-Id`).
    pub(crate) request_id: String,
    /// The dyno the request went to (its name is logged).
    pub(crate) dyno: Option<Arc<Dyno>>,
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
            ("host=", self.host.as_str()),
            (" fwd=", self.fwd.to_str().unwrap_or("-")),
            (" method=", self.method.as_str()),
            (" path=", self.path.as_str()),
            (" request_id=", self.request_id.as_str()),
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

    fn log(path: &str, status: u16, code: Option<Code>) -> AccessLog {
        AccessLog {
            app: "api-default".into(),
            stats: Arc::default(),
            site: None,
            host: "api.example.com".into(),
            fwd: http::HeaderValue::from_static("10.0.0.1"),
            method: http::Method::GET,
            path: path.into(),
            request_id: "r1".into(),
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
