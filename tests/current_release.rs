//! What the API says is current is what the dynos run (issue 21, FE37), with real processes
//! under `wharf serve`: after each way a release fails but keeps running (its dynos replaced
//! ones that were not healthy either, so it is `failed` and not withdrawn), and after a later
//! release fails and gives the app back, a table of readers of "what runs" must all name that
//! release and its config: the config vars, the releases' `current`, the dynos' `release`, the
//! router's answer, a one-off dyno, and a restart of one dyno, of a type and of all of them, and
//! a scale-up, none of which may change which release or config a dyno runs.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::client::{self, Api, Req};
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
const HOST: &str = "hello-default.localhost";

/// What runs once an event has settled: the `GREETING` config var the dynos have, and the
/// release version they run.
#[derive(Debug, Clone, Copy)]
struct Runs {
    greeting: &'static str,
    version: u64,
}

/// The web command: it serves `GREETING` while the file `ok` exists, and exits (so the dyno
/// crashes, and every restart of it fails at once) while it does not.
fn web_command(dir: &Path) -> String {
    let ok = dir.join("ok");
    let server = dir.join("server.py");
    format!(
        "test -f {ok} || exit 1; python3 {server} & while test -f {ok}; do sleep 0.1; done; exit 1",
        ok = ok.display(),
        server = server.display()
    )
}

/// What the router answers for `/`, when that is a 200.
async fn answer(wharf: &Wharf) -> Option<String> {
    let r = client::send(wharf.http, None, &Req::get(HOST, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// The app's web dynos: (name, state, release version).
async fn web_dynos(api: &Api) -> Vec<(String, String, u64)> {
    let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
    let web = dynos.as_array().into_iter().flatten().filter(|d| d["type"] == "web");
    web.map(|d| {
        let name = d["name"].as_str().unwrap_or_default().to_owned();
        let state = d["state"].as_str().unwrap_or_default().to_owned();
        (name, state, d["release"]["version"].as_u64().unwrap_or(0))
    })
    .collect()
}

/// The release the API calls current.
async fn current_version(api: &Api) -> Option<u64> {
    let (_, releases) = api.call("GET", "/apps/hello/releases", None).await;
    let current = releases.as_array()?.iter().filter(|r| r["current"] == true).collect::<Vec<_>>();
    assert!(current.len() <= 1, "one current release at most: {current:?}");
    current.first()?["version"].as_u64()
}

async fn release_status(api: &Api, version: u64) -> String {
    let (_, r) = api.call("GET", &format!("/apps/hello/releases/{version}"), None).await;
    r["status"].as_str().unwrap_or_default().to_owned()
}

/// Waits until `quantity` web dynos are up, none of `old` among them, every one running
/// `runs.version`, and the router answers `runs.greeting`; returns their names.
async fn settled_on(wharf: &Wharf, quantity: usize, old: &[String], runs: Runs, what: &str) -> Vec<String> {
    eventually(WAIT, what, || async {
        let web = web_dynos(&wharf.api).await;
        let fresh = web.iter().all(|(name, state, _)| state == "up" && !old.contains(name));
        (web.len() == quantity && fresh && answer(wharf).await.as_deref() == Some(runs.greeting))
            .then(|| web.into_iter().map(|(name, _, v)| (name, v)).collect::<Vec<_>>())
    })
    .await
    .into_iter()
    .map(|(name, version)| {
        assert_eq!(version, runs.version, "{what}: {name} runs v{version}, not v{}", runs.version);
        name
    })
    .collect()
}

/// The app's log history through a log session with these filters, once it has `wanted`.
async fn stream_lines(api: &Api, filters: Value, wanted: &str) -> String {
    api.log_session_until("hello", filters, wanted, WAIT).await
}

/// A reader of what runs. Each checks, after an event, that it sees `Runs`, and leaves one web
/// dyno running it.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// `GET /apps/{app}/config-vars`.
    ConfigVars,
    /// `GET /apps/{app}/releases`: the one `current`.
    ReleasesCurrent,
    /// `GET /apps/{app}/dynos`: each web dyno's `release`, and the router's answer.
    Dynos,
    /// `POST /apps/{app}/dynos`: a one-off dyno's `$GREETING`.
    OneOff,
    /// `DELETE /apps/{app}/dynos/web.1`: one dyno's restart.
    RestartOne,
    /// `DELETE /apps/{app}/formations/web`: a restart of the type.
    RestartType,
    /// `DELETE /apps/{app}/dynos`: `ps:restart`.
    RestartAll,
    /// `PATCH /apps/{app}/formation` to 2 web dynos, then back to 1.
    ScaleUp,
}

const READERS: [Reader; 8] = [
    Reader::ConfigVars,
    Reader::ReleasesCurrent,
    Reader::Dynos,
    Reader::OneOff,
    Reader::RestartOne,
    Reader::RestartType,
    Reader::RestartAll,
    Reader::ScaleUp,
];

impl Reader {
    /// Checks that the reader sees `runs`; `tag` tells this check's one-off dyno apart.
    async fn check(self, wharf: &Wharf, runs: Runs, tag: &str) {
        let api = &wharf.api;
        let what = format!("{self:?} after {tag}");
        let before: Vec<String> = web_dynos(api).await.into_iter().map(|d| d.0).collect();
        match self {
            Reader::ConfigVars => {
                let vars = api.expect("GET", "/apps/hello/config-vars", Value::Null, 200).await;
                assert_eq!(vars["GREETING"], runs.greeting, "{what}: {vars}");
            }
            Reader::ReleasesCurrent => {
                assert_eq!(current_version(api).await, Some(runs.version), "{what}");
            }
            Reader::Dynos => {
                settled_on(wharf, 1, &[], runs, &what).await;
            }
            Reader::OneOff => {
                let marker = format!("ONEOFF-{tag}");
                let run = json!({"command": format!("echo {marker} $GREETING")});
                api.expect("POST", "/apps/hello/dynos", run, 201).await;
                let said = stream_lines(api, json!({"lines": 500, "dyno": "run"}), &format!("{marker} ")).await;
                assert!(said.contains(&format!("{marker} {}", runs.greeting)), "{what}: {said}");
            }
            Reader::RestartOne | Reader::RestartType | Reader::RestartAll => {
                let path = match self {
                    Reader::RestartOne => "/apps/hello/dynos/web.1",
                    Reader::RestartType => "/apps/hello/formations/web",
                    _ => "/apps/hello/dynos",
                };
                let (status, body) = api.call("DELETE", path, None).await;
                assert_eq!(status, 202, "{what}: {body}");
                settled_on(wharf, 1, &before, runs, &what).await;
            }
            Reader::ScaleUp => {
                let scale = |n: u32| json!({"updates": [{"type": "web", "quantity": n}]});
                api.expect("PATCH", "/apps/hello/formation", scale(2), 200).await;
                let two = eventually(WAIT, &what, || async {
                    let web = web_dynos(api).await;
                    (web.len() == 2 && web.iter().all(|d| d.1 == "up")).then_some(web)
                })
                .await;
                assert!(two.iter().all(|d| d.2 == runs.version), "{what}: {two:?}");
                // Every dyno answers what runs: each of a few requests, whichever dyno it reaches.
                for _ in 0..6 {
                    assert_eq!(answer(wharf).await.as_deref(), Some(runs.greeting), "{what}");
                }
                api.expect("PATCH", "/apps/hello/formation", scale(1), 200).await;
                settled_on(wharf, 1, &[], runs, &what).await;
            }
        }
        // Whatever the reader did, the release the API calls current still runs.
        assert_eq!(current_version(api).await, Some(runs.version), "{what}: current afterwards");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reader_names_the_release_that_runs_after_a_release_fails_but_keeps_running() {
    let dir = TempDir::new("current");
    std::fs::write(dir.path().join("server.py"), wharf_testkit::dyno_server::PYTHON_WEB_DYNO).unwrap();
    let env = [
        ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
        ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
        ("WHARF_SUPERVISOR__CONNECTION_GRACE", "300ms"),
        ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
        ("WHARF_SUPERVISOR__HEALTH_TIMEOUT", "20s"),
    ];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await; // v1
    let ok = dir.path().join("ok");
    std::fs::write(&ok, "").unwrap();
    api.expect("PATCH", "/apps/hello/config-vars", json!({"GREETING": "old"}), 200).await; // v2
    let web = json!({"updates": [{"type": "web", "quantity": 1, "command": web_command(dir.path())}]});
    api.expect("PATCH", "/apps/hello/formation", web, 200).await; // v3
    let old = Runs { greeting: "old", version: 3 };
    settled_on(&wharf, 1, &[], old, "v3 to serve").await;
    assert_eq!(release_status(api, 3).await, "succeeded");
    // A release phase that passes: the release that fails but runs below has one (FE38: read as
    // a failed phase, it held the app, so no scale or restart of Wharf changed its dynos).
    let phase = json!({"updates": [{"type": "release", "quantity": 0, "command": "echo migrating"}]});
    api.expect("PATCH", "/apps/hello/formation", phase, 200).await; // v4
    eventually(WAIT, "v4 to succeed", || async { (release_status(api, 4).await == "succeeded").then_some(()) }).await;
    let old = Runs { greeting: "old", version: 4 };
    settled_on(&wharf, 1, &[], old, "v4 to serve").await;

    // v4's dyno crashes, and every restart of it fails: no healthy dyno is left to keep.
    std::fs::remove_file(&ok).unwrap();
    eventually(WAIT, "v3's dyno to crash", || async {
        let web = web_dynos(api).await;
        (answer(&wharf).await.is_none() && web.iter().all(|d| d.1 != "up")).then_some(())
    })
    .await;
    // v5's dynos fail too, and take the place of v4's: v5 is `failed` (its phase passed, its
    // roll failed), and runs.
    api.expect("PATCH", "/apps/hello/config-vars", json!({"GREETING": "new"}), 200).await; // v5
    eventually(WAIT, "v5 to fail", || async { (release_status(api, 5).await == "failed").then_some(()) }).await;
    std::fs::write(&ok, "").unwrap();
    let new = Runs { greeting: "new", version: 5 };
    settled_on(&wharf, 1, &[], new, "v5, failed, to serve once it can").await;
    for reader in READERS {
        reader.check(&wharf, new, "v5 failed but runs").await;
    }

    // v6's release phase fails: v6 is withdrawn and the app goes back to what runs, v5 (it
    // went back to v4's config, which no dyno ran, and rolled to it).
    let phase = json!({"updates": [{"type": "release", "command": "echo migrating; exit 1"}]});
    api.expect("PATCH", "/apps/hello/formation", phase, 200).await; // v6
    eventually(WAIT, "v6 to fail", || async { (release_status(api, 6).await == "failed").then_some(()) }).await;
    for reader in READERS {
        reader.check(&wharf, new, "v6 failed its release phase").await;
    }
    let (_, formation) = api.call("GET", "/apps/hello/formation", None).await;
    let release = formation.as_array().unwrap().iter().find(|f| f["type"] == "release").cloned();
    assert_eq!(release.map(|f| f["command"].clone()), Some(json!("echo migrating")), "v5's phase: {formation}");
}
