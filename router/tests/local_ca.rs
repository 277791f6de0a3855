//! Routers' generated local CAs can be trusted together: two routers, each with its own local
//! CA, and one client (curl, i.e. OpenSSL, which looks an issuer up by its name) trusting both
//! CAs in one bundle verifies both routers. Every local CA used to be named `Wharf local CA`, so
//! such a client failed one of the two (FE25 finding 3).

mod support;

use std::sync::Arc;

use wharf_domain::Snapshot;
use wharf_testkit::TempDir;

/// curl's answer for `https://localhost:PORT/` trusting only `cafile`: its exit status and the
/// HTTP status it printed (`000` when the handshake failed).
async fn curl(cafile: &std::path::Path, port: u16) -> (i32, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "--cacert"])
        .arg(cafile)
        .arg(format!("https://localhost:{port}/"))
        .output()
        .await
        .expect("curl runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn a_client_trusting_two_routers_local_cas_verifies_both() {
    let dir = TempDir::new("local-cas");
    let (_tx, snapshots) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let (a, _bus_a) = support::start_router(&dir_a, 1, snapshots.clone()).await;
    let (b, _bus_b) = support::start_router(&dir_b, 1, snapshots).await;
    let (ca_a, ca_b) = (std::fs::read(dir_a.join("ca.pem")).unwrap(), std::fs::read(dir_b.join("ca.pem")).unwrap());
    assert_ne!(ca_a, ca_b, "each router made its own CA");
    let bundle = dir.path().join("both.pem");
    std::fs::write(&bundle, [ca_a, ca_b].concat()).unwrap();

    // Both orders of the bundle, and each router: the handshake is verified and the router
    // answers (404: it serves no app). With one shared CA name, OpenSSL takes the first CA of
    // that name and fails the other router's handshake (exit 35 or 60, status 000).
    let reversed = dir.path().join("reversed.pem");
    std::fs::write(
        &reversed,
        [std::fs::read(dir_b.join("ca.pem")).unwrap(), std::fs::read(dir_a.join("ca.pem")).unwrap()].concat(),
    )
    .unwrap();
    for cafile in [&bundle, &reversed] {
        for (router, port) in [("a", a.addrs().https.port()), ("b", b.addrs().https.port())] {
            assert_eq!(curl(cafile, port).await, (0, "404".to_owned()), "router {router} through {}", cafile.display());
        }
    }
    // A client trusting only one router's CA still refuses the other router (the test can fail).
    let (status, code) = curl(&dir_a.join("ca.pem"), b.addrs().https.port()).await;
    assert!(status != 0 && code == "000", "router b verified with a's CA: {status} {code}");
}
