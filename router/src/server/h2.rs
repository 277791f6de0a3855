//! HTTP/2 connections, served by hyper: its server drives the connection, and each request goes
//! through the same proxy as HTTP/1.1's, with header maps built at this edge only.

use std::convert::Infallible;
use std::sync::Arc;

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

/// Drives hyper's HTTP/2 connection until it ends; on shutdown, asks it to finish the requests
/// in flight and close.
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
    let svc = service_fn(move |req| handle(req, conn.clone(), shared.clone()));
    let c = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(c);
    let result = tokio::select! {
        r = c.as_mut() => r,
        // The guard `wait_for` returns must not live across the await below.
        () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
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
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
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
