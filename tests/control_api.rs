//! The control API's formation and config vars, through a real HTTP client against `wharf
//! serve`: Heroku's shapes, refusals that change nothing, redaction in `socs` spaces, values
//! kept out of logs, concurrent updates, and state across a restart; on SQLite and on a real
//! PostgreSQL server, where two replicas share one database.

use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use wharf_testkit::client::Api;
use wharf_testkit::postgres::Postgres;
use wharf_testkit::wharf::{REPLICA_SECRETS, Wharf, WharfControlApi};

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
async fn formation_and_config_vars_on_sqlite() {
    formation_and_config_vars_in_heroku_shapes(&[]).await;
}

#[tokio::test]
async fn formation_and_config_vars_on_postgres() {
    let pg = Postgres::start().await;
    let url = pg.database("wharf").await;
    let logs = formation_and_config_vars_in_heroku_shapes(&["--database-url", &url]).await;
    assert!(!logs.contains(pg.password()), "the database password is never printed");
    let versions = pg.query("wharf", "SELECT version FROM wharf_meta").await;
    let log = pg.query("wharf", "SELECT count(*) FROM wharf_changes").await;
    assert_eq!(versions, log, "the state is in PostgreSQL, with one log entry per version");
}

/// The suite, on the database `args` name; returns what the servers printed.
async fn formation_and_config_vars_in_heroku_shapes(args: &[&str]) -> String {
    let dir = wharf_testkit::TempDir::new("control-api");
    let data = dir.path().join("data");
    // On a database (a replica) every shared secret is given; alone on SQLite, it makes them.
    let env: &[(&str, &str)] = if args.contains(&"--database-url") { &REPLICA_SECRETS } else { &[] };
    let wharf = Wharf::serve_with(WHARF, args, &data, env).await;
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
        // An unknown size names the configured ones; an unknown field is still refused.
        (
            json!({"updates": [{"type": "web", "size": "large"}]}),
            "unknown dyno size \"large\": one of Basic, Standard-1X",
        ),
        (json!({"updates": [{"type": "web", "size": 2}]}), "invalid type"),
        (json!({"updates": [{"type": "web", "memory": "1GiB"}]}), "unknown field `memory`"),
        (json!({"updates": [{"type": "web", "quantity": "two"}]}), "invalid value"),
        (json!({"updates": [{"type": "web", "quantity": "-"}]}), "invalid value"),
        (json!({"updates": [{"type": "Web!", "quantity": 1}]}), "invalid dyno type"),
        (json!({"updates": [{"type": "web", "quantity": 1}, {"type": "web", "quantity": 2}]}), "updated twice"),
        (json!({"updates": []}), "at least one dyno type"),
        (json!({"updates": [{"type": "web", "healthcheck": "health"}]}), "healthcheck must be a path"),
        (json!({"updates": [{"type": "web", "command": "  "}]}), "command must be"),
        (json!({"updates": [{"type": "web", "command": "run\u{0}me"}]}), "no NUL byte"),
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
        // What a process's environment cannot hold: refused, and nothing changes.
        (json!({"OK": "v", "BAD": "before\u{0}after"}), "NUL byte"),
        (json!({"BAD\u{0}NAME": "v"}), "invalid config var name"),
        (json!({"A=B": "v"}), "invalid config var name"),
        (json!({"": "v"}), "invalid config var name"),
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

    // Everything survives a restart: the state once every release has settled. The local
    // supervisor rolls to each release of these changes, and `npm start` runs nowhere here, so
    // a roll still going when the test stops Wharf could fail after the restart and rightly
    // withdraw its release (the app goes back to its running release's formation). With no
    // dyno to run, every roll ends at once.
    api.expect("PATCH", &format!("{formation}/web"), json!({"quantity": 0}), 200).await;
    wharf_testkit::eventually(std::time::Duration::from_secs(60), "every release to settle", || async {
        let (_, releases) = api.call("GET", "/apps/api-audited/releases", None).await;
        let pending = releases.as_array()?.iter().any(|r| r["status"] == "pending");
        (!pending).then_some(())
    })
    .await;
    let (_, all) = api.call("GET", vars, None).await;
    let (_, formation_before) = api.call("GET", formation, None).await;
    let mut printed = wharf.stderr();
    let (ok, out) = wharf.terminate().await;
    assert!(ok);
    printed.push_str(&out);
    let wharf = Wharf::serve_with(WHARF, args, &data, env).await;
    let api = &wharf.api;
    assert_eq!(api.call("GET", formation, None).await, (200, formation_before));
    assert_eq!(api.call("GET", vars, None).await, (200, all));

    // Deleting the app deletes its formation and config vars.
    api.expect("DELETE", "/apps/api-audited", json!(null), 200).await;
    api.expect("POST", "/apps", json!({"name": "api", "space": "audited"}), 201).await;
    assert_eq!(api.call("GET", formation, None).await, (200, json!([])));
    assert_eq!(api.call("GET", vars, None).await, (200, json!({})));
    printed.push_str(&wharf.stderr());
    printed
}

const ADMIN_TOKEN: &str = REPLICA_SECRETS[0].1;
const ROUTER_TOKEN: &str = REPLICA_SECRETS[1].1;

/// Reads a control API's watch stream, sending the version of each snapshot it pushes.
async fn watch_versions(api: &Api) -> tokio::sync::mpsc::UnboundedReceiver<(u64, Value)> {
    let req = wharf_testkit::client::Req::get(&api.addr.to_string(), "/v1/snapshot/watch")
        .header("authorization", &format!("Bearer {ROUTER_TOKEN}"));
    let resp = wharf_testkit::client::send_streaming(api.addr, None, &req).await.expect("watch");
    assert_eq!(resp.status(), 200);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = resp.into_body();
        let mut partial = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Some(data) = frame.data_ref() else { continue };
            partial.extend_from_slice(data);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                if line.len() > 1 {
                    let snapshot: Value = serde_json::from_slice(&line).expect("a snapshot per line");
                    let _ = tx.send((snapshot["version"].as_u64().expect("version"), snapshot));
                }
            }
        }
    });
    rx
}

/// Two `wharf serve` on one PostgreSQL database: writes to either are seen by both, concurrent
/// writes through both lose nothing, the same name created on both at once exists once, and a
/// watcher of either sees versions that only grow, up to the same last one.
#[tokio::test]
async fn two_replicas_on_one_postgres_stay_consistent() {
    let pg = Postgres::start().await;
    let url = pg.database("shared").await;
    let dir = wharf_testkit::TempDir::new("replicas");
    let env = REPLICA_SECRETS;
    let args = ["--database-url", url.as_str()];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let (a, b) =
        tokio::join!(Wharf::serve_with(WHARF, &args, &dir_a, &env), Wharf::serve_with(WHARF, &args, &dir_b, &env),);
    let apis = [a.api.clone(), b.api.clone()];
    // Both started on an empty database at once; there is one default space.
    for api in &apis {
        let (_, spaces) = api.call("GET", "/spaces", None).await;
        assert_eq!(spaces.as_array().unwrap().iter().filter(|s| s["name"] == "default").count(), 1, "{spaces}");
    }
    let mut watchers = [watch_versions(&apis[0]).await, watch_versions(&apis[1]).await];

    // Twenty apps and twenty config vars, through alternate replicas at once.
    a.api.expect("POST", "/apps", json!({"name": "shared", "space": "default"}), 201).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let api = apis[i % 2].clone();
        tasks.spawn(async move {
            let app = api.call("POST", "/apps", Some(json!({"name": format!("app{i}"), "space": "default"}))).await;
            let var = json!({format!("VAR_{i}"): i.to_string()});
            let vars = api.call("PATCH", "/apps/shared-default/config-vars", Some(var)).await;
            if app.0 != 201 {
                eprintln!("APP {app:?}");
            }
            (app.0, vars.0)
        });
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();

        assert_eq!(r, (201, 200));
    }
    // The same app created on both at once: one wins, the other is told it exists.
    let (x, y) = tokio::join!(
        apis[0].call("POST", "/apps", Some(json!({"name": "twice", "space": "default"}))),
        apis[1].call("POST", "/apps", Some(json!({"name": "twice", "space": "default"}))),
    );
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{x:?} {y:?}");

    // Each replica answers with everything, whichever replica wrote it.
    let mut answers = Vec::new();
    for api in &apis {
        let (_, vars) = api.call("GET", "/apps/shared-default/config-vars", None).await;
        assert_eq!(vars.as_object().map(|v| v.len()), Some(20), "no update is lost: {vars}");
        let (_, apps) = api.call("GET", "/apps", None).await;
        let mut names: Vec<String> = apps.as_array().unwrap().iter().map(|a| a["name"].to_string()).collect();
        names.sort();
        assert_eq!(names.len(), 22, "{names:?}");
        answers.push((vars, names));
    }
    assert_eq!(answers[0], answers[1]);

    // A change through one replica reaches the other without anything asking it.
    a.api.expect("POST", "/apps", json!({"name": "onlya", "space": "default"}), 201).await;
    let seen_by_b = wharf_testkit::eventually(std::time::Duration::from_secs(10), "b to hear of a's app", || async {
        let (status, _) = apis[1].call("GET", "/apps/onlya-default", None).await;
        (status == 200).then_some(())
    });
    seen_by_b.await;

    // Watchers of both saw versions that only grow, and reach the same last snapshot.
    let (_, last) = apis[0].call("GET", "/v1/snapshot", None).await;
    let last_version = last["version"].as_u64().unwrap();
    let mut finals = Vec::new();
    for (i, rx) in watchers.iter_mut().enumerate() {
        let mut seen = Vec::new();
        let snapshot = loop {
            let (version, snapshot) = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("replica {i}'s watcher stopped at {seen:?}, short of {last_version}"))
                .expect("stream open");
            assert!(seen.last().is_none_or(|&v| v < version), "replica {i}: version {version} after {seen:?}");
            seen.push(version);
            if version == last_version {
                break snapshot;
            }
        };
        assert_eq!(snapshot["apps"].as_array().unwrap().len(), 23);
        finals.push(snapshot);
    }
    assert_eq!(finals[0], finals[1], "both replicas publish the same snapshot for the same version");
}

/// Runs `wharf serve` expecting it to refuse to start; returns what it printed.
async fn refused_at_start(args: &[&str], data: &std::path::Path) -> String {
    refused_to_start("serve", args, data, &REPLICA_SECRETS).await
}

/// `wharf COMMAND ARGS --data-dir DATA` with only the secrets in `env` (none inherited); asserts
/// that it refuses to start and returns what it printed.
async fn refused_to_start(command: &str, args: &[&str], data: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut cmd = tokio::process::Command::new(WHARF);
    cmd.arg(command).args(args).arg("--data-dir").arg(data);
    for (var, _) in REPLICA_SECRETS {
        cmd.env_remove(var);
    }
    let out = cmd.envs(wharf_testkit::wharf::FREE_PORTS).envs(env.iter().copied()).kill_on_drop(true).output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), out).await.expect("exits").expect("runs");
    assert!(!out.status.success(), "wharf {command} {args:?} should refuse to start");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The file in a data directory that holds the secret of the variable `var`.
fn secret_file(var: &str) -> &'static str {
    match var {
        "WHARF_ADMIN_TOKEN" => "admin-token",
        "WHARF_ROUTER_TOKEN" => "router-token",
        "WHARF_LOGSHUTTLE_TOKEN" => "logshuttle-token",
        "WHARF_RUNTIME_TOKEN" => "runtime-token",
        "WHARF_SESSION_SECRET" => "session-secret",
        other => panic!("no secret {other}"),
    }
}

/// A control API on a database other replicas may share (`--database-url`) never makes a
/// secret of its own, which would answer the other replicas' tokens with 401 at random behind
/// a load balancer (FE25 finding 4): missing any of the five, `wharf control-api` and `wharf
/// serve` refuse to start, name its variable and file, write nothing, and print no secret. Given
/// the five as files copied from another replica, it starts and takes that replica's tokens.
#[tokio::test]
async fn a_replica_missing_a_shared_secret_refuses_to_start_and_names_it() {
    let pg = Postgres::start().await;
    let url = pg.database("secrets").await;
    let dir = wharf_testkit::TempDir::new("replica-secrets");
    let args = ["--database-url", url.as_str()];
    for command in ["control-api", "serve"] {
        for (missing, _) in REPLICA_SECRETS {
            let data = dir.path().join(format!("{command}-{missing}"));
            let given: Vec<(&str, &str)> = REPLICA_SECRETS.into_iter().filter(|(var, _)| *var != missing).collect();
            let out = refused_to_start(command, &args, &data, &given).await;
            let file = data.join(secret_file(missing));
            assert!(out.contains(missing) && out.contains(&file.display().to_string()), "{command} {missing}: {out}");
            assert!(out.contains("shares its database"), "{command} {missing}: {out}");
            for (var, value) in REPLICA_SECRETS {
                assert!(!out.contains(value), "{command} printed {var}: {out}");
                assert!(!data.join(secret_file(var)).exists(), "{command} without {missing} wrote {var}'s file");
            }
        }
    }

    // The way docs/fleet.md starts a replica: the five files copied into its data directory.
    let first = WharfControlApi::start(WHARF, &args, &dir.path().join("first"), &REPLICA_SECRETS).await;
    let copied = dir.path().join("copied");
    std::fs::create_dir_all(&copied).unwrap();
    let write = |dir: &std::path::Path, var: &str, value: &str, mode: u32| {
        let file = dir.join(secret_file(var));
        std::fs::write(&file, value).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    };
    // A file breaking a rule a variable must keep is refused too, named: too short, or readable
    // by others (each with the other four files right).
    for (bad, value, mode, says) in [
        ("WHARF_ROUTER_TOKEN", "x", 0o600, "must hold at least 16 characters"),
        ("WHARF_SESSION_SECRET", "short", 0o600, "must hold at least 16 characters"),
        ("WHARF_ADMIN_TOKEN", ADMIN_TOKEN, 0o644, "may be read by others (mode 644)"),
        ("WHARF_SESSION_SECRET", REPLICA_SECRETS[4].1, 0o640, "may be read by others (mode 640)"),
    ] {
        let data = dir.path().join(format!("bad-{bad}-{mode:o}"));
        std::fs::create_dir_all(&data).unwrap();
        for (var, good) in REPLICA_SECRETS {
            let (value, mode) = if var == bad { (value, mode) } else { (good, 0o600) };
            write(&data, var, value, mode);
        }
        let out = refused_to_start("control-api", &args, &data, &[]).await;
        let file = data.join(secret_file(bad)).display().to_string();
        assert!(out.contains(&file) && out.contains(says), "{bad} {value:?} {mode:o}: {out}");
    }
    for (var, value) in REPLICA_SECRETS {
        write(&copied, var, value, 0o600);
    }
    let mut second = WharfControlApi::start(WHARF, &args, &copied, &[]).await;
    assert_eq!(second.api.token.as_deref(), Some(ADMIN_TOKEN));
    first.api.expect("POST", "/apps", json!({"name": "both", "space": "default"}), 201).await;
    wharf_testkit::eventually(std::time::Duration::from_secs(30), "the second replica to serve the app", || async {
        (second.api.call("GET", "/apps/both-default", None).await.0 == 200).then_some(())
    })
    .await;
    // The banner is printed before the process is ready; its pipe is read on another task.
    let says = format!("admin token:  in {}", copied.join("admin-token").display());
    let printed = wharf_testkit::eventually(std::time::Duration::from_secs(10), "the banner", || {
        let printed = second.stdout();
        let found = printed.contains(&says).then_some(printed);
        async move { found }
    })
    .await;
    let logs = second.stderr();
    // A control API on its own serves /metrics beside the API, without a token.
    assert_eq!(storage_metric(second.api.addr, "wharf_control_api_storage_available").await, Some(1));
    for (var, value) in REPLICA_SECRETS {
        assert!(!printed.contains(value) && !logs.contains(value), "{var} printed:\n{printed}\n{logs}");
    }
}

/// Replicas on one database refuse to start with a secret that differs from the others' (FE25
/// finding 4's other half): the first replica records a keyed fingerprint of each of the five
/// (never the secret), and a `wharf control-api` or `wharf serve` given a different one of any
/// of them is refused, naming it by variable (or file) and printing no secret, old or new; the
/// fingerprints stay as they were. A database from before fingerprints (schema version 1)
/// gets them recorded at the next start, and is checked from then on.
#[tokio::test]
async fn a_replica_with_a_different_shared_secret_refuses_to_start_and_names_it() {
    let pg = Postgres::start().await;
    let url = pg.database("different").await;
    let dir = wharf_testkit::TempDir::new("different-secrets");
    let args = ["--database-url", url.as_str()];
    let recorded =
        || pg.query("different", "SELECT name || ' ' || salt || ' ' || fingerprint FROM wharf_secrets ORDER BY name");
    let first = WharfControlApi::start(WHARF, &args, &dir.path().join("first"), &REPLICA_SECRETS).await;
    let fingerprints = recorded().await;
    let names: Vec<&str> = fingerprints.iter().map(|row| row.split(' ').next().unwrap()).collect();
    assert_eq!(names, ["admin-token", "logshuttle-token", "router-token", "runtime-token", "session-secret"]);
    for (var, value) in REPLICA_SECRETS {
        assert!(fingerprints.iter().all(|row| !row.contains(value)), "the database holds {var}");
    }
    const OTHER: &str = "a-different-secret-of-32-chars!!";
    for command in ["control-api", "serve"] {
        for (changed, _) in REPLICA_SECRETS {
            let data = dir.path().join(format!("{command}-{changed}"));
            let given: Vec<(&str, &str)> =
                REPLICA_SECRETS.into_iter().map(|(var, v)| (var, if var == changed { OTHER } else { v })).collect();
            let out = refused_to_start(command, &args, &data, &given).await;
            assert!(
                out.contains("these differ") && out.contains(&format!("given in {changed}")),
                "{command} {changed}: {out}"
            );
            for (var, _) in REPLICA_SECRETS.into_iter().filter(|(var, _)| *var != changed) {
                assert!(!out.contains(var), "{command} {changed} named {var}, which is the same: {out}");
            }
            for (var, value) in given.iter().chain(&REPLICA_SECRETS) {
                assert!(!out.contains(value), "{command} {changed} printed {var}: {out}");
            }
        }
    }
    assert_eq!(recorded().await, fingerprints, "a refused replica changes no fingerprint");
    first.kill().await;

    // A database of schema version 1 has no fingerprints: the next start records them.
    pg.query("different", "DROP TABLE wharf_secrets").await;
    pg.query("different", "UPDATE wharf_schema SET version = 1").await;
    let again = WharfControlApi::start(WHARF, &args, &dir.path().join("again"), &REPLICA_SECRETS).await;
    let migrated = recorded().await;
    assert_eq!(migrated.len(), 5, "{migrated:?}");
    assert_ne!(migrated, fingerprints, "new salts");
    let mut given = REPLICA_SECRETS.to_vec();
    given[1].1 = OTHER;
    let out = refused_to_start("control-api", &args, &dir.path().join("after-migration"), &given).await;
    assert!(out.contains("router token: given in WHARF_ROUTER_TOKEN"), "{out}");
    again.kill().await;
}

/// No secret is ever printed, the generated ones included: `wharf serve`'s first start with no
/// flags at all makes the five, stores them owner-only, and says where the admin token is
/// instead of printing it; its next start says the same of the stored one.
#[tokio::test]
async fn a_first_start_says_where_its_generated_secrets_are_and_prints_none() {
    let dir = wharf_testkit::TempDir::new("first-start");
    let data = dir.path().join("data");
    let admin_file = data.join("admin-token");
    for (start, says) in [("first", "generated now and stored in"), ("second", "in")] {
        let wharf = Wharf::serve_in(WHARF, &[], &data).await;
        let logs = wharf.stderr();
        let (ok, printed) = wharf.terminate().await;
        assert!(ok);
        assert!(printed.contains(&format!("admin token:  {says} {}", admin_file.display())), "{start}: {printed}");
        for (var, _) in REPLICA_SECRETS {
            let file = data.join(secret_file(var));
            let secret = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{start}: {}: {e}", file.display()));
            assert!(secret.trim().len() >= 32, "{var}");
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
            assert_eq!(mode & 0o777, 0o600, "{var} is its owner's only");
            assert!(!printed.contains(secret.trim()) && !logs.contains(secret.trim()), "{start} start printed {var}");
        }
    }
}

/// A database Wharf cannot use stops it at start with a message that says why, and never shows
/// the password: a wrong password, a server that is not there, a schema from a newer Wharf.
#[tokio::test]
async fn a_database_it_cannot_use_is_refused_at_start() {
    let pg = Postgres::start().await;
    let url = pg.database("wharf").await;
    let dir = wharf_testkit::TempDir::new("bad-database");
    let data = dir.path().join("data");

    let wrong = url.replace(pg.password(), "not-the-password");
    let out = refused_at_start(&["--database-url", &wrong], &data).await;
    assert!(out.contains("password authentication failed"), "{out}");
    assert!(!out.contains("not-the-password"), "{out}");

    let nowhere = format!("postgres://wharf:{}@127.0.0.1:{}/wharf", pg.password(), wharf_testkit::free_port());
    let out = refused_at_start(&["--database-url", &nowhere], &data).await;
    assert!(out.contains("cannot open the database") && out.contains("connect"), "{out}");
    assert!(!out.contains(pg.password()), "{out}");

    let out = refused_at_start(&["--database-url", "mysql://db/wharf"], &data).await;
    assert!(out.contains("must be a postgres:// URL"), "{out}");

    // A schema version this Wharf does not know is refused, and left as it is.
    let wharf = Wharf::serve_with(WHARF, &["--database-url", &url], &data, &REPLICA_SECRETS).await;
    assert!(wharf.terminate().await.0);
    pg.query("wharf", "UPDATE wharf_schema SET version = 99").await;
    let out = refused_at_start(&["--database-url", &url], &data).await;
    assert!(out.contains("schema version 99 is newer"), "{out}");
    assert_eq!(pg.query("wharf", "SELECT version FROM wharf_schema").await, ["99"]);
}

/// A listener that cannot bind stops the start, saying which address and why once (FE31: the OS
/// error was printed twice, from an error that showed its source and also gave it as its cause):
/// the control API's listener and the router's, as `wharf serve` binds both.
#[tokio::test]
async fn a_taken_port_is_refused_at_start_and_said_once() {
    let dir = wharf_testkit::TempDir::new("taken-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for var in ["WHARF_CONTROL_API__LISTEN", "WHARF_ROUTER__HTTPS_LISTEN", "WHARF_ROUTER__HTTP_LISTEN"] {
        let mut env = REPLICA_SECRETS.to_vec();
        env.push((var, addr.as_str()));
        let out = refused_to_start("serve", &[], &dir.path().join(var), &env).await;
        assert!(out.contains(&format!("cannot listen on {addr}")), "{var}: {out}");
        assert_eq!(out.matches("Address already in use").count(), 1, "{var}: {out}");
    }
}

/// A control API without TLS refuses to listen on an address that is not loopback (the admin
/// token and the feed, private keys included, would cross the network in clear), naming the
/// setting, unless `control_api.allow_cleartext` says the network is safe: `wharf control-api`
/// and `wharf serve`, IPv4 and IPv6 wildcard addresses. Refused before it binds: nothing listens.
#[tokio::test]
async fn a_control_api_without_tls_refuses_a_network_address() {
    let dir = wharf_testkit::TempDir::new("cleartext");
    for command in ["control-api", "serve"] {
        for host in ["0.0.0.0", "[::]"] {
            let port = wharf_testkit::free_port();
            let listen = format!("{host}:{port}");
            let mut env = REPLICA_SECRETS.to_vec();
            env.push(("WHARF_CONTROL_API__LISTEN", listen.as_str()));
            let out = refused_to_start(command, &[], &dir.path().join(format!("{command}-{port}")), &env).await;
            assert!(out.contains(&format!("control_api.listen {listen} is not a loopback address")), "{out}");
            assert!(out.contains("control_api.allow_cleartext"), "{out}");
            assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "{command} listened on {listen}");
        }
    }
    // Said so, it serves.
    let listen = format!("0.0.0.0:{}", wharf_testkit::free_port());
    let mut env = REPLICA_SECRETS.to_vec();
    env.extend([("WHARF_CONTROL_API__LISTEN", listen.as_str()), ("WHARF_CONTROL_API__ALLOW_CLEARTEXT", "true")]);
    let api = WharfControlApi::start(WHARF, &[], &dir.path().join("allowed"), &env).await;
    api.kill().await;
}

/// TLS to the database is verified: a server whose certificate no trusted CA signed is refused,
/// under libpq's default `sslmode=prefer` as under `require`, and accepted with its CA given as
/// `control_api.database_ca`, over TLS.
#[tokio::test]
async fn the_database_server_certificate_is_verified() {
    let ca = wharf_testkit::certs::TestCa::new("database ca");
    let pg = Postgres::start_tls(&ca.issue(&["localhost"], -1, 30)).await;
    pg.database("wharf").await;
    let url = pg.url("wharf").replace("127.0.0.1", "localhost");
    let dir = wharf_testkit::TempDir::new("database-tls");
    let data = dir.path().join("data");

    for url in [url.clone(), format!("{url}?sslmode=require")] {
        let out = refused_at_start(&["--database-url", &url], &data).await;
        assert!(out.contains("cannot open the database") && out.contains("UnknownIssuer"), "{out}");
        // Where trust comes from, in the words every outbound TLS connection uses.
        let hint = "TLS with the database at localhost: invalid peer certificate: UnknownIssuer: its certificate is \
                    signed by no CA trusted here (the system's trust store: SSL_CERT_FILE, SSL_CERT_DIR or the \
                    distribution's bundle; and control_api.database_ca)";
        assert!(out.contains(hint), "{out}");
    }

    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_path = ca_file.display().to_string();
    let mut env = vec![("WHARF_CONTROL_API__DATABASE_CA", ca_path.as_str())];
    env.extend(REPLICA_SECRETS);
    let wharf = Wharf::serve_with(WHARF, &["--database-url", &format!("{url}?sslmode=require")], &data, &env).await;
    wharf.api.expect("POST", "/apps", json!({"name": "overtls", "space": "default"}), 201).await;
    let encrypted = pg.query("postgres", "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.datname = 'wharf'").await;
    assert_ne!(encrypted, ["0"], "wharf's connections use TLS");
}

/// PostgreSQL going away: replicas keep answering reads from memory, refuse writes with 503
/// and change nothing, and once it is back, writes through one reach the other again.
#[tokio::test]
async fn replicas_ride_out_a_database_restart() {
    let mut pg = Postgres::start().await;
    let url = pg.database("wharf").await;
    let dir = wharf_testkit::TempDir::new("db-restart");
    let env = REPLICA_SECRETS;
    let args = ["--database-url", url.as_str()];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = Wharf::serve_with(WHARF, &args, &dir_a, &env).await;
    let b = Wharf::serve_with(WHARF, &args, &dir_b, &env).await;
    a.api.expect("POST", "/apps", json!({"name": "before", "space": "default"}), 201).await;
    wharf_testkit::eventually(std::time::Duration::from_secs(30), "b to hear of a's app", || async {
        (b.api.call("GET", "/apps/before-default", None).await.0 == 200).then_some(())
    })
    .await;

    // `/healthz`: 200 throughout (reads are served), `storage` saying whether writes can be.
    for api in [&a.api, &b.api] {
        let (status, health) = api.call("GET", "/healthz", None).await;
        assert_eq!((status, health["status"].as_str(), health["storage"].as_str()), (200, Some("ok"), Some("ok")));
    }
    pg.stop().await;
    for (api, admin) in [(&a.api, a.admin), (&b.api, b.admin)] {
        assert_eq!(api.call("GET", "/apps/before-default", None).await.0, 200, "reads are served from memory");
        // Several refused writes: one outage, so one error line (below), however many requests.
        for _ in 0..3 {
            let out = api.expect("POST", "/apps", json!({"name": "during", "space": "default"}), 503).await;
            assert_eq!(out["id"], "service_unavailable", "{out}");
        }
        // The 503 says when to try again (RFC 9110 section 10.2.3), as every 503 does.
        let mut req = wharf_testkit::client::Req::get(&api.addr.to_string(), "/apps")
            .header("authorization", &format!("Bearer {}", api.token.as_deref().unwrap_or_default()))
            .header("content-type", "application/json");
        req.method = http::Method::POST;
        req.body = json!({"name": "during", "space": "default"}).to_string().into();
        let refused = wharf_testkit::client::send(api.addr, None, &req).await.expect("answers");
        assert_eq!((refused.status.as_u16(), refused.header("retry-after")), (503, Some("5")));
        let (status, health) = api.call("GET", "/healthz", None).await;
        assert_eq!(
            (status, health["status"].as_str(), health["storage"].as_str()),
            (200, Some("ok"), Some("unavailable"))
        );
        assert_eq!(storage_metric(admin, "wharf_control_api_storage_available").await, Some(0));
        assert!(storage_metric(admin, "wharf_control_api_storage_failures_total").await >= Some(3));
    }

    pg.start_again().await;
    a.api.expect("POST", "/apps", json!({"name": "after", "space": "default"}), 201).await;
    wharf_testkit::eventually(std::time::Duration::from_secs(30), "b to hear of a's change again", || async {
        (b.api.call("GET", "/apps/after-default", None).await.0 == 200).then_some(())
    })
    .await;
    for api in [&a.api, &b.api] {
        wharf_testkit::eventually(std::time::Duration::from_secs(30), "healthz to say storage is back", || async {
            (api.call("GET", "/healthz", None).await.1["storage"] == "ok").then_some(())
        })
        .await;
    }
    for api in [&a.api, &b.api] {
        assert_eq!(api.call("GET", "/apps/during-default", None).await.0, 404, "a refused write left nothing");
    }
    assert!(!a.stderr().contains(pg.password()) && !b.stderr().contains(pg.password()));
    // The outage in each replica's log: once down, once back; no line per refused request.
    for (name, log) in [("a", a.stderr()), ("b", b.stderr())] {
        let count = |text: &str| log.lines().filter(|l| l.contains(text)).count();
        let lines = (count("storage is unavailable"), count("storage answers again"), count("storage failed"));
        assert_eq!(lines, (1, 1, 0), "replica {name}:\n{log}");
        assert_eq!(count("cannot release the database write lock"), 0, "replica {name}:\n{log}");
        // A server's error is shown with what the server said, not as a bare "db error".
        assert!(!log.lines().any(|l| l.trim_end().ends_with("error=db error")), "replica {name}:\n{log}");
    }
    // The listener for other replicas' changes says when it hears them again, once per outage.
    for (name, replica) in [("a", &a), ("b", &b)] {
        let log = wharf_testkit::eventually(std::time::Duration::from_secs(30), "the listener to be back", || {
            let log = replica.stderr();
            async move { log.contains("hearing other replicas' changes again").then_some(log) }
        })
        .await;
        let count = |text: &str| log.lines().filter(|l| l.contains(text)).count();
        assert_eq!(count("hearing other replicas' changes again"), 1, "replica {name}:\n{log}");
    }
}

/// The unlabelled series `name` on the Prometheus text at `addr`'s `/metrics`.
async fn storage_metric(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    let req = wharf_testkit::client::Req::get("localhost", "/metrics");
    let text = wharf_testkit::client::send(addr, None, &req).await.expect("/metrics answers").text();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
}

/// Heroku clients' app rules: an app created without a space or a name lands in `default` with a
/// generated name; apps in `default` answer to their bare names, others only to `app-space`;
/// `PATCH /apps/{app}` renames within the space and refuses a taken or invalid name, changing
/// nothing.
#[tokio::test]
async fn apps_as_heroku_clients_create_address_and_rename_them() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    api.expect("POST", "/spaces", json!({"name": "prod"}), 201).await;
    api.expect("POST", "/apps", json!({"name": "api", "space": "prod"}), 201).await;
    let made = api.expect("POST", "/apps", json!({}), 201).await;
    let generated = made["name"].as_str().unwrap().to_owned();
    assert!(generated.starts_with("app") && generated.ends_with("-default"), "{made}");
    assert_eq!(made["owner"]["email"], "admin@localhost", "{made}");
    let bare = made["simple_name"].as_str().unwrap();
    assert_eq!(api.call("GET", &format!("/apps/{bare}"), None).await.1["name"], json!(generated));
    assert_eq!(api.call("GET", "/apps/api", None).await.0, 404, "a bare name reaches only the default space");
    assert_eq!(api.call("GET", "/apps/api-prod", None).await.0, 200);

    let renamed = api.expect("PATCH", "/apps/api-prod", json!({"name": "web"}), 200).await;
    assert_eq!((&renamed["name"], &renamed["space"]["name"]), (&json!("web-prod"), &json!("prod")), "{renamed}");
    assert_eq!(api.call("GET", "/apps/api-prod", None).await.0, 404);
    api.expect("POST", "/apps", json!({"name": "api", "space": "prod"}), 201).await;
    refused(api, "PATCH", "/apps/web-prod", json!({"name": "api"}), 409, "already exists", "/apps").await;
    refused(api, "PATCH", "/apps/web-prod", json!({"name": "Web"}), 422, "invalid app name", "/apps").await;
    refused(
        api,
        "PATCH",
        "/apps/web-prod",
        json!({"maintenance": "yes"}),
        422,
        "invalid type: `maintenance` is a string \"yes\", expected true or false",
        "/apps",
    )
    .await;
    refused(api, "PATCH", "/apps/nope", json!({"name": "x"}), 404, "no app", "/apps").await;
    assert_eq!(api.call("GET", "/apps/web-prod/addons", None).await, (200, json!([])));
    assert_eq!(api.call("GET", "/apps/nope/addons", None).await.0, 404);
    let features = api.call("GET", "/apps/web-prod/features", None).await.1;
    assert_eq!(features[0]["name"], "internal-routing", "{features}");
    let space = api.call("GET", "/spaces/prod", None).await.1;
    assert_eq!((&space["team"]["name"], &space["state"]), (&json!("wharf"), &json!("allocated")), "{space}");
    assert_eq!(api.call("GET", "/teams/wharf/apps", None).await.1.as_array().map(Vec::len), Some(3));
    assert_eq!(api.call("GET", "/teams/other/apps", None).await.0, 404);
}

/// Formation quantities as the Heroku CLI sends them: strings, and changes (`"+1"`, `"-1"`) to
/// the current number; a change below zero or over the limit, a negative number, or a string
/// that is not a quantity is refused and changes nothing.
#[tokio::test]
async fn formation_quantities_as_strings_and_changes() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "api"}), 201).await;
    let formation = "/apps/api/formation";
    let out = api.expect("PATCH", formation, json!({"updates": [{"type": "web", "quantity": "2"}]}), 200).await;
    assert_eq!(out[0]["quantity"], 2, "{out}");
    let out = api
        .expect(
            "PATCH",
            formation,
            json!({"updates": [{"type": "web", "quantity": "+1"}, {"type": "worker", "quantity": "+2"}]}),
            200,
        )
        .await;
    assert_eq!((&out[0]["quantity"], &out[1]["quantity"]), (&json!(3), &json!(2)), "a new type starts from 0: {out}");
    let out = api.expect("PATCH", &format!("{formation}/web"), json!({"quantity": "-3"}), 200).await;
    assert_eq!(out["quantity"], 0, "{out}");
    for (body, says) in [
        (json!({"updates": [{"type": "web", "quantity": "-1"}]}), "must be between 0 and 100, got -1"),
        (json!({"updates": [{"type": "worker", "quantity": "+99"}]}), "must be between 0 and 100, got 101"),
        (json!({"updates": [{"type": "web", "quantity": "two"}]}), "invalid value"),
        (json!({"updates": [{"type": "web", "quantity": "1.5"}]}), "invalid value"),
        (json!({"updates": [{"type": "web", "quantity": -1}]}), "invalid value"),
        (json!({"updates": [{"type": "web", "quantity": "101"}]}), "must be between 0 and 100, got 101"),
    ] {
        refused(api, "PATCH", formation, body, 422, says, formation).await;
    }
}

/// Domains as Heroku's resource shapes them, over sites: adding one makes a site routing `/` to
/// the app; a name another app or site holds, or not a domain, is refused and changes nothing;
/// SNI endpoints are the certificates covering the app's domains.
#[tokio::test]
async fn domains_are_sites_routing_to_the_app_and_sni_endpoints_the_certificates_covering_them() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "api"}), 201).await;
    api.expect("POST", "/apps", json!({"name": "web"}), 201).await;
    assert_eq!(api.call("GET", "/apps/api/sni-endpoints", None).await, (200, json!([])));
    let added = api.expect("POST", "/apps/api/domains", json!({"hostname": "www.example.test"}), 201).await;
    assert_eq!((&added["kind"], &added["cname"]), (&json!("custom"), &json!("api-default.localhost")), "{added}");
    let routes = api.call("GET", "/sites/www.example.test/routes", None).await.1;
    assert_eq!((&routes[0]["source_path"], &routes[0]["app"]["name"]), (&json!("/"), &json!("api-default")));
    for (body, status, says) in [
        (json!({"hostname": "www.example.test"}), 409, "already held by app api-default"),
        (json!({"hostname": "api-default.localhost"}), 409, "default domain of app api-default"),
        (json!({"hostname": "no spaces.test"}), 422, "invalid"),
        (json!({"hostname": "shop.example.test", "sni_endpoint": "nope"}), 422, "no SNI endpoint"),
    ] {
        refused(api, "POST", "/apps/web/domains", body, status, says, "/sites").await;
    }
    refused(api, "DELETE", "/apps/web/domains/www.example.test", json!(null), 404, "no domain", "/sites").await;

    let ca = wharf_testkit::certs::TestCa::new("domains");
    let cert = ca.issue(&["*.example.test"], -1, 90);
    let body = json!({"certificate_chain": cert.chain_pem, "private_key": cert.key_pem});
    let uploaded = api.expect("POST", "/certs", body, 201).await;
    let endpoints = api.call("GET", "/apps/api/sni-endpoints", None).await.1;
    assert_eq!(endpoints[0]["id"], uploaded["id"], "{endpoints}");
    assert_eq!(endpoints[0]["domains"], json!(["www.example.test"]), "{endpoints}");
    assert_eq!(api.call("GET", "/apps/web/sni-endpoints", None).await.1, json!([]), "no domain of web is covered");

    api.expect("DELETE", "/apps/api/domains/www.example.test", json!(null), 200).await;
    assert_eq!(api.call("GET", "/sites/www.example.test", None).await.0, 404);
}

/// Opens `GET path` on a plain HTTP/1.1 connection to `addr` with `headers`, and reads the
/// response head and whatever body has come by the time `ready` is in it.
async fn open_stream(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
    ready: &str,
) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&got).contains(ready) {
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{path} never said {ready:?}: {}", String::from_utf8_lossy(&got)))
            .expect("read");
        assert!(n > 0, "{path} ended before {ready:?}: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

/// Reads a stream to its end (EOF), within `deadline`; returns what came.
async fn read_to_end(mut s: tokio::net::TcpStream, deadline: tokio::time::Instant, what: &str) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut rest = Vec::new();
    tokio::time::timeout_at(deadline, s.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what} still open: {}", String::from_utf8_lossy(&rest)))
        .expect("read");
    String::from_utf8_lossy(&rest).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_streams_end_when_shutdown_starts() {
    // A grace far longer than the test's deadline: the process must not need it.
    let dir = wharf_testkit::TempDir::new("shutdown-streams");
    let data = dir.path().join("data");
    let wharf = Wharf::serve_with(WHARF, &[], &data, &[("WHARF_ROUTER__SHUTDOWN_GRACE", "60s")]).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let auth = format!("Authorization: Bearer {}\r\n", api.token.as_deref().unwrap());
    let addr = api.addr;
    let session = |tail: bool| async move {
        let s = api.expect("POST", "/apps/hello/log-sessions", json!({"tail": tail, "lines": 10}), 201).await;
        let url = s["logplex_url"].as_str().unwrap().to_owned();
        url.split_once(&addr.to_string()).unwrap().1.to_owned()
    };
    // Every endless stream Wharf serves: the snapshot watch, a tail as text and one as
    // Server-Sent Events (the Heroku CLI's `logs --tail`).
    let mut streams = vec![
        ("the snapshot watch", open_stream(addr, "/v1/snapshot/watch", &auth, "\"version\"").await),
        ("a plain tail", open_stream(addr, &session(true).await, "", "text/plain").await),
        (
            "an event-stream tail",
            open_stream(addr, &session(true).await, "Accept: text/event-stream\r\n", "text/event-stream").await,
        ),
    ];
    assert!(std::fs::metadata(data.join("addresses.json")).is_ok());

    wharf.signal_term().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    for (what, (stream, head)) in streams.drain(..) {
        let rest = read_to_end(stream, deadline, what).await;
        // The chunked body ends with its last chunk: the client sees a clean end, not a cut.
        let whole = format!("{head}{rest}");
        assert!(whole.contains("transfer-encoding: chunked"), "{what}: {whole}");
        assert!(whole.ends_with("0\r\n\r\n"), "{what} did not end cleanly: {whole:?}");
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let (ok, out) = tokio::time::timeout(left, wharf.wait_exit()).await.expect("wharf exits well within its grace");
    assert!(ok, "{out}");
    assert!(out.contains("Wharf stopped."), "{out}");
    assert!(!data.join("addresses.json").exists(), "addresses.json is removed on a clean stop");
}
