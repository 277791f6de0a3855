//! nginx as a child process: the reverse proxy most HTTPS log collectors sit behind, with its
//! default rules (a `Host` field that is not a valid host is a 400; a body over
//! `client_max_body_size`, 1 MiB by default, is a 413), terminating TLS and passing requests to
//! a plain-HTTP receiver.

use std::net::SocketAddr;
use std::time::Duration;

use crate::certs::{Issued, TestCa};
use crate::{TempDir, eventually};

/// A running nginx, stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    /// Where it listens for HTTPS.
    pub addr: SocketAddr,
    child: tokio::process::Child,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx in the foreground at `addr` (port 0: a free port) with a certificate for
    /// `names` issued by `ca`, passing every request to `http://backend`, with nginx's default
    /// body limit, and waits until it accepts connections.
    pub async fn https_proxy(ca: &TestCa, addr: SocketAddr, names: &[&str], backend: SocketAddr) -> Nginx {
        Nginx::https_proxy_presenting(&ca.issue(names, -1, 30), addr, backend).await
    }

    /// As [`Nginx::https_proxy`], presenting `issued` (an expired certificate, say).
    pub async fn https_proxy_presenting(issued: &Issued, addr: SocketAddr, backend: SocketAddr) -> Nginx {
        let dir = TempDir::new("nginx");
        let (ip, mut port) = (addr.ip(), addr.port());
        if port == 0 {
            port = std::net::TcpListener::bind((ip, 0)).expect("a free port").local_addr().expect("address").port();
        }
        let addr = SocketAddr::new(ip, port);
        let d = dir.path();
        std::fs::write(d.join("cert.pem"), &issued.chain_pem).expect("write cert");
        std::fs::write(d.join("key.pem"), &issued.key_pem).expect("write key");
        let listen = match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        };
        let p = d.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
             \x20 fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             \x20 server {{\n    listen {listen} ssl;\n    ssl_certificate {p}/cert.pem;\n    ssl_certificate_key {p}/key.pem;\n\
             \x20   location / {{ proxy_pass http://{backend}; proxy_http_version 1.1; }}\n  }}\n}}\n"
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = tokio::process::Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(d.join("error.log"))
            .stderr(std::fs::File::create(d.join("stderr")).expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("nginx runs (./scripts/test installs it)");
        let nginx = Nginx { addr, child, dir };
        eventually(Duration::from_secs(20), "nginx to listen", || async {
            tokio::net::TcpStream::connect(addr).await.ok()
        })
        .await;
        nginx
    }

    /// What nginx logged: its access log, a line per request with its status.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Its error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Its process id, as text.
    pub fn pid(&self) -> String {
        self.child.id().map(|p| p.to_string()).unwrap_or_default()
    }
}
