//! Keeps `/openapi.json` true. Every route the code serves is described and every described
//! operation is served (the control API's routes are listed by the same table that registers
//! them, so the list cannot drift); and a property-based run against a live `wharf serve`
//! sends requests built from the document (valid ones, and ones with wrong types, missing and unknown fields,
//! out-of-range numbers and odd strings) and checks that no answer is a 5xx and every answer
//! fits the schema the document gives for it: the success schema for 2xx, the error shape else.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use wharf_testkit::client::{Api, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
/// Requests per operation.
const ROUNDS: usize = 40;

/// The operations `wharf serve` serves beside the control API's own (the `extra` routes of
/// `wharf_control_api::router`): the logshuttle's live tails. The property run checks each is
/// really served, not answered by the router's fallback.
const EXTRA: &[(&str, &str)] = &[("GET", "/log-sessions/{token}")];

fn document() -> Value {
    serde_json::from_str(wharf_control_api::http::OPENAPI).expect("the document is JSON")
}

/// `(METHOD, /path/{param})` for every operation served: the control API's route table, which
/// is the same declaration that registers the routes, and the [`EXTRA`] ones.
fn served() -> BTreeSet<(String, String)> {
    let own = wharf_control_api::http::endpoints().map(|e| (e.method.to_owned(), e.path.to_owned()));
    own.chain(EXTRA.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))).collect()
}

fn described(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn every_route_is_described_and_every_description_is_a_route() {
    let doc = document();
    let served = served();
    let described = described(&doc);
    assert!(served.len() > 40, "the route table lists the routes: {served:?}");
    let missing: Vec<_> = served.difference(&described).collect();
    assert!(missing.is_empty(), "served but not in the document: {missing:?}");
    let extra: Vec<_> = described.difference(&served).collect();
    assert!(extra.is_empty(), "in the document but not served: {extra:?}");
}

/// Resolves `$ref`s.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(doc, &doc["components"]["schemas"][r.rsplit('/').next().expect("a ref name")]),
        None => schema,
    }
}

/// Why `value` does not fit `schema`, if it does not.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if value.is_null() && schema["nullable"] == json!(true) {
        return Ok(());
    }
    let fail = |why: String| Err(format!("{at}: {why} (got {value})"));
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return fail(format!("not one of {allowed:?}"));
    }
    match schema["type"].as_str() {
        None => Ok(()),
        Some("string") if value.is_string() => Ok(()),
        Some("boolean") if value.is_boolean() => Ok(()),
        Some("integer") | Some("number") if value.is_number() => {
            let n = value.as_f64().expect("a number");
            if schema["type"] == "integer" && !(value.is_i64() || value.is_u64()) {
                return fail("not an integer".into());
            }
            if schema["minimum"].as_f64().is_some_and(|m| n < m) || schema["maximum"].as_f64().is_some_and(|m| n > m) {
                return fail("out of range".into());
            }
            Ok(())
        }
        Some("array") if value.is_array() => {
            for (i, item) in value.as_array().expect("an array").iter().enumerate() {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Some("object") if value.is_object() => {
            let map = value.as_object().expect("an object");
            for r in schema["required"].as_array().into_iter().flatten() {
                if !map.contains_key(r.as_str().expect("a name")) {
                    return fail(format!("missing {r}"));
                }
            }
            for (k, v) in map {
                match schema["properties"].get(k) {
                    Some(s) => check(doc, s, v, &format!("{at}.{k}"))?,
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => return fail(format!("unexpected property {k}")),
                        Value::Object(_) => check(doc, &schema["additionalProperties"], v, &format!("{at}.{k}"))?,
                        _ => {}
                    },
                }
            }
            Ok(())
        }
        Some(t) => fail(format!("not a {t}")),
    }
}

/// Strings that are valid somewhere, and strings that are trouble anywhere.
const STRINGS: &[&str] = &[
    "api-default",
    "other-default",
    "default",
    "web",
    "worker",
    "web.1",
    "www.example.localhost",
    "/",
    "/api",
    "/a/../b",
    "syslog+tcp://127.0.0.1:1",
    "https://user:pw@127.0.0.1:1/x",
    "http://nope",
    "5xx",
    "4xx",
    "echo hi",
    "akkeris/build",
    "2024-01-02T03:04:05Z",
    "",
    " ",
    "\u{0}",
    "Ünïcödé ✓",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "00000000-0000-0000-0000-000000000000",
    "A_VAR",
    "%2e%2e",
];

/// A plausible value for a field called `name`, so that many requests get past validation and
/// reach the operation itself.
fn hint(name: &str, rng: &mut fastrand::Rng) -> Option<Value> {
    let n = rng.u32(..1_000_000);
    Some(json!(match name {
        "app" => ["api-default", "other-default"][rng.usize(..2)].to_owned(),
        "canary_app" => "other-default".to_owned(),
        "host" => "127.0.0.1".to_owned(),
        "type" => ["web", "worker"][rng.usize(..2)].to_owned(),
        "source" => "akkeris/build".to_owned(),
        "process" | "dyno" => "web.1".to_owned(),
        "healthcheck" => "/health".to_owned(),
        "command" => "echo hi".to_owned(),
        "url" => format!("syslog+tcp://127.0.0.1:{}", 1 + n % 60000),
        "domain" => format!("s{n}.example.localhost"),
        "source_path" => format!("/p{n}"),
        "target_path" => "/".to_owned(),
        "name" => format!("a{n}"),
        "site" => "www.example.localhost".to_owned(),
        "space" => "default".to_owned(),
        "message" => "hello".to_owned(),
        "time" => "2024-01-02T03:04:05Z".to_owned(),
        "stream" => "stdout".to_owned(),
        _ => return None,
    }))
}

/// A value for `schema` (of a field called `name`): usually of the right shape, sometimes not.
fn generate(doc: &Value, schema: &Value, rng: &mut fastrand::Rng, depth: u32, name: &str) -> Value {
    let schema = resolve(doc, schema);
    if rng.u8(..100) < 70
        && let Some(v) = hint(name, rng)
    {
        return v;
    }
    if rng.u8(..100) < 8 {
        // Wrong type.
        return [json!(null), json!(7), json!("x"), json!([]), json!({}), json!(true)][rng.usize(..6)].clone();
    }
    if let Some(allowed) = schema["enum"].as_array()
        && rng.u8(..100) < 85
    {
        return allowed[rng.usize(..allowed.len())].clone();
    }
    match schema["type"].as_str() {
        Some("string") => match rng.u8(..10) {
            0 => json!("x".repeat(rng.usize(200..5000))),
            _ => json!(STRINGS[rng.usize(..STRINGS.len())]),
        },
        Some("integer") => json!([0i64, 1, 2, 3, 100, 101, 65535, 65536, -1, i64::MAX][rng.usize(..10)]),
        Some("number") => json!([0.0, 0.5, 1.0, 10.0, 50.0, 100.0, 101.0, -1.0, 1e300][rng.usize(..9)]),
        Some("boolean") => json!(rng.bool()),
        Some("array") if depth < 4 => {
            let n = [0usize, 1, 1, 2, 3][rng.usize(..5)];
            Value::Array((0..n).map(|_| generate(doc, &schema["items"], rng, depth + 1, name)).collect())
        }
        Some("object") if depth < 4 => {
            let mut map = Map::new();
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            for (k, s) in schema["properties"].as_object().into_iter().flatten() {
                let keep = if required.contains(&k.as_str()) { rng.u8(..100) < 92 } else { rng.bool() };
                if keep {
                    map.insert(k.clone(), generate(doc, s, rng, depth + 1, k));
                }
            }
            if schema["additionalProperties"].is_object() {
                for _ in 0..rng.usize(..3) {
                    let k = STRINGS[rng.usize(..STRINGS.len())];
                    map.insert(k.to_owned(), generate(doc, &schema["additionalProperties"], rng, depth + 1, ""));
                }
            } else if rng.u8(..100) < 8 {
                map.insert("unknown_field".into(), json!(1));
            }
            Value::Object(map)
        }
        _ => json!(null),
    }
}

/// Path parameter values: mostly ones that exist after [`seed`], some that do not.
fn param(name: &str, rng: &mut fastrand::Rng) -> String {
    let pool: &[&str] = match name {
        "app" => &[
            "api-default",
            "api-default",
            "other-default",
            "nope-default",
            "Bad Name",
            "00000000-0000-0000-0000-000000000000",
        ],
        "space" => &["default", "stg", "nope"],
        "dyno" => &["web.1", "web.1", "web.2", "worker.1", "bad"],
        "type" => &["web", "worker", "Bad!"],
        "drain" => &["syslog+tcp://127.0.0.1:1", "nope"],
        "site" => &["www.example.localhost", "nope.localhost", "bad_domain"],
        "route" | "cert" => &["00000000-0000-0000-0000-000000000000", "nope"],
        _ => &["x"],
    };
    let v = pool[rng.usize(..pool.len())];
    v.replace(' ', "%20").replace('!', "%21")
}

/// Makes sure the fixtures the parameters name exist, whatever earlier requests deleted.
async fn seed(api: &Api, backend: &DynoServer) {
    let _ = api.call("POST", "/spaces", Some(json!({"name": "stg"}))).await;
    for name in ["api", "other"] {
        let _ = api.call("POST", "/apps", Some(json!({"name": name, "space": "default"}))).await;
    }
    let dyno = json!({"type": "web", "host": "127.0.0.1", "port": backend.port()});
    let _ = api.call("PUT", "/apps/api-default/dynos/web.1", Some(dyno)).await;
    let _ = api.call("POST", "/apps/api-default/log-drains", Some(json!({"url": "syslog+tcp://127.0.0.1:1"}))).await;
    let _ = api.call("POST", "/sites", Some(json!({"domain": "www.example.localhost"}))).await;
    let route = json!({"app": "api-default", "source_path": "/api"});
    let _ = api.call("POST", "/sites/www.example.localhost/routes", Some(route)).await;
    let formation = json!({"updates": [{"type": "worker", "quantity": 0}]});
    let _ = api.call("PATCH", "/apps/api-default/formation", Some(formation)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_get_no_5xx_and_answers_that_fit_the_document_on_sqlite() {
    random_requests_get_no_5xx_and_answers_that_fit_the_document(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_get_no_5xx_and_answers_that_fit_the_document_on_postgres() {
    let pg = wharf_testkit::postgres::Postgres::start().await;
    let url = pg.database("wharf").await;
    random_requests_get_no_5xx_and_answers_that_fit_the_document(&["--database-url", &url]).await;
}

/// The property run against `wharf serve` with `args`.
async fn random_requests_get_no_5xx_and_answers_that_fit_the_document(args: &[&str]) {
    let doc = document();
    // On a database (a replica) every shared secret is given; alone on SQLite, it makes them.
    let dir = wharf_testkit::TempDir::new("openapi");
    let env: &[(&str, &str)] =
        if args.contains(&"--database-url") { &wharf_testkit::wharf::REPLICA_SECRETS } else { &[] };
    let wharf = Wharf::serve_with(WHARF, args, &dir.path().join("data"), env).await;
    let api = &wharf.api;
    let backend = DynoServer::start("ok").await;
    let (status, served) = api.call("GET", "/openapi.json", None).await;
    assert_eq!((status, &served), (200, &doc), "the API serves the document");
    for (method, path) in EXTRA {
        let (status, answer) = api.call(method, &path.replace("{token}", "not-a-grant"), None).await;
        let fallback = status == 405 || answer["message"] == "no such endpoint";
        assert!(!fallback, "{method} {path} is described but not served: {status} {answer}");
    }

    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            if op["x-streaming"] == json!(true) {
                continue;
            }
            for _ in 0..ROUNDS {
                seed(api, &backend).await;
                let mut concrete = path.clone();
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().expect("a name");
                    concrete = concrete.replace(&format!("{{{name}}}"), &param(name, &mut rng));
                }
                let body = op["requestBody"]["content"]["application/json"]["schema"].as_object().map(|_| {
                    generate(&doc, &op["requestBody"]["content"]["application/json"]["schema"], &mut rng, 0, "")
                });
                let mut req = Req::get(&api.addr.to_string(), &concrete)
                    .header("authorization", &format!("Bearer {}", api.token.as_deref().expect("token")));
                req.method = http::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
                if let Some(b) = &body {
                    req = req.header("content-type", "application/json");
                    req.body = bytes::Bytes::from(b.to_string());
                }
                let r = wharf_testkit::client::send(api.addr, None, &req).await.expect("the API answers");
                let status = r.status.as_u16();
                let what = format!(
                    "{} {concrete} {}",
                    method.to_uppercase(),
                    body.as_ref().map(Value::to_string).unwrap_or_default()
                );
                assert!(status < 500, "{what}: {status} {}", r.text());
                let answer: Value =
                    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", r.text()));
                let schema = if (200..300).contains(&status) {
                    let (_, ok) = op["responses"]
                        .as_object()
                        .expect("responses")
                        .iter()
                        .find(|(k, _)| k.starts_with('2'))
                        .expect("a 2xx");
                    &ok["content"]["application/json"]["schema"]
                } else {
                    &op["responses"]["default"]["content"]["application/json"]["schema"]
                };
                if let Err(e) = check(&doc, schema, &answer, "answer") {
                    panic!("{what}: {status}: {e}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1500, "{checked} requests checked");
}
