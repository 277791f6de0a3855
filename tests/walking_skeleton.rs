//! The walking skeleton, end to end through public interfaces only: `wharf serve` as a child
//! process, apps and dynos created over the REST API, requests over real TLS to two real
//! backends, router lines into a real syslog listener and a live log session. The same test
//! runs on the embedded bus and on Kafka (a tansu broker the test starts).

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::json;
use wharf_testkit::client::{self, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::eventually;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const HOST: &str = "api-default.localhost";

#[tokio::test]
async fn walking_skeleton_on_the_embedded_bus() {
    walking_skeleton(&[]).await;
}

#[tokio::test]
async fn walking_skeleton_on_kafka() {
    let broker = Tansu::start().await;
    walking_skeleton(&["--kafka", &broker.brokers()]).await;
}

async fn walking_skeleton(args: &[&str]) {
    let wharf = Wharf::serve(WHARF, args).await;
    let api = &wharf.api;
    let (one, two) = (DynoServer::start("one").await, DynoServer::start("two").await);
    let drain = SyslogReceiver::tcp().await;

    let (status, app) = api.call("POST", "/apps", Some(json!({"name": "api", "space": "default"}))).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["name"], "api-default");
    for (name, backend) in [("web.1", &one), ("web.2", &two)] {
        let body = json!({"type": "web", "host": "127.0.0.1", "port": backend.port()});
        let (status, dyno) = api.call("PUT", &format!("/apps/api-default/dynos/{name}"), Some(body)).await;
        assert_eq!(status, 201, "{dyno}");
    }
    let (status, d) = api.call("POST", "/apps/api-default/log-drains", Some(json!({"url": drain.url()}))).await;
    assert_eq!(status, 201, "{d}");

    // The router and the logshuttle follow the new snapshot on their own. Probe until a
    // request's line reaches the drain, so that every line after it is known to be drained.
    let tls = client::tls_config(&wharf.ca, &[b"http/1.1"]);
    let probe_id = "probe-request-0000000000";
    eventually(Duration::from_secs(60), "a probe request's line to reach the drain", || {
        let (tls, drain) = (tls.clone(), &drain);
        async move {
            let r = client::send(wharf.https, Some(&tls), &Req::get(HOST, "/").header("x-request-id", probe_id)).await;
            if r.is_ok_and(|r| r.status == 200) {
                let seen = drain.messages().iter().any(|m| m.text().contains(probe_id));
                if seen {
                    return Some(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None
        }
    })
    .await;

    // Round robin over real TLS: ten requests alternate between the two dynos.
    let ids: Vec<String> = (0..10).map(|i| format!("walking-skeleton-request-{i:04}")).collect();
    let mut bodies = Vec::new();
    for id in &ids {
        let r = client::send(wharf.https, Some(&tls), &Req::get(HOST, "/hello?x=1").header("x-request-id", id))
            .await
            .expect("request through the router");
        assert_eq!(r.status, 200);
        bodies.push(r.text());
    }
    assert_eq!(bodies.iter().filter(|b| *b == "one").count(), 5, "{bodies:?}");
    assert!(bodies.windows(2).all(|w| w[0] != w[1]), "round robin alternates: {bodies:?}");

    // The dynos see the platform's headers.
    let seen = one.seen().into_iter().chain(two.seen()).find(|s| s.header("x-request-id") == Some(&ids[0])).unwrap();
    assert_eq!(seen.path, "/hello?x=1");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-port"), Some(wharf.https.port().to_string().as_str()));
    assert_eq!(seen.header("host"), Some(HOST));
    assert!(seen.header("via").is_some_and(|v| v.contains("wharf")));
    assert!(seen.header("x-request-start").is_some_and(|v| v.parse::<u64>().is_ok()));

    // Every request's router line reaches the drain as a valid octet-counted RFC 5424 frame.
    let lines = eventually(Duration::from_secs(30), "all router lines at the drain", || {
        let got: Vec<_> = drain.messages().into_iter().filter(|m| ids.iter().any(|id| m.text().contains(id))).collect();
        let done = got.len() >= ids.len();
        async move { done.then_some(got) }
    })
    .await;
    assert_eq!(drain.errors(), Vec::<String>::new(), "every frame parses as RFC 5424");
    // Each request came on its own connection, which any router worker may have served; lines
    // from different workers carry their timestamps but no order between them.
    let mut lines = lines;
    lines.sort_by_key(|m| ids.iter().position(|id| m.text().contains(&format!("request_id={id} "))));
    for (m, id) in lines.iter().zip(&ids) {
        assert_eq!((m.hostname.as_str(), m.app_name.as_str()), ("api-default", "akkeris/router"));
        let text = m.text();
        assert!(text.contains(&format!("request_id={id} ")), "one line per request: {text}");
        for field in ["host=api-default.localhost", "method=GET", "path=/hello?x=1", "status=200", "bytes=3"] {
            assert!(text.contains(field), "{field} in {text}");
        }
    }

    // A log session returns the same lines as text.
    let (status, session) = api.call("POST", "/apps/api-default/log-sessions", Some(json!({"lines": 50}))).await;
    assert_eq!(status, 201, "{session}");
    let url = session["logplex_url"].as_str().expect("logplex_url");
    let path = &url[url.find("/log-sessions/").expect("session path")..];
    let tail = client::send(api.addr, None, &Req::get(&api.addr.to_string(), path)).await.unwrap();
    assert_eq!(tail.status, 200);
    let text = tail.text();
    for id in &ids {
        assert_eq!(text.matches(&format!("request_id={id} ")).count(), 1, "{id} once in:\n{text}");
    }
    // The probe's early tries may have met the app before its dynos (H14); every other line is
    // a plain access line.
    let mut lines = text.lines().filter(|l| !l.contains(probe_id));
    assert!(lines.all(|l| l.contains(" api-default akkeris/router: host=")), "{text}");

    // A tailing session streams new lines as they happen.
    let (_, session) =
        api.call("POST", "/apps/api-default/log-sessions", Some(json!({"lines": 0, "tail": true}))).await;
    let url = session["logplex_url"].as_str().unwrap();
    let path = &url[url.find("/log-sessions/").unwrap()..];
    let resp = client::send_streaming(api.addr, None, &Req::get(&api.addr.to_string(), path)).await.unwrap();
    let mut body = resp.into_body();
    let live_id = "walking-skeleton-live-0001";
    client::send(wharf.https, Some(&tls), &Req::get(HOST, "/").header("x-request-id", live_id)).await.unwrap();
    let frame =
        tokio::time::timeout(Duration::from_secs(30), body.frame()).await.expect("a live line").unwrap().unwrap();
    let line = String::from_utf8_lossy(frame.data_ref().unwrap()).into_owned();
    assert!(line.contains(&format!("request_id={live_id} ")), "{line}");

    // HTTP/2 works too, and plain HTTP redirects to HTTPS.
    let h2 = client::tls_config(&wharf.ca, &[b"h2", b"http/1.1"]);
    let r = client::send(wharf.https, Some(&h2), &Req::get(HOST, "/")).await.unwrap();
    assert_eq!((r.status.as_u16(), r.version), (200, http::Version::HTTP_2));
    let r = client::send(wharf.http, None, &Req::get(HOST, "/a?b=c")).await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some(format!("https://{HOST}:{}/a?b=c", wharf.https.port()).as_str()));

    let (ok, printed) = wharf.terminate().await;
    assert!(ok, "wharf exits cleanly on SIGTERM");
    assert!(printed.contains("Wharf stopped."), "{printed}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    assert_eq!(api.call("POST", "/apps", Some(json!({"name": "api"}))).await.0, 201);
    let before = api.call("GET", "/apps", None).await.1;
    let drains_before = api.call("GET", "/apps/api-default/log-drains", None).await.1;

    let check = |status: u16, id: &'static str, mention: &'static str| {
        move |(got, body): (u16, serde_json::Value)| {
            assert_eq!((got, body["id"].as_str()), (status, Some(id)), "{body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(mention), "{message:?} should mention {mention:?}");
        }
    };
    check(422, "invalid_params", "invalid app name")(
        api.call("POST", "/apps", Some(json!({"name": "Bad_Name"}))).await,
    );
    check(422, "invalid_params", "unknown field `region`")(
        api.call("POST", "/apps", Some(json!({"name": "web", "region": "us"}))).await,
    );
    check(422, "invalid_params", "invalid type")(api.call("POST", "/apps", Some(json!({"name": 5}))).await);
    check(400, "bad_request", "malformed JSON")(
        api.raw(&{
            let mut r = Req::get(&api.addr.to_string(), "/apps")
                .header("authorization", &format!("Bearer {}", api.token.as_ref().unwrap()));
            r.method = http::Method::POST;
            r.body = bytes::Bytes::from_static(b"{\"name\": ");
            r
        })
        .await,
    );
    check(404, "not_found", "space")(api.call("POST", "/apps", Some(json!({"name": "web", "space": "nope"}))).await);
    check(409, "conflict", "already exists")(api.call("POST", "/apps", Some(json!({"name": "api"}))).await);
    check(404, "not_found", "nope-default")(api.call("GET", "/apps/nope-default", None).await);
    check(404, "not_found", "app")(
        api.call("PUT", "/apps/nope-default/dynos/web.1", Some(json!({"type": "web", "host": "127.0.0.1", "port": 1})))
            .await,
    );
    check(422, "invalid_params", "port")(
        api.call(
            "PUT",
            "/apps/api-default/dynos/web.1",
            Some(json!({"type": "web", "host": "127.0.0.1", "port": 70000})),
        )
        .await,
    );
    check(422, "invalid_params", "type")(
        api.call(
            "PUT",
            "/apps/api-default/dynos/web.1",
            Some(json!({"type": "worker", "host": "127.0.0.1", "port": 1})),
        )
        .await,
    );
    for (url, mention) in [
        ("http://logs.example.com:80", "unsupported drain url scheme"),
        ("syslog+tcp://logs.example.com", "port"),
        ("syslog+tcp://bad host:514", "whitespace"),
        ("not a url", "whitespace"),
        ("syslog+tcp://:514", "host"),
    ] {
        check(422, "invalid_params", mention)(
            api.call("POST", "/apps/api-default/log-drains", Some(json!({ "url": url }))).await,
        );
    }
    check(404, "not_found", "app")(
        api.call("POST", "/apps/nope-default/log-drains", Some(json!({"url": "syslog+tcp://h:1"}))).await,
    );
    check(404, "not_found", "no such endpoint")(api.call("GET", "/nope", None).await);

    let anonymous = client::Api { addr: api.addr, token: None };
    check(401, "unauthorized", "Bearer")(anonymous.call("GET", "/apps", None).await);
    let wrong = client::Api { addr: api.addr, token: Some("wrong-token".into()) };
    check(401, "unauthorized", "invalid credentials")(wrong.call("POST", "/apps", Some(json!({"name": "x"}))).await);
    assert_eq!(anonymous.call("GET", "/healthz", None).await.0, 200, "health needs no token");

    assert_eq!(api.call("GET", "/apps", None).await.1, before, "nothing changed");
    assert_eq!(api.call("GET", "/apps/api-default/log-drains", None).await.1, drains_before);
    assert_eq!(api.call("GET", "/apps/api-default/dynos", None).await.1, json!([]));
    assert!(!wharf.stderr().contains(api.token.as_deref().unwrap()), "the token is never logged");
}

#[tokio::test]
async fn state_and_token_survive_a_restart() {
    let dir = wharf_testkit::TempDir::new("wharf-restart");
    let data = dir.path().join("data");
    let wharf = Wharf::serve_in(WHARF, &[], &data).await;
    let token = wharf.api.token.clone();
    assert_eq!(wharf.api.call("POST", "/apps", Some(json!({"name": "api"}))).await.0, 201);
    let (ok, _) = wharf.terminate().await;
    assert!(ok);
    let again = Wharf::serve_in(WHARF, &[], &data).await;
    assert_eq!(again.api.token, token, "the stored token is reused");
    let (status, app) = again.api.call("GET", "/apps/api-default", None).await;
    assert_eq!(status, 200, "{app}");
}

#[test]
fn unknown_config_keys_are_refused_at_start() {
    let dir = wharf_testkit::TempDir::new("wharf-config");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[router]\nhttps_lsten = \"127.0.0.1:0\"\n").unwrap();
    let out = std::process::Command::new(WHARF)
        .args(["serve", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `https_lsten`"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}
