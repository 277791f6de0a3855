//! Canary releases end to end: `wharf serve` as a child process, canaries set over the REST API,
//! real backends answering with set error rates, real keep-alive requests through the router,
//! and the abort line read from real syslog drains; and two routers in one process following one
//! control plane, as a fleet follows one control API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_bus::{Bus, BusConfig};
use wharf_config::RouterConfig;
use wharf_control_api::{ControlPlane, Settings, SqliteStore};
use wharf_domain::{CanaryPolicy, CanaryState, SessionKey, Weight};
use wharf_router::{Listeners, Router, tls};
use wharf_testkit::client::{self, Answer, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::eventually;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(30);
const BASE: &str = "base-default.localhost";

/// `wharf serve` with its plain listener proxying, which the load runs over.
async fn start() -> Wharf {
    let dir = wharf_testkit::TempDir::new("canary");
    let wharf =
        Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &[("WHARF_ROUTER__HTTP_REDIRECT", "false")]).await;
    // The directory goes when the test ends; the process is killed before that.
    std::mem::forget(dir);
    wharf
}

/// Adds an app and waits until the router serves it: the router then follows a snapshot that
/// holds every change made before, the canary included. Keep the backend alive.
async fn router_caught_up(wharf: &Wharf, key: &str) -> DynoServer {
    let probe = DynoServer::start("probe").await;
    wharf.api.create_app(key, &[&probe]).await;
    let host = format!("{key}.localhost");
    eventually(WAIT, &format!("{host} to answer"), || async {
        let r = client::send(wharf.http, None, &Req::get(&host, "/")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    probe
}

/// Sends `n` requests to the base app over `connections` keep-alive connections.
async fn load(wharf: &Wharf, host: &str, n: usize, connections: usize) -> Vec<Answer> {
    client::load(wharf.http, host, "/", n, connections).await.expect("every request is answered")
}

fn count(answers: &[Answer], body: &str) -> usize {
    answers.iter().filter(|a| a.body == body.as_bytes()).count()
}

async fn canary(wharf: &Wharf) -> Value {
    let (status, c) = wharf.api.call("GET", "/apps/base-default/canary", None).await;
    assert_eq!(status, 200, "{c}");
    c
}

#[tokio::test]
async fn the_canary_takes_its_share_of_every_route_to_the_app() {
    let wharf = start().await;
    let api = &wharf.api;
    let (base, next) = (DynoServer::start("base").await, DynoServer::start("next").await);
    api.create_app("base-default", &[&base]).await;
    api.create_app("next-default", &[&next]).await;
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 201).await;
    let route = json!({"site": "www.example.com", "app": "base-default", "source_path": "/", "target_path": "/"});
    api.expect("POST", "/routes", route, 201).await;
    let c =
        api.expect("PUT", "/apps/base-default/canary", json!({"canary_app": "next-default", "weight": 20}), 201).await;
    assert_eq!((c["state"].as_str(), c["weight"].as_f64()), (Some("running"), Some(20.0)), "{c}");
    // The default judge: 5xx, 4xx and slow requests, each against the app's own rate (FE27).
    let want = (json!(["4xx", "5xx", "slow"]), Some(0.01));
    assert_eq!((c["errors"].clone(), c["false_alarm_rate"].as_f64()), want, "{c}");
    let _probe = router_caught_up(&wharf, "probe-default").await;

    // In every 1,000 requests the canary's share is within one percentage point of 20%, and
    // requests through the site are split the same way.
    let answers = load(&wharf, BASE, 3000, 4).await;
    for window in answers.windows(1000).step_by(100) {
        let share = count(window, "next");
        assert!(share.abs_diff(200) <= 10, "{share} of 1000 went to the canary");
    }
    assert_eq!(count(&answers, "next") + count(&answers, "base"), 3000);
    let on_site = load(&wharf, "www.example.com", 1000, 4).await;
    assert!(count(&on_site, "next").abs_diff(200) <= 2, "{} of 1000 through the site", count(&on_site, "next"));

    // The live counts are the router's, request for request.
    let c = canary(&wharf).await;
    let e = &c["evidence"];
    assert_eq!(e["canary"]["requests"].as_u64(), Some(next.requests() as u64), "{c}");
    assert_eq!(e["baseline"]["requests"].as_u64(), Some(base.requests() as u64), "{c}");
    assert_eq!((e["canary"]["errors"].as_u64(), e["baseline"]["errors"].as_u64()), (Some(0), Some(0)), "{c}");
    assert!(e["decision"].as_str().unwrap().starts_with("running"), "{c}");

    // Promoted, the canary takes every request; aborted by hand, none.
    let c = api.expect("POST", "/apps/base-default/canary/promote", json!({}), 200).await;
    assert_eq!(c["state"], "promoted");
    eventually(WAIT, "every request to go to the canary", || async {
        let a = load(&wharf, BASE, 50, 1).await;
        (count(&a, "next") == 50).then_some(())
    })
    .await;
    let c = api.expect("DELETE", "/apps/base-default/canary", json!({}), 200).await;
    assert_eq!((c["state"].as_str(), c["evidence"]["decision"].as_str()), (Some("aborted"), Some("aborted by hand")));
    eventually(WAIT, "every request to go to the app", || async {
        let a = load(&wharf, BASE, 50, 1).await;
        (count(&a, "base") == 50).then_some(())
    })
    .await;
    let (status, c) = api.call("POST", "/apps/base-default/canary/promote", None).await;
    assert_eq!((status, c["id"].as_str()), (409, Some("conflict")), "{c}");
}

#[tokio::test]
async fn a_worse_canary_is_aborted_within_the_requests_the_simulation_predicts() {
    let wharf = start().await;
    let api = &wharf.api;
    let (base, next) = (DynoServer::failing("base", 0.001, 1).await, DynoServer::failing("next", 0.05, 2).await);
    api.create_app("base-default", &[&base]).await;
    api.create_app("next-default", &[&next]).await;
    let (base_drain, next_drain) = (SyslogReceiver::tcp().await, SyslogReceiver::tcp().await);
    api.expect("POST", "/apps/base-default/log-drains", json!({"url": base_drain.url()}), 201).await;
    api.expect("POST", "/apps/next-default/log-drains", json!({"url": next_drain.url()}), 201).await;
    let c =
        api.expect("PUT", "/apps/base-default/canary", json!({"canary_app": "next-default", "weight": 10}), 201).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let _probe = router_caught_up(&wharf, "probe-default").await;

    // `cargo bench --bench canary`: at 10%, 0.1% against 5% was aborted after at most 3,460
    // requests in 5,000 simulated runs (median 1,170).
    const PREDICTED: usize = 4000;
    load(&wharf, BASE, PREDICTED, 4).await;
    let c = eventually(WAIT, "the canary to be aborted", || async {
        let c = canary(&wharf).await;
        (c["state"] == "aborted").then_some(c)
    })
    .await;
    let e = &c["evidence"];
    let (canary_n, baseline_n) =
        (e["canary"]["requests"].as_u64().unwrap(), e["baseline"]["requests"].as_u64().unwrap());
    assert!(canary_n + baseline_n <= PREDICTED as u64, "decided after {} requests: {c}", canary_n + baseline_n);
    assert!(e["p_value"].as_f64().unwrap() <= 0.01 && e["e_value"].as_f64().unwrap() >= 100.0, "{c}");
    assert!(e["canary"]["errors"].as_u64().unwrap() >= 5 && canary_n >= 100, "{c}");
    assert!(e["decision"].as_str().unwrap().starts_with("aborted: the canary's error rate"), "{c}");

    // The line with the evidence reaches both apps' log streams.
    for drain in [&base_drain, &next_drain] {
        let line = eventually(WAIT, "the abort line at the drain", || async {
            drain.messages().into_iter().map(|m| m.text()).find(|t| t.contains("code=C10"))
        })
        .await;
        assert!(line.contains(&format!("canary_id={id}")) && line.contains("app=base-default"), "{line}");
        assert!(line.contains("canary=next-default") && line.contains("p_value="), "{line}");
    }

    // Aborted, the canary takes nothing more.
    let before = next.requests();
    let answers = load(&wharf, BASE, 500, 4).await;
    assert_eq!(count(&answers, "base"), 500);
    assert_eq!(next.requests(), before);
}

#[tokio::test]
async fn an_abort_under_load_fails_only_the_canarys_requests_before_it() {
    let wharf = start().await;
    let api = &wharf.api;
    let (base, next) = (DynoServer::start("base").await, DynoServer::failing("next", 1.0, 3).await);
    api.create_app("base-default", &[&base]).await;
    api.create_app("next-default", &[&next]).await;
    api.expect("PUT", "/apps/base-default/canary", json!({"canary_app": "next-default", "weight": 10}), 201).await;
    let _probe = router_caught_up(&wharf, "probe-default").await;

    const CONNECTIONS: usize = 8;
    let answers = load(&wharf, BASE, 4000, CONNECTIONS).await;
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(failed.iter().all(|a| a.status == 500 && a.body == "next"), "only the canary fails");
    let c = eventually(WAIT, "the abort to be recorded", || async {
        let c = canary(&wharf).await;
        (c["state"] == "aborted").then_some(c)
    })
    .await;
    // The router stops the split the moment it decides; at most the requests already on their
    // way to the canary then fail after the decision.
    // Every canary request fails: evidence a thousand times past the threshold waives
    // min_requests (100), at the 7th failure in a row at 10% (docs/canary.md), with min_errors.
    let decided = c["evidence"]["canary"]["errors"].as_u64().unwrap() as usize;
    assert!((5..=20).contains(&decided), "overwhelming evidence aborts before min_requests: {c}");
    assert!(failed.len() <= decided + CONNECTIONS, "{} failed, {decided} before the decision", failed.len());
    assert!(answers[answers.len() - 2000..].iter().all(|a| a.status == 200 && a.body == "base"));
}

#[tokio::test]
async fn equal_error_rates_abort_no_more_often_than_the_false_alarm_rate_allows() {
    let wharf = start().await;
    let api = &wharf.api;
    // With a false-alarm rate of 0.001, the chance of two or more aborts in four runs is 6e-6:
    // more than one means the judge is wrong, not unlucky.
    const RUNS: u64 = 4;
    const REQUESTS: usize = 100_000;
    let mut aborts = 0;
    for run in 0..RUNS {
        let (base, next) =
            (DynoServer::failing("base", 0.05, 10 + run).await, DynoServer::failing("next", 0.05, 20 + run).await);
        let (b, n) = (format!("base{run}-default"), format!("next{run}-default"));
        api.create_app(&b, &[&base]).await;
        api.create_app(&n, &[&next]).await;
        // The guards off: the sequential test alone has to keep the false-alarm rate.
        let body = json!({
            "canary_app": n, "weight": 10, "false_alarm_rate": 0.001,
            "min_requests": 0, "min_errors": 1, "min_rate_ratio": 1, "min_rate_difference": 0,
        });
        api.expect("PUT", &format!("/apps/{b}/canary"), body, 201).await;
        let _probe = router_caught_up(&wharf, &format!("probe{run}-default")).await;
        load(&wharf, &format!("{b}.localhost"), REQUESTS, 8).await;
        let (_, c) = api.call("GET", &format!("/apps/{b}/canary"), None).await;
        let e = &c["evidence"];
        if c["state"] == "aborted" {
            aborts += 1;
        } else {
            let n = e["canary"]["requests"].as_u64().unwrap() + e["baseline"]["requests"].as_u64().unwrap();
            assert_eq!(n, REQUESTS as u64, "{c}");
            let errors = e["canary"]["errors"].as_u64().unwrap() + e["baseline"]["errors"].as_u64().unwrap();
            assert!((4500..5500).contains(&errors), "the backends fail 5%: {c}");
        }
    }
    assert!(aborts <= 1, "{aborts} of {RUNS} runs aborted a canary with the baseline's error rate");
}

/// The router's own "no web dynos" (H14) judges no code: a canary with no dyno (not yet up
/// after a restart, or crashed) takes no share, and an app with none (scaled down) answers its
/// requests with H14 that are not counted: counted, they would make any canary look better.
#[tokio::test]
async fn a_side_without_web_dynos_is_not_judged() {
    let wharf = start().await;
    let api = &wharf.api;
    // (the app has a dyno, the canary has one, then the baseline's and the canary's (requests,
    // errors) after 40 requests at 50%: too few for the judge to abort). A canary without a
    // dyno takes no share, so nothing is judged until it has one.
    let rows = [(false, true, [(0, 0), (20, 0)]), (true, false, [(0, 0), (0, 0)]), (true, true, [(20, 0), (20, 0)])];
    for (run, (base_up, next_up, want)) in rows.into_iter().enumerate() {
        let (base, next) = (DynoServer::start("base").await, DynoServer::start("next").await);
        let (b, n) = (format!("base{run}-default"), format!("next{run}-default"));
        let (base, next) = ([&base], [&next]);
        api.create_app(&b, if base_up { &base } else { &[] }).await;
        api.create_app(&n, if next_up { &next } else { &[] }).await;
        api.expect("PUT", &format!("/apps/{b}/canary"), json!({"canary_app": n, "weight": 50}), 201).await;
        let _probe = router_caught_up(&wharf, &format!("probe{run}-default")).await;
        let answers = load(&wharf, &format!("{b}.localhost"), 40, 1).await;
        let down = if base_up { 0 } else { 20 };
        assert_eq!(answers.iter().filter(|a| a.status == 503).count(), down, "a side without dynos answers 503 (H14)");
        let (_, c) = api.call("GET", &format!("/apps/{b}/canary"), None).await;
        let e = &c["evidence"];
        let got = ["baseline", "canary"].map(|side| (e[side]["requests"].as_u64(), e[side]["errors"].as_u64()));
        let want = want.map(|(r, e)| (Some(r), Some(e)));
        assert_eq!(got, want, "app up {base_up}, canary up {next_up}: {c}");
        assert_eq!(c["state"], "running", "{c}");
    }
}

/// A failed connect (H19) is judged only on a dyno the router has reached before: one it never
/// reached may be a registration whose process is gone (after a `kill -9` of Wharf, the dead
/// run's dynos stay registered until the new run removes them), so it says nothing about the
/// code, and counting it filled a soak with requests that never reached the canary (FE22c).
/// A dyno that answered and then went away crashed, and its failures count on its side.
#[tokio::test]
async fn a_failed_connect_is_judged_only_on_a_dyno_the_router_reached_before() {
    let wharf = start().await;
    let api = &wharf.api;
    // (which side's dyno goes away: "app" or "canary"; whether it goes before the first
    // request (never reached: a stale registration) or between two loads of 40 (reached: a
    // crash); the baseline's and the canary's (requests, errors) after both loads at 50%,
    // too few for the judge to decide).
    let rows = [
        ("app", false, [(0, 0), (40, 0)]),
        ("canary", false, [(40, 0), (0, 0)]),
        ("app", true, [(40, 20), (40, 0)]),
        ("canary", true, [(40, 0), (40, 20)]),
    ];
    for (run, (side, reached, want)) in rows.into_iter().enumerate() {
        let (base, next) = (DynoServer::start("base").await, DynoServer::start("next").await);
        let (b, n) = (format!("gone{run}-default"), format!("gonecanary{run}-default"));
        api.create_app(&b, &[&base]).await;
        api.create_app(&n, &[&next]).await;
        api.expect("PUT", &format!("/apps/{b}/canary"), json!({"canary_app": n, "weight": 50}), 201).await;
        let _probe = router_caught_up(&wharf, &format!("goneprobe{run}-default")).await;
        let gone = if side == "app" { &base } else { &next };
        if !reached {
            kill_dyno(gone).await;
        }
        let host = format!("{b}.localhost");
        let first = load(&wharf, &host, 40, 1).await;
        if reached {
            kill_dyno(gone).await;
        }
        let second = load(&wharf, &host, 40, 1).await;
        let failed = first.iter().chain(&second).filter(|a| a.status == 503).count();
        assert_eq!(failed, if reached { 20 } else { 40 }, "{side} gone (reached {reached}): its requests fail");
        let (_, c) = api.call("GET", &format!("/apps/{b}/canary"), None).await;
        let e = &c["evidence"];
        let got = ["baseline", "canary"].map(|side| (e[side]["requests"].as_u64(), e[side]["errors"].as_u64()));
        let want = want.map(|(r, e)| (Some(r), Some(e)));
        assert_eq!(got, want, "{side} gone, reached before: {reached}: {c}");
        assert_eq!(c["state"], "running", "{c}");
    }
}

/// Kills a dyno server and waits until its port refuses connections, as a dead process's does.
async fn kill_dyno(dyno: &DynoServer) {
    dyno.kill();
    eventually(WAIT, "the killed dyno to refuse connections", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", dyno.port())).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_canary_settings_are_refused_and_change_nothing() {
    let wharf = start().await;
    let api = &wharf.api;
    let (base, next) = (DynoServer::start("base").await, DynoServer::start("next").await);
    api.create_app("base-default", &[&base]).await;
    api.create_app("next-default", &[&next]).await;
    let put = json!({"canary_app": "next-default", "weight": 10});
    let good = api.expect("PUT", "/apps/base-default/canary", put, 201).await;
    // (body, status, what the message names)
    let check = |body: Value, status: u16, names: &'static str| async move {
        let out = api.expect("PUT", "/apps/base-default/canary", body.clone(), status).await;
        assert!(out["message"].as_str().unwrap().contains(names), "{body}: {out}");
    };
    check(json!({"weight": 10}), 422, "canary_app is required").await;
    check(json!({"canary_app": 7, "weight": 10}), 422, "canary_app must be a string").await;
    check(json!({"canary_app": "next-default"}), 422, "weight is required").await;
    check(json!({"canary_app": "next-default", "weight": 0}), 422, "more than 0").await;
    check(json!({"canary_app": "next-default", "weight": 100}), 422, "less than 100").await;
    check(json!({"canary_app": "next-default", "weight": "10"}), 422, "invalid type").await;
    check(json!({"canary_app": "next-default", "weight": 10, "errors": ["2xx"]}), 422, "\"2xx\"").await;
    check(json!({"canary_app": "next-default", "weight": 10, "false_alarm_rate": 0.9}), 422, "false_alarm_rate").await;
    check(json!({"canary_app": "next-default", "weight": 10, "min_requests": -1}), 422, "invalid value").await;
    check(json!({"canary_app": "next-default", "weight": 10, "colour": "red"}), 422, "unknown field").await;
    check(json!({"canary_app": "base-default", "weight": 10}), 422, "its own canary").await;
    check(json!({"canary_app": "nope-default", "weight": 10}), 404, "nope-default").await;
    let (status, out) = api.raw(&client::Req::get(&api.addr.to_string(), "/apps/nope-default/canary")).await;
    assert_eq!(status, 401, "no token: {out}");
    let (status, out) =
        api.call("PUT", "/apps/nope-default/canary", Some(json!({"canary_app": "next-default", "weight": 1}))).await;
    assert_eq!((status, out["id"].as_str()), (404, Some("not_found")), "{out}");
    let mut raw = client::Req::get(&api.addr.to_string(), "/apps/base-default/canary");
    raw.method = http::Method::PUT;
    raw.body = "{\"canary_app\": ".into();
    let raw = raw.header("authorization", &format!("Bearer {}", api.token.as_deref().unwrap()));
    let (status, out) = api.raw(&raw).await;
    assert_eq!((status, out["id"].as_str()), (400, Some("bad_request")), "{out}");
    assert_eq!(canary(&wharf).await["id"], good["id"], "nothing changed");
}

/// A router in this process following `plane`, its verdicts recorded there, as `wharf serve`
/// wires it; several of them stand for a fleet of routers following one control API.
async fn router_following(plane: &Arc<ControlPlane>, dir: &Path) -> Router {
    let config = RouterConfig {
        http_listen: "127.0.0.1:0".parse().unwrap(),
        https_listen: "127.0.0.1:0".parse().unwrap(),
        internal_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        http_redirect: false,
        workers: 1,
        ..RouterConfig::default()
    };
    let paths = tls::ensure_local_cert(dir, "localhost").unwrap();
    let key = tls::certified_key(&std::fs::read(&paths.cert).unwrap(), &std::fs::read(&paths.key).unwrap()).unwrap();
    let certs = Arc::new(tls::SniResolver::new(tls::CertSet::with_default(key)));
    let bus = Bus::connect(BusConfig::Embedded { capacity: 1 << 12 }).await.unwrap();
    let listeners = Listeners::bind(&config).unwrap();
    let mut router = Router::start(&config, listeners, certs, plane.subscribe(), bus.publisher.clone()).unwrap();
    tokio::spawn(plane.clone().record_verdicts(router.take_verdicts().unwrap()));
    router
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_router_to_abort_aborts_for_every_router() {
    let dir = wharf_testkit::TempDir::new("canary-fleet");
    let settings = Settings {
        stack_domain: "localhost".into(),
        https_port: 8443,
        session_base_url: "http://127.0.0.1:1".into(),
        session_ttl: Duration::from_secs(60),
        max_session_lines: 100,
        max_quantity: 100,
        dyno_sizes: wharf_control_api::DynoSizes::default(),
    };
    let store = Box::new(SqliteStore::in_memory().unwrap());
    let plane = Arc::new(ControlPlane::open(store, settings, Arc::new(SessionKey::generate())).await.unwrap());
    let (base, next) = (DynoServer::start("base").await, DynoServer::failing("next", 1.0, 4).await);
    for (app, backend) in [("base", &base), ("next", &next)] {
        plane.create_app(app.parse().unwrap(), "default").await.unwrap();
        let (name, web, host) = ("web.1".parse().unwrap(), "web".parse().unwrap(), "127.0.0.1".parse().unwrap());
        plane.put_dyno(&format!("{app}-default"), name, web, host, backend.port()).await.unwrap();
    }
    let policy = CanaryPolicy::with_weight(Weight::from_percent(50.0).unwrap());
    let (canary, _) = plane.put_canary("base-default", "next-default", policy).await.unwrap();
    let (a, b) = (router_following(&plane, dir.path()).await, router_following(&plane, dir.path()).await);

    // Only router A sees requests, and decides; router B follows through the snapshot.
    load_at(a.addrs().http, 1000).await;
    eventually(WAIT, "the abort to be recorded", || async {
        plane.read(|m| (m.canary(canary.id)?.state == CanaryState::Aborted).then_some(())).await
    })
    .await;
    let version = plane.read(|m| m.version()).await;
    eventually(WAIT, "router B to follow", || async { (b.version() >= version).then_some(()) }).await;
    let before = next.requests();
    let answers = load_at(b.addrs().http, 200).await;
    assert_eq!(count(&answers, "base"), 200, "router B sends nothing to an aborted canary");
    assert_eq!(next.requests(), before);
    let evidence = plane.read(|m| m.canary(canary.id).unwrap().evidence.clone()).await.unwrap();
    // Every canary request failed: decided before min_requests (100), on overwhelming evidence.
    let (requests, errors) = (evidence.canary.requests, evidence.canary.errors);
    assert!(requests == errors && (5..100).contains(&requests), "decided by A: {evidence:?}");
    a.shutdown().await;
    b.shutdown().await;
}

async fn load_at(addr: std::net::SocketAddr, n: usize) -> Vec<Answer> {
    client::load(addr, BASE, "/", n, 4).await.expect("every request is answered")
}

/// FE32: a client still waiting at a canary for its response head when the canary is aborted is
/// answered at once, not at the router's 30 s timeout (H12): a `GET` (idempotent, no body, so
/// nothing of it went anywhere but the dropped attempt) is sent again to the app's own dynos and
/// answered by them; a `POST` whose body went to the canary is answered 503 `C10`. A row for
/// each way a router learns of an abort: its own judge (every canary request counted slow), and
/// the snapshot (`DELETE /apps/{app}/canary`, as another router's verdict arrives). The canary
/// never answers: its requests could only end by the abort within the clients' 25 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_at_an_aborted_canary_are_answered_at_once() {
    let wharf = start().await;
    let api = &wharf.api;
    for (row, by_hand) in [("judge", false), ("hand", true)] {
        let base = DynoServer::start("base").await;
        // Held and never released: a canary that hangs.
        let (next, _hold) = DynoServer::held("next").await;
        let (b, n) = (format!("base{row}-default"), format!("next{row}-default"));
        api.create_app(&b, &[&base]).await;
        api.create_app(&n, &[&next]).await;
        let policy = if by_hand {
            // A judge that cannot abort by itself here: only 5xx are judged.
            json!({"canary_app": n, "weight": 50, "errors": ["5xx"]})
        } else {
            json!({"canary_app": n, "weight": 50, "errors": ["slow"], "slow_seconds": 0.2,
                   "min_requests": 5, "min_errors": 5})
        };
        api.expect("PUT", &format!("/apps/{b}/canary"), policy, 201).await;
        let _probe = router_caught_up(&wharf, &format!("probe{row}-default")).await;
        let host = format!("{b}.localhost");
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..40 {
            let (addr, host) = (wharf.http, host.clone());
            requests.spawn(async move {
                let mut req = Req::get(&host, "/");
                if i % 2 == 1 {
                    req.method = http::Method::POST;
                    req.body = bytes::Bytes::from_static(b"an order");
                }
                let sent = tokio::time::timeout(Duration::from_secs(25), client::send(addr, None, &req)).await;
                (req.method, sent.map(|r| r.map(|r| (r.status.as_u16(), r.text()))))
            });
        }
        // Both kinds are waiting at the canary before it is aborted.
        let waiting = |method: &str| next.seen().iter().filter(|s| s.method == method).count();
        eventually(WAIT, "a GET and a POST to wait at the canary", || async {
            (waiting("GET") > 0 && waiting("POST") > 0).then_some(())
        })
        .await;
        if by_hand {
            api.expect("DELETE", &format!("/apps/{b}/canary"), json!({}), 200).await;
        }
        let answers = requests.join_all().await;
        let ended = "the app's canary was aborted while this request waited for it\n";
        let mut refused = 0;
        for (method, answer) in &answers {
            match (method.as_str(), answer) {
                (_, Ok(Ok((200, body)))) if body == "base" => {}
                ("POST", Ok(Ok((503, body)))) if body == ended => refused += 1,
                _ => panic!("{row}: {method} answered {answer:?}; all: {answers:?}"),
            }
        }
        assert_eq!(refused, waiting("POST"), "{row}: each POST the canary held, and only those, was refused");
        // The abort is recorded (the router's verdict reaches the control API on its own).
        eventually(WAIT, "the canary to be recorded aborted", || async {
            let (_, c) = api.call("GET", &format!("/apps/{b}/canary"), None).await;
            (c["state"] == "aborted").then_some(())
        })
        .await;
    }
}
