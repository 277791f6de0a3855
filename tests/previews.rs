//! Preview apps (issue 22) through the public API, with a real `wharf serve`, real dynos served
//! through the router, and a real HTTP server in the test standing in for GitHub's archive
//! endpoint: a signed `pull_request` event creates a review-stage preview app forked from the
//! development app and built from the pull request's head commit, `synchronize` rebuilds it,
//! `closed` deletes it, and the sweeper deletes one past its age; the `preview` hook hears of
//! each. Unsigned, wrongly signed, replayed and malformed events, and bad feature settings, are
//! refused with Heroku's error body and change nothing.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use wharf_testkit::client::{Api, Req};
use wharf_testkit::http_peer::{FileHost, HookReceiver};
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(90);
const SECRET: &str = "a-webhook-secret-of-some-length";

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`: what GitHub sends as
/// `X-Hub-Signature-256` (computed with `ring`, not Wharf's code).
fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let hex: String = ring::hmac::sign(&key, body).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// GitHub's archive endpoints, as far as a build reads them: `GET /repos/octo/shop/tarball/SHA`
/// redirects (302, as GitHub's API does) to `/codeload/octo/shop/tar.gz/SHA`, which answers the
/// tarball of SHA.
struct Archives(FileHost);

impl Archives {
    async fn start() -> Archives {
        Archives(FileHost::start().await)
    }

    /// The head repository's `archive_url`, GitHub's RFC 6570 template.
    fn archive_url(&self) -> String {
        format!("http://{}/repos/octo/shop/{{archive_format}}{{/ref}}", self.0.addr())
    }

    /// Makes the source of commit `sha` (a GitHub-style tarball: one top directory holding the
    /// test kit's web dyno and a Procfile whose command marks the code with `marker`) and serves it.
    fn commit(&self, dir: &Path, sha: &str, marker: &str) {
        let src = dir.join(format!("octo-shop-{}", &sha[..7]));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("server.py"), wharf_testkit::dyno_server::PYTHON_WEB_DYNO).unwrap();
        std::fs::write(src.join("Procfile"), format!("web: MARKER={marker} exec python3 server.py\n")).unwrap();
        let out = dir.join(format!("{sha}.tar.gz"));
        let make = "import os, sys, tarfile\nwith tarfile.open(sys.argv[1], 'w:gz') as t: t.add(sys.argv[2], arcname=os.path.basename(sys.argv[2]))";
        let status = std::process::Command::new("python3")
            .args(["-c", make, out.to_str().unwrap(), src.to_str().unwrap()])
            .status()
            .expect("python3 runs");
        assert!(status.success(), "making the tarball of {sha}");
        let codeload = format!("/codeload/octo/shop/tar.gz/{sha}");
        self.0.serve(&codeload, std::fs::read(&out).unwrap());
        self.0.redirect(&format!("/repos/octo/shop/tarball/{sha}"), &codeload);
    }
}

/// A `pull_request` event's body as GitHub shapes it (the fields Wharf reads, and a few others).
fn pull_request(action: &str, number: u64, sha: &str, archive_url: &str) -> Value {
    json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": if action == "closed" { "closed" } else { "open" },
            "title": "Make it better",
            "merged": false,
            "head": {"ref": format!("feature-{number}"), "sha": sha, "label": "octo:feature",
                     "repo": {"full_name": "octo/shop", "archive_url": archive_url}},
            "base": {"ref": "main", "sha": "0".repeat(40), "repo": {"full_name": "octo/shop", "archive_url": archive_url}},
        },
        "repository": {"full_name": "octo/shop", "archive_url": archive_url},
        "sender": {"login": "octocat"},
    })
}

/// How an event is signed in a row of the table.
#[derive(Clone)]
enum Signed {
    /// Correctly, with this secret.
    With(&'static str),
    /// Not at all.
    Not,
    /// With this header value as it is.
    Header(String),
    /// Correctly for another body.
    OtherBody,
}

/// Sends a GitHub delivery: `event`, `delivery` (none when `None`) and `body`, signed as told.
async fn deliver(
    api: &Api,
    app: &str,
    event: Option<&str>,
    delivery: Option<&str>,
    body: &[u8],
    signed: Signed,
) -> (u16, Value) {
    let mut req = Req::get(&api.addr.to_string(), &format!("/apps/{app}/previews/webhook"));
    req.method = http::Method::POST;
    req = req.header("content-type", "application/json").header("user-agent", "GitHub-Hookshot/test");
    if let Some(e) = event {
        req = req.header("x-github-event", e);
    }
    if let Some(d) = delivery {
        req = req.header("x-github-delivery", d);
    }
    let signature = match signed {
        Signed::With(secret) => Some(sign(secret, body)),
        Signed::Not => None,
        Signed::Header(h) => Some(h),
        Signed::OtherBody => Some(sign(SECRET, b"{}")),
    };
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", &s);
    }
    req.body = Bytes::copy_from_slice(body);
    api.raw(&req).await
}

/// A signed `pull_request` event.
async fn event(api: &Api, app: &str, delivery: &str, body: &Value) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    deliver(api, app, Some("pull_request"), Some(delivery), &bytes, Signed::With(SECRET)).await
}

/// What the app's web dyno answers through the router for `GET /NAME`.
async fn env_of(wharf: &Wharf, app: &str, name: &str) -> Option<String> {
    let host = format!("{app}.localhost");
    let r = wharf_testkit::client::send(wharf.http, None, &Req::get(&host, &format!("/{name}"))).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// Creates `name` in the default space, coupled to pipeline `shop` at `stage`.
async fn coupled(api: &Api, name: &str, stage: &str) -> Value {
    api.expect("POST", "/apps", json!({"name": name}), 201).await;
    let body = json!({"app": name, "pipeline": {"name": "shop"}, "stage": stage});
    api.expect("POST", "/pipeline-couplings", body, 201).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_pull_request_event_creates_rebuilds_and_deletes_a_preview_app() {
    let dir = TempDir::new("previews");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    let archives = Archives::start().await;
    api.expect("POST", "/pipelines", json!({"name": "shop"}), 201).await;
    coupled(api, "shopdev", "development").await;
    let vars = json!({"GREETING": "dev-config", "DATABASE_URL": "postgres://dev"});
    api.expect("PATCH", "/apps/shopdev/config-vars", vars, 200).await;
    let web = json!({"updates": [{"type": "web", "quantity": 2, "command": format!("MARKER=dev-code {command}")},
                                 {"type": "worker", "quantity": 1, "command": "exec sleep 3600"}]});
    api.expect("PATCH", "/apps/shopdev/formation", web, 200).await;
    api.expect("POST", "/apps/shopdev/domains", json!({"hostname": "www.shop.localhost"}), 201).await;
    let hooked = HookReceiver::start(&[]).await;
    let hook = json!({"url": hooked.url(), "events": ["preview"], "secret": "hook-secret"});
    api.expect("POST", "/apps/shopdev/hooks", hook, 201).await;
    let feature = json!({"enabled": true, "secret": SECRET});
    let shown = api.expect("PATCH", "/apps/shopdev/features/preview", feature, 200).await;
    assert_eq!((shown["enabled"].as_bool(), shown["secret"].as_str()), (Some(true), Some("[redacted]")), "{shown}");
    assert_eq!(shown["max_age_seconds"], 5 * 24 * 3600, "Heroku's five days by default: {shown}");
    eventually(WAIT, "the development app to serve its code", || async {
        (env_of(&wharf, "shopdev-default", "MARKER").await.as_deref() == Some("dev-code")).then_some(())
    })
    .await;

    // GitHub's first delivery is a signed ping.
    let (status, pong) =
        deliver(api, "shopdev", Some("ping"), Some("p-1"), b"{\"zen\":\"Keep it simple.\"}", Signed::With(SECRET))
            .await;
    assert_eq!((status, pong["outcome"].as_str()), (200, Some("pong")), "{pong}");

    // opened: a review-stage fork, built from the head commit.
    let (one, two) = ("1".repeat(40), "2".repeat(40));
    archives.commit(dir.path(), &one, "pr-one");
    let (status, created) =
        event(api, "shopdev", "d-1", &pull_request("opened", 7, &one, &archives.archive_url())).await;
    assert_eq!((status, created["outcome"].as_str()), (202, Some("created")), "{created}");
    let preview = created["preview"]["app"]["name"].as_str().unwrap().to_owned();
    assert_eq!(preview, "shopdevpr7-default");
    assert_eq!(created["preview"]["pull_request"]["head"]["sha"], one.as_str());
    eventually(WAIT, "the preview app to serve the pull request's code with the development app's config", || async {
        let marker = env_of(&wharf, &preview, "MARKER").await;
        let greeting = env_of(&wharf, &preview, "GREETING").await;
        (marker.as_deref() == Some("pr-one") && greeting.as_deref() == Some("dev-config")).then_some(())
    })
    .await;
    let coupling = api.call("GET", &format!("/apps/{preview}/pipeline-couplings"), None).await.1;
    assert_eq!(
        (coupling["stage"].as_str(), coupling["pipeline"]["name"].as_str()),
        (Some("review"), Some("shop")),
        "{coupling}"
    );
    let formation = api.call("GET", &format!("/apps/{preview}/formation"), None).await.1;
    let quantity =
        |t: &str| formation.as_array().unwrap().iter().find(|f| f["type"] == t).map(|f| f["quantity"].clone());
    assert_eq!((quantity("web"), quantity("worker")), (Some(json!(1)), Some(json!(0))), "{formation}");
    let domains = api.call("GET", &format!("/apps/{preview}/domains"), None).await.1;
    assert!(!domains.to_string().contains("www.shop.localhost"), "sites are not copied: {domains}");
    let routes = api.call("GET", &format!("/apps/{preview}/routes"), None).await.1;
    assert_eq!(routes, json!([]), "no site routes to the preview");
    let listed = eventually(WAIT, "the preview's build to succeed", || async {
        let list = api.call("GET", "/apps/shopdev/previews", None).await.1;
        (list[0]["build"]["status"] == "succeeded").then_some(list)
    })
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        (listed[0]["pull_request"]["number"].as_u64(), listed[0]["parent"]["name"].as_str()),
        (Some(7), Some("shopdev-default"))
    );
    let source = format!("http://{}/repos/octo/shop/tarball/{one}", archives.0.addr());
    assert_eq!(listed[0]["source_url"], source.as_str(), "GitHub's archive_url template, expanded");

    // synchronize: the new head commit is built and served.
    archives.commit(dir.path(), &two, "pr-two");
    let (status, rebuilt) =
        event(api, "shopdev", "d-2", &pull_request("synchronize", 7, &two, &archives.archive_url())).await;
    assert_eq!((status, rebuilt["outcome"].as_str()), (202, Some("rebuilt")), "{rebuilt}");
    eventually(WAIT, "the preview app to serve the new head commit", || async {
        (env_of(&wharf, &preview, "MARKER").await.as_deref() == Some("pr-two")).then_some(())
    })
    .await;
    // The same head again (a reopen, or a redelivery under a new id) builds nothing.
    let (status, same) =
        event(api, "shopdev", "d-3", &pull_request("reopened", 7, &two, &archives.archive_url())).await;
    assert_eq!((status, same["outcome"].as_str()), (202, Some("unchanged")), "{same}");
    let builds = api.call("GET", &format!("/apps/{preview}/builds"), None).await.1;
    assert_eq!(builds.as_array().unwrap().len(), 2, "one build per head commit: {builds}");

    // closed: the preview app is deleted, the development app keeps serving.
    let (status, closed) =
        event(api, "shopdev", "d-4", &pull_request("closed", 7, &two, &archives.archive_url())).await;
    assert_eq!(
        (status, closed["outcome"].as_str(), closed["preview"]["app"]["name"].as_str()),
        (202, Some("deleted"), Some(preview.as_str())),
        "{closed}"
    );
    assert_eq!(api.call("GET", &format!("/apps/{preview}"), None).await.0, 404);
    assert_eq!(api.call("GET", "/apps/shopdev/previews", None).await.1, json!([]));
    let couplings = api.call("GET", "/pipelines/shop/pipeline-couplings", None).await.1;
    assert_eq!(couplings.as_array().unwrap().len(), 1, "only the development app's: {couplings}");
    assert_eq!(env_of(&wharf, "shopdev-default", "MARKER").await.as_deref(), Some("dev-code"));

    // The sweeper deletes a preview app not deployed for max_age_seconds.
    api.expect("PATCH", "/apps/shopdev/features/preview", json!({"max_age_seconds": 3}), 200).await;
    let (status, created) =
        event(api, "shopdev", "d-5", &pull_request("opened", 8, &one, &archives.archive_url())).await;
    assert_eq!((status, created["outcome"].as_str()), (202, Some("created")), "{created}");
    assert_eq!(created["preview"]["app"]["name"], "shopdevpr8-default");
    eventually(WAIT, "the stale preview app to be swept", || async {
        (api.call("GET", "/apps/shopdevpr8", None).await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(api.call("GET", "/apps/shopdev/previews", None).await.1, json!([]));

    // The development app's preview hook heard of each, signed with the hook's secret.
    let heard = eventually(WAIT, "the preview hook deliveries", || async {
        let got = hooked.received();
        (got.len() >= 5).then_some(got)
    })
    .await;
    let mut told = Vec::new();
    for r in &heard {
        assert_eq!(r.headers.get("x-wharf-event").map(String::as_str), Some("preview"));
        assert_eq!(
            r.headers.get("x-wharf-signature"),
            Some(&sign("hook-secret", &r.body)),
            "signed with the hook's secret"
        );
        let v = r.json();
        let p = &v["preview"];
        told.push(format!(
            "{} #{} {}",
            p["action"].as_str().unwrap(),
            p["pull_request"]["number"],
            p["app"]["name"].as_str().unwrap()
        ));
    }
    told.sort();
    assert_eq!(
        told,
        [
            "created #7 shopdevpr7-default",
            "created #8 shopdevpr8-default",
            "deleted #7 shopdevpr7-default",
            "deleted #8 shopdevpr8-default",
            "rebuilt #7 shopdevpr7-default",
        ]
    );

    // Deleting the development app deletes its preview apps.
    api.expect("PATCH", "/apps/shopdev/features/preview", json!({"max_age_seconds": 3600}), 200).await;
    let (status, created) =
        event(api, "shopdev", "d-6", &pull_request("opened", 9, &one, &archives.archive_url())).await;
    assert_eq!((status, created["outcome"].as_str()), (202, Some("created")), "{created}");
    assert_eq!(api.call("GET", "/apps/shopdevpr9", None).await.0, 200);
    assert_eq!(api.call("DELETE", "/apps/shopdev", None).await.0, 200);
    assert_eq!(api.call("GET", "/apps/shopdevpr9", None).await.0, 404, "the preview app goes with its development app");
}

/// What a refused event must leave as it was: the apps, the development app's previews, the
/// pipeline's couplings, and the features of both apps.
async fn state(api: &Api) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/apps",
        "/apps/shopdev/previews",
        "/pipelines/shop/pipeline-couplings",
        "/apps/shopdev/features",
        "/apps/shopstg/features",
    ] {
        let (status, body) = api.call("GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        out.push(body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_unsigned_events_and_bad_settings_are_refused_and_change_nothing() {
    let dir = TempDir::new("previews-bad");
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &[]).await;
    let api = &wharf.api;
    api.expect("POST", "/pipelines", json!({"name": "shop"}), 201).await;
    coupled(api, "shopdev", "development").await;
    coupled(api, "shopstg", "staging").await;
    api.expect("POST", "/apps", json!({"name": "loose"}), 201).await;
    // Holds the name pull request 7's preview app would take.
    api.expect("POST", "/apps", json!({"name": "shopdevpr7"}), 201).await;

    // The feature's settings.
    let settings: &[(&str, Value, u16, &str)] = &[
        ("shopstg", json!({"enabled": true, "secret": SECRET}), 422, "development stage"),
        ("loose", json!({"enabled": true, "secret": SECRET}), 422, "development stage"),
        ("shopdev", json!({"enabled": true}), 422, "needs a secret"),
        ("shopdev", json!({"enabled": true, "secret": "short"}), 422, "16 to 256 bytes"),
        ("shopdev", json!({"enabled": true, "secret": "x".repeat(257)}), 422, "16 to 256 bytes"),
        ("shopdev", json!({"enabled": true, "secret": SECRET, "max_age_seconds": 0}), 422, "max_age_seconds"),
        (
            "shopdev",
            json!({"enabled": true, "secret": SECRET, "max_age_seconds": 31 * 24 * 3600}),
            422,
            "max_age_seconds",
        ),
        ("shopdev", json!({"enabled": true, "secret": SECRET, "max_age_seconds": -1}), 422, "invalid value"),
        ("shopdev", json!({"enabled": "yes", "secret": SECRET}), 422, "invalid type"),
        ("shopdev", json!({"enabled": true, "secret": SECRET, "repo": "octo/shop"}), 422, "unknown field"),
        ("nosuchapp", json!({"enabled": true, "secret": SECRET}), 404, "app"),
    ];
    for (app, body, want, says) in settings {
        let before = state(api).await;
        let (status, answer) = api.call("PATCH", &format!("/apps/{app}/features/preview"), Some(body.clone())).await;
        assert_eq!(status, *want, "{app} {body}: {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| m.contains(says)) && answer["id"].is_string(),
            "{app} {body}: {answer}"
        );
        assert_eq!(state(api).await, before, "{app} {body}: a refusal changes nothing");
    }
    let shown =
        api.expect("PATCH", "/apps/shopdev/features/preview", json!({"enabled": true, "secret": SECRET}), 200).await;
    assert_eq!(shown["secret"], "[redacted]", "the secret is never shown: {shown}");
    assert!(!wharf.stderr().contains(SECRET), "nor logged");

    // The events.
    let url = "http://127.0.0.1:9/repos/octo/shop/{archive_format}{/ref}";
    let opened = pull_request("opened", 7, &"a".repeat(40), url);
    let body = opened.to_string();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = opened.clone();
        f(&mut v);
        v.to_string()
    };
    let no_head = with(&|v| v["pull_request"]["head"] = Value::Null);
    let bad_sha = with(&|v| v["pull_request"]["head"]["sha"] = json!("main; rm -rf /"));
    let gone_repo = with(&|v| v["pull_request"]["head"]["repo"] = Value::Null);
    let not_template = with(&|v| v["pull_request"]["head"]["repo"]["archive_url"] = json!("http://127.0.0.1:9/a.tgz"));
    let ftp = with(&|v| v["pull_request"]["head"]["repo"]["archive_url"] = json!("ftp://h/{archive_format}{/ref}"));
    let metadata = with(&|v| {
        v["pull_request"]["head"]["repo"]["archive_url"] = json!("http://169.254.169.254/{archive_format}{/ref}")
    });
    let no_number = with(&|v| drop(v.as_object_mut().unwrap().remove("number")));
    let number_0 = with(&|v| v["number"] = json!(0));
    let labeled = with(&|v| v["action"] = json!("labeled"));
    let fork = with(&|v| v["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/shop"));
    let no_base = with(&|v| v["pull_request"]["base"] = json!({"ref": "main"}));
    let ev = Some("pull_request");
    // (what, app, event, delivery, body, signed, status, error id or outcome)
    type Row<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, String, Signed, u16, &'a str);
    let rows: Vec<Row> = vec![
        ("unsigned", "shopdev", ev, Some("b-1"), body.clone(), Signed::Not, 401, "unauthorized"),
        (
            "not sha256=",
            "shopdev",
            ev,
            Some("b-1"),
            body.clone(),
            Signed::Header("sha1=0123".into()),
            401,
            "unauthorized",
        ),
        (
            "truncated",
            "shopdev",
            ev,
            Some("b-1"),
            body.clone(),
            Signed::Header("sha256=00ff".into()),
            401,
            "unauthorized",
        ),
        (
            "not hex",
            "shopdev",
            ev,
            Some("b-1"),
            body.clone(),
            Signed::Header(format!("sha256={}", "zz".repeat(32))),
            401,
            "unauthorized",
        ),
        (
            "another secret",
            "shopdev",
            ev,
            Some("b-1"),
            body.clone(),
            Signed::With("another-secret-of-length"),
            403,
            "forbidden",
        ),
        ("another body", "shopdev", ev, Some("b-1"), body.clone(), Signed::OtherBody, 403, "forbidden"),
        ("app without the feature", "shopstg", ev, Some("b-1"), body.clone(), Signed::With(SECRET), 404, "not_found"),
        ("app without a pipeline", "loose", ev, Some("b-1"), body.clone(), Signed::With(SECRET), 404, "not_found"),
        ("unknown app", "nosuchapp", ev, Some("b-1"), body.clone(), Signed::With(SECRET), 404, "not_found"),
        ("no event", "shopdev", None, Some("b-1"), body.clone(), Signed::With(SECRET), 400, "bad_request"),
        ("no delivery", "shopdev", ev, None, body.clone(), Signed::With(SECRET), 400, "bad_request"),
        ("bad delivery", "shopdev", ev, Some("b 1/.."), body.clone(), Signed::With(SECRET), 400, "bad_request"),
        ("not JSON", "shopdev", ev, Some("b-1"), "{\"action\":".into(), Signed::With(SECRET), 400, "bad_request"),
        ("no number", "shopdev", ev, Some("b-1"), no_number, Signed::With(SECRET), 422, "invalid_params"),
        ("number 0", "shopdev", ev, Some("b-1"), number_0, Signed::With(SECRET), 422, "invalid_params"),
        ("no head", "shopdev", ev, Some("b-1"), no_head, Signed::With(SECRET), 422, "invalid_params"),
        ("sha not a commit", "shopdev", ev, Some("b-1"), bad_sha, Signed::With(SECRET), 422, "invalid_params"),
        ("repository gone", "shopdev", ev, Some("b-1"), gone_repo, Signed::With(SECRET), 422, "invalid_params"),
        ("no archive template", "shopdev", ev, Some("b-1"), not_template, Signed::With(SECRET), 422, "invalid_params"),
        ("ftp archive", "shopdev", ev, Some("b-1"), ftp, Signed::With(SECRET), 422, "invalid_params"),
        ("metadata address", "shopdev", ev, Some("b-1"), metadata, Signed::With(SECRET), 422, "invalid_params"),
        ("preview name taken", "shopdev", ev, Some("b-1"), body.clone(), Signed::With(SECRET), 409, "conflict"),
        ("no base repository", "shopdev", ev, Some("b-1"), no_base, Signed::With(SECRET), 422, "invalid_params"),
        ("from a fork", "shopdev", ev, Some("b-1"), fork, Signed::With(SECRET), 202, "ignored"),
        ("another event", "shopdev", Some("push"), Some("b-1"), body.clone(), Signed::With(SECRET), 202, "ignored"),
        ("another action", "shopdev", ev, Some("b-1"), labeled, Signed::With(SECRET), 202, "ignored"),
    ];
    for (what, app, event_name, delivery, body, signed, want, says) in rows {
        let before = state(api).await;
        let (status, answer) = deliver(api, app, event_name, delivery, body.as_bytes(), signed).await;
        assert_eq!(status, want, "{what}: {answer}");
        let word = if status < 300 { &answer["outcome"] } else { &answer["id"] };
        assert_eq!(word.as_str(), Some(says), "{what}: {answer}");
        if status >= 400 {
            assert!(answer["message"].is_string(), "{what}: Heroku's error body: {answer}");
        }
        assert_eq!(state(api).await, before, "{what}: nothing changes");
    }

    // A replayed delivery is refused; the same event under GitHub's next id is not.
    let closed = pull_request("closed", 9, &"b".repeat(40), url);
    let (status, first) = event(api, "shopdev", "r-1", &closed).await;
    assert_eq!((status, first["outcome"].as_str()), (202, Some("ignored")), "no preview of #9: {first}");
    let before = state(api).await;
    let (status, replay) = event(api, "shopdev", "r-1", &closed).await;
    assert_eq!((status, replay["id"].as_str()), (409, Some("conflict")), "{replay}");
    assert_eq!(state(api).await, before, "a replay changes nothing");
    assert_eq!(event(api, "shopdev", "r-2", &closed).await.0, 202);

    // GitHub does not sign X-GitHub-Delivery, but it signs pull_request.updated_at: an event
    // not newer than the last one acted on for its pull request is refused under any delivery
    // id (a captured event resent, or a stale one delivered late), and changes nothing. Each
    // row is one event of pull request #11, in order: (action, updated_at, head, status, outcome
    // or error id).
    let at = |s: u32| format!("2026-01-02T03:04:{s:02}Z");
    let (one, two) = ("c".repeat(40), "d".repeat(40));
    let sequence: &[(&str, String, &str, u16, &str)] = &[
        ("opened", at(10), &one, 202, "created"),
        ("opened", at(10), &one, 409, "conflict"),
        ("synchronize", at(5), &two, 409, "conflict"),
        ("synchronize", at(20), &two, 202, "rebuilt"),
        ("synchronize", at(20), &two, 409, "conflict"),
        ("closed", at(30), &two, 202, "deleted"),
        ("opened", at(10), &one, 409, "conflict"),
        ("synchronize", at(20), &two, 409, "conflict"),
        ("closed", at(30), &two, 409, "conflict"),
        ("reopened", "yesterday".into(), &two, 422, "invalid_params"),
        ("reopened", at(40), &two, 202, "created"),
        // The same second, another action: GitHub's timestamps are whole seconds.
        ("closed", at(40), &two, 202, "deleted"),
    ];
    for (i, (action, updated_at, sha, want, says)) in sequence.iter().enumerate() {
        let mut body = pull_request(action, 11, sha, url);
        body["pull_request"]["updated_at"] = json!(updated_at);
        let before = state(api).await;
        let (status, answer) = event(api, "shopdev", &format!("o-{i}"), &body).await;
        let word = if status < 300 { &answer["outcome"] } else { &answer["id"] };
        assert_eq!((status, word.as_str()), (*want, Some(*says)), "{i}: {action} at {updated_at}: {answer}");
        if matches!(*says, "created" | "rebuilt") {
            // Its build (of an address nothing listens on) fails on its own time: wait for it, so
            // that the next row's "nothing changes" compares settled states.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while state(api).await[1].to_string().contains("\"pending\"") {
                assert!(std::time::Instant::now() < deadline, "{i}: the build never settled");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if status >= 300 {
            assert_eq!(state(api).await, before, "{i}: {action} at {updated_at}: nothing changes");
        }
    }
    assert_eq!(api.call("GET", "/apps/shopdevpr11", None).await.0, 404);

    // An app that left the development stage acts on no event; a disabled feature answers as none.
    let coupling = api.call("GET", "/apps/shopdev/pipeline-couplings", None).await.1;
    let id = coupling["id"].as_str().unwrap();
    api.expect("PATCH", &format!("/pipeline-couplings/{id}"), json!({"stage": "staging"}), 200).await;
    let before = state(api).await;
    let (status, answer) = event(api, "shopdev", "s-1", &opened).await;
    assert_eq!((status, answer["id"].as_str()), (422, Some("invalid_params")), "{answer}");
    assert_eq!(state(api).await, before);
    api.expect("PATCH", &format!("/pipeline-couplings/{id}"), json!({"stage": "development"}), 200).await;
    // Disabling the feature deletes the preview apps: no `closed` could reach them any more.
    let (status, created) = event(api, "shopdev", "s-3", &pull_request("opened", 12, &"e".repeat(40), url)).await;
    assert_eq!((status, created["outcome"].as_str()), (202, Some("created")), "{created}");
    api.expect("PATCH", "/apps/shopdev/features/preview", json!({"enabled": false}), 200).await;
    assert_eq!(api.call("GET", "/apps/shopdevpr12", None).await.0, 404, "disabling deletes the preview apps");
    assert_eq!(api.call("GET", "/apps/shopdev/previews", None).await.1, json!([]));
    let before = state(api).await;
    assert_eq!(event(api, "shopdev", "s-2", &opened).await.0, 404);
    assert_eq!(state(api).await, before);
}
