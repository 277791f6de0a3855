//! The data planes' side of the feed: [`follow`] keeps a router or logshuttle on another
//! machine up to date with the control API's snapshots (`GET /v1/snapshot/watch`, served by
//! `http::snapshot`), and [`report_verdicts`] sends a router's canary aborts back
//! (`POST /v1/canary-verdicts`).
//!
//! The watch stream is newline-delimited JSON: each line is a whole snapshot, never a delta, so
//! a follower that missed versions only needs the newest line; an empty line is the server's
//! heartbeat. Both clients follow one retry rule (`Retries`): after a failure they try the
//! next replica at once, and wait (exponential backoff with jitter) only when every replica in
//! the list has failed in a row; a good snapshot starts the backoff again from its first step.
//!
//! The feed holds secrets (certificates' keys for a router, drain credentials for a logshuttle),
//! so a data plane follows an `https://` control API, verified against the system's trust store
//! and the operator's `[feed] control_api_ca` ([`wharf_domain::trust`]); a plain `http://` one
//! only on a loopback address, unless the operator sets `[feed] allow_cleartext`
//! ([`ControlApiUrl::new`]). Each data plane sends its role's token and keeps only its role's
//! part, on disk too, in an owner-only directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;
use tokio::sync::watch;
use wharf_config::FeedConfig;
use wharf_domain::{CanaryVerdict, DataPlaneRole, Snapshot};

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

/// The retry rule of both feed clients, over a list of `replicas`: a failed attempt moves to
/// the next replica with no wait, until every replica has failed in a row; only then does the
/// client wait, each such round longer ([`backoff`]). A success (a snapshot taken, a verdict
/// accepted) forgets the failures and starts the backoff again from 100 ms, so that a replica
/// that dies after an earlier outage costs a follower one reconnection, not the grown delay
/// (FE25's F1: routers stayed stale 11 to 17 s). A replica that answers and then fails at once
/// is still not hammered: the next round of failures waits again.
struct Retries {
    replicas: usize,
    failed: usize,
    delays: ExponentialBackoff,
}

impl Retries {
    fn new(replicas: usize) -> Retries {
        Retries { replicas: replicas.max(1), failed: 0, delays: backoff() }
    }

    /// A success: the next failure moves on at once, and the next wait is the first step again.
    fn succeeded(&mut self) {
        self.failed = 0;
        self.delays = backoff();
    }

    /// A failure: `None` to try the next replica now, or how long to wait first when every
    /// replica has failed in a row.
    fn failed(&mut self) -> Option<Duration> {
        self.failed += 1;
        if self.failed < self.replicas {
            return None;
        }
        self.failed = 0;
        Some(self.delays.next().expect("backoff without a limit"))
    }
}

/// Why a control API URL cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Not `https://host[:port]` or `http://host[:port]`.
    #[error("control api url must look like https://host:port or http://host:port, got {0:?}")]
    Url(String),
    /// A plain `http://` URL whose host is not loopback, without `[feed] allow_cleartext`.
    #[error(
        "refusing to follow {0}: the feed carries private keys and credentials, so a control api on another \
         machine must be https:// (plain http:// only on a loopback address: 127.0.0.0/8, ::1, localhost); \
         to accept cleartext anyway on a network encrypted by other means, set [feed] allow_cleartext = true \
         (WHARF_FEED__ALLOW_CLEARTEXT=true)"
    )]
    Cleartext(String),
    /// `[feed] control_api_ca` cannot be read or holds no usable certificate.
    #[error("[feed] control_api_ca: {0}")]
    Ca(String),
}

/// The control API a data plane follows: where its replicas are, how to reach each (plain TCP
/// to a loopback address, or TLS verified against the system's trust store and the operator's
/// CA), the role it follows as, and that role's bearer token.
///
/// Several replicas (control APIs on one PostgreSQL database) may be named: the data plane
/// talks to one at a time and moves to the next after each failure (`fail_over`),
/// so that a dead replica costs a follower one reconnection, not the feed. Replicas publish the
/// same versions (the store's), so a follower that moves takes up where it was.
#[derive(Clone)]
pub struct ControlApiUrl {
    /// The replicas, in the order given; at least one.
    endpoints: Arc<[Endpoint]>,
    /// The index (modulo the count) of the replica in use, shared by the clones, so that the
    /// watch stream and the verdict reports move together.
    current: Arc<std::sync::atomic::AtomicUsize>,
    /// The index plus one of the replica whose snapshot was last taken on a stream still open,
    /// or 0 while none is: what `wharf_feed_following` shows.
    following: Arc<std::sync::atomic::AtomicUsize>,
    /// Set once any replica's stream has delivered a whole snapshot, and never unset: what
    /// [`ControlApiUrl::has_heard`] tells a data plane that must not start on nothing.
    heard: Arc<std::sync::atomic::AtomicBool>,
    /// How long the follower waits for a line, a heartbeat or an answer before it takes the
    /// replica for hung and moves on (`[feed] silence_timeout`).
    silence: Duration,
    role: DataPlaneRole,
    token: String,
}

/// One control API replica.
#[derive(Clone)]
struct Endpoint {
    /// `host:port`, as the URL writes it (IPv6 in brackets): dialled, and sent as `Host`.
    authority: String,
    /// The host alone, brackets removed: the TLS server name (a DNS name or an IP address).
    host: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for ControlApiUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| format!("{}://{}", if e.tls.is_some() { "https" } else { "http" }, e.authority))
            .collect();
        write!(f, "ControlApiUrl({}, {}, token ****)", urls.join(","), self.role)
    }
}

/// Whether `host` (brackets removed) is this machine by definition: a loopback address
/// (RFC 6890; an IPv4-mapped one too) or `localhost` (RFC 6761 section 6.3).
fn is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl ControlApiUrl {
    /// The control API at `urls`: one URL, or the replicas' URLs separated by commas, each
    /// `https://host[:port]` or `http://host[:port]` (a trailing `/` allowed; the port defaults
    /// to 443 and 80), followed as `role` with `token`, reached as `feed` says. The first is
    /// used first.
    ///
    /// # Errors
    ///
    /// [`FollowError::Url`] when a URL is not of that form (another scheme, a path, an empty
    /// item), [`FollowError::Cleartext`] for `http://` to a host that is not loopback unless
    /// `feed.allow_cleartext`, [`FollowError::Ca`] when `feed.control_api_ca` is unusable.
    pub fn new(urls: &str, role: DataPlaneRole, token: &str, feed: &FeedConfig) -> Result<ControlApiUrl, FollowError> {
        let endpoints = urls.split(',').map(|url| Endpoint::new(url.trim(), feed)).collect::<Result<Vec<_>, _>>()?;
        Ok(ControlApiUrl {
            endpoints: endpoints.into(),
            current: Arc::default(),
            following: Arc::default(),
            heard: Arc::default(),
            silence: feed.silence_timeout.0,
            role,
            token: token.to_owned(),
        })
    }

    /// The replica in use.
    fn endpoint(&self) -> &Endpoint {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i]
    }

    /// The replica in use, `host:port`.
    pub(crate) fn authority(&self) -> &str {
        &self.endpoint().authority
    }

    /// `POST path` with `body` as JSON and the role's token to the replica in use, on a fresh
    /// connection, waiting at most `timeout`; the answer's status, or why there is none. The
    /// data planes' reports (canary verdicts, requests in flight) go through it.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        timeout: Duration,
    ) -> Result<http::StatusCode, String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let req = http::Request::post(path)
            .header(header::HOST, &self.endpoint().authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(timeout, self.send(req)).await.map_err(|_| "timed out".to_owned())??;
        Ok(resp.status())
    }

    /// Moves to the next replica, after the one in use failed. With one URL, it stays.
    fn fail_over(&self) {
        if self.endpoints.len() > 1 {
            self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a control API has delivered a whole snapshot to [`follow`]'s task since it
    /// started (the kept copy does not count): false while every replica refuses this data
    /// plane (a wrong token or CA) or cannot be reached.
    pub fn has_heard(&self) -> bool {
        self.heard.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Appends the Prometheus text of `wharf_feed_following`: one series per replica, labelled
    /// `api="host:port"`, 1 for the replica whose watch stream this data plane follows now and
    /// 0 for the others (all 0 while none answers).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let following = self.following.load(std::sync::atomic::Ordering::Relaxed);
        out.push_str(
            "# HELP wharf_feed_following The control API replica whose snapshots this data plane follows (1).\n",
        );
        out.push_str("# TYPE wharf_feed_following gauge\n");
        for (i, e) in self.endpoints.iter().enumerate() {
            let _ = writeln!(out, "wharf_feed_following{{api=\"{}\"}} {}", e.authority, u8::from(following == i + 1));
        }
    }
}

impl Endpoint {
    /// One replica's URL, checked as [`ControlApiUrl::new`] says.
    fn new(url: &str, feed: &FeedConfig) -> Result<Endpoint, FollowError> {
        let bad = || FollowError::Url(url.to_owned());
        let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(bad()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(bad());
        }
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                if !after.is_empty() && !after.starts_with(':') {
                    return Err(bad());
                }
                (host, after.strip_prefix(':'))
            }
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?,
            None if https => 443,
            None => 80,
        };
        // An IPv6 address is written in brackets (RFC 3986 section 3.2.2), and only it.
        let bracketed = rest.starts_with('[');
        if host.is_empty()
            || bracketed != host.contains(':')
            || (bracketed && host.parse::<std::net::Ipv6Addr>().is_err())
        {
            return Err(bad());
        }
        let authority = if rest.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        if !https && !is_loopback(host) && !feed.allow_cleartext {
            return Err(FollowError::Cleartext(format!("http://{authority}")));
        }
        let tls = if https { Some(connector(feed.control_api_ca.as_deref())?) } else { None };
        Ok(Endpoint { authority, host: host.to_owned(), tls })
    }
}

impl ControlApiUrl {
    /// The role this data plane follows the feed as.
    pub fn role(&self) -> DataPlaneRole {
        self.role
    }

    /// A connection to the control API, over TLS when the URL is `https://`, and an HTTP/1.1
    /// exchange of `req` on it.
    async fn send<B>(&self, req: http::Request<B>) -> Result<http::Response<hyper::body::Incoming>, String>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let endpoint = self.endpoint();
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&endpoint.authority))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let Some(tls) = &endpoint.tls else {
            return exchange(hyper_util::rt::TokioIo::new(tcp), req).await;
        };
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("tls server name {:?}: {e}", endpoint.host))?;
        let stream = tokio::time::timeout(Duration::from_secs(10), tls.connect(name, tcp))
            .await
            .map_err(|_| "tls handshake timed out".to_owned())?
            .map_err(|e| wharf_domain::trust::handshake_error(&e, "the control api", "[feed] control_api_ca"))?;
        exchange(hyper_util::rt::TokioIo::new(stream), req).await
    }
}

/// A TLS connector verifying the control API against the system's trust store and the CAs in
/// `ca` ([`wharf_domain::trust`]).
fn connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, FollowError> {
    let configured = match ca {
        Some(ca) => wharf_domain::cert::read_ca(ca).map_err(|e| FollowError::Ca(e.to_string()))?,
        None => Vec::new(),
    };
    let roots = wharf_domain::trust::roots(&configured).map_err(|e| {
        FollowError::Ca(format!("{}: {e}", ca.map_or_else(Default::default, |ca| ca.display().to_string())))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FollowError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One HTTP/1.1 request on a fresh connection `io`.
async fn exchange<I, B>(io: I, req: http::Request<B>) -> Result<http::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| format!("request: {e}"))
}

/// Reports a router's canary aborts to the control API, each until it is taken (or refused as
/// malformed), with backoff while the API is away, so that every router follows the first
/// router to abort.
pub async fn report_verdicts(
    control_api: ControlApiUrl,
    mut verdicts: tokio::sync::mpsc::UnboundedReceiver<CanaryVerdict>,
) {
    while let Some(verdict) = verdicts.recv().await {
        let mut retries = Retries::new(control_api.endpoints.len());
        loop {
            match post_verdict(&control_api, &verdict).await {
                Ok(()) => break,
                Err((e, retry)) => {
                    let api = control_api.endpoint().authority.clone();
                    if !retry {
                        tracing::warn!(canary = %verdict.id, %api, error = %e, "the control api refused a canary abort");
                        break;
                    }
                    control_api.fail_over();
                    let wait = retries.failed();
                    let retry_in_ms = wait.map_or(0, |d| d.as_millis());
                    tracing::warn!(canary = %verdict.id, %api, error = %e, retry_in_ms, "cannot report a canary abort");
                    if let Some(wait) = wait {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }
}

/// One attempt; the error says whether another may succeed.
async fn post_verdict(control_api: &ControlApiUrl, verdict: &CanaryVerdict) -> Result<(), (String, bool)> {
    let status =
        control_api.post_json("/v1/canary-verdicts", verdict, Duration::from_secs(20)).await.map_err(|e| (e, true))?;
    match status {
        s if s.is_success() => Ok(()),
        s if s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS => Err((format!("answered {s}"), true)),
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
/// copy holds its role's secrets (certificates' keys, or drain passwords): it is readable by
/// its owner only, in a directory only its owner can enter ([`keep_dir`]).
fn store(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec(snapshot).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The directory under a data plane's data directory that holds its copy of the feed.
pub const KEPT_DIR: &str = "feed";

/// The copy's file name in [`KEPT_DIR`].
pub const KEPT_FILE: &str = "snapshot.json";

/// Makes `data_dir/feed` the owner-only home of the kept copy and returns the copy's path:
/// the directory is created with mode 0700 or tightened to it, an existing copy is tightened
/// to 0600, and a copy an earlier Wharf kept at `data_dir/snapshot.json` (in a directory others
/// may read) is moved in. The data directory itself is left as the operator made it.
///
/// # Errors
///
/// When the directory cannot be created or its or the copy's mode cannot be set.
pub fn keep_dir(data_dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = data_dir.join(KEPT_DIR);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let path = dir.join(KEPT_FILE);
    let old = data_dir.join(KEPT_FILE);
    if old.exists() {
        if path.exists() {
            std::fs::remove_file(&old)?;
        } else {
            std::fs::rename(&old, &path)?;
        }
        tracing::info!(from = %old.display(), to = %path.display(), "moved the kept snapshot into its owner-only directory");
    }
    if path.exists() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(path)
}

/// Follows the control API's watch stream from now on: the receiver starts with the copy kept
/// in `data_dir` (or an empty snapshot), and takes every newer version the API publishes, each
/// also kept. While the API is unreachable the receiver keeps the last good snapshot, and the
/// follower reconnects with backoff. The copy and every snapshot taken hold only this data
/// plane's role's part: the server cuts it, and the follower cuts again what it keeps, so that
/// a copy an older Wharf kept whole, or a control API that sent more, leaves no other secret.
///
/// # Errors
///
/// As [`keep_dir`].
pub fn follow(
    control_api: ControlApiUrl,
    data_dir: &Path,
) -> std::io::Result<(watch::Receiver<Arc<Snapshot>>, tokio::task::JoinHandle<()>)> {
    let cache = keep_dir(data_dir)?;
    let role = control_api.role;
    let start = match load_cached(&cache) {
        Some(kept) => {
            let part = kept.part_for(role);
            if part != kept {
                store(&cache, &part)?;
                tracing::info!(path = %cache.display(), %role, "cut the kept snapshot down to this role's part");
            }
            part
        }
        None => Snapshot::default(),
    };
    if start.version > 0 {
        tracing::info!(version = start.version, "serving the kept snapshot until the control api answers");
    }
    let (tx, rx) = watch::channel(Arc::new(start));
    let task = tokio::spawn(async move {
        let mut retries = Retries::new(control_api.endpoints.len());
        loop {
            let api = control_api.endpoint().authority.clone();
            let mut took = false;
            let result = watch_once(&control_api, &tx, &cache, &mut took).await;
            control_api.following.store(0, std::sync::atomic::Ordering::Relaxed);
            if took {
                retries.succeeded();
            }
            // The next attempt goes to the next replica, if there are several: the one that
            // failed may be gone for good.
            control_api.fail_over();
            let next = control_api.endpoint().authority.clone();
            let error = match result {
                Ok(()) => "the control api closed the watch stream".to_owned(),
                Err(e) => e,
            };
            if tx.is_closed() {
                return;
            }
            match retries.failed() {
                None => tracing::warn!(%api, %error, %next, "control api unreachable; trying the next replica now"),
                Some(wait) => {
                    let retry_in_ms = wait.as_millis();
                    tracing::warn!(
                        %api, %error, %next, retry_in_ms,
                        "no control api replica answers; serving the last good snapshot until one does"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    });
    Ok((rx, task))
}

/// One connection's worth of following; returns when the stream ends or fails. Sets `took`
/// once the stream has delivered a whole snapshot, and logs that this replica is followed.
async fn watch_once(
    control_api: &ControlApiUrl,
    tx: &watch::Sender<Arc<Snapshot>>,
    cache: &Path,
    took: &mut bool,
) -> Result<(), String> {
    let silence = control_api.silence;
    let req = http::Request::get("/v1/snapshot/watch")
        .header(header::HOST, &control_api.endpoint().authority)
        .header(header::AUTHORIZATION, format!("Bearer {}", control_api.token))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    // A hung replica may still complete TCP handshakes from the kernel's backlog: the answer's
    // head must come within the silence timeout too.
    let resp = tokio::time::timeout(silence, control_api.send(req))
        .await
        .map_err(|_| format!("no answer in {silence:?}"))??;
    if !resp.status().is_success() {
        return Err(format!("the control api answered {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut partial = Vec::new();
    loop {
        let frame = match tokio::time::timeout(silence, body.frame()).await {
            Err(_) => return Err(format!("nothing heard for {silence:?}")),
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
            let snapshot = snapshot.part_for(control_api.role);
            if !*took {
                *took = true;
                let i = control_api.current.load(std::sync::atomic::Ordering::Relaxed) % control_api.endpoints.len();
                control_api.following.store(i + 1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(api = %control_api.endpoint().authority, version = snapshot.version, "following control api");
            }
            if snapshot.version > tx.borrow().version {
                if let Err(e) = store(cache, &snapshot) {
                    tracing::warn!(path = %cache.display(), error = %e, "cannot keep a copy of the snapshot");
                }
                tracing::debug!(version = snapshot.version, "snapshot from the control api");
                tx.send_replace(Arc::new(snapshot));
            }
            control_api.heard.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use wharf_config::FeedConfig;
    use wharf_domain::DataPlaneRole;

    use super::{ControlApiUrl, FollowError};

    /// What `ControlApiUrl::new` makes of `url`: `Ok((authority, host, https))` or the
    /// refusal's kind.
    #[track_caller]
    fn check(url: &str, allow_cleartext: bool, want: Result<(&str, &str, bool), &str>) {
        let feed = FeedConfig { control_api_ca: None, allow_cleartext, ..FeedConfig::default() };
        let got = match ControlApiUrl::new(url, DataPlaneRole::Router, "token", &feed) {
            Ok(u) => Ok((u.endpoint().authority.clone(), u.endpoint().host.clone(), u.endpoint().tls.is_some())),
            Err(FollowError::Url(_)) => Err("url"),
            Err(FollowError::Cleartext(_)) => Err("cleartext"),
            Err(FollowError::Ca(_)) => Err("ca"),
        };
        let want = want.map(|(a, h, t)| (a.to_owned(), h.to_owned(), t));
        assert_eq!(got, want, "{url} (allow_cleartext = {allow_cleartext})");
    }

    #[test]
    fn urls_and_the_cleartext_rule() {
        check("https://control.internal:5000", false, Ok(("control.internal:5000", "control.internal", true)));
        check("https://control.internal/", false, Ok(("control.internal:443", "control.internal", true)));
        check("https://10.0.0.1:5000", false, Ok(("10.0.0.1:5000", "10.0.0.1", true)));
        check("https://[2001:db8::1]:5000", false, Ok(("[2001:db8::1]:5000", "2001:db8::1", true)));
        // Plain HTTP: loopback in every spelling, and nothing else unless allowed.
        check("http://127.0.0.1:5000/", false, Ok(("127.0.0.1:5000", "127.0.0.1", false)));
        check("http://127.9.9.9:5000", false, Ok(("127.9.9.9:5000", "127.9.9.9", false)));
        check("http://localhost", false, Ok(("localhost:80", "localhost", false)));
        check("http://LocalHost:1", false, Ok(("LocalHost:1", "LocalHost", false)));
        check("http://[::1]:5000", false, Ok(("[::1]:5000", "::1", false)));
        check("http://[::ffff:127.0.0.1]:5000", false, Ok(("[::ffff:127.0.0.1]:5000", "::ffff:127.0.0.1", false)));
        check("http://10.0.0.1:5000", false, Err("cleartext"));
        check("http://[::ffff:10.0.0.1]:5000", false, Err("cleartext"));
        check("http://localhost.example.com:5000", false, Err("cleartext"));
        check("http://0.0.0.0:5000", false, Err("cleartext"));
        check("http://10.0.0.1:5000", true, Ok(("10.0.0.1:5000", "10.0.0.1", false)));
        // Not a control API URL at all.
        for bad in [
            "10.0.0.1:5000",
            "ftp://127.0.0.1:5000",
            "http://",
            "https:///",
            "http://127.0.0.1:5000/v1",
            "http://127.0.0.1:5000?x",
            "http://user@127.0.0.1:5000",
            "http://127.0.0.1:0",
            "http://127.0.0.1:65536",
            "http://127.0.0.1:",
            "http://[::1",
            "http://[not-v6]:1",
            "http://[::1]x",
            "http://::1:5000",
            "http://[127.0.0.1]:5000",
        ] {
            check(bad, true, Err("url"));
        }
    }

    /// Replicas' URLs separated by commas: every one is checked as one URL is, and the
    /// follower moves through them in order, back to the first, after each failure.
    #[test]
    fn replica_lists() {
        let feed = FeedConfig { control_api_ca: None, allow_cleartext: false, ..FeedConfig::default() };
        let list = ControlApiUrl::new(
            "http://127.0.0.1:5000, https://control-b.internal:5000/,http://[::1]:5002",
            DataPlaneRole::Router,
            "t",
            &feed,
        )
        .unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(list.endpoint().authority.clone());
            list.fail_over();
        }
        assert_eq!(seen, ["127.0.0.1:5000", "control-b.internal:5000", "[::1]:5002", "127.0.0.1:5000"]);
        // A clone (the verdict reporter) follows the same replica as the watch.
        let clone = list.clone();
        clone.fail_over();
        assert_eq!(list.endpoint().authority, "[::1]:5002");
        let one = ControlApiUrl::new("http://127.0.0.1:5000", DataPlaneRole::Router, "t", &feed).unwrap();
        one.fail_over();
        assert_eq!(one.endpoint().authority, "127.0.0.1:5000", "one URL stays");
        for (bad, want) in [
            ("http://127.0.0.1:5000,", "url"),
            (",http://127.0.0.1:5000", "url"),
            ("http://127.0.0.1:5000,,http://127.0.0.1:5001", "url"),
            ("http://127.0.0.1:5000,ftp://127.0.0.1:5001", "url"),
            ("http://127.0.0.1:5000,http://10.0.0.2:5000", "cleartext"),
        ] {
            let got = match ControlApiUrl::new(bad, DataPlaneRole::Router, "t", &feed) {
                Ok(_) => "ok",
                Err(FollowError::Url(_)) => "url",
                Err(FollowError::Cleartext(_)) => "cleartext",
                Err(FollowError::Ca(_)) => "ca",
            };
            assert_eq!(got, want, "{bad}");
        }
    }

    /// The retry rule, as what each failure or success leads to: `now` (try the next replica
    /// at once) or `wait` (every replica failed in a row), for lists of one to three replicas.
    #[test]
    fn retries_move_on_at_once_and_wait_only_when_every_replica_failed() {
        #[track_caller]
        fn check(replicas: usize, events: &str, want: &str) {
            let mut r = super::Retries::new(replicas);
            let mut got = Vec::new();
            for e in events.split(' ') {
                match e {
                    "fail" => got.push(match r.failed() {
                        None => "now".to_owned(),
                        // The first step of the backoff is 100 ms plus up to as much jitter.
                        Some(d) if d <= std::time::Duration::from_millis(200) => "wait1".to_owned(),
                        Some(_) => "wait".to_owned(),
                    }),
                    "ok" => r.succeeded(),
                    _ => unreachable!(),
                }
            }
            assert_eq!(got.join(" "), want, "{replicas} replicas: {events}");
        }
        check(1, "fail fail fail fail fail ok fail", "wait1 wait wait wait wait wait1");
        check(2, "fail fail fail fail", "now wait1 now wait");
        // A success (a snapshot taken) forgets the failures and the grown backoff.
        check(
            2,
            "fail fail fail fail fail fail fail fail ok fail fail",
            "now wait1 now wait now wait now wait now wait1",
        );
        check(3, "fail fail fail fail ok fail fail fail", "now now wait1 now now now wait1");
    }

    #[test]
    fn an_unreadable_ca_is_refused() {
        let feed = FeedConfig {
            control_api_ca: Some("/nonexistent/ca.pem".into()),
            allow_cleartext: false,
            ..FeedConfig::default()
        };
        let err = ControlApiUrl::new("https://control.internal", DataPlaneRole::Logshuttle, "t", &feed).unwrap_err();
        assert!(matches!(err, FollowError::Ca(_)), "{err}");
        assert!(err.to_string().contains("[feed] control_api_ca"), "{err}");
        // Plain HTTP to loopback needs no CA, so a broken one does not stop it.
        assert!(ControlApiUrl::new("http://127.0.0.1:1", DataPlaneRole::Logshuttle, "t", &feed).is_ok());
    }
}
