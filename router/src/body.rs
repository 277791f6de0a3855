//! Response bodies: the dyno's, passed through while counting bytes, or one the router wrote.
//! When a response ends (or the client goes away), its access log line goes to the app's logs
//! and its upstream connection back to the pool.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::Shared;
use crate::error::Code;
use crate::pool;

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
    pub(crate) dyno: Option<Box<str>>,
    pub(crate) status: u16,
    pub(crate) started: Instant,
    pub(crate) connect_ms: u64,
    pub(crate) service_ms: u64,
    pub(crate) code: Option<Code>,
}

impl AccessLog {
    /// Formats the line and puts it on the bus, in the app's stream (and the site's).
    pub(crate) fn emit(self, shared: &Arc<Shared>, bytes: u64) {
        let total = self.started.elapsed().as_millis() as u64;
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
            line.push_str(dyno);
        }
        let mut event = wharf_bus::LogEvent::builder(&self.app, "akkeris/router");
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

/// A dyno's response body on its way to the client.
pub struct UpstreamBody {
    inner: Incoming,
    /// Runs while the dyno sends nothing; when it fires, the response is cut off (H15).
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    bytes: u64,
    log: Option<AccessLog>,
    /// The connection, returned to the pool once the body is read to the end.
    conn: Option<(SocketAddr, SendRequest<Incoming>)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl UpstreamBody {
    pub(crate) fn wrap(
        inner: Incoming,
        log: AccessLog,
        conn: (SocketAddr, SendRequest<Incoming>),
        shared: Arc<Shared>,
    ) -> ProxyBody {
        let mut body = UpstreamBody { inner, idle: None, bytes: 0, log: Some(log), conn: Some(conn), shared };
        if body.inner.is_end_stream() {
            body.finish(true);
        }
        ProxyBody::Upstream(Box::new(body))
    }

    fn finish(&mut self, complete: bool) {
        if complete && let Some((addr, sender)) = self.conn.take() {
            pool::checkin(addr, sender);
        }
        if let Some(mut log) = self.log.take() {
            if !complete && log.code.is_none() {
                log.code = Some(Code::H27);
            }
            log.emit(&self.shared, self.bytes);
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
                let polled = match Pin::new(&mut u.inner).poll_frame(cx) {
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
                let polled = polled.map(|r| r.map_err(BodyError::from));
                match &polled {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            u.bytes += data.len() as u64;
                        }
                        if u.inner.is_end_stream() {
                            u.finish(true);
                        }
                    }
                    Some(Err(_)) => u.finish(false),
                    None => u.finish(true),
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => u.inner.size_hint(),
        }
    }
}
