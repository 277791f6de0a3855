//! Pipelines (issue 22) through the public API, with real dynos run by the local supervisor
//! and real HTTP receivers for webhooks: a release promoted from development to staging serves
//! the same code with staging's config; a promotion blocked by a required status check goes
//! through once the check succeeds; a safe promotion is refused for a missing config var;
//! webhooks are signed, retried after a 500, and told of releases, promotions, crashes and
//! deletions; and every kind of bad input is refused with Heroku's error body, changing nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::client::{Api, Req};
use wharf_testkit::http_peer::HookReceiver;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`, as a receiver checks it.
fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What the app's web dyno answers through the router for `GET /NAME`.
async fn env_of(wharf: &Wharf, app: &str, name: &str) -> Option<String> {
    let host = format!("{app}-default.localhost");
    let r = wharf_testkit::client::send(wharf.http, None, &Req::get(&host, &format!("/{name}"))).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// The app's newest release.
async fn newest_release(api: &Api, app: &str) -> Value {
    let (status, list) = api.call("GET", &format!("/apps/{app}/releases"), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().last().unwrap().clone()
}

/// Creates `name` in the default space and couples it to `pipeline` at `stage`.
async fn coupled(api: &Api, name: &str, pipeline: &str, stage: &str, required: &[&str]) -> Value {
    api.expect("POST", "/apps", json!({"name": name}), 201).await;
    let body = json!({"app": name, "pipeline": {"name": pipeline}, "stage": stage,
                      "required_status_checks": {"contexts": required}});
    api.expect("POST", "/pipeline-couplings", body, 201).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_moves_code_not_config_once_the_required_checks_pass() {
    let dir = TempDir::new("pipelines");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    api.expect("POST", "/pipelines", json!({"name": "shop"}), 201).await;
    let stages = api.call("GET", "/pipeline-stages", None).await.1;
    assert_eq!(stages, json!(["review", "development", "staging", "canary", "production"]));
    coupled(api, "shopdev", "shop", "development", &[]).await;
    coupled(api, "shopstg", "shop", "staging", &["ci/tests"]).await;
    coupled(api, "shopprd", "shop", "production", &[]).await;
    let receiver = HookReceiver::start(&[]).await;
    let hook = json!({"url": receiver.url(), "events": ["release", "promotion"], "secret": "s3cret"});
    let made = api.expect("POST", "/apps/shopstg/hooks", hook, 201).await;
    assert_eq!(made["secret"], "[redacted]", "the secret is never shown: {made}");

    // Each app its own config and code: the command's MARKER is the code's mark.
    for (app, greeting, marker) in [("shopdev", "dev-config", "dev-code"), ("shopstg", "stg-config", "old-stg-code")] {
        let vars = json!({"GREETING": greeting, "DATABASE_URL": format!("postgres://{app}")});
        api.expect("PATCH", &format!("/apps/{app}/config-vars"), vars, 200).await;
        let web = json!({"updates": [{"type": "web", "quantity": 1, "command": format!("MARKER={marker} {command}")}]});
        api.expect("PATCH", &format!("/apps/{app}/formation"), web, 200).await;
    }
    for (app, marker) in [("shopdev", "dev-code"), ("shopstg", "old-stg-code")] {
        eventually(WAIT, "each app to serve its own code", || async {
            (env_of(&wharf, app, "MARKER").await.as_deref() == Some(marker)).then_some(())
        })
        .await;
    }
    let source = eventually(WAIT, "dev's release to succeed", || async {
        let r = newest_release(api, "shopdev").await;
        (r["status"] == "succeeded").then_some(r)
    })
    .await;
    let stg_before = newest_release(api, "shopstg").await;
    let promote = json!({"pipeline": {"name": "shop"}, "source": {"app": {"name": "shopdev"}}});

    // Blocked: the check staging requires is missing, then pending.
    let (status, refused) = api.call("POST", "/pipeline-promotions", Some(promote.clone())).await;
    assert_eq!((status, refused["id"].as_str()), (409, Some("conflict")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("ci/tests (missing)"), "{refused}");
    let statuses = format!("/apps/shopdev/releases/{}/statuses", source["id"].as_str().unwrap());
    api.expect("POST", &statuses, json!({"state": "pending", "context": "ci/tests"}), 201).await;
    assert_eq!(api.call("GET", &statuses, None).await.1["state"], "pending");
    let (status, refused) = api.call("POST", "/pipeline-promotions", Some(promote.clone())).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("ci/tests (pending)"), "{refused}");
    assert_eq!(newest_release(api, "shopstg").await["id"], stg_before["id"], "a refused promotion deploys nothing");
    assert_eq!(api.call("GET", "/pipeline-promotions", None).await.1, json!([]));

    // Through once the check succeeds.
    api.expect("PATCH", &format!("{statuses}/ci%2Ftests"), json!({"state": "success"}), 200).await;
    assert_eq!(api.call("GET", &statuses, None).await.1["state"], "success");
    let promotion = api.expect("POST", "/pipeline-promotions", promote.clone(), 201).await;
    let targets = promotion["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "every app of the next stage, and only those: {promotion}");
    assert_eq!(targets[0]["app"]["name"], "shopstg-default");
    eventually(WAIT, "staging to serve dev's code with staging's config", || async {
        let marker = env_of(&wharf, "shopstg", "MARKER").await;
        let greeting = env_of(&wharf, "shopstg", "GREETING").await;
        (marker.as_deref() == Some("dev-code") && greeting.as_deref() == Some("stg-config")).then_some(())
    })
    .await;
    let id = promotion["id"].as_str().unwrap();
    let done = eventually(WAIT, "the promotion's target to succeed", || async {
        let (_, t) = api.call("GET", &format!("/pipeline-promotions/{id}/promotion-targets"), None).await;
        (t[0]["status"] == "succeeded").then_some(t)
    })
    .await;
    assert_eq!(done[0]["error_message"], Value::Null);
    assert_eq!(api.call("GET", &format!("/pipeline-promotions/{id}"), None).await.1["status"], "completed");
    let release = newest_release(api, "shopstg").await;
    let version = source["version"].as_u64().unwrap();
    assert_eq!(release["description"], format!("Promotion of shopdev-default v{version}"));
    let stg_vars = api.call("GET", "/apps/shopstg/config-vars", None).await.1;
    assert_eq!(stg_vars["DATABASE_URL"], "postgres://shopstg", "config vars never move: {stg_vars}");
    let released_vars = format!("/apps/shopstg/releases/{}/config-vars", release["id"].as_str().unwrap());
    assert_eq!(api.call("GET", &released_vars, None).await.1, stg_vars, "the release holds staging's config");

    // Staging's hook heard of the promotion and of the release it made, each signed.
    let deliveries = eventually(WAIT, "the hook to hear of the promotion and its release", || async {
        let got = receiver.received();
        let events: Vec<String> = got.iter().map(|r| r.headers["x-wharf-event"].clone()).collect();
        let succeeded = got.iter().any(|r| r.json()["release"]["status"] == "succeeded");
        (events.contains(&"promotion".to_owned()) && succeeded).then_some(got)
    })
    .await;
    for d in &deliveries {
        assert_eq!(d.headers["x-wharf-signature"], sign("s3cret", &d.body), "{:?}", d.headers);
        assert_ne!(d.headers["x-wharf-signature"], sign("another", &d.body));
        assert_eq!(d.json()["app"]["name"], "shopstg-default");
    }

    // Safe promotion from staging: production lacks staging's config var names.
    api.expect("PATCH", "/apps/shopprd/config-vars", json!({"GREETING": "prd"}), 200).await;
    let prd_before = newest_release(api, "shopprd").await;
    let safe = json!({"pipeline": "shop", "source": {"app": "shopstg"}, "safe": true});
    let (status, refused) = api.call("POST", "/pipeline-promotions", Some(safe)).await;
    assert_eq!((status, refused["id"].as_str()), (422, Some("invalid_params")), "{refused}");
    assert_eq!(
        refused["message"], "safe promotion refused: shopprd-default lacks config vars DATABASE_URL",
        "what is missing where"
    );
    assert_eq!(newest_release(api, "shopprd").await["id"], prd_before["id"], "nothing deployed");
    assert_eq!(api.call("GET", "/pipeline-promotions", None).await.1.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_heroku_errors_and_changes_nothing() {
    let dir = TempDir::new("pipelines-bad");
    let (wharf, _) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    api.expect("POST", "/pipelines", json!({"name": "web"}), 201).await;
    coupled(api, "alpha", "web", "development", &[]).await;
    coupled(api, "beta", "web", "staging", &[]).await;
    coupled(api, "gamma", "web", "production", &[]).await;
    // A pipeline whose staging is empty (FE27 #5: its app deleted or uncoupled).
    api.expect("POST", "/pipelines", json!({"name": "gap"}), 201).await;
    coupled(api, "gapdev", "gap", "development", &[]).await;
    coupled(api, "gapprd", "gap", "production", &[]).await;
    api.expect("POST", "/apps", json!({"name": "loose"}), 201).await;
    let beta_release = newest_release(api, "beta").await["id"].as_str().unwrap().to_owned();
    let canary = json!({"enabled": true, "weight": 20, "soak_requests": 150});
    let set = api.expect("PATCH", "/apps/gamma/features/canary", canary, 200).await;
    let want = [
        ("enabled", json!(true)),
        ("weight", json!(20.0)),
        ("soak_requests", json!(150)),
        ("min_requests", json!(100)),
    ];
    for (field, value) in want {
        assert_eq!(set[field], value, "{field}, the rest the defaults: {set}");
    }
    assert_eq!(api.call("GET", "/apps/gamma/features/canary", None).await.1, set);

    // Everything a refusal must leave as it was.
    let state = || async {
        let mut all = Vec::new();
        for path in [
            "/pipelines",
            "/pipeline-couplings",
            "/pipeline-promotions",
            "/apps/alpha/hooks",
            "/apps/alpha/releases",
            "/apps/beta/releases",
            "/apps/gamma/releases",
            "/apps/gapprd/releases",
            "/apps/alpha/releases/1/statuses",
            "/apps/beta/releases/1/statuses",
            "/apps/alpha/features",
            "/apps/gamma/features",
        ] {
            all.push(api.call("GET", path, None).await.1);
        }
        all
    };
    let before = state().await;
    let promote = |source: &str, targets: Option<Vec<&str>>| {
        let mut b = json!({"pipeline": {"name": "web"}, "source": {"app": {"name": source}}});
        if let Some(t) = targets {
            b["targets"] = t.iter().map(|a| json!({"app": {"name": a}})).collect();
        }
        b
    };
    let other_app_release = format!("/apps/alpha/releases/{beta_release}/statuses");
    let table: Vec<(&str, String, Value, u16, &str)> = vec![
        ("POST", "/pipelines".into(), json!({"name": "Bad_Name"}), 422, "pipeline name"),
        ("POST", "/pipelines".into(), json!({"name": "web"}), 409, "already exists"),
        ("POST", "/pipelines".into(), json!({"name": "x", "color": "red"}), 422, "unknown field"),
        ("PATCH", "/pipelines/nosuch".into(), json!({"name": "other"}), 404, "pipeline"),
        (
            "POST",
            "/pipeline-couplings".into(),
            json!({"app": "loose", "pipeline": "web", "stage": "qa"}),
            422,
            "unknown pipeline stage \"qa\"",
        ),
        (
            "POST",
            "/pipeline-couplings".into(),
            json!({"app": "alpha", "pipeline": "web", "stage": "staging"}),
            409,
            "already in pipeline web",
        ),
        (
            "POST",
            "/pipeline-couplings".into(),
            json!({"app": "loose", "pipeline": "nosuch", "stage": "staging"}),
            404,
            "pipeline",
        ),
        (
            "POST",
            "/pipeline-couplings".into(),
            json!({"app": "nosuch", "pipeline": "web", "stage": "staging"}),
            404,
            "app",
        ),
        (
            "POST",
            "/pipeline-couplings".into(),
            json!({"app": "loose", "pipeline": "web", "stage": "staging", "required_status_checks": {"contexts": [""]}}),
            422,
            "status context",
        ),
        ("POST", "/pipeline-promotions".into(), promote("gamma", None), 422, "cannot promote from production"),
        (
            "POST",
            "/pipeline-promotions".into(),
            json!({"pipeline": "gap", "source": {"app": "gapdev"}}),
            422,
            "pipeline gap has no app in staging, the stage after development",
        ),
        (
            "POST",
            "/pipeline-promotions".into(),
            promote("alpha", Some(vec!["gamma"])),
            422,
            "not in the next stage (staging)",
        ),
        ("POST", "/pipeline-promotions".into(), promote("alpha", Some(vec![])), 422, "targets is empty"),
        ("POST", "/pipeline-promotions".into(), promote("loose", None), 422, "not in pipeline web"),
        (
            "POST",
            "/pipeline-promotions".into(),
            json!({"pipeline": "nosuch", "source": {"app": "alpha"}}),
            404,
            "pipeline",
        ),
        ("POST", other_app_release.clone(), json!({"state": "success", "context": "ci"}), 404, "release"),
        (
            "POST",
            "/apps/alpha/releases/1/statuses".into(),
            json!({"state": "green", "context": "ci"}),
            422,
            "unknown variant",
        ),
        ("POST", "/apps/alpha/releases/1/statuses".into(), json!({"state": "success"}), 422, "context"),
        (
            "POST",
            "/apps/alpha/releases/9/statuses".into(),
            json!({"state": "success", "context": "ci"}),
            404,
            "release",
        ),
        ("PATCH", "/apps/alpha/releases/1/statuses/nosuch".into(), json!({"state": "success"}), 404, "status"),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "ftp://example.com/h", "events": ["release"], "secret": "s"}),
            422,
            "http:// or https://",
        ),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "syslog+tcp://127.0.0.1:514", "events": ["release"], "secret": "s"}),
            422,
            "http:// or https://",
        ),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "http://169.254.169.254/latest", "events": ["release"], "secret": "s"}),
            422,
            "outbound policy refuses",
        ),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "https://u:p@example.com/h", "events": ["release"], "secret": "s"}),
            422,
            "credentials",
        ),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "https://example.com/h", "events": [], "secret": "s"}),
            422,
            "at least one event",
        ),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "https://example.com/h", "events": ["deploy"], "secret": "s"}),
            422,
            "unknown variant",
        ),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "https://example.com/h", "events": ["release"], "secret": ""}),
            422,
            "secret",
        ),
        (
            "POST",
            "/apps/alpha/hooks".into(),
            json!({"url": "https://example.com/h", "events": ["release"]}),
            422,
            "secret",
        ),
        // The canary feature: only production apps, checked settings, only `canary` changes here.
        (
            "PATCH",
            "/apps/alpha/features/canary".into(),
            json!({"enabled": true}),
            422,
            "not in a pipeline's production stage",
        ),
        ("PATCH", "/apps/gamma/features/canary".into(), json!({"weight": 100}), 422, "less than 100 percent"),
        ("PATCH", "/apps/gamma/features/canary".into(), json!({"min_errors": -1}), 422, "expected a whole number"),
        ("PATCH", "/apps/gamma/features/canary".into(), json!({"enabled": "yes"}), 422, "enabled must be"),
        ("PATCH", "/apps/gamma/features/canary".into(), json!({"soak_requests": 0}), 422, "soak_requests"),
        ("PATCH", "/apps/gamma/features/canary".into(), json!({"soak_requests": 1.5}), 422, "soak_requests"),
        ("PATCH", "/apps/gamma/features/canary".into(), json!({"colour": "red"}), 422, "unknown field"),
        ("PATCH", "/apps/gamma/features/internal-routing".into(), json!({"enabled": true}), 422, "not changed here"),
        ("PATCH", "/apps/gamma/features/nosuch".into(), json!({"enabled": true}), 404, "feature"),
        ("PATCH", "/apps/nosuch/features/canary".into(), json!({"enabled": true}), 404, "app"),
    ];
    for (method, path, body, want, says) in table {
        let (status, out) = api.call(method, &path, Some(body.clone())).await;
        assert_eq!(status, want, "{method} {path} {body}: {out}");
        let message = out["message"].as_str().unwrap_or_else(|| panic!("Heroku's error body: {out}"));
        assert!(out["id"].is_string() && message.contains(says), "{method} {path} {body}: {out}");
        assert_eq!(state().await, before, "{method} {path} {body} changed something");
    }
    // A partial PATCH keeps the other settings.
    let changed = api.expect("PATCH", "/apps/gamma/features/canary", json!({"min_errors": 3}), 200).await;
    assert_eq!((changed["min_errors"].as_u64(), changed["weight"].as_f64()), (Some(3), Some(20.0)), "{changed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_retried_after_a_500_and_told_of_crashes_and_deletion() {
    let dir = TempDir::new("pipelines-hooks");
    let (wharf, _) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "hooked"}), 201).await;
    let receiver = HookReceiver::start(&[500]).await;
    let body = json!({"url": receiver.url(), "events": ["release", "crashed", "destroy"], "secret": "k"});
    let hook = api.expect("POST", "/apps/hooked/hooks", body, 201).await;
    let hook_id = hook["id"].as_str().unwrap();

    // A release (no command: it succeeds at once); the first answer is a 500.
    api.expect("PATCH", "/apps/hooked/config-vars", json!({"A": "1"}), 200).await;
    let got = eventually(WAIT, "the release delivery again after the 500", || async {
        let got = receiver.received();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(got[0].headers["x-wharf-delivery"], got[1].headers["x-wharf-delivery"], "the same delivery, again");
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[1].headers["x-wharf-signature"], sign("k", &got[1].body));
    assert_eq!(got[1].json()["release"]["description"], "Set A config vars");
    let deliveries = eventually(WAIT, "the deliveries list to say delivered", || async {
        let (_, d) = api.call("GET", &format!("/apps/hooked/hooks/{hook_id}/deliveries"), None).await;
        (d[0]["status"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!((deliveries[0]["attempts"].as_u64(), deliveries[0]["last_status_code"].as_u64()), (Some(2), Some(200)));

    // A hook switched off, or deleted, while its delivery waits for the next attempt is not
    // tried again: the delivery is recorded failed, saying why, after exactly the attempts its
    // receiver got (AU22). Each row's receiver answers 500 for good.
    for (row, stop) in [("switched off", "PATCH"), ("deleted", "DELETE")] {
        let failing = HookReceiver::start(&[500; 10]).await;
        let body = json!({"url": failing.url(), "events": ["release"], "secret": "k"});
        let hook = api.expect("POST", "/apps/hooked/hooks", body, 201).await;
        let path = format!("/apps/hooked/hooks/{}", hook["id"].as_str().unwrap());
        api.expect("PATCH", "/apps/hooked/config-vars", json!({"B": row}), 200).await;
        eventually(WAIT, "the first attempt", || async { (!failing.received().is_empty()).then_some(()) }).await;
        let off = (stop == "PATCH").then(|| json!({"active": false}));
        let (status, out) = api.call(stop, &path, off).await;
        assert_eq!(status, 200, "{row}: {out}");
        // Wharf's log says when it gave the delivery up, and after how many attempts.
        let delivery = failing.received()[0].headers["x-wharf-delivery"].clone();
        let line = eventually(WAIT, "the delivery to be given up", || async {
            let log = wharf.stderr();
            log.lines().find(|l| l.contains("webhook delivery given up") && l.contains(&delivery)).map(str::to_owned)
        })
        .await;
        assert!(line.contains(&format!("why=\"{row}\"")) || line.contains(&format!("why={row}")), "{line}");
        let attempts = failing.received().iter().filter(|r| r.headers["x-wharf-delivery"] == delivery).count();
        assert!(line.contains(&format!("attempts={attempts}")), "{row}: {attempts} attempts reached it: {line}");
        if stop == "PATCH" {
            let (_, d) = api.call("GET", &format!("{path}/deliveries"), None).await;
            let error = format!("the hook was {row}; not tried again");
            assert_eq!(
                (d[0]["status"].as_str(), d[0]["last_error"].as_str()),
                (Some("failed"), Some(error.as_str())),
                "{d}"
            );
        }
    }

    // A worker that exits is a crash; deleting the app is its last delivery.
    let worker = json!({"updates": [{"type": "worker", "quantity": 1, "command": "exit 3"}]});
    api.expect("PATCH", "/apps/hooked/formation", worker, 200).await;
    let crash = eventually(WAIT, "a crashed delivery", || async {
        receiver.received().into_iter().find(|r| r.headers["x-wharf-event"] == "crashed")
    })
    .await;
    assert!(crash.json()["dyno"]["name"].as_str().unwrap().starts_with("worker."), "{}", crash.json());
    api.expect("DELETE", "/apps/hooked", json!({}), 200).await;
    eventually(WAIT, "the destroy delivery", || async {
        receiver.received().into_iter().find(|r| r.headers["x-wharf-event"] == "destroy")
    })
    .await;
}

/// A hook's deliveries never hold up what caused them, and failed attempts back off (AU22): with
/// a receiver that takes connections and never answers, config changes still answer at once
/// (each within the test's deadline, while every delivery hangs); with a receiver that answers
/// 500 for good, the gaps between one delivery's attempts grow (the last gap over twice the
/// first: compared with each other, no duration asserted) and the delivery ends `failed` after
/// its attempts, each one the same signed delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_deliveries_block_nothing_and_back_off() {
    let dir = TempDir::new("pipelines-hook-backoff");
    let (wharf, _) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "patient"}), 201).await;

    // A receiver that accepts and keeps every connection, and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let holding = tokio::spawn({
        let held = held.clone();
        async move {
            while let Ok((conn, _)) = silent.accept().await {
                held.lock().unwrap().push(conn);
            }
        }
    });
    let body = json!({"url": silent_url, "events": ["release"], "secret": "k"});
    api.expect("POST", "/apps/patient/hooks", body, 201).await;
    for i in 0..5 {
        let change = api.expect("PATCH", "/apps/patient/config-vars", json!({"N": i.to_string()}), 200);
        tokio::time::timeout(WAIT, change).await.expect("a config change answers while its hook's receiver hangs");
    }
    eventually(WAIT, "the silent receiver to be called", || async { (!held.lock().unwrap().is_empty()).then_some(()) })
        .await;
    holding.abort();

    // A receiver that answers 500 for good.
    let failing = HookReceiver::start(&[500; 20]).await;
    let body = json!({"url": failing.url(), "events": ["release"], "secret": "k"});
    let hook = api.expect("POST", "/apps/patient/hooks", body, 201).await;
    let path = format!("/apps/patient/hooks/{}/deliveries", hook["id"].as_str().unwrap());
    api.expect("PATCH", "/apps/patient/config-vars", json!({"LAST": "1"}), 200).await;
    let record = eventually(Duration::from_secs(120), "the delivery to be given up", || async {
        let (_, d) = api.call("GET", &path, None).await;
        (d[0]["status"] == "failed").then(|| d[0].clone())
    })
    .await;
    let got = failing.received();
    let attempts = record["attempts"].as_u64().unwrap() as usize;
    assert!(attempts >= 3, "several attempts before giving up: {record}");
    assert_eq!(got.len(), attempts, "each attempt reached the receiver once: {record}");
    assert!(got.iter().all(|r| r.headers["x-wharf-delivery"] == got[0].headers["x-wharf-delivery"]), "one delivery");
    assert!(got.iter().all(|r| r.headers["x-wharf-signature"] == sign("k", &r.body)), "each attempt signed");
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(*gaps.last().unwrap() > *gaps.first().unwrap() * 2, "the attempts back off: gaps {gaps:?}");
}

/// A call (method, path, body), the status it must answer, and JSON pointers into the answer
/// with the values they must have.
type Row<'a> = (&'a str, String, Option<Value>, u16, Vec<(&'a str, Value)>);

/// The working case of every pipeline, coupling, status, promotion and hook endpoint the other
/// tests use only in passing (AU22): one pipeline read by name and by id, a coupling's required
/// checks changed, a status with every optional field listed and read alone, a promotion naming
/// everything by `{"id"}` with its source release, a hook changed (its URL checked again) and
/// deleted, its deliveries under both names (Akkeris' `results`), then the coupling and the pipeline deleted (the
/// apps stay). Each row: the call, the status wanted and fields of the answer wanted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipeline_endpoint_s_working_case_answers_as_documented() {
    let dir = TempDir::new("pipelines-crud");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    let pipeline = api.expect("POST", "/pipelines", json!({"name": "crud"}), 201).await;
    let pid = pipeline["id"].as_str().unwrap().to_owned();
    let dev = coupled(api, "cruddev", "crud", "development", &[]).await;
    let stg = coupled(api, "crudstg", "crud", "staging", &[]).await;
    let web = json!({"updates": [{"type": "web", "quantity": 1, "command": command}]});
    api.expect("PATCH", "/apps/cruddev/formation", web, 200).await;
    let source = eventually(WAIT, "dev's release to succeed", || async {
        let r = newest_release(api, "cruddev").await;
        (r["status"] == "succeeded").then_some(r)
    })
    .await;
    let (rid, dev_id) = (source["id"].as_str().unwrap().to_owned(), dev["app"]["id"].as_str().unwrap().to_owned());
    let statuses = format!("/apps/cruddev/releases/{rid}/statuses");
    let status = json!({"state": "success", "context": "ci", "name": "CI", "description": "all green",
                        "target_url": "https://ci.example.com/1"});
    let receiver = HookReceiver::start(&[]).await;
    let hook = api
        .expect(
            "POST",
            "/apps/cruddev/hooks",
            json!({"url": receiver.url(), "events": ["release"], "secret": "s3cret"}),
            201,
        )
        .await;
    let hooks = format!("/apps/cruddev/hooks/{}", hook["id"].as_str().unwrap());
    let by_ids = json!({"pipeline": {"id": pid}, "source": {"app": {"id": dev_id}, "release": {"id": rid}},
                        "targets": [{"app": {"id": stg["app"]["id"]}}]});
    let stg_coupling = format!("/pipeline-couplings/{}", stg["id"].as_str().unwrap());
    let rows: Vec<Row> = vec![
        ("GET", "/pipelines/crud".into(), None, 200, vec![("/id", json!(pid)), ("/name", json!("crud"))]),
        ("GET", format!("/pipelines/{pid}"), None, 200, vec![("/name", json!("crud"))]),
        (
            "PATCH",
            stg_coupling.clone(),
            Some(json!({"required_status_checks": {"contexts": ["ci"]}})),
            200,
            vec![("/required_status_checks/contexts", json!(["ci"])), ("/stage", json!("staging"))],
        ),
        (
            "GET",
            "/apps/crudstg/pipeline-couplings".into(),
            None,
            200,
            vec![("/required_status_checks/contexts", json!(["ci"]))],
        ),
        ("PATCH", stg_coupling.clone(), Some(json!({"stage": "nowhere"})), 422, vec![("/id", json!("invalid_params"))]),
        ("POST", "/pipeline-promotions".into(), Some(by_ids.clone()), 409, vec![("/id", json!("conflict"))]),
        (
            "POST",
            statuses.clone(),
            Some(status),
            201,
            vec![("/name", json!("CI")), ("/target_url", json!("https://ci.example.com/1"))],
        ),
        (
            "GET",
            statuses.clone(),
            None,
            200,
            vec![
                ("/state", json!("success")),
                ("/statuses/0/context", json!("ci")),
                ("/statuses/0/description", json!("all green")),
                ("/statuses/0/name", json!("CI")),
            ],
        ),
        (
            "GET",
            format!("{statuses}/ci"),
            None,
            200,
            vec![("/context", json!("ci")), ("/target_url", json!("https://ci.example.com/1"))],
        ),
        (
            "POST",
            "/pipeline-promotions".into(),
            Some(by_ids),
            201,
            vec![("/targets/0/app/name", json!("crudstg-default")), ("/source/release/id", json!(rid))],
        ),
        (
            "PATCH",
            hooks.clone(),
            Some(json!({"url": "ftp://example.com/"})),
            422,
            vec![("/id", json!("invalid_params"))],
        ),
        (
            "PATCH",
            hooks.clone(),
            Some(json!({"url": "http://169.254.169.254/"})),
            422,
            vec![("/id", json!("invalid_params"))],
        ),
        (
            "PATCH",
            hooks.clone(),
            Some(json!({"events": ["build"], "active": false})),
            200,
            vec![("/events", json!(["build"])), ("/active", json!(false)), ("/url", json!(receiver.url()))],
        ),
        ("GET", format!("{hooks}/deliveries"), None, 200, vec![]),
        ("GET", format!("{hooks}/results"), None, 200, vec![]),
        ("DELETE", hooks.clone(), None, 200, vec![("/events", json!(["build"]))]),
        ("GET", hooks.clone(), None, 404, vec![("/id", json!("not_found"))]),
        ("DELETE", stg_coupling.clone(), None, 200, vec![("/stage", json!("staging"))]),
        ("GET", "/apps/crudstg/pipeline-couplings".into(), None, 404, vec![]),
        ("DELETE", "/pipelines/crud".into(), None, 200, vec![("/name", json!("crud"))]),
        ("GET", format!("/pipelines/{pid}"), None, 404, vec![]),
        ("GET", "/apps/cruddev/pipeline-couplings".into(), None, 404, vec![]),
        ("GET", "/apps/cruddev".into(), None, 200, vec![("/simple_name", json!("cruddev"))]),
        ("GET", "/apps/crudstg".into(), None, 200, vec![("/simple_name", json!("crudstg"))]),
    ];
    for (method, path, body, want, fields) in rows {
        let (status, got) = api.call(method, &path, body).await;
        assert_eq!(status, want, "{method} {path}: {got}");
        for (pointer, value) in fields {
            assert_eq!(got.pointer(pointer), Some(&value), "{method} {path} {pointer}: {got}");
        }
    }
    let (_, left) = api.call("GET", "/apps/cruddev/hooks", None).await;
    assert_eq!(left, json!([]), "the hook is gone");
}
