//! The dyno connection pool follows the routing table: when a release replaces a dyno (a new
//! one on a new port), the idle connection a worker kept to the old one is closed, rather than
//! held to a dead address until the process ends.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wharf_domain::{AppSpec, DynoSpec, Snapshot, new_id};
use wharf_testkit::client::{self, Req};
use wharf_testkit::{TempDir, eventually};

/// A dyno that answers every request on a connection with `ok` and keeps the connection open;
/// it reports each connection it accepts and each that the router closes.
struct Dyno {
    port: u16,
    closed: mpsc::UnboundedReceiver<()>,
    accepted: mpsc::UnboundedReceiver<()>,
}

async fn dyno() -> Dyno {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let (accepted_tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = accepted_tx.send(());
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            let _ = closed.send(());
                            return;
                        }
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // One answer per complete request head (these requests have no body).
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            let _ = closed.send(());
                            return;
                        }
                    }
                }
            });
        }
    });
    Dyno { port, closed, accepted }
}

fn snapshot(version: u64, dyno_port: u16) -> Snapshot {
    Snapshot {
        version,
        apps: vec![AppSpec {
            id: new_id(),
            key: "api-default".parse().unwrap(),
            internal: false,
            maintenance: None,
            web_dynos: vec![DynoSpec {
                name: "web.1".parse().unwrap(),
                host: "127.0.0.1".parse().unwrap(),
                port: dyno_port,
            }],
        }],
        ..Snapshot::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_dynos_idle_connection_is_closed() {
    let dir = TempDir::new("pool");
    let (mut old, mut new) = (dyno().await, dyno().await);
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(snapshot(1, old.port)));
    // One worker, so that both requests meet the same pool.
    let (router, _bus) = support::start_router(dir.path(), 1, rx).await;
    let addr = router.addrs().http;
    let get = || async move {
        let r = client::send(addr, None, &Req::get("api-default.localhost", "/")).await.unwrap();
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    };

    // The first request leaves its connection to the old dyno idle in the worker's pool.
    get().await;
    old.accepted.recv().await.unwrap();
    get().await;
    assert!(old.accepted.try_recv().is_err(), "the second request reused the pooled connection");
    assert!(old.closed.try_recv().is_err(), "the pooled connection is still open");

    // A release replaces the dyno.
    tx.send_replace(Arc::new(snapshot(2, new.port)));
    eventually(Duration::from_secs(10), "the router to serve version 2", || {
        let v = router.version();
        async move { (v == 2).then_some(()) }
    })
    .await;
    get().await;
    new.accepted.recv().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), old.closed.recv())
        .await
        .expect("the old dyno's idle connection is closed once the worker serves the new table")
        .unwrap();
    assert!(new.closed.try_recv().is_err(), "the new dyno's connection stays pooled");
    router.shutdown().await;
}
