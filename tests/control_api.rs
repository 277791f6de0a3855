//! The control API's formation and config vars, through a real HTTP client against `wharf
//! serve`: Heroku's shapes, refusals that change nothing, redaction in `socs` spaces, values
//! kept out of logs, concurrent updates, and state across a restart.

use serde_json::{Value, json};
use wharf_testkit::client::Api;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// Sends `body` to `method path`, expects a refusal with `status` whose message says `says`, and
/// checks that `GET check` is what it was before.
async fn refused(api: &Api, method: &str, path: &str, body: Value, status: u16, says: &str, check: &str) {
    let (_, before) = api.call("GET", check, None).await;
    let out = api.expect(method, path, body, status).await;
    let message = out["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{method} {path}: {message:?} should say {says:?}");
    let (_, after) = api.call("GET", check, None).await;
    assert_eq!(before, after, "{method} {path} changed nothing");
}

#[tokio::test]
async fn formation_and_config_vars_in_heroku_shapes() {
    let dir = wharf_testkit::TempDir::new("control-api");
    let data = dir.path().join("data");
    let wharf = Wharf::serve_in(WHARF, &[], &data).await;
    let api = &wharf.api;
    api.expect("POST", "/spaces", json!({"name": "audited", "compliance": ["socs"]}), 201).await;
    api.expect("POST", "/apps", json!({"name": "api", "space": "audited"}), 201).await;
    let formation = "/apps/api-audited/formation";
    assert_eq!(api.call("GET", formation, None).await, (200, json!([])));

    let batch = json!({"updates": [
        {"type": "web", "quantity": 2, "command": "npm start", "port": 5000, "healthcheck": "/health"},
        {"type": "worker", "quantity": 1, "command": "node worker.js"},
    ]});
    let out = api.expect("PATCH", formation, batch, 200).await;
    assert_eq!(out.as_array().map(Vec::len), Some(2), "{out}");
    let web = api.expect("PATCH", &format!("{formation}/web"), json!({"quantity": 3}), 200).await;
    assert_eq!(
        (&web["type"], &web["quantity"], &web["command"], &web["port"], &web["healthcheck"], &web["app"]["name"]),
        (&json!("web"), &json!(3), &json!("npm start"), &json!(5000), &json!("/health"), &json!("api-audited")),
        "what a PATCH does not name is kept: {web}"
    );

    let check = formation;
    for (body, says) in [
        (json!({"updates": [{"type": "web", "quantity": 101}]}), "between 0 and 100"),
        (json!({"updates": [{"type": "web", "quantity": -1}]}), "invalid value"),
        (json!({"updates": [{"type": "web", "port": 0}]}), "port must be between 1 and 65535"),
        (json!({"updates": [{"type": "web", "port": 70000}]}), "invalid value"),
        (json!({"updates": [{"type": "web", "size": "large"}]}), "unknown field `size`"),
        (json!({"updates": [{"type": "Web!", "quantity": 1}]}), "invalid dyno type"),
        (json!({"updates": [{"type": "web", "quantity": 1}, {"type": "web", "quantity": 2}]}), "updated twice"),
        (json!({"updates": []}), "at least one dyno type"),
        (json!({"updates": [{"type": "web", "healthcheck": "health"}]}), "healthcheck must be a path"),
        (json!({"updates": [{"type": "web", "command": "  "}]}), "command must be"),
    ] {
        refused(api, "PATCH", formation, body, 422, says, check).await;
    }
    let (status, _) = api
        .raw(
            &wharf_testkit::client::Req {
                method: http::Method::PATCH,
                body: bytes::Bytes::from_static(b"{\"updates\": ["),
                ..wharf_testkit::client::Req::get(&api.addr.to_string(), formation)
            }
            .header("authorization", &format!("Bearer {}", api.token.as_deref().unwrap()))
            .header("content-type", "application/json"),
        )
        .await;
    assert_eq!(status, 400, "malformed JSON");
    let (status, _) = api.call("PATCH", "/apps/nope-audited/formation/web", Some(json!({"quantity": 1}))).await;
    assert_eq!(status, 404);
    let removed = api.expect("DELETE", &format!("{formation}/worker"), json!(null), 200).await;
    assert_eq!(removed["type"], "worker");
    let (_, now) = api.call("GET", formation, None).await;
    assert_eq!(now.as_array().unwrap().iter().map(|f| f["type"].clone()).collect::<Vec<_>>(), [json!("web")]);

    // Config vars: null deletes; sensitive values are redacted in a socs space, never logged.
    let vars = "/apps/api-audited/config-vars";
    assert_eq!(api.call("GET", vars, None).await, (200, json!({})));
    let set = json!({"API_TOKEN": "t0k3n-never-shown", "PLAIN": "visible", "GONE": "x"});
    let out = api.expect("PATCH", vars, set, 200).await;
    assert_eq!(out, json!({"API_TOKEN": "[redacted]", "GONE": "x", "PLAIN": "visible"}));
    let out = api.expect("PATCH", vars, json!({"GONE": null}), 200).await;
    assert_eq!(out, json!({"API_TOKEN": "[redacted]", "PLAIN": "visible"}));
    for (body, says) in [
        (json!({"1BAD": "v"}), "invalid config var name"),
        (json!({"OK": "v", "BAD-NAME": "v"}), "invalid config var name"),
        (json!({"OK": 5}), "invalid type"),
        (json!({"OK": "x".repeat(40_000)}), "longer than"),
    ] {
        refused(api, "PATCH", vars, body, 422, says, vars).await;
    }

    // Twenty PATCHes at once, each setting its own variable: none is lost.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let api = Api { addr: api.addr, token: api.token.clone() };
        tasks.spawn(async move { api.call("PATCH", vars, Some(json!({format!("VAR_{i}"): i.to_string()}))).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().0, 200);
    }
    let (_, all) = api.call("GET", vars, None).await;
    for i in 0..20 {
        assert_eq!(all[format!("VAR_{i}")], json!(i.to_string()), "{all}");
    }
    assert!(!wharf.stderr().contains("t0k3n-never-shown"), "config var values are never logged");

    // Everything survives a restart.
    let (_, formation_before) = api.call("GET", formation, None).await;
    let (ok, _) = wharf.terminate().await;
    assert!(ok);
    let wharf = Wharf::serve_in(WHARF, &[], &data).await;
    let api = &wharf.api;
    assert_eq!(api.call("GET", formation, None).await, (200, formation_before));
    assert_eq!(api.call("GET", vars, None).await, (200, all));

    // Deleting the app deletes its formation and config vars.
    api.expect("DELETE", "/apps/api-audited", json!(null), 200).await;
    api.expect("POST", "/apps", json!({"name": "api", "space": "audited"}), 201).await;
    assert_eq!(api.call("GET", formation, None).await, (200, json!([])));
    assert_eq!(api.call("GET", vars, None).await, (200, json!({})));
}
