//! The router's production behaviour through public interfaces only: `wharf serve` as a child
//! process, sites, routes and dynos created over the REST API, requests from real HTTP/1.1,
//! HTTP/2 and WebSocket clients over real TLS, real backends that answer, stall or die, and the
//! access lines read from a real syslog drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use wharf_testkit::certs::{Issued, TestCa};
use wharf_testkit::client::{self, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::eventually;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(30);

type Tls = Arc<rustls::ClientConfig>;

async fn start(env: &[(&str, &str)]) -> (Wharf, Tls) {
    let dir = wharf_testkit::TempDir::new("router");
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), env).await;
    // The directory goes when the test ends; the process is killed before that.
    std::mem::forget(dir);
    let tls = client::tls_config(&wharf.ca, &[b"http/1.1"]);
    (wharf, tls)
}

/// Sends GETs until one answers `status`, since the router follows snapshots on its own.
async fn until_status(addr: SocketAddr, tls: &Tls, host: &str, path: &str, status: u16) -> client::Response {
    eventually(WAIT, &format!("GET https://{host}{path} to answer {status}"), || async move {
        let r = client::send(addr, Some(tls), &Req::get(host, path)).await.ok()?;
        (r.status.as_u16() == status).then_some(r)
    })
    .await
}

/// Waits until `host` answers 200 on the plain-HTTP listener (with `http_redirect = false`).
async fn until_plain_ok(wharf: &Wharf, host: &str) {
    eventually(WAIT, &format!("{host} to answer on plain HTTP"), || async {
        let r = client::send(wharf.http, None, &Req::get(host, "/")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
}

/// Adds a probe app and waits until the router serves it, so that the router is known to follow
/// the snapshot that also holds the apps created before. Keep the backend alive.
async fn routing(wharf: &Wharf, tls: &Tls) -> DynoServer {
    let probe = DynoServer::start("probe").await;
    wharf.api.create_app("probe-default", &[&probe]).await;
    until_status(wharf.https, tls, "probe-default.localhost", "/", 200).await;
    probe
}

#[tokio::test]
async fn sites_route_by_host_and_longest_path_prefix() {
    let (wharf, tls) = start(&[]).await;
    let api = &wharf.api;
    let (www, api_b, docs, tenant) = (
        DynoServer::start("www").await,
        DynoServer::start("api").await,
        DynoServer::start("docs").await,
        DynoServer::start("tenant").await,
    );
    for (key, b) in [("www-prod", &www), ("api-prod", &api_b), ("docs-prod", &docs), ("tenant-prod", &tenant)] {
        if key == "www-prod" {
            api.expect("POST", "/spaces", json!({"name": "prod"}), 201).await;
        }
        api.create_app(key, &[b]).await;
    }
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 201).await;
    api.expect("POST", "/sites", json!({"domain": "*.example.com"}), 201).await;
    for (source, app, target) in [
        ("/", "www-prod", "/"),
        ("/api", "api-prod", "/"),
        ("/api/v2", "api-prod", "/v2"),
        ("/docs/", "docs-prod", "/help"),
    ] {
        let body = json!({"app": app, "source_path": source, "target_path": target});
        let r = api.expect("POST", "/sites/www.example.com/routes", body, 201).await;
        assert_eq!((r["app"]["name"].as_str(), r["site"]["domain"].as_str()), (Some(app), Some("www.example.com")));
    }
    let body = json!({"site": "*.example.com", "app": "tenant-prod", "source_path": "/", "target_path": "/t"});
    api.expect("POST", "/routes", body, 201).await;
    api.expect("POST", "/sites", json!({"domain": "api.example.com"}), 201).await;
    let body = json!({"site": "api.example.com", "app": "api-prod", "source_path": "/v1", "target_path": "/"});
    api.expect("POST", "/routes", body, 201).await;
    until_status(wharf.https, &tls, "acme.example.com", "/", 200).await;

    // (host, path) => (app, path the app sees); 404 when nothing matches.
    let check = |host: &'static str, path: &'static str, want: Option<(&'static str, &'static str)>| {
        let (tls, wharf) = (&tls, &wharf);
        let backends = [("www", &www), ("api", &api_b), ("docs", &docs), ("tenant", &tenant)];
        async move {
            let r = client::send(wharf.https, Some(tls), &Req::get(host, path)).await.expect("router answers");
            match want {
                None => assert_eq!(r.status, 404, "{host}{path}: {}", r.text()),
                Some((app, upstream)) => {
                    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, app), "{host}{path}");
                    let backend = backends.iter().find(|(name, _)| *name == app).expect("a backend").1;
                    let last = backend.seen().last().cloned().expect("the app saw the request");
                    assert_eq!(last.path, upstream, "{host}{path}");
                    assert_eq!(last.header("x-forwarded-path"), Some(path), "{host}{path}");
                    assert_eq!(last.header("x-forwarded-proto"), Some("https"));
                }
            }
        }
    };
    check("www.example.com", "/", Some(("www", "/"))).await;
    check("www.example.com", "/about?x=1", Some(("www", "/about?x=1"))).await;
    check("www.example.com", "/apix", Some(("www", "/apix"))).await;
    check("www.example.com", "/api", Some(("api", "/"))).await;
    check("www.example.com", "/api/users/7", Some(("api", "/users/7"))).await;
    check("www.example.com", "/api/v2/users", Some(("api", "/v2/users"))).await;
    check("www.example.com", "/docs/a/b", Some(("docs", "/help/a/b"))).await;
    check("WWW.EXAMPLE.COM", "/docs", Some(("docs", "/help"))).await;
    check("acme.example.com", "/x", Some(("tenant", "/t/x"))).await;
    check("api.example.com", "/v1/x", Some(("api", "/x"))).await;
    check("api.example.com", "/v10", None).await;
    check("api.example.com", "/", None).await;
    // A wildcard covers one label only, for routing and for certificates alike.
    let deeper = client::send(wharf.https, Some(&tls), &Req::get("a.b.example.com", "/x")).await;
    assert!(deeper.is_err_and(|e| e.contains("not valid for name")));
    check("api-prod.localhost", "/api/v2", Some(("api", "/api/v2"))).await;

    // Routes list by site and by app; bad and conflicting routes are refused and change nothing.
    let (_, routes) = api.call("GET", "/sites/www.example.com/routes", None).await;
    assert_eq!(routes.as_array().map(Vec::len), Some(4), "{routes}");
    let (_, routes) = api.call("GET", "/apps/api-prod/routes", None).await;
    assert_eq!(routes.as_array().map(Vec::len), Some(3), "{routes}");
    let bad = |source: &str, want: u16| {
        let body = json!({"app": "api-prod", "source_path": source});
        async move { api.expect("POST", "/sites/www.example.com/routes", body, want).await }
    };
    bad("/api", 409).await;
    bad("/api/", 409).await;
    bad("api", 422).await;
    bad("/a/../b", 422).await;
    bad("/a?b", 422).await;
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 409).await;
    api.expect("POST", "/sites", json!({"domain": "10.0.0.1"}), 422).await;
    api.expect("POST", "/sites", json!({"domain": "x.example.com", "extra": 1}), 422).await;
    let (_, routes) = api.call("GET", "/routes", None).await;
    assert_eq!(routes.as_array().map(Vec::len), Some(6), "{routes}");

    // Deleting a route takes effect without a restart.
    let docs_route = routes.as_array().unwrap().iter().find(|r| r["source_path"] == "/docs").unwrap();
    let (status, _) = api.call("DELETE", &format!("/routes/{}", docs_route["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    eventually(WAIT, "/docs to fall back to the site's root route", || async {
        let r = client::send(wharf.https, Some(&tls), &Req::get("www.example.com", "/docs")).await.ok()?;
        (r.text() == "www").then_some(())
    })
    .await;
}

#[tokio::test]
async fn site_drains_receive_the_router_lines_of_their_site_only() {
    let (wharf, tls) = start(&[]).await;
    let api = &wharf.api;
    let (www, shop) = (DynoServer::start("www").await, DynoServer::start("shop").await);
    api.create_app("www-default", &[&www]).await;
    api.create_app("shop-default", &[&shop]).await;
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 201).await;
    for (source, app) in [("/", "www-default"), ("/shop", "shop-default")] {
        let body = json!({"app": app, "source_path": source});
        api.expect("POST", "/sites/www.example.com/routes", body, 201).await;
    }
    let (site_drain, app_drain) = (SyslogReceiver::tcp().await, SyslogReceiver::tcp().await);
    let d = api.expect("POST", "/sites/www.example.com/log-drains", json!({"url": site_drain.url()}), 201).await;
    assert_eq!(d["site"]["domain"], "www.example.com", "{d}");
    assert!(d.get("app").is_none(), "{d}");
    api.expect("POST", "/apps/shop-default/log-drains", json!({"url": app_drain.url()}), 201).await;
    // Bad and duplicate drains are refused and change nothing.
    api.expect("POST", "/sites/www.example.com/log-drains", json!({"url": "ftp://h:1"}), 422).await;
    api.expect("POST", "/sites/www.example.com/log-drains", json!({"url": site_drain.url()}), 409).await;
    api.expect("POST", "/sites/nope.example.com/log-drains", json!({"url": site_drain.url()}), 404).await;
    let (_, list) = api.call("GET", "/sites/www.example.com/log-drains", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    until_status(wharf.https, &tls, "www.example.com", "/shop/cart", 200).await;
    for (host, path) in [("www.example.com", "/"), ("shop-default.localhost", "/direct")] {
        let r = client::send(wharf.https, Some(&tls), &Req::get(host, path)).await.expect("router answers");
        assert_eq!(r.status, 200, "{host}{path}");
    }
    // The site's drain has both apps' lines for requests on the site, and nothing else; the
    // app's drain has its app's lines whichever way they came.
    let lines = |d: &SyslogReceiver| d.messages().iter().map(|m| (m.hostname.clone(), m.text())).collect::<Vec<_>>();
    eventually(WAIT, "the router lines at both drains", || async {
        let (site, app) = (lines(&site_drain), lines(&app_drain));
        let has = |v: &[(String, String)], app: &str, path: &str| {
            v.iter().any(|(h, t)| h == app && t.contains(&format!(" path={path} ")))
        };
        (has(&site, "shop-default", "/shop/cart")
            && has(&site, "www-default", "/")
            && has(&app, "shop-default", "/shop/cart")
            && has(&app, "shop-default", "/direct"))
        .then_some(())
    })
    .await;
    assert!(lines(&site_drain).iter().all(|(_, t)| !t.contains("/direct")), "{:?}", lines(&site_drain));
    assert!(lines(&app_drain).iter().all(|(h, _)| h == "shop-default"), "{:?}", lines(&app_drain));
}

#[tokio::test]
async fn certificates_from_the_api_and_files_are_chosen_by_sni() {
    let ca = TestCa::new("Wharf test CA");
    let (exact, wildcard, file) = (
        ca.issue(&["www.example.test"], -1, 90),
        ca.issue(&["*.example.test"], -1, 90),
        ca.issue(&["files.example.test"], -1, 90),
    );
    let dir = wharf_testkit::TempDir::new("certs");
    let (chain_path, key_path) = (dir.path().join("files.pem"), dir.path().join("files.key"));
    std::fs::write(&chain_path, &file.chain_pem).unwrap();
    std::fs::write(&key_path, &file.key_pem).unwrap();
    let config = dir.path().join("wharf.toml");
    let toml = format!("[[router.certificates]]\nchain = {chain_path:?}\nkey = {key_path:?}\n");
    std::fs::write(&config, toml).unwrap();
    let wharf = Wharf::serve_in(WHARF, &["--config", config.to_str().unwrap()], &dir.path().join("data")).await;
    let api = &wharf.api;

    let upload = |c: &Issued, want: u16| {
        let body = json!({"certificate_chain": c.chain_pem, "private_key": c.key_pem});
        async move { api.expect("POST", "/certs", body, want).await }
    };
    let out = upload(&exact, 201).await;
    assert_eq!(out["domains"], json!(["www.example.test"]), "{out}");
    assert!(out["expires_at"].is_string() && out["fingerprint_sha256"].is_string(), "{out}");
    assert!(!out.to_string().contains("PRIVATE KEY"), "the key is never returned: {out}");
    let exact_id = out["id"].as_str().unwrap().to_owned();
    upload(&wildcard, 201).await;

    // Bad uploads are refused with what is wrong, and change nothing.
    let refused = |chain: &str, key: &str, says: &'static str| {
        let body = json!({"certificate_chain": chain, "private_key": key});
        async move {
            let out = api.expect("POST", "/certs", body, 422).await;
            assert!(out["message"].as_str().unwrap().contains(says), "{out} should say {says:?}");
        }
    };
    let expired = ca.issue(&["old.example.test"], -90, -1);
    refused(&exact.chain_pem, &wildcard.key_pem, "does not belong to the certificate").await;
    refused(&expired.chain_pem, &expired.key_pem, "expired at").await;
    refused("-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n", &exact.key_pem, "cannot be parsed")
        .await;
    refused("", &exact.key_pem, "no CERTIFICATE block").await;
    upload(&exact, 409).await;
    let extra = json!({"certificate_chain": exact.chain_pem, "private_key": exact.key_pem, "name": "x"});
    api.expect("POST", "/certs", extra, 422).await;
    let (_, list) = api.call("GET", "/certs", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    // Exact name, then wildcard, then files' certificates, each over TLS 1.3 and 1.2.
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let tls = client::tls_config_trusting(ca.pem().as_bytes(), &[b"http/1.1"], versions);
        for (sni, want) in
            [("www.example.test", &exact), ("api.example.test", &wildcard), ("files.example.test", &file)]
        {
            let got = eventually(WAIT, &format!("{sni} to present its certificate"), || async {
                let h = client::handshake(wharf.https, &tls, sni).await.ok()?;
                (h.leaf_der == want.leaf_der).then_some(h)
            })
            .await;
            assert_eq!(got.version, versions[0].version, "{sni}");
        }
        // Names no certificate covers get the default one, which this CA did not sign.
        let err = client::handshake(wharf.https, &tls, "a.b.example.test").await.unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    // A request through an uploaded certificate reaches the site's app.
    let backend = DynoServer::start("www").await;
    api.create_app("www-default", &[&backend]).await;
    api.expect("POST", "/sites", json!({"domain": "www.example.test"}), 201).await;
    api.expect("POST", "/sites/www.example.test/routes", json!({"app": "www-default", "source_path": "/"}), 201).await;
    let tls = client::tls_config_trusting(ca.pem().as_bytes(), &[b"h2", b"http/1.1"], &[&rustls::version::TLS13]);
    let r = until_status(wharf.https, &tls, "www.example.test", "/", 200).await;
    assert_eq!(r.text(), "www");

    // Deleting the exact certificate leaves the name to the wildcard.
    api.expect("DELETE", &format!("/certs/{exact_id}"), json!(null), 200).await;
    eventually(WAIT, "www.example.test to fall back to the wildcard", || async {
        let h = client::handshake(wharf.https, &tls, "www.example.test").await.ok()?;
        (h.leaf_der == wildcard.leaf_der).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tls13_clients_get_the_configured_session_tickets_and_resume_with_them() {
    // One ticket by default; as many as `tls13_tickets` says; none turns resumption off.
    for (env, tickets) in [(None, 1), (Some("3"), 3), (Some("0"), 0)] {
        let env: Vec<_> = env.map(|n| ("WHARF_ROUTER__TLS13_TICKETS", n)).into_iter().collect();
        let (wharf, tls) = start(&env).await;
        let web = DynoServer::start("web").await;
        wharf.api.create_app("web-default", &[&web]).await;
        until_status(wharf.https, &tls, "web-default.localhost", "/", 200).await;
        // A client of its own, so that its session store holds only what these requests leave.
        let client =
            client::tls_config_trusting(&std::fs::read(&wharf.ca).unwrap(), &[b"http/1.1"], &[&rustls::version::TLS13]);
        let first = client::resumption(wharf.https, &client, "web-default.localhost").await.unwrap();
        assert!(first.response.starts_with("HTTP/1.1 200"), "{env:?}: {}", first.response);
        assert_eq!((first.tickets, first.resumed), (tickets, false), "{env:?}: first connection");
        let second = client::resumption(wharf.https, &client, "web-default.localhost").await.unwrap();
        assert!(second.response.starts_with("HTTP/1.1 200"), "{env:?}: {}", second.response);
        assert_eq!((second.tickets, second.resumed), (tickets, tickets > 0), "{env:?}: second connection");
    }
}

#[tokio::test]
async fn internal_sites_are_served_only_on_the_internal_listener() {
    let (wharf, tls) = start(&[]).await;
    let api = &wharf.api;
    let (hr, web) = (DynoServer::start("hr").await, DynoServer::start("web").await);
    api.expect("POST", "/spaces", json!({"name": "vpn", "compliance": ["internal"]}), 201).await;
    api.create_app("hr-vpn", &[&hr]).await;
    api.create_app("web-default", &[&web]).await;
    api.expect("POST", "/sites", json!({"domain": "intra.example.com", "internal": true}), 201).await;
    let body = json!({"app": "hr-vpn", "source_path": "/hr"});
    api.expect("POST", "/sites/intra.example.com/routes", body, 201).await;
    // A public app cannot be routed from an internal site, nor an internal app from a public one.
    let body = json!({"app": "web-default", "source_path": "/web"});
    api.expect("POST", "/sites/intra.example.com/routes", body, 422).await;
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 201).await;
    let body = json!({"app": "hr-vpn", "source_path": "/"});
    api.expect("POST", "/sites/www.example.com/routes", body, 422).await;

    let r = until_status(wharf.internal, &tls, "intra.example.com", "/hr/people", 200).await;
    assert_eq!(r.text(), "hr");
    assert_eq!(hr.seen().last().unwrap().path, "/people");
    until_status(wharf.internal, &tls, "hr-vpn.localhost", "/", 200).await;
    until_status(wharf.https, &tls, "web-default.localhost", "/", 200).await;
    for (addr, host) in [
        (wharf.https, "intra.example.com"),
        (wharf.https, "hr-vpn.localhost"),
        (wharf.internal, "web-default.localhost"),
    ] {
        let r = client::send(addr, Some(&tls), &Req::get(host, "/hr/x")).await.expect("router answers");
        assert_eq!(r.status, 404, "{host} on {addr}");
    }
}

#[tokio::test]
async fn http2_websockets_and_the_platform_headers() {
    let (wharf, tls) = start(&[]).await;
    let api = &wharf.api;
    let (web, ws) = (DynoServer::start("hello").await, DynoServer::websocket_echo().await);
    api.create_app("web-default", &[&web]).await;
    api.create_app("ws-default", &[&ws]).await;
    until_status(wharf.https, &tls, "web-default.localhost", "/", 200).await;

    // HTTP/2 by ALPN, forwarded to the dyno as HTTP/1.1 with the platform's headers.
    let h2 = client::tls_config(&wharf.ca, &[b"h2", b"http/1.1"]);
    let req = Req::get("web-default.localhost", "/h2?q=1")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-id", "bad id")
        .header("te", "trailers");
    let r = client::send(wharf.https, Some(&h2), &req).await.expect("h2 request");
    assert_eq!((r.version, r.status.as_u16(), r.text().as_str()), (http::Version::HTTP_2, 200, "hello"));
    assert!(r.header("strict-transport-security").is_some_and(|v| v.starts_with("max-age=")));
    let seen = web.seen().last().cloned().unwrap();
    assert_eq!(seen.path, "/h2?q=1");
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-port"), Some(wharf.https.port().to_string().as_str()));
    assert_eq!(seen.header("host"), Some("web-default.localhost"));
    assert_eq!(seen.header("x-orig-host"), Some("web-default.localhost"));
    assert_eq!(seen.header("x-orig-proto"), Some("https"));
    assert_eq!(seen.header("x-orig-port"), Some(wharf.https.port().to_string().as_str()));
    assert_eq!(seen.header("via"), Some("1.1 wharf"));
    assert!(seen.header("te").is_none(), "hop-by-hop headers are stripped");
    let id = seen.header("x-request-id").unwrap();
    assert!(id.len() == 36 && id != "bad id", "{id}");
    let start: u128 = seen.header("x-request-start").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    assert!(start <= now && now - start < 60_000, "X-Request-Start is in milliseconds");

    // A WebSocket through the router echoes both ways.
    let mut socket = eventually(WAIT, "a websocket through the router", || async {
        client::websocket(wharf.https, &tls, "ws-default.localhost", "/chat").await.ok()
    })
    .await;
    for text in ["hello", "world"] {
        socket.send(tokio_tungstenite::tungstenite::Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(WAIT, socket.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    socket.close(None).await.unwrap();
}

/// The router's client connection counts for one listener from `/metrics`: (opened, closed).
async fn client_connections(wharf: &Wharf, listener: &str) -> (u64, u64) {
    let metrics = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.unwrap().text();
    let count = |event: &str| -> u64 {
        let name = format!("wharf_router_client_connections_{event}_total{{listener=\"{listener}\"}}");
        metrics.lines().find_map(|l| l.strip_prefix(&name)?.trim().parse().ok()).unwrap_or_else(|| panic!("{name}"))
    };
    (count("opened"), count("closed"))
}

#[tokio::test]
async fn a_client_that_connects_and_says_nothing_is_not_handed_to_the_router_until_it_speaks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (wharf, _) = start(&[]).await;
    let (opened, _) = client_connections(&wharf, "http").await;
    // Twenty clients complete the TCP handshake and say nothing; the kernel holds them.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tokio::net::TcpStream::connect(wharf.http).await.unwrap());
    }
    // A client that connected after them and speaks is served, and is the only one handed over.
    let r = client::send(wharf.http, None, &Req::get("web-default.localhost", "/")).await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(client_connections(&wharf, "http").await.0, opened + 1);
    // One of the silent clients speaks at last and is served like any other.
    let mut late = silent.pop().unwrap();
    late.write_all(b"GET /late HTTP/1.1\r\nHost: web-default.localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, late.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 301"), "{answer:?}");
    assert!(answer.contains("location: https://web-default.localhost"), "{answer:?}");
    assert_eq!(client_connections(&wharf, "http").await.0, opened + 2);
    // When the others hang up, every connection the router was handed is counted as closed.
    drop(silent);
    eventually(WAIT, "every http connection counted as closed", || async {
        let (opened, closed) = client_connections(&wharf, "http").await;
        (opened == closed).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_dead_dyno_is_quarantined_and_requests_go_to_the_others() {
    let (wharf, tls) = start(&[]).await;
    let api = &wharf.api;
    let (one, two) = (DynoServer::start("one").await, DynoServer::start("two").await);
    api.create_app("api-default", &[&one, &two]).await;
    until_status(wharf.https, &tls, "api-default.localhost", "/", 200).await;
    for _ in 0..4 {
        let r = client::send(wharf.https, Some(&tls), &Req::get("api-default.localhost", "/")).await.unwrap();
        assert_eq!(r.status, 200);
    }
    one.kill();
    // Every request still succeeds: a refused connect is retried on the other dyno.
    for i in 0..10 {
        let r = client::send(wharf.https, Some(&tls), &Req::get("api-default.localhost", "/")).await.unwrap();
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "two"), "request {i} after the kill");
    }
    let metrics = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.unwrap().text();
    let count = |name: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or_else(|| panic!("{name}"))
    };
    assert!(count("wharf_router_quarantines_total") >= 1, "{metrics}");
    assert!(count("wharf_router_upstream_connect_errors_total") >= 1, "{metrics}");
    assert!(count("wharf_router_app_requests_total{app=\"api-default\",class=\"2xx\"}") >= 15, "{metrics}");
    assert!(metrics.contains("wharf_router_upstream_connections_total{kind=\"reused\"}"), "{metrics}");
    assert!(wharf.stderr().contains("dyno quarantined"), "{}", wharf.stderr());
    let health = client::send(wharf.admin, None, &Req::get("localhost", "/healthz")).await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
}

#[tokio::test]
async fn timeouts_and_missing_dynos_answer_503_and_log_their_code() {
    let (wharf, tls) = start(&[("WHARF_ROUTER__FIRST_BYTE_TIMEOUT", "1s")]).await;
    let api = &wharf.api;
    let stuck = DynoServer::silent().await;
    let drain = SyslogReceiver::tcp().await;
    api.create_app("slow-default", &[&stuck]).await;
    api.create_app("empty-default", &[]).await;
    for key in ["slow-default", "empty-default"] {
        api.expect("POST", &format!("/apps/{key}/log-drains"), json!({"url": drain.url()}), 201).await;
    }
    let slow = until_status(wharf.https, &tls, "slow-default.localhost", "/", 503).await;
    assert!(slow.text().contains("did not respond in time"), "{}", slow.text());
    let empty = until_status(wharf.https, &tls, "empty-default.localhost", "/", 503).await;
    assert!(empty.text().contains("no web dynos"), "{}", empty.text());
    for (app, line) in [
        ("slow-default", "at=error code=H12 desc=\"Request timeout\""),
        ("empty-default", "at=error code=H14 desc=\"No web dynos running\""),
    ] {
        eventually(WAIT, &format!("{app}'s {line} line at the drain"), || async {
            let msgs = drain.messages();
            msgs.iter()
                .any(|m| m.hostname == app && m.text().starts_with(line) && m.text().contains("status=503"))
                .then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn oversized_and_ambiguous_requests_are_refused_and_never_forwarded() {
    let (wharf, _) = start(&[("WHARF_ROUTER__HTTP_REDIRECT", "false")]).await;
    let web = DynoServer::start("ok").await;
    wharf.api.create_app("web-default", &[&web]).await;
    until_plain_ok(&wharf, "web-default.localhost").await;
    let before = web.seen().len();
    let host = "Host: web-default.localhost\r\n";
    let big = "a".repeat(9 * 1024);
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        ("oversized header", format!("GET / HTTP/1.1\r\n{host}X-Big: {big}\r\n\r\n"), "431"),
        ("too many headers", format!("GET / HTTP/1.1\r\n{host}{many}\r\n"), "431"),
        ("oversized request line", format!("GET /{big} HTTP/1.1\r\n{host}\r\n"), "414"),
        (
            "content-length with transfer-encoding",
            format!(
                "POST / HTTP/1.1\r\n{host}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n{host}\r\n"
            ),
            "400",
        ),
        (
            "two different content-lengths",
            format!("POST / HTTP/1.1\r\n{host}Content-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"),
            "400",
        ),
        ("obs-fold", format!("GET / HTTP/1.1\r\n{host}X-Folded: a\r\n b\r\n\r\n"), "400"),
        ("bare LF", format!("GET / HTTP/1.1\n{}X-A: b\n\n", host.replace("\r\n", "\n")), "400"),
        (
            "invalid chunk size",
            format!("POST / HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
            "400",
        ),
        (
            "chunked not last",
            format!("POST / HTTP/1.1\r\n{host}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
            "400",
        ),
    ];
    for (name, raw, want) in &cases {
        let answer = client::send_raw(wharf.http, None, raw.as_bytes()).await.unwrap();
        let status = answer.split_whitespace().nth(1).unwrap_or("(no answer)");
        assert_eq!(status, *want, "{name}: {answer:?}");
    }
    let forwarded: Vec<_> = web.seen().into_iter().skip(before).map(|s| s.path).collect();
    assert!(forwarded.is_empty(), "refused requests reached the app: {forwarded:?}");
}

#[tokio::test]
async fn a_slow_header_sender_is_cut_off_and_never_forwarded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (wharf, _) = start(&[("WHARF_ROUTER__HTTP_REDIRECT", "false"), ("WHARF_ROUTER__HEADER_TIMEOUT", "1s")]).await;
    let web = DynoServer::start("ok").await;
    wharf.api.create_app("web-default", &[&web]).await;
    until_plain_ok(&wharf, "web-default.localhost").await;
    let before = web.seen().len();
    // A client that keeps sending header bytes, a few a second, never finishing the head: the
    // header timeout counts from the start of the request, not from the last byte.
    let mut tcp = tokio::net::TcpStream::connect(wharf.http).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: web-default.localhost\r\n").await.unwrap();
    let cut_off = async {
        let mut buf = [0u8; 1024];
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                read = tcp.read(&mut buf) => return read.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()),
                _ = tick.tick() => {
                    tcp.write_all(b"X-Slow: a\r\n").await?;
                }
            }
        }
    };
    let answer = tokio::time::timeout(WAIT, cut_off).await.expect("the router closes a slow header sender");
    // Closed outright, or told 408 first; either way no response from the app.
    if let Ok(text) = &answer {
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text:?}");
    }
    assert_eq!(web.seen().len(), before, "the unfinished request reached the app");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_requests_in_flight_finish() {
    let (wharf, tls) = start(&[("WHARF_ROUTER__SHUTDOWN_GRACE", "20s")]).await;
    let (held, hold) = DynoServer::held("finished").await;
    wharf.api.create_app("slow-default", &[&held]).await;
    let _probe = routing(&wharf, &tls).await;

    let in_flight = tokio::spawn({
        let (addr, tls) = (wharf.https, tls.clone());
        async move { client::send(addr, Some(&tls), &Req::get("slow-default.localhost", "/work")).await }
    });
    eventually(WAIT, "the request to reach the dyno", || async { (!held.seen().is_empty()).then_some(()) }).await;
    wharf.signal_term().await;
    let https = wharf.https;
    eventually(WAIT, "the router to stop accepting", || async {
        tokio::net::TcpStream::connect(https).await.is_err().then_some(())
    })
    .await;
    assert!(!in_flight.is_finished(), "the request in flight was not cut short");
    hold.release();
    let r = in_flight.await.unwrap().expect("the request in flight completes");
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "finished"));
    let (ok, out) = wharf.wait_exit().await;
    assert!(ok, "wharf exits cleanly: {out}");
    assert!(out.contains("Wharf stopped."), "{out}");
}

#[tokio::test]
async fn shutdown_closes_what_is_still_in_flight_when_the_grace_period_ends() {
    let (wharf, tls) = start(&[("WHARF_ROUTER__SHUTDOWN_GRACE", "1s")]).await;
    let stuck = DynoServer::silent().await;
    wharf.api.create_app("stuck-default", &[&stuck]).await;
    let _probe = routing(&wharf, &tls).await;
    let in_flight = tokio::spawn({
        let (addr, tls) = (wharf.https, tls.clone());
        async move { client::send(addr, Some(&tls), &Req::get("stuck-default.localhost", "/")).await }
    });
    // The dyno never answers; shutdown must not wait for it past the grace period.
    eventually(WAIT, "the request to reach the dyno", || async { (stuck.connections() > 0).then_some(()) }).await;
    let (ok, out) = wharf.terminate().await;
    assert!(ok, "wharf exits cleanly: {out}");
    let r = in_flight.await.unwrap();
    assert!(r.is_err(), "the stuck request is closed, not answered: {r:?}");
}

/// What a scripted dyno saw of one request: its connection's number, the method, path and body.
type Heard = (usize, String, String, Vec<u8>);

/// A dyno speaking raw HTTP/1.1, answering each path with fixed bytes so that every framing a
/// response may have is exercised: chunked with trailers, close-delimited, interim 100, 204, a
/// malformed head, an answer before the upload was read, and an echo of the request body (sent
/// with a length or chunked).
async fn scripted_dyno() -> (u16, Arc<std::sync::Mutex<Vec<Heard>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = heard.clone();
    tokio::spawn(async move {
        for conn in 0.. {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut words = line.split_whitespace();
                    let (method, path) = (words.next().unwrap().to_owned(), words.next().unwrap().to_owned());
                    let (mut length, mut chunked) = (0usize, false);
                    loop {
                        let mut h = String::new();
                        s.read_line(&mut h).await.unwrap();
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length: ") {
                            length = v.parse().unwrap();
                        }
                        chunked |= h == "transfer-encoding: chunked";
                    }
                    if path == "/toolarge" {
                        // Answers before reading the upload, and closes with it unread.
                        let answer =
                            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                        log.lock().unwrap().push((conn, method, path, Vec::new()));
                        s.get_mut().write_all(answer).await.unwrap();
                        return;
                    }
                    let mut body = vec![0u8; length];
                    s.read_exact(&mut body).await.unwrap();
                    while chunked {
                        let mut size = String::new();
                        s.read_line(&mut size).await.unwrap();
                        let n = usize::from_str_radix(size.trim(), 16).unwrap();
                        let mut data = vec![0u8; n + 2];
                        s.read_exact(&mut data).await.unwrap();
                        body.extend_from_slice(&data[..n]);
                        chunked = n > 0;
                    }
                    let answer: Vec<u8> = match path.as_str() {
                        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec(),
                        "/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end".to_vec(),
                        "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                        "/nocontent" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                        "/hop" => b"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                        "/bad" => b"HTTP/1.1 abc\r\n\r\n".to_vec(),
                        "/len" if method == "HEAD" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_vec(),
                        _ => [format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(), &body]
                            .concat(),
                    };
                    log.lock().unwrap().push((conn, method, path.clone(), body));
                    s.get_mut().write_all(&answer).await.unwrap();
                    if path == "/close" || path == "/bad" {
                        return;
                    }
                }
            });
        }
    });
    (port, heard)
}

/// Wharf proxying plain HTTP to an app `name` whose one web dyno is [`scripted_dyno`]: Wharf,
/// the app's host, and what the dyno heard.
async fn scripted_app(name: &str) -> (Wharf, String, Arc<std::sync::Mutex<Vec<Heard>>>) {
    let (wharf, _) = start(&[("WHARF_ROUTER__HTTP_REDIRECT", "false")]).await;
    let (port, heard) = scripted_dyno().await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": name, "space": "default"}), 201).await;
    let dyno = json!({"type": "web", "host": "127.0.0.1", "port": port});
    api.expect("PUT", &format!("/apps/{name}-default/dynos/web.1"), dyno, 201).await;
    let host = format!("{name}-default.localhost");
    until_plain_ok(&wharf, &host).await;
    (wharf, host, heard)
}

/// Responses of every framing reach the client whole, request bodies reach the dyno whole
/// (with a length, or chunked), a bad response head is a 502, and a connection whose response
/// was read to its end carries the next request.
#[tokio::test]
async fn every_framing_of_bodies_passes_through() {
    let (wharf, host, heard) = scripted_app("framing").await;
    let host = host.as_str();

    let get = |path: &'static str| async move { client::send(wharf.http, None, &Req::get(host, path)).await.unwrap() };
    let r = get("/chunked").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "hello, world".to_owned()));
    let r = get("/close").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "until the end".to_owned()));
    let r = get("/continue").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_owned()));
    assert_eq!(get("/nocontent").await.status, 204);
    assert_eq!(get("/bad").await.status, 502, "a malformed head is the app's error (H17)");
    let r =
        client::send(wharf.http, None, &Req { method: http::Method::HEAD, ..Req::get(host, "/len") }).await.unwrap();
    assert_eq!((r.status.as_u16(), r.header("content-length"), r.body.len()), (200, Some("10"), 0));
    let post = Req {
        method: http::Method::POST,
        body: bytes::Bytes::from_static(b"with a length"),
        ..Req::get(host, "/echo")
    };
    assert_eq!(client::send(wharf.http, None, &post).await.unwrap().text(), "with a length");
    let upload = bytes::Bytes::from(vec![b'x'; 8 << 20]);
    let big = Req { method: http::Method::POST, body: upload, ..Req::get(host, "/toolarge") };
    let r = client::send(wharf.http, None, &big).await;
    assert_eq!(r.map(|r| r.status.as_u16()), Ok(413), "a dyno's answer before it read the upload gets through");

    // Two requests on one client connection: a chunked upload, then a GET after a chunked
    // response; the dyno sees the upload whole, and the second request on the same connection.
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n\
         GET /chunked HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET /after HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let out = client::send_raw(wharf.http, None, raw.as_bytes()).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("\r\n\r\nabcdef"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    let heard = heard.lock().unwrap().clone();
    let upload = heard.iter().find(|h| h.1 == "POST" && h.3 == b"abcdef").expect("the chunked upload, whole");
    let chunked = heard.iter().rev().find(|h| h.2 == "/chunked").unwrap();
    let after = heard.iter().find(|h| h.2 == "/after").unwrap();
    assert_eq!((upload.0, chunked.0), (after.0, after.0), "one dyno connection carried all three: {heard:?}");
}

/// Reads from `s` until `end` has arrived (or the connection closes), and returns the text.
async fn read_until(s: &mut tokio::net::TcpStream, end: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&out).contains(end) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("the router answers");
    String::from_utf8_lossy(&out).into_owned()
}

/// The client side of HTTP/1.1 as clients speak it: HTTP/1.0 with and without keep-alive, a
/// body of unknown length to each, `Expect: 100-continue`, an absolute-form target, hop-by-hop
/// fields of the dyno's response left behind, and a body the router did not forward.
#[tokio::test]
async fn clients_of_every_http1_dialect_are_served() {
    use tokio::io::AsyncWriteExt;
    let (wharf, host, heard) = scripted_app("dialects").await;
    let host = host.as_str();
    let raw = |text: String| async move { client::send_raw(wharf.http, None, text.as_bytes()).await.unwrap() };
    let head_and_body = |out: &str| {
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((out, ""));
        (head.to_ascii_lowercase(), body.to_owned())
    };

    // HTTP/1.0 without keep-alive: a chunked response arrives unframed, and the connection closes.
    let out = raw(format!("GET /chunked HTTP/1.0\r\nHost: {host}\r\n\r\n")).await;
    let (head, body) = head_and_body(&out);
    assert!(head.starts_with("http/1.1 200 ok") && head.contains("connection: close"), "{out}");
    assert!(!head.contains("transfer-encoding"), "{out}");
    assert_eq!(body, "hello, world");

    // HTTP/1.1: the same body re-chunked, without the dyno's trailer.
    let out = raw(format!("GET /chunked HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
    let (head, body) = head_and_body(&out);
    assert!(head.contains("transfer-encoding: chunked"), "{out}");
    assert!(body.starts_with("5\r\nhello\r\n") && body.ends_with("0\r\n\r\n") && !body.contains("X-Trailer"), "{out}");

    // HTTP/1.0 with keep-alive: two requests on one connection, the first kept alive.
    let out = raw(format!(
        "GET /echo HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.0\r\nHost: {host}\r\n\r\n"
    ))
    .await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.to_ascii_lowercase().contains("connection: keep-alive"), "{out}");

    // An absolute-form target is routed by its authority, and the dyno gets the origin form.
    let out =
        raw(format!("GET http://{host}/absolute?q=1 HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n")).await;
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(heard.lock().unwrap().iter().any(|h| h.2 == "/absolute?q=1"), "{:?}", heard.lock().unwrap());

    // The dyno's hop-by-hop fields, and those its Connection names, stay behind.
    let out = raw(format!("GET /hop HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
    let (head, body) = head_and_body(&out);
    assert!(head.contains("x-kept: yes") && head.contains("via: 1.1 wharf"), "{out}");
    assert!(!head.contains("x-private") && !head.contains("keep-alive"), "{out}");
    assert_eq!(body, "ok");

    // A client that waits for 100 Continue gets it, then its upload reaches the dyno whole.
    let mut tcp = tokio::net::TcpStream::connect(wharf.http).await.unwrap();
    let head = format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let interim = read_until(&mut tcp, "\r\n\r\n").await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    tcp.write_all(b"continued").await.unwrap();
    let out = read_until(&mut tcp, "continued").await;
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.ends_with("\r\n\r\ncontinued"), "{out}");

    // A body the router did not forward is not taken for a next request: the connection ends.
    let out = raw(format!(
        "POST / HTTP/1.1\r\nHost: nowhere.localhost\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n"
    ))
    .await;
    assert!(out.starts_with("HTTP/1.1 404") && out.to_ascii_lowercase().contains("connection: close"), "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
    assert!(!heard.lock().unwrap().iter().any(|h| h.2 == "/smuggled"));
}

/// Sends `count` GETs for `host` and returns the bodies, each of which must have `status`.
async fn bodies(wharf: &Wharf, tls: &Tls, host: &str, count: usize, status: u16) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..count {
        let r = client::send(wharf.https, Some(tls), &Req::get(host, &format!("/n{i}"))).await.expect("router answers");
        assert_eq!(r.status.as_u16(), status, "{host} request {i}: {}", r.text());
        out.push(r.text());
    }
    out
}

#[tokio::test]
async fn an_app_in_maintenance_mode_answers_503_with_its_page_and_no_dyno_sees_the_request() {
    // Plain HTTP proxies too (behind a TLS-terminating load balancer), so it is one more way in.
    let (wharf, tls) = start(&[("WHARF_ROUTER__HTTP_REDIRECT", "false")]).await;
    let api = &wharf.api;
    let (web, next) = (DynoServer::start("serving").await, DynoServer::start("canary").await);
    api.create_app("web-default", &[&web]).await;
    api.create_app("next-default", &[&next]).await;
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 201).await;
    let route = json!({"app": "web-default", "source_path": "/web"});
    api.expect("POST", "/sites/www.example.com/routes", route, 201).await;
    let drain = SyslogReceiver::tcp().await;
    api.expect("POST", "/apps/web-default/log-drains", json!({"url": drain.url()}), 201).await;
    until_status(wharf.https, &tls, "www.example.com", "/web", 200).await;

    // Maintenance is a JSON boolean: anything else is refused and changes nothing.
    for bad in [json!({"maintenance": "yes"}), json!({"maintenance": 1}), json!({"maintenance": true, "colour": "red"})]
    {
        let (status, body) = api.call("PATCH", "/apps/web-default", Some(bad.clone())).await;
        assert_eq!((status, &body["id"]), (422, &json!("invalid_params")), "{bad}: {body}");
    }
    assert_eq!(api.call("GET", "/apps/web-default", None).await.1["maintenance"], json!(false));
    let on = api.expect("PATCH", "/apps/web-default", json!({"maintenance": true}), 200).await;
    assert_eq!((&on["maintenance"], &on["name"]), (&json!(true), &json!("web-default")), "{on}");
    until_status(wharf.https, &tls, "web-default.localhost", "/", 503).await;

    // Every way a request reaches the app gets the page: its default domain and a site route
    // to it, over HTTP/1.1 (TLS and plain) and HTTP/2, GET, HEAD and POST; no dyno is contacted.
    let h2 = client::tls_config(&wharf.ca, &[b"h2", b"http/1.1"]);
    let served = web.requests();
    let (https, http) = (wharf.https, wharf.http);
    let cases = [
        (https, Some(&tls), "GET", "web-default.localhost", "/one", http::Version::HTTP_11),
        (https, Some(&tls), "GET", "www.example.com", "/web/two", http::Version::HTTP_11),
        (https, Some(&tls), "HEAD", "www.example.com", "/web/three", http::Version::HTTP_11),
        (https, Some(&h2), "GET", "web-default.localhost", "/four", http::Version::HTTP_2),
        (https, Some(&h2), "POST", "www.example.com", "/web/five", http::Version::HTTP_2),
        (http, None, "POST", "web-default.localhost", "/six", http::Version::HTTP_11),
    ];
    for (addr, tls, method, host, path, version) in cases {
        let mut req = Req::get(host, path);
        req.method = method.parse().unwrap();
        if method == "POST" {
            req.body = bytes::Bytes::from_static(b"an upload");
        }
        let r = client::send(addr, tls, &req).await.expect("router answers");
        let shown = format!("{method} {host}{path} over {version:?}");
        assert_eq!((r.version, r.status.as_u16()), (version, 503), "{shown}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{shown}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{shown}");
        if method != "HEAD" {
            assert!(r.text().contains("<title>Offline for maintenance</title>"), "{shown}: {}", r.text());
        }
    }
    assert_eq!(web.requests(), served, "no request reached the app's dyno");
    // Each is in the app's log stream as Heroku's router writes H80.
    eventually(WAIT, "H80 access lines at the app's drain", || async {
        let texts: Vec<String> = drain.messages().iter().map(|m| m.text()).collect();
        ["/one", "/web/two", "/web/three", "/four", "/web/five", "/six"]
            .iter()
            .all(|path| {
                texts.iter().any(|t| {
                    t.starts_with("at=info code=H80 desc=\"Maintenance mode\" ")
                        && t.contains(&format!(" path={path} "))
                        && t.contains(" status=503 ")
                })
            })
            .then_some(())
    })
    .await;

    // A canary split does not reach around maintenance: the app's whole traffic gets the page.
    api.expect("PUT", "/apps/web-default/canary", json!({"canary_app": "next-default", "weight": 50}), 201).await;
    let canaried = next.requests();
    for body in bodies(&wharf, &tls, "web-default.localhost", 20, 503).await {
        assert!(body.contains("Offline for maintenance"), "{body}");
    }
    assert_eq!((web.requests(), next.requests()), (served, canaried), "neither app's dyno was contacted");

    // Out of maintenance, the split serves again; a canary app in maintenance takes no share
    // (its app serves every request), and comes back when it leaves maintenance.
    api.expect("PATCH", "/apps/next-default", json!({"maintenance": true}), 200).await;
    let off = api.expect("PATCH", "/apps/web-default", json!({"maintenance": false}), 200).await;
    assert_eq!(off["maintenance"], json!(false), "{off}");
    until_status(wharf.https, &tls, "web-default.localhost", "/", 200).await;
    assert!(bodies(&wharf, &tls, "web-default.localhost", 20, 200).await.iter().all(|b| b == "serving"));
    assert_eq!(next.requests(), canaried, "the canary app in maintenance got no share");
    api.expect("PATCH", "/apps/next-default", json!({"maintenance": false}), 200).await;
    eventually(WAIT, "the canary to take its share again", || async {
        let r = client::send(wharf.https, Some(&tls), &Req::get("web-default.localhost", "/")).await.ok()?;
        (r.text() == "canary").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_app_names_its_own_maintenance_page_which_the_control_plane_fetches() {
    let ca = TestCa::new("pages");
    let dir = wharf_testkit::TempDir::new("pages-ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_path = ca_file.to_str().unwrap().to_owned();
    let (wharf, tls) = start(&[("WHARF_CONTROL_API__TRUSTED_CA", &ca_path)]).await;
    let api = &wharf.api;
    let web = DynoServer::start("serving").await;
    api.create_app("web-default", &[&web]).await;
    until_status(wharf.https, &tls, "web-default.localhost", "/", 200).await;
    let served = web.requests();

    // Pages served over verified TLS by nginx: one to serve, one too large (over 256 KiB).
    let page = DynoServer::start("<!DOCTYPE html><title>Back soon</title><p>Our own page</p>").await;
    let big: &'static str = Box::leak("x".repeat(300 * 1024).into_boxed_str());
    let huge = DynoServer::start(big).await;
    let nginx = |origin: &DynoServer| {
        let origin = SocketAddr::from(([127, 0, 0, 1], origin.port()));
        wharf_testkit::nginx::Nginx::https_proxy(&ca, "127.0.0.1:0".parse().unwrap(), &["localhost"], origin)
    };
    let (pages, huge_pages) = (nginx(&page).await, nginx(&huge).await);
    let untrusted = TestCa::new("untrusted");
    let stranger = wharf_testkit::nginx::Nginx::https_proxy(
        &untrusted,
        "127.0.0.1:0".parse().unwrap(),
        &["localhost"],
        SocketAddr::from(([127, 0, 0, 1], page.port())),
    )
    .await;
    let url = |n: &wharf_testkit::nginx::Nginx| format!("https://localhost:{}/down.html", n.addr.port());

    // What the app's JSON says about each URL once its fetch is done, and what the router
    // serves for it in maintenance: the page, or the default page when it cannot be had.
    let cases = [
        (url(&pages), "fetched", "", "Our own page"),
        (url(&huge_pages), "failed", "larger than 256 KiB", "Offline for maintenance"),
        (url(&stranger), "failed", "TLS", "Offline for maintenance"),
        (format!("http://localhost:{}/down.html", page.port()), "failed", "only https", "Offline for maintenance"),
        (url(&pages), "fetched", "", "Our own page"),
    ];
    api.expect("PATCH", "/apps/web-default", json!({"maintenance": true}), 200).await;
    for (page_url, status, error, served) in cases {
        api.expect("PATCH", "/apps/web-default/config-vars", json!({"MAINTENANCE_PAGE_URL": page_url}), 200).await;
        let app = eventually(WAIT, &format!("{page_url} to be fetched"), || async {
            let (_, app) = api.call("GET", "/apps/web-default", None).await;
            (app["maintenance_page"]["url"] == json!(page_url) && app["maintenance_page"]["status"] != "pending")
                .then_some(app)
        })
        .await;
        let shown = &app["maintenance_page"];
        assert_eq!(shown["status"], json!(status), "{page_url}: {shown}");
        assert!(shown["error"].as_str().unwrap_or_default().contains(error), "{page_url}: {shown}");
        eventually(WAIT, &format!("the router to serve {served:?} for {page_url}"), || async {
            let r = client::send(wharf.https, Some(&tls), &Req::get("web-default.localhost", "/")).await.ok()?;
            (r.status == 503 && r.text().contains(served)).then_some(())
        })
        .await;
    }
    // The URL removed: the default page again, and no page shown on the app.
    api.expect("PATCH", "/apps/web-default/config-vars", json!({"MAINTENANCE_PAGE_URL": null}), 200).await;
    until_status(wharf.https, &tls, "web-default.localhost", "/", 503).await;
    eventually(WAIT, "the default page once the URL is gone", || async {
        let r = client::send(wharf.https, Some(&tls), &Req::get("web-default.localhost", "/")).await.ok()?;
        r.text().contains("Offline for maintenance").then_some(())
    })
    .await;
    assert_eq!(api.call("GET", "/apps/web-default", None).await.1["maintenance_page"], json!(null));
    // A rename keeps the page (it belongs to the app, not its name).
    api.expect("PATCH", "/apps/web-default/config-vars", json!({"MAINTENANCE_PAGE_URL": url(&pages)}), 200).await;
    eventually(WAIT, "the page again", || async {
        let r = client::send(wharf.https, Some(&tls), &Req::get("web-default.localhost", "/")).await.ok()?;
        r.text().contains("Our own page").then_some(())
    })
    .await;
    api.expect("PATCH", "/apps/web-default", json!({"name": "renamed"}), 200).await;
    eventually(WAIT, "the renamed app's page", || async {
        let r = client::send(wharf.https, Some(&tls), &Req::get("renamed-default.localhost", "/")).await.ok()?;
        (r.status == 503 && r.text().contains("Our own page")).then_some(())
    })
    .await;
    // The page's host goes down and maintenance is turned on again (a new fetch): the last good
    // copy of the same URL is still served, and the app's JSON says it is stale and why.
    page.kill();
    api.expect("PATCH", "/apps/renamed-default", json!({"maintenance": true}), 200).await;
    let app = eventually(WAIT, "the failed fetch of the page", || async {
        let (_, app) = api.call("GET", "/apps/renamed-default", None).await;
        (app["maintenance_page"]["status"] == "stale").then_some(app)
    })
    .await;
    assert!(app["maintenance_page"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{app}");
    let r = client::send(wharf.https, Some(&tls), &Req::get("renamed-default.localhost", "/")).await.unwrap();
    assert!(r.status == 503 && r.text().contains("Our own page"), "the last good copy: {}", r.text());
    assert_eq!(web.requests(), served, "no request in maintenance reached the dyno");
}

/// Sends `streams` GETs for `host` at once on one new HTTP/2 connection and reads every answer
/// whole; their statuses, in the order sent.
async fn h2_streams(wharf: &Wharf, host: &str, streams: usize) -> Vec<u16> {
    let h2 = h2_connection(wharf, host).await;
    let answers = futures_util::future::join_all((0..streams).map(|i| {
        let h2 = &h2;
        async move { h2_get(h2, host, &format!("/burst/{i}")).await.0 }
    }));
    answers.await
}

/// One new HTTP/2 connection to the router's TLS listener, for `host` (SNI).
async fn h2_connection(wharf: &Wharf, host: &str) -> h2::client::SendRequest<bytes::Bytes> {
    let tls = client::tls_config(&wharf.ca, &[b"h2"]);
    let tcp = tokio::net::TcpStream::connect(wharf.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.unwrap();
    let (sender, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    sender.ready().await.unwrap()
}

/// GET `https://{host}{path}` as a stream of `connection`: its status and body.
async fn h2_get(connection: &h2::client::SendRequest<bytes::Bytes>, host: &str, path: &str) -> (u16, String) {
    let request = http::Request::get(format!("https://{host}{path}")).body(()).unwrap();
    let (response, _) = connection.clone().send_request(request, true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        text.extend_from_slice(&data);
    }
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test]
async fn every_http2_stream_waits_for_its_first_byte_under_its_own_deadline() {
    // A connection hands its finished streams' first-byte deadlines to its next ones
    // (server/h2.rs, `SpareDeadlines`): a reused deadline must neither fire early (it was set
    // for an earlier stream, and its timer may have fired while it was spare) nor late.
    let (wharf, tls) = start(&[("WHARF_ROUTER__FIRST_BYTE_TIMEOUT", "1s"), ("WHARF_ROUTER__WORKERS", "1")]).await;
    let (fast, stuck) = (DynoServer::start("fast").await, DynoServer::silent().await);
    wharf.api.create_app("fast-default", &[&fast]).await;
    wharf.api.create_app("stuck-default", &[&stuck]).await;
    until_status(wharf.https, &tls, "fast-default.localhost", "/", 200).await;
    until_status(wharf.https, &tls, "stuck-default.localhost", "/", 503).await;
    let h2 = h2_connection(&wharf, "fast-default.localhost").await;
    let fast_ones = |round: usize| {
        let h2 = &h2;
        futures_util::future::join_all(
            (0..8).map(move |i| async move { h2_get(h2, "fast-default.localhost", &format!("/{round}/{i}")).await }),
        )
    };
    for round in 0..3 {
        // Eight at once leave eight spare deadlines; the stuck stream takes one, and its timer
        // fires while the others are spare, so the next round's fast streams take deadlines
        // whose timers have fired for a time long past.
        for (status, body) in fast_ones(round).await {
            assert_eq!((status, body.as_str()), (200, "fast"), "round {round}: a reused deadline fired early");
        }
        let (status, body) = h2_get(&h2, "stuck-default.localhost", &format!("/{round}")).await;
        assert_eq!(status, 503, "round {round}: {body}");
        assert!(body.contains("did not respond in time"), "round {round}: {body}");
    }
    // Stuck streams and fast ones at once: each stuck one gets its H12, each fast one its answer.
    let stuck_ones = futures_util::future::join_all((0..4).map(|i| {
        let h2 = &h2;
        async move { h2_get(h2, "stuck-default.localhost", &format!("/together/{i}")).await }
    }));
    let (stuck_ones, fast) = tokio::join!(stuck_ones, fast_ones(3));
    assert!(stuck_ones.iter().all(|(status, _)| *status == 503), "{stuck_ones:?}");
    assert!(fast.iter().all(|(status, body)| (*status, body.as_str()) == (200, "fast")), "{fast:?}");
}

#[tokio::test]
async fn bursts_of_http2_streams_reuse_dyno_connections_and_idle_ones_close_in_time() {
    const HOST: &str = "burst-default.localhost";
    // More requests at the dyno at once than the pool once kept (256): an HTTP/2 client's
    // streams all go to the dyno at once, each on a connection of its own. One worker, so that
    // one pool serves them all.
    const BURST: usize = 300;
    let (wharf, tls) = start(&[("WHARF_ROUTER__WORKERS", "1")]).await;
    let (dyno, hold) = DynoServer::held("ok").await;
    hold.release();
    wharf.api.create_app("burst-default", &[&dyno]).await;
    until_status(wharf.https, &tls, HOST, "/", 200).await;
    let mut opened = Vec::new();
    for burst in 0..2 {
        // The dyno answers none of the burst until it holds all of it: BURST connections at once.
        hold.hold();
        let before = dyno.requests();
        let send = futures_util::future::join(
            h2_streams(&wharf, HOST, BURST / 2),
            h2_streams(&wharf, HOST, BURST - BURST / 2),
        );
        let gate = async {
            eventually(WAIT, "the whole burst at the dyno at once", || async {
                (dyno.requests() == before + BURST).then_some(())
            })
            .await;
            hold.release();
        };
        let ((one, two), ()) = tokio::join!(send, gate);
        assert!(one.iter().chain(&two).all(|&s| s == 200), "burst {burst}: {one:?} {two:?}");
        opened.push(dyno.connections());
    }
    assert_eq!(opened[1], opened[0], "the second burst opens no connection: the first one's are in the pool");
    assert!(dyno.open_connections() >= BURST, "{} open", dyno.open_connections());
    // One request at a time from now on reuses one connection; the others are closed once idle
    // longer than the pool trusts them (4 s), although the pool keeps being used.
    eventually(WAIT, "the burst's idle connections closed", || async {
        let r = client::send(wharf.https, Some(&tls), &Req::get(HOST, "/one")).await.ok()?;
        assert_eq!(r.status, 200);
        (dyno.open_connections() <= 1).then_some(())
    })
    .await;
}
