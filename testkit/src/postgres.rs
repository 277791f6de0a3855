//! A real PostgreSQL server for tests: Debian's, in a new cluster of its own with password
//! (SCRAM) authentication, on a free loopback port, stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TempDir;

/// The user and password of the cluster's superuser.
const USER: &str = "wharf";
const PASSWORD: &str = "pg-test-password";

/// A running server.
#[derive(Debug)]
pub struct Postgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The server, while it runs.
    child: Option<Child>,
    /// The server program and its arguments but the port.
    args: Vec<std::ffi::OsString>,
    _dir: TempDir,
}

/// The directory of Debian's server programs, the newest version installed.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's server is not installed; ./scripts/test installs it (Debian's postgresql)")
    })
}

/// The server refuses to run as root: as root, it runs as Debian's `postgres` user. `setpriv`
/// changes user and then executes the program itself, so the child is the server and signals
/// reach it.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// Gives a path to the user the server runs as.
fn own(path: &Path) {
    if is_root() {
        let status = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

impl Postgres {
    /// Creates a cluster and starts its server, waiting until it accepts logins.
    pub async fn start() -> Postgres {
        Postgres::start_with(None).await
    }

    /// Like [`Postgres::start`], with TLS offered under `cert` (for `localhost`).
    pub async fn start_tls(cert: &crate::certs::Issued) -> Postgres {
        Postgres::start_with(Some(cert)).await
    }

    async fn start_with(tls: Option<&crate::certs::Issued>) -> Postgres {
        let bin = bin_dir();
        let dir = TempDir::new("wharf-postgres");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("password");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        let mut tls_args = Vec::new();
        if let Some(cert) = tls {
            let (chain, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::write(&chain, &cert.chain_pem).unwrap();
            std::fs::write(&key, &cert.key_pem).unwrap();
            // The server refuses a key others may read.
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            tls_args = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", chain.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        own(dir.path());
        let out = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .await
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut args: Vec<std::ffi::OsString> = vec![bin.join("postgres").into(), "-D".into(), data.into()];
        args.extend(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k"].map(Into::into));
        args.push(dir.path().into());
        args.extend(tls_args.into_iter().map(Into::into));
        let mut pg = Postgres { port: 0, child: None, args, _dir: dir };
        // A port taken between choosing and binding makes the server exit; choose again then.
        for _ in 0..5 {
            pg.port = crate::free_port();
            if pg.run().await {
                return pg;
            }
        }
        panic!("postgres did not start on a free port");
    }

    /// Starts the server on its port; false when it exited instead of accepting logins.
    async fn run(&mut self) -> bool {
        let mut child = command(Path::new(&self.args[0]))
            .args(&self.args[1..])
            .args(["-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("postgres starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().expect("postgres status").is_some() {
                return false;
            }
            if Postgres::login(self.port, "postgres").await.is_ok() {
                self.child = Some(child);
                return true;
            }
            assert!(tokio::time::Instant::now() < deadline, "postgres did not accept logins in 30s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (its fast shutdown: clients are disconnected), keeping its data.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("running").to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status().await;
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("postgres stops").expect("wait");
    }

    /// Starts the stopped server again, on the same port, with the same data.
    pub async fn start_again(&mut self) {
        assert!(self.run().await, "postgres started again on port {}", self.port);
    }

    async fn login(port: u16, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(
            &format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/{db}"),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Creates a database and returns its URL, password included.
    pub async fn database(&self, name: &str) -> String {
        let client = Postgres::login(self.port, "postgres").await.expect("login");
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        self.url(name)
    }

    /// The URL of a database of this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{name}", self.port)
    }

    /// The password, for checking that it appears nowhere.
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// Runs SQL on a database and returns the first column of each row as text.
    pub async fn query(&self, db: &str, sql: &str) -> Vec<String> {
        let client = Postgres::login(self.port, db).await.expect("login");
        let rows = client.simple_query(sql).await.expect("query");
        rows.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or_default().to_owned()),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(child) = &mut self.child else { return };
        // SIGQUIT is the server's immediate shutdown: it stops its backends too, which SIGKILL
        // would leave behind. Waiting for it lets the directory be removed after it.
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").args(["-QUIT", &pid.to_string()]).status();
            for _ in 0..500 {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.start_kill();
    }
}
