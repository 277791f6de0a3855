//! Deploying code (issue 21) through `wharf serve` with real archives, real processes and a real
//! HTTP server in the test serving the source: a Python app's tar.gz with a Procfile is built
//! from a URL and served through the router; a second build rolls while requests flow, with no
//! failed request and the first release's directory left as it was; a rollback to the first
//! slug serves the first body; a source whose checksum does not match, and a table of hostile
//! archives (`..`, absolute paths, links out, chained links, devices, too large, bad gzip, zip variants,
//! name clashes, names too long), are refused with a reason naming the entry and no server path, and change
//! nothing; slugs uploaded to their blob URL follow the
//! same rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wharf_testkit::client::{self, Api, Req};
use wharf_testkit::wharf::{Wharf, WharfControlApi};
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
const HOST: &str = "hello-default.localhost";

/// The app: a web process answering `body.txt` of its working directory (so the answer tells
/// which release's files it runs in), a worker, and a release command.
const APP_PY: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = open("body.txt", "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
port = int(os.environ["PORT"])
print("listening on", port, "in", os.getcwd(), flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

const PROCFILE: &str = "web: exec python3 app.py\nworker: exec python3 -c 'import time; print(\"working\", flush=True); time.sleep(3600)'\nrelease: echo migrating\n";

/// Writes archives with Python's `tarfile` and `zipfile`, which write what they are told:
/// `python3 -c MAKE KIND OUT SRC`. Kinds: `tgz` and `zip` of SRC's files (under `top/` with
/// `nested`), and the hostile ones of the table.
const MAKE: &str = r#"
import io, os, sys, tarfile, zipfile
kind, out, src = sys.argv[1], sys.argv[2], sys.argv[3]
def add_tree(t, prefix=""):
    for name in sorted(os.listdir(src)):
        t.add(os.path.join(src, name), arcname=prefix + name)
def file_info(name, data=b"x"):
    i = tarfile.TarInfo(name); i.size = len(data); return i, io.BytesIO(data)
def hostile_tar(extra):
    with tarfile.open(out, "w:gz") as t:
        add_tree(t)
        extra(t)
if kind == "tgz":
    with tarfile.open(out, "w:gz") as t: add_tree(t)
elif kind == "tgz-nested":
    with tarfile.open(out, "w:gz") as t: add_tree(t, "hello-1234abc/")
elif kind == "zip":
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(os.listdir(src)): z.write(os.path.join(src, name), name)
elif kind == "dotdot":
    hostile_tar(lambda t: t.addfile(*file_info("../escaped.txt")))
elif kind == "absolute":
    hostile_tar(lambda t: t.addfile(*file_info("/tmp/wharf-absolute.txt")))
elif kind == "symlink-out":
    def f(t):
        i = tarfile.TarInfo("out"); i.type = tarfile.SYMTYPE; i.linkname = "../../etc"; t.addfile(i)
    hostile_tar(f)
elif kind == "symlink-absolute":
    def f(t):
        i = tarfile.TarInfo("etc"); i.type = tarfile.SYMTYPE; i.linkname = "/etc"; t.addfile(i)
    hostile_tar(f)
elif kind == "through-symlink":
    def f(t):
        i = tarfile.TarInfo("here"); i.type = tarfile.SYMTYPE; i.linkname = "."; t.addfile(i)
        j = tarfile.TarInfo("here/up"); j.type = tarfile.SYMTYPE; j.linkname = "../x"; t.addfile(j)
    hostile_tar(f)
elif kind == "symlink-chain":
    # Each count stays inside, but the kernel resolves each `..` from where `s/up` points.
    def f(t):
        d = tarfile.TarInfo("s"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
        i = tarfile.TarInfo("s/up"); i.type = tarfile.SYMTYPE; i.linkname = ".."; t.addfile(i)
        j = tarfile.TarInfo("leak"); j.type = tarfile.SYMTYPE; j.linkname = "s/up/s/up/../../../../etc/hostname"; t.addfile(j)
    hostile_tar(f)
elif kind == "hardlink-out":
    def f(t):
        i = tarfile.TarInfo("passwd"); i.type = tarfile.LNKTYPE; i.linkname = "/etc/passwd"; t.addfile(i)
    hostile_tar(f)
elif kind == "hardlink-dotdot":
    def f(t):
        i = tarfile.TarInfo("passwd"); i.type = tarfile.LNKTYPE; i.linkname = "../../etc/passwd"; t.addfile(i)
    hostile_tar(f)
elif kind == "device":
    def f(t):
        i = tarfile.TarInfo("null"); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; t.addfile(i)
    hostile_tar(f)
elif kind == "fifo":
    def f(t):
        i = tarfile.TarInfo("pipe"); i.type = tarfile.FIFOTYPE; t.addfile(i)
    hostile_tar(f)
elif kind == "bomb":
    hostile_tar(lambda t: t.addfile(*file_info("zeros", bytes(3 << 20))))
elif kind == "bad-gzip":
    with tarfile.open(out, "w:gz") as t: add_tree(t)
    data = open(out, "rb").read()
    open(out, "wb").write(data[: len(data) // 2])
elif kind == "not-an-archive":
    open(out, "wb").write(b"just some text, not an archive\n")
elif kind == "zip-dotdot":
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(os.listdir(src)): z.write(os.path.join(src, name), name)
        z.writestr("../escaped.txt", "x")
elif kind == "zip-absolute":
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(os.listdir(src)): z.write(os.path.join(src, name), name)
        z.writestr("/tmp/wharf-absolute.txt", "x")
elif kind == "zip-symlink":
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(os.listdir(src)): z.write(os.path.join(src, name), name)
        i = zipfile.ZipInfo("etc"); i.create_system = 3; i.external_attr = (0o120777 << 16)
        z.writestr(i, "/etc")
elif kind == "zip-bomb":
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(os.listdir(src)): z.write(os.path.join(src, name), name)
        z.writestr("zeros", bytes(3 << 20))
elif kind == "dir-then-file":
    def f(t):
        d = tarfile.TarInfo("a"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
        t.addfile(*file_info("a"))
    hostile_tar(f)
elif kind == "file-as-dir":
    hostile_tar(lambda t: (t.addfile(*file_info("a")), t.addfile(*file_info("a/b"))))
elif kind == "zip-file-as-dir":
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(os.listdir(src)): z.write(os.path.join(src, name), name)
        z.writestr("a", "x"); z.writestr("a/b", "x")
elif kind == "long-name":
    hostile_tar(lambda t: t.addfile(*file_info("x" * 300)))
elif kind == "gzip-not-tar":
    import gzip
    open(out, "wb").write(gzip.compress(b"hello world, not a tar at all " * 40))
elif kind == "no-procfile":
    with tarfile.open(out, "w:gz") as t: t.addfile(*file_info("app.py", b"print(1)\n"))
else:
    sys.exit("unknown kind " + kind)
"#;

/// Writes the app's source (its body being `body`) under `dir/name/` and the archive of `kind`
/// beside it; returns the archive's path.
fn archive(dir: &Path, name: &str, body: &str, kind: &str) -> PathBuf {
    archive_with(dir, name, body, kind, PROCFILE)
}

/// As [`archive`], with this Procfile.
fn archive_with(dir: &Path, name: &str, body: &str, kind: &str, procfile: &str) -> PathBuf {
    let src = dir.join(name);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("app.py"), APP_PY).unwrap();
    std::fs::write(src.join("Procfile"), procfile).unwrap();
    std::fs::write(src.join("body.txt"), body).unwrap();
    let out = dir.join(format!("{name}.{kind}"));
    let status = std::process::Command::new("python3")
        .args(["-c", MAKE, kind, out.to_str().unwrap(), src.to_str().unwrap()])
        .status()
        .expect("python3 runs");
    assert!(status.success(), "making the {kind} archive");
    out
}

/// `SHA256:<hex>` of a file, by `sha256sum` (not Wharf's code).
fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    let text = String::from_utf8(out.stdout).unwrap();
    format!("SHA256:{}", text.split_whitespace().next().unwrap())
}

/// A plain HTTP/1.1 server that answers `GET /NAME` with the file `dir/NAME` (404 otherwise)
/// and closes: the source's host.
struct FileServer {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    async fn start(dir: &Path) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = dir.to_path_buf();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let dir = dir.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
                    let answer = match std::fs::read(dir.join(&path)) {
                        Ok(body) if !path.contains('/') => {
                            let mut a = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            a.extend_from_slice(&body);
                            a
                        }
                        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&answer).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        FileServer { addr, task }
    }

    fn url(&self, file: &Path) -> String {
        format!("http://{}/{}", self.addr, file.file_name().unwrap().to_str().unwrap())
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `wharf serve` with a quick supervisor and app `hello`, and the file server.
struct Setup {
    wharf: Wharf,
    files: FileServer,
    dir: TempDir,
}

impl Setup {
    async fn start(extra_env: &[(&str, &str)]) -> Setup {
        let dir = TempDir::new("deploy");
        let mut env = vec![
            ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
            ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
            ("WHARF_SUPERVISOR__CONNECTION_GRACE", "500ms"),
            ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
            ("WHARF_SUPERVISOR__HEALTH_TIMEOUT", "20s"),
        ];
        env.extend_from_slice(extra_env);
        let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
        wharf.api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
        let files = FileServer::start(dir.path()).await;
        Setup { wharf, files, dir }
    }

    /// Starts a build of `archive` (with `checksum`, if any) and returns it once it ended.
    async fn build(&self, archive: &Path, checksum: Option<String>) -> Value {
        let mut blob = json!({"url": self.files.url(archive), "version": "abc1234def"});
        if let Some(c) = checksum {
            blob["checksum"] = json!(c);
        }
        let build = self.wharf.api.expect("POST", "/apps/hello/builds", json!({"source_blob": blob}), 201).await;
        assert_eq!(build["status"], "pending", "{build}");
        let path = format!("/apps/hello/builds/{}", build["id"].as_str().unwrap());
        eventually(WAIT, "the build to end", || async {
            let (_, b) = self.wharf.api.call("GET", &path, None).await;
            (b["status"] != "pending").then_some(b)
        })
        .await
    }

    async fn releases(&self) -> Vec<Value> {
        let (_, r) = self.wharf.api.call("GET", "/apps/hello/releases", None).await;
        r.as_array().unwrap().clone()
    }

    /// The releases' ids and slugs: what a refused deploy must not change (a status may still
    /// settle meanwhile).
    async fn release_ids(&self) -> Vec<(Value, Value)> {
        self.releases().await.into_iter().map(|r| (r["id"].clone(), r["slug"].clone())).collect()
    }

    fn slugs_stored(&self) -> Vec<String> {
        let dir = self.wharf.data_dir().join("slugs");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|n| n.ends_with(".tar.gz"));
        names.sort();
        names
    }
}

async fn answer(wharf: &Wharf) -> Option<String> {
    let r = client::send(wharf.http, None, &Req::get(HOST, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_built_from_a_url_is_served_rolled_without_a_failed_request_and_rolled_back() {
    let setup = Setup::start(&[]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let one = archive(setup.dir.path(), "one", "first version", "tgz");
    let built = setup.build(&one, Some(sha256(&one))).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    let (status, output) = {
        let url = built["output_stream_url"].as_str().unwrap().to_owned();
        let path = url.split_once("://").unwrap().1.split_once('/').unwrap().1;
        let r = client::send(api.addr, None, &Req::get(&api.addr.to_string(), &format!("/{path}"))).await.unwrap();
        (r.status.as_u16(), r.text())
    };
    assert_eq!(status, 200, "the output stream needs no token");
    assert!(output.contains("Procfile declares types -> release, web, worker"), "{output}");
    let first_release = built["release"]["id"].as_str().unwrap().to_owned();
    let slug = built["slug"]["id"].as_str().unwrap().to_owned();
    let (_, slug_out) = api.call("GET", &format!("/apps/hello/slugs/{slug}"), None).await;
    assert_eq!(slug_out["commit"], "abc1234def");
    assert_eq!(slug_out["process_types"]["web"], "exec python3 app.py");
    assert_eq!(slug_out["state"], "uploaded");

    let scale = json!({"updates": [{"type": "web", "quantity": 2}, {"type": "worker", "quantity": 1}]});
    api.expect("PATCH", "/apps/hello/formation", scale, 200).await;
    eventually(WAIT, "the first build to answer through the router", || async {
        (answer(wharf).await.as_deref() == Some("first version")).then_some(())
    })
    .await;
    let first_dir = wharf.data_dir().join("releases").join(&first_release).join("app");
    assert_eq!(std::fs::read_to_string(first_dir.join("body.txt")).unwrap(), "first version");

    // The second build rolls while requests flow.
    let done = Arc::new(AtomicBool::new(false));
    let flowing = client::load_until(wharf.http, HOST, &done);
    let two = archive(setup.dir.path(), "two", "second version", "zip");
    let built = setup.build(&two, None).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    eventually(WAIT, "the second build to answer", || async {
        (answer(wharf).await.as_deref() == Some("second version")).then_some(())
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let answers = flowing.await.unwrap().expect("no request failed outright");
    let bad: Vec<_> = answers.iter().filter(|a| a.status != 200).map(|a| a.status).collect();
    assert!(bad.is_empty(), "{} of {} requests failed during the roll: {bad:?}", bad.len(), answers.len());
    let bodies: std::collections::BTreeSet<_> = answers.iter().map(|a| a.body.clone()).collect();
    assert!(bodies.iter().all(|b| b == "first version" || b == "second version"), "{bodies:?}");
    // The first release's files were not touched by the second's roll.
    assert_eq!(std::fs::read_to_string(first_dir.join("body.txt")).unwrap(), "first version");
    let second_dir = wharf.data_dir().join("releases").join(built["release"]["id"].as_str().unwrap()).join("app");
    assert_eq!(std::fs::read_to_string(second_dir.join("body.txt")).unwrap(), "second version");

    // A config change keeps the slug; a rollback to the first build's release restores its slug.
    api.expect("PATCH", "/apps/hello/config-vars", json!({"GREETING": "hi"}), 200).await;
    let latest = setup.releases().await.last().cloned().unwrap();
    assert_eq!(latest["slug"]["id"], built["slug"]["id"], "a config change keeps the slug: {latest}");
    let first_version =
        setup.releases().await.iter().find(|r| r["id"] == first_release.as_str()).unwrap()["version"].clone();
    let back = api.expect("POST", "/apps/hello/releases", json!({"release": first_version}), 201).await;
    assert_eq!(back["slug"]["id"], slug.as_str(), "{back}");
    eventually(WAIT, "the rollback to serve the first body", || async {
        (answer(wharf).await.as_deref() == Some("first version")).then_some(())
    })
    .await;

    // A source whose checksum does not match is refused, and nothing changes.
    let before = (setup.releases().await.len(), setup.slugs_stored());
    let three = archive(setup.dir.path(), "three", "third version", "tgz");
    let refused = setup.build(&three, Some(sha256(&one))).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(refused["slug"].is_null() && refused["release"].is_null(), "{refused}");
    assert_eq!((setup.releases().await.len(), setup.slugs_stored()), before);
    assert_eq!(answer(wharf).await.as_deref(), Some("first version"));

    // A release phase that fails: the build made its slug and release, the release is failed
    // and the running release keeps serving; its phase ran with the new config in the new files.
    let staged = api.expect("PATCH", "/apps/hello/config-vars", json!({"STAGE": "four"}), 200).await;
    assert_eq!(staged["STAGE"], "four");
    let running = setup.releases().await.last().cloned().unwrap();
    eventually(WAIT, "the config change to roll", || async {
        let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
        let all = dynos.as_array()?.iter().all(|d| d["release"]["version"] == running["version"]);
        let (_, r) = api.call("GET", &format!("/apps/hello/releases/{}", running["id"].as_str()?), None).await;
        (all && r["status"] == "succeeded").then_some(())
    })
    .await;
    let procfile = "web: exec python3 app.py\nrelease: cat body.txt; echo; echo \"STAGE=$STAGE\"; exit 3\n";
    let four = archive_with(setup.dir.path(), "four", "fourth version", "tgz", procfile);
    let built = setup.build(&four, None).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    let release = format!("/apps/hello/releases/{}", built["release"]["id"].as_str().unwrap());
    let failed = eventually(WAIT, "the release to fail its release phase", || async {
        let (_, r) = api.call("GET", &release, None).await;
        (r["status"] != "pending").then_some(r)
    })
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(answer(wharf).await.as_deref(), Some("first version"));
    let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
    let versions: Vec<_> = dynos.as_array().unwrap().iter().map(|d| d["release"]["version"].clone()).collect();
    assert!(versions.iter().all(|v| *v == running["version"]), "only the release before runs: {dynos}");
    let said = stream_lines(&setup, json!({"lines": 100, "dyno": "release"}), "failed (exit status: 3)").await;
    assert!(said.contains("fourth version") && said.contains("STAGE=four"), "{said}");
    // The build's output says the release failed, never that it was released.
    let version = failed["version"].as_u64().unwrap();
    let said = format!("Release v{version} failed: its release phase");
    let built = stream_lines(&setup, json!({"lines": 100, "source": "akkeris/build"}), &said).await;
    assert!(built.contains("Fetching source") && built.contains("Releasing"), "{built}");
    assert!(!built.contains(&format!("Released v{version}")), "{built}");
}

/// The app's log history through a log session with these filters, once it has `wanted`.
async fn stream_lines(setup: &Setup, filters: Value, wanted: &str) -> String {
    let api = &setup.wharf.api;
    eventually(WAIT, wanted, || async {
        let session = api.expect("POST", "/apps/hello/log-sessions", filters.clone(), 201).await;
        let url = session["logplex_url"].as_str().unwrap().to_owned();
        let rest = url.split_once("://").unwrap().1;
        let (authority, path) = rest.split_once('/').unwrap();
        let r = client::send(authority.parse().unwrap(), None, &Req::get(authority, &format!("/{path}"))).await.ok()?;
        let text = r.text();
        text.contains(wanted).then_some(text)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_with_a_reason_and_change_nothing() {
    let setup = Setup::start(&[
        ("WHARF_CONTROL_API__MAX_UNPACKED_BYTES", "2MiB"),
        ("WHARF_CONTROL_API__MAX_SLUG_BYTES", "1MiB"),
    ])
    .await;
    let api = &setup.wharf.api;
    // A good archive first, so that "nothing changes" is about something.
    let good = archive(setup.dir.path(), "good", "good", "tgz-nested");
    assert_eq!(setup.build(&good, None).await["status"], "succeeded");
    let table: &[(&str, &str)] = &[
        ("dotdot", "`..`"),
        ("absolute", "absolute path"),
        ("symlink-out", "outside the archive's tree"),
        ("symlink-absolute", "link to the absolute path"),
        ("through-symlink", "under the link"),
        ("symlink-chain", "may only lead"),
        ("hardlink-out", "hard link"),
        ("hardlink-dotdot", "hard link"),
        ("device", "character device"),
        ("fifo", "FIFO"),
        ("bomb", "unpacks to more than"),
        ("bad-gzip", "corrupt or truncated"),
        ("not-an-archive", "neither a gzip'd tar"),
        ("zip-dotdot", "`..`"),
        ("zip-absolute", "absolute path"),
        ("zip-symlink", "links in zip archives"),
        ("zip-bomb", "unpacks to more than"),
        ("no-procfile", "no Procfile"),
        ("dir-then-file", "a: clashes with an earlier entry"),
        ("file-as-dir", "a/b: clashes with an earlier entry"),
        ("zip-file-as-dir", "a/b: clashes with an earlier entry"),
        ("long-name", "longer than 255 bytes"),
        ("gzip-not-tar", "corrupt or truncated"),
    ];
    // A refusal names the entry and the rule, never where Wharf keeps its files, nor the
    // OS's bare words, nor the archive's bytes.
    let data_dir = setup.wharf.data_dir().to_string_lossy().into_owned();
    let leaks = [data_dir.as_str(), "os error", "incoming", "hello world, not a tar"];
    let before = (setup.release_ids().await, setup.slugs_stored());
    let mut wrong = Vec::new();
    for (kind, reason) in table {
        let file = archive(setup.dir.path(), &format!("src-{kind}"), "hostile", kind);
        let b = setup.build(&file, None).await;
        let url = b["output_stream_url"].as_str().unwrap();
        let path = format!("/{}", url.split_once("://").unwrap().1.split_once('/').unwrap().1);
        let output = client::send(api.addr, None, &Req::get(&api.addr.to_string(), &path)).await.unwrap().text();
        if b["status"] != "failed" || !output.contains(reason) || leaks.iter().any(|l| output.contains(l)) {
            wrong.push(format!("{kind}: {} {output}", b["status"]));
        }
    }
    assert!(wrong.is_empty(), "archives not refused as they should be:\n{}", wrong.join("\n"));
    assert!(!setup.dir.path().join("escaped.txt").exists());
    assert!(!Path::new("/tmp/wharf-absolute.txt").exists());
    assert_eq!((setup.release_ids().await, setup.slugs_stored()), before, "a refused build changed something");
    // Nothing is left behind in the staging area either.
    let incoming = setup.wharf.data_dir().join("slugs").join("incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");

    // A source over max_slug_bytes is refused while it arrives.
    let big = setup.dir.path().join("big.tgz");
    std::fs::write(&big, vec![0x1f; 2 << 20]).unwrap();
    let b = setup.build(&big, None).await;
    assert_eq!(b["status"], "failed");

    // URLs Wharf will not fetch are refused at once (422), with no build made.
    for url in ["ftp://example.com/x.tgz", "file:///etc/passwd", "http://user:pw@example.com/x.tgz", "not a url"] {
        let (status, body) = api.call("POST", "/apps/hello/builds", Some(json!({"source_blob": {"url": url}}))).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert!(body["message"].is_string() && body["id"] == "invalid_params", "{body}");
    }
    let (status, _) = api
        .call("POST", "/apps/hello/builds", Some(json!({"source_blob": {"url": "http://x/", "checksum": "md5:1"}})))
        .await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slugs_are_uploaded_once_to_their_blob_url_checked_and_released() {
    let setup = Setup::start(&[("WHARF_CONTROL_API__MAX_SLUG_BYTES", "1MiB")]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    // Heroku's slug layout: the app under ./app.
    let app_dir = setup.dir.path().join("slug");
    let src = archive(&app_dir, "app", "from a slug", "tgz");
    let _ = src;
    let slug_tgz = setup.dir.path().join("slug.tgz");
    let made = std::process::Command::new("tar")
        .arg("czf")
        .arg(&slug_tgz)
        .arg("-C")
        .arg(&app_dir)
        .arg("./app")
        .status()
        .unwrap();
    assert!(made.success());
    let types = json!({"web": "exec python3 app.py"});

    let put = |url: String, body: Vec<u8>| async move {
        let rest = url.split_once("://").unwrap().1;
        let (authority, path) = rest.split_once('/').unwrap();
        let mut req = Req::get(authority, &format!("/{path}"));
        req.method = http::Method::PUT;
        req.body = bytes::Bytes::from(body);
        let r = client::send(authority.parse().unwrap(), None, &req).await.unwrap();
        (r.status.as_u16(), r.json())
    };

    // A checksum that does not match the upload: refused, and the slug still waits.
    let slug = api
        .expect(
            "POST",
            "/apps/hello/slugs",
            json!({"process_types": types, "checksum": format!("SHA256:{}", "0".repeat(64))}),
            201,
        )
        .await;
    assert_eq!(slug["blob"]["method"], "put");
    let blob = slug["blob"]["url"].as_str().unwrap().to_owned();
    let (status, body) = put(blob.clone(), std::fs::read(&slug_tgz).unwrap()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("checksum mismatch"), "{body}");
    let (status, body) = api.call("POST", "/apps/hello/releases", Some(json!({"slug": slug["id"]}))).await;
    assert_eq!(status, 422, "a slug without its archive is not released: {body}");

    // The right checksum: stored; a second upload and a wrong token are refused.
    let slug = api
        .expect(
            "POST",
            "/apps/hello/slugs",
            json!({"process_types": types, "checksum": sha256(&slug_tgz), "commit": "0123456789"}),
            201,
        )
        .await;
    let blob = slug["blob"]["url"].as_str().unwrap().to_owned();
    let (status, wrong) = put(format!("{}x", blob), vec![1, 2, 3]).await;
    assert_eq!(status, 403, "{wrong}");
    let (status, body) = put(blob.clone(), std::fs::read(&slug_tgz).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "uploaded");
    assert!(body["blob"].is_null(), "the upload URL is shown once");
    let (status, _) = put(blob.clone(), std::fs::read(&slug_tgz).unwrap()).await;
    assert_eq!(status, 409, "a slug never changes");

    // Too large, and a tree without ./app: refused.
    let other = api.expect("POST", "/apps/hello/slugs", json!({"process_types": types}), 201).await;
    let other_blob = other["blob"]["url"].as_str().unwrap().to_owned();
    let (status, _) = put(other_blob.clone(), vec![0; 2 << 20]).await;
    assert_eq!(status, 413);
    let flat = archive(setup.dir.path(), "flat", "flat", "tgz");
    let (status, body) = put(other_blob, std::fs::read(&flat).unwrap()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("./app"), "{body}");

    // Released: served from the slug, in the release's own directory.
    let release = api.expect("POST", "/apps/hello/releases", json!({"slug": slug["id"]}), 201).await;
    assert_eq!(release["description"], "Deploy 01234567");
    api.expect("PATCH", "/apps/hello/formation", json!({"updates": [{"type": "web", "quantity": 1}]}), 200).await;
    eventually(WAIT, "the slug to answer", || async {
        (answer(wharf).await.as_deref() == Some("from a slug")).then_some(())
    })
    .await;

    // Another app may release the slug (Heroku's copying slugs); it may read it once one of its
    // releases runs it, and not before.
    api.expect("POST", "/apps", json!({"name": "copy"}), 201).await;
    let slug_path = |app: &str| format!("/apps/{app}/slugs/{}", slug["id"].as_str().unwrap());
    assert_eq!(api.call("GET", &slug_path("copy"), None).await.0, 404, "not its slug yet");
    api.expect("POST", "/apps/copy/releases", json!({"slug": slug["id"]}), 201).await;
    let (status, read) = api.call("GET", &slug_path("copy"), None).await;
    assert_eq!((status, &read["id"], &read["app"]["name"]), (200, &slug["id"], &json!("hello-default")), "{read}");

    // Image slugs: pinned by digest, no blob, and never run by the local supervisor.
    let digest = "ab".repeat(32);
    let image = format!("registry.example.com/team/hello@sha256:{digest}");
    let s =
        api.expect("POST", "/apps/hello/slugs", json!({"process_types": {"web": "serve"}, "image": image}), 201).await;
    assert!(s["blob"].is_null() && s["state"] == "image", "{s}");
    // This Wharf runs its dynos itself, so releasing the image is refused and changes nothing.
    let releases = api.call("GET", "/apps/hello/releases", None).await;
    let (status, body) = api.call("POST", "/apps/hello/releases", Some(json!({"slug": s["id"]}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("external runtime"), "{body}");
    assert_eq!(api.call("GET", "/apps/hello/releases", None).await, releases);
    for bad in ["registry.example.com/hello:latest", "hello@sha256:00", "registry.example.com/Hello@sha256:00"] {
        let (status, body) =
            api.call("POST", "/apps/hello/slugs", Some(json!({"process_types": {"web": "x"}, "image": bad}))).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    for bad in [
        json!({"process_types": {"We b": "x"}}),
        json!({"process_types": {"web": ""}}),
        json!({"process_types": {}, "checksum": "SHA1:00"}),
    ] {
        let (status, body) = api.call("POST", "/apps/hello/slugs", Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_drops_undeclared_types_runs_one_offs_in_its_files_and_superseded_releases_succeed() {
    let setup = Setup::start(&[]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let worker = "web: exec python3 app.py\nworker: while true; do echo \"WORKER $(cat body.txt)\"; sleep 0.2; done\n";
    let one = archive_with(setup.dir.path(), "one", "first version", "tgz", worker);
    let built = setup.build(&one, None).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    let first_release = built["release"]["id"].as_str().unwrap().to_owned();
    let scale = json!({"updates": [{"type": "web", "quantity": 1}, {"type": "worker", "quantity": 1}]});
    api.expect("PATCH", "/apps/hello/formation", scale, 200).await;
    eventually(WAIT, "the first build to answer", || async {
        (answer(wharf).await.as_deref() == Some("first version")).then_some(())
    })
    .await;
    // The build's output ends with what became of its release.
    stream_lines(&setup, json!({"lines": 100, "source": "akkeris/build"}), "Released v2: it is live").await;

    // A one-off dyno runs in the current release's files, as its formation dynos do.
    let run = json!({"command": "echo \"ONEOFF $(cat body.txt) in $(pwd)\""});
    api.expect("POST", "/apps/hello/dynos", run, 201).await;
    let said = stream_lines(&setup, json!({"lines": 100, "dyno": "run"}), "ONEOFF first version").await;
    assert!(said.contains(&format!("releases/{first_release}/app")), "{said}");

    // A slug whose Procfile no longer declares `worker` removes it: no command, quantity 0, and
    // the old worker never runs against the new files.
    let two = archive_with(setup.dir.path(), "two", "second version", "tgz", "web: exec python3 app.py\n");
    let built = setup.build(&two, None).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    let two_slug = built["slug"]["id"].clone();
    let (_, formation) = api.call("GET", "/apps/hello/formation/worker", None).await;
    assert_eq!((&formation["quantity"], &formation["command"]), (&json!(0), &Value::Null), "{formation}");
    eventually(WAIT, "the second build to serve and the worker to stop", || async {
        let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
        let worker = dynos.as_array()?.iter().any(|d| d["type"] == "worker");
        (!worker && answer(wharf).await.as_deref() == Some("second version")).then_some(())
    })
    .await;
    let said = stream_lines(&setup, json!({"lines": 1500, "dyno": "worker"}), "WORKER first version").await;
    assert!(!said.contains("WORKER second version"), "a dropped type ran against the new release's files");

    // Two releases in a row: the first, held by a slow release phase, is superseded by the
    // second; both succeed (the first can still be promoted or rolled back to), and the app's
    // stream says why the first settled with the second.
    let slow_procfile = "web: exec python3 app.py\nrelease: sleep 3\n";
    let slow = archive_with(setup.dir.path(), "slow", "slow version", "tgz", slow_procfile);
    let built = setup.build(&slow, None).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    let slow_slug = built["slug"]["id"].clone();
    let first = api.expect("POST", "/apps/hello/releases", json!({"slug": slow_slug}), 201).await;
    let second = api.expect("POST", "/apps/hello/releases", json!({"slug": two_slug}), 201).await;
    let settled = eventually(WAIT, "both releases to settle", || async {
        let statuses: Vec<Value> = setup
            .releases()
            .await
            .into_iter()
            .filter(|r| r["id"] == first["id"] || r["id"] == second["id"])
            .map(|r| r["status"].clone())
            .collect();
        statuses.iter().all(|s| s != "pending").then_some(statuses)
    })
    .await;
    assert_eq!(settled, [json!("succeeded"), json!("succeeded")], "a superseded release is a succeeded one");
    let superseded = format!("release v{} was superseded by v{}", first["version"], second["version"]);
    stream_lines(&setup, json!({"lines": 1500, "source": "akkeris/supervisor"}), &superseded).await;
    assert_eq!(answer(wharf).await.as_deref(), Some("second version"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_release_reaches_the_runtime_part_of_the_feed_and_no_other() {
    // A control API on its own runs no dynos: an image is an external runtime's to run.
    let dir = TempDir::new("deploy-image");
    let data_dir = dir.path().join("data");
    let control = WharfControlApi::start(WHARF, &[], &data_dir, &[]).await;
    let api = &control.api;
    api.expect("POST", "/apps", json!({"name": "img"}), 201).await;
    let image = format!("registry.example.com/team/img@sha256:{}", "ab".repeat(32));
    let types = json!({"web": "serve --port $PORT", "worker": "work"});
    let slug = api.expect("POST", "/apps/img/slugs", json!({"process_types": types, "image": image}), 201).await;
    let release = api.expect("POST", "/apps/img/releases", json!({"slug": slug["id"]}), 201).await;
    assert_eq!(release["status"], "succeeded", "{release}");
    api.expect("PATCH", "/apps/img/formation", json!({"updates": [{"type": "web", "quantity": 2}]}), 200).await;
    let (_, app) = api.call("GET", "/apps/img", None).await;
    let want = json!([{
        "app_id": app["id"],
        "app": "img-default",
        "release": release["id"],
        "version": release["version"],
        "image": image,
        "processes": [
            {"type": "web", "command": "serve --port $PORT", "quantity": 2},
            {"type": "worker", "command": "work", "quantity": 0},
        ],
    }]);
    let (_, whole) = api.call("GET", "/v1/snapshot", None).await;
    assert_eq!(whole["images"], want, "{whole}");
    // (token file, what its part's images are, whether it sees the apps)
    for (file, images, apps) in [
        ("runtime-token", want.clone(), false),
        ("router-token", json!([]), true),
        ("logshuttle-token", json!([]), false),
    ] {
        let token = std::fs::read_to_string(data_dir.join(file)).unwrap().trim().to_owned();
        let reader = Api { addr: api.addr, token: Some(token) };
        let (status, part) = reader.call("GET", "/v1/snapshot", None).await;
        assert_eq!(status, 200, "{file}: {part}");
        assert_eq!(part["images"], images, "{file}");
        assert_eq!(part["apps"].as_array().is_some_and(|a| !a.is_empty()), apps, "{file}");
        if file == "runtime-token" {
            let (status, _) = reader.call("GET", "/apps/img/config-vars", None).await;
            assert_eq!(status, 403, "the runtime token reads its part of the feed, nothing else");
        }
    }
}
