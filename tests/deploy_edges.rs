//! Deploying code (issue 21): the rows an audit found untested, through `wharf serve` with real
//! archives made by `tar`, real dynos and real HTTP and HTTPS servers serving the source.
//! Release directories past `supervisor.keep_releases` are removed while a running release's
//! never is, and rollbacks inside and past the two windows (`keep_releases` for directories,
//! `control_api.keep_slugs` for slugs) do what README says; a source whose host name, or a
//! redirect's, resolves to an address the outbound policy refuses is refused before a byte is
//! sent to it, says why, and changes nothing; an `https` source is fetched when its server's
//! CA is trusted (`control_api.trusted_ca`) and refused, naming the verification failure, when
//! it is not or its certificate names another host, and its checksum is checked as over `http`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::certs::TestCa;
use wharf_testkit::client::{self, Api, Req};
use wharf_testkit::http_peer::FileHost;
use wharf_testkit::nginx::Nginx;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);

use wharf_testkit::dyno_server::BODY_TXT_APP_PY as APP_PY;

const WEB: &str = "web: exec python3 app.py\n";

/// Writes the app (answering `body`, with this Procfile) under `dir/name/`, packs it with
/// `tar czf`, and returns the archive's bytes.
fn tgz(dir: &Path, name: &str, body: &str, procfile: &str) -> Vec<u8> {
    let src = dir.join(name);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("app.py"), APP_PY).unwrap();
    std::fs::write(src.join("Procfile"), procfile).unwrap();
    std::fs::write(src.join("body.txt"), body).unwrap();
    let out = dir.join(format!("{name}.tgz"));
    let status = std::process::Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .args(["app.py", "Procfile", "body.txt"])
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar czf {}", out.display());
    std::fs::read(&out).unwrap()
}

/// `SHA256:<hex>` of some bytes, by `sha256sum` (not Wharf's code).
fn sha256(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("SHA256:{}", String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap())
}

/// `wharf serve` with a quick supervisor and `extra` on top, and app `app`.
async fn serve(dir: &TempDir, app: &str, extra: &[(&str, &str)]) -> Wharf {
    let mut env = vec![
        ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
        ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
        ("WHARF_SUPERVISOR__CONNECTION_GRACE", "300ms"),
        ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
    ];
    env.extend_from_slice(extra);
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    wharf.api.expect("POST", "/apps", json!({"name": app}), 201).await;
    wharf
}

/// Builds `app` from `url` (with `checksum`, if any); returns the build once it ended.
async fn build(api: &Api, app: &str, url: &str, checksum: Option<&str>) -> Value {
    let mut blob = json!({"url": url});
    if let Some(c) = checksum {
        blob["checksum"] = json!(c);
    }
    let made = api.expect("POST", &format!("/apps/{app}/builds"), json!({"source_blob": blob}), 201).await;
    let path = format!("/apps/{app}/builds/{}", made["id"].as_str().unwrap());
    eventually(WAIT, &format!("the build from {url} to end"), || async {
        let (_, b) = api.call("GET", &path, None).await;
        (b["status"] != "pending").then_some(b)
    })
    .await
}

/// A build's output (its stream has ended), through its `output_stream_url`, which needs no token.
async fn output_of(api: &Api, build: &Value) -> String {
    let url = format!("/builds/{}/output", build["id"].as_str().unwrap());
    client::send(api.addr, None, &Req::get(&api.addr.to_string(), &url)).await.unwrap().text()
}

/// What the router answers for `/` at `app`'s host, when that is a 200.
async fn answer(wharf: &Wharf, app: &str) -> Option<String> {
    let r = client::send(wharf.http, None, &Req::get(&format!("{app}-default.localhost"), "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// Waits until the router serves `body` for `app`.
async fn serves(wharf: &Wharf, app: &str, body: &str) {
    eventually(WAIT, &format!("{app} to serve {body:?}"), || async {
        (answer(wharf, app).await.as_deref() == Some(body)).then_some(())
    })
    .await;
}

/// Waits until `app`'s release `release` (its id or version) is no longer pending; returns it.
async fn settled(api: &Api, app: &str, release: &Value) -> Value {
    let release = release.as_str().map_or_else(|| release.to_string(), str::to_owned);
    eventually(WAIT, &format!("release {release} of {app} to settle"), || async {
        let (s, r) = api.call("GET", &format!("/apps/{app}/releases/{release}"), None).await;
        (s == 200 && r["status"] != "pending").then_some(r)
    })
    .await
}

/// What a refused build must not change: the app's releases (id and slug) and the stored slugs.
async fn deployed(wharf: &Wharf, app: &str) -> (Vec<(Value, Value)>, Vec<String>) {
    let (_, releases) = wharf.api.call("GET", &format!("/apps/{app}/releases"), None).await;
    let releases = releases.as_array().unwrap().iter().map(|r| (r["id"].clone(), r["slug"].clone())).collect();
    let mut slugs: Vec<String> = std::fs::read_dir(wharf.data_dir().join("slugs"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    slugs.retain(|n| n.ends_with(".tar.gz"));
    slugs.sort();
    (releases, slugs)
}

/// The release directories under `DATA_DIR/releases` (named by release id; not `runs/`, not a
/// scratch `.ID.RANDOM`).
fn release_dirs(wharf: &Wharf) -> BTreeSet<String> {
    let names = std::fs::read_dir(wharf.data_dir().join("releases"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
        .unwrap_or_default();
    names.into_iter().filter(|n| n.len() == 36 && !n.starts_with('.')).collect()
}

/// Waits until the release directories are exactly `want`; panics naming both when they do not
/// become so.
async fn dirs_become(wharf: &Wharf, want: &BTreeSet<String>, when: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = release_dirs(wharf);
        if &got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{when}: the release directories are {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// README, "Where it runs" and "Where slugs live": a release's directory is removed once no
/// dyno runs in it and it is not among the app's newest `supervisor.keep_releases`; a slug is
/// kept while one of the newest `control_api.keep_slugs` releases runs it, and a rollback to a
/// release whose slug is gone is refused (422). A rollback is a new release with a directory of
/// its own, so one past `keep_releases` (within `keep_slugs`) runs as one inside it does. The
/// directory of a release whose dynos still run is never removed, even when failed releases
/// after it push it out of the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_directories_past_keep_releases_go_and_rollbacks_follow_the_windows() {
    let dir = TempDir::new("deploy-edges-keep");
    let keep = [("WHARF_SUPERVISOR__KEEP_RELEASES", "2"), ("WHARF_CONTROL_API__KEEP_SLUGS", "3")];
    let wharf = serve(&dir, "keep", &keep).await;
    let api = &wharf.api;
    let files = FileHost::start().await;
    // (release id, version) of each build's release, oldest first.
    let mut built: Vec<(String, Value)> = Vec::new();
    for i in 1..=5 {
        let body = format!("version {i}");
        files.serve(&format!("/v{i}.tgz"), tgz(dir.path(), &format!("v{i}"), &body, WEB));
        let b = build(api, "keep", &format!("{}/v{i}.tgz", files.base_url()), None).await;
        assert_eq!(b["status"], "succeeded", "{b}");
        if i == 1 {
            api.expect("PATCH", "/apps/keep/formation", json!({"updates": [{"type": "web", "quantity": 1}]}), 200)
                .await;
        }
        let id = b["release"]["id"].as_str().unwrap().to_owned();
        let release = settled(api, "keep", &json!(id)).await;
        assert_eq!(release["status"], "succeeded", "{release}");
        serves(&wharf, "keep", &body).await;
        built.push((id, release["version"].clone()));
        let newest: BTreeSet<String> = built.iter().rev().take(2).map(|(id, _)| id.clone()).collect();
        dirs_become(&wharf, &newest, &format!("after build {i}")).await;
    }
    // The running release's files are its own, as unpacked.
    let (running, _) = built.last().unwrap();
    let running_dir = wharf.data_dir().join("releases").join(running);
    let slug_dirs: Vec<_> = std::fs::read_dir(&running_dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(slug_dirs.len(), 1, "{slug_dirs:?}");
    assert_eq!(std::fs::read_to_string(slug_dirs[0].join("app/body.txt")).unwrap(), "version 5");

    // Slugs: the newest three releases' (builds 3 to 5) are kept; build 1's was deleted.
    let (status, refused) = api.call("POST", "/apps/keep/releases", Some(json!({"release": built[0].1}))).await;
    assert_eq!(status, 422, "a rollback to a release whose slug is gone: {refused}");
    let says = refused["message"].as_str().unwrap_or_default();
    assert!(says.contains("was deleted") && says.contains("keep_slugs"), "{refused}");
    serves(&wharf, "keep", "version 5").await;
    // Build 3's release: its directory is gone (past keep_releases), its slug kept: it runs.
    // Then build 5's, whose directory is kept: it runs as well. Each is a release of its own.
    for (i, body) in [(2, "version 3"), (4, "version 5")] {
        let back = api.expect("POST", "/apps/keep/releases", json!({"release": built[i].1}), 201).await;
        let release = settled(api, "keep", &back["version"]).await;
        assert_eq!(release["status"], "succeeded", "{release}");
        serves(&wharf, "keep", body).await;
        built.push((back["id"].as_str().unwrap().to_owned(), back["version"].clone()));
        let newest: BTreeSet<String> = built.iter().rev().take(2).map(|(id, _)| id.clone()).collect();
        dirs_become(&wharf, &newest, &format!("after the rollback to {body}")).await;
    }

    // Releases that fail their release phase push the running one out of the newest two; its
    // directory stays while its dyno runs in it, and it keeps serving.
    let (running, _) = built.last().unwrap().clone();
    let mut failed = Vec::new();
    for i in 1..=3 {
        let name = format!("bad{i}");
        files.serve(
            &format!("/{name}.tgz"),
            tgz(dir.path(), &name, "never served", "web: exec python3 app.py\nrelease: exit 3\n"),
        );
        let b = build(api, "keep", &format!("{}/{name}.tgz", files.base_url()), None).await;
        assert_eq!(b["status"], "succeeded", "{b}");
        let release = settled(api, "keep", &b["release"]["id"]).await;
        assert_eq!(release["status"], "failed", "{release}");
        failed.push(release["id"].as_str().unwrap().to_owned());
    }
    // Once the last failure is settled: the running release's directory, and at most those of
    // the two newest releases (their release phase ran in theirs); the first failure's is gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = release_dirs(&wharf);
        let allowed: BTreeSet<String> = [running.clone(), failed[1].clone(), failed[2].clone()].into();
        if got.contains(&running) && got.is_subset(&allowed) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the release directories are {got:?}; the running one is {running}, the failed ones {failed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serves(&wharf, "keep", "version 5").await;
    let (_, dynos) = api.call("GET", "/apps/keep/dynos", None).await;
    assert!(dynos.as_array().unwrap().iter().all(|d| d["release"]["id"] == running.as_str()), "{dynos}");
}

/// An address of this machine other than loopback: the one it would send from towards a public
/// address (a UDP socket's `connect` picks the route and sends nothing).
fn outward_address() -> IpAddr {
    for (bind, to) in [("0.0.0.0:0", "8.8.8.8:53"), ("[::]:0", "[2001:4860:4860::8888]:53")] {
        let Ok(socket) = std::net::UdpSocket::bind(bind) else { continue };
        if socket.connect(to).is_ok()
            && let Ok(addr) = socket.local_addr()
            && !addr.ip().is_loopback()
        {
            return addr.ip();
        }
    }
    panic!("this test needs an address of this machine other than loopback (a route towards the internet)");
}

/// A build source's URL and every redirect it answers pass the outbound policy (here: loopback
/// refused). A host name resolving to loopback (`localhost`), directly or as a redirect's target
/// (absolute or scheme-relative), and a redirect to a loopback or unspecified literal (0.0.0.0
/// reaches this machine on Linux), fail the build with the reason; a literal in the URL itself
/// is a 422. The host on loopback, serving the archive to anyone who asks, accepts no
/// connection, and nothing changes. The same archive from an allowed host, directly or through
/// a redirect, builds: the refusals are the policy's, not a broken setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_resolving_to_a_refused_address_is_never_asked_and_changes_nothing() {
    let dir = TempDir::new("deploy-edges-policy");
    let wharf = serve(&dir, "policy", &[("WHARF_OUTBOUND__ALLOW_LOOPBACK", "false")]).await;
    let api = &wharf.api;
    let archive = tgz(dir.path(), "app", "allowed version", WEB);
    let inside = FileHost::start().await;
    inside.serve("/app.tgz", archive.clone());
    let outside = FileHost::start_on(outward_address()).await;
    outside.serve("/app.tgz", archive);
    let port = inside.addr().port();
    // Whichever of its addresses `localhost` resolves to first is named.
    let refused_name: &[&str] = &["localhost resolves to a refused address", "is a loopback address"];
    // (URL, or a redirect from the allowed host to it; what the build's output says)
    let rows: [(String, bool, &[&str]); 7] = [
        (format!("http://localhost:{port}/app.tgz"), false, refused_name),
        (format!("http://localhost:{port}/app.tgz"), true, refused_name),
        (format!("//localhost:{port}/app.tgz"), true, refused_name),
        (format!("http://127.0.0.1:{port}/app.tgz"), true, &["is not followed: 127.0.0.1 is a loopback address"]),
        (format!("http://0.0.0.0:{port}/app.tgz"), true, &["is not followed: 0.0.0.0 is the unspecified address"]),
        (format!("http://[::ffff:127.0.0.1]:{port}/app.tgz"), true, &["is not followed", "is a loopback address"]),
        (format!("http://[::1]:{port}/app.tgz"), true, &["is not followed: ::1 is a loopback address"]),
    ];
    let before = deployed(&wharf, "policy").await;
    for (i, (url, redirected, says)) in rows.iter().enumerate() {
        let source = if *redirected {
            outside.redirect(&format!("/r{i}"), url);
            format!("{}/r{i}", outside.base_url())
        } else {
            url.clone()
        };
        let b = build(api, "policy", &source, None).await;
        assert_eq!(b["status"], "failed", "{source} -> {url}: {b}");
        assert!(b["slug"].is_null() && b["release"].is_null(), "{b}");
        let output = output_of(api, &b).await;
        let said = output.contains("Build failed") && says.iter().all(|w| output.contains(w));
        assert!(said, "{source} -> {url}: {output}");
    }
    // IP literals in the URL itself: refused when given.
    for host in ["127.0.0.1", "0.0.0.0", "[::]", "[::1]"] {
        let blob = json!({"source_blob": {"url": format!("http://{host}:{port}/app.tgz")}});
        let (status, out) = api.call("POST", "/apps/policy/builds", Some(blob)).await;
        assert_eq!(status, 422, "{host}: {out}");
    }
    assert_eq!(inside.connections(), 0, "the refused host was connected to: {:?}", inside.taken());
    assert_eq!(deployed(&wharf, "policy").await, before, "a refused build changed something");

    // The allowed host: directly, and through a redirect to itself.
    outside.redirect("/moved", &format!("{}/app.tgz", outside.base_url()));
    for path in ["/app.tgz", "/moved"] {
        let b = build(api, "policy", &format!("{}{path}", outside.base_url()), None).await;
        assert_eq!(b["status"], "succeeded", "{path}: {b}");
    }
    api.expect("PATCH", "/apps/policy/formation", json!({"updates": [{"type": "web", "quantity": 1}]}), 200).await;
    serves(&wharf, "policy", "allowed version").await;
    assert_eq!(inside.connections(), 0, "the refused host was connected to: {:?}", inside.taken());
}

/// An `https` source behind nginx: fetched, its checksum checked, when its certificate chains to
/// `control_api.trusted_ca` and names the URL's host; refused, the build's output naming the
/// verification failure, when it chains to another CA, names another host or has expired, and
/// then no request reaches the origin. A checksum that does not match, and a redirect from
/// `https` down to `http`, fail too; no failure changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_source_is_fetched_only_from_a_server_wharf_verifies() {
    let dir = TempDir::new("deploy-edges-tls");
    let ca = TestCa::new("sources");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let wharf = serve(&dir, "tls", &[("WHARF_CONTROL_API__TRUSTED_CA", ca_file.to_str().unwrap())]).await;
    let api = &wharf.api;
    let archive = tgz(dir.path(), "app", "verified version", WEB);
    let checksum = sha256(&archive);
    let origin = FileHost::start().await;
    origin.serve("/app.tgz", archive);
    origin.redirect("/down", &format!("http://localhost:{}/app.tgz", origin.addr().port()));
    let loopback = "127.0.0.1:0".parse().unwrap();
    let trusted = Nginx::https_proxy(&ca, loopback, &["localhost"], origin.addr()).await;
    let stranger = Nginx::https_proxy(&TestCa::new("stranger"), loopback, &["localhost"], origin.addr()).await;
    let expired = Nginx::https_proxy_presenting(&ca.issue(&["localhost"], -10, -1), loopback, origin.addr()).await;
    let (port, stranger_port, expired_port) = (trusted.addr.port(), stranger.addr.port(), expired.addr.port());

    let built = build(api, "tls", &format!("https://localhost:{port}/app.tgz"), Some(&checksum)).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    assert_eq!(origin.taken(), ["/app.tgz"]);
    api.expect("PATCH", "/apps/tls/formation", json!({"updates": [{"type": "web", "quantity": 1}]}), 200).await;
    serves(&wharf, "tls", "verified version").await;

    let wrong = format!("SHA256:{}", "0".repeat(64));
    // (URL, checksum, what the build's output says, whether the origin is asked)
    let rows = [
        (
            format!("https://localhost:{stranger_port}/app.tgz"),
            None,
            "invalid peer certificate: UnknownIssuer: its certificate is signed by no CA trusted here (the system's \
             trust store: SSL_CERT_FILE, SSL_CERT_DIR or the distribution's bundle; and control_api.trusted_ca)",
            false,
        ),
        (
            format!("https://127.0.0.1:{port}/app.tgz"),
            None,
            "invalid peer certificate: certificate not valid for name",
            false,
        ),
        (
            format!("https://localhost:{expired_port}/app.tgz"),
            None,
            "invalid peer certificate: certificate expired",
            false,
        ),
        (format!("https://localhost:{port}/app.tgz"), Some(wrong.as_str()), "checksum mismatch", true),
        (format!("https://localhost:{port}/down"), None, "only https URLs are fetched", true),
    ];
    let before = deployed(&wharf, "tls").await;
    for (url, sum, says, asked) in &rows {
        let taken = origin.taken().len();
        let b = build(api, "tls", url, *sum).await;
        assert_eq!(b["status"], "failed", "{url}: {b}");
        let output = output_of(api, &b).await;
        assert!(output.contains("Build failed") && output.contains(says), "{url}: {output}");
        assert_eq!(origin.taken().len() > taken, *asked, "{url}: the origin took {:?}", origin.taken());
    }
    assert_eq!(deployed(&wharf, "tls").await, before, "a refused build changed something");
    serves(&wharf, "tls", "verified version").await;
}
