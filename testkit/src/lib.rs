//! Real peers for Wharf's tests: the `wharf` binary as a child process, a tansu Kafka broker,
//! HTTP servers standing in for web dynos that record what they receive, webhook receivers and
//! file hosts (`http_peer`), an HTTP/HTTPS client, and syslog receivers
//! that check every frame with a strict RFC 5424 parser. Nothing here fakes a component Wharf
//! talks to; everything speaks the real protocol over loopback sockets.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

pub mod certs;
pub mod client;
pub mod dyno_server;
pub mod http_peer;
pub mod logplex;
pub mod nginx;
pub mod numbered;
pub mod postgres;
pub mod rfc5424;
pub mod rsyslog;
pub mod syslog;
pub mod tansu;
pub mod wharf;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// A new, empty directory under the system's temporary directory, removed when dropped:
/// `tempfile`'s, named after the test that made it (`PREFIX-XXXXXX`) so a leftover says whose it is.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> TempDir {
        TempDir(tempfile::Builder::new().prefix(&format!("{prefix}-")).tempdir().expect("temporary directory"))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`. For waiting on
/// a condition another process makes true, never for waiting a fixed time.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port, for programs that need one on their command line.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
