//! A real Kafka-protocol broker for tests: tansu, started as a child process on a free port
//! with in-memory storage, and stopped when dropped.

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
}

/// Where the tansu binary is: on `PATH`, or where `cargo install` puts it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .or_else(|| cargo_home.map(|c| c.join("bin/tansu")).filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("tansu is not installed; ./scripts/test installs it (cargo install tansu --version 0.6.0 --features dynostore --locked)"))
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    pub async fn start() -> Tansu {
        Tansu::start_on(crate::free_port()).await
    }

    /// Stops the broker (SIGKILL) and starts a new one on the same port. Its storage is in
    /// memory, so the new broker has no topics, offsets or groups: what a client sees when a
    /// topic is deleted under it, or a broker comes back without its data.
    pub async fn restart(&mut self) {
        self.child.kill().await.expect("tansu stops");
        *self = Tansu::start_on(self.addr.port()).await;
    }

    async fn start_on(port: u16) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
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
        Tansu { addr, child }
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
