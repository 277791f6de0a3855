//! The outbound-destination policy through a live `wharf serve` refusing loopback: a webhook
//! whose IP literal the policy refuses, in any IPv6 spelling of a loopback IPv4 address, or whose
//! host is a numeric form resolvers read as IPv4, is refused with 422 at once and changes
//! nothing; a build source likewise; and a hook whose name resolves only to refused addresses
//! fails at its first delivery attempt, which is not retried (a permanent refusal), while the
//! record says why. The unit table `plane::outbound_tests` runs every host through all four
//! kinds of URL.

use std::time::Duration;

use serde_json::json;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destinations_are_refused_at_once_and_never_retried() {
    let dir = TempDir::new("outbound");
    let env = [("WHARF_OUTBOUND__ALLOW_LOOPBACK", "false"), ("WHARF_OUTBOUND__ALLOW_PRIVATE", "false")];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "out"}), 201).await;
    // (host, what the 422's message says)
    let table: &[(&str, &str)] = &[
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::127.0.0.1]", "loopback"),
        ("[64:ff9b::7f00:1]", "loopback"),
        ("[64:ff9b::a9fe:a9fe]", "link-local"),
        ("[2002:7f00:1::1]", "loopback"),
        ("[::ffff:10.1.2.3]", "private"),
        ("169.254.169.254", "link-local"),
        ("0x7f000001", "host"),
        ("127.1", "host"),
        ("2130706433", "host"),
    ];
    let hooks = || async { api.call("GET", "/apps/out/hooks", None).await.1 };
    let builds = || async { api.call("GET", "/apps/out/builds", None).await.1 };
    let before = (hooks().await, builds().await);
    for (host, says) in table {
        let hook = json!({"url": format!("http://{host}:9/h"), "events": ["release"], "secret": "k"});
        let (status, out) = api.call("POST", "/apps/out/hooks", Some(hook)).await;
        assert_eq!(status, 422, "hook to {host}: {out}");
        assert!(out["id"].is_string() && out["message"].as_str().is_some_and(|m| m.contains(says)), "{host}: {out}");
        let build = json!({"source_blob": {"url": format!("http://{host}:9/app.tgz")}});
        let (status, out) = api.call("POST", "/apps/out/builds", Some(build)).await;
        assert_eq!(status, 422, "build from {host}: {out}");
        assert!(out["message"].as_str().is_some_and(|m| m.contains(says)), "{host}: {out}");
    }
    assert_eq!((hooks().await, builds().await), before, "a refused hook or build changed something");

    // A name is taken, and refused when it resolves to loopback: once, for good.
    let hook = json!({"url": "http://localhost:9/h", "events": ["release"], "secret": "k"});
    let hook = api.expect("POST", "/apps/out/hooks", hook, 201).await;
    api.expect("PATCH", "/apps/out/config-vars", json!({"A": "1"}), 200).await;
    let path = format!("/apps/out/hooks/{}/deliveries", hook["id"].as_str().unwrap());
    let failed = eventually(WAIT, "the delivery to fail", || async {
        let (_, d) = api.call("GET", &path, None).await;
        (d[0]["status"] == "failed").then(|| d[0].clone())
    })
    .await;
    assert_eq!(failed["attempts"], 1, "a refusal is not retried: {failed}");
    assert!(failed["last_error"].as_str().is_some_and(|e| e.contains("refused address")), "{failed}");
}
