//! The admin listener: Prometheus metrics at `/metrics` and health at `/healthz`, over plain
//! HTTP on the control runtime, apart from the workers that serve traffic.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::response_body::ProxyBody;
use crate::state::RouterState;

/// Serves the admin listener until the task is aborted.
pub(crate) async fn serve(listener: std::net::TcpListener, shared: Arc<RouterState>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin listener cannot start; metrics and health are unavailable");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&req, &shared)) }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// The answer to one request on the admin listener.
fn respond(req: &Request<Incoming>, shared: &RouterState) -> Response<ProxyBody> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut out = String::with_capacity(4096);
            let table = shared.table.load();
            let apps = table.apps().map(|a| (&*a.app, &*a.stats));
            shared.metrics.render(&mut out, apps, &shared.pool_stats, table.version);
            if let Some(more) = shared.more_metrics.get() {
                more(&mut out);
            }
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", out)
        }
        (&Method::GET | &Method::HEAD, "/healthz") => {
            let version = shared.table.load().version;
            (StatusCode::OK, "application/json", format!("{{\"status\":\"ok\",\"version\":{version}}}\n"))
        }
        (_, "/metrics" | "/healthz") => {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "use GET\n".to_owned())
        }
        _ => {
            (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "no such endpoint; try /metrics or /healthz\n".into())
        }
    };
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}
