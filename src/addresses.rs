//! The machine-readable form of what `wharf` prints when it is ready: `DATA_DIR/addresses.json`.
//!
//! Scripts and the test kit read this file instead of the human banner, whose wording may change.
//! It is written once every listener is bound and the service is ready, by writing a temporary
//! file and renaming it over the old one, so a reader never sees half a file; it is removed on a
//! clean stop. A file left by a process that was killed names that process's `pid`, so a reader
//! waiting for a new start compares the `pid` with the one it started.
//!
//! Shape (every address is `IP:PORT`; keys a command does not have are absent):
//!
//! ```json
//! {"pid": 4242, "control_api": "127.0.0.1:5000", "router_http": "127.0.0.1:8080",
//!  "router_https": "127.0.0.1:8443", "router_internal": "127.0.0.1:8444",
//!  "admin": "127.0.0.1:9100", "logshuttle": "127.0.0.1:5001", "ca": "/abs/wharf-data/tls/ca.pem"}
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The addresses one `wharf` command listens on, written as `addresses.json`.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    /// The control API (`wharf serve`).
    pub(crate) control_api: Option<SocketAddr>,
    /// The router's plain-HTTP listener.
    pub(crate) router_http: Option<SocketAddr>,
    /// The router's public HTTPS listener.
    pub(crate) router_https: Option<SocketAddr>,
    /// The router's internal HTTPS listener.
    pub(crate) router_internal: Option<SocketAddr>,
    /// The admin listener: `/metrics` and `/healthz`.
    pub(crate) admin: Option<SocketAddr>,
    /// The logshuttle's own listener (`wharf logshuttle`): live tails and `/metrics`.
    pub(crate) logshuttle: Option<SocketAddr>,
    /// The CA that signs the router's generated certificates, as an absolute path.
    pub(crate) ca: Option<PathBuf>,
}

impl Addresses {
    /// The file's path in a data directory.
    pub(crate) fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("addresses.json")
    }

    /// Writes the file atomically (a temporary file renamed over it), with this process's id
    /// beside the addresses. Errors when the data directory cannot be written.
    pub(crate) fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let mut doc = serde_json::Map::new();
        doc.insert("pid".into(), std::process::id().into());
        let addrs = [
            ("control_api", self.control_api),
            ("router_http", self.router_http),
            ("router_https", self.router_https),
            ("router_internal", self.router_internal),
            ("admin", self.admin),
            ("logshuttle", self.logshuttle),
        ];
        for (key, addr) in addrs {
            if let Some(addr) = addr {
                doc.insert(key.into(), addr.to_string().into());
            }
        }
        if let Some(ca) = &self.ca {
            let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
            doc.insert("ca".into(), ca.display().to_string().into());
        }
        let path = Addresses::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::Value::Object(doc).to_string() + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Removes the file on a clean stop, so that it only ever describes a running process.
    pub(crate) fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(Addresses::path(data_dir));
    }
}
