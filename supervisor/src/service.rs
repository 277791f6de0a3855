//! The loopback service: a stable port per supervised web app, for the life of the supervisor,
//! that forwards each TCP connection to one of the app's healthy web dynos, round robin.
//!
//! Other apps in the app's space reach it at `NAME_SERVICE_HOST:NAME_SERVICE_PORT` (the names
//! Kubernetes gives a service, which Akkeris apps expect) whatever ports its dynos have.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A web app's loopback service; dropping it closes the port.
#[derive(Debug)]
pub(crate) struct LoopbackService {
    port: u16,
    dynos: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl LoopbackService {
    /// Opens a free port on 127.0.0.1 for `app` (its name, for log lines), forwarding to no
    /// dyno until [`LoopbackService::set_dynos`].
    ///
    /// # Errors
    ///
    /// When the port cannot be opened.
    pub(crate) async fn start(app: &str) -> std::io::Result<LoopbackService> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let dynos = Arc::new(Mutex::new(Vec::<SocketAddr>::new()));
        let task = tokio::spawn(forward_connections(listener, dynos.clone(), app.to_owned()));
        Ok(LoopbackService { port, dynos, task })
    }

    /// The service's port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the dynos new connections go to: the app's registered web dynos.
    pub(crate) fn set_dynos(&self, dynos: Vec<SocketAddr>) {
        *self.dynos.lock().expect("service lock") = dynos;
    }
}

impl Drop for LoopbackService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections for ever, handing each to the next dyno in turn; a connection that comes
/// while the app has no healthy dyno is closed.
async fn forward_connections(listener: TcpListener, dynos: Arc<Mutex<Vec<SocketAddr>>>, app: String) {
    let mut next = 0usize;
    let mut backoff = AcceptBackoff::new();
    loop {
        let mut client = backoff.accept(|| listener.accept()).await.0;
        let dyno = {
            let d = dynos.lock().expect("service lock");
            next = next.wrapping_add(1);
            (!d.is_empty()).then(|| d[next % d.len()])
        };
        let Some(dyno) = dyno else {
            tracing::debug!(app, "service has no healthy dyno; closing the connection");
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut to_dyno) = TcpStream::connect(dyno).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut to_dyno).await;
            }
        });
    }
}

/// The first pause after a failed `accept`.
const ACCEPT_RETRY_MIN: Duration = Duration::from_millis(50);
/// The longest pause between failed `accept`s, before jitter.
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

/// Retries a failed `accept` (out of file descriptors and the like, which persist for a while)
/// after a growing pause, as the router does, instead of spinning on it.
struct AcceptBackoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
}

impl AcceptBackoff {
    fn new() -> AcceptBackoff {
        let builder = ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(ACCEPT_RETRY_MIN)
            .with_max_delay(ACCEPT_RETRY_MAX)
            .without_max_times();
        AcceptBackoff { builder, delays: builder.build() }
    }

    /// Calls `accept` until it succeeds, pausing after each failure; a success resets the pause.
    async fn accept<T, F, Fut>(&mut self, mut accept: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::io::Result<T>>,
    {
        loop {
            match accept().await {
                Ok(accepted) => {
                    self.delays = self.builder.build();
                    return accepted;
                }
                Err(e) => {
                    let pause = self.delays.next().unwrap_or(ACCEPT_RETRY_MAX);
                    tracing::warn!(error = %e, ?pause, "service accept failed");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A dyno stand-in that answers every connection with `name` and closes it.
    async fn dyno(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
        addr
    }

    async fn ask(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn connections_go_to_the_dynos_round_robin_and_follow_changes() {
        let service = LoopbackService::start("api").await.unwrap();
        assert_eq!(ask(service.port()).await, "", "no dyno yet: the connection is closed");
        let (a, b, c) = (dyno("a").await, dyno("b").await, dyno("c").await);
        service.set_dynos(vec![a, b]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(ask(service.port()).await);
        }
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "b"]);
        service.set_dynos(vec![c]);
        assert_eq!(ask(service.port()).await, "c");
    }

    #[tokio::test]
    async fn dropping_the_service_closes_its_port() {
        let service = LoopbackService::start("api").await.unwrap();
        let port = service.port();
        drop(service);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_back_off_instead_of_spinning_and_a_success_resets_the_pause() {
        let mut backoff = AcceptBackoff::new();
        let start = tokio::time::Instant::now();
        let mut calls = 0u32;
        let got = backoff
            .accept(|| {
                calls += 1;
                let n = calls;
                async move { if n <= 5 { Err(std::io::Error::other("too many open files")) } else { Ok(n) } }
            })
            .await;
        assert_eq!(got, 6);
        // Five pauses of at least 50, 100, 200, 400 and 800 ms (jitter only adds).
        assert!(start.elapsed() >= Duration::from_millis(1550), "{:?}", start.elapsed());
        // Pauses are capped: 1 s, plus at most as much again of jitter.
        assert!(start.elapsed() <= Duration::from_millis(2 * 1550), "{:?}", start.elapsed());

        let start = tokio::time::Instant::now();
        let mut failed = false;
        backoff
            .accept(|| {
                let first = !failed;
                failed = true;
                async move { if first { Err(std::io::Error::other("again")) } else { Ok(()) } }
            })
            .await;
        assert!(start.elapsed() < Duration::from_millis(101), "back to the first pause: {:?}", start.elapsed());
    }
}
