//! Response bodies: the dyno's, passed through while counting bytes, or one the router wrote.
//! When a response ends (or the client goes away), its access log line goes to the app's logs
//! and its upstream connection back to the pool.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::Shared;
use crate::error::Code;
use crate::pool;
use crate::upstream::{Framing, UpConn};

/// What the access log line says about one request.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub(crate) app: Arc<str>,
    pub(crate) stats: Arc<crate::metrics::AppStats>,
    pub(crate) site: Option<Arc<str>>,
    pub(crate) host: String,
    pub(crate) fwd: http::HeaderValue,
    pub(crate) method: http::Method,
    pub(crate) path: String,
    pub(crate) request_id: String,
    /// The dyno the request went to (its name is logged).
    pub(crate) dyno: Option<Arc<crate::table::Upstream>>,
    pub(crate) status: u16,
    pub(crate) started: Instant,
    /// The wall-clock time at `started`, in microseconds since the Unix epoch: the line's time
    /// is this plus the request's duration, so the wall clock is read once per request.
    pub(crate) started_micros: i64,
    pub(crate) connect_ms: u64,
    pub(crate) service_ms: u64,
    pub(crate) code: Option<Code>,
}

impl AccessLog {
    /// Formats the line and puts it on the bus, in the app's stream (and the site's); the
    /// request ended at `now`.
    pub(crate) fn emit(self, shared: &Arc<Shared>, bytes: u64, now: Instant) {
        let took = now.saturating_duration_since(self.started);
        let total = took.as_millis() as u64;
        // Built by hand: formatting machinery was a measurable share of a request's cost.
        let mut line = String::with_capacity(224 + self.path.len());
        let mut num = itoa::Buffer::new();
        if let Some(code) = self.code {
            line.push_str("at=error code=");
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
        let micros = self.started_micros.saturating_add(i64::try_from(took.as_micros()).unwrap_or(i64::MAX));
        let mut event = wharf_bus::LogEvent::builder(&self.app, "akkeris/router").time_micros(micros);
        if let Some(site) = &self.site {
            event = event.site(site);
        }
        crate::batch::publish(shared, event.message(line.as_bytes()));
        shared.metrics.record(self.status, total);
        self.stats.record(self.status);
    }
}

/// A response body.
#[derive(Debug)]
pub enum ProxyBody {
    /// A body the router wrote.
    Full(Option<Bytes>),
    /// The dyno's body.
    Upstream(Box<UpstreamBody>),
}

impl ProxyBody {
    /// A body from text or bytes.
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(b.into()))
    }
}

/// A dyno's response body on its way to the client, read from the dyno's connection as the
/// client's side asks for it.
pub struct UpstreamBody {
    /// The connection, until the body ends: then back to the pool, or closed.
    conn: Option<UpConn>,
    framing: Framing,
    /// Whether the dyno keeps the connection for another request once the body is read.
    keep_alive: bool,
    /// Runs while the dyno sends nothing; when it fires, the response is cut off (H15).
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    bytes: u64,
    log: Option<AccessLog>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl UpstreamBody {
    pub(crate) fn wrap(
        conn: UpConn,
        framing: Framing,
        keep_alive: bool,
        log: AccessLog,
        shared: Arc<Shared>,
    ) -> ProxyBody {
        let mut body =
            UpstreamBody { conn: Some(conn), framing, keep_alive, idle: None, bytes: 0, log: Some(log), shared };
        if framing.is_done() {
            body.finish(true);
        }
        ProxyBody::Upstream(Box::new(body))
    }

    fn finish(&mut self, complete: bool) {
        // One clock read serves the pool and the log line.
        let now = Instant::now();
        if let Some(conn) = self.conn.take()
            && complete
            && self.keep_alive
        {
            pool::checkin(conn, now);
        }
        if let Some(mut log) = self.log.take() {
            if !complete && log.code.is_none() {
                log.code = Some(Code::H27);
            }
            log.emit(&self.shared, self.bytes, now);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.log.is_some() {
            self.finish(false);
        }
    }
}

/// Why a response body ended early.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(u) => {
                let Some(conn) = u.conn.as_mut() else {
                    return Poll::Ready(None);
                };
                let polled = match conn.poll_body(&mut u.framing, cx) {
                    Poll::Ready(p) => p,
                    Poll::Pending => {
                        // The idle timer starts the first time the dyno makes us wait, and
                        // restarts with every frame; small responses never arm it.
                        let window = u.shared.settings.idle_timeout;
                        let timer = u.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
                        ready!(timer.as_mut().poll(cx));
                        if let Some(log) = &mut u.log {
                            log.code = Some(Code::H15);
                        }
                        u.finish(false);
                        return Poll::Ready(Some(Err("the dyno's response was idle for too long".into())));
                    }
                };
                if let Some(timer) = &mut u.idle {
                    timer.as_mut().reset(tokio::time::Instant::now() + u.shared.settings.idle_timeout);
                }
                match polled {
                    Some(Ok(data)) => {
                        u.bytes += data.len() as u64;
                        if u.framing.is_done() {
                            u.finish(true);
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Some(Err(e)) => {
                        u.finish(false);
                        Poll::Ready(Some(Err(e.into())))
                    }
                    None => {
                        u.finish(true);
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.framing.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => match u.framing {
                Framing::Empty => SizeHint::with_exact(0),
                Framing::Length(n) => SizeHint::with_exact(n),
                Framing::Chunked(_) | Framing::Close => SizeHint::default(),
            },
        }
    }
}
