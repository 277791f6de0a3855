//! HTTP/2 connections, served by hyper: its server drives the connection, and each request goes
//! through the same proxy as HTTP/1.1's, with header maps built at this edge only. A connection
//! with no request in flight that stays silent for the header timeout (after its preface, or
//! without ever sending one) is asked to end with GOAWAY, as an idle HTTP/1.1 one is closed.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::client::ClientConnection;
use crate::deadline::Deadline;
use crate::fields::Fields;
use crate::forwarding::{HopByHop, VIA_VALUE};
use crate::proxy::{self, ClientRequest, Reply};
use crate::response_body::ProxyBody;
use crate::state::RouterState;

/// Drives hyper's HTTP/2 connection until it ends; on shutdown, or once it has idled for the
/// header timeout, asks it to finish the requests in flight and close (GOAWAY). One that then
/// idles as long again is dropped.
pub(super) async fn serve<IO>(
    io: IO,
    conn: Arc<ClientConnection>,
    shared: Arc<RouterState>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // HPACK counts 32 bytes of overhead per field; the limit covers the same fields that
    // HTTP/1.1's does.
    let list = shared.settings.max_header_bytes + 32 * shared.settings.max_headers;
    b.timer(TokioTimer::new()).max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX));
    let activity = Arc::new(Activity::new());
    let idle_limit = shared.settings.header_timeout;
    let in_flight = activity.clone();
    let svc = service_fn(move |req| {
        let guard = InFlight::enter(&in_flight);
        let (conn, shared) = (conn.clone(), shared.clone());
        async move {
            let response = handle(req, conn, shared).await;
            drop(guard);
            response
        }
    });
    let c = b.serve_connection(TokioIo::new(Watched { io, activity: activity.clone() }), svc);
    tokio::pin!(c);
    let result = tokio::select! {
        r = c.as_mut() => r,
        // The guard `wait_for` returns must not live across the await below.
        () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            c.as_mut().graceful_shutdown();
            c.await
        }
        () = activity.idle(idle_limit) => {
            c.as_mut().graceful_shutdown();
            activity.touch();
            tokio::select! {
                r = c.as_mut() => r,
                () = activity.idle(idle_limit) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// When a connection last moved bytes, and how many of its requests are in flight.
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last read or write that moved bytes.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity { opened: Instant::now(), last: AtomicU64::new(0), in_flight: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Returns once no request is in flight and no byte has moved for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let since = self.opened.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            if since >= limit && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(since).max(Duration::from_millis(100))).await;
        }
    }
}

/// A request in flight on a connection, counted while its handler runs.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client's transport that notes when bytes move on it.
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves an HTTP/2 request through hyper's server.
async fn handle(
    req: Request<Incoming>,
    conn: Arc<ClientConnection>,
    shared: Arc<RouterState>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let fields = Fields::from_map(&parts.headers);
    let request = ClientRequest {
        method: &parts.method,
        version: parts.version,
        authority: parts.uri.authority().map(|a| a.as_str()),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        fields: &fields,
        has_body: !http_body::Body::is_end_stream(&body),
    };
    let mut first_byte = Deadline::new(shared.settings.first_byte_timeout);
    let reply = proxy::handle(&request, Some(&mut body), &conn, &shared, &mut first_byte).await;
    let (status, mut headers, body) = match reply {
        Reply::Router(o) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(o.content_type));
            if let Some(cache_control) = o.cache_control {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
            }
            if let Some(location) = o.location.and_then(|l| HeaderValue::try_from(l).ok()) {
                headers.insert(header::LOCATION, location);
            }
            (o.status, headers, ProxyBody::full(o.body))
        }
        Reply::Dyno(head, body) => {
            let hop = HopByHop::of(&head.fields);
            let mut headers = head.fields.to_map(|known, n| hop.contains(known, n)).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "a response field HTTP/2 cannot carry was left out");
                HeaderMap::new()
            });
            headers.append(header::VIA, VIA_VALUE.clone());
            (head.status, headers, body)
        }
        // Only an HTTP/1.1 request asks for an upgrade, and only such a request accepts a 101.
        Reply::Upgrade(..) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), ProxyBody::full("")),
    };
    if let Some(v) = conn.hsts(&shared.settings)
        && !headers.contains_key(header::STRICT_TRANSPORT_SECURITY)
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}
