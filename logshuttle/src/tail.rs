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
//!
//! With Kafka as the bus, a logshuttle of a consumer group consumes only some partitions, so
//! its rings would hold only some apps' lines. A session's lines of Wharf's own topic therefore
//! come from a reader of its own ([`Readers`]): of the app's partition, from a window of its
//! newest messages (the history) on, whichever member consumes the partition, and across
//! rebalances. The rings then keep only the lines of the other topics (Akkeris' inputs), and
//! of those only the partitions this member consumes. A slow client slows its reader, which
//! Kafka does not mind; the reader closes when the session ends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::{Semaphore, broadcast, mpsc};
use wharf_bus::{CatchUp, CatchUpReader, LogEvent, Received};
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
    /// Whether the ring ever let a line of this app go (past its bounds): a session's history
    /// from it may then start later than the session asked.
    evicted: bool,
}

impl AppLog {
    fn empty() -> Self {
        AppLog { ring: VecDeque::new(), bytes: 0, live: None, evicted: false }
    }
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
            self.evicted = true;
            return;
        }
        self.bytes += e.encoded().len();
        self.ring.push_back(e.clone());
        while self.ring.len() > max_lines || self.bytes > max_bytes {
            let Some(old) = self.ring.pop_front() else {
                break;
            };
            self.evicted = true;
            self.bytes -= old.encoded().len();
        }
    }
}

/// Recent lines of every app, and the live subscribers.
pub struct History {
    apps: Mutex<HashMap<Box<str>, AppLog, foldhash::fast::RandomState>>,
    max_lines: usize,
    max_bytes: usize,
    /// Whether sessions read Wharf's own topic from Kafka ([`Readers`]): then its lines are
    /// not kept here.
    read_back: bool,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("max_lines", &self.max_lines).finish_non_exhaustive()
    }
}

impl History {
    /// Keeps up to `max_lines` lines and `max_bytes` bytes per app.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        History { apps: Mutex::new(HashMap::default()), max_lines, max_bytes, read_back: false }
    }

    /// The same, for a logshuttle whose sessions read Wharf's own topic from Kafka: lines of
    /// that topic (topic index 0) are left to the sessions' readers.
    pub fn reading_back(max_lines: usize, max_bytes: usize) -> Self {
        History { read_back: true, ..History::new(max_lines, max_bytes) }
    }

    /// Records the lines of a batch taken off the bus that this history keeps.
    pub fn record_received(&self, batch: &[Received]) {
        let own_topic = |r: &Received| r.position.is_some_and(|p| p.partition.topic_index == 0);
        if self.read_back {
            self.record(batch.iter().filter(|r| !own_topic(r)).map(|r| &r.event));
        } else {
            self.record(batch.iter().map(|r| &r.event));
        }
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
                None => apps.entry(first.app().into()).or_insert_with(AppLog::empty),
            };
            log.record(first, self.max_lines, self.max_bytes);
            while let Some(e) = events.next_if(|e| e.same_app(first)) {
                log.record(e, self.max_lines, self.max_bytes);
            }
        }
    }

    /// The app's recent lines that pass the filter, at most `lines` of them, and when `tail`,
    /// a subscription to new ones, taken atomically so no line falls between the two; and,
    /// when the ring has let lines of the app go, the cut that may have shortened the history.
    fn open(&self, grant: &SessionGrant) -> (Vec<LogEvent>, Option<broadcast::Receiver<LogEvent>>, Option<HistoryCut>) {
        let mut apps = self.apps.lock().expect("history lock");
        let log = apps.entry(grant.app.as_str().into()).or_insert_with(AppLog::empty);
        let cut = log.evicted.then_some(HistoryCut::Ring { lines: self.max_lines, bytes: self.max_bytes });
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
        (recent, live, cut)
    }
}

/// Why a log session's history may start later than the session asked (`lines`): what held
/// the app's older lines let them go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HistoryCut {
    /// This logshuttle's ring keeps the last `lines` lines and `bytes` bytes of an app
    /// (`logshuttle.history_lines`, and 512 bytes a line on average), and has let older ones
    /// go. Sessions may ask for up to `history_lines` lines, so it is the bytes that cut a
    /// history of long lines.
    Ring { lines: usize, bytes: usize },
    /// With Kafka, the session read only the newest `messages` messages of the app's partition
    /// (`logshuttle.session_history_messages`), and the partition holds older ones.
    Window { messages: u64 },
    /// With Kafka, the partition no longer holds its oldest messages: the topic's retention (or
    /// an operator's deletion) removed them.
    Retention,
}

impl HistoryCut {
    /// The cut of a Kafka session's history that started at offset `from` of a partition whose
    /// oldest kept message was `oldest`, having asked for the newest `window` messages: none
    /// when it started at the partition's very first message (offset 0), so that everything
    /// the app ever logged there was read.
    fn of_partition(from: i64, oldest: i64, window: u64) -> Option<HistoryCut> {
        if from > oldest {
            Some(HistoryCut::Window { messages: window })
        } else if oldest > 0 {
            Some(HistoryCut::Retention)
        } else {
            None
        }
    }

    /// The words that say where the history starts, and why there.
    fn reason(self) -> String {
        match self {
            HistoryCut::Ring { lines, bytes } => format!(
                "this logshuttle keeps an app's lines (its last {lines} lines or {bytes} bytes, \
                 logshuttle.history_lines)"
            ),
            HistoryCut::Window { messages } => format!(
                "a session reads the app's Kafka partition (its newest {messages} messages, \
                 logshuttle.session_history_messages)"
            ),
            HistoryCut::Retention => "the topic keeps messages (its retention removed older ones)".to_owned(),
        }
    }
}

/// The line that tells a session its history is shorter than it asked for, when it is (`got`
/// lines of the `asked`) and one of `cuts` may be why; `None` when nothing was cut, so that the
/// app never logged more lines that pass the session's filters. With a Kafka window or
/// retention the app may have had no older lines either (the partition holds other apps'
/// lines too): the line says where the history starts, not that lines were lost. It is in the
/// session's own format with source `akkeris/logshuttle`, as Heroku's logplex announces its
/// L-codes in the stream; Heroku has no code for this, so it carries none.
fn short_history_line(app: &str, asked: u32, got: usize, cuts: &[HistoryCut], now_micros: i64) -> Option<Bytes> {
    if got >= asked as usize || cuts.is_empty() {
        return None;
    }
    let reasons: Vec<String> = cuts.iter().map(|c| c.reason()).collect();
    Some(Bytes::from(format!(
        "{} {app} akkeris/logshuttle: History: {got} of the {asked} lines asked for, from as far back as {}.\n",
        format_micros(now_micros),
        reasons.join(" and ")
    )))
}

/// Whether a line passes a session's source and dyno filters. A dyno filter matches the dyno
/// (`web.1-cg82f`), every dyno of a type (`web`), or Heroku's `type.N` (`web.1`): the lines of
/// the dyno of index 1, named `web.1-xxxxx` (both of them while a roll runs an old and a new
/// one), and its runtime metrics lines, whose process is `web.1`.
fn passes(grant: &SessionGrant, e: &LogEvent) -> bool {
    if grant.source.as_deref().is_some_and(|s| s != e.source()) {
        return false;
    }
    match grant.dyno.as_deref() {
        None => true,
        Some(d) => match e.process().strip_prefix(d) {
            Some(rest) => rest.is_empty() || rest.starts_with('.') || (rest.starts_with('-') && d.contains('.')),
            None => false,
        },
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
    /// With Kafka: the readers sessions take their lines of Wharf's topic from.
    pub(crate) readers: Option<Arc<Readers>>,
}

/// Most messages a session's reader takes from Kafka in one read.
const READ_MESSAGES: usize = 512;
/// Most payload bytes a session's reader takes from Kafka in one read.
const READ_BYTES: usize = 256 << 10;
/// Batches of lines a session's reader may have read ahead of its client: a slow client slows
/// its reader rather than growing its memory.
const READ_AHEAD: usize = 8;
/// Longest a session's reader reads its history, should the broker be slow to hand it: the rest
/// then comes as new lines, none lost.
const HISTORY_WAIT: Duration = Duration::from_secs(5);

/// Log sessions' readers of Kafka (see the module's documentation), at most `slots` at once.
#[derive(Debug)]
pub struct Readers {
    source: CatchUp,
    slots: Arc<Semaphore>,
    max: usize,
    history_messages: u64,
}

/// What a session's reader gives its stream.
struct ReadBack {
    /// The app's last lines (at most `lines`) up to where the reader caught up with the
    /// partition.
    history: Vec<LogEvent>,
    /// With `tail`: the app's lines after it, in batches.
    live: Option<mpsc::Receiver<Vec<LogEvent>>>,
    /// Whether the partition held older messages than the reader read (see [`HistoryCut`]).
    cut: Option<HistoryCut>,
}

/// Why a session got no reader.
#[derive(Debug, thiserror::Error)]
enum ReadBackError {
    #[error("this logshuttle streams {0} log sessions already, its most; try again when one ends")]
    Busy(usize),
    #[error("the log bus cannot be read: {0}")]
    Broker(String),
}

impl Readers {
    /// At most `max` readers at once, each reading its history from the newest
    /// `history_messages` messages of its partition.
    pub fn new(source: CatchUp, max: usize, history_messages: u64) -> Self {
        Readers { source, slots: Arc::new(Semaphore::new(max)), max, history_messages }
    }

    /// How many readers are open now.
    pub fn open_count(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Opens a reader for `grant` and reads its history; with `tail`, a task keeps reading
    /// new lines into the returned channel until its receiver is dropped, and then closes the
    /// reader and gives its slot back.
    async fn open(&self, grant: &SessionGrant) -> Result<ReadBack, ReadBackError> {
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| ReadBackError::Busy(self.max))?;
        // No history asked for: start at the end (the reader's rewind still covers a producer's
        // batch the end falls in).
        let back = if grant.lines == 0 { 0 } else { i64::try_from(self.history_messages).unwrap_or(i64::MAX) };
        let (source, app) = (self.source.clone(), grant.app.to_string());
        let (mut reader, end) = blocking(move || source.open_tail(&app, back))
            .await
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(ReadBackError::Broker)?;
        let cut = HistoryCut::of_partition(reader.next_offset(), reader.oldest(), self.history_messages);
        let mine = {
            let grant = grant.clone();
            move |r: Received| (r.event.app() == grant.app.as_str() && passes(&grant, &r.event)).then_some(r.event)
        };
        // The history: the app's last `lines` lines up to where the reader has read everything
        // fetched so far, at or past the partition's end when it opened. Not the end alone:
        // tansu 0.6 reports it as the newest producer batch's first offset plus one (its
        // dynostore's `list_offsets`), which would cut that batch off the history; but a fetch
        // brings whole batches, so the rest of that one is read by then. History reads are
        // bounded in messages only, so that a read short of them means nothing more was there.
        let mut history = VecDeque::new();
        let deadline = tokio::time::Instant::now() + HISTORY_WAIT;
        while tokio::time::Instant::now() < deadline {
            let got;
            (reader, got) = read(reader, usize::MAX).await.map_err(ReadBackError::Broker)?;
            let caught_up = got.len() < READ_MESSAGES && reader.next_offset() >= end;
            for e in got.into_iter().filter_map(&mine) {
                history.push_back(e);
                if history.len() > grant.lines as usize {
                    history.pop_front();
                }
            }
            if caught_up {
                break;
            }
        }
        tracing::debug!(app = %grant.app, end, next = reader.next_offset(), history = history.len(), "log session reader opened");
        let history = history.into();
        if !grant.tail {
            tokio::spawn(close(reader, permit));
            return Ok(ReadBack { history, live: None, cut });
        }
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            let mut reader = reader;
            while !tx.is_closed() {
                let got;
                (reader, got) = match read(reader, READ_BYTES).await {
                    Ok(r) => r,
                    // The read panicked: the reader is gone with it; the stream ends.
                    Err(_) => return,
                };
                let lines: Vec<LogEvent> = got.into_iter().filter_map(&mine).collect();
                if !lines.is_empty() && tx.send(lines).await.is_err() {
                    break;
                }
            }
            close(reader, permit).await;
        });
        Ok(ReadBack { history, live: Some(rx), cut })
    }
}

/// Runs blocking work of the Kafka client on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())
}

/// One read of a session's reader, of up to [`READ_MESSAGES`] messages and about `max_bytes`
/// of payload (waits up to 100 ms for the first message).
async fn read(mut reader: CatchUpReader, max_bytes: usize) -> Result<(CatchUpReader, Vec<Received>), String> {
    blocking(move || {
        let got = reader.read(READ_MESSAGES, max_bytes);
        (reader, got)
    })
    .await
}

/// Closes a session's reader (its client's close blocks) and then gives its slot back.
async fn close(reader: CatchUpReader, permit: tokio::sync::OwnedSemaphorePermit) {
    let _ = blocking(move || drop(reader)).await;
    drop(permit);
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
    let read_back = match &state.readers {
        None => None,
        Some(readers) => match readers.open(&grant).await {
            Ok(r) => Some(r),
            Err(e @ ReadBackError::Busy(_)) => {
                let mut refused = refuse(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", e);
                refused.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                return refused;
            }
            Err(e @ ReadBackError::Broker(_)) => {
                tracing::warn!(app = %grant.app, error = %e, "a log session cannot read kafka");
                // Every 503 says when to try again, as the busy one above does.
                let mut refused = refuse(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", e);
                refused.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                return refused;
            }
        },
    };
    let (mut recent, live, ring_cut) = state.history.open(&grant);
    let mut cuts: Vec<HistoryCut> = ring_cut.into_iter().collect();
    let mut from_kafka = None;
    if let Some(ReadBack { history, live, cut }) = read_back {
        cuts.extend(cut);
        // The rings hold only the other topics' lines then: the two histories, merged by
        // time, give the app's last lines.
        if recent.is_empty() {
            recent = history;
        } else {
            recent.extend(history);
            recent.sort_by_key(LogEvent::time_micros);
            recent.drain(..recent.len().saturating_sub(grant.lines as usize));
        }
        from_kafka = live;
    }
    let events = wants_events(&headers);
    let shape = move |line: Bytes| if events { as_event(line) } else { line };
    // A history shorter than asked, because older lines are gone, is said first: the client
    // learns that its history starts later than it asked, and why.
    let short = short_history_line(grant.app.as_str(), grant.lines, recent.len(), &cuts, now_seconds() * 1_000_000);
    let head = futures_util::stream::iter(
        short
            .into_iter()
            .chain(recent.into_iter().map(|e| format_line(&e)))
            .map(move |l| Ok::<_, std::io::Error>(shape(l))),
    );
    let body = match live {
        None => axum::body::Body::from_stream(head),
        Some(rx) => {
            let deadline = tokio::time::Instant::now() + MAX_TAIL;
            let mut ended = state.ended.clone();
            let ended = Box::pin(async move {
                // The sender lives as long as the logshuttle, which outlives its HTTP server.
                let _ = ended.wait_for(|e| *e).await;
            });
            let start = (rx, from_kafka, grant, ended);
            let tail = futures_util::stream::unfold(start, move |(mut rx, mut kafka, grant, mut ended)| async move {
                loop {
                    let next = tokio::select! {
                        () = &mut ended => return None,
                        () = tokio::time::sleep_until(deadline) => return None,
                        // The reader's lines are the app's and pass the filters already. Its
                        // end (it failed) ends the session: the client opens another.
                        lines = next_batch(&mut kafka) => {
                            let mut out = Vec::new();
                            for e in lines? {
                                out.extend_from_slice(&shape(format_line(&e)));
                            }
                            return Some((Ok(Bytes::from(out)), (rx, kafka, grant, ended)));
                        }
                        next = rx.recv() => next,
                    };
                    match next {
                        Ok(e) if passes(&grant, &e) => {
                            return Some((Ok(shape(format_line(&e))), (rx, kafka, grant, ended)));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let line = format!(
                                "{} {} akkeris/logshuttle: Error L11 (tail buffer overflow): {n} messages dropped because this session fell behind.\n",
                                format_micros(now_seconds() * 1_000_000),
                                grant.app
                            );
                            return Some((Ok(shape(Bytes::from(line))), (rx, kafka, grant, ended)));
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

/// The next batch of a session's Kafka reader; never, for a session without one.
async fn next_batch(kafka: &mut Option<mpsc::Receiver<Vec<LogEvent>>>) -> Option<Vec<LogEvent>> {
    match kafka {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A refusal in Heroku's error shape, `{"id", "message"}`.
fn refuse(status: StatusCode, id: &str, e: impl std::fmt::Display) -> Response {
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

    /// (the session's dyno filter, a line's process, whether it passes)
    #[test]
    fn a_dyno_filter_is_a_dyno_a_type_or_heroku_s_type_n() {
        let rows = [
            ("web.1-abcde", "web.1-abcde", true),
            ("web.1-abcde", "web.1-fghij", false),
            ("web", "web.1-abcde", true),
            ("web", "web.1", true),
            ("web", "worker.1-abcde", false),
            ("web", "web-api.1-abcde", false),
            ("web.1", "web.1-abcde", true),
            ("web.1", "web.1", true),
            ("web.1", "web.12-abcde", false),
            ("web.1", "web.2-abcde", false),
            ("web.1", "worker.1-abcde", false),
            ("we", "web.1-abcde", false),
            ("run.1", "run.1", true),
            ("run.1", "run.12", false),
        ];
        for (filter, process, want) in rows {
            let got = passes(&grant(1, None, Some(filter)), &event(process, "app", "x"));
            assert_eq!(got, want, "--dyno {filter} on {process}");
        }
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

    /// With Kafka, the rings keep only the lines of the topics sessions do not read back
    /// (Akkeris' inputs); without, every line.
    #[test]
    fn rings_leave_wharfs_own_topic_to_the_readers_with_kafka() {
        use wharf_bus::{Partition, Position};
        let at = |topic_index: u16, msg: &str| Received {
            event: LogEvent::builder("api-default", "app").message(msg.as_bytes()),
            position: Some(Position { partition: Partition { topic_index, number: 0 }, offset: 0 }),
        };
        let embedded = Received { event: LogEvent::builder("api-default", "app").message(b"embedded"), position: None };
        let batch = [at(0, "own"), at(1, "akkeris"), embedded, at(2, "build")];
        for (history, want) in [
            (History::new(10, usize::MAX), &["own", "akkeris", "embedded", "build"][..]),
            (History::reading_back(10, usize::MAX), &["akkeris", "embedded", "build"][..]),
        ] {
            history.record_received(&batch);
            let got: Vec<String> = history
                .open(&grant(10, None, None))
                .0
                .iter()
                .map(|e| String::from_utf8_lossy(e.message()).into_owned())
                .collect();
            assert_eq!(got, want);
        }
    }

    /// Where a Kafka session's history started, against the partition's oldest message: the
    /// window cut it, the retention did, or it read everything the partition ever held.
    #[test]
    fn a_partitions_history_is_cut_by_the_window_or_the_retention() {
        use HistoryCut::{Retention, Window};
        for (from, oldest, want) in [
            (0, 0, None),
            (80, 0, Some(Window { messages: 20 })),
            (80, 50, Some(Window { messages: 20 })),
            (50, 50, Some(Retention)),
            (1, 1, Some(Retention)),
        ] {
            assert_eq!(HistoryCut::of_partition(from, oldest, 20), want, "from {from}, oldest {oldest}");
        }
    }

    /// The line said first when a history is shorter than asked and something let older lines
    /// go; nothing when the history is whole or the app never had more lines.
    #[test]
    fn a_short_history_is_said_once_with_why() {
        let ring = HistoryCut::Ring { lines: 1500, bytes: 768_000 };
        let window = HistoryCut::Window { messages: 20000 };
        let say = |asked, got, cuts: &[HistoryCut]| {
            short_history_line("api-default", asked, got, cuts, 0).map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        let head = "1970-01-01T00:00:00.000000Z api-default akkeris/logshuttle: History: ";
        for (asked, got, cuts, want) in [
            (100, 100, &[ring][..], None),
            (100, 40, &[][..], None),
            (0, 0, &[window][..], None),
            (
                100,
                40,
                &[ring][..],
                Some(
                    "40 of the 100 lines asked for, from as far back as this logshuttle keeps an app's lines (its last 1500 lines or 768000 bytes, logshuttle.history_lines).\n",
                ),
            ),
            (
                10,
                0,
                &[window][..],
                Some(
                    "0 of the 10 lines asked for, from as far back as a session reads the app's Kafka partition (its newest 20000 messages, logshuttle.session_history_messages).\n",
                ),
            ),
            (
                10,
                3,
                &[ring, HistoryCut::Retention][..],
                Some(
                    "3 of the 10 lines asked for, from as far back as this logshuttle keeps an app's lines (its last 1500 lines or 768000 bytes, logshuttle.history_lines) and the topic keeps messages (its retention removed older ones).\n",
                ),
            ),
        ] {
            assert_eq!(say(asked, got, cuts), want.map(|w| format!("{head}{w}")), "{asked} {got} {cuts:?}");
        }
    }

    /// A ring that let a line of the app go says so; one that never did, or another app's,
    /// does not.
    #[test]
    fn a_ring_knows_when_it_let_lines_go() {
        let cut = |h: &History, app: &str| {
            let g = SessionGrant { app: app.parse().unwrap(), ..grant(10, None, None) };
            h.open(&g).2
        };
        let h = History::new(3, usize::MAX);
        let line = |app: &str| LogEvent::builder(app, "app").message(b"x");
        h.record(&[line("api-default"), line("api-default"), line("api-default"), line("web-default")]);
        assert_eq!(cut(&h, "api-default"), None);
        h.record(&[line("api-default")]);
        assert_eq!(cut(&h, "api-default"), Some(HistoryCut::Ring { lines: 3, bytes: usize::MAX }));
        assert_eq!(cut(&h, "web-default"), None);
        let none = History::new(0, usize::MAX);
        none.record(&[line("api-default")]);
        assert_eq!(cut(&none, "api-default"), Some(HistoryCut::Ring { lines: 0, bytes: usize::MAX }));
        // Long lines: the bytes let the first go while the lines still fit.
        let small = History::new(10, 2500);
        let long = LogEvent::builder("api-default", "app").message(&[b'x'; 1000]);
        small.record(&[long.clone(), long.clone()]);
        assert_eq!(cut(&small, "api-default"), None);
        small.record(&[long]);
        assert_eq!(cut(&small, "api-default"), Some(HistoryCut::Ring { lines: 10, bytes: 2500 }));
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
