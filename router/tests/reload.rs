//! Hot reload under load: while clients keep requests in flight on kept-alive connections, a
//! snapshot with 10,000 new sites replaces the routing table in one swap. No request fails,
//! and the new sites answer right after.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wharf_domain::{AppSpec, DynoSpec, RouteSpec, SiteSpec, Snapshot, new_id};
use wharf_testkit::client::{self, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::{TempDir, eventually};

fn snapshot(version: u64, dyno_port: u16, sites: usize) -> Snapshot {
    let app: wharf_domain::AppKey = "api-default".parse().unwrap();
    Snapshot {
        version,
        apps: vec![AppSpec {
            id: new_id(),
            key: app.clone(),
            internal: false,
            maintenance: None,
            web_dynos: vec![DynoSpec {
                name: "web.1".parse().unwrap(),
                host: "127.0.0.1".parse().unwrap(),
                port: dyno_port,
            }],
        }],
        drains: vec![],
        sites: (0..sites)
            .map(|i| SiteSpec {
                id: new_id(),
                domain: format!("site{i}.example.com").parse().unwrap(),
                internal: false,
                routes: vec![RouteSpec {
                    id: new_id(),
                    source_path: "/".parse().unwrap(),
                    target_path: "/".parse().unwrap(),
                    app: app.clone(),
                }],
            })
            .collect(),
        certs: vec![],
        canaries: vec![],
        images: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sites_arrive_in_one_swap_under_load_without_errors() {
    let dir = TempDir::new("reload");
    let backend = DynoServer::start("ok").await;
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(snapshot(1, backend.port(), 0)));
    let (router, _bus) = support::start_router(dir.path(), 2, rx).await;
    let addr = router.addrs().http;

    // Clients that each keep one connection busy, counting answers and failures.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get("/")
                    .header("host", "api-default.localhost")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                match sender.send_request(req).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        errors.push(format!("status {}", r.status()));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            errors
        }));
    }
    eventually(Duration::from_secs(10), "requests flowing before the swap", || {
        let n = ok.load(Ordering::Relaxed);
        async move { (n > 200).then_some(()) }
    })
    .await;

    tx.send_replace(Arc::new(snapshot(2, backend.port(), 10_000)));
    eventually(Duration::from_secs(30), "the router to serve version 2", || {
        let v = router.version();
        async move { (v == 2).then_some(()) }
    })
    .await;
    let at_swap = ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), "requests flowing after the swap", || {
        let n = ok.load(Ordering::Relaxed);
        async move { (n > at_swap + 200).then_some(()) }
    })
    .await;
    for host in ["site0.example.com", "site9999.example.com"] {
        let r = client::send(addr, None, &Req::get(host, "/")).await.unwrap();
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"), "{host}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.unwrap());
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests: {errors:?}");
    router.shutdown().await;
}
