//! One dyno index per process type (issue 21; FE38/FE41 finding 2), with real dynos, a real
//! router and a real drain. After each way the platform starts or stops dynos (a scale up or
//! down, a restart and a stop of one dyno by Heroku's `type.N` or by its id, a deploy, a restart
//! of all), the app's web dynos are `web.1` to `web.N`, and every place that names them agrees: the API's
//! dyno names (`web.N-xxxxx`), which dyno `GET`, `DELETE` and `actions/stop` of
//! `/apps/{app}/dynos/web.N` (and of the dyno's id) reach, each new dyno's own `DYNO` (Heroku's
//! `web.N`), the `source` of the runtime metrics lines of each process the step started, and the
//! router's `dyno=`; an index no running dyno has, or written otherwise than Heroku writes it
//! (`web.01`, `web.+1`), is Heroku's 404.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::client::{self, Req};
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
const APP: &str = "dx-default";

/// The app's web dynos as `GET /apps/{app}/dynos` lists them: index (the `N` of `web.N-xxxxx`)
/// to (name, state, release version). Panics on a web dyno whose name is not `web.N-xxxxx`.
async fn web_dynos(wharf: &Wharf) -> BTreeMap<u32, Vec<(String, String, u64)>> {
    let (_, dynos) = wharf.api.call("GET", &format!("/apps/{APP}/dynos"), None).await;
    let mut out: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for d in dynos.as_array().into_iter().flatten().filter(|d| d["type"] == "web") {
        let name = d["name"].as_str().unwrap_or_default().to_owned();
        let index = index_of(&name).unwrap_or_else(|| panic!("{name} is not web.N-xxxxx"));
        let (state, version) = (d["state"].as_str().unwrap_or_default(), d["release"]["version"].as_u64());
        out.entry(index).or_default().push((name, state.to_owned(), version.unwrap_or(0)));
    }
    out
}

/// The `N` of a dyno name `web.N-xxxxx` (five lowercase letters and digits).
fn index_of(name: &str) -> Option<u32> {
    let (index, suffix) = name.strip_prefix("web.")?.split_once('-')?;
    let suffix_ok = suffix.len() == 5 && suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    suffix_ok.then(|| index.parse().ok()).flatten()
}

/// Every runtime metrics line at the drain, as (run id, source): `source=web.N
/// dyno=heroku.APP_ID.RUN_ID ...`, whose run id is new at each start of a process.
fn metrics_lines(receiver: &SyslogReceiver) -> Vec<(String, String)> {
    let field = |text: &str, key: &str| text.split(' ').find_map(|f| f.strip_prefix(key)).map(str::to_owned);
    let texts = receiver.messages().into_iter().map(|m| m.text());
    texts.filter_map(|t| Some((field(&t, "dyno=")?, field(&t, "source=")?))).collect()
}

/// One step: (what it is, the request: method, path under the app (`{id of web.N}` in it is
/// that dyno's id, as the API shows it before the step), body, status), then the
/// web dynos after it (`web.1` to `web.N`: N), and the indexes whose dyno the step replaced or
/// started (the others keep theirs).
type Step = (&'static str, &'static str, &'static str, Value, u16, u32, &'static [u32]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_running_dyno_of_a_type_has_one_index_1_to_n_everywhere() {
    let dir = TempDir::new("dyno-indexes");
    let script = dir.path().join("server.py");
    std::fs::write(&script, wharf_testkit::dyno_server::PYTHON_WEB_DYNO).unwrap();
    let env = [
        ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
        ("WHARF_SUPERVISOR__RUNTIME_METRICS_INTERVAL", "1s"),
        ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
        ("WHARF_SUPERVISOR__CONNECTION_GRACE", "200ms"),
        ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
    ];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    api.create_app(APP, &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    let drain = api.expect("POST", &format!("/apps/{APP}/log-drains"), json!({"url": receiver.url()}), 201).await;
    let label = format!("drain=\"{}\"", drain["id"].as_str().unwrap());
    eventually(WAIT, "the logshuttle to run the drain", || async {
        let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
        r.text().contains(&label).then_some(())
    })
    .await;
    let command = format!("exec python3 {}", script.display());

    let steps: Vec<Step> = vec![
        (
            "a scale-up from none",
            "PATCH",
            "/formation",
            json!({"updates": [{"type": "web", "quantity": 3, "command": command}]}),
            200,
            3,
            &[1, 2, 3],
        ),
        ("ps:restart web.2", "DELETE", "/dynos/web.2", Value::Null, 202, 3, &[2]),
        ("ps:stop web.3", "POST", "/dynos/web.3/actions/stop", Value::Null, 202, 3, &[3]),
        ("ps:restart by id", "DELETE", "/dynos/{id of web.1}", Value::Null, 202, 3, &[1]),
        ("ps:stop by id", "POST", "/dynos/{id of web.2}/actions/stop", Value::Null, 202, 3, &[2]),
        (
            "a deploy (a release of config vars rolls)",
            "PATCH",
            "/config-vars",
            json!({"GREETING": "bonjour"}),
            200,
            3,
            &[1, 2, 3],
        ),
        ("a scale-down stops the highest", "PATCH", "/formation/web", json!({"quantity": 1}), 200, 1, &[]),
        ("ps:restart web.1", "DELETE", "/dynos/web.1", Value::Null, 202, 1, &[1]),
        ("a scale-up takes the lowest free", "PATCH", "/formation/web", json!({"quantity": 3}), 200, 3, &[2, 3]),
        ("ps:restart of every dyno", "DELETE", "/dynos", Value::Null, 202, 3, &[1, 2, 3]),
        ("ps:restart web.4, which no dyno is", "DELETE", "/dynos/web.4", Value::Null, 404, 3, &[]),
    ];
    let mut before: BTreeMap<u32, String> = BTreeMap::new();
    let mut seen_runs: BTreeSet<String> = BTreeSet::new();
    for (what, method, path, body, status, n, fresh) in steps {
        let body = (!body.is_null()).then_some(body);
        // The index of the dyno the step addresses, by `web.N` or by id (then looked up now).
        let by_id = path.strip_prefix("/dynos/{id of web.").and_then(|p| p.split('}').next()?.parse::<u32>().ok());
        let by_name = path.strip_prefix("/dynos/web.").and_then(|p| p.split('/').next()?.parse::<u32>().ok());
        let mut path = path.to_owned();
        if let Some(index) = by_id {
            let (_, one) = api.call("GET", &format!("/apps/{APP}/dynos/web.{index}"), None).await;
            path = path.replace(&format!("{{id of web.{index}}}"), one["id"].as_str().unwrap());
        }
        let (got, out) = api.call(method, &format!("/apps/{APP}{path}"), body).await;
        assert_eq!(got, status, "{what}: {out}");
        if status == 404 {
            assert_eq!(out["id"], "not_found", "{what}: Heroku's error shape: {out}");
        }
        // A restart or stop of `web.N` answers with the dyno it reached: the one of index N.
        if let Some(index) = by_name.or(by_id)
            && status == 202
        {
            assert_eq!(out["name"].as_str(), before.get(&index).map(String::as_str), "{what}: {out}");
        }
        let after = eventually(WAIT, &format!("{what}: web.1 to web.{n} up, {fresh:?} new"), || async {
            let listed = web_dynos(&wharf).await;
            let one_each = listed.values().all(|d| d.len() == 1 && d[0].1 == "up");
            let indexes: Vec<u32> = listed.keys().copied().collect();
            let names: BTreeMap<u32, String> = listed.iter().map(|(i, d)| (*i, d[0].0.clone())).collect();
            let renewed = names.iter().all(|(i, name)| fresh.contains(i) != (before.get(i) == Some(name)));
            (one_each && indexes == (1..=n).collect::<Vec<_>>() && renewed).then_some(listed)
        })
        .await;
        let versions: BTreeSet<u64> = after.values().map(|d| d[0].2).collect();
        let (_, releases) = api.call("GET", &format!("/apps/{APP}/releases"), None).await;
        let newest = releases.as_array().into_iter().flatten().filter_map(|r| r["version"].as_u64()).max();
        assert_eq!(
            versions.into_iter().collect::<Vec<_>>(),
            Vec::from_iter(newest),
            "{what}: every dyno on the newest release"
        );
        before = after.into_iter().map(|(i, d)| (i, d[0].0.clone())).collect();

        // Each new dyno's `DYNO` is its index's `web.N` (the test server says it when it listens).
        for index in fresh {
            let name = &before[index];
            let said = eventually(WAIT, &format!("{what}: {name} to say it listens"), || async {
                let msgs = receiver.messages();
                let m = msgs.iter().find(|m| &m.procid == name && m.text().starts_with("listening on"))?;
                m.text().split(' ').nth(4).map(str::to_owned)
            })
            .await;
            assert_eq!(said, format!("web.{index}"), "{what}: {name}'s DYNO");
        }

        // The processes the step started say their own index in their metrics lines' source.
        let expected: BTreeSet<String> = fresh.iter().map(|i| format!("web.{i}")).collect();
        let new_sources = eventually(WAIT, &format!("{what}: the new processes' metrics lines"), || async {
            let lines = metrics_lines(&receiver);
            let new: BTreeSet<String> =
                lines.iter().filter(|(run, _)| !seen_runs.contains(run)).map(|(_, source)| source.clone()).collect();
            new.is_superset(&expected).then_some(new)
        })
        .await;
        assert_eq!(new_sources, expected, "{what}: the new processes' sources");
        seen_runs.extend(metrics_lines(&receiver).into_iter().map(|(run, _)| run));

        // `web.N` and the dyno's id reach the dyno of index N; one past the last, and `N`
        // written otherwise than Heroku writes it, are Heroku's 404.
        for (index, name) in &before {
            let (got, out) = api.call("GET", &format!("/apps/{APP}/dynos/web.{index}"), None).await;
            assert_eq!((got, out["name"].as_str()), (200, Some(name.as_str())), "{what}: web.{index}");
            let id = out["id"].as_str().unwrap_or_default().to_owned();
            let (got, out) = api.call("GET", &format!("/apps/{APP}/dynos/{id}"), None).await;
            assert_eq!((got, out["name"].as_str()), (200, Some(name.as_str())), "{what}: {name}'s id {id}");
            for other in [format!("web.0{index}"), format!("web.%2B{index}")] {
                let (got, out) = api.call("GET", &format!("/apps/{APP}/dynos/{other}"), None).await;
                assert_eq!((got, out["id"].as_str()), (404, Some("not_found")), "{what}: {other}: {out}");
            }
        }
        let (got, out) = api.call("GET", &format!("/apps/{APP}/dynos/web.{}", n + 1), None).await;
        assert_eq!((got, out["id"].as_str()), (404, Some("not_found")), "{what}: web.{}: {out}", n + 1);
    }

    // The router names the dyno it sent a request to as the API does.
    let host = format!("{APP}.localhost");
    let r = client::send(wharf.http, None, &Req::get(&host, "/dyno-index-probe")).await.unwrap();
    assert_eq!(r.status, 200);
    let routed = eventually(WAIT, "the router's line at the drain", || async {
        let texts = receiver.messages().into_iter().map(|m| m.text());
        let line = texts.into_iter().find(|t| t.contains("path=/dyno-index-probe"))?;
        line.split(' ').find_map(|f| f.strip_prefix("dyno=")).map(str::to_owned)
    })
    .await;
    assert!(before.values().any(|name| name == &routed), "dyno={routed} is one of {before:?}");
}
