//! Real peers for Wharf's tests: the `wharf` binary as a child process, a tansu Kafka broker,
//! HTTP backends that record what they receive, an HTTP/HTTPS client, and syslog receivers
//! that check every frame with a strict RFC 5424 parser. Nothing here fakes a component Wharf
//! talks to; everything speaks the real protocol over loopback sockets.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

pub mod backend;
pub mod certs;
pub mod client;
pub mod logplex;
pub mod postgres;
pub mod rfc5424;
pub mod rsyslog;
pub mod syslog;
pub mod tansu;
pub mod wharf;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory under the system's temporary directory.
    pub fn new(prefix: &str) -> TempDir {
        // Tests run in parallel threads, which can read the same clock value: a counter keeps
        // their directories apart.
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n: u64 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{made}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
