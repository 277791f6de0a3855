//! The local supervisor, `wharf serve`'s own runtime, with real processes, one behaviour per
//! test, each with its own `wharf`: a formation's command runs as web dynos the router serves
//! once they are healthy, with the app's config vars, and their output reaches the app's drains;
//! a change rolls to new dynos under load without one failed request, and so do restarts of one
//! dyno and of all; apps in one space reach each other through their services; an app without
//! a command is left to an external runtime; a crashing command is restarted and its crashes
//! logged; a worker is listed and restarted by name; a release that fails its health check
//! leaves the old dynos serving; and stopping Wharf stops the dynos.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use wharf_testkit::client::{self, Answer, Req};
use wharf_testkit::rfc5424::SyslogMessage;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::{Wharf, WharfRouter};
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
const HOST: &str = "api-default.localhost";

/// A `wharf serve` with a quick supervisor, app `api-default`, and a syslog drain on the app.
struct Setup {
    wharf: Wharf,
    receiver: SyslogReceiver,
    /// The web app's command.
    command: String,
    _dir: TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let dir = TempDir::new("supervisor");
        let script = dir.path().join("server.py");
        std::fs::write(&script, wharf_testkit::dyno_server::PYTHON_WEB_DYNO).unwrap();
        let env = [
            ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
            ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
            ("WHARF_SUPERVISOR__CONNECTION_GRACE", "500ms"),
            ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
            ("WHARF_SUPERVISOR__HEALTH_TIMEOUT", "20s"),
        ];
        let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
        let api = &wharf.api;
        api.create_app("api-default", &[]).await;
        let receiver = SyslogReceiver::tcp().await;
        let drain = api.expect("POST", "/apps/api-default/log-drains", json!({"url": receiver.url()}), 201).await;
        let label = format!("drain=\"{}\"", drain["id"].as_str().unwrap());
        eventually(WAIT, "the logshuttle to run the drain", || async {
            let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
            r.text().contains(&label).then_some(())
        })
        .await;
        let command = format!("exec python3 {}", script.display());
        Setup { wharf, receiver, command, _dir: dir }
    }

    /// Runs two web dynos of the app saying `hello`, and returns their names once the router
    /// serves them.
    async fn run_web(&self) -> Vec<String> {
        let (wharf, api) = (&self.wharf, &self.wharf.api);
        api.expect("PATCH", "/apps/api-default/config-vars", json!({"GREETING": "hello"}), 200).await;
        let web = json!({"updates": [{"type": "web", "quantity": 2, "command": self.command}]});
        api.expect("PATCH", "/apps/api-default/formation", web, 200).await;
        eventually(WAIT, "the app to answer through the router", || async {
            (answer(wharf).await.as_deref() == Some("hello")).then_some(())
        })
        .await;
        eventually(WAIT, "both dynos to be healthy", || async {
            let names = dyno_names(wharf).await;
            (names.len() == 2).then_some(names)
        })
        .await
    }

    /// The dynos' `listening on` lines at the drain, once each of `names` has said it.
    async fn listening(&self, names: &[String]) -> Vec<SyslogMessage> {
        eventually(WAIT, "the dynos' output at the drain", || async {
            let msgs: Vec<_> =
                self.receiver.messages().into_iter().filter(|m| m.text().starts_with("listening on")).collect();
            names.iter().all(|n| msgs.iter().any(|m| &m.procid == n)).then_some(msgs)
        })
        .await
    }
}

async fn answer(wharf: &Wharf) -> Option<String> {
    let r = client::send(wharf.http, None, &Req::get(HOST, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// The app's web dynos' names.
async fn dyno_names(wharf: &Wharf) -> Vec<String> {
    dynos_of_type(wharf, "web").await.into_iter().map(|(name, _)| name).collect()
}

/// The app's dynos of one type, with their states, as `GET /apps/{app}/dynos` lists them.
async fn dynos_of_type(wharf: &Wharf, dyno_type: &str) -> Vec<(String, String)> {
    let (_, dynos) = wharf.api.call("GET", "/apps/api-default/dynos", None).await;
    let of_type = dynos.as_array().into_iter().flatten().filter(|d| d["type"] == dyno_type);
    of_type.filter_map(|d| Some((d["name"].as_str()?.to_owned(), d["state"].as_str()?.to_owned()))).collect()
}

/// Stops the load and checks that no request failed during the rolls.
async fn no_failed_request(
    done: &AtomicBool,
    load: tokio::task::JoinHandle<Result<Vec<Answer>, String>>,
) -> Vec<Answer> {
    done.store(true, Ordering::Relaxed);
    let answers = load.await.unwrap().expect("no request failed outright");
    assert!(answers.len() >= 100);
    let bad: Vec<_> = answers.iter().filter(|a| a.status != 200).map(|a| a.status).collect();
    assert!(bad.is_empty(), "{} of {} requests failed during the rolls: {bad:?}", bad.len(), answers.len());
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_dynos_serve_through_the_router_once_healthy_and_their_output_reaches_the_drain() {
    let setup = Setup::start().await;
    let first = setup.run_web().await;
    let mut indexed: Vec<&str> = first.iter().map(|n| &n[..n.len() - 5]).collect();
    indexed.sort();
    assert_eq!(indexed, ["web.1-", "web.2-"], "named web.INDEX-xxxxx: {first:?}");
    let said = eventually(WAIT, "the dynos' output at the drain", || async {
        let msgs: Vec<_> =
            setup.receiver.messages().into_iter().filter(|m| m.text().starts_with("listening on")).collect();
        (msgs.len() >= 2).then_some(msgs)
    })
    .await;
    for m in &said {
        assert_eq!(m.app_name, "app");
        assert!(first.contains(&m.procid), "{} is one of {first:?}", m.procid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_rolls_to_new_dynos_under_load_without_a_failed_request() {
    let setup = Setup::start().await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let first = setup.run_web().await;
    let said = setup.listening(&first).await;

    let done = Arc::new(AtomicBool::new(false));
    let load = client::load_until(wharf.http, HOST, &done);
    api.expect("PATCH", "/apps/api-default/config-vars", json!({"GREETING": "bonjour"}), 200).await;
    eventually(WAIT, "the new release to serve alone", || async {
        let names = dyno_names(wharf).await;
        let rolled = names.len() == 2 && !names.iter().any(|n| first.contains(n));
        (rolled && answer(wharf).await.as_deref() == Some("bonjour")).then_some(())
    })
    .await;
    // Keep the load on until the old dynos have stopped.
    tokio::time::timeout(WAIT, async {
        while !first.iter().all(|n| std::net::TcpStream::connect(port_of(&said, n)).is_err()) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the old dynos stop");
    let answers = no_failed_request(&done, load).await;
    assert!(answers.iter().all(|a| a.body == "hello" || a.body == "bonjour"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_one_dyno_replaces_it_and_restarting_all_rolls_under_load_without_a_failed_request() {
    let setup = Setup::start().await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let second = setup.run_web().await;
    let done = Arc::new(AtomicBool::new(false));
    let load = client::load_until(wharf.http, HOST, &done);

    let one = &second[0];
    let (status, _) = api.call("DELETE", &format!("/apps/api-default/dynos/{one}"), None).await;
    assert_eq!(status, 202);
    let third = eventually(WAIT, "the dyno to be replaced", || async {
        let names = dyno_names(wharf).await;
        let replaced = names.len() == 2 && !names.contains(one) && names.contains(&second[1]);
        // The replacement takes the restarted dyno's index: `web.N-` is the start of its name.
        (replaced && names.iter().any(|n| n != one && n[..n.len() - 5] == one[..one.len() - 5])).then_some(names)
    })
    .await;
    let (status, _) = api.call("DELETE", "/apps/api-default/dynos", None).await;
    assert_eq!(status, 202);
    eventually(WAIT, "every dyno to be restarted", || async {
        let names = dyno_names(wharf).await;
        (names.len() == 2 && !names.iter().any(|n| third.contains(n))).then_some(())
    })
    .await;
    let answers = no_failed_request(&done, load).await;
    assert!(answers.iter().all(|a| a.body == "hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_in_one_space_reach_each_other_through_their_services() {
    let setup = Setup::start().await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let before = setup.run_web().await;
    // Apps in one space find each other at NAME_SERVICE_HOST:NAME_SERVICE_PORT, a stable port
    // in front of the other app's dynos. A service opening in the space restarts no other
    // app's dynos (their variables are fixed when they start, as Kubernetes' are); dynos
    // started after it see it.
    api.expect("POST", "/apps", json!({"name": "other", "space": "default"}), 201).await;
    api.expect("PATCH", "/apps/other-default/config-vars", json!({"GREETING": "from other"}), 200).await;
    let other = json!({"updates": [{"type": "web", "quantity": 1, "command": setup.command}]});
    api.expect("PATCH", "/apps/other-default/formation", other, 200).await;
    eventually(WAIT, "the other app to run", || async {
        let (_, dynos) = api.call("GET", "/apps/other-default/dynos", None).await;
        dynos.as_array()?.iter().any(|d| d["state"] == "up").then_some(())
    })
    .await;
    let get = |path| async move { client::send(wharf.http, None, &Req::get(HOST, path)).await.ok().map(|r| r.text()) };
    assert_eq!(get("/OTHER_SERVICE_HOST").await.as_deref(), Some("none"), "running dynos keep their variables");
    assert_eq!(dyno_names(wharf).await, before, "a service opening in the space restarts no other app's dynos");
    // A restart (a new roll) starts dynos that see the service.
    assert_eq!(api.call("DELETE", "/apps/api-default/dynos", None).await.0, 202);
    let (host, port) = eventually(WAIT, "restarted dynos to know the other's service", || async {
        let names = dyno_names(wharf).await;
        if names.len() != 2 || names.iter().any(|n| before.contains(n)) {
            return None;
        }
        let host = get("/OTHER_SERVICE_HOST").await.filter(|h| h != "none")?;
        let port: u16 = get("/OTHER_SERVICE_PORT").await?.parse().ok()?;
        Some((host, port))
    })
    .await;
    let via_service =
        client::send(format!("{host}:{port}").parse().unwrap(), None, &Req::get("other", "/")).await.unwrap();
    assert_eq!(via_service.text(), "from other");
    // Deleting the other app closes its service and restarts nothing either.
    let running = dyno_names(wharf).await;
    assert_eq!(api.call("DELETE", "/apps/other-default", None).await.0, 200);
    eventually(WAIT, "the other app's dynos to go", || async {
        let (status, _) = api.call("GET", "/apps/other-default/dynos", None).await;
        (status == 404).then_some(())
    })
    .await;
    assert_eq!(dyno_names(wharf).await, running, "a service closing in the space restarts no other app's dynos");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_a_command_is_left_to_an_external_runtime() {
    let setup = Setup::start().await;
    let api = &setup.wharf.api;
    api.expect("POST", "/apps", json!({"name": "external", "space": "default"}), 201).await;
    let (status, out) = api.call("DELETE", "/apps/external-default/dynos", None).await;
    assert_eq!(status, 422, "{out}");
    assert!(out["message"].as_str().unwrap().contains("external runtime"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_command_is_restarted_and_each_crash_logged() {
    let setup = Setup::start().await;
    let (wharf, api, receiver) = (&setup.wharf, &setup.wharf.api, &setup.receiver);
    let worker = json!({"updates": [{"type": "worker", "quantity": 1, "command": "echo boom; exit 3"}]});
    api.expect("PATCH", "/apps/api-default/formation", worker, 200).await;
    eventually(WAIT, "the worker to crash and restart", || async {
        let msgs = receiver.messages();
        let booms = msgs.iter().filter(|m| m.text() == "boom").count();
        let crashes = msgs
            .iter()
            .filter(|m| m.text().starts_with("at=error code=H10 desc=\"App crashed\" dyno=worker.1-"))
            .count();
        (booms >= 3 && crashes >= 2).then_some(())
    })
    .await;
    eventually(WAIT, "the crashed worker to be listed as crashed", || async {
        let workers = dynos_of_type(wharf, "worker").await;
        (workers.len() == 1 && workers[0].1 == "crashed").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_listed_and_restarted_by_name() {
    let setup = Setup::start().await;
    let (wharf, api, receiver) = (&setup.wharf, &setup.wharf.api, &setup.receiver);
    // A worker is listed, and restarted by name: a new one replaces it, and the old process ends.
    let sleeper =
        json!({"updates": [{"type": "worker", "quantity": 1, "command": "echo worker $$ is $DYNO; exec sleep 600"}]});
    api.expect("PATCH", "/apps/api-default/formation", sleeper, 200).await;
    let said = |name: &str| {
        let msgs = receiver.messages();
        let m = msgs.iter().find(|m| m.procid == name && m.text().starts_with("worker "))?;
        m.text().split_whitespace().nth(1)?.parse::<u32>().ok()
    };
    let (first, first_pid) = eventually(WAIT, "a worker to be up", || async {
        let workers = dynos_of_type(wharf, "worker").await;
        let [(name, state)] = &workers[..] else { return None };
        let pid = said(name)?;
        (state == "up").then(|| (name.clone(), pid))
    })
    .await;
    let (_, listed) = api.call("GET", &format!("/apps/api-default/dynos/{first}"), None).await;
    assert_eq!((&listed["type"], &listed["state"], &listed["port"]), (&json!("worker"), &json!("up"), &json!(null)));
    let restarted = api.expect("DELETE", &format!("/apps/api-default/dynos/{first}"), json!(null), 202).await;
    assert_eq!(restarted["name"], json!(first));
    eventually(WAIT, "another worker to replace the restarted one", || async {
        let workers = dynos_of_type(wharf, "worker").await;
        let [(name, state)] = &workers[..] else { return None };
        let gone = !std::path::Path::new(&format!("/proc/{first_pid}")).exists();
        (name != &first && state == "up" && gone).then_some(())
    })
    .await;
    api.expect("PATCH", "/apps/api-default/formation/worker", json!({"quantity": 0}), 200).await;
    eventually(WAIT, "the worker to stop at quantity 0", || async {
        dynos_of_type(wharf, "worker").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_its_health_check_leaves_the_running_one_serving() {
    let setup = Setup::start().await;
    let (wharf, api, receiver) = (&setup.wharf, &setup.wharf.api, &setup.receiver);
    let mut running = setup.run_web().await;
    let broken = json!({"updates": [{"type": "web", "command": "exit 1"}]});
    api.expect("PATCH", "/apps/api-default/formation", broken, 200).await;
    eventually(WAIT, "the failed release to be reported", || async {
        receiver.messages().iter().any(|m| m.text().contains("code=R10")).then_some(())
    })
    .await;
    assert_eq!(answer(wharf).await.as_deref(), Some("hello"), "the old release still serves");
    // The failed release's dynos are stopped just after the report, and listed until then.
    let mut serving = eventually(WAIT, "the failed release's dynos to be stopped", || async {
        let names = dyno_names(wharf).await;
        (names.len() == 2).then_some(names)
    })
    .await;
    serving.sort();
    running.sort();
    assert_eq!(serving, running, "the same dynos serve");
    assert_eq!(answer(wharf).await.as_deref(), Some("hello"), "the old release still serves");
    // The broken command's release failed; the one before it is still current.
    let statuses = eventually(WAIT, "the broken release to be settled", || async {
        let (_, releases) = api.call("GET", "/apps/api-default/releases", None).await;
        let all: Vec<(String, String, bool)> = releases
            .as_array()?
            .iter()
            .map(|r| {
                (
                    r["description"].as_str().unwrap_or_default().to_owned(),
                    r["status"].as_str().unwrap_or_default().to_owned(),
                    r["current"] == true,
                )
            })
            .collect();
        (all.last()?.1 != "pending").then_some(all)
    })
    .await;
    let expected = [
        ("Initial release", "succeeded", false),
        ("Set GREETING config vars", "succeeded", false),
        ("Set web command", "succeeded", true),
        ("Set web command", "failed", false),
    ];
    let statuses: Vec<(&str, &str, bool)> = statuses.iter().map(|(d, s, c)| (d.as_str(), s.as_str(), *c)).collect();
    assert_eq!(statuses, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_wharf_stops_its_dynos() {
    let setup = Setup::start().await;
    let serving = setup.run_web().await;
    let last = setup.listening(&serving).await;
    let Setup { wharf, receiver: _receiver, command: _, _dir } = setup;
    let (ok, _) = wharf.terminate().await;
    assert!(ok);
    for name in &serving {
        assert!(std::net::TcpStream::connect(port_of(&last, name)).is_err(), "{name} stopped with Wharf");
    }
}

/// The address dyno `name` said it listens on.
fn port_of(said: &[wharf_testkit::rfc5424::SyslogMessage], name: &str) -> std::net::SocketAddr {
    let m = said.iter().find(|m| m.procid == name).unwrap_or_else(|| panic!("{name} said where it listens"));
    let port: u16 = m.text().split_whitespace().nth(2).and_then(|p| p.parse().ok()).expect("a port");
    ([127, 0, 0, 1], port).into()
}

/// FE27 #2: requests in flight on a dyno the platform stops finish. The dyno leaves the router,
/// then is stopped once the router has no request at it (or `request_grace` passed), where the
/// fixed `connection_grace` (500 ms here) cut every request slower than it with a 503. A row for
/// each way the platform stops a web dyno: a config change's roll, a deploy (a command change),
/// `ps:restart` of every dyno and of one, and a scale down; in each, 5 s requests at every dyno
/// when it begins (each seen at the dyno through its output at the drain) are answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_a_dyno_the_platform_stops_finish() {
    let setup = Setup::start().await;
    setup.run_web().await;
    let deploy = json!({"updates": [{"type": "web", "quantity": 2, "command": format!("V=2 {}", setup.command)}]});
    let rows: [(&str, &str, Option<serde_json::Value>); 5] = [
        ("a config change's roll", "PATCH /apps/api-default/config-vars", Some(json!({"V": "1"}))),
        ("a deploy", "PATCH /apps/api-default/formation", Some(deploy)),
        ("ps:restart", "DELETE /apps/api-default/dynos", None),
        ("ps:restart of one dyno", "DELETE /apps/api-default/dynos/FIRST", None),
        (
            "a scale down",
            "PATCH /apps/api-default/formation",
            Some(json!({"updates": [{"type": "web", "quantity": 1}]})),
        ),
    ];
    stops_let_requests_finish(&setup, &[setup.wharf.http], rows).await;
}

/// The same through a router in a process of its own (`wharf router`, following this `wharf
/// serve`'s control API), whose requests the supervisor knows only from the router's reports
/// (`POST /v1/router-in-flight`): before them, the supervisor saw none of its requests and
/// stopped the dyno after `connection_grace`, cutting them with 503s. Rows: 5 s requests through
/// the separate router alone, across a roll (a config change) and a restart of one dyno; and
/// through both routers at once (the supervisor waits for the sum), across a scale down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_through_a_separate_router_on_a_dyno_the_platform_stops_finish() {
    let setup = Setup::start().await;
    setup.run_web().await;
    let dir = TempDir::new("separate-router");
    let token = std::fs::read_to_string(setup.wharf.data_dir().join("router-token")).unwrap();
    let api = format!("http://{}", setup.wharf.api.addr);
    let plain = [("WHARF_ROUTER__HTTP_REDIRECT", "false")];
    let router = WharfRouter::start_with(WHARF, &api, token.trim(), dir.path(), &plain).await;
    eventually(WAIT, "the separate router to serve the app", || async {
        let r = client::send(router.http, None, &Req::get(HOST, "/")).await.ok()?;
        (r.status == 200 && r.text() == "hello").then_some(())
    })
    .await;
    let separate = [router.http];
    let both = [router.http, setup.wharf.http];
    let rows: [(&str, &str, Option<serde_json::Value>, &[std::net::SocketAddr]); 3] = [
        ("a config change's roll", "PATCH /apps/api-default/config-vars", Some(json!({"V": "1"})), &separate),
        ("ps:restart of one dyno", "DELETE /apps/api-default/dynos/FIRST", None, &separate),
        (
            "a scale down",
            "PATCH /apps/api-default/formation",
            Some(json!({"updates": [{"type": "web", "quantity": 1}]})),
            &both,
        ),
    ];
    for (name, call, body, via) in rows {
        stops_let_requests_finish(&setup, via, [(name, call, body)]).await;
    }
}

/// For each row (its name, the `METHOD /path` that stops dynos, with `FIRST` for the first
/// listed dyno's name, and its body): four 5 s requests sent through the routers at `via` in
/// turn, each seen at a dyno, then the call; every request must answer 200, and the stopped
/// dynos must be gone before the next row.
async fn stops_let_requests_finish<const N: usize>(
    setup: &Setup,
    via: &[std::net::SocketAddr],
    rows: [(&str, &str, Option<serde_json::Value>); N],
) {
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let sleeping = || setup.receiver.messages().into_iter().filter(|m| m.text().starts_with("sleeping for")).count();
    for (name, call, body) in rows {
        let before = dyno_names(wharf).await;
        assert_eq!(before.len(), 2, "{name}: {before:?}");
        let seen = sleeping();
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..4 {
            let addr = via[i % via.len()];
            requests.spawn(async move {
                let req = Req::get(HOST, "/sleep/5");
                let sent = client::send(addr, None, &req);
                tokio::time::timeout(Duration::from_secs(30), sent)
                    .await
                    .map(|r| r.map(|r| (r.status.as_u16(), r.text())))
            });
        }
        // Each router sends its requests round robin: at both dynos.
        eventually(WAIT, "the requests to be at the dynos", || async { (sleeping() >= seen + 4).then_some(()) }).await;
        let (method, path) = call.split_once(' ').unwrap();
        let (status, out) = api.call(method, &path.replace("FIRST", &before[0]), body).await;
        assert!(status == 200 || status == 202, "{name}: {status} {out}");
        let answers: Vec<_> = requests.join_all().await;
        for a in &answers {
            assert!(matches!(a, Ok(Ok((200, body))) if body == "hello"), "{name}: {answers:?}");
        }
        // The stop is over (none of the dynos it stopped is listed) before the next row.
        let wanted = if name == "a scale down" { 1 } else { 2 };
        eventually(WAIT, "the stopped dynos to be gone", || async {
            let names = dyno_names(wharf).await;
            let gone = match name {
                "a scale down" => names.len() == 1,
                "ps:restart of one dyno" => !names.contains(&before[0]) && names.len() == 2,
                _ => names.iter().all(|n| !before.contains(n)) && names.len() == 2,
            };
            (gone && names.len() == wanted).then_some(())
        })
        .await;
    }
}
