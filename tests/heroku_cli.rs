//! The unmodified Heroku CLI (the pinned npm release that scripts/test installs) against `wharf
//! serve`, exactly as a Heroku user would run it: each step is a command line, the exit status
//! and output it must give, and the effect it must have, checked through the REST API.
//!
//! The CLI runs with a fresh `HOME` (no user configuration or `.netrc` leaks in), with its update
//! checks, analytics and telemetry off, and with every Heroku host it knows pointed at Wharf, so
//! that it never reaches the internet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::client::{Api, Followed, Req};
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// The Heroku CLI release the suite pins; scripts/test installs it under target/heroku-cli.
const HEROKU_CLI_VERSION: &str = "11.10.0";

/// Where the `heroku` executable is: `WHARF_HEROKU_CLI`, or where scripts/test installs it.
fn heroku_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WHARF_HEROKU_CLI") {
        return bin.into();
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/heroku-cli/node_modules/.bin/heroku");
    assert!(
        bin.exists(),
        "the Heroku CLI is not installed; ./scripts/test installs it \
         (npm install --prefix target/heroku-cli heroku@{HEROKU_CLI_VERSION})"
    );
    bin
}

/// The longest one CLI command may take: `ps:wait` polls every 10 s, everything else answers
/// at once.
const CLI_DEADLINE: Duration = Duration::from_secs(180);

/// The CLI, set up to talk to one `wharf serve` only.
struct Cli {
    bin: PathBuf,
    home: TempDir,
    host: String,
    token: String,
}

/// What one CLI run gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn new(wharf: &Wharf) -> Cli {
        Cli {
            bin: heroku_bin(),
            home: TempDir::new("heroku-home"),
            host: format!("http://{}", wharf.api.addr),
            token: wharf.api.token.clone().expect("the admin token"),
        }
    }

    /// Runs `heroku args...` with `token` as the API key, to its end; a command that has not
    /// ended within [`CLI_DEADLINE`] (a `ps:wait` that never sees its release) is killed and
    /// fails the test.
    fn run_as(&self, token: &str, args: &[&str]) -> Run {
        let child = self
            .command(token, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the Heroku CLI runs");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(CLI_DEADLINE) {
            Ok(out) => out.expect("the Heroku CLI runs"),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("heroku {} did not end within {CLI_DEADLINE:?}", args.join(" "));
            }
        };
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command line `heroku args...` with `token` as the API key, ready to run.
    fn command(&self, token: &str, args: &[&str]) -> Command {
        let home = self.home.path();
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            // Not the repository: `apps:rename` and `apps:create` edit the git remotes of the
            // checkout they run in.
            .current_dir(home)
            // Nothing of the caller's environment but PATH (to find node): no HEROKU_* variable,
            // no proxy, no user configuration.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("HEROKU_HOST", &self.host)
            // The CLI also asks "particleboard" for the account; Wharf serves `/account` itself.
            .env("HEROKU_PARTICLEBOARD_URL", &self.host)
            .env("HEROKU_API_KEY", token)
            // No update checks, analytics, telemetry or release notes (CLI 11's switches).
            .env("HEROKU_DISABLE_AUTOUPDATE", "1")
            .env("HEROKU_SKIP_NEW_VERSION_CHECK", "1")
            .env("HEROKU_SKIP_ANALYTICS", "1")
            .env("DISABLE_TELEMETRY", "true")
            .env("HIDE_HEROKU_RELEASE_NOTES", "true")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200");
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_as(&self.token, args)
    }

    /// Runs `heroku args...` and asserts it exits 0 saying every piece of `says`.
    fn ok(&self, args: &[&str], says: &[&str]) {
        let run = self.run(args);
        let shown = format!("heroku {}\nstdout: {}\nstderr: {}", args.join(" "), run.stdout, run.stderr);
        assert_eq!(run.code, Some(0), "{shown}");
        let output = format!("{}{}", run.stdout, run.stderr);
        for piece in says {
            assert!(output.contains(piece), "{piece:?} missing from {shown}");
        }
    }
}

/// An effect to check through the API after a step: `GET path`, then the value at the JSON
/// pointer `at` (RFC 6901) must be `want`.
struct Effect {
    path: &'static str,
    at: &'static str,
    want: Value,
}

/// One command line and what it must do.
struct Step {
    args: &'static [&'static str],
    exit: i32,
    /// Pieces the output (standard output and standard error together) must contain.
    says: &'static [&'static str],
    effects: Vec<Effect>,
}

fn step(args: &'static [&'static str], exit: i32, says: &'static [&'static str]) -> Step {
    Step { args, exit, says, effects: vec![] }
}

impl Step {
    fn then(mut self, path: &'static str, at: &'static str, want: Value) -> Step {
        self.effects.push(Effect { path, at, want });
        self
    }
}

/// Runs the steps in order; each must exit as expected, say what it must, and have its effects.
async fn run_steps(cli: &Cli, api: &Api, steps: Vec<Step>) {
    for s in steps {
        let run = cli.run(s.args);
        let shown = format!("heroku {}\nstdout: {}\nstderr: {}", s.args.join(" "), run.stdout, run.stderr);
        assert_eq!(run.code, Some(s.exit), "exit status of {shown}");
        let output = format!("{}{}", run.stdout, run.stderr);
        for piece in s.says {
            assert!(output.contains(piece), "{piece:?} missing from the output of {shown}");
        }
        for e in &s.effects {
            let (status, body) = api.call("GET", e.path, None).await;
            assert_eq!(status, 200, "GET {} after {shown}: {body}", e.path);
            assert_eq!(body.pointer(e.at), Some(&e.want), "GET {} {} after {shown}: {body}", e.path, e.at);
        }
    }
}

#[tokio::test]
async fn the_heroku_cli_knows_who_it_is_and_lists_apps() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "api", "space": "default"}), 201).await;
    let steps = vec![
        step(&["auth:whoami"], 0, &["admin@localhost"]).then("/account", "/email", json!("admin@localhost")),
        step(&["apps"], 0, &["admin@localhost Apps", "api-default"]).then(
            "/users/~/apps",
            "/0/name",
            json!("api-default"),
        ),
        step(&["apps", "--json"], 0, &["\"name\": \"api-default\"", "\"email\": \"admin@localhost\""]),
    ];
    run_steps(&cli, api, steps).await;

    // A wrong key is refused.
    let run = cli.run_as("not-the-admin-token", &["auth:whoami"]);
    assert_ne!(run.code, Some(0), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("admin@localhost"), "{}", run.stdout);
}

#[tokio::test]
async fn basic_credentials_carry_the_token_as_heroku_clients_send_it() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let token = wharf.api.token.clone().expect("the admin token");
    let addr = wharf.api.addr.to_string();
    let basic = |user: &str, password: &str| {
        use base64::Engine as _;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Req::get(&addr, "/account").header("authorization", &format!("Basic {pair}"))
    };
    for user in ["", "any", "admin@localhost"] {
        let (status, body) = wharf.api.raw(&basic(user, &token)).await;
        assert_eq!((status, &body["email"]), (200, &json!("admin@localhost")), "user {user:?}: {body}");
    }
    let (status, body) = wharf.api.raw(&basic("", "wrong-token")).await;
    assert_eq!((status, &body["id"]), (401, &json!("unauthorized")), "{body}");
    let (status, body) = wharf.api.raw(&basic(&token, "")).await;
    assert_eq!(status, 401, "the token as the user name is not the password: {body}");
}

#[tokio::test]
async fn the_heroku_cli_creates_renames_and_shows_apps() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "api"}), 201).await;
    let steps = vec![
        // Created without a space, the app is in `default` and answers to the name given.
        step(&["apps:create", "hello"], 0, &["Creating hello... done", "https://hello-default.localhost"])
            .then("/apps/hello", "/name", json!("hello-default"))
            .then("/apps/hello-default", "/space/name", json!("default")),
        step(&["apps:info", "-a", "hello"], 0, &["=== hello-default", "Owner:", "admin@localhost", "Region:", "local"]),
        // Without a name, Wharf picks one.
        step(&["apps:create"], 0, &["Creating app... done, app"]),
        step(
            &["apps:rename", "hi", "-a", "hello"],
            0,
            &["Renaming hello to hi... done", "https://hi-default.localhost"],
        )
        .then("/apps/hi", "/name", json!("hi-default")),
        // A taken or invalid name: Heroku's error body, and nothing changes.
        step(&["apps:rename", "api", "-a", "hi"], 2, &["app api-default already exists", "Error ID: conflict"])
            .then("/apps/hi", "/name", json!("hi-default"))
            .then("/apps/api", "/name", json!("api-default")),
        step(&["apps:rename", "Bad", "-a", "hi"], 2, &["invalid app name", "Error ID: invalid_params"]).then(
            "/apps/hi",
            "/name",
            json!("hi-default"),
        ),
        step(&["apps:info", "-a", "nope"], 2, &["no app \"nope\"", "Error ID: not_found"]),
        step(&["apps", "--space", "default"], 0, &["Apps in space default", "api-default", "hi-default"]),
        step(&["spaces"], 0, &["default", "wharf", "allocated"]).then("/spaces/default", "/team/name", json!("wharf")),
        step(&["features", "-a", "hi"], 0, &["[ ] canary", "[ ] internal-routing"]),
        step(&["labs", "-a", "hi"], 0, &["User Features admin@localhost", "App Features hi"]),
        step(&["apps:destroy", "hi", "--confirm", "hi"], 0, &["Destroying hi"]),
    ];
    run_steps(&cli, api, steps).await;
    let (_, apps) = api.call("GET", "/apps", None).await;
    let mut names: Vec<&str> = apps.as_array().unwrap().iter().filter_map(|a| a["name"].as_str()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "api-default");
    assert!(names[1].starts_with("app") && names[1].ends_with("-default"), "a generated name: {names:?}");
    assert_eq!(api.call("GET", "/apps/hi", None).await.0, 404, "destroyed");
}

#[tokio::test]
async fn the_heroku_cli_scales_the_formation() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let steps = vec![
        step(&["ps:scale", "web=2", "worker=1", "-a", "hello"], 0, &["web at 2:", "worker at 1:"])
            .then("/apps/hello/formation/web", "/quantity", json!(2))
            .then("/apps/hello/formation/worker", "/quantity", json!(1)),
        step(&["ps:scale", "web+1", "-a", "hello"], 0, &["web at 3:"]).then(
            "/apps/hello/formation/web",
            "/quantity",
            json!(3),
        ),
        step(&["ps:scale", "worker-1", "-a", "hello"], 0, &["worker at 0:"]).then(
            "/apps/hello/formation/worker",
            "/quantity",
            json!(0),
        ),
        // Below zero: Heroku's error body, and nothing changes.
        step(
            &["ps:scale", "web-5", "-a", "hello"],
            2,
            &["must be between 0 and 100, got -2", "Error ID: invalid_params"],
        )
        .then("/apps/hello/formation/web", "/quantity", json!(3)),
        step(&["ps:scale", "-a", "hello"], 0, &["web=3:", "worker=0:"]),
    ];
    run_steps(&cli, api, steps).await;
}

/// The names of the app's local dynos of `dyno_type` that are up, by name: `type.N-xxxxx`, so
/// by index (Heroku's `type.N`) while there are fewer than ten.
async fn up_dynos(api: &Api, app: &str, dyno_type: &str) -> Vec<String> {
    let (_, dynos) = api.call("GET", &format!("/apps/{app}/dynos"), None).await;
    let up = dynos.as_array().into_iter().flatten().filter(|d| d["type"] == dyno_type && d["state"] == "up");
    let mut up: Vec<String> = up.map(|d| d["name"].as_str().unwrap_or_default().to_owned()).collect();
    up.sort();
    up
}

/// Whether `names` are one `type.1-xxxxx` to `type.N-xxxxx` each, in order.
fn indexed(names: &[String], dyno_type: &str) -> bool {
    names.iter().enumerate().all(|(i, n)| n.starts_with(&format!("{dyno_type}.{}-", i + 1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_restarts_and_stops_dynos_by_heroku_names() {
    let dir = TempDir::new("heroku-ps");
    let env = [("WHARF_SUPERVISOR__RESTART_MIN", "200ms"), ("WHARF_SUPERVISOR__STOP_GRACE", "2s")];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let workers = json!({"updates": [{"type": "worker", "quantity": 2, "command": "exec sleep 600"}]});
    api.expect("PATCH", "/apps/hello/formation", workers, 200).await;
    let wait = Duration::from_secs(60);
    let first = eventually(wait, "two workers up", || async {
        let up = up_dynos(api, "hello", "worker").await;
        (up.len() == 2).then_some(up)
    })
    .await;
    // `type.N` is the dyno of index N, whose name `heroku ps` shows as `type.N-xxxxx`.
    assert!(indexed(&first, "worker"), "{first:?}");
    let (_, one) = api.call("GET", "/apps/hello/dynos/worker.1", None).await;
    assert_eq!((&one["size"], &one["command"]), (&json!("Standard-1X"), &json!("exec sleep 600")), "{one}");
    assert_eq!(one["name"].as_str(), Some(first[0].as_str()), "{one}");
    cli.ok(&["ps", "-a", "hello"], &["(Standard-1X): exec sleep 600 (2)", &format!("{}: up", first[0]), &first[1]]);

    // A restarted dyno's replacement keeps its index: `worker.1` is `worker.1` again.
    cli.ok(&["ps:restart", "worker.1", "-a", "hello"], &["Restarting dyno worker.1 on hello... done"]);
    let second = eventually(wait, "worker.1 replaced", || async {
        let up = up_dynos(api, "hello", "worker").await;
        (up.len() == 2 && up[0] != first[0] && up[1] == first[1] && indexed(&up, "worker")).then_some(up)
    })
    .await;

    cli.ok(
        &["ps:restart", "--process-type", "worker", "-a", "hello"],
        &["Restarting all worker dynos on hello... done"],
    );
    let third = eventually(wait, "every worker replaced", || async {
        let up = up_dynos(api, "hello", "worker").await;
        (up.len() == 2 && !up.iter().any(|n| second.contains(n)) && indexed(&up, "worker")).then_some(up)
    })
    .await;

    cli.ok(&["ps:stop", "worker.2", "-a", "hello"], &["Stopping dyno worker.2 on hello... done"]);
    let fourth = eventually(wait, "worker.2 stopped and replaced by a worker.2", || async {
        let up = up_dynos(api, "hello", "worker").await;
        (up.len() == 2 && up[0] == third[0] && up[1] != third[1] && indexed(&up, "worker")).then_some(up)
    })
    .await;
    cli.ok(&["ps", "-a", "hello"], &[&format!("{}: up", fourth[0]), &format!("{}: up", fourth[1])]);

    // The CLI's positional `ps:stop worker` and `ps:restart worker` send the type where a dyno's
    // name goes (`/dynos/worker`): as on Heroku, every dyno of the type stops or restarts.
    let mut last = fourth;
    for (args, said) in [
        (["ps:stop", "worker"], "Stopping dyno worker on hello... done"),
        (["ps:restart", "worker"], "Restarting dyno worker on hello... done"),
    ] {
        cli.ok(&[args[0], args[1], "-a", "hello"], &[said]);
        last = eventually(wait, &format!("{args:?}: every worker replaced"), || async {
            let up = up_dynos(api, "hello", "worker").await;
            (up.len() == 2 && !up.iter().any(|n| last.contains(n)) && indexed(&up, "worker")).then_some(up)
        })
        .await;
    }

    // A dyno by the id the API shows for it (a worker's, derived: workers are not registered).
    let (_, one) = api.call("GET", "/apps/hello/dynos/worker.2", None).await;
    let id = one["id"].as_str().unwrap().to_owned();
    cli.ok(&["ps:restart", "--dyno-name", &id, "-a", "hello"], &[&format!("Restarting dyno {id} on hello... done")]);
    eventually(wait, "worker.2 restarted by its id", || async {
        let up = up_dynos(api, "hello", "worker").await;
        (up.len() == 2 && up[0] == last[0] && up[1] != last[1] && indexed(&up, "worker")).then_some(up)
    })
    .await;

    // A dyno that does not exist: Heroku's error body.
    let run = cli.run(&["ps:restart", "worker.9", "-a", "hello"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no dyno \"worker.9\""), "{}", run.stderr);
    let run = cli.run(&["ps:restart", "--process-type", "web", "-a", "hello"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no formation \"web\""), "{}", run.stderr);
}

/// Puts lines on the app's log stream as a platform component would (`POST /log-events`).
async fn post_lines(api: &Api, app: &str, lines: &[&str]) {
    let events: Vec<Value> =
        lines.iter().map(|m| json!({"app": app, "source": "app", "process": "web.1", "message": m})).collect();
    api.expect("POST", "/log-events", Value::Array(events), 202).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_shows_and_tails_logs() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    post_lines(api, "hello-default", &["first line", "second line"]).await;
    // The lines travel the bus after the 202: ask until they are in the history.
    let wait = Duration::from_secs(30);
    let shown = eventually(wait, "logs -n 20 to show the posted lines", || async {
        let run = cli.run(&["logs", "-n", "20", "-a", "hello"]);
        (run.code == Some(0) && run.stdout.contains("second line")).then_some(run.stdout)
    })
    .await;
    assert!(shown.contains("hello-default app[web.1]: first line\n"), "{shown}");
    let run = cli.run(&["logs", "-n", "1", "-a", "hello"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("second line") && !run.stdout.contains("first line"), "-n 1: {}", run.stdout);

    // `--tail` shows the history, then new lines as they come, until it is stopped.
    let mut tail = cli
        .command(&cli.token, &["logs", "--tail", "-a", "hello"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the Heroku CLI runs");
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |want: &str| {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(want) => return,
                Ok(_) => {}
                Err(e) => panic!("the tail never showed {want:?}: {e}"),
            }
        }
    };
    next_line("second line");
    post_lines(api, "hello-default", &["a live line"]).await;
    next_line("hello-default app[web.1]: a live line");
    tail.kill().expect("the tail stops");
    tail.wait().expect("the tail ends");
}

#[tokio::test]
async fn the_heroku_cli_adds_lists_and_removes_drains_by_token() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let url = "syslog+tls://logs.example.com:6514";
    cli.ok(&["drains:add", url, "-a", "hello"], &["Successfully added drain syslog+tls://logs.example.com:6514"]);
    let (_, drains) = api.call("GET", "/apps/hello/log-drains", None).await;
    let token = drains[0]["token"].as_str().expect("a drain token").to_owned();
    cli.ok(&["drains", "-a", "hello"], &[url, &token]);
    let run = cli.run(&["drains:remove", "d.nope", "-a", "hello"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no log drain \"d.nope\""), "{}", run.stderr);
    assert_eq!(api.call("GET", "/apps/hello/log-drains", None).await.1, drains, "nothing changed");
    cli.ok(
        &["drains:remove", &token, "-a", "hello"],
        &["Successfully removed drain syslog+tls://logs.example.com:6514"],
    );
    assert_eq!(api.call("GET", "/apps/hello/log-drains", None).await, (200, json!([])));
}

#[tokio::test]
async fn the_heroku_cli_adds_and_removes_domains() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    api.expect("POST", "/apps", json!({"name": "other"}), 201).await;
    let steps = vec![
        step(&["domains:add", "www.example.com", "-a", "hello"], 0, &["DNS Target hello-default.localhost"])
            .then("/apps/hello/domains/www.example.com", "/kind", json!("custom"))
            .then("/sites/www.example.com", "/internal", json!(false))
            .then("/sites/www.example.com/routes", "/0/app/name", json!("hello-default")),
        step(&["domains", "-a", "hello"], 0, &["hello-default.localhost", "www.example.com", "CNAME"]),
        // A domain another app holds: Heroku's error body, and it stays where it is.
        step(&["domains:add", "www.example.com", "-a", "other"], 2, &["already held by app hello-default", "conflict"])
            .then("/sites/www.example.com/routes", "/0/app/name", json!("hello-default"))
            .then("/apps/other/domains", "/0/kind", json!("heroku")),
        step(&["domains:add", "not a domain", "-a", "hello"], 2, &["invalid_params"]),
        step(&["domains:remove", "www.example.com", "-a", "hello"], 0, &["Removing www.example.com from"]).then(
            "/apps/hello/domains",
            "/0/hostname",
            json!("hello-default.localhost"),
        ),
    ];
    run_steps(&cli, api, steps).await;
    assert_eq!(api.call("GET", "/sites/www.example.com", None).await.0, 404, "the site went with the domain");
    assert_eq!(api.call("GET", "/apps/hello/domains", None).await.1.as_array().map(Vec::len), Some(1));
    let (status, body) = api.call("DELETE", "/apps/hello/domains/hello-default.localhost", None).await;
    assert_eq!((status, &body["id"]), (422, &json!("invalid_params")), "the default domain stays: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_puts_an_app_into_maintenance_mode() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    let dyno = wharf_testkit::dyno_server::DynoServer::start("serving").await;
    api.create_app("hello-default", &[&dyno]).await;
    let tls = wharf_testkit::client::tls_config(&wharf.ca, &[b"http/1.1"]);
    let get = || async {
        wharf_testkit::client::send(wharf.https, Some(&tls), &Req::get("hello-default.localhost", "/")).await.ok()
    };
    let wait = Duration::from_secs(30);
    eventually(wait, "the app to serve", || async { get().await.filter(|r| r.status == 200) }).await;

    let steps = vec![
        step(&["maintenance", "-a", "hello"], 0, &["off"]),
        step(&["maintenance:on", "-a", "hello"], 0, &["Enabling maintenance mode for", "hello", "done"]).then(
            "/apps/hello",
            "/maintenance",
            json!(true),
        ),
        step(&["maintenance", "-a", "hello"], 0, &["on"]),
        step(&["maintenance:on", "-a", "nope"], 2, &["no app \"nope\"", "Error ID: not_found"]),
    ];
    run_steps(&cli, api, steps).await;
    let served = dyno.requests();
    let page = eventually(wait, "the maintenance page", || async { get().await.filter(|r| r.status == 503) }).await;
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains("Offline for maintenance"), "{}", page.text());
    assert_eq!(dyno.requests(), served, "no request reached the dyno");
    // The router's H80 line is in the app's log stream, as `heroku logs` shows it.
    let logs = eventually(wait, "H80 in heroku logs", || async {
        let run = cli.run(&["logs", "-n", "20", "-a", "hello"]);
        (run.code == Some(0) && run.stdout.contains("code=H80")).then_some(run.stdout)
    })
    .await;
    assert!(logs.contains("at=info code=H80 desc=\"Maintenance mode\""), "{logs}");
    assert!(logs.contains("status=503"), "{logs}");

    let steps = vec![
        step(&["maintenance:off", "-a", "hello"], 0, &["Disabling maintenance mode for", "hello", "done"]).then(
            "/apps/hello",
            "/maintenance",
            json!(false),
        ),
        step(&["maintenance", "-a", "hello"], 0, &["off"]),
    ];
    run_steps(&cli, api, steps).await;
    let back = eventually(wait, "the app to serve again", || async { get().await.filter(|r| r.status == 200) }).await;
    assert_eq!(back.text(), "serving");
}

/// What the app's web dyno answers through the router for `GET /NAME`: the value of its
/// environment variable NAME (testkit's `PYTHON_WEB_DYNO`).
async fn env_through_router(wharf: &Wharf, app: &str, name: &str) -> Option<String> {
    let host = format!("{app}-default.localhost");
    let r = wharf_testkit::client::send(wharf.http, None, &Req::get(&host, &format!("/{name}"))).await.ok()?;
    (r.status == 200).then(|| r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_sets_config_lists_releases_and_rolls_back() {
    let dir = TempDir::new("heroku-releases");
    let (wharf, command) = Wharf::serve_with_web_dyno(WHARF, &dir).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let web = json!({"updates": [{"type": "web", "quantity": 1, "command": command}]});
    api.expect("PATCH", "/apps/hello/formation", web, 200).await;
    let wait = Duration::from_secs(60);
    let serves = |want: &'static str| {
        let wharf = &wharf;
        async move {
            eventually(wait, &format!("the web dyno to say GREETING={want}"), || async {
                (env_through_router(wharf, "hello", "GREETING").await.as_deref() == Some(want)).then_some(())
            })
            .await;
        }
    };
    serves("none").await;
    // v1 is the app's creation, v2 the web command; the local supervisor settles each.
    let release = |v: u32| format!("/apps/hello/releases/v{v}");
    eventually(wait, "v2 to succeed", || async {
        (api.call("GET", &release(2), None).await.1["status"] == "succeeded").then_some(())
    })
    .await;

    cli.ok(&["config:set", "GREETING=hello", "-a", "hello"], &["Setting GREETING and restarting hello", "done, v3"]);
    serves("hello").await;
    cli.ok(&["config:set", "GREETING=bonjour", "-a", "hello"], &["done, v4"]);
    serves("bonjour").await;
    let steps = vec![
        step(
            &["releases", "-a", "hello"],
            0,
            &["hello Releases", "v4", "Set GREETING config vars", "v2", "Set web command", "v1", "Initial release"],
        )
        .then("/apps/hello/releases", "/3/version", json!(4))
        .then("/apps/hello/releases", "/0/description", json!("Initial release")),
        step(
            &["releases:info", "v3", "-a", "hello"],
            0,
            &["Release v3", "Set GREETING config vars", "GREETING: hello"],
        ),
        step(&["releases:info", "-a", "hello"], 0, &["Release v4", "GREETING: bonjour", "admin@localhost"]),
        step(&["releases:rollback", "v3", "-a", "hello"], 0, &["Rolling back hello to v3... done, v5"])
            .then("/apps/hello/releases/v5", "/description", json!("Rollback to v3"))
            .then("/apps/hello/config-vars", "/GREETING", json!("hello")),
        // Waits until every dyno is up on v5, polling /apps/X/dynos as Heroku's CLI does.
        step(&["ps:wait", "-a", "hello"], 0, &[]),
    ];
    run_steps(&cli, api, steps).await;
    // ps:wait returned: every dyno runs v5, and the old value is back in the dyno's environment.
    let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
    let versions: Vec<&Value> = dynos.as_array().unwrap().iter().map(|d| &d["release"]["version"]).collect();
    assert!(!versions.is_empty() && versions.iter().all(|v| **v == json!(5)), "{dynos}");
    assert_eq!(env_through_router(&wharf, "hello", "GREETING").await.as_deref(), Some("hello"));
    eventually(wait, "v5 to succeed and be current", || async {
        let (_, r) = api.call("GET", &release(5), None).await;
        (r["status"] == "succeeded" && r["current"] == true).then_some(())
    })
    .await;

    // A release that does not exist: Heroku's error body, and nothing changes.
    let (_, before) = api.call("GET", "/apps/hello/releases", None).await;
    let steps = vec![
        step(&["releases:rollback", "v9", "-a", "hello"], 2, &["no release \"9\"", "Error ID: not_found"]).then(
            "/apps/hello/config-vars",
            "/GREETING",
            json!("hello"),
        ),
        step(&["releases:info", "v9", "-a", "hello"], 2, &["no release \"9\""]),
    ];
    run_steps(&cli, api, steps).await;
    assert_eq!(api.call("GET", "/apps/hello/releases", None).await.1, before, "no release was made");

    cli.ok(&["config:unset", "GREETING", "-a", "hello"], &["done, v6"]);
    serves("none").await;
    let (_, v6) = api.call("GET", &release(6), None).await;
    assert_eq!(v6["description"], "Remove GREETING config vars", "{v6}");
}

/// Issue 21's "done when": code deployed from a tar.gz URL shows in `heroku releases` (AU21),
/// and `heroku releases:output` prints its release phase's output (a release without a phase
/// has none, as on Heroku).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_lists_a_release_deployed_from_source() {
    let dir = TempDir::new("heroku-deploy");
    let env = [("WHARF_CONTROL_API__ALLOW_FILE_URLS", "true"), ("WHARF_ROUTER__HTTP_REDIRECT", "false")];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let procfile =
        "web: exec python3 -m http.server $PORT\nrelease: echo migrating the database; echo done migrating\n";
    std::fs::write(src.join("Procfile"), procfile).unwrap();
    std::fs::write(src.join("index.html"), "deployed\n").unwrap();
    let archive = dir.path().join("app.tgz");
    let packed = Command::new("tar").arg("czf").arg(&archive).arg("-C").arg(&src).arg(".").status().unwrap();
    assert!(packed.success());
    let blob = json!({"source_blob": {"url": format!("file://{}", archive.display()), "version": "v1.0"}});
    let build = api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let path = format!("/apps/hello/builds/{}", build["id"].as_str().unwrap());
    eventually(Duration::from_secs(60), "the build's release to settle", || async {
        let (_, b) = api.call("GET", &path, None).await;
        let (_, r) = api.call("GET", "/apps/hello/releases/v2", None).await;
        (b["status"] == "succeeded" && r["status"] == "succeeded").then_some(())
    })
    .await;
    let steps =
        vec![
            step(&["releases", "-a", "hello"], 0, &["hello Releases", "v2", "Deploy v1.0", "v1", "Initial release"])
                .then("/apps/hello/releases/v2", "/description", json!("Deploy v1.0")),
            step(&["releases:info", "v2", "-a", "hello"], 0, &["Release v2", "Deploy v1.0"]),
            // The release phase's lines, read after it ended (from the release's record).
            step(&["releases:output", "v2", "-a", "hello"], 0, &["migrating the database", "done migrating"]),
            step(&["releases:output", "v1", "-a", "hello"], 0, &["Release v1 has no release output available"]).then(
                "/apps/hello/releases/v1",
                "/output_stream_url",
                Value::Null,
            ),
        ];
    run_steps(&cli, api, steps).await;
}

/// Issue 21: the output URL of a release whose phase has not started yet (queued behind
/// another release's phase) is no bare empty end: it says what it waits for and follows the
/// phase once it starts, so `heroku releases:output` (and `curl`) waits for it and prints it;
/// a release superseded before its phase started says its phase never ran, and by whom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_follows_a_release_phase_that_has_not_started_yet() {
    let dir = TempDir::new("heroku-queued");
    let env = [
        ("WHARF_CONTROL_API__ALLOW_FILE_URLS", "true"),
        ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
        ("WHARF_SUPERVISOR__CONNECTION_GRACE", "500ms"),
        ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
    ];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    let wait = Duration::from_secs(60);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let gate = dir.path().join("gate");
    api.expect("PATCH", "/apps/hello/config-vars", json!({"GATE": gate.to_str().unwrap()}), 200).await;
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let procfile = "web: exec python3 -m http.server $PORT\n\
                    release: echo migrating; while [ ! -e \"$GATE\" ]; do sleep 0.1; done; echo done migrating\n";
    std::fs::write(src.join("Procfile"), procfile).unwrap();
    let archive = dir.path().join("app.tgz");
    let packed = Command::new("tar").arg("czf").arg(&archive).arg("-C").arg(&src).arg(".").status().unwrap();
    assert!(packed.success());
    let blob = json!({"source_blob": {"url": format!("file://{}", archive.display())}});
    let build = api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let build_path = format!("/apps/hello/builds/{}", build["id"].as_str().unwrap());
    let slug = eventually(wait, "the build's slug", || async {
        let (_, b) = api.call("GET", &build_path, None).await;
        b["slug"]["id"].as_str().map(str::to_owned)
    })
    .await;
    let output_of = |v: u32| async move {
        let (_, r) = api.call("GET", &format!("/apps/hello/releases/v{v}"), None).await;
        let url = r["output_stream_url"].as_str().expect("a release with a phase has an output URL").to_owned();
        Followed::start(api.addr, url.split_once(&api.addr.to_string()).unwrap().1).await
    };
    // v3's phase runs and waits at the gate; v4 and v5, two deploys of the slug, wait for it.
    let v3 = output_of(3).await;
    v3.until("migrating", wait).await;
    for _ in 0..2 {
        api.expect("POST", "/apps/hello/releases", json!({"slug": slug}), 201).await;
    }
    let (v4, v5) = (output_of(4).await, output_of(5).await);
    assert_eq!((v4.status.as_u16(), v5.status.as_u16()), (200, 200));
    v4.until("v4's release phase has not started yet: v3 is pending before it", wait).await;
    v5.until("v5's release phase has not started yet: v3 is pending before it", wait).await;
    let mut follower = cli
        .command(&cli.token, &["releases:output", "v5", "-a", "hello"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the Heroku CLI runs");
    // What the CLI prints, as it prints it (Node writes a pipe synchronously on Linux).
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (mut stdout, printed) = (follower.stdout.take().unwrap(), printed.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
                printed.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    // The CLI follows v5's stream, and waits, before the phase can start.
    eventually(wait, "the CLI to say v5's phase has not started yet", || async {
        printed.lock().unwrap().contains("v5's release phase has not started yet").then_some(())
    })
    .await;
    std::fs::write(&gate, "").unwrap();

    let said = v3.ended(wait).await;
    assert!(said.trim_end().ends_with("Release phase of v3 succeeded"), "{said}");
    let said = v5.ended(wait).await;
    for piece in ["has not started yet", "Release phase of v5 starting", "done migrating"] {
        assert!(said.contains(piece), "{piece:?}: {said}");
    }
    assert!(said.trim_end().ends_with("Release phase of v5 succeeded"), "{said}");
    // v5 superseded v4 before v4's phase could start: v4's URL says so, then and later.
    let said = v4.ended(wait).await;
    const NEVER: &str = "v4's release phase never ran: v5 superseded it before it started, and v4 is succeeded with v5";
    assert!(said.trim_end().ends_with(NEVER), "{said}");
    let run = tokio::time::timeout(wait, tokio::task::spawn_blocking(move || follower.wait_with_output().unwrap()))
        .await
        .expect("heroku releases:output v5 to end with v5's phase")
        .unwrap();
    reader.join().unwrap();
    let (stdout, stderr) = (printed.lock().unwrap().clone(), String::from_utf8_lossy(&run.stderr).into_owned());
    assert_eq!(run.status.code(), Some(0), "{stdout}{stderr}");
    for piece in ["has not started yet", "Release phase of v5 starting", "Release phase of v5 succeeded"] {
        assert!(stdout.contains(piece), "{piece:?}: {stdout}{stderr}");
    }
    let steps = vec![
        step(&["releases:output", "v4", "-a", "hello"], 0, &[NEVER]),
        step(&["releases:output", "v5", "-a", "hello"], 0, &["done migrating", "Release phase of v5 succeeded"]),
    ];
    run_steps(&cli, api, steps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_sizes_dynos_from_the_configured_list() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let formation = json!({"updates": [
        {"type": "web", "quantity": 0},
        {"type": "worker", "quantity": 1, "command": "exec sleep 600"},
    ]});
    api.expect("PATCH", "/apps/hello/formation", formation, 200).await;
    let versions = || async {
        let (_, releases) = api.call("GET", "/apps/hello/releases", None).await;
        releases.as_array().unwrap().iter().map(|r| r["version"].clone()).collect::<Vec<_>>()
    };
    let releases = versions().await;
    let web = "/apps/hello/formation/web";
    let steps = vec![
        // Any case in, the configured name out; sizes are listed by `ps:type`.
        step(&["ps:type", "web=standard-2x", "-a", "hello"], 0, &["Standard-2X"]).then(
            web,
            "/size",
            json!("Standard-2X"),
        ),
        step(&["ps:scale", "web=1:performance-m", "-a", "hello"], 0, &["web at 1:Performance-M"])
            .then(web, "/size", json!("Performance-M"))
            .then(web, "/quantity", json!(1)),
        step(&["ps:scale", "web=0", "-a", "hello"], 0, &["web at 0:Performance-M"]).then(web, "/quantity", json!(0)),
        step(&["ps:type", "-a", "hello"], 0, &["Performance-M", "Standard-1X", "Dyno Totals"]),
        // Unknown sizes: Heroku's error body naming the sizes there are, and nothing changes.
        step(
            &["ps:type", "web=huge", "-a", "hello"],
            2,
            // (The CLI wraps the message at its width.)
            &["unknown dyno size \"huge\": one of Basic, Standard-1X", "Performance-M, Performance-L"],
        )
        .then(web, "/size", json!("Performance-M")),
        step(
            &["ps:scale", "web=2:huge", "-a", "hello"],
            2,
            &["unknown dyno size \"huge\"", "Error ID: invalid_params"],
        )
        .then(web, "/quantity", json!(0))
        .then(web, "/size", json!("Performance-M")),
    ];
    run_steps(&cli, api, steps).await;
    assert_eq!(versions().await, releases, "resizing is no release");
    // `ps` shows the size of the dynos running.
    let worker = json!({"updates": [{"type": "worker", "size": "Standard-2X"}]});
    api.expect("PATCH", "/apps/hello/formation", worker, 200).await;
    eventually(Duration::from_secs(60), "the worker to be up", || async {
        (up_dynos(api, "hello", "worker").await.len() == 1).then_some(())
    })
    .await;
    cli.ok(&["ps", "-a", "hello"], &["=== worker (Standard-2X): exec sleep 600 (1)"]);
    let (_, dynos) = api.call("GET", "/apps/hello/dynos/worker.1", None).await;
    assert_eq!(dynos["size"], "Standard-2X", "{dynos}");
}

#[tokio::test]
async fn the_heroku_cli_creates_apps_in_spaces_and_adds_and_removes_certificates() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/spaces", json!({"name": "prod"}), 201).await;
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let ca = wharf_testkit::certs::TestCa::new("heroku cli");
    let cert = ca.issue(&["www.example.test"], -1, 90);
    let other = ca.issue(&["api.example.test"], -1, 90);
    let home = cli.home.path();
    std::fs::write(home.join("cert.pem"), &cert.chain_pem).unwrap();
    std::fs::write(home.join("key.pem"), &cert.key_pem).unwrap();
    std::fs::write(home.join("other-key.pem"), &other.key_pem).unwrap();
    let steps = vec![
        // `--space` creates through POST /teams/apps, in that space.
        step(&["apps:create", "hi", "--space", "prod"], 0, &["Creating hi in space prod... done"])
            .then("/apps/hi-prod", "/space/name", json!("prod"))
            .then("/apps/hi-prod/releases/v1", "/description", json!("Initial release")),
        step(&["apps:info", "-a", "hi-prod"], 0, &["=== hi-prod", "Space:", "prod"]),
        step(&["apps:create", "nope", "--space", "missing"], 2, &["no space \"missing\"", "Error ID: not_found"]),
        step(
            &["apps:create", "inside", "--space", "prod", "--internal-routing"],
            2,
            &["internal_routing is false for every app of space prod", "Error ID: invalid_params"],
        ),
        // An upload goes into /certs; it shows as the app's endpoint once it covers a domain.
        step(&["certs:add", "cert.pem", "key.pem", "-a", "hello"], 0, &["Adding SSL certificate to hello... done"])
            .then("/certs", "/0/domains/0", json!("www.example.test")),
        step(
            &["certs:add", "cert.pem", "other-key.pem", "-a", "hello"],
            2,
            &["the private key does not belong to the certificate", "Error ID: invalid_params"],
        ),
        step(&["certs:add", "cert.pem", "key.pem", "-a", "hello"], 2, &["already uploaded", "Error ID: conflict"]),
        step(&["domains:add", "www.example.test", "-a", "hello"], 0, &["www.example.test"]),
        step(&["certs", "-a", "hello"], 0, &["www.example.test"]).then(
            "/apps/hello/sni-endpoints",
            "/0/domains",
            json!(["www.example.test"]),
        ),
    ];
    run_steps(&cli, api, steps).await;
    let (_, certs) = api.call("GET", "/certs", None).await;
    assert_eq!(certs.as_array().map(Vec::len), Some(1), "the refused uploads added nothing: {certs}");
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    // What `certs:add` sends for each domain the user picks at its prompt: checked, nothing stored.
    let domain = "/apps/hello/domains/www.example.test";
    for (path, endpoint, status) in [
        (domain, json!(id), 200),
        (domain, json!(null), 200),
        (domain, json!("no-such-endpoint"), 422),
        ("/apps/hello/domains/nope.example.test", json!(id), 404),
        ("/apps/nope/domains/www.example.test", json!(id), 404),
    ] {
        let (got, body) = api.call("PATCH", path, Some(json!({"sni_endpoint": endpoint}))).await;
        assert_eq!(got, status, "{path} {endpoint}: {body}");
        if status == 200 {
            assert_eq!(body["hostname"], "www.example.test", "{body}");
        }
    }
    let run = cli.run(&["certs:remove", "--name", &id, "--confirm", "hello", "-a", "hello"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&format!("Removing SSL certificate {id} from hello... done")), "{}", run.stderr);
    assert_eq!(api.call("GET", "/certs", None).await.1, json!([]), "removed from /certs");
    let (status, body) = api.call("DELETE", &format!("/apps/hello/sni-endpoints/{id}"), None).await;
    assert_eq!((status, &body["id"]), (404, &json!("not_found")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heroku_cli_runs_detached_one_off_dynos_whose_output_reaches_the_logs() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let api = &wharf.api;
    let cli = Cli::new(&wharf);
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    api.expect("PATCH", "/apps/hello/config-vars", json!({"GREETING": "hi from config"}), 200).await;
    cli.ok(
        &["run:detached", "echo $GREETING; echo extra=$EXTRA; echo oops >&2", "-e", "EXTRA=1", "-a", "hello"],
        &["heroku logs --app hello --dyno run.1"],
    );
    let wait = Duration::from_secs(30);
    let shown = eventually(wait, "the one-off's output in the logs", || async {
        let run = cli.run(&["logs", "-n", "50", "-a", "hello"]);
        (run.code == Some(0) && run.stdout.contains("Process exited")).then_some(run.stdout)
    })
    .await;
    for line in [
        "app[run.1]: hi from config",
        "app[run.1]: extra=1",
        "app[run.1]: oops",
        "akkeris/supervisor[run.1]: Process exited: exit status: 0",
    ] {
        assert!(shown.contains(line), "{line:?} missing from {shown}");
    }
    // Gone once it exited, and the next one is run.2.
    eventually(wait, "run.1 to leave the dyno list", || async {
        let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
        dynos.as_array()?.is_empty().then_some(())
    })
    .await;
    cli.ok(&["run:detached", "exec sleep 600", "-s", "standard-2x", "-a", "hello"], &["--dyno run.2"]);
    let (_, two) = api.call("GET", "/apps/hello/dynos/run.2", None).await;
    assert_eq!((&two["type"], &two["command"]), (&json!("run"), &json!("exec sleep 600")), "{two}");

    // Refusals: Heroku's error body, and no dyno starts.
    let run = cli.run(&["run:detached", "true", "-s", "huge", "-a", "hello"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("unknown dyno size \"huge\""), "{}", run.stderr);
    for (body, says) in [
        (json!({"command": "true", "attach": true}), "no rendezvous"),
        (json!({"command": "  "}), "command must be"),
        (json!({"command": "true", "env": {"BAD NAME": "x"}}), "invalid config var name"),
        (json!({"command": "true", "type": "web"}), "of type run"),
        (json!({"command": "true", "memory": 1}), "unknown field"),
    ] {
        let (status, out) = api.call("POST", "/apps/hello/dynos", Some(body.clone())).await;
        assert_eq!((status, &out["id"]), (422, &json!("invalid_params")), "{body}: {out}");
        assert!(out["message"].as_str().unwrap_or_default().contains(says), "{body}: {out}");
    }
    let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
    let names: Vec<&str> = dynos.as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["run.2"], "{dynos}");
    // A one-off is never restarted: stopping it by name (or restarting it) ends it, and its
    // whole group goes; the app's stream says so after the dyno's own lines.
    cli.ok(&["ps:stop", "run.2", "-a", "hello"], &["Stopping dyno run.2 on hello... done"]);
    eventually(wait, "run.2 to be stopped and leave the dyno list", || async {
        let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
        dynos.as_array()?.is_empty().then_some(())
    })
    .await;
    // The CLI's own example, `ps:stop --process-type run`, stops every one-off (and the
    // positional `ps:stop run` sends the type as a dyno's name).
    let stops: [&[&str]; 2] =
        [&["ps:stop", "--process-type", "run", "-a", "hello"], &["ps:stop", "run", "-a", "hello"]];
    for (name, stop) in ["run.3", "run.4"].into_iter().zip(stops) {
        cli.ok(&["run:detached", "exec sleep 600", "-a", "hello"], &[&format!("--dyno {name}")]);
        eventually(wait, &format!("{name} to be listed"), || async {
            let (status, _) = api.call("GET", &format!("/apps/hello/dynos/{name}"), None).await;
            (status == 200).then_some(())
        })
        .await;
        cli.ok(stop, &["done"]);
        eventually(wait, &format!("{stop:?}: {name} to be stopped and leave the dyno list"), || async {
            let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
            dynos.as_array()?.is_empty().then_some(())
        })
        .await;
    }
    cli.ok(&["run:detached", "echo last words; exec sleep 600", "-a", "hello"], &["--dyno run.5"]);
    eventually(wait, "run.5 to be up", || async {
        let (_, d) = api.call("GET", "/apps/hello/dynos/run.5", None).await;
        (d["state"] == "up").then_some(())
    })
    .await;
    // Heroku's `ps:restart` restarts every dyno: a one-off cannot be, so it is stopped.
    cli.ok(&["ps:restart", "-a", "hello"], &[]);
    let shown = eventually(wait, "run.5's end in the logs", || async {
        let run = cli.run(&["logs", "-n", "100", "-a", "hello"]);
        (run.code == Some(0) && run.stdout.contains("[run.5]: Process exited")).then_some(run.stdout)
    })
    .await;
    assert!(shown.contains("akkeris/supervisor[run.5]: Process exited: stopped by request"), "{shown}");
    let (last, exited) = (shown.find("app[run.5]: last words"), shown.find("[run.5]: Process exited"));
    assert!(last.is_some_and(|l| exited.is_some_and(|e| l < e)), "the dyno's lines come first: {shown}");
}
