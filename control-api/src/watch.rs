//! The data planes' feed over HTTP: `GET /v1/snapshot` (the current snapshot) and
//! `GET /v1/snapshot/watch` (the current one, then every new version as it is published), for
//! routers and logshuttles on other machines. [`follow`] is the client side.
//!
//! The watch stream is newline-delimited JSON: each line is a whole snapshot, never a delta, so
//! a follower that missed versions only needs the newest line. An empty line every
//! [`HEARTBEAT`] tells the follower the connection is alive while nothing changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::watch;
use wharf_domain::{CanaryVerdict, Snapshot};

use crate::http::Json;
use crate::plane::ControlPlane;

/// How often the watch stream says it is alive when nothing changes.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a follower waits for a line or heartbeat before it reconnects.
const SILENCE: Duration = Duration::from_secs(35);

/// `GET /v1/snapshot`.
pub(crate) async fn snapshot(State(plane): State<Arc<ControlPlane>>) -> impl IntoResponse {
    let current = plane.subscribe().borrow().clone();
    Json((*current).clone())
}

fn line(snapshot: &Snapshot) -> Bytes {
    let mut out = serde_json::to_vec(snapshot).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// `GET /v1/snapshot/watch`.
pub(crate) async fn stream(State(plane): State<Arc<ControlPlane>>) -> Response {
    let mut rx = plane.subscribe();
    let first = line(&rx.borrow_and_update());
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(HEARTBEAT, rx.changed()).await {
            Err(_) => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"\n")), rx)),
            Ok(Err(_)) => None,
            Ok(Ok(())) => {
                let next = line(&rx.borrow_and_update());
                Some((Ok(next), rx))
            }
        }
    });
    let body = futures_util::StreamExt::chain(futures_util::stream::iter([Ok(first)]), rest);
    (
        [(header::CONTENT_TYPE, "application/x-ndjson"), (header::CACHE_CONTROL, "no-cache")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Why a control API URL cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Not `http://host:port`.
    #[error("control api url must look like http://host:port, got {0:?}")]
    Url(String),
}

/// Where a follower connects.
#[derive(Debug, Clone)]
pub struct Upstream {
    authority: String,
    token: String,
}

impl Upstream {
    /// The control API at `url` (`http://host:port`), with the admin token.
    pub fn new(url: &str, token: &str) -> Result<Upstream, FollowError> {
        let authority = url
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| FollowError::Url(url.to_owned()))?;
        Ok(Upstream { authority: authority.to_owned(), token: token.to_owned() })
    }
}

/// Reports a router's canary aborts to the control API, each until it is taken (or refused as
/// malformed), with backoff while the API is away, so that every router follows the first
/// router to abort.
pub async fn report_verdicts(upstream: Upstream, mut verdicts: tokio::sync::mpsc::UnboundedReceiver<CanaryVerdict>) {
    while let Some(verdict) = verdicts.recv().await {
        let mut backoff = Duration::from_millis(100);
        loop {
            match post_verdict(&upstream, &verdict).await {
                Ok(()) => break,
                Err((e, retry)) => {
                    tracing::warn!(canary = %verdict.id, error = %e, retry, "cannot report a canary abort");
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(backoff + backoff.mul_f64(fastrand::f64() * 0.5)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// One attempt; the error says whether another may succeed.
async fn post_verdict(upstream: &Upstream, verdict: &CanaryVerdict) -> Result<(), (String, bool)> {
    let retry = |e: String| (e, true);
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&upstream.authority))
        .await
        .map_err(|_| retry("connect timed out".into()))?
        .map_err(|e| retry(format!("connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| retry(format!("handshake: {e}")))?;
    tokio::spawn(conn);
    let body = serde_json::to_vec(verdict).map_err(|e| (e.to_string(), false))?;
    let req = http::Request::post("/v1/canary-verdicts")
        .header(header::HOST, &upstream.authority)
        .header(header::AUTHORIZATION, format!("Bearer {}", upstream.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)))
        .map_err(|e| (e.to_string(), false))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| retry("timed out".into()))?
        .map_err(|e| retry(format!("request: {e}")))?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        s if s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS => Err(retry(format!("answered {s}"))),
        s => Err((format!("answered {s}"), false)),
    }
}

/// Reads the snapshot kept at `path`, if there is a readable one.
pub fn load_cached(path: &Path) -> Option<Snapshot> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable snapshot copy");
            None
        }
    }
}

/// Keeps `snapshot` at `path`, replacing the old copy only once the new one is complete. The
/// copy holds certificates' keys and drain passwords: it is readable by its owner only.
fn store(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec(snapshot).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Follows the control API's watch stream from now on: the receiver starts with the copy kept
/// at `cache` (or an empty snapshot), and takes every newer version the API publishes, each
/// also written to `cache`. While the API is unreachable the receiver keeps the last good
/// snapshot, and the follower reconnects with backoff.
pub fn follow(upstream: Upstream, cache: PathBuf) -> (watch::Receiver<Arc<Snapshot>>, tokio::task::JoinHandle<()>) {
    let start = load_cached(&cache).unwrap_or_default();
    if start.version > 0 {
        tracing::info!(version = start.version, "serving the kept snapshot until the control api answers");
    }
    let (tx, rx) = watch::channel(Arc::new(start));
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match watch_once(&upstream, &tx, &cache).await {
                Ok(()) => tracing::warn!(api = %upstream.authority, "control api closed the watch stream"),
                Err(e) => {
                    tracing::warn!(api = %upstream.authority, error = %e, retry_in = ?backoff, "control api unreachable; serving the last good snapshot")
                }
            }
            if tx.is_closed() {
                return;
            }
            let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
    (rx, task)
}

/// One connection's worth of following; returns when the stream ends or fails.
async fn watch_once(upstream: &Upstream, tx: &watch::Sender<Arc<Snapshot>>, cache: &Path) -> Result<(), String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&upstream.authority))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get("/v1/snapshot/watch")
        .header(header::HOST, &upstream.authority)
        .header(header::AUTHORIZATION, format!("Bearer {}", upstream.token))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("the control api answered {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut partial = Vec::new();
    loop {
        let frame = match tokio::time::timeout(SILENCE, body.frame()).await {
            Err(_) => return Err(format!("nothing heard for {SILENCE:?}")),
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => frame.map_err(|e| format!("reading: {e}"))?,
        };
        let Some(data) = frame.data_ref() else { continue };
        partial.extend_from_slice(data);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            if line.len() <= 1 {
                continue;
            }
            let snapshot: Snapshot = serde_json::from_slice(&line).map_err(|e| format!("bad snapshot: {e}"))?;
            if snapshot.version > tx.borrow().version {
                if let Err(e) = store(cache, &snapshot) {
                    tracing::warn!(path = %cache.display(), error = %e, "cannot keep a copy of the snapshot");
                }
                tracing::debug!(version = snapshot.version, "snapshot from the control api");
                tx.send_replace(Arc::new(snapshot));
            }
        }
    }
}
