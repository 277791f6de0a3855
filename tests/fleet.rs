//! The fleet: `wharf control-api` replicas on one PostgreSQL database feeding `wharf router`s
//! and a consumer group of `wharf logshuttle`s on one Kafka broker, every part its own process,
//! broken on purpose under load. `benches/fleet.py` is the full-size drill (its numbers are in
//! benches/RESULTS.md); this is the small one, with the same rules: only requests in flight on a
//! killed router may fail, no line of a request answered by a surviving router is lost at a
//! drain, and every data plane follows the control API that is left. Log sessions opened
//! through any member of a logshuttle group stream every line of their app.
//!
//! Why one file: every test here starts the same processes with the same shared secrets and
//! reads them the same ways (feeds, metrics, numbered lines); split, each file would need
//! its own copy of those helpers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_testkit::client::{self, Api, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::numbered;
use wharf_testkit::postgres::Postgres;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::{WharfControlApi, WharfLogshuttle, WharfRouter};
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);

/// The four secrets every replica of one control API shares, as the environment variables that
/// carry them: the admin token, each data-plane role's token, and the session secret.
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn new() -> Secrets {
        let hex = || (0..32).map(|_| format!("{:x}", fastrand::u8(..16))).collect::<String>();
        Secrets(
            [
                "WHARF_ADMIN_TOKEN",
                "WHARF_ROUTER_TOKEN",
                "WHARF_LOGSHUTTLE_TOKEN",
                "WHARF_RUNTIME_TOKEN",
                "WHARF_SESSION_SECRET",
            ]
            .into_iter()
            .map(|k| (k, hex()))
            .collect(),
        )
    }

    fn get(&self, var: &str) -> &str {
        &self.0.iter().find(|(k, _)| *k == var).expect("a secret").1
    }

    /// The variables, with `more` after them.
    fn env<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str())).chain(more.iter().copied()).collect()
    }
}

/// Where each logshuttle-group test starts: a tansu broker and a control API on it, its topic
/// set by `kafka` (also the logshuttles' setting), under a directory named `name`. The broker
/// lives as long as this does.
struct KafkaStart {
    _broker: Tansu,
    dir: TempDir,
    secrets: Secrets,
    brokers: String,
    api: WharfControlApi,
}

impl KafkaStart {
    async fn new(name: &str, kafka: &[(&str, &str)]) -> KafkaStart {
        let broker = Tansu::start().await;
        let dir = TempDir::new(name);
        let secrets = Secrets::new();
        let brokers = broker.brokers();
        let api =
            WharfControlApi::start(WHARF, &["--kafka", &brokers], &dir.path().join("api"), &secrets.env(kafka)).await;
        KafkaStart { _broker: broker, dir, secrets, brokers, api }
    }
}

/// A client of the feed of the control API at `api`, with the router token.
fn router_feed(api: &WharfControlApi, secrets: &Secrets) -> Api {
    Api { addr: api.api.addr, token: Some(secrets.get("WHARF_ROUTER_TOKEN").to_owned()) }
}

/// The version and app names of the router part of the feed at `feed`.
async fn feed_apps(feed: &Api) -> (u64, Vec<String>) {
    let (status, snapshot) = feed.call("GET", "/v1/snapshot", None).await;
    assert_eq!(status, 200, "{snapshot}");
    let mut apps: Vec<String> = snapshot["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| a["key"].as_str().expect("an app key").to_owned())
        .collect();
    apps.sort();
    (snapshot["version"].as_u64().expect("a version"), apps)
}

/// What the router at `addr` answers for `host` over HTTPS, if it answers 200.
async fn body(https: std::net::SocketAddr, ca: &Path, host: &str) -> Option<String> {
    let tls = client::tls_config(ca, &[b"http/1.1"]);
    let r = client::send(https, Some(&tls), &Req::get(host, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// The snapshot version a data plane keeps in its data directory (`feed/snapshot.json`): the
/// newest it took from the feed.
fn kept_version(data_dir: &Path) -> u64 {
    let path = data_dir.join("feed/snapshot.json");
    std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|s| s["version"].as_u64())
        .unwrap_or(0)
}

/// Two `wharf control-api` on one PostgreSQL database are one API: what is written through
/// either is in both's feed, a router fed by one serves apps created through the other, and a
/// router given both URLs follows the second when the first is killed.
#[tokio::test]
async fn control_api_replicas_on_one_postgresql_serve_the_same_apps() {
    let pg = Postgres::start().await;
    let url = pg.database("fleet").await;
    let dir = TempDir::new("fleet-replicas");
    let secrets = Secrets::new();
    let env = secrets.env(&[]);
    let args = ["--database-url", url.as_str()];
    let a = WharfControlApi::start(WHARF, &args, &dir.path().join("a"), &env).await;
    let b = WharfControlApi::start(WHARF, &args, &dir.path().join("b"), &env).await;

    // A write through one is read through the other, and is in the other's feed.
    let one = DynoServer::start("one").await;
    a.api.create_app("one-default", &[&one]).await;
    eventually(WAIT, "b to serve the app created through a", || async {
        (b.api.call("GET", "/apps/one-default", None).await.0 == 200).then_some(())
    })
    .await;
    let two = DynoServer::start("two").await;
    b.api.create_app("two-default", &[&two]).await;
    let (feed_a, feed_b) = (router_feed(&a, &secrets), router_feed(&b, &secrets));
    let both = vec!["one-default".to_owned(), "two-default".to_owned()];
    eventually(WAIT, "both feeds to publish the same version with both apps", || async {
        let (va, apps_a) = feed_apps(&feed_a).await;
        let (vb, apps_b) = feed_apps(&feed_b).await;
        (va == vb && apps_a == both && apps_b == both).then_some(())
    })
    .await;

    // A router fed by b alone serves the app created through a.
    let only_b =
        WharfRouter::start(WHARF, &b.url(), secrets.get("WHARF_ROUTER_TOKEN"), &dir.path().join("router-b")).await;
    eventually(WAIT, "the router fed by b to serve a's app", || async {
        (body(only_b.https, &only_b.ca, "one-default.localhost").await.as_deref() == Some("one")).then_some(())
    })
    .await;

    // A router given both replicas follows b once a is killed: a change made through b after
    // the kill reaches it.
    let both_urls = format!("{},{}", a.url(), b.url());
    let router_dir = dir.path().join("router-ab");
    let router = WharfRouter::start(WHARF, &both_urls, secrets.get("WHARF_ROUTER_TOKEN"), &router_dir).await;
    eventually(WAIT, "the router fed by a to serve b's app", || async {
        (body(router.https, &router.ca, "two-default.localhost").await.as_deref() == Some("two")).then_some(())
    })
    .await;
    a.kill().await;
    let three = DynoServer::start("three").await;
    b.api.create_app("three-default", &[&three]).await;
    eventually(WAIT, "the router to fail over to b and serve the app created after a died", || async {
        (body(router.https, &router.ca, "three-default.localhost").await.as_deref() == Some("three")).then_some(())
    })
    .await;
    assert!(router.stderr().contains("control api unreachable"), "it noticed a was gone");

    // A control API alone has no log bus: `/log-events` is not served without `--kafka`, and
    // says so in Heroku's error shape.
    let (status, out) = b.api.call("POST", "/log-events", Some(serde_json::json!([]))).await;
    assert_eq!((status, out["id"].as_str()), (404, Some("not_found")), "{out}");
}

/// A canary's first abort, decided by one router from the traffic it alone saw, aborts the split
/// on every router, whichever replica each follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canarys_first_abort_on_one_router_aborts_on_every_router() {
    let pg = Postgres::start().await;
    let url = pg.database("canary").await;
    let dir = TempDir::new("fleet-canary");
    let secrets = Secrets::new();
    let env = secrets.env(&[]);
    let args = ["--database-url", url.as_str()];
    let a = WharfControlApi::start(WHARF, &args, &dir.path().join("a"), &env).await;
    let b = WharfControlApi::start(WHARF, &args, &dir.path().join("b"), &env).await;
    let (base, next) = (DynoServer::start("base").await, DynoServer::failing("next", 0.3, 7).await);
    a.api.create_app("base-default", &[&base]).await;
    a.api.create_app("next-default", &[&next]).await;
    let plain = [("WHARF_ROUTER__HTTP_REDIRECT", "false")];
    let token = secrets.get("WHARF_ROUTER_TOKEN");
    let judge = WharfRouter::start_with(WHARF, &a.url(), token, &dir.path().join("judge"), &plain).await;
    let other = WharfRouter::start_with(WHARF, &b.url(), token, &dir.path().join("other"), &plain).await;
    let canary = serde_json::json!({"canary_app": "next-default", "weight": 20});
    b.api.expect("PUT", "/apps/base-default/canary", canary, 201).await;
    for router in [&judge, &other] {
        eventually(WAIT, "each router to split the app", || async {
            let answers = client::load(router.http, "base-default.localhost", "/", 50, 1).await.ok()?;
            answers.iter().any(|a| a.body == "next").then_some(())
        })
        .await;
    }

    // Only the judge sees traffic; its abort is recorded, and read through the other replica.
    let aborted = eventually(WAIT, "the judge's abort to be recorded", || async {
        client::load(judge.http, "base-default.localhost", "/", 500, 4).await.ok()?;
        let (_, c) = b.api.call("GET", "/apps/base-default/canary", None).await;
        (c["state"] == "aborted").then_some(c)
    })
    .await;
    assert_ne!(aborted["evidence"]["decision"], "aborted by hand", "{aborted}");

    // The other router, which judged nothing and follows the other replica, stops the split.
    eventually(WAIT, "the other router to stop the split", || async {
        let before = next.requests();
        let answers = client::load(other.http, "base-default.localhost", "/", 200, 2).await.ok()?;
        (answers.iter().all(|a| a.status == 200 && a.body == "base") && next.requests() == before).then_some(())
    })
    .await;
}

/// One request of the drill's load: which router took it, the path (its line's key at the
/// drain), whether it was answered 200, and when its answer came.
#[derive(Debug, Clone)]
struct Sent {
    router: usize,
    app: usize,
    path: String,
    ok: bool,
    error: String,
    done: Instant,
}

/// The drill's HTTPS load: one sequential client per router, each marking its requests, so
/// that at most one request per router is in flight when that router is killed.
struct Load {
    sent: Arc<Mutex<Vec<Sent>>>,
    /// Per router: whether the load sends to it (false from its first failed request, that is
    /// just after its kill, until it is back).
    up: Arc<[AtomicBool; 2]>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(routers: [(std::net::SocketAddr, PathBuf); 2], apps: &'static [&'static str]) -> Load {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let up = Arc::new([AtomicBool::new(true), AtomicBool::new(true)]);
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (r, (https, ca)) in routers.into_iter().enumerate() {
            let (sent, up, stop) = (sent.clone(), up.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let tls = client::tls_config(&ca, &[b"http/1.1"]);
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if !up[r].load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let app = n % apps.len();
                    let path = format!("/drill/r{r}/{n}");
                    n += 1;
                    let host = format!("{}.localhost", apps[app]);
                    let got = client::send(https, Some(&tls), &Req::get(&host, &path)).await;
                    let (ok, error) = match got {
                        Ok(resp) if resp.status == 200 => (true, String::new()),
                        Ok(resp) => (false, format!("status {}", resp.status)),
                        Err(e) => {
                            // As a load balancer's health check would, the client takes a
                            // router that does not answer out of its rotation.
                            up[r].store(false, Ordering::Relaxed);
                            (false, e)
                        }
                    };
                    sent.lock().unwrap().push(Sent { router: r, app, path, ok, error, done: Instant::now() });
                }
            }));
        }
        Load { sent, up, stop, tasks }
    }

    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// Waits until `more` requests have been answered since now, so that a fault lands under
    /// load and its effects are measured with traffic.
    async fn run_for(&self, more: usize) {
        let start = self.count();
        eventually(WAIT, "the load to go on", || async { (self.count() >= start + more).then_some(()) }).await;
    }

    /// Waits until every app's drain has the line of a request answered after `t` (every
    /// drain is healthy, so delivery has resumed); returns how long after `t` the last of
    /// those first lines arrived, as seen here.
    async fn delivering_after(&self, t: Instant, drains: &[SyslogReceiver]) -> Duration {
        self.delivering_from(None, t, drains).await
    }

    /// As [`Load::delivering_after`], for the requests `router` answered (any router's if
    /// `None`).
    async fn delivering_from(&self, router: Option<usize>, t: Instant, drains: &[SyslogReceiver]) -> Duration {
        eventually(WAIT, "a line of a request answered after the fault at every drain", || async {
            let seen: Vec<HashMap<String, usize>> = drains.iter().map(paths_at).collect();
            let sent = self.sent.lock().unwrap();
            let mine = |s: &Sent| router.is_none_or(|r| s.router == r);
            let after = |app: usize| {
                sent.iter().any(|s| s.ok && mine(s) && s.app == app && s.done > t && seen[app].contains_key(&s.path))
            };
            (0..drains.len()).all(after).then_some(())
        })
        .await;
        t.elapsed()
    }

    /// Stops the clients and returns every request sent.
    async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

/// The paths of the access lines a drain received, with how many times each arrived.
fn paths_at(drain: &SyslogReceiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for msg in drain.messages() {
        let text = msg.text();
        if let Some(path) = text.split(' ').find_map(|w| w.strip_prefix("path=")) {
            *seen.entry(path.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

/// The value of the unlabelled metric `name` at the router's `/metrics` (its admin listener), 0
/// when absent.
async fn router_metric(router: &WharfRouter, name: &str) -> u64 {
    let r = client::send(router.admin, None, &Req::get("localhost", "/metrics")).await.expect("metrics");
    r.text().lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

/// How many lines the logshuttle's drains delivered (its `/metrics`).
async fn lines_sent(shuttle: &WharfLogshuttle) -> u64 {
    let r = client::send(shuttle.addr, None, &Req::get("localhost", "/metrics")).await.expect("metrics");
    r.text()
        .lines()
        .filter(|l| l.starts_with("wharf_drain_lines_sent_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

const APPS: &[&str] = &["alpha-default", "beta-default"];

/// The small drill: two control APIs on PostgreSQL, two routers, three logshuttles in one Kafka
/// group, HTTPS load across both routers, and one fault at a time: kill -9 a router (and
/// restart it from its kept snapshot), a logshuttle and a control API, restart the broker
/// (SIGTERM; it keeps its data, as a Kafka does), restart PostgreSQL, add a fourth logshuttle.
/// After the logshuttle's kill, the broker's return and the fourth's arrival, a line of a
/// request answered after it reaches every drain with nobody restarted (the time is printed),
/// and no Wharf process died at the broker's restart. At the end: only the request in flight on
/// the killed router failed; every line of every request answered on a healthy path is at its
/// app's drain (the broker's restart included: none is excused), and the killed router's lost
/// lines are only the last it answered before the kill; no router's producer gave a line up;
/// repeats are counted; every data plane saw the newest snapshot version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_survives_kill_9_of_each_part_under_load() {
    let mut pg = Postgres::start().await;
    let url = pg.database("drill").await;
    // The broker keeps its topics, offsets and group in a PostgreSQL server of its own (tansu's
    // engine that holds a group of several members), since the drill restarts the fleet's.
    let broker_pg = Postgres::start().await;
    let mut broker = Tansu::start_on_postgres(&broker_pg).await;
    let dir = TempDir::new("fleet-drill");
    let secrets = Secrets::new();
    let brokers = broker.brokers();
    let kafka = [("WHARF_KAFKA__BROKERS", brokers.as_str()), ("WHARF_KAFKA__PARTITIONS", "4")];
    let args = ["--database-url", url.as_str()];
    let api_env = secrets.env(&[]);
    let mut apis = Vec::new();
    for name in ["api0", "api1"] {
        apis.push(Some(WharfControlApi::start(WHARF, &args, &dir.path().join(name), &api_env).await));
    }
    let api_urls: Vec<String> = apis.iter().flatten().map(WharfControlApi::url).collect();
    let admin = apis[1].as_ref().unwrap().api.clone();
    let dynos = [DynoServer::start("alpha").await, DynoServer::start("beta").await];
    let drains = [SyslogReceiver::tcp().await, SyslogReceiver::tcp().await];
    for ((app, dyno), drain) in APPS.iter().zip(&dynos).zip(&drains) {
        admin.create_app(app, &[dyno]).await;
        admin.expect("POST", &format!("/apps/{app}/log-drains"), serde_json::json!({"url": drain.url()}), 201).await;
    }

    // Each router and logshuttle follows both replicas, in a different order, so that the kill
    // of api0 moves some of them.
    let follow = |i: usize| {
        if i.is_multiple_of(2) {
            format!("{},{}", api_urls[0], api_urls[1])
        } else {
            format!("{},{}", api_urls[1], api_urls[0])
        }
    };
    let router_token = secrets.get("WHARF_ROUTER_TOKEN");
    let router_dirs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("router{i}"))).collect();
    // Each router's HTTPS port is fixed, so that a restarted router is where the load sends.
    let https: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", wharf_testkit::free_port())).collect();
    let router_env: Vec<Vec<(&str, &str)>> = https
        .iter()
        .map(|h| kafka.iter().copied().chain([("WHARF_ROUTER__HTTPS_LISTEN", h.as_str())]).collect())
        .collect();
    let mut routers = Vec::new();
    for (i, d) in router_dirs.iter().enumerate() {
        routers.push(Some(WharfRouter::start_with(WHARF, &follow(i), router_token, d, &router_env[i]).await));
    }
    let shuttle_env = secrets.env(&kafka);
    let shuttle_dirs: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("shuttle{i}"))).collect();
    let mut shuttles = Vec::new();
    for (i, d) in shuttle_dirs.iter().enumerate().take(3) {
        shuttles.push(Some(WharfLogshuttle::start(WHARF, &follow(i), &brokers, d, &shuttle_env).await));
    }
    for r in routers.iter().flatten() {
        for app in APPS {
            eventually(WAIT, "each router to serve each app", || async {
                body(r.https, &r.ca, &format!("{app}.localhost")).await.map(|_| ())
            })
            .await;
        }
    }
    let addrs = |r: &WharfRouter| (r.https, r.ca.clone());
    let load_start = Instant::now();
    let load = Load::start([addrs(routers[0].as_ref().unwrap()), addrs(routers[1].as_ref().unwrap())], APPS);
    load.run_for(40).await;
    // The group has formed and delivers before the first fault, from each router: a line each
    // answered from now on reaches every drain.
    let steady = Instant::now();
    for r in 0..2 {
        load.delivering_from(Some(r), steady, &drains).await;
    }
    // The table's first row: the load before any fault (recovery: none to make).
    let mut report = vec![("steady state (no fault)", load_start, Duration::ZERO)];

    // kill -9 a router: the load stops sending to it once it is gone; it restarts from its kept
    // copy and takes load again.
    let t = Instant::now();
    let router0_kill = t;
    // What router0's producer holds unacknowledged at its kill, at most: the lines it took
    // (published) that the broker had not acknowledged (produced), read just before the kill,
    // and those of the requests it answers from that read on.
    let sampled = Instant::now();
    let published = router_metric(routers[0].as_ref().unwrap(), "wharf_bus_events_published_total").await;
    let produced = router_metric(routers[0].as_ref().unwrap(), "wharf_bus_kafka_events_produced_total").await;
    routers[0].take().unwrap().kill().await;
    let router0_killed = Instant::now();
    load.run_for(20).await;
    let again = WharfRouter::start_with(WHARF, &follow(0), router_token, &router_dirs[0], &router_env[0]).await;
    assert_eq!(body(again.https, &again.ca, "alpha-default.localhost").await.as_deref(), Some("alpha"));
    routers[0] = Some(again);
    let router0_back = Instant::now();
    load.up[0].store(true, Ordering::Relaxed);
    report.push(("kill -9 router0 (restarted on its port, from its kept copy)", t, t.elapsed()));

    // kill -9 the logshuttle that took the most lines, so that it surely owned an app's
    // partition: its partitions move to the others, which deliver what it had not.
    let mut received = Vec::new();
    for s in shuttles.iter().flatten() {
        received.push(lines_sent(s).await);
    }
    let busiest = (0..received.len()).max_by_key(|&i| received[i]).unwrap();
    assert!(received[busiest] > 0, "the logshuttles delivered the load's lines: {received:?}");
    let t = Instant::now();
    shuttles[busiest].take().unwrap().kill().await;
    // The survivors take its partitions over by themselves (nobody is restarted or added): a
    // line of a request answered after the kill reaches every drain.
    let took = load.delivering_after(t, &drains).await;
    report.push(("kill -9 the busiest logshuttle (delivering again at every drain)", t, took));
    load.run_for(40).await;

    // kill -9 a control API: the data planes following it move to the other, and a change
    // made through the other reaches every router.
    let t = Instant::now();
    apis[0].take().unwrap().kill().await;
    let gamma = DynoServer::start("gamma").await;
    admin.create_app("gamma-default", &[&gamma]).await;
    for r in routers.iter().flatten() {
        eventually(WAIT, "every router to serve the app created after api0 died", || async {
            (body(r.https, &r.ca, "gamma-default.localhost").await.as_deref() == Some("gamma")).then_some(())
        })
        .await;
    }
    report.push(("kill -9 api0 (change through api1 served everywhere)", t, t.elapsed()));
    load.run_for(20).await;

    // Restart the broker as an operator does (SIGTERM, then start on its port). It keeps its
    // data, so the topic, the committed offsets and the group are there when it is back: no
    // Wharf process dies, delivery resumes by itself, and no line is lost (asserted at the end
    // with every other: what the stopping broker refused, the producers send again).
    let t = Instant::now();
    broker.terminate().await;
    broker.start_again().await;
    load.delivering_after(Instant::now(), &drains).await;
    for (i, s) in shuttles.iter_mut().enumerate() {
        if let Some(s) = s {
            assert_eq!(s.exit_status(), None, "shuttle{i} died at the broker's restart:\n{}", s.stderr());
        }
    }
    report.push(("restart the broker, SIGTERM (delivering again at every drain)", t, t.elapsed()));
    load.run_for(20).await;

    // Restart PostgreSQL: the API serves reads and the data planes their snapshots meanwhile;
    // writes work again once it is back.
    let t = Instant::now();
    pg.stop().await;
    load.run_for(20).await;
    assert_eq!(admin.call("GET", "/apps/alpha-default", None).await.0, 200, "reads are served from memory");
    pg.start_again().await;
    let delta = DynoServer::start("delta").await;
    eventually(WAIT, "a write to succeed once PostgreSQL is back", || async {
        let body = serde_json::json!({"name": "delta", "space": "default"});
        matches!(admin.call("POST", "/apps", Some(body)).await.0, 201 | 409).then_some(())
    })
    .await;
    let dyno = serde_json::json!({"type": "web", "host": "127.0.0.1", "port": delta.port()});
    admin.expect("PUT", "/apps/delta-default/dynos/web.0", dyno, 201).await;
    for r in routers.iter().flatten() {
        eventually(WAIT, "every router to serve the app created after the restart", || async {
            (body(r.https, &r.ca, "delta-default.localhost").await.as_deref() == Some("delta")).then_some(())
        })
        .await;
    }
    report.push(("restart PostgreSQL (write served everywhere)", t, t.elapsed()));

    // A fourth logshuttle joins the group: partitions move to it.
    let t = Instant::now();
    shuttles.push(Some(WharfLogshuttle::start(WHARF, &follow(3), &brokers, &shuttle_dirs[3], &shuttle_env).await));
    load.run_for(40).await;
    let took = load.delivering_after(t, &drains).await;
    report.push(("add shuttle3 (delivering at every drain)", t, took));

    let sent = load.stop().await;

    // Failures: only requests in flight on router 0 when it was killed (one client, so one).
    let failed: Vec<&Sent> = sent.iter().filter(|s| !s.ok).collect();
    let failed_on = |r: usize| failed.iter().filter(|s| s.router == r).count();
    assert_eq!(failed_on(1), 0, "the surviving router failed nothing: {failed:?}");
    assert!(failed_on(0) <= 1, "only the request in flight on the killed router: {failed:?}");
    assert!(
        failed.iter().all(|s| s.done >= router0_kill && s.done <= router0_back),
        "a request failed only because router0 was killed (between its kill and its return): {failed:?}"
    );

    // Lines: every request answered on a healthy path (router 1 throughout, router 0 after its
    // restart) is at its app's drain. Router 0's lines still in its producer's buffer when it
    // was killed may be gone: counted, and checked to be only those.
    let wanted: Vec<&Sent> = sent.iter().filter(|s| s.ok).collect();
    let healthy = |s: &&&Sent| s.router == 1 || s.done > router0_killed;
    let seen = eventually(WAIT, "every line of a request answered on a healthy path at its drain", || async {
        let seen: Vec<HashMap<String, usize>> = drains.iter().map(paths_at).collect();
        wanted.iter().filter(healthy).all(|s| seen[s.app].contains_key(&s.path)).then_some(seen)
    })
    .await;
    // Router 0's lost lines can only be those it answered before its kill and its broker had
    // not acknowledged: at most what its producer held then. (Not necessarily the last it
    // answered: with tansu on PostgreSQL a line was lost while three answered after it arrived,
    // the broker finishing a connection's produce requests out of order.) Nothing it answered
    // after its restart is lost.
    let lost: Vec<&&Sent> = wanted.iter().filter(|s| !seen[s.app].contains_key(&s.path)).collect();
    assert!(lost.iter().all(|s| s.router == 0 && s.done <= router0_killed), "lost on a healthy path: {lost:?}");
    let answered_since = sent.iter().filter(|s| s.router == 0 && s.done >= sampled && s.done <= router0_back).count();
    let unacknowledged = published.saturating_sub(produced) as usize + answered_since;
    assert!(
        lost.len() <= unacknowledged,
        "router0 lost {} lines, more than its producer held unacknowledged at its kill ({published} taken, \
         {produced} acknowledged, {answered_since} answered since): {lost:?}",
        lost.len()
    );
    let lost_killed = lost.len();
    let duplicates: usize = seen.iter().flat_map(|m| m.values()).map(|n| n - 1).sum();

    // Versions: every data plane alive took the newest snapshot the API published.
    let (newest, _) = feed_apps(&router_feed(apis[1].as_ref().unwrap(), &secrets)).await;
    let mut versions = BTreeMap::new();
    for (i, d) in router_dirs.iter().enumerate() {
        versions.insert(format!("router{i}"), kept_version(d));
    }
    for (i, d) in shuttle_dirs.iter().enumerate() {
        if shuttles[i].is_some() {
            eventually(WAIT, "every logshuttle to take the newest snapshot", || async {
                (kept_version(d) == newest).then_some(())
            })
            .await;
        }
        versions.insert(format!("shuttle{i}"), kept_version(d));
    }
    for (i, _) in router_dirs.iter().enumerate() {
        assert_eq!(versions[&format!("router{i}")], newest, "router{i} serves the newest snapshot");
    }
    for s in &failed {
        eprintln!("failed on router{}: {} {}", s.router, s.path, s.error);
    }
    // The routers' producers gave no line up (router0's since its restart): what the stopping
    // broker refused was sent again.
    for (i, r) in routers.iter().enumerate() {
        let r = r.as_ref().expect("both routers run at the end");
        let mut counts = Vec::new();
        for what in ["produced", "failed", "retried", "dropped"] {
            counts.push((what, router_metric(r, &format!("wharf_bus_kafka_events_{what}_total")).await));
        }
        eprintln!("router{i}'s kafka producer: {counts:?}");
        assert_eq!(counts[3].1, 0, "router{i}'s producer dropped lines: {counts:?}");
    }
    // The issue's columns per fault, from its start to the next one's: requests answered in it,
    // failed, lines lost (only those the killed router had not handed to Kafka, asserted above:
    // none at a healthy path), lines delivered more than once
    // (counted: at least once across a rebalance), and the time to recover (each bounded by
    // the WAIT deadline of the poll that measured it).
    eprintln!("{:66} {:>8} {:>6} {:>5} {:>4} {:>10}", "fault", "requests", "failed", "lost", "dup", "recovery");
    for (i, (fault, start, took)) in report.iter().enumerate() {
        let end = report.get(i + 1).map(|r| r.1);
        let mine: Vec<&Sent> = sent.iter().filter(|s| s.done >= *start && end.is_none_or(|e| s.done < e)).collect();
        let failed = mine.iter().filter(|s| !s.ok).count();
        let lost = mine.iter().filter(|s| s.ok && !seen[s.app].contains_key(&s.path)).count();
        let dup: usize = mine.iter().filter(|s| s.ok).map(|s| seen[s.app].get(&s.path).map_or(0, |n| n - 1)).sum();
        eprintln!("{fault:66} {:>8} {failed:>6} {lost:>5} {dup:>4} {took:>10.2?}", mine.len());
    }
    eprintln!(
        "requests {} failed {} (on the killed router: {}), lines lost on surviving routers 0, lost from the killed router's buffer {lost_killed}, duplicates {duplicates}, versions {versions:?} (newest {newest})",
        sent.len(),
        failed.len(),
        failed_on(0)
    );
    assert!(wanted.len() > 200, "the load ran: {} answered", wanted.len());
}

/// The partitions of Wharf's topic each of `shuttles` says in its `/metrics` that it owns
/// (`wharf_logshuttle_partition_assigned`), in order; `None` while one has no assignment yet.
async fn owned(shuttles: &[WharfLogshuttle]) -> Option<Vec<Vec<i32>>> {
    let mut all = Vec::new();
    for s in shuttles {
        let text = client::send(s.addr, None, &Req::get("localhost", "/metrics")).await.ok()?.text();
        let count: usize =
            text.lines().find_map(|l| l.strip_prefix("wharf_logshuttle_partitions_assigned ")?.parse().ok())?;
        let prefix = "wharf_logshuttle_partition_assigned{topic=\"wharf-logs\",partition=\"";
        let mine: Vec<i32> =
            text.lines().filter_map(|l| l.strip_prefix(prefix)?.strip_suffix("\"} 1")?.parse().ok()).collect();
        assert_eq!(mine.len(), count, "the count is the partitions listed:\n{text}");
        all.push(mine);
    }
    Some(all)
}

/// Whether each of partitions `0..n` is owned by exactly one member and every member owns one.
fn each_partition_owned_once(owned: &[Vec<i32>], n: i32) -> bool {
    let mut all: Vec<i32> = owned.iter().flatten().copied().collect();
    all.sort_unstable();
    owned.iter().all(|m| !m.is_empty()) && all == (0..n).collect::<Vec<_>>()
}

/// The ownership rule the tests read from the members' `/metrics`: every partition owned by one
/// member, and no member idle.
#[test]
fn ownership_is_each_partition_once_with_no_idle_member() {
    let check = |owned: &[&[i32]], expected| {
        let owned: Vec<Vec<i32>> = owned.iter().map(|m| m.to_vec()).collect();
        assert_eq!(each_partition_owned_once(&owned, 4), expected, "{owned:?}");
    };
    check(&[&[0, 1], &[2, 3]], true);
    check(&[&[0, 1, 2, 3]], true);
    check(&[&[0, 1], &[1, 2, 3]], false);
    check(&[&[0, 1], &[3]], false);
    check(&[&[0, 1, 2, 3], &[]], false);
}

/// A consumer group of `members` `wharf logshuttle`s on 8 partitions, 8 apps with a drain
/// each: once every member delivers, the busiest gets `kill -9`, and every line of every app,
/// posted before and after the kill, reaches its drain with first arrivals in order, without
/// restarting anyone. Prints how long the last line took after the kill, and the repeats. The
/// broker keeps its data in memory, or in PostgreSQL when `keeping`.
async fn check_kill_9_of_a_member(members: usize, keeping: bool) {
    const APPS: usize = 8;
    const ROUND: usize = 100;
    let broker_pg = if keeping { Some(Postgres::start().await) } else { None };
    let broker = match &broker_pg {
        Some(pg) => Tansu::start_on_postgres(pg).await,
        None => Tansu::start().await,
    };
    let dir = TempDir::new("fleet-member-kill");
    let secrets = Secrets::new();
    let brokers = broker.brokers();
    let kafka = [("WHARF_KAFKA__PARTITIONS", "8")];
    let api =
        WharfControlApi::start(WHARF, &["--kafka", &brokers], &dir.path().join("api"), &secrets.env(&kafka)).await;
    let apps: Vec<String> = (0..APPS).map(|a| format!("app{a}-default")).collect();
    let mut drains = Vec::new();
    for app in &apps {
        api.api.create_app(app, &[]).await;
        let drain = SyslogReceiver::tcp().await;
        api.api.expect("POST", &format!("/apps/{app}/log-drains"), serde_json::json!({"url": drain.url()}), 201).await;
        drains.push(drain);
    }
    let env = secrets.env(&kafka);
    let mut shuttles = Vec::new();
    for m in 0..members {
        let data = dir.path().join(format!("shuttle{m}"));
        shuttles.push(WharfLogshuttle::start(WHARF, &api.url(), &brokers, &data, &env).await);
    }
    // Every member owns partitions before the first line, each partition one member, as their
    // /metrics say.
    eventually(WAIT, "every member to own partitions, each partition once", || async {
        owned(&shuttles).await.filter(|o| each_partition_owned_once(o, 8))
    })
    .await;
    for app in &apps {
        numbered::post(&api.api, app, 0..ROUND, 100).await;
    }
    for (drain, app) in drains.iter().zip(&apps) {
        numbered::all_lines(drain, ROUND, WAIT, &format!("{app}'s first lines before the kill")).await;
    }

    // The member that delivered the most lines surely owned an app's partition.
    let mut sent = Vec::new();
    for s in &shuttles {
        sent.push(lines_sent(s).await);
    }
    let busiest = (0..members).max_by_key(|&i| sent[i]).expect("a member");
    let t = Instant::now();
    shuttles.remove(busiest).kill().await;
    for app in &apps {
        numbered::post(&api.api, app, ROUND..2 * ROUND, 100).await;
    }
    let mut repeats = 0;
    for (drain, app) in drains.iter().zip(&apps) {
        let what = format!("every line of {app} after kill -9 of one member of {members}");
        let got = numbered::all_lines(drain, 2 * ROUND, WAIT, &what).await;
        repeats += numbered::check_all_in_order(app, &got, 2 * ROUND);
    }
    // The survivors own every partition between them, as their /metrics say.
    eventually(WAIT, "the survivors to own every partition once", || async {
        owned(&shuttles).await.filter(|o| each_partition_owned_once(o, 8))
    })
    .await;
    // What the survivors' group watch did (on tansu: one of them left and joined again).
    let watched: Vec<&str> = shuttles
        .iter()
        .flat_map(|s| {
            let log = s.stderr();
            let acts = log.lines().filter(|l| l.contains("leaving and joining again"));
            acts.filter_map(|l| ["Departed", "AloneShort", "Absent"].into_iter().find(|sign| l.contains(sign)))
                .collect::<Vec<_>>()
        })
        .collect();
    eprintln!(
        "kill -9 of shuttle{busiest} of {members} (it had sent {sent:?}): every line of {APPS} apps {:?} after the kill, {repeats} repeats; the group watch acted on {watched:?}",
        t.elapsed()
    );
}

/// `kill -9` of a logshuttle in a group of two and of three: its partitions are taken over by
/// the survivors (on tansu 0.6.0 only because the group watch leaves and joins again; see
/// bus/src/kafka/group_watch.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_logshuttles_partitions_are_taken_over_without_restarting_anyone() {
    for members in [2, 3] {
        check_kill_9_of_a_member(members, false).await;
    }
}

/// The same for a group of three on tansu's PostgreSQL storage (the drill's broker), whose
/// answer to a `read_committed` latest-offset lookup PostgreSQL 15 refuses: the members' watermark
/// lookups at each assignment read `read_uncommitted` (bus/src/kafka.rs, `ISOLATION_LEVEL`), or
/// the broker drops their connections and the group stalls (benches/RESULTS.md, fleet run 18).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_logshuttles_partitions_are_taken_over_on_a_broker_that_keeps_its_data() {
    check_kill_9_of_a_member(3, true).await;
}

/// Every member of a group of three `kill -9`ed at once, and one started again alone right
/// away, while the coordinator may still list the dead members (FE23 #7): it comes to own every
/// partition (its `/metrics`) and delivers a line posted after it started, nobody else started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_logshuttle_started_after_its_whole_group_died_owns_every_partition() {
    let kafka = [("WHARF_KAFKA__PARTITIONS", "8")];
    let KafkaStart { _broker, dir, secrets, brokers, api } = KafkaStart::new("fleet-lone-restart", &kafka).await;
    let env = secrets.env(&kafka);
    let app = "lone-default";
    api.api.create_app(app, &[]).await;
    let drain = SyslogReceiver::tcp().await;
    api.api.expect("POST", &format!("/apps/{app}/log-drains"), serde_json::json!({"url": drain.url()}), 201).await;
    let data = |m: usize| dir.path().join(format!("shuttle{m}"));
    let mut shuttles = Vec::new();
    for m in 0..3 {
        shuttles.push(WharfLogshuttle::start(WHARF, &api.url(), &brokers, &data(m), &env).await);
    }
    eventually(WAIT, "the three to own every partition, each once", || async {
        owned(&shuttles).await.filter(|o| each_partition_owned_once(o, 8))
    })
    .await;
    for s in shuttles.drain(..) {
        s.kill().await;
    }
    let lone = vec![WharfLogshuttle::start(WHARF, &api.url(), &brokers, &data(0), &env).await];
    let t = Instant::now();
    eventually(Duration::from_secs(90), "the lone member to own every partition", || async {
        owned(&lone).await.filter(|o| each_partition_owned_once(o, 8))
    })
    .await;
    numbered::post(&api.api, app, 0..10, 100).await;
    numbered::all_lines(&drain, 10, WAIT, "the lines posted after the lone start").await;
    let log = lone[0].stderr();
    let acts: Vec<&str> = log.lines().filter(|l| l.contains("leaving and joining again")).collect();
    eprintln!(
        "a lone member after kill -9 of the whole group: every partition {:?} after its start; the group watch: {acts:?}",
        t.elapsed()
    );
}

/// A second logshuttle joins a group of one in the middle of a stream (8 apps on 8 partitions,
/// lines posted throughout): the partitions end up shared, each owned once (the members'
/// `/metrics`), and every line of every app, posted before, during and after the rebalance,
/// reaches its drain with first arrivals in order (repeats counted: at least once). The member
/// that was alone had its partitions revoked and some assigned again, each assignment routing
/// them to its fetch queue anew (bus/src/kafka/fetch.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logshuttle_joining_in_the_middle_of_a_stream_loses_and_reorders_no_line() {
    const APPS: usize = 8;
    const ROUND: usize = 50;
    let kafka = [("WHARF_KAFKA__PARTITIONS", "8")];
    let KafkaStart { _broker, dir, secrets, brokers, api } = KafkaStart::new("fleet-join", &kafka).await;
    let env = secrets.env(&kafka);
    let apps: Vec<String> = (0..APPS).map(|a| format!("app{a}-default")).collect();
    let mut drains = Vec::new();
    for app in &apps {
        api.api.create_app(app, &[]).await;
        let drain = SyslogReceiver::tcp().await;
        api.api.expect("POST", &format!("/apps/{app}/log-drains"), serde_json::json!({"url": drain.url()}), 201).await;
        drains.push(drain);
    }
    let mut shuttles =
        vec![WharfLogshuttle::start(WHARF, &api.url(), &brokers, &dir.path().join("shuttle0"), &env).await];
    eventually(WAIT, "the first member to own every partition", || async {
        owned(&shuttles).await.filter(|o| each_partition_owned_once(o, 8))
    })
    .await;

    // Rounds of lines for every app, posted until told to stop (after the join) and a few more.
    let joined = Arc::new(AtomicBool::new(false));
    let posting = tokio::spawn({
        let (api, apps, joined) = (api.api.clone(), apps.clone(), joined.clone());
        async move {
            let mut rounds = 0;
            let mut after = 0;
            while after < 5 {
                for app in &apps {
                    numbered::post(&api, app, rounds * ROUND..(rounds + 1) * ROUND, 100).await;
                }
                rounds += 1;
                if joined.load(Ordering::Relaxed) {
                    after += 1;
                }
            }
            rounds * ROUND
        }
    });
    numbered::all_lines(&drains[0], ROUND, WAIT, "the stream to be under way").await;
    shuttles.push(WharfLogshuttle::start(WHARF, &api.url(), &brokers, &dir.path().join("shuttle1"), &env).await);
    let t = Instant::now();
    let shared = eventually(WAIT, "the two members to share the partitions, each owned once", || async {
        owned(&shuttles).await.filter(|o| each_partition_owned_once(o, 8))
    })
    .await;
    joined.store(true, Ordering::Relaxed);
    let lines = posting.await.expect("the posting task");
    let mut repeats = 0;
    for (drain, app) in drains.iter().zip(&apps) {
        let what = format!("every line of {app} across a member's join");
        let got = numbered::all_lines(drain, lines, WAIT, &what).await;
        repeats += numbered::check_all_in_order(app, &got, lines);
    }
    eprintln!(
        "a second member joined mid-stream: partitions {shared:?} {:?} after its start; {lines} lines of each of {APPS} apps, every one in order, {repeats} repeats",
        t.elapsed()
    );
}

/// A log session's stream, read in the background: its status and the lines so far.
struct Session {
    lines: Arc<Mutex<Vec<String>>>,
    reading: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Opens the session `path` (`/log-sessions/{token}`) through the logshuttle at `shuttle`;
    /// on a refusal, its status and body.
    async fn open(shuttle: std::net::SocketAddr, path: &str) -> Result<Session, (u16, String, Option<String>)> {
        use http_body_util::BodyExt;
        let resp = client::send_streaming(shuttle, None, &Req::get("localhost", path)).await.expect("a response");
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err((status, String::from_utf8_lossy(&body).into_owned(), retry));
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reading = tokio::spawn({
            let lines = lines.clone();
            let mut body = resp.into_body();
            async move {
                let mut partial = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    let Some(data) = frame.data_ref() else { continue };
                    partial.extend_from_slice(data);
                    while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=end).collect();
                        lines.lock().unwrap().push(String::from_utf8_lossy(&line[..end]).into_owned());
                    }
                }
            }
        });
        Ok(Session { lines, reading })
    }

    /// The numbers of the numbered lines it streamed, in order.
    fn numbers(&self) -> Vec<usize> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter_map(|l| l.split("line ").nth(1)?.get(..6)?.parse().ok()).collect()
    }

    /// Waits until it streamed lines `range`, and checks that it streamed exactly those, in
    /// order, and only lines of `app` that pass its filter (no noise).
    async fn expect(&self, range: std::ops::Range<usize>, app: &str, what: &str) {
        let want: Vec<usize> = range.collect();
        let last = *want.last().expect("lines");
        eventually(WAIT, what, || async { self.numbers().contains(&last).then_some(()) }).await;
        assert_eq!(self.numbers(), want, "{what}: every line, once, in order");
        for l in self.lines.lock().unwrap().iter() {
            assert!(l.contains(&format!(" {app} akkeris/build[build.1]: line ")), "{what}: a line not asked for: {l}");
        }
    }
}

/// The session's path of a new log session of `app` with `body`, created through `api`.
async fn session_path(api: &Api, app: &str, body: serde_json::Value) -> String {
    let s = api.expect("POST", &format!("/apps/{app}/log-sessions"), body, 201).await;
    let url = s["logplex_url"].as_str().expect("logplex_url");
    url[url.find("/log-sessions/").expect("a session path")..].to_owned()
}

/// The value of a metric without labels in a logshuttle's `/metrics`.
async fn metric(shuttle: &WharfLogshuttle, name: &str) -> Option<u64> {
    let r = client::send(shuttle.addr, None, &Req::get("localhost", "/metrics")).await.ok()?;
    r.text().lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A log session opened through any member of a group of three streams every line of its app,
/// whichever member consumes the app's partition: its history (`lines`), then each new line,
/// once and in order, with its filters (`source`, `dyno`) applied. It keeps streaming when the
/// member that consumed most is killed (`kill -9`: a rebalance). Each member streams at most
/// `session_readers` sessions (a 503 past it), and closes a session's reader when its client
/// goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_session_through_any_member_streams_every_line_of_its_app() {
    const APPS: usize = 3;
    const ROUND: usize = 100;
    const HISTORY: usize = 40;
    let kafka = [("WHARF_KAFKA__PARTITIONS", "4")];
    let KafkaStart { _broker, dir, secrets, brokers, api } = KafkaStart::new("fleet-sessions", &kafka).await;
    let apps: Vec<String> = (0..APPS).map(|a| format!("app{a}-default")).collect();
    for app in &apps {
        api.api.create_app(app, &[]).await;
    }
    // As many sessions as apps per member, and no more.
    let env = secrets.env(&[("WHARF_KAFKA__PARTITIONS", "4"), ("WHARF_LOGSHUTTLE__SESSION_READERS", "3")]);
    let mut shuttles = Vec::new();
    for m in 0..3 {
        shuttles
            .push(WharfLogshuttle::start(WHARF, &api.url(), &brokers, &dir.path().join(format!("s{m}")), &env).await);
    }
    eventually(WAIT, "every member to own partitions", || async {
        let owns = |log: String| {
            log.lines().rfind(|l| l.contains("partitions assigned")).is_some_and(|l| !l.contains("partitions=[]"))
        };
        shuttles.iter().all(|s| owns(s.stderr())).then_some(())
    })
    .await;
    // Each round of numbered lines comes with lines of another source and dyno, which no
    // session asks for.
    let post = |range: std::ops::Range<usize>| {
        let api = api.api.clone();
        let apps = apps.clone();
        async move {
            for app in &apps {
                let noise = serde_json::json!([{"app": app, "source": "app", "process": "web.1", "message": "noise"}]);
                api.expect("POST", "/log-events", noise, 202).await;
                numbered::post(&api, app, range.clone(), 100).await;
            }
        }
    };
    post(0..ROUND).await;

    // A session of each app through each member: for each app, two of the three do not
    // consume its partition. The filters alternate.
    let filters = [serde_json::json!({"source": "akkeris/build"}), serde_json::json!({"dyno": "build"})];
    let mut sessions: Vec<Vec<Session>> = Vec::new();
    for (m, shuttle) in shuttles.iter().enumerate() {
        let mut mine = Vec::new();
        for (a, app) in apps.iter().enumerate() {
            let mut body = filters[(m + a) % 2].clone();
            body["lines"] = HISTORY.into();
            body["tail"] = true.into();
            let path = session_path(&api.api, app, body).await;
            let session = Session::open(shuttle.addr, &path).await.map_err(|e| format!("{e:?}")).unwrap();
            mine.push(session);
        }
        sessions.push(mine);
    }
    post(ROUND..2 * ROUND).await;
    for (m, mine) in sessions.iter().enumerate() {
        for (session, app) in mine.iter().zip(&apps) {
            let what = format!("{app}'s history and new lines through member {m}");
            session.expect(ROUND - HISTORY..2 * ROUND, app, &what).await;
        }
    }

    // One more is refused, in Heroku's error shape, until one ends.
    let path = session_path(&api.api, &apps[0], serde_json::json!({"tail": true})).await;
    let Err((status, body, retry)) = Session::open(shuttles[0].addr, &path).await else {
        panic!("a fourth session on a member with three readers is refused")
    };
    assert_eq!((status, retry.as_deref()), (503, Some("5")), "{body}");
    assert!(body.contains(r#""id":"service_unavailable""#) && body.contains("log sessions"), "{body}");

    // kill -9 the member that took the most lines off the bus, surely an owner of some app's
    // partition: the sessions through the others stream on through the rebalance.
    let mut received = Vec::new();
    for s in &shuttles {
        received.push(metric(s, "wharf_logshuttle_events_received_total").await.unwrap_or(0));
    }
    let owner = (0..shuttles.len()).max_by_key(|&i| received[i]).expect("a member");
    assert!(received[owner] > 0, "the members took the lines: {received:?}");
    let assignments = |shuttles: &[WharfLogshuttle]| -> usize {
        shuttles.iter().map(|s| s.stderr().matches("partitions assigned").count()).sum()
    };
    shuttles.remove(owner).kill().await;
    sessions.remove(owner);
    let before = assignments(&shuttles);
    post(2 * ROUND..3 * ROUND).await;
    for (mine, shuttle) in sessions.iter().zip(&shuttles) {
        for (session, app) in mine.iter().zip(&apps) {
            let what = format!("{app}'s lines after kill -9 of member {owner}, through {}", shuttle.addr);
            session.expect(ROUND - HISTORY..3 * ROUND, app, &what).await;
        }
    }
    // And after the survivors took the dead member's partitions over.
    eventually(WAIT, "the survivors to rebalance", || async { (assignments(&shuttles) > before).then_some(()) }).await;
    post(3 * ROUND..4 * ROUND).await;
    for (mine, shuttle) in sessions.iter().zip(&shuttles) {
        for (session, app) in mine.iter().zip(&apps) {
            let what = format!("{app}'s lines after the rebalance, through {}", shuttle.addr);
            session.expect(ROUND - HISTORY..4 * ROUND, app, &what).await;
        }
    }

    // Clients that go leave no reader behind.
    for session in sessions.iter().flatten() {
        session.reading.abort();
    }
    drop(sessions);
    let no_readers = || async {
        for shuttle in &shuttles {
            eventually(WAIT, "every session's reader to close when its client went", || async {
                (metric(shuttle, "wharf_logshuttle_session_readers").await == Some(0)).then_some(())
            })
            .await;
        }
    };
    no_readers().await;

    // History alone (no tail): the app's last lines, then the end, through every member left;
    // their readers close too.
    for shuttle in &shuttles {
        for app in &apps {
            let path = session_path(&api.api, app, serde_json::json!({"lines": 10, "dyno": "build.1"})).await;
            let r = client::send(shuttle.addr, None, &Req::get("localhost", &path)).await.expect("history");
            assert_eq!(r.status, 200, "{}", r.text());
            let got: Vec<usize> =
                r.text().lines().filter_map(|l| l.split("line ").nth(1)?.get(..6)?.parse().ok()).collect();
            assert_eq!(
                got,
                (4 * ROUND - 10..4 * ROUND).collect::<Vec<_>>(),
                "{app}'s history through {}",
                shuttle.addr
            );
        }
    }
    no_readers().await;
}

/// A logshuttle that has no snapshot yet (every control API refuses its token, or none
/// answers) stays out of the consumer group (FE36: with a wrong CA or token it took partitions
/// and committed their lines as handled, delivering them nowhere). Checked per way of having no
/// snapshot: lines posted while it waits are all delivered by a member started afterwards, which
/// owns every partition alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logshuttle_without_a_snapshot_takes_no_partition_and_loses_no_line() {
    let kafka = [("WHARF_KAFKA__PARTITIONS", "8")];
    let KafkaStart { _broker, dir, secrets, brokers, api } = KafkaStart::new("fleet-no-snapshot", &kafka).await;
    let env = secrets.env(&kafka);
    let app = "blind-default";
    api.api.create_app(app, &[]).await;
    let drain = SyslogReceiver::tcp().await;
    api.api.expect("POST", &format!("/apps/{app}/log-drains"), serde_json::json!({"url": drain.url()}), 201).await;
    let cases: [(&str, String, &str); 2] = [
        ("a token the control api refuses", api.url(), "0123456789abcdef0123456789abcdef"),
        ("no control api answering", "http://127.0.0.1:9".to_owned(), secrets.get("WHARF_LOGSHUTTLE_TOKEN")),
    ];
    let mut posted = 0;
    for (i, (why, url, token)) in cases.iter().enumerate() {
        let data = dir.path().join(format!("blind{i}"));
        let stderr = data.with_extension("stderr");
        let mut blind_env = secrets.env(&kafka);
        blind_env.extend([("WHARF_LOGSHUTTLE_TOKEN", *token), ("WHARF_LOGSHUTTLE__LISTEN", "127.0.0.1:0")]);
        let mut blind = tokio::process::Command::new(WHARF)
            .args(["logshuttle", "--data-dir"])
            .arg(&data)
            .args(["--control-api", url, "--kafka", &brokers])
            .envs(blind_env)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("wharf logshuttle");
        eventually(WAIT, &format!("{why}: the logshuttle to say it waits for a snapshot"), || async {
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            log.contains("waiting for a control api's first snapshot").then_some(())
        })
        .await;
        numbered::post(&api.api, app, posted..posted + 10, 100).await;
        posted += 10;
        let member =
            vec![WharfLogshuttle::start(WHARF, &api.url(), &brokers, &dir.path().join(format!("m{i}")), &env).await];
        // Up to 90 s: the member of the case before was killed with -9, and the coordinator may
        // wait for its session to time out before it hands its partitions on.
        eventually(
            Duration::from_secs(90),
            &format!("{why}: the started member to own every partition alone"),
            || async { owned(&member).await.filter(|o| each_partition_owned_once(o, 8)) },
        )
        .await;
        numbered::all_lines(&drain, posted, WAIT, &format!("{why}: every line posted while it waited")).await;
        blind.kill().await.expect("kill");
        for m in member {
            m.kill().await;
        }
    }
}
