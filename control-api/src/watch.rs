//! The data planes' side of the feed: [`follow`] keeps a router or logshuttle on another
//! machine up to date with the control API's snapshots (`GET /v1/snapshot/watch`, served by
//! `http::snapshot`), and [`report_verdicts`] sends a router's canary aborts back
//! (`POST /v1/canary-verdicts`).
//!
//! The watch stream is newline-delimited JSON: each line is a whole snapshot, never a delta, so
//! a follower that missed versions only needs the newest line; an empty line is the server's
//! heartbeat. Both clients retry with exponential backoff and jitter while the API is away.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;
use tokio::sync::watch;
use wharf_domain::{CanaryVerdict, Snapshot};

/// The clients' retry delays: from 100 ms, doubling up to 10 s, each with up to as much again
/// of random jitter so that many followers do not reconnect in step, and never giving up.
/// Building a new one starts again from 100 ms.
fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// How long a follower waits for a line or heartbeat before it reconnects: over three of the
/// server's heartbeats ([`crate::http::HEARTBEAT`]).
const SILENCE: Duration = Duration::from_secs(35);

/// Why a control API URL cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Not `http://host:port`.
    #[error("control api url must look like http://host:port, got {0:?}")]
    Url(String),
}

/// The control API a data plane follows: its address (`host:port`, plain HTTP) and the bearer
/// token it sends (the admin token or the data-plane token).
#[derive(Debug, Clone)]
pub struct ControlApiUrl {
    authority: String,
    token: String,
}

impl ControlApiUrl {
    /// The control API at `url` (`http://host:port`, a trailing `/` allowed), with `token`.
    ///
    /// # Errors
    ///
    /// [`FollowError::Url`] when `url` is not of that form (another scheme, a path).
    pub fn new(url: &str, token: &str) -> Result<ControlApiUrl, FollowError> {
        let authority = url
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| FollowError::Url(url.to_owned()))?;
        Ok(ControlApiUrl { authority: authority.to_owned(), token: token.to_owned() })
    }
}

/// Reports a router's canary aborts to the control API, each until it is taken (or refused as
/// malformed), with backoff while the API is away, so that every router follows the first
/// router to abort.
pub async fn report_verdicts(
    control_api: ControlApiUrl,
    mut verdicts: tokio::sync::mpsc::UnboundedReceiver<CanaryVerdict>,
) {
    while let Some(verdict) = verdicts.recv().await {
        let mut delays = backoff();
        loop {
            match post_verdict(&control_api, &verdict).await {
                Ok(()) => break,
                Err((e, retry)) => {
                    tracing::warn!(canary = %verdict.id, error = %e, retry, "cannot report a canary abort");
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(delays.next().expect("backoff without a limit")).await;
                }
            }
        }
    }
}

/// One attempt; the error says whether another may succeed.
async fn post_verdict(control_api: &ControlApiUrl, verdict: &CanaryVerdict) -> Result<(), (String, bool)> {
    let retry = |e: String| (e, true);
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&control_api.authority))
        .await
        .map_err(|_| retry("connect timed out".into()))?
        .map_err(|e| retry(format!("connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| retry(format!("handshake: {e}")))?;
    tokio::spawn(conn);
    let body = serde_json::to_vec(verdict).map_err(|e| (e.to_string(), false))?;
    let req = http::Request::post("/v1/canary-verdicts")
        .header(header::HOST, &control_api.authority)
        .header(header::AUTHORIZATION, format!("Bearer {}", control_api.token))
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
pub fn follow(
    control_api: ControlApiUrl,
    cache: PathBuf,
) -> (watch::Receiver<Arc<Snapshot>>, tokio::task::JoinHandle<()>) {
    let start = load_cached(&cache).unwrap_or_default();
    if start.version > 0 {
        tracing::info!(version = start.version, "serving the kept snapshot until the control api answers");
    }
    let (tx, rx) = watch::channel(Arc::new(start));
    let task = tokio::spawn(async move {
        // One backoff for the task's life: like the loop it replaced, it is not reset when a
        // connection succeeds, so a flapping API is not hammered.
        let mut delays = backoff();
        loop {
            let delay = delays.next().expect("backoff without a limit");
            match watch_once(&control_api, &tx, &cache).await {
                Ok(()) => tracing::warn!(api = %control_api.authority, "control api closed the watch stream"),
                Err(e) => {
                    tracing::warn!(api = %control_api.authority, error = %e, retry_in = ?delay, "control api unreachable; serving the last good snapshot")
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
        }
    });
    (rx, task)
}

/// One connection's worth of following; returns when the stream ends or fails.
async fn watch_once(
    control_api: &ControlApiUrl,
    tx: &watch::Sender<Arc<Snapshot>>,
    cache: &Path,
) -> Result<(), String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&control_api.authority))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get("/v1/snapshot/watch")
        .header(header::HOST, &control_api.authority)
        .header(header::AUTHORIZATION, format!("Bearer {}", control_api.token))
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
