//! Live tails: a bounded ring of recent lines per app, subscribers for new ones, and the HTTP
//! endpoint a log session's URL points at.
//!
//! A slow tail client never holds memory beyond its channel: when it falls behind, the lines it
//! missed are counted and it is told so (`Error L11`), and it carries on with new lines.
//!
//! The endpoint answers plain text, one line per log line, or Server-Sent Events (one `data:`
//! event per line, WHATWG HTML section 9.2) when the client accepts `text/event-stream`, as the
//! Heroku CLI's `logs` does.
//!
//! A tail ends after an hour (`MAX_TAIL`), when the client goes, or at once when shutdown
//! starts ([`crate::Logshuttle::end_tails`]): an open tail never holds Wharf's shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::broadcast;
use wharf_bus::LogEvent;
use wharf_domain::timestamp::{format_micros, now_seconds, write_micros};
use wharf_domain::{SessionError, SessionGrant, SessionKey};

/// Lines a live subscriber may fall behind by before it misses some.
const LIVE_CAPACITY: usize = 1024;
/// Longest a tail stream stays open.
const MAX_TAIL: Duration = Duration::from_secs(3600);

struct AppLog {
    ring: VecDeque<LogEvent>,
    bytes: usize,
    live: Option<broadcast::Sender<LogEvent>>,
}

impl AppLog {
    /// Sends a line to the live subscribers and keeps it, within the limits.
    fn record(&mut self, e: &LogEvent, max_lines: usize, max_bytes: usize) {
        if let Some(live) = &self.live
            && live.send(e.clone()).is_err()
        {
            // Nobody is listening any more.
            self.live = None;
        }
        if max_lines == 0 {
            return;
        }
        self.bytes += e.encoded().len();
        self.ring.push_back(e.clone());
        while self.ring.len() > max_lines || self.bytes > max_bytes {
            let Some(old) = self.ring.pop_front() else {
                break;
            };
            self.bytes -= old.encoded().len();
        }
    }
}

/// Recent lines of every app, and the live subscribers.
pub struct History {
    apps: Mutex<HashMap<Box<str>, AppLog, foldhash::fast::RandomState>>,
    max_lines: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("max_lines", &self.max_lines).finish_non_exhaustive()
    }
}

impl History {
    /// Keeps up to `max_lines` lines and `max_bytes` bytes per app.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        History { apps: Mutex::new(HashMap::default()), max_lines, max_bytes }
    }

    /// Records a batch of lines: into each app's ring, and to its live subscribers.
    pub fn record<'a>(&self, events: impl IntoIterator<Item = &'a LogEvent>) {
        let mut apps = self.apps.lock().expect("history lock");
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            // A batch comes in runs of one app's lines (a router worker's access lines, a
            // dyno's output), so the app's log is looked up once per run.
            let log = match apps.get_mut(first.app()) {
                Some(log) => log,
                None => apps.entry(first.app().into()).or_insert_with(|| AppLog {
                    ring: VecDeque::new(),
                    bytes: 0,
                    live: None,
                }),
            };
            log.record(first, self.max_lines, self.max_bytes);
            while let Some(e) = events.next_if(|e| e.same_app(first)) {
                log.record(e, self.max_lines, self.max_bytes);
            }
        }
    }

    /// The app's recent lines that pass the filter, at most `lines` of them, and when `tail`,
    /// a subscription to new ones, taken atomically so no line falls between the two.
    fn open(&self, grant: &SessionGrant) -> (Vec<LogEvent>, Option<broadcast::Receiver<LogEvent>>) {
        let mut apps = self.apps.lock().expect("history lock");
        let log = apps.entry(grant.app.as_str().into()).or_insert_with(|| AppLog {
            ring: VecDeque::new(),
            bytes: 0,
            live: None,
        });
        let mut recent: Vec<LogEvent> =
            log.ring.iter().rev().filter(|e| passes(grant, e)).take(grant.lines as usize).cloned().collect();
        recent.reverse();
        let live = grant.tail.then(|| match &log.live {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(LIVE_CAPACITY);
                log.live = Some(tx);
                rx
            }
        });
        (recent, live)
    }
}

/// Whether a line passes a session's source and dyno filters. A dyno filter matches the dyno
/// (`web.1562910588-cg82f`) or every dyno of a type (`web`).
fn passes(grant: &SessionGrant, e: &LogEvent) -> bool {
    if grant.source.as_deref().is_some_and(|s| s != e.source()) {
        return false;
    }
    match grant.dyno.as_deref() {
        None => true,
        Some(d) => {
            let p = e.process();
            p == d || (p.len() > d.len() && p.starts_with(d) && p.as_bytes()[d.len()] == b'.')
        }
    }
}

/// One line as a tail shows it: `TIME app-space SOURCE[PROCESS]: message`.
pub fn format_line(e: &LogEvent) -> Bytes {
    let msg = String::from_utf8_lossy(e.message());
    let mut s = String::with_capacity(64 + msg.len());
    if wharf_domain::timestamp::in_range(e.time_micros()) {
        write_micros(&mut s, e.time_micros());
    } else {
        s.push('-');
    }
    s.push(' ');
    s.push_str(e.app());
    s.push(' ');
    s.push_str(e.source());
    if !e.process().is_empty() {
        s.push('[');
        s.push_str(e.process());
        s.push(']');
    }
    s.push_str(": ");
    s.push_str(msg.trim_end_matches(['\n', '\r']));
    s.push('\n');
    Bytes::from(s)
}

/// What the tail endpoint needs.
#[derive(Clone)]
pub(crate) struct TailState {
    /// Recent lines per app, and the live subscribers new lines go to.
    pub(crate) history: Arc<History>,
    /// Checks the `{token}` in the URL: shared with the control API that signs the grants.
    pub(crate) sessions: Arc<SessionKey>,
    /// Turns true when shutdown starts; every tail ends then.
    pub(crate) ended: tokio::sync::watch::Receiver<bool>,
}

/// Whether the request accepts Server-Sent Events (`Accept: text/event-stream`).
fn wants_events(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/event-stream"))
}

/// One formatted line as a Server-Sent Event: each of its lines a `data:` field (a CR or LF in
/// a message would otherwise end the field), then the blank line that ends the event.
fn as_event(line: Bytes) -> Bytes {
    let text = String::from_utf8_lossy(&line);
    let mut out = String::with_capacity(text.len() + 16);
    for part in text.trim_end_matches(['\n', '\r']).split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(part);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// `GET /log-sessions/{token}`: streams the granted lines as text, or as Server-Sent Events.
pub(crate) async fn stream(State(state): State<TailState>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let grant = match state.sessions.verify(&token, now_seconds()) {
        Ok(g) => g,
        Err(e @ SessionError::Invalid) => return refuse(StatusCode::NOT_FOUND, "not_found", e),
        Err(e @ SessionError::Expired) => return refuse(StatusCode::GONE, "gone", e),
    };
    let (recent, live) = state.history.open(&grant);
    let events = wants_events(&headers);
    let shape = move |line: Bytes| if events { as_event(line) } else { line };
    let head =
        futures_util::stream::iter(recent.into_iter().map(move |e| Ok::<_, std::io::Error>(shape(format_line(&e)))));
    let body = match live {
        None => axum::body::Body::from_stream(head),
        Some(rx) => {
            let deadline = tokio::time::Instant::now() + MAX_TAIL;
            let mut ended = state.ended.clone();
            let ended = Box::pin(async move {
                // The sender lives as long as the logshuttle, which outlives its HTTP server.
                let _ = ended.wait_for(|e| *e).await;
            });
            let tail = futures_util::stream::unfold((rx, grant, ended), move |(mut rx, grant, mut ended)| async move {
                loop {
                    let next = tokio::select! {
                        () = &mut ended => return None,
                        next = tokio::time::timeout_at(deadline, rx.recv()) => next.ok()?,
                    };
                    match next {
                        Ok(e) if passes(&grant, &e) => {
                            return Some((Ok(shape(format_line(&e))), (rx, grant, ended)));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let line = format!(
                                "{} {} akkeris/logshuttle: Error L11 (tail buffer overflow): {n} messages dropped because this session fell behind.\n",
                                format_micros(now_seconds() * 1_000_000),
                                grant.app
                            );
                            return Some((Ok(shape(Bytes::from(line))), (rx, grant, ended)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            axum::body::Body::from_stream(futures_util::StreamExt::chain(head, tail))
        }
    };
    let content_type = if events { "text/event-stream" } else { "text/plain; charset=utf-8" };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn refuse(status: StatusCode, id: &str, e: SessionError) -> Response {
    (status, axum::Json(serde_json::json!({ "id": id, "message": e.to_string() }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(process: &str, source: &str, msg: &str) -> LogEvent {
        LogEvent::builder("api-default", source).process(process).message(msg.as_bytes())
    }

    fn grant(lines: u32, source: Option<&str>, dyno: Option<&str>) -> SessionGrant {
        SessionGrant {
            id: wharf_domain::new_id(),
            app: "api-default".parse().unwrap(),
            lines,
            tail: false,
            source: source.map(Into::into),
            dyno: dyno.map(Into::into),
            expires: i64::MAX,
        }
    }

    #[test]
    fn history_is_bounded_and_filtered() {
        let h = History::new(3, usize::MAX);
        let events: Vec<_> = (0..5).map(|i| event(&format!("web.{i}"), "app", &i.to_string())).collect();
        h.record(&events);
        h.record(&[event("", "akkeris/router", "r")]);
        let msgs = |g: SessionGrant| -> Vec<String> {
            h.open(&g).0.iter().map(|e| String::from_utf8_lossy(e.message()).into_owned()).collect()
        };
        assert_eq!(msgs(grant(10, None, None)), ["3", "4", "r"]);
        assert_eq!(msgs(grant(1, None, None)), ["r"]);
        assert_eq!(msgs(grant(10, Some("app"), None)), ["3", "4"]);
        assert_eq!(msgs(grant(10, None, Some("web.4"))), ["4"]);
        assert_eq!(msgs(grant(10, None, Some("web"))), ["3", "4"]);
        assert_eq!(msgs(grant(10, None, Some("we"))), Vec::<String>::new());
    }

    #[test]
    fn a_batch_of_several_apps_lines_goes_to_each_apps_history_in_order() {
        let h = History::new(10, usize::MAX);
        let line = |app: &str, msg: &str| LogEvent::builder(app, "app").message(msg.as_bytes());
        h.record(&[
            line("api-default", "1"),
            line("api-default", "2"),
            line("web-default", "w"),
            line("api-default", "3"),
        ]);
        let msgs = |app: &str| -> Vec<String> {
            let g = SessionGrant { app: app.parse().unwrap(), ..grant(10, None, None) };
            h.open(&g).0.iter().map(|e| String::from_utf8_lossy(e.message()).into_owned()).collect()
        };
        assert_eq!(msgs("api-default"), ["1", "2", "3"]);
        assert_eq!(msgs("web-default"), ["w"]);
    }

    #[test]
    fn events_carry_each_line_in_data_fields() {
        use bytes::Bytes;

        use super::as_event;
        assert_eq!(as_event(Bytes::from_static(b"a line\n")), Bytes::from_static(b"data: a line\n\n"));
        assert_eq!(
            as_event(Bytes::from_static(b"one\rtwo\nthree\n")),
            Bytes::from_static(b"data: one\ndata: two\ndata: three\n\n")
        );
    }

    #[test]
    fn lines_format_like_heroku_logs() {
        let e = LogEvent::builder("api-default", "app")
            .process("web.1-abcde")
            .time(std::time::UNIX_EPOCH)
            .message(b"hello\n");
        assert_eq!(&format_line(&e)[..], b"1970-01-01T00:00:00.000000Z api-default app[web.1-abcde]: hello\n");
        let r = LogEvent::builder("api-default", "akkeris/router").time(std::time::UNIX_EPOCH).message(b"x");
        assert_eq!(&format_line(&r)[..], b"1970-01-01T00:00:00.000000Z api-default akkeris/router: x\n");
    }
}
