//! Automatic canary releases (issue 22) through the public API, with real dynos run by the local
//! supervisor, real requests through the router, a real syslog drain and a real webhook
//! receiver: a promotion to a production app with the `canary` feature first runs on a canary
//! app; new code answering 5% errors is aborted by the router's judge, recorded `failed` with
//! the evidence, and never reaches production, whose clients see no failure but the canary's
//! own; good code reaches production after its soak; a rollback soaks for a time instead; any
//! other release while a canary release is open is refused; the feature turns off when the app
//! leaves production; promotions outlive their apps; and bad settings change nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::client::{Answer, Api, Req, load, load_until};
use wharf_testkit::http_peer::HookReceiver;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(90);
/// The production app's host on the router.
const PRD: &str = "webprd-default.localhost";

/// The app's newest release.
async fn newest_release(api: &Api, app: &str) -> Value {
    let (status, list) = api.call("GET", &format!("/apps/{app}/releases"), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().last().unwrap().clone()
}

/// The app's newest canary release.
async fn newest_canary_release(api: &Api, app: &str) -> Value {
    let (status, list) = api.call("GET", &format!("/apps/{app}/canary-releases"), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().last().cloned().unwrap_or(Value::Null)
}

/// Waits for the app's newest canary release to reach `state`.
async fn canary_release_in(api: &Api, app: &str, state: &str) -> Value {
    eventually(WAIT, &format!("the canary release to be {state}"), || async {
        let c = newest_canary_release(api, app).await;
        (c["state"] == state).then_some(c)
    })
    .await
}

/// Sets the web command of `app` and waits until its release succeeded and it answers `body`.
async fn deployed(wharf: &Wharf, app: &str, command: &str, body: &str) {
    let web = json!({"updates": [{"type": "web", "quantity": 1, "command": command}]});
    wharf.api.expect("PATCH", &format!("/apps/{app}/formation"), web, 200).await;
    let host = format!("{app}-default.localhost");
    eventually(WAIT, &format!("{app} to serve {body}"), || async {
        let r = wharf_testkit::client::send(wharf.http, None, &Req::get(&host, "/")).await.ok()?;
        let settled = newest_release(&wharf.api, app).await["status"] == "succeeded";
        (r.status == 200 && r.text() == body && settled).then_some(())
    })
    .await;
}

/// Sends requests to production until `run` resolves; returns every answer and `run`'s result.
async fn under_load<T>(wharf: &Wharf, run: impl std::future::Future<Output = T>) -> (Vec<Answer>, T) {
    let done = Arc::new(AtomicBool::new(false));
    let load = load_until(wharf.http, PRD, &done);
    let out = run.await;
    done.store(true, Ordering::Relaxed);
    (load.await.unwrap().expect("every request is answered"), out)
}

/// `(status, body)` of every answer that is not `200 ok_body`, counted.
fn failures(answers: &[Answer], ok_bodies: &[&str]) -> Vec<(u16, String)> {
    answers
        .iter()
        .filter(|a| a.status != 200 || !ok_bodies.contains(&String::from_utf8_lossy(&a.body).as_ref()))
        .map(|a| (a.status, String::from_utf8_lossy(&a.body).into_owned()))
        .collect()
}

/// The canary deliveries the receiver got, with their outcome.
fn canary_deliveries(receiver: &HookReceiver, outcome: &str) -> Vec<Value> {
    receiver
        .received()
        .iter()
        .filter(|r| r.headers.get("x-wharf-event").map(String::as_str) == Some("canary"))
        .map(|r| r.json())
        .filter(|j| j["canary"]["outcome"] == outcome)
        .collect()
}

/// The names of the app's dynos (a restarted dyno is a new one, with a new name), sorted.
async fn dyno_ids(api: &Api, app: &str) -> Vec<String> {
    let (status, dynos) = api.call("GET", &format!("/apps/{app}/dynos"), None).await;
    assert_eq!(status, 200, "{dynos}");
    let mut names: Vec<String> = dynos.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().into()).collect();
    names.sort();
    names
}

/// What a change to the canary app `webprdcanary` would show in: the app, its config vars,
/// formation, releases, coupling, domains, dynos and the routes to it.
async fn canary_app_state(api: &Api) -> Vec<Value> {
    let mut state = Vec::new();
    for path in ["", "/config-vars", "/formation", "/releases", "/pipeline-couplings", "/domains", "/dynos", "/routes"]
    {
        let (status, v) = api.call("GET", &format!("/apps/webprdcanary{path}"), None).await;
        assert_eq!(status, 200, "{path}: {v}");
        state.push(v);
    }
    state.push(api.call("GET", "/apps/webstg/canary", None).await.1);
    state
}

/// Every changing request of the canary app `webprdcanary` is a 409 naming its canary release,
/// but those that only watch it: first changes with real bodies (each of which the app would
/// otherwise take), then every other changing route of an app the API serves, so that a route
/// added later is covered too.
async fn canary_app_is_read_only(api: &Api) {
    let named = "is the canary app of webprd-default's canary release of v";
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 201).await;
    let coupling = api.call("GET", "/apps/webprdcanary/pipeline-couplings", None).await.1;
    let coupling = format!("/pipeline-couplings/{}", coupling["id"].as_str().unwrap());
    let route = json!({"site": "www.example.com", "app": "webprdcanary", "source_path": "/", "target_path": "/"});
    let rows = [
        ("PATCH", "/apps/webprdcanary/config-vars".to_owned(), json!({"Y": "1"})),
        ("PATCH", "/apps/webprdcanary/formation".to_owned(), json!({"updates": [{"type": "web", "quantity": 3}]})),
        ("PATCH", "/apps/webprdcanary/formation/web".to_owned(), json!({"command": "true"})),
        ("DELETE", "/apps/webprdcanary/formation/web".to_owned(), json!({})),
        ("PATCH", "/apps/webprdcanary".to_owned(), json!({"maintenance": true})),
        ("DELETE", "/apps/webprdcanary".to_owned(), json!({})),
        ("POST", "/apps/webprdcanary/domains".to_owned(), json!({"hostname": "canary.example.com"})),
        ("DELETE", "/apps/webprdcanary/dynos".to_owned(), json!({})),
        ("POST", "/apps/webprdcanary/dynos".to_owned(), json!({"command": "true"})),
        ("POST", "/apps/webprdcanary/releases".to_owned(), json!({"release": "v1"})),
        ("POST", "/apps/webprdcanary/builds".to_owned(), json!({"source_blob": {"url": "https://example.com/a.tgz"}})),
        ("PUT", "/apps/webprdcanary/canary".to_owned(), json!({"canary_app": "webstg", "weight": 10})),
        ("PATCH", coupling.clone(), json!({"stage": "development"})),
        ("DELETE", coupling, json!({})),
        ("POST", "/routes".to_owned(), route),
        ("PUT", "/apps/webstg/canary".to_owned(), json!({"canary_app": "webprdcanary", "weight": 10})),
    ];
    for (method, path, body) in rows {
        let (status, e) = api.call(method, &path, Some(body.clone())).await;
        assert_eq!((status, e["id"].as_str()), (409, Some("conflict")), "{method} {path} {body}: {e}");
        assert!(e["message"].as_str().unwrap().contains(named), "{method} {path}: {e}");
    }
    // Every changing route of an app, its other parameters made up: refused before its
    // handler reads them. Previews' webhook is GitHub's, signed, and not an operator's change.
    let fill = |path: &str| {
        path.split('/')
            .map(|s| match s {
                "{app}" => "webprdcanary",
                s if s.starts_with('{') => "x",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut swept = 0;
    for e in wharf_control_api::http::endpoints() {
        if !e.path.starts_with("/apps/{app}") || e.method == "GET" || e.path == "/apps/{app}/previews/webhook" {
            continue;
        }
        let (status, out) = api.call(e.method, &fill(e.path), Some(json!({}))).await;
        if wharf_control_api::http::canary_apps::open_on_canary_apps(e.method, e.path) {
            assert_ne!(status, 409, "{} {} watches the canary app: {out}", e.method, e.path);
        } else {
            assert_eq!(status, 409, "{} {}: {out}", e.method, e.path);
            assert!(out["message"].as_str().unwrap().contains(named), "{} {}: {out}", e.method, e.path);
            swept += 1;
        }
    }
    assert!(swept >= 25, "every changing route of an app was tried: {swept}");
}

/// Pipeline `web` with `webstg` in staging and `webprd` in production, each app's config var
/// `ROLE` its stage.
async fn staging_and_production(api: &Api) {
    api.expect("POST", "/pipelines", json!({"name": "web"}), 201).await;
    for (app, stage) in [("webstg", "staging"), ("webprd", "production")] {
        api.expect("POST", "/apps", json!({"name": app}), 201).await;
        api.expect("POST", "/pipeline-couplings", json!({"app": app, "pipeline": "web", "stage": stage}), 201).await;
        api.expect("PATCH", &format!("/apps/{app}/config-vars"), json!({"ROLE": stage}), 200).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_releases_abort_bad_code_and_promote_good_code_after_their_soak() {
    let dir = TempDir::new("canary-releases");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    let receiver = HookReceiver::start(&[]).await;
    let hook = json!({"url": receiver.url(), "events": ["canary", "release"], "secret": "s3cret"});
    api.expect("POST", "/apps/webprd/hooks", hook, 201).await;
    let drain = SyslogReceiver::tcp().await;
    api.expect("POST", "/apps/webprd/log-drains", json!({"url": drain.url()}), 201).await;
    api.expect("PATCH", "/apps/webprd/config-vars", json!({"SHARED": "prd"}), 200).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    // The new code answers every 20th request with a 500: 5% errors.
    deployed(&wharf, "webstg", &format!("GREETING=bad-code FAIL_EVERY=20 {command}"), "bad-code").await;
    let feature = json!({"enabled": true, "weight": 50, "soak_requests": 1000});
    let f = api.expect("PATCH", "/apps/webprd/features/canary", feature, 200).await;
    assert_eq!((f["enabled"].as_bool(), f["soak_seconds"].as_u64()), (Some(true), None), "{f}");
    let prd_before = newest_release(api, "webprd").await;
    // Once the roll to it is over (the dynos of the release before have stopped).
    eventually(WAIT, "production's one dyno to run its release", || async {
        let dynos = api.call("GET", "/apps/webprd/dynos", None).await.1;
        let dynos = dynos.as_array().unwrap().clone();
        let settled = dynos.len() == 1 && dynos.iter().all(|d| d["release"]["id"] == prd_before["id"]);
        settled.then_some(())
    })
    .await;
    let prd_dynos = dyno_ids(api, "webprd").await;

    // The bad case: the promotion starts a canary release; production's release waits.
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    let promotion = api.expect("POST", "/pipeline-promotions", promote.clone(), 201).await;
    let target = &promotion["targets"][0];
    assert_eq!((target["status"].as_str(), target["app"]["name"].as_str()), (Some("pending"), Some("webprd-default")));
    assert_eq!(target["canary_release"]["canary_app"]["name"], "webprdcanary-default", "{promotion}");
    let held = newest_release(api, "webprd").await;
    assert_eq!((held["status"].as_str(), &held["id"]), (Some("pending"), &target["release"]["id"]), "{held}");
    let coupling = api.call("GET", "/apps/webprdcanary/pipeline-couplings", None).await.1;
    assert_eq!(coupling["stage"], "canary", "the canary app is in the canary stage: {coupling}");
    let vars = api.call("GET", "/apps/webprdcanary/config-vars", None).await.1;
    assert_eq!(vars["SHARED"], "prd", "the canary has production's config vars: {vars}");
    let formation = api.call("GET", "/apps/webprdcanary/formation", None).await.1;
    assert_eq!((formation[0]["type"].as_str(), formation[0]["quantity"].as_u64()), (Some("web"), Some(1)));

    // While it is open, any other release of production is refused, and nothing changes;
    // scaling is no release and goes on.
    let rollback = json!({"release": prd_before["id"]});
    let refused = [
        ("PATCH", "/apps/webprd/config-vars", json!({"OTHER": "x"})),
        ("PATCH", "/apps/webprd/formation", json!({"updates": [{"type": "web", "command": "true"}]})),
        ("POST", "/apps/webprd/releases", rollback.clone()),
        ("POST", "/pipeline-promotions", promote.clone()),
        // Refused at once, not after its fetch, as its release would be.
        ("POST", "/apps/webprd/builds", json!({"source_blob": {"url": "https://example.com/app.tgz"}})),
        // A new split would end the judging unasked; so would the pipeline's deletion.
        ("PUT", "/apps/webprd/canary", json!({"canary_app": "webstg", "weight": 10})),
        ("DELETE", "/pipelines/web", json!({})),
    ];
    for (method, path, body) in refused {
        let (status, e) = api.call(method, path, Some(body)).await;
        assert_eq!((status, e["id"].as_str()), (409, Some("conflict")), "{method} {path}: {e}");
        assert!(e["message"].as_str().unwrap().contains("has a canary release"), "{e}");
    }
    assert_eq!(newest_release(api, "webprd").await["id"], held["id"], "a refusal makes no release");
    assert_eq!(api.call("GET", "/apps/webprd/builds", None).await.1, json!([]), "the build was refused at once");
    api.expect("PATCH", "/apps/webprd/formation/web", json!({"quantity": 1}), 200).await;

    // The canary app is read-only while it is judged: every changing route of an app but the
    // watching ones, and those naming it elsewhere, are refused with the canary release named.
    canary_release_in(api, "webprd", "running").await;
    let canary_before = canary_app_state(api).await;
    canary_app_is_read_only(api).await;
    assert_eq!(canary_app_state(api).await, canary_before, "the canary app is as it was");
    assert_eq!(dyno_ids(api, "webprd").await, prd_dynos, "production's dynos did not restart for the canary");

    // Under load, the judge aborts the canary; production never runs the new code.
    let (answers, aborted) = Box::pin(under_load(&wharf, canary_release_in(api, "webprd", "aborted"))).await;
    let evidence = &aborted["evidence"];
    assert!(evidence["canary"]["errors"].as_u64().unwrap() >= 5, "{aborted}");
    assert!(evidence["p_value"].as_f64().unwrap() <= 0.01, "{aborted}");
    assert!(
        aborted["outcome"].as_str().unwrap().starts_with("the canary was aborted: the canary's error rate"),
        "{aborted}"
    );
    let failed = failures(&answers, &["old-code", "bad-code"]);
    assert!(!failed.is_empty(), "the canary's errors reached clients before the abort");
    assert!(failed.iter().all(|f| *f == (500, "bad-code".to_owned())), "only the canary failed: {failed:?}");
    let release = api.call("GET", &format!("/apps/webprd/releases/{}", held["id"].as_str().unwrap()), None).await.1;
    assert_eq!(release["status"], "failed", "{release}");
    assert!(release["description"].as_str().unwrap().ends_with("(canary aborted)"), "{release}");
    let after = load(wharf.http, PRD, "/", 200, 4).await.unwrap();
    assert!(failures(&after, &["old-code"]).is_empty(), "production serves its old code, every request");
    eventually(WAIT, "the canary app to be gone", || async {
        (api.call("GET", "/apps/webprdcanary", None).await.0 == 404).then_some(())
    })
    .await;
    let dynos = api.call("GET", "/apps/webprd/dynos", None).await.1;
    assert!(dynos.as_array().unwrap().iter().all(|d| d["release"]["id"] == prd_before["id"]), "{dynos}");
    assert_eq!(dyno_ids(api, "webprd").await, prd_dynos, "production's dynos did not restart for the abort");
    let id = promotion["id"].as_str().unwrap();
    let t = api.call("GET", &format!("/pipeline-promotions/{id}/promotion-targets"), None).await.1;
    assert_eq!(t[0]["status"], "failed", "{t}");
    assert!(t[0]["error_message"].as_str().unwrap().contains("failed in its canary: the canary was aborted"), "{t}");
    let hook = eventually(WAIT, "the aborted canary's webhook", || async {
        canary_deliveries(&receiver, "aborted").into_iter().next()
    })
    .await;
    assert_eq!(hook["canary"]["release"]["id"], held["id"], "{hook}");
    assert_eq!(hook["canary"]["evidence"], *evidence, "{hook}");
    let line = eventually(WAIT, "the aborted canary's log line", || async {
        drain.messages().into_iter().map(|m| m.text()).find(|t| t.contains("code=canary-aborted"))
    })
    .await;
    assert!(line.contains("canary=webprdcanary-default") && line.contains("p_value="), "{line}");

    // The good case: the same new code without its errors reaches production after its soak.
    deployed(&wharf, "webstg", &format!("GREETING=new-code {command}"), "new-code").await;
    api.expect("PATCH", "/apps/webprd/features/canary", json!({"soak_requests": 200}), 200).await;
    let promotion = api.expect("POST", "/pipeline-promotions", promote.clone(), 201).await;
    let good = promotion["targets"][0]["release"]["id"].clone();
    canary_release_in(api, "webprd", "running").await;
    assert_eq!(dyno_ids(api, "webprd").await, prd_dynos, "production's dynos run on into the next canary");
    // Every production dyno seen from here to the end of the roll, looked at every 100 ms.
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = tokio::spawn({
        let (api, seen, watching) = (api.clone(), seen.clone(), watching.clone());
        async move {
            while watching.load(Ordering::Relaxed) {
                let now = dyno_ids(&api, "webprd").await;
                seen.lock().unwrap().extend(now);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let (answers, promoted) = Box::pin(under_load(&wharf, async {
        let promoted = canary_release_in(api, "webprd", "promoted").await;
        eventually(WAIT, "production to serve the new code", || async {
            let answers = load(wharf.http, PRD, "/", 20, 2).await.ok()?;
            failures(&answers, &["new-code"]).is_empty().then_some(())
        })
        .await;
        promoted
    }))
    .await;
    // The pass rolls production once: its one old dyno, then one new dyno of the new release.
    eventually(WAIT, "production's one dyno to run the promoted release", || async {
        let dynos = api.call("GET", "/apps/webprd/dynos", None).await.1;
        let dynos = dynos.as_array().unwrap().clone();
        (dynos.len() == 1 && dynos[0]["release"]["id"] == good).then_some(())
    })
    .await;
    watching.store(false, Ordering::Relaxed);
    watcher.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let new: Vec<_> = seen.iter().filter(|d| !prd_dynos.contains(d)).collect();
    assert_eq!(new.len(), 1, "one roll, so one new production dyno: {seen:?}");
    assert!(promoted["evidence"]["canary"]["requests"].as_u64().unwrap() >= 200, "{promoted}");
    assert_eq!(promoted["evidence"]["canary"]["errors"], 0, "{promoted}");
    let decision = promoted["evidence"]["decision"].as_str().unwrap_or_default();
    assert!(decision.starts_with("promoted: the soak passed: "), "the kept decision says how it ended: {promoted}");
    assert!(failures(&answers, &["old-code", "new-code"]).is_empty(), "no request failed through the soak and roll");
    assert!(answers.iter().any(|a| a.body == "new-code"), "the canary took its share");
    let release = eventually(WAIT, "the release to succeed", || async {
        let r = newest_release(api, "webprd").await;
        (r["status"] == "succeeded").then_some(r)
    })
    .await;
    assert_eq!(release["id"], good, "{release}");
    assert_eq!(api.call("GET", "/apps/webprdcanary", None).await.0, 404, "the canary app is gone");
    let hook = eventually(WAIT, "the promoted canary's webhook", || async {
        canary_deliveries(&receiver, "promoted").into_iter().next()
    })
    .await;
    assert_eq!(hook["canary"]["release"]["id"], good, "{hook}");
    let line = eventually(WAIT, "the promoted canary's log line", || async {
        drain.messages().into_iter().map(|m| m.text()).find(|t| t.contains("code=canary-promoted"))
    })
    .await;
    assert!(line.contains("outcome=\"the soak passed: "), "{line}");

    // A rollback goes through a canary too; this soak is a time, and (where this process counts
    // requests) the judge's `min_requests`: a soak in seconds never passes a canary nobody judged.
    let soak = json!({"soak_requests": null, "soak_seconds": 2, "min_requests": 10});
    let f = api.expect("PATCH", "/apps/webprd/features/canary", soak, 200).await;
    assert_eq!((f["soak_requests"].as_u64(), f["soak_seconds"].as_u64()), (None, Some(2)), "{f}");
    let back = api.expect("POST", "/apps/webprd/releases", rollback, 201).await;
    assert_eq!(back["status"], "pending", "{back}");
    canary_release_in(api, "webprd", "running").await;
    // Nothing can be observed to not happen without waiting: a second past the 2 s soak (the
    // watcher looks every 250 ms), with no request, the canary release still runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unjudged = newest_canary_release(api, "webprd").await;
    assert_eq!(unjudged["state"], "running", "a time soak without min_requests canary requests: {unjudged}");
    let timed = eventually(WAIT, "the judged rollback to be promoted", || async {
        let _ = load(wharf.http, PRD, "/", 20, 2).await;
        let c = newest_canary_release(api, "webprd").await;
        (c["state"] == "promoted").then_some(c)
    })
    .await;
    let outcome = timed["outcome"].as_str().unwrap();
    let seconds: u64 = outcome.split(" in ").nth(1).and_then(|s| s.split(' ').next()?.parse().ok()).unwrap();
    let requests: u64 = outcome.split("passed: ").nth(1).and_then(|s| s.split(' ').next()?.parse().ok()).unwrap();
    assert!(seconds >= 2 && requests >= 10, "soaked 2 s and judged 10 requests: {timed}");
    eventually(WAIT, "production to serve the code rolled back to", || async {
        let answers = load(wharf.http, PRD, "/", 20, 2).await.ok()?;
        failures(&answers, &["old-code"]).is_empty().then_some(())
    })
    .await;

    // Leaving production turns the feature off; the next release goes straight to the app.
    let coupling = api.call("GET", "/apps/webprd/pipeline-couplings", None).await.1;
    let path = format!("/pipeline-couplings/{}", coupling["id"].as_str().unwrap());
    api.expect("PATCH", &path, json!({"stage": "staging"}), 200).await;
    let f = api.call("GET", "/apps/webprd/features/canary", None).await.1;
    assert_eq!((f["enabled"].as_bool(), f["soak_seconds"].as_u64()), (Some(false), Some(2)), "settings kept: {f}");
    let count = api.call("GET", "/apps/webprd/canary-releases", None).await.1.as_array().unwrap().len();
    api.expect("PATCH", "/apps/webprd/config-vars", json!({"OTHER": "x"}), 200).await;
    let list = api.call("GET", "/apps/webprd/canary-releases", None).await.1;
    assert_eq!(list.as_array().unwrap().len(), count, "no canary release: {list}");
    let (status, e) = api.call("PATCH", "/apps/webprd/features/canary", Some(json!({"enabled": true}))).await;
    assert_eq!(status, 422, "{e}");

    // Promotions are the pipeline's history: they outlive their apps.
    for app in ["webstg", "webprd"] {
        assert_eq!(api.call("DELETE", &format!("/apps/{app}"), None).await.0, 200);
    }
    let kept = api.call("GET", &format!("/pipeline-promotions/{id}"), None).await.1;
    assert_eq!(
        (kept["source"]["app"]["name"].clone(), kept["targets"][0]["status"].clone()),
        (Value::Null, json!("deleted"))
    );
    assert_eq!(api.call("GET", "/pipeline-promotions", None).await.1.as_array().unwrap().len(), 2);
}

/// FE22c: a `kill -9` of Wharf mid-canary, then Wharf again on the same data. The dead run's
/// dynos stay registered until the new run removes them, their processes gone; the requests
/// routed to them in that window fail to connect on both sides alike. Those failures say
/// nothing about either side's code and are not counted: counted, they filled the soak of bad
/// code (20% errors) and drowned production's 0%, and the bad code was promoted. Here it is
/// aborted on its own errors, with none counted on production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_mid_canary_bad_code_is_still_aborted_on_its_own_errors() {
    let dir = TempDir::new("canary-kill-9");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    deployed(&wharf, "webstg", &format!("GREETING=bad-code FAIL_EVERY=5 {command}"), "bad-code").await;
    let feature = json!({"enabled": true, "weight": 50, "min_requests": 100, "soak_requests": 100});
    api.expect("PATCH", "/apps/webprd/features/canary", feature, 200).await;
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    let promotion = api.expect("POST", "/pipeline-promotions", promote, 201).await;
    let held = promotion["targets"][0]["release"]["id"].clone();
    canary_release_in(api, "webprd", "running").await;

    let killed = std::process::Command::new("kill").args(["-KILL", &wharf.pid()]).status().unwrap();
    assert!(killed.success());
    let (ok, _) = wharf.wait_exit().await;
    assert!(!ok, "killed");
    let wharf = Wharf::serve_again_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    // Requests from the new router's first moment, until the canary release ends.
    let (_, ended) = Box::pin(under_load(&wharf, async {
        eventually(WAIT, "the canary release to end", || async {
            let c = newest_canary_release(api, "webprd").await;
            (c["state"] == "aborted" || c["state"] == "promoted").then_some(c)
        })
        .await
    }))
    .await;
    let e = &ended["evidence"];
    assert_eq!(ended["state"], "aborted", "{ended}");
    assert_eq!(e["baseline"]["errors"], 0, "production's code answers no errors: {ended}");
    assert!(e["canary"]["errors"].as_u64().unwrap() >= 5, "{ended}");
    let release = api.call("GET", &format!("/apps/webprd/releases/{}", held.as_str().unwrap()), None).await.1;
    assert_eq!(release["status"], "failed", "{release}");
    let after = load(wharf.http, PRD, "/", 100, 2).await.unwrap();
    assert!(failures(&after, &["old-code"]).is_empty(), "production serves its old code, every request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_canary_settings_are_refused_and_change_nothing() {
    let dir = TempDir::new("canary-settings");
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &[]).await;
    let api = &wharf.api;
    api.expect("POST", "/pipelines", json!({"name": "web"}), 201).await;
    api.expect("POST", "/apps", json!({"name": "prd"}), 201).await;
    api.expect("POST", "/pipeline-couplings", json!({"app": "prd", "pipeline": "web", "stage": "production"}), 201)
        .await;
    let set = json!({"enabled": true, "weight": 20, "soak_requests": 300, "soak_seconds": 60});
    let before = api.expect("PATCH", "/apps/prd/features/canary", set, 200).await;
    // (body, what the 422's message says); after each, the feature is as it was.
    let rows = [
        (json!({"soak_seconds": 0}), "soak_seconds must be 1 to 604800"),
        (json!({"soak_seconds": 604_801}), "soak_seconds must be 1 to 604800"),
        (json!({"soak_seconds": -1}), "soak_seconds must be a whole number of seconds, or null"),
        (json!({"soak_seconds": 1.5}), "soak_seconds must be a whole number of seconds, or null"),
        (json!({"soak_seconds": "60"}), "soak_seconds must be a whole number of seconds, or null"),
        (json!({"soak_requests": 0}), "soak_requests must be at least 1"),
        (json!({"soak_requests": 10}), "soak_requests (10) must be at least min_requests (100)"),
        (json!({"min_requests": 301}), "soak_requests (300) must be at least min_requests (301)"),
        (json!({"min_requests": 0}), "min_requests (0) must be at least min_errors (5)"),
        (json!({"min_requests": 4, "soak_requests": null}), "min_requests (4) must be at least min_errors (5)"),
        (json!({"soak_requests": true}), "soak_requests must be a whole number of requests, or null"),
        (json!({"soak_requests": null, "soak_seconds": null}), "a soak needs soak_requests or soak_seconds"),
        // Only a soak's field takes null ("not waited for"); every judge's field refuses it.
        (json!({"weight": null}), "weight cannot be null: null means a soak that is not waited for"),
        (json!({"errors": null}), "errors cannot be null"),
        (json!({"false_alarm_rate": null}), "false_alarm_rate cannot be null"),
        (json!({"min_requests": null}), "min_requests cannot be null"),
        (json!({"min_errors": null}), "min_errors cannot be null"),
        (json!({"min_rate_ratio": null}), "min_rate_ratio cannot be null"),
        (json!({"min_rate_difference": null}), "min_rate_difference cannot be null"),
        (json!({"soak_requests": 1e30}), "soak_requests is too large: at most 18446744073709551615 requests"),
        (json!({"soak_seconds": 1e30}), "soak_seconds is too large: at most 18446744073709551615 seconds"),
        // A judge's field of the wrong JSON type is refused in JSON's words, as in every body.
        (json!({"weight": "half"}), "invalid type: `weight` is a string \"half\", expected "),
        (json!({"errors": 5}), "invalid type: `errors` is the number 5, expected "),
        // An unknown field is named with every field the feature has, the soak's and `enabled` too.
        (
            json!({"bogus": 1}),
            "unknown field `bogus`, expected one of `enabled`, `soak_requests`, `soak_seconds`, `weight`",
        ),
    ];
    for (body, message) in rows {
        let (status, e) = api.call("PATCH", "/apps/prd/features/canary", Some(body.clone())).await;
        assert_eq!((status, e["id"].as_str()), (422, Some("invalid_params")), "{body}: {e}");
        assert!(e["message"].as_str().unwrap().contains(message), "{body}: {e}");
        assert_eq!(api.call("GET", "/apps/prd/features/canary", None).await.1, before, "{body} changed nothing");
    }
    // Each condition may go alone.
    let f = api.expect("PATCH", "/apps/prd/features/canary", json!({"soak_requests": null}), 200).await;
    assert_eq!((f["soak_requests"].clone(), f["soak_seconds"].as_u64()), (Value::Null, Some(60)), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_never_comes_up_is_aborted_before_any_request_reaches_it() {
    let dir = TempDir::new("canary-never-up");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    // The new code starts only with staging's config: on the canary, which has production's,
    // it exits at once and never passes its health check.
    let picky = format!("[ \"$ROLE\" = staging ] && GREETING=new-code {command}");
    deployed(&wharf, "webstg", &picky, "new-code").await;
    api.expect("PATCH", "/apps/webprd/features/canary", json!({"enabled": true, "weight": 50}), 200).await;
    let prd_before = newest_release(api, "webprd").await;
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    api.expect("POST", "/pipeline-promotions", promote, 201).await;
    let (answers, aborted) = Box::pin(under_load(&wharf, canary_release_in(api, "webprd", "aborted"))).await;
    assert_eq!(aborted["outcome"], "the canary's web dyno did not pass its health check", "{aborted}");
    assert_eq!(
        (aborted["evidence"].clone(), aborted["running_since"].clone()),
        (Value::Null, Value::Null),
        "never split"
    );
    assert!(failures(&answers, &["old-code"]).is_empty(), "no request went to the canary");
    assert_eq!(aborted["release"]["status"], "failed", "{aborted}");
    let dynos = api.call("GET", "/apps/webprd/dynos", None).await.1;
    assert!(dynos.as_array().unwrap().iter().all(|d| d["release"]["id"] == prd_before["id"]), "{dynos}");
    assert_eq!(api.call("GET", "/apps/webprdcanary", None).await.0, 404, "the canary app is gone");
}

/// The processes (their pids) whose environment holds every one of `vars` (`NAME=value`): a
/// dyno, found by its config vars and command's variables.
fn processes_with(vars: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let env: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if vars.iter().all(|v| env.contains(&v.as_bytes())) {
            found.push(pid);
        }
    }
    found
}

/// FE22c #2 and #3: an endpoint registered by hand beside the supervisor's dynos is routed to
/// and `DELETE` removes it (the router stops sending it requests); none may be registered under
/// a supervisor's dyno's name, nor on an app whose releases are canaried. Renaming the pipeline
/// mid-canary is harmless (canary releases know apps by id). Deleting the production app
/// mid-canary ends it whole: the canary app, its dyno's process, the split and the records go
/// with it, and the promotion that started it says `deleted`, not `pending` for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_endpoints_go_with_delete_and_production_deleted_mid_canary_takes_its_canary() {
    let dir = TempDir::new("canary-edges");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    deployed(&wharf, "webstg", &format!("GREETING=canary-code {command}"), "canary-code").await;
    const STG: &str = "webstg-default.localhost";
    let bodies = |answers: Vec<Answer>| -> std::collections::BTreeSet<String> {
        answers.iter().map(|a| format!("{} {}", a.status, String::from_utf8_lossy(&a.body))).collect()
    };

    // An endpoint registered by hand on an app the supervisor runs is routed to beside its dyno.
    let backend = wharf_testkit::http_peer::FileHost::start().await;
    backend.serve("/", b"registered".to_vec());
    let endpoint = json!({"type": "web", "host": "127.0.0.1", "port": backend.addr().port()});
    api.expect("PUT", "/apps/webstg/dynos/web.9", endpoint.clone(), 201).await;
    eventually(WAIT, "the registered endpoint to take requests", || async {
        let seen = bodies(load(wharf.http, STG, "/", 20, 2).await.ok()?);
        seen.contains("200 registered").then_some(())
    })
    .await;
    // Not under the name of a dyno the supervisor runs: that is the supervisor's registration.
    let own = dyno_ids(api, "webstg").await.into_iter().find(|d| d != "web.9").expect("the supervisor's dyno");
    let before = api.call("GET", "/apps/webstg/dynos", None).await.1;
    let (status, e) = api.call("PUT", &format!("/apps/webstg/dynos/{own}"), Some(endpoint.clone())).await;
    assert_eq!((status, e["id"].as_str()), (409, Some("conflict")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("is run by this Wharf's supervisor"), "{e}");
    assert_eq!(api.call("GET", "/apps/webstg/dynos", None).await.1, before, "nothing changed");
    // DELETE removes the registration (200, not a restart's 202), and the router stops using it.
    let (status, gone) = api.call("DELETE", "/apps/webstg/dynos/web.9", None).await;
    assert_eq!((status, gone["name"].as_str()), (200, Some("web.9")), "{gone}");
    assert_eq!(dyno_ids(api, "webstg").await, std::slice::from_ref(&own), "only the supervisor's dyno is left");
    eventually(WAIT, "the router to stop sending requests to the removed endpoint", || async {
        let seen = bodies(load(wharf.http, STG, "/", 40, 2).await.ok()?);
        (seen == std::collections::BTreeSet::from(["200 canary-code".to_owned()])).then_some(())
    })
    .await;
    assert_eq!(api.call("DELETE", "/apps/webstg/dynos/web.9", None).await.0, 404, "gone once");

    // With the canary feature on, production takes no endpoint by hand: it would be unjudged code.
    api.expect("PATCH", "/apps/webprd/features/canary", json!({"enabled": true, "weight": 50}), 200).await;
    let prd_dynos = dyno_ids(api, "webprd").await;
    let (status, e) = api.call("PUT", "/apps/webprd/dynos/web.9", Some(endpoint.clone())).await;
    assert_eq!((status, e["id"].as_str()), (409, Some("conflict")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("code no canary judged"), "{e}");
    assert_eq!(dyno_ids(api, "webprd").await, prd_dynos, "nothing registered");

    // A canary release; renaming the pipeline meanwhile is harmless.
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    let promotion = api.expect("POST", "/pipeline-promotions", promote, 201).await;
    canary_release_in(api, "webprd", "running").await;
    api.expect("PATCH", "/pipelines/web", json!({"name": "web-renamed"}), 200).await;
    let coupling = api.call("GET", "/apps/webprdcanary/pipeline-couplings", None).await.1;
    assert_eq!(
        (coupling["pipeline"]["name"].as_str(), coupling["stage"].as_str()),
        (Some("web-renamed"), Some("canary"))
    );
    assert_eq!(newest_canary_release(api, "webprd").await["state"], "running", "renaming changed nothing");
    // The canary's dyno: production's config vars and the new code's variable.
    let canary_dyno = ["ROLE=production", "GREETING=canary-code"];
    assert_eq!(processes_with(&canary_dyno).len(), 1, "the canary's one dyno runs");

    // Production deleted mid-canary: everything of the canary release goes with it.
    api.expect("DELETE", "/apps/webprd", json!(null), 200).await;
    for path in ["/apps/webprdcanary", "/apps/webprd/canary-releases", "/apps/webprd/canary"] {
        assert_eq!(api.call("GET", path, None).await.0, 404, "{path}");
    }
    eventually(WAIT, "the canary's dyno process to stop", || async {
        processes_with(&canary_dyno).is_empty().then_some(())
    })
    .await;
    eventually(WAIT, "the router to forget both apps", || async {
        let prd = bodies(load(wharf.http, PRD, "/", 4, 1).await.ok()?);
        let canary = bodies(load(wharf.http, "webprdcanary-default.localhost", "/", 4, 1).await.ok()?);
        (prd.iter().chain(&canary).all(|b| b.starts_with("404 "))).then_some(())
    })
    .await;
    let id = promotion["id"].as_str().unwrap();
    let t = api.call("GET", &format!("/pipeline-promotions/{id}/promotion-targets"), None).await.1;
    assert_eq!(t[0]["status"], "deleted", "{t}");
    // Staging runs on, untouched.
    assert_eq!(dyno_ids(api, "webstg").await, [own], "staging's dyno did not restart");
}

/// FE22d #1 and #2: a canary is passed only on evidence from both sides. While a canary release
/// is open, production's `web` cannot be scaled to 0 (its dynos are the baseline); and the soak
/// waits until the baseline too has had `min_requests`, so a high weight, which leaves production
/// a small share, makes the soak slower, never blind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_is_passed_only_with_min_requests_on_both_sides_and_production_keeps_its_web() {
    let dir = TempDir::new("canary-both-sides");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    deployed(&wharf, "webstg", &format!("GREETING=new-code {command}"), "new-code").await;
    let feature = json!({"enabled": true, "weight": 90, "min_requests": 30, "soak_requests": 30});
    api.expect("PATCH", "/apps/webprd/features/canary", feature, 200).await;
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    api.expect("POST", "/pipeline-promotions", promote, 201).await;
    canary_release_in(api, "webprd", "running").await;

    // Production's web stays: scaling it to 0 is refused, by either form, and nothing changes.
    let formation = api.call("GET", "/apps/webprd/formation", None).await.1;
    for (path, body) in [
        ("/apps/webprd/formation", json!({"updates": [{"type": "web", "quantity": 0}]})),
        ("/apps/webprd/formation/web", json!({"quantity": 0})),
    ] {
        let (status, e) = api.call("PATCH", path, Some(body)).await;
        assert_eq!((status, e["id"].as_str()), (409, Some("conflict")), "{path}: {e}");
        assert!(e["message"].as_str().unwrap().contains("web cannot be scaled to 0"), "{e}");
    }
    assert_eq!(api.call("GET", "/apps/webprd/formation", None).await.1, formation, "nothing changed");

    // 100 requests: the canary (90%) has its 30, the baseline (10%) not. The soak waits.
    let answers = load(wharf.http, PRD, "/", 100, 2).await.unwrap();
    assert!(failures(&answers, &["old-code", "new-code"]).is_empty());
    let counts = api.call("GET", "/apps/webprd/canary", None).await.1;
    let requests = |side: &str| {
        let n = counts["evidence"][side]["requests"].as_u64();
        n.unwrap_or_else(|| panic!("no {side} count: the canary release ended early? {counts}"))
    };
    let (canary, baseline) = (requests("canary"), requests("baseline"));
    assert!(canary >= 30 && baseline < 30, "the canary has its min_requests, the baseline not: {counts}");
    // Nothing can be observed to not happen without waiting: eight of the watcher's looks
    // (every 250 ms) with the canary's soak met, and the canary release still runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = newest_canary_release(api, "webprd").await;
    assert_eq!(waiting["state"], "running", "no pass without the baseline's min_requests: {waiting}");

    // Once the baseline has its share too, the soak passes.
    let promoted = eventually(WAIT, "the canary to pass with both sides judged", || async {
        let _ = load(wharf.http, PRD, "/", 100, 2).await;
        let c = newest_canary_release(api, "webprd").await;
        (c["state"] == "promoted").then_some(c)
    })
    .await;
    let evidence = &promoted["evidence"];
    assert!(evidence["baseline"]["requests"].as_u64().unwrap() >= 30, "{promoted}");
    assert!(promoted["outcome"].as_str().unwrap().contains(" of production's) in "), "{promoted}");
}

/// FE22d #4: every 409 of an open canary release says to end it with `DELETE /apps/APP/canary`
/// or `POST /apps/APP/canary/promote`; both end one still `starting` too (its dyno not yet up,
/// so no split), answering with the canary release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_canary_release_is_ended_by_hand_as_the_409s_say() {
    let dir = TempDir::new("canary-starting");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    // With production's config the new code never listens: its canary stays `starting` until
    // the health timeout (20 s here).
    let slow = format!("if [ \"$ROLE\" = staging ]; then GREETING=new-code {command}; else exec sleep 600; fi");
    deployed(&wharf, "webstg", &slow, "new-code").await;
    api.expect("PATCH", "/apps/webprd/features/canary", json!({"enabled": true, "weight": 50}), 200).await;
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    // (how it is ended, the state it ends in, the outcome's words, the release's status)
    let rows = [
        ("DELETE", "/apps/webprd/canary", "aborted", "the canary was aborted by hand before its dyno was up", "failed"),
        (
            "POST",
            "/apps/webprd/canary/promote",
            "promoted",
            "the canary was promoted by hand before its dyno was up",
            "pending",
        ),
    ];
    for (method, path, state, outcome, status) in rows {
        let promotion = api.expect("POST", "/pipeline-promotions", promote.clone(), 201).await;
        let id = promotion["targets"][0]["canary_release"]["id"].as_str().expect("a canary release").to_owned();
        let started = api.call("GET", &format!("/apps/webprd/canary-releases/{id}"), None).await.1;
        assert_eq!(started["state"], "starting", "{started}");
        let (code, ended) = api.call(method, path, Some(json!({}))).await;
        assert_eq!((code, &ended["id"]), (200, &started["id"]), "{method} {path}: {ended}");
        assert_eq!((ended["state"].as_str(), ended["outcome"].as_str()), (Some(state), Some(outcome)), "{ended}");
        let release = newest_release(api, "webprd").await;
        assert_eq!(release["id"], started["release"]["id"]);
        assert!(release["status"] == status || state == "promoted", "{release}");
        assert_eq!(api.call("GET", "/apps/webprdcanary", None).await.0, 404, "the canary app is gone");
        if state == "promoted" {
            // Production now rolls to code that never listens with its config: that roll fails
            // and production keeps serving its old code, as any failed roll does.
            eventually(WAIT, "the promoted release to settle", || async {
                (newest_release(api, "webprd").await["status"] != "pending").then_some(())
            })
            .await;
        }
        assert_eq!(api.call("DELETE", "/apps/webprd/canary", None).await.0, 404, "nothing left to end");
    }
}

/// GET `/apps/webprd/canary`'s evidence: `(canary errors, baseline errors)`.
async fn charged(api: &Api) -> (u64, u64, Value) {
    let (status, c) = api.call("GET", "/apps/webprd/canary", None).await;
    assert_eq!(status, 200, "{c}");
    let e = &c["evidence"];
    (e["canary"]["errors"].as_u64().unwrap(), e["baseline"]["errors"].as_u64().unwrap(), c)
}

/// Waits until production's dynos, as `GET /apps/webprd/dynos` lists them, are `quantity`
/// dynos, all up, none of them named in `not`; returns their names.
async fn production_dynos_up(api: &Api, quantity: usize, not: &[String]) -> Vec<String> {
    eventually(WAIT, &format!("{quantity} new production dynos up"), || async {
        let dynos = api.call("GET", "/apps/webprd/dynos", None).await.1;
        let up: Vec<String> = dynos
            .as_array()?
            .iter()
            .filter(|d| d["type"] == "web" && d["state"] == "up")
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        let all = dynos.as_array()?.iter().filter(|d| d["type"] == "web").count();
        (up.len() == quantity && all == quantity && up.iter().all(|n| !not.contains(n))).then_some(up)
    })
    .await
}

/// FE22d #3 and FE24 NEW-2: a dyno the platform stops is drained first, and nothing about it is
/// charged to its app or to a canary of it. A good canary (production's code with another
/// greeting) runs under load through every stop the platform makes of its own accord: a
/// `kill -9` of Wharf (the new run adopts the old run's web dynos until its own are healthy),
/// a scale up and down, a restart of one dyno and of all (`ps:restart`), and the canary's end
/// by hand, which rolls production to the canary's code and deletes the canary app. Every
/// request is answered by one of the two codes (no `503` "no web dynos", no failed connect),
/// and the judge charges neither side an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_stops_drain_their_dynos_first_and_charge_no_canary_an_error() {
    let dir = TempDir::new("canary-platform-stops");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    staging_and_production(&wharf.api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    deployed(&wharf, "webstg", &format!("GREETING=new-code {command}"), "new-code").await;
    // A soak that does not end by itself while the rows run.
    let feature = json!({"enabled": true, "weight": 50, "soak_requests": 10_000_000});
    wharf.api.expect("PATCH", "/apps/webprd/features/canary", feature, 200).await;
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    wharf.api.expect("POST", "/pipeline-promotions", promote, 201).await;
    canary_release_in(&wharf.api, "webprd", "running").await;
    let codes = ["old-code", "new-code"];
    let before = production_dynos_up(&wharf.api, 1, &[]).await;

    // kill -9 of Wharf: the load starts with the new run's router and lasts until the old
    // run's dynos are gone (one process of each code with production's config: the new run's)
    // and production's new dyno is up.
    let killed = std::process::Command::new("kill").args(["-KILL", &wharf.pid()]).status().unwrap();
    assert!(killed.success());
    assert!(!wharf.wait_exit().await.0, "killed");
    let wharf = Wharf::serve_again_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    let (answers, ()) = Box::pin(under_load(&wharf, async {
        production_dynos_up(api, 1, &before).await;
        eventually(WAIT, "the old run's dynos to be stopped", || async {
            let prd = processes_with(&["GREETING=old-code", "ROLE=production"]).len();
            let canary = processes_with(&["GREETING=new-code", "ROLE=production"]).len();
            (prd == 1 && canary == 1).then_some(())
        })
        .await;
    }))
    .await;
    assert!(answers.len() >= 10, "requests flowed: {}", answers.len());
    assert_eq!(failures(&answers, &codes), [], "kill -9: every request answered by one of the codes");
    let (canary_errors, baseline_errors, c) = charged(api).await;
    assert_eq!((canary_errors, baseline_errors), (0, 0), "kill -9: nothing charged: {c}");
    assert!(c["evidence"]["canary"]["requests"].as_u64().unwrap() > 0, "the canary took its share: {c}");

    // (what the platform does, production's web quantity after it)
    let scale = |n: u32| json!({"updates": [{"type": "web", "quantity": n}]});
    let rows: [(&str, u32); 4] = [("scale up", 2), ("scale down", 1), ("ps:restart web.N", 1), ("ps:restart", 1)];
    let mut running = 1;
    for (what, quantity) in rows {
        let old = production_dynos_up(api, running, &[]).await;
        running = quantity as usize;
        let (answers, ()) = Box::pin(under_load(&wharf, async {
            match what {
                "scale up" | "scale down" => {
                    api.expect("PATCH", "/apps/webprd/formation", scale(quantity), 200).await;
                }
                "ps:restart web.N" => {
                    api.expect("DELETE", &format!("/apps/webprd/dynos/{}", old[0]), json!({}), 202).await;
                }
                _ => {
                    api.expect("DELETE", "/apps/webprd/dynos", json!({}), 202).await;
                }
            }
            // Scaling keeps the dynos that stay; a restart replaces them all.
            let gone: &[String] = if what.starts_with("ps:") { &old } else { &[] };
            let now = production_dynos_up(api, quantity as usize, gone).await;
            if what == "scale down" {
                assert!(now.iter().all(|n| old.contains(n)), "{now:?} {old:?}");
            }
            // A stopped dyno's process is gone too: its drain and stop are over.
            eventually(WAIT, "the stopped dynos' processes to be gone", || async {
                (processes_with(&["GREETING=old-code", "ROLE=production"]).len() == quantity as usize).then_some(())
            })
            .await;
        }))
        .await;
        assert_eq!(failures(&answers, &codes), [], "{what}: every request answered by one of the codes");
        let (canary_errors, baseline_errors, c) = charged(api).await;
        assert_eq!((canary_errors, baseline_errors), (0, 0), "{what}: nothing charged: {c}");
    }

    // The canary's end by hand: production rolls to the canary's code, the canary app goes.
    let (answers, promoted) = Box::pin(under_load(&wharf, async {
        api.expect("POST", "/apps/webprd/canary/promote", json!({}), 200).await;
        let promoted = canary_release_in(api, "webprd", "promoted").await;
        eventually(WAIT, "production to run the canary's code alone", || async {
            let settled = newest_release(api, "webprd").await["status"] == "succeeded";
            let gone = api.call("GET", "/apps/webprdcanary", None).await.0 == 404;
            let old = processes_with(&["GREETING=old-code", "ROLE=production"]).len();
            let new = processes_with(&["GREETING=new-code", "ROLE=production"]).len();
            (settled && gone && old == 0 && new == 1).then_some(())
        })
        .await;
        promoted
    }))
    .await;
    assert_eq!(failures(&answers, &codes), [], "canary end and roll: every request answered by one of the codes");
    let kept = &promoted["evidence"];
    assert_eq!(kept["decision"], "promoted by hand", "a hand promote keeps the counts: {promoted}");
    assert!(kept["canary"]["requests"].as_u64().unwrap() > 0, "{promoted}");
    let after = load(wharf.http, PRD, "/", 20, 2).await.unwrap();
    assert_eq!(failures(&after, &["new-code"]), [], "production serves the canary's code");
    let release = newest_release(api, "webprd").await;
    assert_eq!((&release["id"], &release["status"]), (&promoted["release"]["id"], &json!("succeeded")), "{release}");
}

/// FE24 NEW-1: a weight that leaves production too few requests to compare with. At 99.99
/// production gets one request in 10,000, the judge can abort nothing (each canary error is
/// evidence of at most 1/0.9999), and the soak waits for production's `min_requests`: the
/// `decision` says so, with the count, and once the canary has had a hundred times what its
/// soak asks the canary release is aborted as one that cannot be judged, its outcome saying
/// why, and production never runs the bad code (one answer in five a 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_weight_leaves_production_no_baseline_is_aborted_as_unjudgeable() {
    let dir = TempDir::new("canary-weight");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    deployed(&wharf, "webstg", &format!("GREETING=bad-code FAIL_EVERY=5 {command}"), "bad-code").await;
    // The soak asks 20 canary requests and 5 of production's: aborted at 2,000 canary requests.
    let feature = json!({"enabled": true, "weight": 99.99, "min_requests": 5, "soak_requests": 20});
    api.expect("PATCH", "/apps/webprd/features/canary", feature, 200).await;
    let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
    let promotion = api.expect("POST", "/pipeline-promotions", promote, 201).await;
    let held = promotion["targets"][0]["release"]["id"].as_str().unwrap().to_owned();
    canary_release_in(api, "webprd", "running").await;
    load(wharf.http, PRD, "/", 60, 1).await.unwrap();
    let (_, _, c) = charged(api).await;
    let e = &c["evidence"];
    let (requests, baseline) = (e["canary"]["requests"].as_u64().unwrap(), e["baseline"]["requests"].as_u64().unwrap());
    assert!(requests >= 20 && baseline < 5, "{c}");
    let waiting = format!("running: waiting for {} more baseline requests", 5 - baseline);
    assert!(e["decision"].as_str().unwrap().starts_with(&waiting), "{c}");
    assert!(e["decision"].as_str().unwrap().ends_with("cannot be judged at 2000 canary requests"), "{c}");
    let (_, aborted) = Box::pin(under_load(&wharf, canary_release_in(api, "webprd", "aborted"))).await;
    let outcome = aborted["outcome"].as_str().unwrap();
    assert!(outcome.contains("fewer than min_requests (5), while the canary had"), "{aborted}");
    assert!(outcome.ends_with("lower the weight"), "{aborted}");
    assert!(aborted["evidence"]["canary"]["requests"].as_u64().unwrap() >= 2000, "{aborted}");
    let release = api.call("GET", &format!("/apps/webprd/releases/{held}"), None).await.1;
    assert_eq!(release["status"], "failed", "{release}");
    let after = load(wharf.http, PRD, "/", 50, 2).await.unwrap();
    assert_eq!(failures(&after, &["old-code"]), [], "production serves its old code, every request");
}

/// Either side of a running canary release without a web dyno for
/// `control_api.canary_down_after` (3 s here, 120 s by default) aborts it, the outcome naming
/// the side: a canary with no dyno cannot be judged, and a production with none gives it
/// nothing to be compared with. Each side's dyno is made to crash at every start (its code
/// exits while a file exists) and is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_without_a_web_dyno_for_canary_down_after_aborts_the_canary_release() {
    let dir = TempDir::new("canary-down");
    std::fs::write(dir.path().join("server.py"), wharf_testkit::dyno_server::PYTHON_WEB_DYNO).unwrap();
    let script = dir.path().join("server.py");
    let env = [("WHARF_CONTROL_API__CANARY_DOWN_AFTER", "3s")];
    let wharf = Wharf::serve_again_with_web_dyno_and(WHARF, &dir, &env).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    let (prd_down, canary_down) = (dir.path().join("prd-down"), dir.path().join("canary-down"));
    let crashes_while = |file: &std::path::Path, greeting: &str| {
        format!("[ -e {} ] && exit 1; GREETING={greeting} exec python3 {}", file.display(), script.display())
    };
    deployed(&wharf, "webprd", &crashes_while(&prd_down, "old-code"), "old-code").await;
    deployed(&wharf, "webstg", &crashes_while(&canary_down, "new-code"), "new-code").await;
    api.expect("PATCH", "/apps/webprd/features/canary", json!({"enabled": true, "weight": 50}), 200).await;
    // (the file that makes the side's dyno crash, the side's process, the outcome)
    let rows = [
        (
            &canary_down,
            ["GREETING=new-code", "ROLE=production"],
            "the canary's web dyno has been down for 3 s or more, so it could not be judged",
        ),
        (
            &prd_down,
            ["GREETING=old-code", "ROLE=production"],
            "the production app has had no web dyno for 3 s or more, so the canary had nothing to be compared with",
        ),
    ];
    for (file, side, outcome) in rows {
        let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
        let promotion = api.expect("POST", "/pipeline-promotions", promote, 201).await;
        let id = promotion["targets"][0]["canary_release"]["id"].as_str().unwrap().to_owned();
        canary_release_in(api, "webprd", "running").await;
        std::fs::write(file, "").unwrap();
        for pid in processes_with(&side) {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let ended = eventually(WAIT, "the canary release to end", || async {
            let c = api.call("GET", &format!("/apps/webprd/canary-releases/{id}"), None).await.1;
            (c["state"] != "running").then_some(c)
        })
        .await;
        assert_eq!((ended["state"].as_str(), ended["outcome"].as_str()), (Some("aborted"), Some(outcome)), "{ended}");
        assert_eq!(ended["release"]["status"], "failed", "{ended}");
        assert!(ended["evidence"]["canary"]["requests"].is_u64(), "the counts so far are kept: {ended}");
        std::fs::remove_file(file).unwrap();
        // Production serves again (its crashed dyno restarts once the file is gone).
        eventually(WAIT, "production to serve its old code", || async {
            let r = wharf_testkit::client::send(wharf.http, None, &Req::get(PRD, "/")).await.ok()?;
            (r.status == 200 && r.text() == "old-code").then_some(())
        })
        .await;
    }
}

/// Sends `GET /` to production from eight clients until `run` resolves, each giving up on a
/// request after `patience` (a new connection per request, as a browser's fetch with a
/// timeout): a third over plain HTTP/1.1, a third over HTTPS with HTTP/1.1 and the rest over
/// HTTPS with HTTP/2 (where giving up resets the stream, which the router sees). Returns
/// `(status, body)` of every answer, `(0, "")` for a request given up, and `run`'s result.
async fn impatient_load<T>(
    wharf: &Wharf,
    patience: Duration,
    run: impl std::future::Future<Output = T>,
) -> (Vec<(u16, String)>, T) {
    let done = Arc::new(AtomicBool::new(false));
    let h1 = wharf_testkit::client::tls_config(&wharf.ca, &[b"http/1.1"]);
    let h2 = wharf_testkit::client::tls_config(&wharf.ca, &[b"h2"]);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (addr, tls) = match i % 3 {
            0 => (wharf.http, None),
            1 => (wharf.https, Some(h1.clone())),
            _ => (wharf.https, Some(h2.clone())),
        };
        let done = done.clone();
        clients.spawn(async move {
            let mut answers = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let req = Req::get(PRD, "/");
                let sent = wharf_testkit::client::send(addr, tls.as_ref(), &req);
                answers.push(match tokio::time::timeout(patience, sent).await {
                    Ok(Ok(r)) => (r.status.as_u16(), r.text()),
                    Ok(Err(e)) => panic!("a request failed outright: {e}"),
                    Err(_) => (0, String::new()),
                });
            }
            answers
        });
    }
    let out = run.await;
    done.store(true, Ordering::Relaxed);
    (clients.join_all().await.into_iter().flatten().collect(), out)
}

/// FE27 #1, #3 and #4, and their siblings, with the default judge (5xx, 4xx and slow requests,
/// each against production's own rate; slow after 2 s): new code that hangs, with clients that
/// give up after 1.5 s (before the router's 30 s timeout, which was all that counted a hang, and
/// before the slow bound: each HTTP/1.1 request, plain or HTTPS, is counted slow at 2 s whether
/// its client waits or not, and each HTTP/2 one at its stream's reset, as abandoned), code
/// that closes every connection without an answer, code that answers 3 s late, and code that
/// answers 404 to every third request are each aborted, the outcome naming the kind, and
/// production never runs them. The hang is aborted before `min_requests` (100) canary requests:
/// its evidence is overwhelming long before. The late code's requests in flight when its
/// canary app is deleted finish (its dyno is stopped once they are answered): no client gets a
/// 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_that_hang_hang_up_answer_late_or_answer_404_are_aborted_by_the_default_judge() {
    let dir = TempDir::new("canary-judged-kinds");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    staging_and_production(api).await;
    deployed(&wharf, "webprd", &format!("GREETING=old-code {command}"), "old-code").await;
    // A soak the bad code would pass if its kind were not judged (FE27: the 404 canary passed
    // 150 requests, the 3 s one too); the default judge otherwise.
    let feature = json!({"enabled": true, "weight": 50, "soak_requests": 300});
    let f = api.expect("PATCH", "/apps/webprd/features/canary", feature, 200).await;
    assert_eq!(f["errors"], json!(["4xx", "5xx", "slow"]), "the default judge: {f}");
    assert_eq!(f["slow_seconds"], json!(2.0), "{f}");
    // (the new code's settings, the clients' patience, how the outcome starts)
    let rows = [
        ("DELAY_SECONDS=120", 1.5, "the canary was aborted: the canary's slow-request rate 100.000%"),
        ("HANG_UP=1", 10.0, "the canary was aborted: the canary's error rate 100.000%"),
        ("DELAY_SECONDS=3", 10.0, "the canary was aborted: the canary's slow-request rate 100.000%"),
        ("NOT_FOUND_EVERY=3", 10.0, "the canary was aborted: the canary's 4xx rate"),
    ];
    for (settings, patience, want) in rows {
        let web = format!("GREETING=new-code {settings} {command}");
        let web = json!({"updates": [{"type": "web", "quantity": 1, "command": web}]});
        let staged = api.expect("PATCH", "/apps/webstg/formation", web, 200).await;
        eventually(WAIT, "staging's new release to succeed", || async {
            let r = newest_release(api, "webstg").await;
            (r["status"] == "succeeded" && r["id"] != Value::Null).then_some(())
        })
        .await;
        let promote = json!({"pipeline": "web", "source": {"app": "webstg"}});
        let promotion = api.expect("POST", "/pipeline-promotions", promote, 201).await;
        let held = promotion["targets"][0]["release"]["id"].as_str().unwrap().to_owned();
        canary_release_in(api, "webprd", "running").await;
        let patience = Duration::from_secs_f64(patience);
        let (answers, aborted) =
            Box::pin(impatient_load(&wharf, patience, canary_release_in(api, "webprd", "aborted"))).await;
        let outcome = aborted["outcome"].as_str().unwrap();
        assert!(outcome.starts_with(want), "{settings}: {aborted} ({staged})");
        let canary = &aborted["evidence"]["canary"];
        if settings == "DELAY_SECONDS=120" {
            // Every canary request counted slow: at 2 s over HTTP/1.1 (plain or HTTPS, whose
            // clients' leaving the router does not see), at the stream's reset (1.5 s, before the
            // bound: abandoned) over HTTP/2.
            let (requests, slow) = (canary["requests"].as_u64().unwrap(), canary["slow"].as_u64().unwrap());
            assert!((5..100).contains(&requests) && slow == requests, "before min_requests: {aborted}");
            let abandoned = canary["abandoned"].as_u64().unwrap();
            assert!(
                abandoned > 0 && abandoned < slow,
                "HTTP/2 resets abandoned, HTTP/1.1 counted at the bound: {aborted}"
            );
            let gave_up = answers.iter().filter(|a| a.0 == 0).count();
            assert!(gave_up > 0, "the clients gave up on the canary's requests: {answers:?}");
        }
        if settings == "DELAY_SECONDS=3" {
            let cut: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
            assert_eq!(cut, Vec::<&(u16, String)>::new(), "the canary's requests in flight at its end finished");
        }
        let release = api.call("GET", &format!("/apps/webprd/releases/{held}"), None).await.1;
        assert_eq!(release["status"], "failed", "{settings}: {release}");
        let after = load(wharf.http, PRD, "/", 20, 2).await.unwrap();
        assert_eq!(failures(&after, &["old-code"]), [], "{settings}: production serves its old code");
    }
}
