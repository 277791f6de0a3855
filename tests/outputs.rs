//! Builds' and releases' output URLs (`output_stream_url`) at their edges, through real
//! `wharf serve` processes, real release phases and a real HTTP server serving a source: a
//! graceful stop cuts what runs, its followers are told so (never a bare end), and the next
//! start's records say it was cut short; after a `kill -9` they keep the lines said before it
//! (stored every 2 s while it runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_testkit::client::{Api, Followed};
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

const WAIT: Duration = Duration::from_secs(60);

/// The settings of a quick supervisor, with `file://` sources allowed.
const ENV: [(&str, &str); 4] = [
    ("WHARF_CONTROL_API__ALLOW_FILE_URLS", "true"),
    ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
    ("WHARF_SUPERVISOR__CONNECTION_GRACE", "500ms"),
    ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
];

/// A tar.gz of a source whose Procfile is `procfile`, made by `tar` (not Wharf's code).
fn source(dir: &Path, procfile: &str) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("Procfile"), procfile).unwrap();
    let archive = dir.join("app.tgz");
    let packed = Command::new("tar").arg("czf").arg(&archive).arg("-C").arg(&src).arg(".").status().unwrap();
    assert!(packed.success());
    archive
}

/// Creates the app `hello` and builds it from a source whose release phase runs `before`, waits
/// for the file the app's `GATE` config var names, then runs `after`. Returns the gate's path
/// (write it to let the phase end) and the build.
async fn gated_build(api: &Api, dir: &Path, before: &str, after: &str) -> (PathBuf, Value) {
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let gate = dir.join("gate");
    api.expect("PATCH", "/apps/hello/config-vars", json!({"GATE": gate.to_str().unwrap()}), 200).await;
    let procfile = format!(
        "web: exec python3 -m http.server $PORT\nrelease: {before}; while [ ! -e \"$GATE\" ]; do sleep 0.1; done; {after}\n"
    );
    let blob = json!({"source_blob": {"url": format!("file://{}", source(dir, &procfile).display())}});
    (gate, api.expect("POST", "/apps/hello/builds", blob, 201).await)
}

/// A source host that answers the head of a 1 MB archive and a few bytes, then holds the
/// connection: a build fetching from it stays pending.
async fn held_source() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                let _ = conn.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nContent-Type: application/gzip\r\n\r\n";
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&[0x1f, 0x8b]).await;
                let _ = conn.read(&mut buf).await;
            });
        }
    });
    addr
}

/// The first 300 bytes of `text` (at a character's boundary), for a failure's message.
fn short(text: &str) -> &str {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Waits until the record of release `id` in the store under `data` (what the next start reads)
/// holds `line`: the running phase's lines so far were stored (every 2 s while it runs). No API
/// shows a running phase's record: its URL streams the live lines.
async fn stored_in_record(data: &Path, id: &str, line: &str) {
    use wharf_control_api::Store as _;
    use wharf_control_api::model::Object;
    let mut store = wharf_control_api::SqliteStore::open(&data.join("wharf.db")).unwrap();
    eventually(WAIT, &format!("release {id}'s record to hold {line:?}"), || {
        let loaded = store.load().unwrap();
        let held = loaded
            .objects
            .iter()
            .any(|o| matches!(o, Object::Release(r) if r.id.to_string() == id && r.output.iter().any(|l| l == line)));
        std::future::ready(held.then_some(()))
    })
    .await;
}

/// The path of an output URL (`output_stream_url`) on `api`.
fn path_of(api: &Api, url: &Value) -> String {
    url.as_str().unwrap().split_once(&api.addr.to_string()).unwrap().1.to_owned()
}

/// Issue 21: a release phase and a build that run when Wharf is stopped (SIGTERM) end their
/// followers' streams with a line saying so, never a bare end; after the restart the build is
/// `failed` and its record keeps its lines, the cut and why, and the release is still `pending`
/// (ARCHITECTURE.md: a phase cut short runs again from its start), its URL keeps the cut run's
/// lines, says it runs again, and follows the new run to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cuts_running_outputs_with_a_word_and_the_restart_s_records_say_so() {
    let dir = TempDir::new("outputs-stop");
    let data = dir.path().join("data");
    let wharf = Wharf::serve_with(WHARF, &[], &data, &ENV).await;
    let api = &wharf.api;
    let (gate, build) = gated_build(api, dir.path(), "echo migrating", "echo done migrating").await;
    let build_path = format!("/apps/hello/builds/{}", build["id"].as_str().unwrap());
    eventually(WAIT, "the build's release v3", || async {
        let (_, b) = api.call("GET", &build_path, None).await;
        b["release"]["id"].as_str().map(|_| ())
    })
    .await;
    let (_, v3) = api.call("GET", "/apps/hello/releases/v3", None).await;
    let phase = Followed::start(api.addr, &path_of(api, &v3["output_stream_url"])).await;
    phase.until("migrating", WAIT).await;
    let held = held_source().await;
    let blob = json!({"source_blob": {"url": format!("http://{held}/app.tgz")}});
    let fetching = api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let fetch = Followed::start(api.addr, &path_of(api, &fetching["output_stream_url"])).await;
    fetch.until("Fetching source", WAIT).await;

    let (stopped, _) = wharf.terminate().await;
    assert!(stopped, "wharf stops cleanly");
    // (what ran, what its follower was told last)
    let cut = [
        (
            &phase,
            " !     Wharf stopped while v3's release phase ran: it is cut short here, and runs again from its start \
             when Wharf starts again (v3 stays pending until then)",
        ),
        (&fetch, " !     Wharf stopped while this build ran: it is cut short here, and fails (start it again)"),
    ];
    for (followed, last) in cut {
        let said = followed.ended(WAIT).await;
        assert_eq!(said.lines().last(), Some(last), "{said}");
    }

    let wharf = Wharf::serve_with(WHARF, &[], &data, &ENV).await;
    let api = &wharf.api;
    let (_, b) = api.call("GET", &format!("/apps/hello/builds/{}", fetching["id"].as_str().unwrap()), None).await;
    assert_eq!(b["status"], "failed", "{b}");
    let stored = Followed::start(api.addr, &path_of(api, &b["output_stream_url"])).await.ended(WAIT).await;
    let lines: Vec<&str> = stored.lines().collect();
    assert!(lines[0].starts_with("-----> Fetching source http://"), "{stored}");
    assert_eq!(
        lines[lines.len() - 2..],
        [cut[1].1, " !     Build failed: Wharf stopped while it ran; start it again"],
        "{stored}"
    );
    let (_, v3) = api.call("GET", "/apps/hello/releases/v3", None).await;
    assert_eq!(v3["status"], "pending", "a release whose phase was cut short stays pending: {v3}");
    let again = Followed::start(api.addr, &path_of(api, &v3["output_stream_url"])).await;
    let said = again.until("v3 was pending: its release phase runs again from its start", WAIT).await;
    assert!(said.contains(&format!("migrating\n{}\n", cut[0].1)), "the cut run's lines come first: {said}");
    std::fs::write(&gate, "").unwrap();
    let said = again.ended(WAIT).await;
    assert!(said.trim_end().ends_with("Release phase of v3 succeeded"), "{said}");
    assert_eq!(said.matches("Release phase of v3 starting").count(), 2, "the cut run and the new one: {said}");
    eventually(WAIT, "v3 to succeed", || async {
        let (_, r) = api.call("GET", "/apps/hello/releases/v3", None).await;
        (r["status"] == "succeeded").then_some(())
    })
    .await;
    let (_, v3) = api.call("GET", "/apps/hello/releases/v3", None).await;
    let stored = Followed::start(api.addr, &path_of(api, &v3["output_stream_url"])).await.ended(WAIT).await;
    // The record keeps what the follower saw, but the line it was told while it waited.
    let seen: String = said
        .lines()
        .filter(|l| !l.starts_with("-----> v3's release phase runs again"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stored, seen, "the record keeps what the follower saw");
}

/// Issue 21: what outputs hold is bounded whatever a phase prints (one 5 MB line, then 2,000
/// lines of 5 KB: each line is cut to 1,024 bytes and says how many were cut, the output keeps
/// its first and newest lines within 128 KiB and says how many it left out, and its end), and
/// an app keeps the outputs of its newest 10 releases only: an older one's URL says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_bounded_in_lines_bytes_and_releases() {
    let dir = TempDir::new("outputs-bounds");
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &ENV).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let procfile = "web: exec python3 -m http.server $PORT\n\
                    release: python3 -c \"print('x' * 5000000); [print('%05d ' % i + 'y' * 5000) for i in range(2000)]\"\n";
    let blob = json!({"source_blob": {"url": format!("file://{}", source(dir.path(), procfile).display())}});
    api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let settled = |v: u32| async move {
        eventually(WAIT, &format!("v{v} to settle"), || async {
            let (_, r) = api.call("GET", &format!("/apps/hello/releases/v{v}"), None).await;
            r["status"].as_str().is_some_and(|s| s != "pending").then_some(r.clone())
        })
        .await
    };
    let v2 = settled(2).await;
    assert_eq!(v2["status"], "succeeded", "{v2}");
    let url = path_of(api, &v2["output_stream_url"]);
    let said = Followed::start(api.addr, &url).await.ended(WAIT).await;
    assert!(said.len() <= 128 * 1024 + 200, "{} bytes", said.len());
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines[0].starts_with("Release phase of v2 starting"), "{}", lines[0]);
    // The dyno's output splits the 5 MB line at 10,000 bytes; each piece is cut to 1,024.
    assert!(lines[1] == format!("{}… [8976 bytes cut]", "x".repeat(1024)), "{}", short(lines[1]));
    assert!(lines.iter().all(|l| l.len() <= 1024 + 30), "a line over its cap");
    assert!(
        lines.iter().any(|l| l.ends_with("lines left out here are in the app's log stream only")),
        "{}",
        short(&said)
    );
    assert!(
        lines[lines.len() - 2].starts_with("01999 yyy"),
        "the newest lines are kept: {}",
        short(lines[lines.len() - 2])
    );
    assert_eq!(lines[lines.len() - 1], "Release phase of v2 succeeded");

    // Ten more releases, each running the phase: v2's output is no longer kept, and says so.
    let procfile = "web: exec python3 -m http.server $PORT\nrelease: echo migrated\n";
    let blob = json!({"source_blob": {"url": format!("file://{}", source(dir.path(), procfile).display())}});
    api.expect("POST", "/apps/hello/builds", blob, 201).await;
    assert_eq!(settled(3).await["status"], "succeeded");
    for n in 4..=12 {
        api.expect("PATCH", "/apps/hello/config-vars", json!({"N": n.to_string()}), 200).await;
        assert_eq!(settled(n).await["status"], "succeeded", "v{n}");
    }
    let said = Followed::start(api.addr, &url).await.ended(WAIT).await;
    assert_eq!(
        short(&said),
        " !     This output is no longer kept: Wharf keeps the outputs of each app's newest 10 releases and 10 \
         builds (all its lines went to the app's log stream)\n"
    );
    let (_, v3) = api.call("GET", "/apps/hello/releases/v3", None).await;
    let kept = Followed::start(api.addr, &path_of(api, &v3["output_stream_url"])).await.ended(WAIT).await;
    assert!(kept.contains("migrated\nRelease phase of v3 succeeded"), "{kept}");
}

/// What ends a release's wait for its phase other than its phase (issue 21, the siblings of
/// "superseded"): a release of changes queued behind a phase that fails is rebased onto the
/// running code, which has no phase; an app deleted meanwhile takes its releases along. Either
/// way the follower is told, never given a bare end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_release_s_follower_is_told_when_its_phase_will_never_run() {
    let dir = TempDir::new("outputs-queued");
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &ENV).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "builder"}), 201).await;
    let slug_of = |procfile: &'static str, name: &'static str| {
        let dir = dir.path().join(name);
        async move {
            std::fs::create_dir_all(&dir).unwrap();
            let blob = json!({"source_blob": {"url": format!("file://{}", source(&dir, procfile).display())}});
            let build = api.expect("POST", "/apps/builder/builds", blob, 201).await;
            let path = format!("/apps/builder/builds/{}", build["id"].as_str().unwrap());
            eventually(WAIT, "the build's slug", || async {
                let (_, b) = api.call("GET", &path, None).await;
                b["slug"]["id"].as_str().map(str::to_owned)
            })
            .await
        }
    };
    let plain = slug_of("web: exec python3 -m http.server $PORT\n", "plain").await;
    let phased = slug_of(
        "web: exec python3 -m http.server $PORT\n\
         release: echo migrating; while [ ! -e \"$GATE\" ]; do sleep 0.1; done; exit 3\n",
        "phased",
    )
    .await;
    // (what happens while v4's phase runs, what v5's follower is told last)
    let gone = " !     This release has no output any more: it was deleted with its app, or (a release of changes) \
                rebased onto the running release, which has no release phase";
    let rows = [("a config change, rebased when v4's phase fails", gone), ("the app's deletion", gone)];
    for (i, (what, last)) in rows.into_iter().enumerate() {
        let app = format!("queued{i}");
        let path = |rest: &str| format!("/apps/{app}{rest}");
        let gate = dir.path().join(format!("gate{i}"));
        api.expect("POST", "/apps", json!({"name": app}), 201).await;
        api.expect("POST", &path("/releases"), json!({"slug": plain}), 201).await;
        api.expect("PATCH", &path("/config-vars"), json!({"GATE": gate.to_str().unwrap()}), 200).await;
        let v4 = api.expect("POST", &path("/releases"), json!({"slug": phased}), 201).await;
        let phase = Followed::start(api.addr, &path_of(api, &v4["output_stream_url"])).await;
        phase.until("migrating", WAIT).await;
        api.expect("PATCH", &path("/config-vars"), json!({"Y": "1"}), 200).await;
        let (_, v5) = api.call("GET", &path("/releases/v5"), None).await;
        let queued = Followed::start(api.addr, &path_of(api, &v5["output_stream_url"])).await;
        queued.until("v5's release phase has not started yet: v4 is pending before it", WAIT).await;
        if i == 0 {
            std::fs::write(&gate, "").unwrap();
            let said = phase.ended(WAIT).await;
            assert!(said.contains("Release phase of v4 failed (exit status: 3)"), "{what}: {said}");
        } else {
            api.expect("DELETE", &path(""), json!({}), 200).await;
        }
        let said = queued.ended(WAIT).await;
        assert_eq!(said.lines().last(), Some(last), "{what}: {said}");
        if i == 0 {
            // Asked afterwards, the rebased release's URL says why it has no output (a 404, as
            // Heroku's), never that the release does not exist.
            let (status, out) = api.call("GET", &path_of(api, &v5["output_stream_url"]), None).await;
            let why = "release v5 has no release phase (its Procfile has no `release` process), so it has no output";
            assert_eq!((status, out["message"].as_str()), (404, Some(why)), "{what}: {out}");
        }
    }
}

/// FE43 #1: a follower of a running phase gets every line as it comes, past the first half of
/// the caps too (65 lines of 1 KB fill the first 64 KiB): the line before a long wait shows
/// while the phase waits, not only when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_phase_streams_every_line_as_it_comes_past_its_first_half() {
    let dir = TempDir::new("outputs-live");
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &ENV).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let (start, end) = (dir.path().join("start"), dir.path().join("end"));
    let vars = json!({"START": start.to_str().unwrap(), "END": end.to_str().unwrap()});
    api.expect("PATCH", "/apps/hello/config-vars", vars, 200).await;
    let procfile = "web: exec python3 -m http.server $PORT\n\
                    release: echo waiting-$((1 + 1)); while [ ! -e \"$START\" ]; do sleep 0.1; done; \
                    for i in $(seq 1 600); do printf '%01000d\\n' $i; done; echo NOW-MIGRATING-$((6 * 7)); \
                    while [ ! -e \"$END\" ]; do sleep 0.1; done; echo DONE\n";
    let blob = json!({"source_blob": {"url": format!("file://{}", source(dir.path(), procfile).display())}});
    api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let v3 = eventually(WAIT, "release v3", || async {
        let (_, r) = api.call("GET", "/apps/hello/releases/v3", None).await;
        r["output_stream_url"].as_str().map(|_| r.clone())
    })
    .await;
    // The follower is there before the lines come: it gets them as they come, the line the
    // phase then waits after among them, while it waits.
    let live = Followed::start(api.addr, &path_of(api, &v3["output_stream_url"])).await;
    live.until("waiting-2", WAIT).await;
    std::fs::write(&start, "").unwrap();
    let said = live.until("NOW-MIGRATING-42", WAIT).await;
    assert!(said.contains(&format!("{:01000}\n", 600)), "the 600th line came before it: {}", short(&said));
    std::fs::write(&end, "").unwrap();
    let said = live.ended(WAIT).await;
    assert!(said.trim_end().ends_with("DONE\nRelease phase of v3 succeeded"), "{}", short(&said));
}

/// FE43 #2: a build a `kill -9` cut is `failed` at the next start and its output URL says why;
/// FE47: after the lines it had said before the kill (stored every 2 s while it runs: its
/// `updated_at` moves when they are), so a long build's log is not lost whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_a_kill_cut_says_why_it_failed() {
    let dir = TempDir::new("outputs-kill");
    let data = dir.path().join("data");
    let wharf = Wharf::serve_with(WHARF, &[], &data, &ENV).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "hello"}), 201).await;
    let held = held_source().await;
    let blob = json!({"source_blob": {"url": format!("http://{held}/app.tgz")}});
    let fetching = api.expect("POST", "/apps/hello/builds", blob, 201).await;
    let fetch = Followed::start(api.addr, &path_of(api, &fetching["output_stream_url"])).await;
    fetch.until("Fetching source", WAIT).await;
    // Its record is stored once its lines changed (the fetch then holds: no other line comes).
    let build_path = format!("/apps/hello/builds/{}", fetching["id"].as_str().unwrap());
    eventually(WAIT, "the build's record to be stored", || async {
        let (_, b) = api.call("GET", &build_path, None).await;
        (b["updated_at"] != b["created_at"]).then_some(())
    })
    .await;
    let killed = Command::new("kill").args(["-9", &wharf.pid()]).status().unwrap();
    assert!(killed.success());
    drop(wharf);
    let wharf = Wharf::serve_with(WHARF, &[], &data, &ENV).await;
    let api = &wharf.api;
    let (_, b) = api.call("GET", &build_path, None).await;
    assert_eq!(b["status"], "failed", "{b}");
    let said = Followed::start(api.addr, &path_of(api, &b["output_stream_url"])).await.ended(WAIT).await;
    assert_eq!(
        said,
        format!(
            "-----> Fetching source http://{held}/app.tgz\n !     Build failed: Wharf stopped while it ran; start it \
             again\n"
        )
    );
}

/// FE43 #3: a release phase a `kill -9` cut runs again at the next start, and its URL says so:
/// the killed run's lines (FE47: those stored before the kill, every 2 s while it runs), the
/// line saying a kill cut it, then that it runs again, then the new run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_a_kill_cut_says_it_runs_again() {
    let dir = TempDir::new("outputs-kill-phase");
    let data = dir.path().join("data");
    let wharf = Wharf::serve_with(WHARF, &[], &data, &ENV).await;
    let api = &wharf.api;
    let (gate, build) = gated_build(api, dir.path(), "echo run-$((1 + 1))", "echo done").await;
    let v3 = eventually(WAIT, "release v3", || async {
        let (_, r) = api.call("GET", "/apps/hello/releases/v3", None).await;
        r["output_stream_url"].as_str().map(|_| r.clone())
    })
    .await;
    Followed::start(api.addr, &path_of(api, &v3["output_stream_url"])).await.until("run-2", WAIT).await;
    stored_in_record(&data, v3["id"].as_str().unwrap(), "run-2").await;
    let killed = Command::new("kill").args(["-9", &wharf.pid()]).status().unwrap();
    assert!(killed.success());
    drop(wharf);
    let wharf = Wharf::serve_with(WHARF, &[], &data, &ENV).await;
    let api = &wharf.api;
    let (_, v3) = api.call("GET", "/apps/hello/releases/v3", None).await;
    assert_eq!(v3["status"], "pending", "{v3}");
    let again = Followed::start(api.addr, &path_of(api, &v3["output_stream_url"])).await;
    let said = again.until("v3 was pending: its release phase runs again from its start", WAIT).await;
    let killed = " !     Wharf stopped while v3's release phase ran (it was killed: what it printed in its last 2 \
                  seconds may be missing here; the app's log stream had every line)";
    assert!(said.starts_with("Release phase of v3 starting: echo run-$((1 + 1)); "), "{said}");
    assert!(said.contains(&format!("\nrun-2\n{killed}\n")), "the killed run's lines, then the cut: {said}");
    std::fs::write(&gate, "").unwrap();
    let said = again.ended(WAIT).await;
    assert!(said.trim_end().ends_with("done\nRelease phase of v3 succeeded"), "{said}");
    // The build's output kept its lines up to the release it made, which the kill did not take
    // (FE45 LOW: its "Releasing" line was lost).
    let url = format!("/builds/{}/output", build["id"].as_str().unwrap());
    let said = Followed::start(api.addr, &url).await.ended(WAIT).await;
    assert!(said.contains("\n-----> Releasing v3 of slug "), "{said}");
}
