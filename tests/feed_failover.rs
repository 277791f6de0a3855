//! The feed's failover between control API replicas, with real processes: two `wharf
//! control-api` on one PostgreSQL database and a `wharf router` given both. A killed replica
//! costs the router one reconnection to the other, at once, even after an earlier outage grew
//! its backoff (the backoff starts again after every snapshot taken); a hung (SIGSTOP) replica
//! is left after `[feed] silence_timeout`. The router logs every replica it follows and shows it
//! in `wharf_feed_following`. Over HTTPS, a router and a logshuttle move past a replica whose
//! certificate their CA did not sign, and follow only verified ones.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wharf_testkit::certs::TestCa;
use wharf_testkit::client::{self, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::postgres::Postgres;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::{WharfControlApi, WharfLogshuttle, WharfRouter};
use wharf_testkit::{TempDir, eventually, free_port};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);

/// The log line a follower writes when every replica failed in a row and it waits.
const ALL_FAILED: &str = "no control api replica answers";
/// The log line a follower writes when it moves on to the next replica with no wait.
const NEXT_NOW: &str = "control api unreachable; trying the next replica now";
/// The log line a follower writes when a replica's stream delivered a snapshot.
const FOLLOWING: &str = "following control api";

/// The shared secrets of the replicas.
fn secrets() -> Vec<(&'static str, String)> {
    let hex = || (0..32).map(|_| format!("{:x}", fastrand::u8(..16))).collect::<String>();
    ["WHARF_ADMIN_TOKEN", "WHARF_ROUTER_TOKEN", "WHARF_LOGSHUTTLE_TOKEN", "WHARF_RUNTIME_TOKEN", "WHARF_SESSION_SECRET"]
        .into_iter()
        .map(|k| (k, hex()))
        .collect()
}

/// Starts a replica on `port` with the database at `db`.
async fn replica(db: &str, port: u16, dir: &Path, secrets: &[(&'static str, String)]) -> WharfControlApi {
    let listen = format!("127.0.0.1:{port}");
    let mut env: Vec<(&str, &str)> = secrets.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("WHARF_CONTROL_API__LISTEN", &listen));
    WharfControlApi::start(WHARF, &["--database-url", db], dir, &env).await
}

/// The value of `field=` in `line`, as written by the log (`field=value`, up to a space).
fn field<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {field}="))? + field.len() + 2;
    Some(line[at..].split(' ').next().unwrap_or(""))
}

/// The `api=` of the last "following control api" line of `log`.
fn followed(log: &str) -> Option<String> {
    log.lines().rev().find(|l| l.contains(FOLLOWING)).and_then(|l| field(l, "api")).map(str::to_owned)
}

/// What the router answers for `host` over HTTPS, if 200.
async fn body(router: &WharfRouter, host: &str) -> Option<String> {
    let tls = client::tls_config(&router.ca, &[b"http/1.1"]);
    let r = client::send(router.https, Some(&tls), &Req::get(host, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// The router's `wharf_feed_following` series that are 1.
async fn following_metric(router: &WharfRouter) -> Vec<String> {
    let r = client::send(router.admin, None, &Req::get("localhost", "/metrics")).await.expect("metrics");
    r.text()
        .lines()
        .filter(|l| l.starts_with("wharf_feed_following{") && l.ends_with(" 1"))
        .map(str::to_owned)
        .collect()
}

/// After an outage of every replica (which grows the backoff to seconds), a kill -9 of the
/// followed replica sends the router to the other at once, and the backoff started again when
/// the first snapshot came back: the next wait, once both are gone, is the first step
/// (100 ms plus jitter), not the grown one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_one_reconnection_even_after_an_earlier_outage() {
    let pg = Postgres::start().await;
    let db = pg.database("failover").await;
    let dir = TempDir::new("feed-failover");
    let secrets = secrets();
    let ports = [free_port(), free_port()];
    let mut apis = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        apis.push(Some(replica(&db, *port, &dir.path().join(format!("api{i}")), &secrets).await));
    }
    let token = &secrets.iter().find(|(k, _)| *k == "WHARF_ROUTER_TOKEN").expect("router token").1;
    let urls = format!("http://127.0.0.1:{},http://127.0.0.1:{}", ports[0], ports[1]);
    let router = WharfRouter::start(WHARF, &urls, token, &dir.path().join("router")).await;
    let one = DynoServer::start("one").await;
    apis[0].as_ref().expect("api0").api.create_app("one-default", &[&one]).await;
    eventually(WAIT, "the router to serve the app", || async {
        (body(&router, "one-default.localhost").await.as_deref() == Some("one")).then_some(())
    })
    .await;
    assert_eq!(followed(&router.stderr()).as_deref(), Some(format!("127.0.0.1:{}", ports[0]).as_str()));

    // The earlier outage: both replicas gone until the router has waited six rounds, by then
    // seconds each.
    for api in &mut apis {
        api.take().expect("running").kill().await;
    }
    let grown = eventually(WAIT, "six rounds of waiting with both replicas gone", || async {
        let log = router.stderr();
        let waits: Vec<u64> = log
            .lines()
            .filter(|l| l.contains(ALL_FAILED))
            .filter_map(|l| field(l, "retry_in_ms")?.parse().ok())
            .collect();
        (waits.len() >= 6).then(|| *waits.last().expect("six"))
    })
    .await;
    assert!(grown > 1000, "the backoff grew to seconds ({grown} ms), so its reset below is observable");
    let before = router.stderr().matches(FOLLOWING).count();
    for (i, port) in ports.iter().enumerate() {
        apis[i] = Some(replica(&db, *port, &dir.path().join(format!("api{i}-again")), &secrets).await);
    }
    eventually(WAIT, "the router to follow a replica again", || async {
        (router.stderr().matches(FOLLOWING).count() > before).then_some(())
    })
    .await;

    // Kill -9 the followed replica; a change through the other reaches the router.
    let now = followed(&router.stderr()).expect("a followed replica");
    let dead = ports.iter().position(|p| now == format!("127.0.0.1:{p}")).expect("one of the two");
    let alive = 1 - dead;
    let mark = router.stderr().len();
    apis[dead].take().expect("running").kill().await;
    let killed = Instant::now();
    let two = DynoServer::start("two").await;
    apis[alive].as_ref().expect("alive").api.create_app("two-default", &[&two]).await;
    eventually(WAIT, "the router to serve the app created through the other replica", || async {
        (body(&router, "two-default.localhost").await.as_deref() == Some("two")).then_some(())
    })
    .await;
    eprintln!("kill -9 of the followed replica after an earlier outage: change served after {:?}", killed.elapsed());
    let since = router.stderr()[mark..].to_owned();
    assert!(since.contains(NEXT_NOW), "it moved on at once:\n{since}");
    assert!(!since.contains(ALL_FAILED), "it never waited, the other replica being up:\n{since}");
    let other = format!("127.0.0.1:{}", ports[alive]);
    assert_eq!(followed(&since).as_deref(), Some(other.as_str()), "it says which replica it follows:\n{since}");
    assert_eq!(following_metric(&router).await, [format!("wharf_feed_following{{api=\"{other}\"}} 1")]);

    // Both gone again: the first wait is the backoff's first step, as it started again with
    // the snapshot taken after the earlier outage.
    apis[alive].take().expect("running").kill().await;
    let first = eventually(WAIT, "the router to wait for the replicas again", || async {
        let log = router.stderr();
        let line = log[mark..].lines().find(|l| l.contains(ALL_FAILED))?.to_owned();
        field(&line, "retry_in_ms")?.parse::<u64>().ok()
    })
    .await;
    assert!(first <= 200, "the backoff started again from 100 ms (+ jitter), not from {grown} ms: {first} ms");
    assert!(following_metric(&router).await.is_empty(), "no replica followed while none answers");

    // Stopped while it retries (as when a whole fleet stops), it says nothing of the feed after
    // "shutting down" (FE31 LOW 8).
    let (ok, log) = router.terminate().await;
    assert!(ok, "{log}");
    let after = &log[log.find("shutting down").expect("it says it shuts down")..];
    assert!(!after.contains(ALL_FAILED) && !after.contains("control api unreachable"), "{after}");
}

/// A replica stopped with SIGSTOP (hung: the kernel still completes TCP handshakes for it) is
/// left after `[feed] silence_timeout`, here its default, and the router follows the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_replica_is_left_after_the_silence_timeout() {
    let pg = Postgres::start().await;
    let db = pg.database("hung").await;
    let dir = TempDir::new("feed-hung");
    let secrets = secrets();
    let ports = [free_port(), free_port()];
    let a = replica(&db, ports[0], &dir.path().join("a"), &secrets).await;
    let b = replica(&db, ports[1], &dir.path().join("b"), &secrets).await;
    let token = &secrets.iter().find(|(k, _)| *k == "WHARF_ROUTER_TOKEN").expect("router token").1;
    let urls = format!("http://127.0.0.1:{},http://127.0.0.1:{}", ports[0], ports[1]);
    let router = WharfRouter::start(WHARF, &urls, token, &dir.path().join("router")).await;
    eventually(WAIT, "the router to follow a", || async {
        (followed(&router.stderr()) == Some(format!("127.0.0.1:{}", ports[0]))).then_some(())
    })
    .await;
    let pid = std::fs::read(dir.path().join("a/addresses.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|doc| doc["pid"].as_u64())
        .expect("a's pid");
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill").success();
        assert!(ok, "kill {sig} {pid}");
    };
    stop("-STOP");
    let stopped = Instant::now();
    let one = DynoServer::start("one").await;
    b.api.create_app("one-default", &[&one]).await;
    eventually(WAIT, "the router to serve the app created through b", || async {
        (body(&router, "one-default.localhost").await.as_deref() == Some("one")).then_some(())
    })
    .await;
    eprintln!("SIGSTOP of the followed replica: change served after {:?}", stopped.elapsed());
    stop("-CONT");
    let log = router.stderr();
    assert!(log.contains("nothing heard for 5s"), "the default silence timeout ended a's stream:\n{log}");
    assert_eq!(followed(&log), Some(format!("127.0.0.1:{}", ports[1])), "{log}");
    drop(a);
}

/// Calls the HTTPS control API at `addr` with the admin token of `secrets`; the status.
async fn https_call(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    secrets: &[(&'static str, String)],
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> u16 {
    let admin = &secrets.iter().find(|(k, _)| *k == "WHARF_ADMIN_TOKEN").expect("admin token").1;
    let mut req = Req::get("127.0.0.1", path)
        .header("authorization", &format!("Bearer {admin}"))
        .header("content-type", "application/json");
    req.method = method.parse().expect("method");
    req.body = body.to_string().into();
    let r = client::send(addr, Some(tls), &req).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    r.status.as_u16()
}

/// The data planes' log lines since `mark` that name `api` as followed.
fn followed_lines<'a>(log: &'a str, api: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(FOLLOWING) && field(l, "api") == Some(api)).collect()
}

/// HTTPS replicas, a router and a logshuttle following `https://a,https://c,https://b`: a and b
/// serve certificates of the fleet's CA (the data planes' `[feed] control_api_ca`); c is a
/// replica on the same database with the same secrets but a certificate of another CA, so that
/// only verification keeps the data planes off it. Both follow a; kill -9 a: both try c, refuse
/// its certificate, and follow b, where a change made after the kill reaches both: a new app
/// answers through the router, and a new drain of it receives the router's access line through
/// the logshuttle. c is never followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_replicas_fail_over_and_one_with_a_wrong_certificate_is_never_followed() {
    let pg = Postgres::start().await;
    let db = pg.database("https_failover").await;
    let broker = Tansu::start().await;
    let brokers = broker.brokers();
    let dir = TempDir::new("feed-https-failover");
    let secrets = secrets();
    let (fleet, other) = (TestCa::new("fleet CA"), TestCa::new("not the fleet's CA"));
    let ca_file = dir.path().join("fleet-ca.pem");
    std::fs::write(&ca_file, fleet.pem()).unwrap();
    // a, c, b: in the order the data planes are given them.
    let names = ["a", "c", "b"];
    let ports = [free_port(), free_port(), free_port()];
    let apis_at: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut apis = Vec::new();
    for (i, ca) in [&fleet, &other, &fleet].into_iter().enumerate() {
        let issued = ca.issue(&["127.0.0.1", "localhost"], -1, 30);
        let (cert, key) = (dir.path().join(format!("{}.pem", names[i])), dir.path().join(format!("{}.key", names[i])));
        std::fs::write(&cert, &issued.chain_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut env: Vec<(&str, &str)> = secrets.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend([
            ("WHARF_CONTROL_API__LISTEN", apis_at[i].as_str()),
            ("WHARF_CONTROL_API__TLS_CERT", cert.as_str()),
            ("WHARF_CONTROL_API__TLS_KEY", key.as_str()),
        ]);
        let data = dir.path().join(names[i]);
        apis.push(Some(WharfControlApi::start(WHARF, &["--database-url", db.as_str()], &data, &env).await));
    }
    let urls = apis_at.iter().map(|a| format!("https://{a}")).collect::<Vec<_>>().join(",");
    let get = |k: &str| secrets.iter().find(|(name, _)| *name == k).expect("a secret").1.clone();
    let ca = ca_file.display().to_string();
    let kafka = [("WHARF_KAFKA__BROKERS", brokers.as_str()), ("WHARF_FEED__CONTROL_API_CA", ca.as_str())];
    let router_token = get("WHARF_ROUTER_TOKEN");
    let router = WharfRouter::start_with(WHARF, &urls, &router_token, &dir.path().join("router"), &kafka).await;
    let (shuttle_token, session) = (get("WHARF_LOGSHUTTLE_TOKEN"), get("WHARF_SESSION_SECRET"));
    let shuttle_env = [
        ("WHARF_LOGSHUTTLE_TOKEN", shuttle_token.as_str()),
        ("WHARF_SESSION_SECRET", session.as_str()),
        ("WHARF_FEED__CONTROL_API_CA", ca.as_str()),
    ];
    let shuttle = WharfLogshuttle::start(WHARF, &urls, &brokers, &dir.path().join("shuttle"), &shuttle_env).await;
    let tls = client::tls_config(&ca_file, &[b"http/1.1"]);
    let (a, b) = (apis[0].as_ref().expect("a").api.addr, apis[2].as_ref().expect("b").api.addr);
    let one = DynoServer::start("one").await;
    assert_eq!(https_call(a, &tls, &secrets, "POST", "/apps", json!({"name": "one", "space": "default"})).await, 201);
    let dyno = json!({"type": "web", "host": "127.0.0.1", "port": one.port()});
    assert_eq!(https_call(a, &tls, &secrets, "PUT", "/apps/one-default/dynos/web.1", dyno).await, 201);
    eventually(WAIT, "the router to serve the app created through a", || async {
        (body(&router, "one-default.localhost").await.as_deref() == Some("one")).then_some(())
    })
    .await;
    for (what, log) in [("router", router.stderr()), ("logshuttle", shuttle.stderr())] {
        assert_eq!(followed(&log).as_deref(), Some(apis_at[0].as_str()), "the {what} follows a first:\n{log}");
    }
    let marks = (router.stderr().len(), shuttle.stderr().len());

    // kill -9 a; a change through b: a new app with a drain.
    apis[0].take().expect("a").kill().await;
    let killed = Instant::now();
    let two = DynoServer::start("two").await;
    let drain = SyslogReceiver::tcp().await;
    assert_eq!(https_call(b, &tls, &secrets, "POST", "/apps", json!({"name": "two", "space": "default"})).await, 201);
    let dyno = json!({"type": "web", "host": "127.0.0.1", "port": two.port()});
    assert_eq!(https_call(b, &tls, &secrets, "PUT", "/apps/two-default/dynos/web.1", dyno).await, 201);
    let added =
        https_call(b, &tls, &secrets, "POST", "/apps/two-default/log-drains", json!({"url": drain.url()})).await;
    assert_eq!(added, 201);
    eventually(WAIT, "the router to serve the app created through b after a's kill", || async {
        (body(&router, "two-default.localhost").await.as_deref() == Some("two")).then_some(())
    })
    .await;
    let served = killed.elapsed();
    // Requests until one's access line reaches the new drain: the logshuttle took the drain
    // from b (and consumes the router's lines).
    let mut n = 0;
    let (at_router, at_drain) = (&router, &drain);
    eventually(WAIT, "a line of the new app at the drain added through b", move || {
        n += 1;
        let path = format!("/after-kill-{n}");
        let (router, drain) = (at_router, at_drain);
        async move {
            let tls = client::tls_config(&router.ca, &[b"http/1.1"]);
            let _ = client::send(router.https, Some(&tls), &Req::get("two-default.localhost", &path)).await;
            drain.messages().iter().any(|m| m.text().contains("path=/after-kill-")).then_some(())
        }
    })
    .await;
    let delivered = killed.elapsed();
    eprintln!(
        "kill -9 of the followed HTTPS replica: the router served the change {served:?} after, the drain had a line {delivered:?} after"
    );

    // Both moved past c, refusing its certificate, to b; c was never followed, before or after.
    for (what, log, mark) in [("router", router.stderr(), marks.0), ("logshuttle", shuttle.stderr(), marks.1)] {
        let since = &log[mark..];
        assert_eq!(followed(since).as_deref(), Some(apis_at[2].as_str()), "the {what} follows b:\n{since}");
        let refused = since.lines().any(|l| {
            field(l, "api") == Some(apis_at[1].as_str()) && l.contains("invalid peer certificate: UnknownIssuer")
        });
        assert!(refused, "the {what} refused c's certificate:\n{since}");
        assert!(followed_lines(&log, &apis_at[1]).is_empty(), "the {what} never followed c:\n{log}");
    }
    let following = following_metric(&router).await;
    assert_eq!(following, [format!("wharf_feed_following{{api=\"{}\"}} 1", apis_at[2])]);
}
