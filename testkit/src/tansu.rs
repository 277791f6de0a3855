//! A real Kafka-protocol broker for tests: tansu, started as a child process on a free port
//! with in-memory storage (or, with [`Tansu::start_keeping`], its data in an SQLite file, and
//! with [`Tansu::start_on_postgres`] in a PostgreSQL database, both kept across restarts as a
//! Kafka keeps its logs on disk), and stopped when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running broker.
#[derive(Debug)]
pub struct Tansu {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    /// Its `--storage-engine` URL.
    engine: String,
    /// The tansu binary it runs.
    bin: PathBuf,
    /// Its working directory: tansu opens an SQLite file relative to it.
    cwd: PathBuf,
}

/// Where the tansu that has SQLite storage (the `libsql` feature) is: `tansu-sqlite/bin/tansu`
/// under Cargo's home, apart from the shared one on `PATH`, and outside any clone so that a fresh
/// clone does not build it again (./scripts/test installs it: `cargo install tansu --version
/// 0.6.0 --features dynostore,libsql --locked --root ~/.cargo/tansu-sqlite`).
fn sqlite_binary() -> PathBuf {
    let bin = cargo_home().map(|c| c.join("tansu-sqlite/bin/tansu")).unwrap_or_default();
    assert!(
        bin.is_file(),
        "{} is missing: ./scripts/test installs it (cargo install tansu --version 0.6.0 --features dynostore,libsql \
         --locked --root ~/.cargo/tansu-sqlite)",
        bin.display()
    );
    bin
}

/// Where the tansu that has PostgreSQL storage (the `postgres` feature) is installed:
/// `tansu-postgres/bin/tansu` under Cargo's home. ./scripts/test installs it.
fn postgres_install() -> PathBuf {
    let bin = cargo_home().map(|c| c.join("tansu-postgres")).unwrap_or_default().join("bin/tansu");
    assert!(
        bin.is_file(),
        "{} is missing: ./scripts/test installs it (cargo install tansu --version 0.6.0 --features \
         dynostore,postgres --locked --root ~/.cargo/tansu-postgres)",
        bin.display()
    );
    bin
}

/// tansu 0.6.0's PostgreSQL schema (its repository's `etc/initdb.d/010-schema.sql`): its
/// PostgreSQL engine does not create its tables, and no crate ships the file, so the tree keeps
/// a copy (testkit/tansu/README.md says where it comes from).
const POSTGRES_SCHEMA: &str = include_str!("../tansu/010-schema.sql");

/// Cargo's home: `CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Where the tansu binary is: on `PATH`, or where `cargo install` puts it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| cargo_home().map(|c| c.join("bin/tansu")).filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("tansu is not installed; ./scripts/test installs it (cargo install tansu --version 0.6.0 --features dynostore --locked)"))
}

impl Tansu {
    /// Starts a broker with in-memory storage and waits until it accepts connections.
    pub async fn start() -> Tansu {
        Tansu::start_on(crate::free_port(), "memory://tansu/".into(), binary(), std::env::temp_dir()).await
    }

    /// Starts a broker that keeps its topics, offsets and groups in the SQLite file `db`, so
    /// that [`Tansu::stop`] and [`Tansu::start_again`] bring it back with its data. (An
    /// in-memory broker comes back empty: tests/broker_restart.rs restarts both kinds.)
    pub async fn start_keeping(db: &std::path::Path) -> Tansu {
        // tansu 0.6.0 takes the file's path relative to its working directory, even when absolute.
        let name = db.file_name().expect("a file name").to_string_lossy();
        let cwd = db.parent().expect("a directory").to_path_buf();
        Tansu::start_on(crate::free_port(), format!("sqlite://{name}"), sqlite_binary(), cwd).await
    }

    /// Starts a broker that keeps its topics, offsets and groups in a new database `tansu` of
    /// `pg` (tansu's PostgreSQL engine, its schema loaded first), so that [`Tansu::stop`] or
    /// [`Tansu::terminate`] and [`Tansu::start_again`] bring it back with its data. Unlike
    /// SQLite's, this engine holds a consumer group of several members (benches/RESULTS.md,
    /// "Fleet drill"). `pg` must outlive the broker, and is its own: a test that restarts the
    /// PostgreSQL it tests gives the broker another.
    pub async fn start_on_postgres(pg: &crate::postgres::Postgres) -> Tansu {
        let bin = postgres_install();
        let url = pg.database("tansu").await;
        pg.query("tansu", POSTGRES_SCHEMA).await;
        Tansu::start_on(crate::free_port(), url, bin, std::env::temp_dir()).await
    }

    /// Stops the broker (SIGKILL); [`Tansu::start_again`] starts it on the same port.
    pub async fn stop(&mut self) {
        self.child.kill().await.expect("tansu stops");
    }

    /// Stops the broker as an operator does, with SIGTERM, and waits (at most 30 s, then
    /// SIGKILL) for it to exit: a broker shutting down answers the produces in flight with
    /// errors librdkafka does not retry (tansu 0.6: `UNKNOWN_SERVER_ERROR`), which a SIGKILL
    /// never gives. [`Tansu::start_again`] starts it on the same port.
    pub async fn terminate(&mut self) {
        let pid = self.child.id().expect("tansu is running").to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.is_err() {
            self.stop().await;
        }
    }

    /// Starts the broker again on its port, with its storage, after [`Tansu::stop`].
    pub async fn start_again(&mut self) {
        *self = Tansu::start_on(self.addr.port(), self.engine.clone(), self.bin.clone(), self.cwd.clone()).await;
    }

    async fn start_on(port: u16, engine: String, bin: PathBuf, cwd: PathBuf) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .current_dir(&cwd)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &engine])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        crate::eventually(Duration::from_secs(30), "tansu to accept connections", || async move {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        Tansu { addr, child, engine, bin, cwd }
    }

    /// The bootstrap address, `127.0.0.1:port`.
    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
