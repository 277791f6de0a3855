//! Deploying code (issue 21) through `wharf serve` with real archives, real processes and a real
//! HTTP server in the test serving the source: a Python app's tar.gz with a Procfile is built
//! from a URL and served through the router; a second build rolls while requests flow, with no
//! failed request and the first release's directory left as it was; a rollback to the first
//! slug serves the first body; a source whose checksum does not match, and a table of hostile
//! archives (`..`, absolute paths, links out, chained links, devices, too large, bad gzip, zip variants,
//! name clashes, names too long), are refused with a reason naming the entry and no server path, and change
//! nothing; slugs uploaded to their blob URL follow the
//! same rules. A table of sequences after a release that failed its release phase (config
//! change, scale, command change, rollbacks, promotion, one-off dyno, a change while the
//! release is pending, in its phase or its roll) checks that a failed release changes nothing that
//! runs, that nothing builds on it, and (a probe of the router) that no other code than the good
//! one ever serves; and FE21's lows: an over-cap `Content-Length`, builds waiting for a slot,
//! fetch errors in words, `file://` paths, and one command rule everywhere.

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

/// The app (a web process answering `body.txt` of its working directory, so the answer tells
/// which release's files it runs in), with a worker and a release command in the Procfiles below.
use wharf_testkit::dyno_server::BODY_TXT_APP_PY as APP_PY;

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
elif kind == "zip-macos":
    # The Finder's "Compress" of a folder `repo`: `repo/` with AppleDouble `._` files beside
    # its files, and `__MACOSX/` with more of them.
    double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(50)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(os.listdir(src)):
            z.write(os.path.join(src, name), "repo/" + name)
            z.writestr("repo/._" + name, double)
            z.writestr("__MACOSX/repo/._" + name, double)
elif kind == "dup-procfile":
    hostile_tar(lambda t: t.addfile(*file_info("Procfile", b"web: echo EVIL; exec sleep 1000\n")))
elif kind == "zip-dup-procfile":
    import warnings
    warnings.simplefilter("ignore")
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(os.listdir(src)): z.write(os.path.join(src, name), name)
        z.writestr("Procfile", "web: echo EVIL; exec sleep 1000\n")
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
/// and closes: the source's host. A file named `*.coded-CODING` is sent as it is, labelled
/// `Content-Encoding: CODING` (what S3 metadata or a compressing server sends).
struct FileServer {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Reads a request's head (up to its blank line) off `conn`; `None` if it closes first.
async fn read_head(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
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
                    let Some(head) = read_head(&mut conn).await else { return };
                    let path = head.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
                    let answer = match std::fs::read(dir.join(&path)) {
                        Ok(body) if !path.contains('/') => {
                            let coding = path
                                .rsplit_once(".coded-")
                                .map_or(String::new(), |(_, c)| format!("Content-Encoding: {c}\r\n"));
                            let mut a = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{coding}Connection: close\r\n\r\n",
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
    /// The quick supervisor's settings, with `extra_env` on top.
    fn env<'a>(extra_env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
            ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
            ("WHARF_SUPERVISOR__CONNECTION_GRACE", "500ms"),
            ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
            ("WHARF_SUPERVISOR__HEALTH_TIMEOUT", "20s"),
        ];
        env.extend_from_slice(extra_env);
        env
    }

    async fn start(extra_env: &[(&str, &str)]) -> Setup {
        let dir = TempDir::new("deploy");
        let env = Setup::env(extra_env);
        let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
        wharf.api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
        let files = FileServer::start(dir.path()).await;
        Setup { wharf, files, dir }
    }

    /// Starts a build of `archive` (with `checksum`, if any) and returns it once it ended.
    async fn build(&self, archive: &Path, checksum: Option<String>) -> Value {
        self.build_on("hello", archive, checksum).await
    }

    /// As [`Setup::build`], for `app`.
    async fn build_on(&self, app: &str, archive: &Path, checksum: Option<String>) -> Value {
        let mut blob = json!({"url": self.files.url(archive), "version": "abc1234def"});
        if let Some(c) = checksum {
            blob["checksum"] = json!(c);
        }
        let path = format!("/apps/{app}/builds");
        let build = self.wharf.api.expect("POST", &path, json!({"source_blob": blob}), 201).await;
        assert_eq!(build["status"], "pending", "{build}");
        let path = format!("/apps/{app}/builds/{}", build["id"].as_str().unwrap());
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
    answer_at(wharf, HOST).await
}

/// What the router answers for `/` at `host`, when that is a 200.
async fn answer_at(wharf: &Wharf, host: &str) -> Option<String> {
    let r = client::send(wharf.http, None, &Req::get(host, "/")).await.ok()?;
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
    let first_dir = wharf.data_dir().join("releases").join(&first_release).join(&slug).join("app");
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
    // The load goes on until the roll has settled (AU21): the release succeeded, both web dynos
    // run it and are up, and the old ones are off the listing (out of the router and stopped).
    let second = built["release"]["id"].as_str().unwrap().to_owned();
    eventually(WAIT, "the roll to settle", || async {
        let (_, release) = api.call("GET", &format!("/apps/hello/releases/{second}"), None).await;
        let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
        let web: Vec<&Value> = dynos.as_array()?.iter().filter(|d| d["type"] == "web").collect();
        let on_second = web.iter().all(|d| d["release"]["version"] == release["version"] && d["state"] == "up");
        (release["status"] == "succeeded" && web.len() == 2 && on_second).then_some(())
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
    let second_dir = wharf
        .data_dir()
        .join("releases")
        .join(built["release"]["id"].as_str().unwrap())
        .join(built["slug"]["id"].as_str().unwrap())
        .join("app");
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
    // The first answer may come while the roll still has the old dynos in the router (a busy
    // machine stops them later): the roll ends when only the rollback's dynos are left.
    assert_eq!(settled(api, "hello", back["version"].as_u64().unwrap()).await["status"], "succeeded");
    eventually(WAIT, "the old release's dynos to be gone", || async {
        let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
        dynos.as_array()?.iter().all(|d| d["release"]["id"] == back["id"]).then_some(())
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
    stream_lines_of(setup, "hello", filters, wanted).await
}

/// As [`stream_lines`], for `app`.
async fn stream_lines_of(setup: &Setup, app: &str, filters: Value, wanted: &str) -> String {
    setup.wharf.api.log_session_until(app, filters, wanted, WAIT).await
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
        ("dup-procfile", "Procfile: the archive names it twice"),
        ("zip-dup-procfile", "the zip archive names a file twice"),
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
    // A URL Wharf did not give is 403 in Heroku's JSON shape: a wrong token, no token, and
    // the token twice (FE21b #9: once the extractor's plain-text 400).
    let unsigned = blob.split_once('?').unwrap().0.to_owned();
    let not_given = [format!("{blob}x"), format!("{blob}&token=x"), unsigned];
    for url in &not_given {
        let (status, wrong) = put(url.clone(), vec![1, 2, 3]).await;
        assert_eq!((status, wrong["id"].as_str()), (403, Some("forbidden")), "{url}: {wrong}");
    }
    let (status, body) = put(blob.clone(), std::fs::read(&slug_tgz).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "uploaded");
    assert!(body["blob"].is_null(), "the upload URL is shown once");
    let (status, _) = put(blob.clone(), std::fs::read(&slug_tgz).unwrap()).await;
    assert_eq!(status, 409, "a slug never changes");
    // The token is judged first: without it, nothing is learnt of the slug (not that it was
    // uploaded), as before the upload.
    for url in &not_given {
        let (status, wrong) = put(url.clone(), std::fs::read(&slug_tgz).unwrap()).await;
        assert_eq!((status, wrong["id"].as_str()), (403, Some("forbidden")), "{url}: {wrong}");
    }

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
    // (body, what the refusal says): process types, their names and commands, in every kind
    // of slug.
    let image = "registry.example.com/hello@sha256:".to_owned() + &"0".repeat(64);
    for (bad, says) in [
        (json!({"process_types": {"We b": "x"}}), "process type \"We b\""),
        (json!({"process_types": {"web": ""}}), "the web command"),
        (json!({"process_types": {"web": "   "}}), "the web command"),
        (json!({"process_types": {}}), "process_types is empty"),
        (json!({"process_types": {}, "image": image}), "process_types is empty"),
        (json!({"process_types": {"web": "x", "-bad": "y"}}), "process type \"-bad\""),
        (json!({"process_types": {}, "checksum": "SHA1:00"}), ""),
    ] {
        let (status, body) = api.call("POST", "/apps/hello/slugs", Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{bad}: {body}");
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
    let first_slug = built["slug"]["id"].as_str().unwrap().to_owned();
    let scale = json!({"updates": [{"type": "web", "quantity": 1}, {"type": "worker", "quantity": 1}]});
    api.expect("PATCH", "/apps/hello/formation", scale, 200).await;
    eventually(WAIT, "the first build to answer", || async {
        (answer(wharf).await.as_deref() == Some("first version")).then_some(())
    })
    .await;
    // The build's output ends with what became of its release.
    stream_lines(&setup, json!({"lines": 100, "source": "akkeris/build"}), "Released v2: it is live").await;

    // A one-off dyno runs in the current release's files, in a copy of its own (FE26 #2): what
    // it writes there never reaches the web dynos, and the copy is gone once it exits.
    let run = json!({"command": "echo \"ONEOFF $(cat body.txt) in $(pwd)\"; echo one-off > body.txt; rm app.py"});
    api.expect("POST", "/apps/hello/dynos", run, 201).await;
    let said = stream_lines(&setup, json!({"lines": 100, "dyno": "run"}), "Process exited").await;
    assert!(said.contains("ONEOFF first version in "), "{said}");
    assert!(said.contains("/releases/runs/") && !said.contains(&first_release), "its own copy: {said}");
    let runs = wharf.data_dir().join("releases").join("runs");
    eventually(WAIT, "the one-off's copy to be removed", || async {
        std::fs::read_dir(&runs).ok()?.next().is_none().then_some(())
    })
    .await;
    let release_dir = wharf.data_dir().join("releases").join(&first_release).join(&first_slug).join("app");
    assert_eq!(std::fs::read_to_string(release_dir.join("body.txt")).unwrap(), "first version");
    assert!(release_dir.join("app.py").is_file(), "the release's files are as they were");
    assert_eq!(answer(wharf).await.as_deref(), Some("first version"), "the web dyno serves what it did");

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

    // FE21c #8: a build whose release was superseded while in its release phase says which
    // release is live, not that its own is.
    let built = setup.build(&slow, None).await;
    assert_eq!(built["status"], "succeeded", "{built}");
    let (_, first) =
        api.call("GET", &format!("/apps/hello/releases/{}", built["release"]["id"].as_str().unwrap()), None).await;
    let second = api.expect("POST", "/apps/hello/releases", json!({"slug": two_slug}), 201).await;
    let output = output_of(api, &built).await;
    let says = format!("Released v{}: superseded by v{}, which is live", first["version"], second["version"]);
    assert!(output.contains(&says), "{output}");
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

/// The code a row's app runs, by the slug it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Code {
    /// Serves `good version`, with a worker and a release phase that passes.
    Good,
    /// A web command of its own, no worker, and a release phase that exits 3.
    Bad,
    /// As `Bad`, but its release phase waits for the test's `go` file first.
    Slow,
    /// Its release phase passes and its worker comes up, but its web dynos wait for the test's
    /// `go` file and then exit: its roll fails.
    RollFail,
    /// Its release phase passes, but its web dynos never listen (its roll times out), and it
    /// drops the worker.
    RollHang,
}

impl Code {
    /// The body its files answer, so what the probe saw tells which code served.
    fn body(self) -> &'static str {
        match self {
            Code::Good => "good version",
            Code::Bad => "bad version",
            Code::Slow => "slow version",
            Code::RollFail => "rollfail version",
            Code::RollHang => "rollhang version",
        }
    }
}

/// What a row does once its app's newest release failed (or, for the `...WhilePending` rows and
/// `RollbackToPending`, while it still waits in its release phase, which then fails).
#[derive(Debug, Clone, Copy)]
enum Then {
    ConfigSet,
    Scale,
    CommandChange,
    RollbackToFailed,
    RollbackToGood,
    Promote,
    OneOff,
    ConfigSetWhilePending,
    CommandChangeWhilePending,
    TwoConfigSetsWhilePending,
    RollbackWhilePending,
    RollbackToPending,
    ConfigSetWhileRolling,
    CommandChangeWhileRolling,
    TwoConfigSetsWhileRolling,
    RollbackWhileRolling,
    ConfigSetWhileRollTimesOut,
}

impl Then {
    /// Whether the row acts while the failing release is still pending (in its phase, or
    /// rolling), which then fails.
    fn while_pending(self) -> bool {
        self.failing() != Code::Bad
    }

    /// The code of the release that fails before (or while) the row acts.
    fn failing(self) -> Code {
        use Then::*;
        match self {
            ConfigSetWhilePending
            | CommandChangeWhilePending
            | TwoConfigSetsWhilePending
            | RollbackWhilePending
            | RollbackToPending => Code::Slow,
            ConfigSetWhileRolling | CommandChangeWhileRolling | TwoConfigSetsWhileRolling | RollbackWhileRolling => {
                Code::RollFail
            }
            ConfigSetWhileRollTimesOut => Code::RollHang,
            _ => Code::Bad,
        }
    }

    /// Whether the row sets `X=1` (and keeps it: the change is good).
    fn sets_x(self) -> bool {
        use Then::*;
        matches!(
            self,
            ConfigSet
                | ConfigSetWhilePending
                | TwoConfigSetsWhilePending
                | ConfigSetWhileRolling
                | TwoConfigSetsWhileRolling
                | ConfigSetWhileRollTimesOut
        )
    }
}

/// The web command `CommandChangeWhileRolling` sets: one the failed slug's files would serve
/// with (its `app.py` answers its own body), so its first dyno must never run there.
const CHANGED_WEB: &str = "exec python3 app.py changed";

/// What the router answered for `host`, every 50 ms until stopped: each 200's body with when
/// it came, so that a row can say which code served and when.
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Duration, String)>>,
}

impl Probe {
    fn start(router: std::net::SocketAddr, host: String) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let (start, mut seen) = (tokio::time::Instant::now(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(r) = client::send(router, None, &Req::get(&host, "/")).await
                        && r.status == 200
                    {
                        seen.push((start.elapsed(), r.text()));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                seen
            }
        });
        Probe { stop, task }
    }

    /// Stops probing; returns what was served, in order.
    async fn served(self) -> Vec<(Duration, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// What a row expects: the action's status, and the code of the release it makes (`None`
/// when it makes none) with the status that release settles as.
#[derive(Debug)]
struct Want {
    status: u16,
    release: Option<(Code, &'static str)>,
}

const GOOD_PROCFILE: &str = "web: exec python3 app.py\nworker: exec sleep 3600\nrelease: echo phase passed\n";
/// `RollHang`'s: its web dynos never listen (the roll ends at the health timeout), and it has
/// no worker.
const ROLL_HANG_PROCFILE: &str = "web: exec sleep 3600\nrelease: echo phase passed\n";
const GOOD_WEB: &str = "exec python3 app.py";
const GOOD_WORKER: &str = "exec sleep 3600";

/// The newest release of `app`, and every release's (version, status).
async fn newest_of(api: &client::Api, app: &str) -> (Value, Vec<(u64, String)>) {
    let (_, list) = api.call("GET", &format!("/apps/{app}/releases"), None).await;
    let list = list.as_array().unwrap().clone();
    let all = list.iter().map(|r| (r["version"].as_u64().unwrap(), r["status"].as_str().unwrap().to_owned())).collect();
    (list.last().unwrap().clone(), all)
}

/// Waits until release `version` of `app` is no longer pending; returns it.
async fn settled(api: &client::Api, app: &str, version: u64) -> Value {
    eventually(WAIT, &format!("v{version} of {app} to settle"), || async {
        let (s, r) = api.call("GET", &format!("/apps/{app}/releases/{version}"), None).await;
        (s == 200 && r["status"] != "pending").then_some(r)
    })
    .await
}

/// Heroku's rule (FE21 finding 1): a release that fails changes nothing that runs, and is no
/// base for the next. Each row deploys the good code on an app of its own, then code whose
/// release phase fails (and which drops the worker), or whose roll fails (its web dynos crash or
/// never listen), then does one thing; every row then expects the good code to serve, the
/// formation to show the good commands (the worker's quantity kept), a release the thing made
/// to run the good slug with every dyno on it, and a probe of the router to have seen no other
/// code than the good one at any moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_release_changes_nothing_that_runs_and_no_later_release_builds_on_it() {
    let setup = Setup::start(&[]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let dir = setup.dir.path();
    let go = dir.join("go");
    let bad_procfile = "web: exec python3 app.py bad\nrelease: echo \"phase of $(cat body.txt)\"; exit 3\n";
    let slow_procfile = format!(
        "web: exec python3 app.py slow\nrelease: while [ ! -e {} ]; do sleep 0.1; done; exit 3\n",
        go.display()
    );
    let roll_fail_procfile = format!(
        "web: while [ ! -e {} ]; do sleep 0.1; done; exit 1\nworker: exec sleep 3600\nrelease: echo phase passed\n",
        go.display()
    );
    // The slugs, built on apps of their own: the failing builds fail there (the release
    // phase), which is FE21's sequence on `hello`.
    let mut slugs = std::collections::HashMap::new();
    for (code, app, body, procfile) in [
        (Code::Good, "hello", "good version", GOOD_PROCFILE),
        (Code::Bad, "hello", "bad version", bad_procfile),
        (Code::Slow, "slowsrc", "slow version", slow_procfile.as_str()),
        (Code::RollFail, "rollsrc", "rollfail version", roll_fail_procfile.as_str()),
        (Code::RollHang, "rollsrc", "rollhang version", ROLL_HANG_PROCFILE),
    ] {
        if app != "hello" && api.call("GET", &format!("/apps/{app}"), None).await.0 == 404 {
            api.expect("POST", "/apps", json!({"name": app}), 201).await;
        }
        let source = archive_with(dir, &format!("{code:?}").to_lowercase(), body, "tgz", procfile);
        let built = setup.build_on(app, &source, None).await;
        assert_eq!(built["status"], "succeeded", "{built}");
        slugs.insert(code, built["slug"]["id"].clone());
    }
    api.expect("POST", "/pipelines", json!({"name": "flow"}), 201).await;

    use Then::*;
    let rows = [
        (ConfigSet, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (Scale, Want { status: 200, release: None }),
        (CommandChange, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (RollbackToFailed, Want { status: 422, release: None }),
        (RollbackToGood, Want { status: 201, release: Some((Code::Good, "succeeded")) }),
        (Promote, Want { status: 201, release: None }),
        (OneOff, Want { status: 201, release: None }),
        // FE21c #3/#4: a change made while a release is pending builds on that release, and
        // waits for its phase; when that phase fails, a release of changes (config vars,
        // commands) is rebased onto the running release (its code, its own changes) and runs
        // on the good code, rather than running the failed phase again. Several queued ones
        // are rebased in turn (the older one then settles as superseded: succeeded, on the good
        // code). A rollback brings its own code and runs as it is; a pending release is no
        // rollback target.
        (ConfigSetWhilePending, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (CommandChangeWhilePending, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (TwoConfigSetsWhilePending, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (RollbackWhilePending, Want { status: 201, release: Some((Code::Good, "succeeded")) }),
        (RollbackToPending, Want { status: 422, release: None }),
        // FE26 #1, FE28: the same while the failing release *rolls* (its phase passed, its
        // worker came up, its web dynos then crash, or never listen): a change queued behind it
        // starts no dyno until it has settled, so none runs the failed slug (the command
        // change's would serve it) and none of its crashes is charged to the change; the
        // change is rebased and runs on the good code. The worker that came up on the failed
        // release rolls back with it (the API's current release is what every type runs).
        (ConfigSetWhileRolling, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (CommandChangeWhileRolling, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (TwoConfigSetsWhileRolling, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
        (RollbackWhileRolling, Want { status: 201, release: Some((Code::Good, "succeeded")) }),
        (ConfigSetWhileRollTimesOut, Want { status: 200, release: Some((Code::Good, "succeeded")) }),
    ];
    for (i, (then, want)) in rows.into_iter().enumerate() {
        let app = format!("row{i}");
        let host = format!("{app}-default.localhost");
        let path = |rest: &str| format!("/apps/{app}{rest}");
        api.expect("POST", "/apps", json!({"name": app}), 201).await;
        api.expect("POST", &path("/releases"), json!({"slug": slugs[&Code::Good]}), 201).await;
        let scale = json!({"updates": [{"type": "web", "quantity": 1}, {"type": "worker", "quantity": 1}]});
        api.expect("PATCH", &path("/formation"), scale, 200).await;
        eventually(WAIT, &format!("{then:?}: the good code to serve"), || async {
            let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
            let worker = dynos.as_array()?.iter().any(|d| d["type"] == "worker" && d["state"] == "up");
            (worker && answer_at(wharf, &host).await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        let good = settled(api, &app, 2).await;
        assert_eq!(good["status"], "succeeded", "{then:?}: {good}");
        let failing = then.failing();
        let probe = Probe::start(wharf.http, host.clone());
        let workers = || async {
            let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
            let names = dynos.as_array().unwrap().iter().filter(|d| d["type"] == "worker").map(|d| d["name"].clone());
            names.collect::<Vec<Value>>()
        };
        let workers_before = workers().await;
        let made = api.expect("POST", &path("/releases"), json!({"slug": slugs[&failing]}), 201).await;
        assert_eq!(made["version"], 3, "{then:?}: {made}");
        if matches!(failing, Code::RollFail | Code::RollHang) {
            // The row acts while v3 rolls: its phase passed and its web dyno is starting.
            eventually(WAIT, &format!("{then:?}: v3's web dyno to start"), || async {
                let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
                dynos.as_array()?.iter().any(|d| d["type"] == "web" && d["release"]["version"] == 3).then_some(())
            })
            .await;
        }
        if failing == Code::Bad {
            let failed = settled(api, &app, 3).await;
            assert_eq!(failed["status"], "failed", "{then:?}: {failed}");
            assert_eq!(failed["eligible_for_rollback"], false, "{then:?}: {failed}");
            assert_eq!(settled(api, &app, 2).await["eligible_for_rollback"], true, "{then:?}");
            // The formation is the running release's again, the dropped worker included.
            let (_, formation) = api.call("GET", &path("/formation"), None).await;
            let shown: Vec<(Value, Value, Value)> = formation
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["type"] != "release")
                .map(|f| (f["type"].clone(), f["command"].clone(), f["quantity"].clone()))
                .collect();
            let expected =
                vec![(json!("web"), json!(GOOD_WEB), json!(1)), (json!("worker"), json!(GOOD_WORKER), json!(1))];
            assert_eq!(shown, expected, "{then:?}: the formation after the failed release");
            // The worker the failed release dropped never stopped: the same dyno runs.
            assert_eq!(workers().await, workers_before, "{then:?}: the worker kept running");
        }
        let releases_before = newest_of(api, &app).await.1;

        let (status, out) = match then {
            ConfigSet => api.call("PATCH", &path("/config-vars"), Some(json!({"X": "1"}))).await,
            Scale => {
                api.call("PATCH", &path("/formation"), Some(json!({"updates": [{"type": "web", "quantity": 2}]}))).await
            }
            CommandChange => {
                let update = json!({"updates": [{"type": "worker", "command": "exec sleep 3601"}]});
                api.call("PATCH", &path("/formation"), Some(update)).await
            }
            RollbackToFailed => api.call("POST", &path("/releases"), Some(json!({"release": "v3"}))).await,
            RollbackToGood => api.call("POST", &path("/releases"), Some(json!({"release": "v2"}))).await,
            Promote => {
                let body = json!({"app": app, "pipeline": {"name": "flow"}, "stage": "development"});
                api.expect("POST", "/pipeline-couplings", body, 201).await;
                let target = format!("{app}stg");
                api.expect("POST", "/apps", json!({"name": target}), 201).await;
                let body = json!({"app": target, "pipeline": {"name": "flow"}, "stage": "staging"});
                api.expect("POST", "/pipeline-couplings", body, 201).await;
                let promote = json!({"pipeline": {"name": "flow"}, "source": {"app": {"name": app}}});
                api.call("POST", "/pipeline-promotions", Some(promote)).await
            }
            OneOff => {
                let run = json!({"command": "echo \"ONEOFF $(cat body.txt)\"; exec sleep 30"});
                api.call("POST", &path("/dynos"), Some(run)).await
            }
            ConfigSetWhilePending => api.call("PATCH", &path("/config-vars"), Some(json!({"X": "1"}))).await,
            CommandChangeWhilePending => {
                let update = json!({"updates": [{"type": "worker", "command": "exec sleep 3601"}]});
                api.call("PATCH", &path("/formation"), Some(update)).await
            }
            TwoConfigSetsWhilePending | TwoConfigSetsWhileRolling => {
                api.expect("PATCH", &path("/config-vars"), json!({"X": "1"}), 200).await;
                api.call("PATCH", &path("/config-vars"), Some(json!({"Y": "2"}))).await
            }
            RollbackWhilePending | RollbackWhileRolling => {
                api.call("POST", &path("/releases"), Some(json!({"release": "v2"}))).await
            }
            ConfigSetWhileRolling | ConfigSetWhileRollTimesOut => {
                api.call("PATCH", &path("/config-vars"), Some(json!({"X": "1"}))).await
            }
            CommandChangeWhileRolling => {
                let update = json!({"updates": [{"type": "web", "command": CHANGED_WEB}]});
                api.call("PATCH", &path("/formation"), Some(update)).await
            }
            RollbackToPending => api.call("POST", &path("/releases"), Some(json!({"release": "v3"}))).await,
        };
        assert_eq!(status, want.status, "{then:?}: {out}");
        if then.while_pending() {
            // The row is what it says: the release it built on was still pending, and a
            // pending release is no rollback target.
            let pending = settled_or_pending(api, &app, 3).await;
            assert_eq!(pending, "pending", "{then:?}");
            let (_, v3) = api.call("GET", &path("/releases/3"), None).await;
            assert_eq!(v3["eligible_for_rollback"], false, "{then:?}: {v3}");
            // The old dynos show the commands they run, not the pending release's, and every
            // dyno (the release phase's `release.3` too) has an id, the same in every listing.
            let listed = || async {
                let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
                dynos.as_array().unwrap().iter().map(|d| (d["name"].clone(), d.clone())).collect::<Vec<_>>()
            };
            let (first, second) = (listed().await, listed().await);
            if failing == Code::Slow {
                assert!(first.iter().any(|(n, _)| n == "release.3"), "{then:?}: {first:?}");
            }
            for (name, d) in &first {
                assert!(d["id"].is_string(), "{then:?}: {d}");
                let again = second.iter().find(|(n, _)| n == name).map(|(_, d)| &d["id"]);
                if again.is_none() && then.failing() != Code::Slow && d["release"]["version"] != 3 {
                    // The failing release rolls between the two listings: its worker, up,
                    // replaced an old one (CI run of stop 32 saw `worker.1-...` go). A dyno
                    // that stays keeps its id; one that went is checked no further.
                    continue;
                }
                assert_eq!(again, Some(&d["id"]), "{then:?}: {name}'s id is stable");
                if d["release"]["version"] == 3 {
                    // The rolling release's own new dynos.
                    continue;
                }
                let runs = match d["type"].as_str() {
                    Some("web") => GOOD_WEB,
                    Some("worker") => GOOD_WORKER,
                    _ => continue,
                };
                assert_eq!(d["command"], runs, "{then:?}: {d}");
            }
            if matches!(then, ConfigSetWhilePending) {
                // Meanwhile a one-off dyno runs the current release, its code and its config.
                let run = json!({"command": "echo \"PENDING-ONEOFF $(cat body.txt) X=${X:-unset}\""});
                api.expect("POST", &path("/dynos"), run, 201).await;
                let said = stream_lines_of(&setup, &app, json!({"lines": 100, "dyno": "run"}), "PENDING-ONEOFF").await;
                assert!(said.contains("PENDING-ONEOFF good version X=unset"), "{said}");
            }
            std::fs::write(&go, "").unwrap();
            assert_eq!(settled(api, &app, 3).await["status"], "failed", "{then:?}");
            std::fs::remove_file(&go).unwrap();
        }
        let (_, releases) = newest_of(api, &app).await;
        match want.release {
            None => {
                // Versions only: a release pending before the row settles meanwhile.
                let versions = |r: &[(u64, String)]| r.iter().map(|r| r.0).collect::<Vec<u64>>();
                assert_eq!(versions(&releases), versions(&releases_before), "{then:?} makes no release");
            }
            Some((code, status)) => {
                let newest = if matches!(then, TwoConfigSetsWhilePending | TwoConfigSetsWhileRolling) { 5 } else { 4 };
                let settled = settled(api, &app, newest).await;
                assert_eq!(settled["status"], status, "{then:?}: {settled}");
                assert_eq!(settled["slug"]["id"], slugs[&code], "{then:?}: the release's code: {settled}");
            }
        }
        match then {
            RollbackToFailed => {
                assert!(out["message"].as_str().unwrap().contains("release v3 failed"), "{out}");
            }
            RollbackToPending => {
                assert!(out["message"].as_str().unwrap().contains("release v3 is pending"), "{out}");
            }
            ConfigSetWhilePending | ConfigSetWhileRolling | ConfigSetWhileRollTimesOut => {
                let said = stream_lines_of(&setup, &app, json!({"lines": 100}), "is rebased onto").await;
                assert!(said.contains("release v4 (changes of config vars or commands) waited for v3"), "{said}");
            }
            CommandChangeWhileRolling => {
                let (_, web) = api.call("GET", &path("/formation/web"), None).await;
                assert_eq!(web["command"], CHANGED_WEB, "the command change is kept: {web}");
            }
            TwoConfigSetsWhilePending | TwoConfigSetsWhileRolling => {
                // v4 was superseded by v5 and settles as it did; it holds the good code and X.
                let v4 = settled(api, &app, 4).await;
                assert_eq!((&v4["status"], &v4["slug"]["id"]), (&json!("succeeded"), &slugs[&Code::Good]), "{v4}");
                assert_eq!(v4["eligible_for_rollback"], true, "{v4}");
                let (_, vars) = api.call("GET", &path("/config-vars"), None).await;
                assert_eq!(vars["Y"], "2", "{vars}");
            }
            CommandChangeWhilePending => {
                let (_, worker) = api.call("GET", &path("/formation/worker"), None).await;
                assert_eq!(
                    (&worker["command"], &worker["quantity"]),
                    (&json!("exec sleep 3601"), &json!(1)),
                    "{worker}"
                );
            }
            Promote => {
                let target = format!("{app}stg");
                let promoted = eventually(WAIT, "the promotion's release", || async {
                    let (newest, _) = newest_of(api, &target).await;
                    (newest["version"] == 2).then_some(newest)
                })
                .await;
                assert_eq!(promoted["slug"]["id"], slugs[&Code::Good], "the current release is promoted: {promoted}");
            }
            OneOff => {
                // FE26 #6: the answer names the one-off's id, the one its listings give.
                assert!(out["id"].is_string(), "{out}");
                let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
                let listed = dynos.as_array().unwrap().iter().find(|d| d["name"] == out["name"]);
                assert_eq!(listed.map(|d| &d["id"]), Some(&out["id"]), "{dynos}");
                let said = stream_lines_of(&setup, &app, json!({"lines": 100, "dyno": "run"}), "ONEOFF").await;
                assert!(said.contains("ONEOFF good version"), "a one-off runs the current release: {said}");
            }
            Scale => {
                eventually(WAIT, "two web dynos of the good release", || async {
                    let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
                    let web: Vec<&Value> = dynos.as_array()?.iter().filter(|d| d["type"] == "web").collect();
                    (web.len() == 2 && web.iter().all(|d| d["release"]["version"] == 2 && d["state"] == "up"))
                        .then_some(())
                })
                .await;
            }
            _ => {}
        }
        // What serves is the good code, and the formation shows it.
        eventually(WAIT, &format!("{then:?}: the good code to serve"), || async {
            (answer_at(wharf, &host).await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        let (_, web) = api.call("GET", &path("/formation/web"), None).await;
        let web_command = if matches!(then, CommandChangeWhileRolling) { CHANGED_WEB } else { GOOD_WEB };
        assert_eq!(web["command"], web_command, "{then:?}: {web}");
        // The worker runs on, its quantity kept, even when the failed release dropped it while
        // it rolled (`RollHang`).
        let worker_command =
            if matches!(then, CommandChange | CommandChangeWhilePending) { "exec sleep 3601" } else { GOOD_WORKER };
        let (_, worker) = api.call("GET", &path("/formation/worker"), None).await;
        assert_eq!(
            (&worker["command"], &worker["quantity"]),
            (&json!(worker_command), &json!(1)),
            "{then:?}: {worker}"
        );
        eventually(WAIT, &format!("{then:?}: a worker to run"), || async {
            let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
            dynos.as_array()?.iter().any(|d| d["type"] == "worker" && d["state"] == "up").then_some(())
        })
        .await;
        let (_, vars) = api.call("GET", &path("/config-vars"), None).await;
        let x = if then.sets_x() { json!("1") } else { Value::Null };
        assert_eq!(vars["X"], x, "{then:?}: a failed config change is undone, a good one kept: {vars}");
        // No dyno runs a release that failed.
        let (_, releases) = api.call("GET", &path("/releases"), None).await;
        let failed: Vec<Value> = releases
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "failed")
            .map(|r| r["version"].clone())
            .collect();
        let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
        assert!(!failed.is_empty(), "{then:?}: {releases}");
        assert!(
            dynos.as_array().unwrap().iter().all(|d| !failed.contains(&d["release"]["version"])),
            "{then:?}: {dynos}"
        );
        if want.release.is_some() {
            // The change is live: every dyno runs the newest release (its record the good slug).
            let (newest, _) = newest_of(api, &app).await;
            eventually(WAIT, &format!("{then:?}: every dyno to run v{}", newest["version"]), || async {
                let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
                let dynos = dynos.as_array()?.clone();
                let formation: Vec<&Value> =
                    dynos.iter().filter(|d| d["type"] == "web" || d["type"] == "worker").collect();
                let on_newest =
                    formation.iter().all(|d| d["release"]["version"] == newest["version"] && d["state"] == "up");
                (!formation.is_empty() && on_newest).then_some(())
            })
            .await;
        }
        // No other code than the good one ever served, the failed slug's not at any moment.
        let served = probe.served().await;
        let other: Vec<&(Duration, String)> = served.iter().filter(|(_, b)| b != Code::Good.body()).collect();
        assert!(other.is_empty(), "{then:?}: {} served: {other:?} (of {} answers)", failing.body(), served.len());
        assert!(!served.is_empty(), "{then:?}: the probe saw answers");
    }
}

/// A release's status, read once.
async fn settled_or_pending(api: &client::Api, app: &str, version: u64) -> String {
    let (_, r) = api.call("GET", &format!("/apps/{app}/releases/{version}"), None).await;
    r["status"].as_str().unwrap_or_default().to_owned()
}

/// A source host that misbehaves on purpose: `GET /huge` announces more than the cap and then
/// sends nothing, `GET /stall` sends nothing at all until `release` is notified (then 404).
async fn misbehaving_host(release: Arc<tokio::sync::Notify>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let release = release.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut conn).await else { return };
                if head.starts_with("GET /huge ") {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 629145600\r\n\r\n").await;
                } else {
                    release.notified().await;
                    let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
                }
                // Hold the connection: only Wharf's own rule may end the build.
                let _ = conn.read(&mut [0; 1]).await;
            });
        }
    });
    addr
}

/// A source host whose every `GET` is answered with the file at `file` only once `go` is
/// notified: a build of it ends when the test says.
async fn held_source(file: PathBuf, go: Arc<tokio::sync::Notify>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (file, go) = (file.clone(), go.clone());
            tokio::spawn(async move {
                if read_head(&mut conn).await.is_none() {
                    return;
                }
                go.notified().await;
                let body = std::fs::read(&file).unwrap();
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// FE26 #3: releases are made in the order builds finish, as on Heroku (and Akkeris, whose
/// builds release on success): a build of an older source that finishes after a newer one's
/// replaces its code. The rule is kept and made explicit: the older build's output says which
/// newer release it replaces and how to go back; the newer build's says nothing of the kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_build_that_finishes_later_replaces_newer_code_and_says_so() {
    let setup = Setup::start(&[]).await;
    let api = &setup.wharf.api;
    let dir = setup.dir.path();
    let old = archive_with(dir, "old", "old version", "tgz", "web: exec python3 app.py\n");
    let new = archive_with(dir, "new", "new version", "tgz", "web: exec python3 app.py\n");
    let go = Arc::new(tokio::sync::Notify::new());
    let host = held_source(old, go.clone()).await;
    let blob = json!({"source_blob": {"url": format!("http://{host}/old.tgz"), "version": "0ld0ld0ld"}});
    let slow = api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let fast = setup.build(&new, None).await;
    assert_eq!(fast["status"], "succeeded", "{fast}");
    let (_, fast_release) =
        api.call("GET", &format!("/apps/hello/releases/{}", fast["release"]["id"].as_str().unwrap()), None).await;
    let newer = fast_release["version"].as_u64().unwrap();
    assert!(!output_of(api, &fast).await.contains("was released after this build started"));
    go.notify_one();
    let path = format!("/apps/hello/builds/{}", slow["id"].as_str().unwrap());
    let slow = eventually(WAIT, "the older build to end", || async {
        let (_, b) = api.call("GET", &path, None).await;
        (b["status"] != "pending").then_some(b)
    })
    .await;
    assert_eq!(slow["status"], "succeeded", "{slow}");
    let output = output_of(api, &slow).await;
    let says = format!("v{newer} (Deploy abc1234d) was released after this build started: releases are made");
    assert!(output.contains(&says) && output.contains(&format!("roll back to v{newer} to undo")), "{output}");
    let (newest, _) = newest_of(api, "hello").await;
    assert_eq!(newest["id"], slow["release"]["id"], "the older source's release is the newest: {newest}");
    assert!(newest["version"].as_u64().unwrap() > newer, "{newest}");
}

/// The output of a build that failed (its stream has ended), through its `output_stream_url`.
async fn output_of(api: &client::Api, build: &Value) -> String {
    let url = format!("/builds/{}/output", build["id"].as_str().unwrap());
    client::send(api.addr, None, &Req::get(&api.addr.to_string(), &url)).await.unwrap().text()
}

/// FE21's lows: a source announcing more than the cap fails at once; builds beyond
/// `max_concurrent_builds` wait their turn and say so; a fetch that fails says why in words
/// (no bare `os error N`); `file://` paths are percent-decoded and take no query; and every
/// way a command comes in (formation, slug, Procfile, one-off dyno) follows one rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_fail_fast_wait_their_turn_and_say_why_and_commands_follow_one_rule() {
    let setup = Setup::start(&[
        ("WHARF_CONTROL_API__MAX_CONCURRENT_BUILDS", "1"),
        ("WHARF_CONTROL_API__ALLOW_FILE_URLS", "true"),
    ])
    .await;
    let api = &setup.wharf.api;
    let release = Arc::new(tokio::sync::Notify::new());
    let host = misbehaving_host(release.clone()).await;
    let start = |url: String| async move {
        let b = api.expect("POST", "/apps/hello/builds", json!({"source_blob": {"url": url}}), 201).await;
        format!("/apps/hello/builds/{}", b["id"].as_str().unwrap())
    };
    let ended = |path: String| async move {
        eventually(WAIT, "the build to end", || async {
            let (_, b) = api.call("GET", &path, None).await;
            (b["status"] != "pending").then_some(b)
        })
        .await
    };

    // One slot: a stalled source holds it, and the next build waits, pending, saying why.
    let stalled = start(format!("http://{host}/stall")).await;
    let good = archive(setup.dir.path(), "good", "good version", "tgz");
    let waiting = start(setup.files.url(&good)).await;
    let wait = "Waiting for a build slot: 1 builds are running";
    stream_lines(&setup, json!({"lines": 100, "source": "akkeris/build"}), wait).await;
    let (_, b) = api.call("GET", &waiting, None).await;
    assert_eq!(b["status"], "pending", "{b}");
    release.notify_one();
    let b = ended(stalled).await;
    assert_eq!(b["status"], "failed", "{b}");
    assert!(output_of(api, &b).await.contains("answered 404 Not Found"), "{b}");
    let b = ended(waiting).await;
    assert_eq!(b["status"], "succeeded", "the waiting build ran once the slot was free: {b}");

    // Refusals that say why in words, each build failed (rows: URL, what its output says).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let here = setup.dir.path().display().to_string();
    let rows = [
        (
            format!("http://{host}/huge"),
            "larger than 524288000 bytes (control_api.max_slug_bytes) (its Content-Length is 629145600)".to_owned(),
        ),
        (format!("http://{closed}/x.tgz"), format!("could not connect to {closed}: connection refused")),
        (
            "file:///nonexistent/x.tgz".to_owned(),
            "cannot open /nonexistent/x.tgz: no such file or directory".to_owned(),
        ),
        (format!("file://{here}"), format!("cannot read {here}: is a directory")),
    ];
    for (url, said) in rows {
        let b = ended(start(url.clone()).await).await;
        let out = output_of(api, &b).await;
        assert_eq!(b["status"], "failed", "{url}: {b}");
        assert!(out.contains(&said), "{url}: expected {said:?} in\n{out}");
        assert!(!out.contains("os error"), "{url}: no bare OS error\n{out}");
    }
    // A file:// path is percent-decoded (RFC 8089), so the path shown is the path opened; its
    // host is empty or `localhost` (RFC 8089 section 2).
    let encoded = format!("file://{}", good.display()).replace("good.tgz", "go%6Fd.tgz");
    let b = ended(start(encoded).await).await;
    assert_eq!(b["status"], "succeeded", "{b}");
    let b = ended(start(format!("file://LocalHost{}", good.display())).await).await;
    assert_eq!(b["status"], "succeeded", "{b}");

    // Content codings (FE21b #9): a server that gzips the archive on the fly has that layer
    // decoded (the checksum is the archive's); a .tgz merely labelled gzip (S3 metadata) is
    // taken as it is; a macOS zip's metadata is left out; any other coding is named.
    let gzip = |from: &Path, to: &str| {
        let out = std::process::Command::new("gzip").arg("-c").arg(from).output().expect("gzip runs");
        assert!(out.status.success(), "gzip -c {}", from.display());
        let to = setup.dir.path().join(to);
        std::fs::write(&to, out.stdout).unwrap();
        to
    };
    let zipped = archive(setup.dir.path(), "zipped", "zipped version", "zip");
    let mac = archive(setup.dir.path(), "mac", "mac version", "zip-macos");
    let labelled = setup.dir.path().join("labelled.tgz.coded-gzip");
    std::fs::copy(&good, &labelled).unwrap();
    let brotli = setup.dir.path().join("good.tgz.coded-br");
    std::fs::copy(&good, &brotli).unwrap();
    // (the file served, its checksum, what its build's output says, or why it failed)
    let rows: [(PathBuf, Option<String>, Result<&str, &str>); 6] = [
        (gzip(&good, "gzipped.tgz.coded-gzip"), Some(sha256(&good)), Ok("gzip-compressed the archive on the fly")),
        (gzip(&zipped, "gzipped.zip.coded-x-gzip"), Some(sha256(&zipped)), Ok("gzip-compressed the archive")),
        (labelled.clone(), Some(sha256(&labelled)), Ok("Procfile declares types")),
        (mac, None, Ok("Procfile declares types")),
        (brotli, None, Err("Content-Encoding: br, which Wharf does not decode")),
        // The checksum is the archive's, not the bytes on the wire.
        (
            gzip(&good, "wire.tgz.coded-gzip"),
            Some(sha256(&setup.dir.path().join("wire.tgz.coded-gzip"))),
            Err("checksum mismatch"),
        ),
    ];
    for (file, checksum, want) in rows {
        let body = json!({"source_blob": {"url": setup.files.url(&file), "checksum": checksum}});
        let b = api.expect("POST", "/apps/hello/builds", body, 201).await;
        let b = ended(format!("/apps/hello/builds/{}", b["id"].as_str().unwrap())).await;
        let out = output_of(api, &b).await;
        let (status, said) = match want {
            Ok(said) => ("succeeded", said),
            Err(said) => ("failed", said),
        };
        assert_eq!(b["status"], status, "{}: {out}", file.display());
        assert!(out.contains(said), "{}: expected {said:?} in\n{out}", file.display());
    }
    // Refused at once (422), nothing made: a query or fragment, a bad encoding, a relative path.
    let builds_before = api.call("GET", "/apps/hello/builds", None).await.1;
    for url in [
        format!("file://{}?x=1", good.display()),
        format!("file://{}#top", good.display()),
        format!("file://{}%zz", good.display()),
        format!("file://{}%00", good.display()),
        "file://relative/x.tgz".to_owned(),
        format!("file://otherhost{}", good.display()),
        format!("file://localhostx{}", good.display()),
        format!("file:{}", good.display()),
    ] {
        let (status, body) = api.call("POST", "/apps/hello/builds", Some(json!({"source_blob": {"url": url}}))).await;
        assert_eq!((status, &body["id"]), (422, &json!("invalid_params")), "{url}: {body}");
    }
    assert_eq!(api.call("GET", "/apps/hello/builds", None).await.1, builds_before);

    // One rule for a command, wherever it comes in: 8,192 bytes taken, 8,193 refused.
    let long = |n: usize| format!("echo {}", "x".repeat(n - 5));
    for (n, want) in [(8192, true), (8193, false)] {
        let command = long(n);
        let calls = [
            (
                "PATCH",
                "/apps/hello/formation",
                json!({"updates": [{"type": "clock", "quantity": 0, "command": command}]}),
                200,
            ),
            ("POST", "/apps/hello/slugs", json!({"process_types": {"web": command}}), 201),
            ("POST", "/apps/hello/dynos", json!({"command": command}), 201),
        ];
        for (method, path, body, ok) in calls {
            let (status, out) = api.call(method, path, Some(body)).await;
            let expected = if want { ok } else { 422 };
            assert_eq!(status, expected, "{method} {path} with a {n}-byte command: {out}");
            if !want {
                assert!(out["message"].as_str().unwrap().contains("1 to 8192 bytes"), "{path}: {out}");
            }
        }
        let procfile = format!("web: {command}\n");
        let source = archive_with(setup.dir.path(), &format!("cmd{n}"), "x", "tgz", &procfile);
        let b = ended(start(setup.files.url(&source)).await).await;
        assert_eq!(b["status"] == "succeeded", want, "a Procfile with a {n}-byte command: {b}");
        let out = if want { String::new() } else { output_of(api, &b).await };
        if !want {
            assert!(out.contains("the web command must be 1 to 8192 bytes"), "{out}");
        }
    }
}

/// A release phase that runs past `supervisor.release_phase_timeout` is stopped, process group
/// and all, and its release fails; the running release keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_phase_past_its_time_limit_is_stopped_and_its_release_fails() {
    let setup = Setup::start(&[("WHARF_SUPERVISOR__RELEASE_PHASE_TIMEOUT", "2s")]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let good = archive_with(setup.dir.path(), "good", "good version", "tgz", "web: exec python3 app.py\n");
    assert_eq!(setup.build(&good, None).await["status"], "succeeded");
    api.expect("PATCH", "/apps/hello/formation", json!({"updates": [{"type": "web", "quantity": 1}]}), 200).await;
    eventually(WAIT, "the good code to serve", || async {
        (answer(wharf).await.as_deref() == Some("good version")).then_some(())
    })
    .await;
    // A sleep of its own length, to find it in /proc.
    let procfile = "web: exec python3 app.py\nrelease: sleep 6017; echo never\n";
    let slow = archive_with(setup.dir.path(), "slow", "slow version", "tgz", procfile);
    let built = setup.build(&slow, None).await;
    let version = built["release"]["id"].as_str().unwrap().to_owned();
    let release = eventually(WAIT, "the release to fail", || async {
        let (_, r) = api.call("GET", &format!("/apps/hello/releases/{version}"), None).await;
        (r["status"] != "pending").then_some(r)
    })
    .await;
    assert_eq!(release["status"], "failed", "{release}");
    let said = stream_lines(&setup, json!({"lines": 200, "source": "akkeris/supervisor"}), "timed out after 2s").await;
    assert!(said.contains("supervisor.release_phase_timeout"), "{said}");
    assert_eq!(answer(wharf).await.as_deref(), Some("good version"));
    eventually(WAIT, "the phase's processes to be gone", || async {
        let running = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x006017\x00"));
        (!running).then_some(())
    })
    .await;
}

/// What a row of the release-phase table does while its app's release phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum During {
    /// A config change: a release with the phase's code, so with a release phase of its own.
    ConfigChange,
    /// A deploy of code without a release phase.
    DeployWithoutPhase,
    /// A rollback to the release before (no release phase).
    Rollback,
    /// `DELETE /apps/{app}`.
    DeleteApp,
}

/// A release phase that says so and fails (exit 9) if another phase of the app runs (its
/// marker file `$MARK` exists; `set -C` makes the check and the write one step), else writes
/// its pid there, waits for the test's `$GATE` file, removes its marker and exits `$EXIT`.
const ONE_AT_A_TIME_PROCFILE: &str = "web: exec python3 app.py phased\nrelease: set -C; echo $$ > \"$MARK\" || { echo two release phases at once; exit 9; }; while [ ! -e \"$GATE\" ]; do sleep 0.1; done; rm -f \"$MARK\"; exit ${EXIT:-0}\n";

/// FE21b #3 and #2: an app runs one release phase at a time (a newer release waits for the
/// running one, as on Heroku), a phase that fails is final (its release is `failed` and no
/// rollback target even when a newer release succeeds), and deleting an app stops its phase
/// (its process group is gone). Each row: an app serving good code, then a release whose phase
/// (which would fail, `EXIT=3`) waits for a gate file; while it waits, the row's action; then
/// the gate opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_phases_run_one_at_a_time_a_failed_one_is_final_and_a_deleted_apps_stops() {
    let setup = Setup::start(&[]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let dir = setup.dir.path();
    let plain = archive_with(dir, "plain", "good version", "tgz", "web: exec python3 app.py\n");
    let phased = archive_with(dir, "phased", "phased version", "tgz", ONE_AT_A_TIME_PROCFILE);
    let plain = setup.build_on("hello", &plain, None).await["slug"]["id"].clone();
    let phased = setup.build_on("hello", &phased, None).await["slug"]["id"].clone();
    // FE21b #7: v1 (`Initial release`, no slug) is no rollback target for an app that runs code.
    let before = setup.release_ids().await;
    let (status, e) = api.call("POST", "/apps/hello/releases", Some(json!({"release": "v1"}))).await;
    assert_eq!((status, e["id"].as_str()), (422, Some("invalid_params")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("release v1 has no code"), "{e}");
    assert_eq!(setup.release_ids().await, before, "a refused rollback makes no release");
    assert_eq!(settled_or_pending(api, "hello", 1).await, "succeeded");
    let (_, v1) = api.call("GET", "/apps/hello/releases/1", None).await;
    assert_eq!(v1["eligible_for_rollback"], false, "{v1}");

    use During::*;
    // (action, the status v4 (the phase's release) and v5 (the action's) settle as). A config
    // change waits for v4's phase, and when that fails is rebased onto the good code (FE21c #4).
    let rows = [
        (ConfigChange, Some(("failed", "succeeded"))),
        (DeployWithoutPhase, Some(("failed", "succeeded"))),
        (Rollback, Some(("failed", "succeeded"))),
        (DeleteApp, None),
    ];
    for (i, (during, want)) in rows.into_iter().enumerate() {
        let app = format!("phases{i}");
        let host = format!("{app}-default.localhost");
        let path = |rest: &str| format!("/apps/{app}{rest}");
        let (mark, gate) = (dir.join(format!("mark{i}")), dir.join(format!("gate{i}")));
        api.expect("POST", "/apps", json!({"name": app}), 201).await;
        api.expect("POST", &path("/releases"), json!({"slug": plain}), 201).await;
        api.expect("PATCH", &path("/formation"), json!({"updates": [{"type": "web", "quantity": 1}]}), 200).await;
        let vars = json!({"MARK": mark.to_str().unwrap(), "GATE": gate.to_str().unwrap(), "EXIT": "3"});
        api.expect("PATCH", &path("/config-vars"), vars, 200).await;
        assert_eq!(settled(api, &app, 3).await["status"], "succeeded", "{during:?}");
        api.expect("POST", &path("/releases"), json!({"slug": phased}), 201).await;
        let pid: u32 = eventually(WAIT, "v4's release phase to run", || async {
            std::fs::read_to_string(&mark).ok()?.trim().parse().ok()
        })
        .await;

        match during {
            ConfigChange => drop(api.expect("PATCH", &path("/config-vars"), json!({"Y": "1"}), 200).await),
            DeployWithoutPhase => drop(api.expect("POST", &path("/releases"), json!({"slug": plain}), 201).await),
            Rollback => drop(api.expect("POST", &path("/releases"), json!({"release": "v3"}), 201).await),
            DeleteApp => {
                api.expect("DELETE", &path(""), json!({}), 200).await;
                eventually(WAIT, "the deleted app's release phase to be stopped", || async {
                    (!process_group_runs(pid)).then_some(())
                })
                .await;
                continue;
            }
        }
        // The newer release waits, and the app's log stream says why.
        let waits = "Release v5 waits for the release phase of v4";
        stream_lines_of(&setup, &app, json!({"lines": 200, "source": "akkeris/supervisor"}), waits).await;
        assert_eq!(std::fs::read_to_string(&mark).unwrap().trim(), pid.to_string(), "{during:?}: v4's phase runs");
        assert_eq!(settled_or_pending(api, &app, 5).await, "pending", "{during:?}");
        std::fs::write(&gate, "").unwrap();

        let (v4, v5) = want.unwrap();
        let failed = settled(api, &app, 4).await;
        assert_eq!(
            (failed["status"].as_str(), &failed["eligible_for_rollback"]),
            (Some(v4), &json!(false)),
            "{during:?}"
        );
        assert_eq!(settled(api, &app, 5).await["status"], v5, "{during:?}");
        // v4 stays failed: a newer release settling takes along only pending ones.
        assert_eq!(settled_or_pending(api, &app, 4).await, "failed", "{during:?}: a failed phase is final");
        let said = stream_lines_of(&setup, &app, json!({"lines": 300}), "Release phase of v4 failed").await;
        // The phase's own output line (the platform's "starting" line quotes the command).
        assert!(!said.contains("]: two release phases at once"), "{during:?}: {said}");
        if during == ConfigChange {
            // v5 was rebased onto the good code, which has no phase: the failed one never ran again.
            let said = stream_lines_of(&setup, &app, json!({"lines": 300}), "is rebased onto").await;
            assert!(!said.contains("Release phase of v5 starting"), "{during:?}: {said}");
        }
        eventually(WAIT, &format!("{during:?}: the good code to serve"), || async {
            (answer_at(wharf, &host).await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        let (_, vars) = api.call("GET", &path("/config-vars"), None).await;
        let y = if during == ConfigChange { json!("1") } else { Value::Null };
        assert_eq!(vars["Y"], y, "{during:?}: the rebased config change is kept: {vars}");
        // Nothing builds on a failed release, the one that failed while another waited too.
        api.expect("PATCH", &path("/config-vars"), json!({"Z": "1"}), 200).await;
        let (newest, _) = newest_of(api, &app).await;
        assert_eq!(newest["slug"]["id"], plain, "{during:?}: the next change builds on the good code: {newest}");
    }
}

/// Whether any process of process group `pgid` is still running (its `/proc/PID/stat`'s fifth
/// field is the group).
fn process_group_runs(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // The command name (in parentheses) may hold spaces; the fields after it do not.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields.get(2).is_some_and(|g| *g == pgid.to_string()) && fields.first() != Some(&"Z")
    })
}

/// How a row of the restart table stops Wharf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `kill -TERM`: a clean stop.
    Term,
    /// `kill -KILL`: a crash.
    Kill,
}

/// FE21c #1 and #2: a restart of Wharf (a clean stop or `kill -9`) while a release is pending
/// keeps production serving the release that last succeeded. Per row, one Wharf with three
/// apps serving good code (v3), each with a pending v4 when Wharf stops: `phase` in its release
/// phase (which waits for a gate file, then succeeds), `crash` rolling to a web command that
/// exits at boot, `slow` rolling to good code that takes a while to boot. After the restart:
/// `phase` serves its good code while its phase runs again from the start (v4 still pending,
/// a new phase process), then rolls to v4 once the gate opens; `rollq`'s config change v5,
/// queued behind v4's roll (its web dyno waits for a gate, then crashes), waits while v4 rolls
/// again, and once v4 fails is rebased onto the good code and runs with its change; `cut`'s
/// v4 phase, with a rollback queued behind it, runs again and fails, never settling as the
/// rollback does; `crash`'s v4 fails, is
/// withdrawn (the formation's command is the good one again) and the good code serves; `slow`
/// rolls to v4 and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_phase_or_mid_roll_keeps_the_current_release_serving() {
    // `rollq`'s v4 must still be rolling when Wharf stops, which comes seconds after its start:
    // its gate, not the health timeout (20 s), ends its roll. (A clean stop waits for a roll in
    // progress, up to that timeout, so a longer one would outlast the test's wait for the exit.)
    let env: [(&str, &str); 0] = [];
    for stop in [Stop::Kill, Stop::Term] {
        let setup = Setup::start(&env).await;
        let dir = setup.dir.path().to_owned();
        let plain = archive_with(&dir, "plain", "good version", "tgz", "web: exec python3 app.py\n");
        let phased = archive_with(&dir, "phased", "phased version", "tgz", ONE_AT_A_TIME_PROCFILE);
        let crash = archive_with(&dir, "crash", "crash version", "tgz", "web: sleep 2; exit 1\n");
        let slow = archive_with(&dir, "slow", "slow version", "tgz", "web: sleep 3; exec python3 app.py\n");
        let roll_gate = dir.join("rollgate");
        let gated = format!("web: while [ ! -e {} ]; do sleep 0.1; done; exit 1\n", roll_gate.display());
        let gated = archive_with(&dir, "gated", "gated version", "tgz", &gated);
        let slug = |b: Value| b["slug"]["id"].clone();
        let plain = slug(setup.build_on("hello", &plain, None).await);
        let phased = slug(setup.build_on("hello", &phased, None).await);
        let crash = slug(setup.build_on("hello", &crash, None).await);
        let slow = slug(setup.build_on("hello", &slow, None).await);
        let gated = slug(setup.build_on("hello", &gated, None).await);
        let (mark, gate) = (dir.join("mark"), dir.join("gate"));
        {
            let (wharf, api) = (&setup.wharf, &setup.wharf.api);
            for app in ["phase", "crash", "slow", "queued", "rollq", "cut", "fe29"] {
                let path = |rest: &str| format!("/apps/{app}{rest}");
                api.expect("POST", "/apps", json!({"name": app}), 201).await;
                api.expect("POST", &path("/releases"), json!({"slug": plain}), 201).await;
                api.expect("PATCH", &path("/formation"), json!({"updates": [{"type": "web", "quantity": 1}]}), 200)
                    .await;
                // `queued`'s and `cut`'s phases will fail, and mark files of their own.
                let (mark, exit) = match app {
                    "queued" | "cut" => (dir.join(format!("mark-{app}")), "3"),
                    _ => (mark.clone(), "0"),
                };
                let vars = json!({"MARK": mark.to_str().unwrap(), "GATE": gate.to_str().unwrap(), "EXIT": exit});
                api.expect("PATCH", &path("/config-vars"), vars, 200).await;
                assert_eq!(settled(api, app, 3).await["status"], "succeeded", "{stop:?} {app}");
                let host = format!("{app}-default.localhost");
                eventually(WAIT, &format!("{stop:?}: {app} to serve the good code"), || async {
                    (answer_at(wharf, &host).await.as_deref() == Some("good version")).then_some(())
                })
                .await;
            }
            api.expect("POST", "/apps/phase/releases", json!({"slug": phased}), 201).await;
            api.expect("POST", "/apps/crash/releases", json!({"slug": crash}), 201).await;
            api.expect("POST", "/apps/slow/releases", json!({"slug": slow}), 201).await;
            // `queued`: a config change waits behind v4's phase, which will fail.
            api.expect("POST", "/apps/queued/releases", json!({"slug": phased}), 201).await;
            api.expect("PATCH", "/apps/queued/config-vars", json!({"X": "1"}), 200).await;
            // `rollq`: a config change queued behind v4's roll, whose web dyno waits for
            // `rollgate` and then crashes; Wharf stops while v4 rolls.
            api.expect("POST", "/apps/rollq/releases", json!({"slug": gated}), 201).await;
            eventually(WAIT, &format!("{stop:?}: rollq's v4 to roll"), || async {
                let (_, dynos) = api.call("GET", "/apps/rollq/dynos", None).await;
                dynos.as_array()?.iter().any(|d| d["release"]["version"] == 4).then_some(())
            })
            .await;
            api.expect("PATCH", "/apps/rollq/config-vars", json!({"X": "1"}), 200).await;
            // `fe29`: behind v4's roll (the same gated slug), a config change (v5) and a rollback
            // (v6, a release of code, which would supersede both).
            api.expect("POST", "/apps/fe29/releases", json!({"slug": gated}), 201).await;
            eventually(WAIT, &format!("{stop:?}: fe29's v4 to roll"), || async {
                let (_, dynos) = api.call("GET", "/apps/fe29/dynos", None).await;
                dynos.as_array()?.iter().any(|d| d["release"]["version"] == 4).then_some(())
            })
            .await;
            api.expect("PATCH", "/apps/fe29/config-vars", json!({"X": "2"}), 200).await;
            api.expect("POST", "/apps/fe29/releases", json!({"release": "v3"}), 201).await;
            // `cut`: a rollback (no release phase) waits behind v4's phase, which will fail.
            api.expect("POST", "/apps/cut/releases", json!({"slug": phased}), 201).await;
            eventually(WAIT, &format!("{stop:?}: cut's v4 phase to run"), || async {
                std::fs::read_to_string(dir.join("mark-cut")).ok()?.trim().parse::<u32>().ok()
            })
            .await;
            api.expect("POST", "/apps/cut/releases", json!({"release": "v3"}), 201).await;
        }
        let first_pid: u32 = eventually(WAIT, "v4's release phase to run", || async {
            std::fs::read_to_string(&mark).ok()?.trim().parse().ok()
        })
        .await;

        let Setup { wharf, files, dir: tmp } = setup;
        let pid = wharf.pid();
        let signal = if stop == Stop::Kill { "-KILL" } else { "-TERM" };
        assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
        let _ = wharf.wait_exit().await;
        // The dead run's phase marker; its process (if a kill left it) is stopped at start.
        std::fs::remove_file(&mark).unwrap();
        std::fs::remove_file(dir.join("mark-queued")).ok();
        std::fs::remove_file(dir.join("mark-cut")).ok();
        let wharf = Wharf::serve_with(WHARF, &[], &tmp.path().join("data"), &Setup::env(&env)).await;
        let setup = Setup { wharf, files, dir: tmp };
        let (wharf, api) = (&setup.wharf, &setup.wharf.api);

        // `rollq`: v4 rolls again from the start while the good code serves, and v5 waits for
        // it (no dyno of v5 runs the gated slug); then v4 fails and v5 is rebased onto the good
        // code, keeps X=1, and runs (FE26 1b, FE28 k9).
        // (A clean stop waits for the roll in progress, which then fails at the health timeout:
        // after SIGTERM, v4 has settled before the restart.)
        if stop == Stop::Kill {
            for app in ["rollq", "fe29"] {
                let path = format!("/apps/{app}/dynos");
                eventually(WAIT, &format!("{stop:?}: {app}'s v4 to roll again"), || async {
                    let (_, dynos) = api.call("GET", &path, None).await;
                    dynos.as_array()?.iter().any(|d| d["release"]["version"] == 4).then_some(())
                })
                .await;
                let (_, dynos) = api.call("GET", &path, None).await;
                assert!(
                    dynos
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|d| d["release"]["version"] == 3 || d["release"]["version"] == 4),
                    "{stop:?}: {app}: {dynos}"
                );
                assert_eq!(settled_or_pending(api, app, 5).await, "pending", "{stop:?}: {app}");
            }
        }
        std::fs::write(&roll_gate, "").unwrap();
        assert_eq!(settled(api, "rollq", 4).await["status"], "failed", "{stop:?}");
        let v5 = settled(api, "rollq", 5).await;
        assert_eq!((&v5["status"], &v5["slug"]["id"]), (&json!("succeeded"), &plain), "{stop:?}: {v5}");
        let (_, vars) = api.call("GET", "/apps/rollq/config-vars", None).await;
        assert_eq!(vars["X"], "1", "{stop:?}: {vars}");
        eventually(WAIT, &format!("{stop:?}: rollq's v5 to serve the good code"), || async {
            let (_, dynos) = api.call("GET", "/apps/rollq/dynos", None).await;
            let dynos = dynos.as_array()?;
            let on_v5 = !dynos.is_empty() && dynos.iter().all(|d| d["release"]["version"] == 5 && d["state"] == "up");
            (on_v5 && answer_at(wharf, "rollq-default.localhost").await.as_deref() == Some("good version"))
                .then_some(())
        })
        .await;
        // `fe29`: v4 failed (its dynos ran, never healthy), v5 was rebased onto the good code,
        // and the rollback runs; neither v4 nor a release on its slug is a succeeded rollback
        // target, with or without the stop.
        let v4 = settled(api, "fe29", 4).await;
        assert_eq!((&v4["status"], &v4["eligible_for_rollback"]), (&json!("failed"), &json!(false)), "{stop:?}: {v4}");
        let v5 = settled(api, "fe29", 5).await;
        assert_eq!(v5["slug"]["id"], plain, "{stop:?}: v5 holds the good code: {v5}");
        assert_eq!(settled(api, "fe29", 6).await["status"], "succeeded", "{stop:?}");
        eventually(WAIT, &format!("{stop:?}: fe29's good code to serve"), || async {
            (answer_at(wharf, "fe29-default.localhost").await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        std::fs::remove_file(&roll_gate).unwrap();

        // `cut`: v4's phase runs again (its marker, written as it starts, is removed once the
        // gate opens below), and the rollback queued behind it waits.
        eventually(WAIT, &format!("{stop:?}: cut's v4 phase to run again"), || async {
            std::fs::read_to_string(dir.join("mark-cut")).ok()?.trim().parse::<u32>().ok()
        })
        .await;
        assert_eq!(settled_or_pending(api, "cut", 5).await, "pending", "{stop:?}: the rollback waits");

        // `phase`: the good code serves while v4's phase runs again.
        let again: u32 = eventually(WAIT, &format!("{stop:?}: v4's release phase to run again"), || async {
            std::fs::read_to_string(&mark).ok()?.trim().parse().ok()
        })
        .await;
        assert_ne!(again, first_pid, "{stop:?}: a new phase process");
        eventually(WAIT, &format!("{stop:?}: phase's good code to serve during its phase"), || async {
            (answer_at(wharf, "phase-default.localhost").await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        assert_eq!(settled_or_pending(api, "phase", 4).await, "pending", "{stop:?}: the gate is shut");
        assert!(process_group_runs(again), "{stop:?}: the phase still runs");
        std::fs::write(&gate, "").unwrap();
        assert_eq!(settled(api, "phase", 4).await["status"], "succeeded", "{stop:?}");
        eventually(WAIT, &format!("{stop:?}: phase's v4 to serve"), || async {
            (answer_at(wharf, "phase-default.localhost").await.as_deref() == Some("phased version")).then_some(())
        })
        .await;

        // `crash`: v4 fails and is withdrawn, exactly as without a restart.
        let failed = settled(api, "crash", 4).await;
        assert_eq!((failed["status"].as_str(), &failed["eligible_for_rollback"]), (Some("failed"), &json!(false)));
        eventually(WAIT, &format!("{stop:?}: crash's good code to serve"), || async {
            (answer_at(wharf, "crash-default.localhost").await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        let (_, formation) = api.call("GET", "/apps/crash/formation/web", None).await;
        assert_eq!(formation["command"], "exec python3 app.py", "{stop:?}: the failed command was withdrawn");
        let (_, dynos) = api.call("GET", "/apps/crash/dynos", None).await;
        let commands: Vec<&Value> = dynos.as_array().unwrap().iter().map(|d| &d["command"]).collect();
        assert!(commands.iter().all(|c| *c == "exec python3 app.py"), "{stop:?}: {dynos}");
        api.expect("PATCH", "/apps/crash/config-vars", json!({"Z": "1"}), 200).await;
        let (newest, _) = newest_of(api, "crash").await;
        assert_eq!(newest["slug"]["id"], plain, "{stop:?}: the next change builds on the good code: {newest}");

        // `queued`: v4's phase ran again and failed; v5 (X=1), recorded as a release of changes,
        // is rebased onto the good code and runs.
        assert_eq!(settled(api, "queued", 4).await["status"], "failed", "{stop:?}");
        let v5 = settled(api, "queued", 5).await;
        assert_eq!((&v5["status"], &v5["slug"]["id"]), (&json!("succeeded"), &plain), "{stop:?}: {v5}");
        let (_, vars) = api.call("GET", "/apps/queued/config-vars", None).await;
        assert_eq!(vars["X"], "1", "{stop:?}: {vars}");
        eventually(WAIT, &format!("{stop:?}: queued's good code to serve"), || async {
            (answer_at(wharf, "queued-default.localhost").await.as_deref() == Some("good version")).then_some(())
        })
        .await;

        // `cut`: v4's phase, cut short by the stop, ran again before the rollback queued behind
        // it (FE26 #8, seen before the gate opened), failed once the gate opened, and stays
        // failed; the rollback then runs.
        let v4 = settled(api, "cut", 4).await;
        assert_eq!((&v4["status"], &v4["eligible_for_rollback"]), (&json!("failed"), &json!(false)), "{stop:?}: {v4}");
        assert_eq!(settled(api, "cut", 5).await["status"], "succeeded", "{stop:?}");
        eventually(WAIT, &format!("{stop:?}: cut's good code to serve"), || async {
            (answer_at(wharf, "cut-default.localhost").await.as_deref() == Some("good version")).then_some(())
        })
        .await;

        // `slow`: its roll runs again, from the good code to v4.
        assert_eq!(settled(api, "slow", 4).await["status"], "succeeded", "{stop:?}");
        eventually(WAIT, &format!("{stop:?}: slow's v4 to serve"), || async {
            (answer_at(wharf, "slow-default.localhost").await.as_deref() == Some("slow version")).then_some(())
        })
        .await;
        std::fs::remove_file(&gate).unwrap();
        std::fs::remove_file(&mark).ok();
        std::fs::remove_file(dir.join("mark-queued")).ok();
        std::fs::remove_file(dir.join("mark-cut")).ok();
    }
}

/// FE21c #5: a running release phase is listed among the app's dynos as `release.N` (type
/// `release`, its command shown), as `heroku ps` lists it, and each way of stopping it by name
/// (`ps:restart release.N` = `DELETE /apps/{app}/dynos/release.N`, `ps:stop release.N` =
/// `POST .../actions/stop`, `ps:restart release` = `DELETE /apps/{app}/formations/release`)
/// ends it as a failure: its process group is gone, its release `failed`, and the good code
/// serves. A restart of all the app's dynos (`ps:restart`) leaves it running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_release_phase_is_listed_as_a_dyno_and_stopping_it_fails_its_release() {
    let setup = Setup::start(&[]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let dir = setup.dir.path();
    let good = archive_with(dir, "good", "good version", "tgz", "web: exec python3 app.py\n");
    assert_eq!(setup.build(&good, None).await["status"], "succeeded");
    api.expect("PATCH", "/apps/hello/formation", json!({"updates": [{"type": "web", "quantity": 1}]}), 200).await;
    eventually(WAIT, "the good code to serve", || async {
        (answer(wharf).await.as_deref() == Some("good version")).then_some(())
    })
    .await;
    let procfile = "web: exec python3 app.py\nrelease: echo $$ > phase.pid; exec sleep 6029\n";
    let hung = archive_with(dir, "hung", "hung version", "tgz", procfile);
    // (method, path with NAME for the phase's dyno name, status).
    let rows = [
        ("DELETE", "/apps/hello/dynos/NAME", 202),
        ("POST", "/apps/hello/dynos/NAME/actions/stop", 202),
        ("DELETE", "/apps/hello/formations/release", 202),
    ];
    for (i, (method, path, status)) in rows.into_iter().enumerate() {
        let release = setup.build(&hung, None).await["release"]["id"].as_str().unwrap().to_owned();
        let (_, r) = api.call("GET", &format!("/apps/hello/releases/{release}"), None).await;
        let name = format!("release.{}", r["version"]);
        let listed = eventually(WAIT, &format!("row {i}: {name} to be listed"), || async {
            let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
            dynos.as_array()?.iter().find(|d| d["name"] == name.as_str()).cloned()
        })
        .await;
        assert_eq!(listed["type"], "release", "{listed}");
        assert_eq!(listed["command"], "echo $$ > phase.pid; exec sleep 6029", "{listed}");
        assert_eq!(listed["release"]["id"], release.as_str(), "{listed}");
        let phase_runs = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x006029\x00"))
        };
        eventually(WAIT, "the phase's process to run", || async { phase_runs().then_some(()) }).await;
        if i == 0 {
            // `ps:restart` restarts the formation's dynos, not a migration.
            api.expect("DELETE", "/apps/hello/dynos", json!({}), 202).await;
            let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
            assert!(dynos.as_array().unwrap().iter().any(|d| d["name"] == name.as_str()), "{dynos}");
        }
        assert_eq!(settled_or_pending(api, "hello", r["version"].as_u64().unwrap()).await, "pending");
        let (got, body) = api.call(method, &path.replace("NAME", &name), None).await;
        assert_eq!(got, status, "row {i}: {body}");
        let failed = settled(api, "hello", r["version"].as_u64().unwrap()).await;
        assert_eq!(failed["status"], "failed", "row {i}: {failed}");
        let wanted = format!("Release phase of v{} failed (stopped by request", r["version"]);
        stream_lines(&setup, json!({"lines": 300, "source": "akkeris/supervisor"}), &wanted).await;
        eventually(WAIT, "the phase's process to be gone", || async { (!phase_runs()).then_some(()) }).await;
        let (_, dynos) = api.call("GET", "/apps/hello/dynos", None).await;
        assert!(!dynos.as_array().unwrap().iter().any(|d| d["type"] == "release"), "row {i}: {dynos}");
        assert_eq!(answer(wharf).await.as_deref(), Some("good version"), "row {i}");
    }
}

/// FE21c #6: deleting an app cancels its running build: its fetch stops, its build slot frees
/// (with one slot, a build of another app waiting behind it then runs), its staged files are
/// removed, and its output says it was cancelled. The source is held open by the test, so
/// only the cancellation can end the build. A slug upload in progress is cut short the same
/// way (404, its partial file removed), its client still holding the rest of the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_app_cancels_its_build_frees_its_slot_and_removes_its_files() {
    let setup = Setup::start(&[("WHARF_CONTROL_API__MAX_CONCURRENT_BUILDS", "1")]).await;
    let api = &setup.wharf.api;
    let hold = Arc::new(tokio::sync::Notify::new());
    let host = misbehaving_host(hold.clone()).await;
    api.expect("POST", "/apps", json!({"name": "doomed"}), 201).await;
    let held = json!({"source_blob": {"url": format!("http://{host}/held")}});
    let held = api.expect("POST", "/apps/doomed/builds", held, 201).await;
    let staged = setup.wharf.data_dir().join("slugs/incoming").join(format!("build-{}", held["id"].as_str().unwrap()));
    eventually(WAIT, "the held build to stage its files", || async { staged.exists().then_some(()) }).await;
    // A build of another app waits for the one slot.
    let good = archive_with(setup.dir.path(), "good", "good version", "tgz", "web: exec python3 app.py\n");
    let blob = json!({"source_blob": {"url": setup.files.url(&good)}});
    let waiting = api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let waiting_path = format!("/apps/hello/builds/{}", waiting["id"].as_str().unwrap());
    let (_, w) = api.call("GET", &waiting_path, None).await;
    assert_eq!(w["status"], "pending", "{w}");
    let output = tokio::spawn({
        let (api, held) = (api.clone(), held.clone());
        async move { output_of(&api, &held).await }
    });
    // A slug upload in progress (its body half sent, the client holding the rest) is cut short
    // too: 404, and nothing of it is kept in the incoming directory.
    let slug = api.expect("POST", "/apps/doomed/slugs", json!({"process_types": {"web": "x"}}), 201).await;
    let blob = slug["blob"]["url"].as_str().unwrap().to_owned();
    let rest = blob.split_once("://").unwrap().1;
    let (authority, target) = rest.split_once('/').unwrap();
    let mut upload = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!("PUT /{target} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 100000\r\n\r\n");
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(&[0x1f; 5000]).await.unwrap();
    let incoming = setup.wharf.data_dir().join("slugs").join("incoming");
    let uploads = || {
        std::fs::read_dir(&incoming)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".upload")).count())
            .unwrap_or(0)
    };
    eventually(WAIT, "the upload to arrive", || async { (uploads() == 1).then_some(()) }).await;
    api.expect("DELETE", "/apps/doomed", json!({}), 200).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match upload.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the cut upload to be answered while its client still holds the rest");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    eventually(WAIT, "the cut upload's file to go", || async { (uploads() == 0).then_some(()) }).await;
    let output = tokio::time::timeout(WAIT, output).await.expect("the cancelled build's output to end").unwrap();
    assert!(output.contains("Build failed: cancelled: its app was deleted while it ran"), "{output}");
    eventually(WAIT, "the cancelled build's files to go", || async { (!staged.exists()).then_some(()) }).await;
    let built = eventually(WAIT, "the waiting build to run and end", || async {
        let (_, b) = api.call("GET", &waiting_path, None).await;
        (b["status"] != "pending").then_some(b)
    })
    .await;
    assert_eq!(built["status"], "succeeded", "{built}");
}

/// A web process whose dynos split by the order they start in one release directory (each makes
/// `../dynoN`, the first N free): the first serves `body.txt` and marks `../served` at its
/// first request; the second waits until then (so the router sends the first one requests
/// when the roll fails), exits 1; any later one never listens.
const SPLIT_PY: &str = r#"
import http.server, os, sys, time
n = 1
while True:
    try:
        os.close(os.open(os.path.join("..", "dyno%d" % n), os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        n += 1
served = os.path.join("..", "served")
if n == 2:
    while not os.path.exists(served):
        time.sleep(0.02)
    time.sleep(0.3)
    sys.exit(1)
if n > 2:
    time.sleep(3600)
body = open("body.txt", "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        open(served, "a").close()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// What the router answered for `/` at `host`, as fast as it answers, from two clients: each
/// 200's body with when its request started (microseconds since the epoch).
struct FastProbe {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(i64, String)>>>,
}

impl FastProbe {
    fn start(router: std::net::SocketAddr, host: &str) -> FastProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..2)
            .map(|_| {
                let (stop, host) = (stop.clone(), host.to_owned());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                        if let Ok(r) = client::send(router, None, &Req::get(&host, "/")).await
                            && r.status == 200
                        {
                            seen.push((started.as_micros() as i64, r.text()));
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    seen
                })
            })
            .collect();
        FastProbe { stop, tasks }
    }

    async fn served(self) -> Vec<(i64, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all
    }
}

/// FE29 HIGH-2, FE33: with two or more web dynos, one new dyno can pass its health check and
/// serve while another of the same roll crashes. The failed release's code must not answer a
/// request that starts after its failure is said (`code=R10`): the roll's dynos leave the
/// router first (`supervisor/src/verdict.rs`). Rows: quantity 2 (one serves, one crashes once
/// the router sends the first requests), quantity 3 (and the third never listens: the crash
/// fails the roll at once, not at the health timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_roll_s_dynos_leave_the_router_before_its_failure_is_said() {
    let setup = Setup::start(&[]).await;
    let (wharf, api) = (&setup.wharf, &setup.wharf.api);
    let dir = setup.dir.path();
    let good = archive_with(dir, "good", "good version", "tgz", "web: exec python3 app.py\n");
    std::fs::create_dir_all(dir.join("split")).unwrap();
    std::fs::write(dir.join("split").join("split.py"), SPLIT_PY).unwrap();
    let split = archive_with(dir, "split", "split version", "tgz", "web: exec python3 split.py\n");
    let good = setup.build_on("hello", &good, None).await["slug"]["id"].clone();
    let split = setup.build_on("hello", &split, None).await["slug"]["id"].clone();
    for quantity in [2, 3] {
        let app = format!("split{quantity}");
        let host = format!("{app}-default.localhost");
        let path = |rest: &str| format!("/apps/{app}{rest}");
        api.expect("POST", "/apps", json!({"name": app}), 201).await;
        api.expect("POST", &path("/releases"), json!({"slug": good}), 201).await;
        let scale = json!({"updates": [{"type": "web", "quantity": quantity}]});
        api.expect("PATCH", &path("/formation"), scale, 200).await;
        eventually(WAIT, &format!("{app}: the good code on {quantity} dynos"), || async {
            let (_, dynos) = api.call("GET", &path("/dynos"), None).await;
            let up = dynos.as_array()?.iter().filter(|d| d["type"] == "web" && d["state"] == "up").count();
            (up == quantity && answer_at(wharf, &host).await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        let probe = FastProbe::start(wharf.http, &host);
        let made = api.expect("POST", &path("/releases"), json!({"slug": split}), 201).await;
        let failed = settled(api, &app, made["version"].as_u64().unwrap()).await;
        assert_eq!(failed["status"], "failed", "{app}: {failed}");
        let said = stream_lines_of(&setup, &app, json!({"lines": 200}), "code=R10").await;
        let r10 = said.lines().find(|l| l.contains("code=R10")).unwrap();
        let failed_at = wharf_domain::timestamp::parse_micros(r10.split(' ').next().unwrap()).expect(r10);
        assert!(r10.contains("exited before it was healthy") && r10.contains("left the router"), "{app}: {r10}");
        eventually(WAIT, &format!("{app}: the good code to serve on"), || async {
            (answer_at(wharf, &host).await.as_deref() == Some("good version")).then_some(())
        })
        .await;
        let served = probe.served().await;
        let split_served: Vec<i64> = served.iter().filter(|(_, b)| b == "split version").map(|(t, _)| *t).collect();
        // The row is what it says: the failed release's first dyno served before the failure.
        assert!(!split_served.is_empty(), "{app}: the split code never served ({} answers)", served.len());
        let late: Vec<i64> = split_served.iter().filter(|t| **t > failed_at).map(|t| t - failed_at).collect();
        assert!(late.is_empty(), "{app}: the failed code answered requests started this many µs after {r10}: {late:?}");
    }
}
