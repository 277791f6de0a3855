//! `wharf router` on a machine of its own, following a `wharf serve` control API over the watch
//! stream: it serves what the API publishes, keeps serving when the API is killed, starts from
//! its kept copy while the API is still away, and catches up when the API returns.

use std::time::Duration;

use wharf_testkit::client::{self, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::wharf::{Wharf, WharfRouter};
use wharf_testkit::{TempDir, eventually, free_port};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);

/// What the router answers for `host`, if it answers 200.
async fn body(router: &WharfRouter, host: &str) -> Option<String> {
    let tls = client::tls_config(&router.ca, &[b"http/1.1"]);
    let r = client::send(router.https, Some(&tls), &Req::get(host, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

#[tokio::test]
async fn a_remote_router_serves_its_last_good_snapshot_while_the_control_api_is_away() {
    let dir = TempDir::new("remote-router");
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("WHARF_CONTROL_API__LISTEN", listen.as_str())];
    let control = dir.path().join("control");
    let wharf = Wharf::serve_with(WHARF, &[], &control, &env).await;
    let token = std::fs::read_to_string(control.join("router-token")).expect("the router token");
    let token = token.trim().to_owned();
    let one = DynoServer::start("one").await;
    wharf.api.create_app("one-default", &[&one]).await;

    let url = format!("http://{listen}");
    let router_dir = dir.path().join("router");
    let router = WharfRouter::start(WHARF, &url, &token, &router_dir).await;
    eventually(WAIT, "the remote router to serve the app", || async {
        (body(&router, "one-default.localhost").await.as_deref() == Some("one")).then_some(())
    })
    .await;

    // The control API dies: the router keeps serving what it has.
    let killed = std::process::Command::new("kill").args(["-9", &wharf.pid()]).status().unwrap();
    assert!(killed.success());
    let (clean, _) = wharf.wait_exit().await;
    assert!(!clean);
    for _ in 0..20 {
        assert_eq!(
            body(&router, "one-default.localhost").await.as_deref(),
            Some("one"),
            "served while the API is away"
        );
    }

    // A restart while the API is still away serves the copy kept on disk.
    router.kill().await;
    let router = WharfRouter::start(WHARF, &url, &token, &router_dir).await;
    assert_eq!(body(&router, "one-default.localhost").await.as_deref(), Some("one"), "served from the kept copy");

    // The API returns with a change the router has not seen: it catches up.
    let wharf = Wharf::serve_with(WHARF, &[], &control, &env).await;
    let two = DynoServer::start("two").await;
    wharf.api.create_app("two-default", &[&two]).await;
    eventually(WAIT, "the router to catch up with the returned API", || async {
        (body(&router, "two-default.localhost").await.as_deref() == Some("two")).then_some(())
    })
    .await;
    assert_eq!(body(&router, "one-default.localhost").await.as_deref(), Some("one"));
    let copy = std::fs::metadata(router_dir.join("feed/snapshot.json")).expect("the kept copy");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(copy.permissions().mode() & 0o777, 0o600, "it holds secrets: owner only");

    // The feed needs a token; the router token reads the feed and nothing else (tests/feed.rs
    // checks every endpoint for each role).
    let anonymous = wharf_testkit::client::Api { addr: wharf.api.addr, token: None };
    let (status, _) = anonymous.call("GET", "/v1/snapshot", None).await;
    assert_eq!(status, 401);
    let wrong = wharf_testkit::client::Api { addr: wharf.api.addr, token: Some("not-the-token-at-all".into()) };
    assert_eq!(wrong.call("GET", "/v1/snapshot", None).await.0, 401);
    let data_plane = wharf_testkit::client::Api { addr: wharf.api.addr, token: Some(token.clone()) };
    assert_eq!(data_plane.call("GET", "/v1/snapshot", None).await.0, 200);
    for (method, path) in [("GET", "/apps"), ("POST", "/apps"), ("DELETE", "/apps/one-default"), ("GET", "/certs")] {
        let (status, out) = data_plane.call(method, path, Some(serde_json::json!({"name": "x"}))).await;
        assert_eq!(status, 403, "{method} {path}: {out}");
        assert_eq!(out["id"], "forbidden");
    }
    assert_eq!(wharf.api.call("GET", "/apps/one-default", None).await.0, 200, "and changed nothing");
    let (status, snapshot) = wharf.api.call("GET", "/v1/snapshot", None).await;
    assert_eq!(status, 200);
    assert_eq!(snapshot["apps"].as_array().map(Vec::len), Some(2), "{snapshot}");

    // Maintenance mode reaches a remote router through the feed: the page, and no dyno.
    wharf.api.expect("PATCH", "/apps/two-default", serde_json::json!({"maintenance": true}), 200).await;
    let tls = client::tls_config(&router.ca, &[b"http/1.1"]);
    let page = eventually(WAIT, "the remote router to serve the maintenance page", || async {
        let r = client::send(router.https, Some(&tls), &Req::get("two-default.localhost", "/")).await.ok()?;
        (r.status == 503).then_some(r)
    })
    .await;
    assert!(page.text().contains("Offline for maintenance"), "{}", page.text());
    let seen = two.requests();
    let again = client::send(router.https, Some(&tls), &Req::get("two-default.localhost", "/")).await.unwrap();
    assert_eq!((again.status.as_u16(), two.requests()), (503, seen), "no request reached the dyno");
    assert_eq!(body(&router, "one-default.localhost").await.as_deref(), Some("one"), "other apps serve on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_routers_canary_abort_is_recorded_for_every_router() {
    let dir = TempDir::new("remote-canary");
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("WHARF_CONTROL_API__LISTEN", listen.as_str()), ("WHARF_ROUTER__HTTP_REDIRECT", "false")];
    let control = dir.path().join("control");
    let wharf = Wharf::serve_with(WHARF, &[], &control, &env).await;
    let (base, next) = (DynoServer::start("base").await, DynoServer::failing("next", 0.3, 7).await);
    wharf.api.create_app("base-default", &[&base]).await;
    wharf.api.create_app("next-default", &[&next]).await;
    let token = std::fs::read_to_string(control.join("router-token")).expect("the router token");
    let router = WharfRouter::start_with(
        WHARF,
        &format!("http://{listen}"),
        token.trim(),
        &dir.path().join("router"),
        &[("WHARF_ROUTER__HTTP_REDIRECT", "false")],
    )
    .await;
    let canary = serde_json::json!({"canary_app": "next-default", "weight": 20});
    wharf.api.expect("PUT", "/apps/base-default/canary", canary, 201).await;
    eventually(WAIT, "the remote router to split the app", || async {
        let answers = client::load(router.http, "base-default.localhost", "/", 50, 1).await.ok()?;
        answers.iter().any(|a| a.body == "next").then_some(())
    })
    .await;

    // Only the remote router sees traffic; its abort is recorded by the control API.
    let aborted = eventually(WAIT, "the remote router's abort to be recorded", || async {
        client::load(router.http, "base-default.localhost", "/", 500, 4).await.ok()?;
        let (_, c) = wharf.api.call("GET", "/apps/base-default/canary", None).await;
        (c["state"] == "aborted").then_some(c)
    })
    .await;
    assert!(aborted["evidence"]["canary"]["errors"].as_u64().unwrap() > 0, "{aborted}");
    assert_ne!(aborted["evidence"]["decision"], "aborted by hand", "{aborted}");

    // `wharf serve`'s own router, which judged nothing, follows (its table is rebuilt off the
    // request path once the verdict is recorded, so it is waited for): no request reaches the
    // canary.
    eventually(WAIT, "wharf serve's own router to stop the split", || async {
        let before = next.requests();
        let answers = client::load(wharf.http, "base-default.localhost", "/", 200, 2).await.ok()?;
        (answers.iter().all(|a| a.status == 200 && a.body == "base") && next.requests() == before).then_some(())
    })
    .await;
}
