//! The `wharf` binary as a child process, started the way a user starts it, with every
//! listener on a free port, and its addresses read from the `addresses.json` it writes in its
//! data directory when it is ready (the machine-readable form of what it prints).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TempDir;
use crate::client::Api;

/// A running `wharf serve`.
#[derive(Debug)]
pub struct Wharf {
    /// The control API.
    pub api: Api,
    /// The router's plain-HTTP listener.
    pub http: SocketAddr,
    /// The router's HTTPS listener.
    pub https: SocketAddr,
    /// The router's internal HTTPS listener.
    pub internal: SocketAddr,
    /// The router's metrics and health listener.
    pub admin: SocketAddr,
    /// The CA that signs the router's generated certificates.
    pub ca: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    stderr: PathBuf,
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
    child: Child,
    _dir: Option<TempDir>,
}

impl Wharf {
    /// Starts `wharf serve --kafka` on `broker`, its drains reconnecting within 20-200 ms (tests
    /// take drains down and bring them back), with `env` on top.
    pub async fn serve_on_kafka(
        bin: &str,
        broker: &crate::tansu::Tansu,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> Wharf {
        let mut all = vec![("WHARF_LOGSHUTTLE__RECONNECT_MIN", "20ms"), ("WHARF_LOGSHUTTLE__RECONNECT_MAX", "200ms")];
        all.extend_from_slice(env);
        Wharf::serve_with(bin, &["--kafka", &broker.brokers()], data_dir, &all).await
    }

    /// Starts `wharf serve` in `dir/data` with a quick supervisor (restarts from 200 ms, 2 s stop
    /// grace) and plain HTTP through the router (no redirect), and writes the test kit's web
    /// dyno ([`crate::dyno_server::PYTHON_WEB_DYNO`]: `GET /NAME` answers its environment
    /// variable NAME) to `dir`; returns Wharf and the command that runs that dyno.
    pub async fn serve_with_web_dyno(bin: &str, dir: &TempDir) -> (Wharf, String) {
        let script = dir.path().join("server.py");
        std::fs::write(&script, crate::dyno_server::PYTHON_WEB_DYNO).expect("the web dyno's script is written");
        let wharf = Wharf::serve_again_with_web_dyno(bin, dir).await;
        (wharf, format!("exec python3 {}", script.display()))
    }

    /// Starts `wharf serve` again as [`Wharf::serve_with_web_dyno`] did, on the data it left in
    /// `dir` (after a `kill -9` of the first, say).
    pub async fn serve_again_with_web_dyno(bin: &str, dir: &TempDir) -> Wharf {
        Wharf::serve_again_with_web_dyno_and(bin, dir, &[]).await
    }

    /// [`Wharf::serve_again_with_web_dyno`] with `env` on top (`WHARF_SECTION__KEY` settings).
    pub async fn serve_again_with_web_dyno_and(bin: &str, dir: &TempDir, env: &[(&str, &str)]) -> Wharf {
        let mut all = vec![
            ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
            ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
            ("WHARF_SUPERVISOR__CONNECTION_GRACE", "200ms"),
            ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
            ("WHARF_SUPERVISOR__HEALTH_TIMEOUT", "20s"),
        ];
        all.extend_from_slice(env);
        Wharf::serve_with(bin, &[], &dir.path().join("data"), &all).await
    }
}

/// A `wharf serve` still running when its test ends (passed or panicked) is stopped as an
/// operator stops it, with SIGTERM, so that it stops its dynos first: killing it outright
/// (`kill_on_drop`) would leave them running in their own process groups, and a busy dyno would
/// then take a core from every later test. It gets 20 s (dynos that ignore SIGTERM are killed
/// after `supervisor.stop_grace`); after that `kill_on_drop` kills it.
impl Drop for Wharf {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let Some(pid) = self.child.id() else { return };
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `wharf` process that is ready: its `addresses.json`.
struct Started {
    child: Child,
    addresses: Addresses,
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: PathBuf,
}

/// What a ready `wharf` wrote in `DATA_DIR/addresses.json`.
struct Addresses(serde_json::Value);

impl Addresses {
    /// The address under `key`; panics when the file has none, naming the file's text.
    fn addr(&self, key: &str) -> SocketAddr {
        let text = self.0[key].as_str().unwrap_or_else(|| panic!("addresses.json has no {key:?}: {}", self.0));
        text.parse().unwrap_or_else(|e| panic!("addresses.json {key:?} = {text:?}: {e}"))
    }

    /// The CA's path.
    fn ca(&self) -> PathBuf {
        PathBuf::from(self.0["ca"].as_str().unwrap_or_else(|| panic!("addresses.json has no \"ca\": {}", self.0)))
    }
}

/// The five secrets that control API replicas on one database must share, as the variables
/// that give them: with `--database-url`, a replica missing any of them refuses to start.
pub const REPLICA_SECRETS: [(&str, &str); 5] = [
    ("WHARF_ADMIN_TOKEN", "replica-admin-token-0123456789"),
    ("WHARF_ROUTER_TOKEN", "replica-router-token-0123456789"),
    ("WHARF_LOGSHUTTLE_TOKEN", "replica-logshuttle-token-0123456789"),
    ("WHARF_RUNTIME_TOKEN", "replica-runtime-token-0123456789"),
    ("WHARF_SESSION_SECRET", "replica-session-secret-0123456789"),
];

/// Every listener of `wharf serve` on a free loopback port, as environment variables, so that
/// tests run side by side.
pub const FREE_PORTS: [(&str, &str); 5] = [
    ("WHARF_CONTROL_API__LISTEN", "127.0.0.1:0"),
    ("WHARF_ROUTER__HTTP_LISTEN", "127.0.0.1:0"),
    ("WHARF_ROUTER__HTTPS_LISTEN", "127.0.0.1:0"),
    ("WHARF_ROUTER__INTERNAL_LISTEN", "127.0.0.1:0"),
    ("WHARF_ROUTER__ADMIN_LISTEN", "127.0.0.1:0"),
];

/// Starts `wharf SUBCOMMAND --data-dir DATA_DIR ARGS` with every listener on a free port, and
/// waits until it is ready: its `addresses.json` names its process id.
async fn start(bin: &str, subcommand: &str, args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> Started {
    let stderr = data_dir.with_extension("stderr");
    let mut child = Command::new(bin)
        .arg(subcommand)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("WHARF_ADMIN_TOKEN")
        .env_remove("WHARF_DATA_PLANE_TOKEN")
        .env_remove("WHARF_ROUTER_TOKEN")
        .env_remove("WHARF_LOGSHUTTLE_TOKEN")
        .env_remove("WHARF_RUNTIME_TOKEN")
        .env_remove("WHARF_SESSION_SECRET")
        .envs(FREE_PORTS)
        .env("WHARF_LOG", "info,wharf_router=debug,wharf_logshuttle=debug")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("wharf starts");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let pid = child.id().expect("a running child has a pid");
    let file = data_dir.join("addresses.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // A file left by an earlier process in the same data directory names that process.
        let ready = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter(|doc| doc["pid"].as_u64() == Some(u64::from(pid)));
        if let Some(doc) = ready {
            return Started { child, addresses: Addresses(doc), stdout: rx, stderr };
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || tokio::time::Instant::now() > deadline {
            let mut printed = Vec::new();
            while let Ok(line) = rx.try_recv() {
                printed.push(line);
            }
            panic!(
                "wharf {subcommand} did not start ({}); stdout:\n{}\nstderr:\n{}",
                exited.map_or("no addresses.json after 60 s".to_owned(), |s| s.to_string()),
                printed.join("\n"),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `wharf router`, following a control API.
#[derive(Debug)]
pub struct WharfRouter {
    /// The plain HTTP listener.
    pub http: SocketAddr,
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The metrics and health listener.
    pub admin: SocketAddr,
    /// The CA that signs its generated default certificate.
    pub ca: PathBuf,
    child: Child,
    stderr: PathBuf,
}

impl WharfRouter {
    /// Starts `wharf router --control-api URL` with `token` (the router token, the control
    /// API's `router-token` file) and the data directory `data_dir`.
    pub async fn start(bin: &str, control_api: &str, token: &str, data_dir: &Path) -> WharfRouter {
        WharfRouter::start_with(bin, control_api, token, data_dir, &[]).await
    }

    /// As [`WharfRouter::start`], with more environment variables.
    pub async fn start_with(
        bin: &str,
        control_api: &str,
        token: &str,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> WharfRouter {
        let mut all = vec![("WHARF_ROUTER_TOKEN", token)];
        all.extend_from_slice(env);
        let Started { child, addresses, stderr, .. } =
            start(bin, "router", &["--control-api", control_api], data_dir, &all).await;
        WharfRouter {
            http: addresses.addr("router_http"),
            https: addresses.addr("router_https"),
            admin: addresses.addr("admin"),
            ca: addresses.ca(),
            child,
            stderr,
        }
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }

    /// Sends SIGTERM, waits (at most 30 s) for the process to exit, and returns whether it
    /// exited successfully and its logs.
    pub async fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().expect("running").to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
        assert!(killed.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("wharf router exits within 30 s of SIGTERM")
            .expect("wait");
        (status.success(), self.stderr())
    }

    /// What the process wrote to standard error so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// A running `wharf control-api`: the API and its store alone.
#[derive(Debug)]
pub struct WharfControlApi {
    /// A client with the admin token given in `WHARF_ADMIN_TOKEN`, or the one stored.
    pub api: Api,
    child: Child,
    stderr: PathBuf,
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
    printed: String,
}

impl WharfControlApi {
    /// Starts `wharf control-api ARGS` (`--database-url URL`, ...) with the data directory
    /// `data_dir` and `env` (the shared tokens of replicas, configuration).
    pub async fn start(bin: &str, args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> WharfControlApi {
        let Started { child, addresses, stderr, stdout } = start(bin, "control-api", args, data_dir, env).await;
        let token = match env.iter().find(|(k, _)| *k == "WHARF_ADMIN_TOKEN") {
            Some((_, token)) => token.to_string(),
            None => {
                std::fs::read_to_string(data_dir.join("admin-token")).expect("stored admin token").trim().to_owned()
            }
        };
        let api = Api { addr: addresses.addr("control_api"), token: Some(token) };
        WharfControlApi { api, child, stderr, stdout, printed: String::new() }
    }

    /// What the process printed on standard output so far (its banner), one line each.
    pub fn stdout(&mut self) -> String {
        while let Ok(line) = self.stdout.try_recv() {
            self.printed.push_str(&line);
            self.printed.push('\n');
        }
        self.printed.clone()
    }

    /// Its URL, `http://127.0.0.1:PORT`, for a data plane's `--control-api`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api.addr)
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }

    /// What the process wrote to standard error so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// A running `wharf logshuttle`, following a control API and reading Kafka.
#[derive(Debug)]
pub struct WharfLogshuttle {
    /// Where it serves live tails and `/metrics`.
    pub addr: SocketAddr,
    child: Child,
    stderr: PathBuf,
}

impl WharfLogshuttle {
    /// Starts `wharf logshuttle --control-api URL --kafka BROKERS` with the data directory
    /// `data_dir` and `env` (`WHARF_LOGSHUTTLE_TOKEN`, the session secret, configuration).
    pub async fn start(bin: &str, control_api: &str, brokers: &str, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let args = ["--control-api", control_api, "--kafka", brokers];
        // Its listener on a free port too, unless `env` names one.
        let mut all = vec![("WHARF_LOGSHUTTLE__LISTEN", "127.0.0.1:0")];
        all.extend_from_slice(env);
        let Started { child, addresses, stderr, .. } = start(bin, "logshuttle", &args, data_dir, &all).await;
        WharfLogshuttle { addr: addresses.addr("logshuttle"), child, stderr }
    }

    /// What it has written to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The process id, as text.
    pub fn pid(&self) -> String {
        self.child.id().map(|p| p.to_string()).unwrap_or_default()
    }

    /// How the process ended (a crash shows as a signal), or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }
}

impl Wharf {
    /// Starts `wharf serve` (the binary at `bin`) with `args`, in a fresh data directory that
    /// is removed when the process is.
    pub async fn serve(bin: &str, args: &[&str]) -> Wharf {
        let dir = TempDir::new("wharf");
        let mut w = Wharf::serve_in(bin, args, &dir.path().join("data")).await;
        w._dir = Some(dir);
        w
    }

    /// Starts `wharf serve` with the data directory `data_dir`, which the caller keeps.
    pub async fn serve_in(bin: &str, args: &[&str], data_dir: &Path) -> Wharf {
        Wharf::serve_with(bin, args, data_dir, &[]).await
    }

    /// Starts `wharf serve` with the data directory `data_dir` and extra environment variables.
    pub async fn serve_with(bin: &str, args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> Wharf {
        let Started { child, addresses, stdout, stderr } = start(bin, "serve", args, data_dir, env).await;
        // The token is the one given, or the one Wharf generated and stored (it prints only where).
        let token = match env.iter().find(|(k, _)| *k == "WHARF_ADMIN_TOKEN") {
            Some((_, token)) => token.to_string(),
            None => {
                std::fs::read_to_string(data_dir.join("admin-token")).expect("stored admin token").trim().to_owned()
            }
        };
        Wharf {
            api: Api { addr: addresses.addr("control_api"), token: Some(token) },
            http: addresses.addr("router_http"),
            https: addresses.addr("router_https"),
            internal: addresses.addr("router_internal"),
            admin: addresses.addr("admin"),
            ca: addresses.ca(),
            data_dir: data_dir.to_owned(),
            stderr,
            stdout,
            child,
            _dir: None,
        }
    }

    /// What the process wrote to standard error so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The process id, as text.
    pub fn pid(&self) -> String {
        self.child.id().map(|p| p.to_string()).unwrap_or_default()
    }

    /// How the process ended, or `None` while it runs (a crash shows here as a signal).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// The data directory's path.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited successfully
    /// and everything else it printed.
    pub async fn terminate(self) -> (bool, String) {
        self.signal_term().await;
        self.wait_exit().await
    }

    /// Sends SIGTERM and returns at once: the process begins its graceful shutdown.
    pub async fn signal_term(&self) {
        let pid = self.child.id().expect("running").to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
        assert!(killed.success(), "kill -TERM {pid} failed");
    }

    /// Waits (at most 30 s) for the process to exit; returns whether it exited successfully and
    /// everything else it printed.
    pub async fn wait_exit(mut self) -> (bool, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("wharf exits within 30 s of SIGTERM")
            .expect("wait");
        let mut rest = Vec::new();
        while let Ok(line) = self.stdout.try_recv() {
            rest.push(line);
        }
        // Lines still in the pipe arrive once the reader task sees end of file.
        while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), self.stdout.recv()).await {
            rest.push(line);
        }
        (status.success(), rest.join("\n"))
    }
}
