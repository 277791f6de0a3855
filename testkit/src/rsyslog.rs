//! rsyslogd as a child process: the syslog daemon most receivers run, for interoperability
//! tests and as the logshuttle benchmark's peer.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::{TempDir, eventually};

/// A running rsyslogd, stopped when dropped.
#[derive(Debug)]
pub struct Rsyslog {
    child: tokio::process::Child,
    dir: TempDir,
}

impl Rsyslog {
    /// Starts rsyslogd in the foreground with the configuration `config` returns for its own
    /// working directory, and waits until it accepts TCP connections on each of `ports`.
    pub async fn start(config: impl FnOnce(&Path) -> String, ports: &[u16]) -> Rsyslog {
        let dir = TempDir::new("rsyslog");
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(&conf, config(dir.path())).expect("write rsyslog.conf");
        let child = tokio::process::Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslog.pid"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("rsyslogd runs (./scripts/test installs rsyslog)");
        let rsyslog = Rsyslog { child, dir };
        for &port in ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            eventually(Duration::from_secs(20), "rsyslog to listen", || async {
                tokio::net::TcpStream::connect(addr).await.ok()
            })
            .await;
        }
        rsyslog
    }

    /// Its working directory, where its configuration can point files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its process id, as text.
    pub fn pid(&self) -> String {
        self.child.id().map(|p| p.to_string()).unwrap_or_default()
    }

    /// What it wrote to standard error.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }
}
