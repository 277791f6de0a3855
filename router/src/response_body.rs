//! Response bodies: the dyno's, passed through while counting bytes, or one the router wrote.
//! When a response ends (or the client goes away), its access line goes to the app's logs and
//! its connection to the dyno back to the pool.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::access_log::AccessLog;
use crate::dyno_client::DynoConnection;
use crate::error::{BodyError, Code};
use crate::http1::decode::BodyLength;
use crate::pool;
use crate::state::RouterState;

/// A response body.
#[derive(Debug)]
pub enum ProxyBody {
    /// A body the router wrote.
    Full(Option<Bytes>),
    /// The dyno's body.
    Dyno(Box<DynoBody>),
}

impl ProxyBody {
    /// A body from text or bytes.
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(b.into()))
    }
}

/// A dyno's response body on its way to the client, read from the dyno's connection as the
/// client's side asks for it.
pub struct DynoBody {
    /// The connection, until the body ends: then back to the pool, or closed.
    conn: Option<DynoConnection>,
    /// How the body's length is known, and how much is still to come.
    length: BodyLength,
    /// Whether the dyno keeps the connection for another request once the body is read.
    keep_alive: bool,
    /// Runs while the dyno sends nothing; when it fires, the response is cut off (H15).
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes passed on so far.
    bytes: u64,
    /// The access line, until it is written.
    log: Option<AccessLog>,
    /// For the settings, the pool and the log bus.
    shared: Arc<RouterState>,
}

impl std::fmt::Debug for DynoBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynoBody").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl DynoBody {
    /// The body of a response whose head was read from `conn`: `length` and `keep_alive` from
    /// the head, `log` to write when it ends.
    pub(crate) fn wrap(
        conn: DynoConnection,
        length: BodyLength,
        keep_alive: bool,
        log: AccessLog,
        shared: Arc<RouterState>,
    ) -> ProxyBody {
        let mut body = DynoBody { conn: Some(conn), length, keep_alive, idle: None, bytes: 0, log: Some(log), shared };
        if length.is_done() {
            body.finish(true);
        }
        ProxyBody::Dyno(Box::new(body))
    }

    /// Ends the body: the connection goes back to the pool when the body was read whole and the
    /// dyno keeps it, and the access line is written (H27 when the client left early).
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

impl DynoBody {
    /// Ends a body the dyno's connection failed in the middle of. The head has gone, so the
    /// client can only be cut off (without the last chunk, or short of the length); the access
    /// line says why: a body that does not decode (H17) or a connection that ended (H18). Out
    /// of line and cold, so that the path of every body that ends well stays in one piece.
    #[cold]
    #[inline(never)]
    fn cut_off(&mut self, e: std::io::Error) -> BodyError {
        let code = if e.kind() == std::io::ErrorKind::InvalidData { Code::H17 } else { Code::H18 };
        if let Some(log) = &mut self.log {
            tracing::warn!(app = %log.app, code = code.as_str(), error = %e, bytes = self.bytes, "a dyno's response body was cut off");
            log.code = Some(code);
        }
        self.finish(false);
        e.into()
    }
}

impl Drop for DynoBody {
    fn drop(&mut self) {
        if self.log.is_some() {
            self.finish(false);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Dyno(u) => {
                let Some(conn) = u.conn.as_mut() else {
                    return Poll::Ready(None);
                };
                let polled = match conn.poll_body(&mut u.length, cx) {
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
                        if u.length.is_done() {
                            u.finish(true);
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(u.cut_off(e)))),
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
            ProxyBody::Dyno(u) => u.length.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Dyno(u) => match u.length {
                BodyLength::Empty => SizeHint::with_exact(0),
                BodyLength::Remaining(n) => SizeHint::with_exact(n),
                BodyLength::Chunked(_) | BodyLength::UntilClose => SizeHint::default(),
            },
        }
    }
}
