//! Dyno and router metrics (issue 21), with real dynos, a real router and a real drain: Heroku's
//! log-runtime-metrics lines reach a drain at a short interval, with memory that moves when the
//! dyno allocates; `GET /apps/{app}/metrics` shows a busy-looping dyno near one core and the
//! router's per-second counts of the requests sent (errors and H codes included); a dyno's
//! storage bytes move by what it (or a child it waits for) reads and writes, counted once; the
//! 5xx class and the latency percentiles move with the requests; bad queries are refused with
//! 422 and change nothing.

use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::client::{self, Req};
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);

/// A web dyno that keeps a growing list of 32 MiB buffers: `GET /grow` adds one (touched, so
/// it is resident), `GET /missing` is a 404, anything else a 200.
const GROWING_DYNO: &str = r#"
import http.server, os
kept = []
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        status = 200
        if self.path == "/grow":
            kept.append(bytearray(b"x" * (32 << 20)))
        elif self.path == "/missing":
            status = 404
        body = str(len(kept)).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// `wharf serve` with metrics lines every second and quick restarts.
async fn start(dir: &TempDir) -> Wharf {
    std::fs::write(dir.path().join("server.py"), GROWING_DYNO).unwrap();
    let env = [
        ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
        ("WHARF_SUPERVISOR__RUNTIME_METRICS_INTERVAL", "1s"),
        ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
        ("WHARF_SUPERVISOR__CONNECTION_GRACE", "200ms"),
    ];
    Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await
}

/// Runs `server.py` as the app's web dyno, plus `extra` formation entries, and waits until the
/// router serves it; returns the statuses the router answered while waiting (each a request it
/// counted for the app).
async fn run_web(wharf: &Wharf, dir: &TempDir, app: &str, extra: &[Value]) -> Vec<u16> {
    wharf.api.create_app(app, &[]).await;
    let command = format!("exec python3 {}", dir.path().join("server.py").display());
    let web = json!({"type": "web", "quantity": 1, "command": command});
    let updates: Vec<Value> = std::iter::once(web).chain(extra.iter().cloned()).collect();
    wharf.api.expect("PATCH", &format!("/apps/{app}/formation"), json!({ "updates": updates }), 200).await;
    let host = format!("{app}.localhost");
    let statuses = std::cell::RefCell::new(Vec::new());
    let (seen, host) = (&statuses, &host);
    eventually(WAIT, "the web dyno to serve", || async move {
        let r = client::send(wharf.http, None, &Req::get(host, "/")).await.ok()?;
        seen.borrow_mut().push(r.status.as_u16());
        (r.status == 200).then_some(())
    })
    .await;
    statuses.into_inner()
}

/// A `sample#NAME=VALUE[UNIT]` value of a metrics line.
fn sample(line: &str, name: &str) -> Option<f64> {
    let value = line.split(' ').find_map(|f| f.strip_prefix(&format!("sample#{name}=")))?;
    value.trim_end_matches(|c: char| c.is_ascii_alphabetic()).parse().ok()
}

#[tokio::test]
async fn metrics_lines_reach_a_drain_with_memory_that_moves_when_the_dyno_allocates() {
    let dir = TempDir::new("metrics-lines");
    let wharf = start(&dir).await;
    let worker = json!({"type": "worker", "quantity": 1, "command": "while true; do sleep 1; done"});
    run_web(&wharf, &dir, "grow-default", &[worker]).await;
    let receiver = SyslogReceiver::tcp().await;
    wharf.api.expect("POST", "/apps/grow-default/log-drains", json!({"url": receiver.url()}), 201).await;
    let host = "grow-default.localhost";
    let app_id =
        wharf.api.expect("GET", "/apps/grow-default", Value::Null, 200).await["id"].as_str().unwrap().to_owned();
    // The newest memory line of each dyno type, as the drain received it.
    let memory_lines = |dyno_type: &str| -> Vec<String> {
        let prefix = format!("{dyno_type}.");
        let ours = receiver
            .messages()
            .into_iter()
            .filter(|m| m.app_name == "akkeris/supervisor" && m.procid.starts_with(&prefix));
        ours.map(|m| m.text()).filter(|t| t.contains("sample#memory_rss=")).collect()
    };
    let before = eventually(WAIT, "a memory line of the web dyno", || async {
        let lines = memory_lines("web");
        lines.last().and_then(|l| sample(l, "memory_rss"))
    })
    .await;
    // Every kind of dyno is sampled: a worker's lines come too, load and memory, in Heroku's form.
    let texts = eventually(WAIT, "a worker's load and memory lines", || async {
        let texts: Vec<String> =
            receiver.messages().iter().filter(|m| m.procid == "worker.1").map(|m| m.text()).collect();
        (texts.iter().any(|t| t.contains("sample#load_avg_1m="))
            && texts.iter().any(|t| t.contains("sample#memory_total=")))
        .then_some(texts)
    })
    .await;
    for text in texts.iter().filter(|t| t.contains("sample#")) {
        let fields: Vec<&str> = text.split(' ').collect();
        // Heroku's form: the process name (the worker's index), and the unique dyno beside it.
        assert_eq!(fields[0], "source=worker.1", "{text}");
        assert!(fields[1].starts_with(&format!("dyno=heroku.{app_id}.")), "{text}");
        let names: Vec<&str> = fields[2..].iter().map(|f| f.split('=').next().unwrap()).collect();
        assert!(
            names == ["sample#load_avg_1m", "sample#load_avg_5m", "sample#load_avg_15m", "sample#cpu_percent"]
                || names == ["sample#memory_total", "sample#memory_rss", "sample#memory_swap"],
            "{text}"
        );
        for f in &fields[2..] {
            assert!(sample(text, f.split('=').next().unwrap().trim_start_matches("sample#")).is_some(), "{text}");
        }
        if names[0] == "sample#memory_total" {
            assert!(fields.iter().skip(2).all(|f| f.ends_with("MB")), "{text}");
        }
    }
    // Three buffers of 32 MiB: the dyno's resident memory grows by about 96 MiB.
    for _ in 0..3 {
        let r = client::send(wharf.http, None, &Req::get(host, "/grow")).await.unwrap();
        assert_eq!(r.status, 200);
    }
    let after = eventually(WAIT, "a memory line showing the growth", || async {
        let rss = memory_lines("web").last().and_then(|l| sample(l, "memory_rss"))?;
        (rss >= before + 80.0).then_some(rss)
    })
    .await;
    assert!(after < before + 200.0, "grew from {before} MB to {after} MB for 96 MiB");
    let total = memory_lines("web").last().and_then(|l| sample(l, "memory_total")).unwrap();
    assert!(total >= after, "memory_total {total} is resident plus swap, at least memory_rss {after}");
}

/// The seconds of CPU time the test compares, read twice from `/proc`. The API's seconds are
/// sampled at some point within each second, so its window is up to a second off the test's:
/// twenty seconds keep that within the tolerance (a fifth of the figure, plus half a point for
/// the clock ticks), which still tells a figure off by half, as a mutation check showed.
const CPU_WINDOW: usize = 20;

/// Waits for the wall clock to reach the next whole second, and returns it.
async fn next_second() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    tokio::time::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()))).await;
    now.as_secs() as i64 + 1
}

/// RFC 3339 for seconds since the epoch, UTC.
fn rfc3339(secs: i64) -> String {
    wharf_domain::timestamp::format_seconds(secs)
}

/// A process's CPU time so far, user and system, in clock ticks (proc(5) fields 14 and 15).
fn cpu_ticks(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = text.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The processes running `python3 -c CODE` (whatever path `python3` has: a pyenv shim execs the
/// real one).
fn pythons_running(code: &str) -> Vec<i32> {
    let tail = format!("\0-c\0{code}\0");
    let pids = std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            c.ends_with(tail.as_bytes()) && c.split(|b| *b == 0).next().is_some_and(|a0| a0.ends_with(b"python3"))
        })
    })
    .collect()
}

/// The app's metrics with this query.
async fn metrics(wharf: &Wharf, app: &str, query: &str) -> (u16, Value) {
    wharf.api.call("GET", &format!("/apps/{app}/metrics{query}"), None).await
}

#[tokio::test]
async fn the_api_shows_a_busy_dyno_near_one_core_and_the_routers_counts_per_second() {
    let dir = TempDir::new("metrics-api");
    let wharf = start(&dir).await;
    let busy = json!({"type": "worker", "quantity": 1, "command": "exec python3 -c 'while True: pass'"});
    let idle = json!({"type": "clock", "quantity": 1, "command": "exec sleep 1000"});
    let waited = run_web(&wharf, &dir, "api-default", &[busy, idle]).await;
    // Requests of three kinds: 200s, 404s from the dyno, and 503 H14 for an app with no dyno.
    wharf.api.create_app("nodyno-default", &[]).await;
    let sent = [("api-default.localhost", "/", 200, 7), ("api-default.localhost", "/missing", 404, 3)];
    for (host, path, status, n) in sent {
        for _ in 0..n {
            assert_eq!(client::send(wharf.http, None, &Req::get(host, path)).await.unwrap().status, status);
        }
    }
    for _ in 0..2 {
        assert_eq!(
            client::send(wharf.http, None, &Req::get("nodyno-default.localhost", "/")).await.unwrap().status,
            503
        );
    }
    // The dyno figures: a worker busy-looping on one core shows the CPU it got, about 100% of a
    // core on an idle machine. On a shared one it gets less, so the API's figure is compared with
    // the test's own reading of the busy process's CPU time over the same seconds.
    let busy_pid =
        eventually(WAIT, "the busy worker to run", || async { pythons_running("while True: pass").first().copied() })
            .await;
    let hz: f64 = String::from_utf8(std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let from = next_second().await;
    let ticks_from = cpu_ticks(busy_pid);
    let mut to = from;
    for _ in 0..CPU_WINDOW {
        to = next_second().await;
    }
    let own = (cpu_ticks(busy_pid) - ticks_from) as f64 / hz / (to - from) as f64 * 100.0;
    let query = format!("?from={}&to={}&resolution={}", rfc3339(from), rfc3339(to), to - from);
    let api = eventually(WAIT, "the API's figure of the window", || async {
        // The step is whole once its last second was sampled.
        let (_, last) = metrics(&wharf, "api-default", &format!("?from={}&to={}", rfc3339(to - 1), rfc3339(to))).await;
        last["dynos"].as_array()?.iter().find(|d| d["type"] == "worker")?;
        let (status, body) = metrics(&wharf, "api-default", &query).await;
        assert_eq!(status, 200, "{body}");
        let worker = body["dynos"].as_array()?.iter().find(|d| d["type"] == "worker")?.clone();
        worker["samples"].as_array()?.first()?["cpu_percent"].as_f64()
    })
    .await;
    eprintln!("busy dyno over {}s: the API says {api}% of a core, /proc says {own}%", to - from);
    assert!(
        (api - own).abs() <= own * 0.2 + 0.5,
        "the API says the busy dyno used {api}% of a core over {}s; /proc says {own}%",
        to - from
    );
    if own >= 90.0 {
        assert!((60.0..=130.0).contains(&api), "a busy-looping dyno on an idle core used {api}% of it");
    }
    let (_, body) = metrics(&wharf, "api-default", "").await;
    let dynos = body["dynos"].as_array().unwrap();
    let types: Vec<&str> = dynos.iter().map(|d| d["type"].as_str().unwrap()).collect();
    for t in ["web", "worker", "clock"] {
        assert!(types.contains(&t), "every dyno is sampled: {types:?}");
    }
    let clock = dynos.iter().find(|d| d["type"] == "clock").unwrap();
    for s in clock["samples"].as_array().unwrap().iter().skip(1) {
        assert!(s["cpu_percent"].as_f64().unwrap() < 20.0, "a sleeping dyno is near 0%: {s}");
        assert!(s["memory_rss_bytes"].as_u64().unwrap() > 0, "{s}");
        assert!(s["memory_total_bytes"].as_u64().unwrap() >= s["memory_rss_bytes"].as_u64().unwrap(), "{s}");
    }
    // The router's figures: per second they add up to what was sent, at any resolution.
    let totals = |body: &Value| -> Option<(u64, u64, u64, u64)> {
        let steps = body["requests"].as_array()?;
        let sum = |key: &str| steps.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>();
        let h14 = steps.iter().filter_map(|s| s["codes"]["H14"].as_u64()).sum();
        Some((sum("requests"), sum("status_4xx"), sum("status_5xx"), h14))
    };
    let expected = (
        waited.len() as u64 + 10,
        3 + waited.iter().filter(|s| (400..500).contains(*s)).count() as u64,
        waited.iter().filter(|s| (500..600).contains(*s)).count() as u64,
        waited.iter().filter(|s| **s == 503).count() as u64,
    );
    let served = eventually(WAIT, "the router's seconds to include every request", || async {
        let (_, body) = metrics(&wharf, "api-default", "").await;
        totals(&body).filter(|t| *t == expected)
    })
    .await;
    let (_, nodyno) = metrics(&wharf, "nodyno-default", "").await;
    assert_eq!(totals(&nodyno), Some((2, 0, 2, 2)), "{nodyno}");
    let (_, coarse) = metrics(&wharf, "api-default", "?resolution=60").await;
    assert_eq!(totals(&coarse), Some(served), "{coarse}");
    let steps = coarse["requests"].as_array().unwrap();
    assert!(steps.len() <= 61, "{coarse}");
    for step in steps {
        let latency = &step["latency_ms"];
        let p = |k: &str| latency[k].as_u64().unwrap();
        assert!(p("p50") <= p("p95") && p("p95") <= p("p99") && p("p99") <= p("max"), "{coarse}");
    }
}

#[tokio::test]
async fn bad_metrics_queries_are_refused_with_422() {
    let dir = TempDir::new("metrics-bad");
    let wharf = start(&dir).await;
    wharf.api.create_app("api-default", &[]).await;
    let check = |query: &'static str, status: u16, says: &'static str| {
        let wharf = &wharf;
        async move {
            let (got, body) = metrics(wharf, "api-default", query).await;
            assert_eq!(got, status, "{query}: {body}");
            if status != 200 {
                assert_eq!(body["id"], "invalid_params", "{query}: {body}");
                let message = body["message"].as_str().unwrap();
                assert!(message.contains(says), "{query}: {message}");
            }
        }
    };
    check("", 200, "").await;
    check("?resolution=10", 200, "").await;
    check("?resolution=0", 422, "resolution must be a whole number").await;
    check("?resolution=3601", 422, "resolution must be a whole number").await;
    check("?resolution=abc", 422, "resolution must be a whole number").await;
    check("?from=yesterday", 422, "from must be an RFC 3339 time").await;
    check("?to=2026-13-01T00:00:00Z", 422, "to must be an RFC 3339 time").await;
    check("?from=2026-01-01T00:00:01Z&to=2026-01-01T00:00:00Z", 422, "from must be before to").await;
    check("?from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", 422, "from must be before to").await;
    check("?from=2026-01-01T00:00:00Z&to=2026-01-01T02:00:00Z", 422, "at most an hour").await;
    check("?from=2026-01-01T01:00:00%2B01:00&to=2026-01-01T00:30:00Z", 200, "").await;
    check("?window=5", 422, "unknown field").await;
    let (status, body) = metrics(&wharf, "nosuchapp-default", "").await;
    assert_eq!((status, body["id"].as_str()), (404, Some("not_found")), "{body}");
    // A range in the past is answered, with nothing in it.
    let (_, body) = metrics(&wharf, "api-default", "?from=2026-01-01T00:00:00Z&to=2026-01-01T00:30:00Z").await;
    assert_eq!(body["dynos"], json!([]));
    assert_eq!(body["requests"], json!([]));
    assert_eq!(body["resolution"], 1);
}

/// A web dyno that writes and reads files on request, in its own process or in a child it
/// waits for, paced at 0.1 s a MiB so that each spans several samples: `GET
/// /write?name=F&mb=N&child=0|1` writes N MiB to `F` and syncs it; `GET
/// /read?name=F&child=0|1` drops `F` from the page cache (it is clean once synced) and reads it
/// back from storage. `GET /fail` is a 500, `GET /slow` answers after 2.5 s, anything else a 200.
/// Run as `io.py write F N` or `io.py read F`, it is that child.
const IO_DYNO: &str = r#"
import http.server, os, subprocess, sys, time, urllib.parse
def write(path, mb):
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(b"x" * (1 << 20))
            f.flush()
            time.sleep(0.1)
        os.fsync(f.fileno())
def read(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    while os.read(fd, 1 << 20):
        time.sleep(0.1)
    os.close(fd)
if len(sys.argv) > 1:
    write(sys.argv[2], int(sys.argv[3])) if sys.argv[1] == "write" else read(sys.argv[2])
    sys.exit(0)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        status = 200
        if url.path in ("/write", "/read"):
            args = [url.path[1:], q["name"]] + ([q["mb"]] if url.path == "/write" else [])
            if q["child"] == "1":
                subprocess.run([sys.executable, os.path.abspath(__file__)] + args, check=True)
            elif url.path == "/write":
                write(q["name"], int(q["mb"]))
            else:
                read(q["name"])
        elif url.path == "/fail":
            status = 500
        elif url.path == "/slow":
            time.sleep(2.5)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// The web dyno's bytes read and written (summed over its 1-second samples) from second `from`
/// to `to`, once a second at or after `to` was sampled (so every second before it is in).
async fn io_bytes(wharf: &Wharf, app: &str, from: i64, to: i64) -> (u64, u64) {
    let web = |body: Value| -> Option<Vec<Value>> {
        let web = body["dynos"].as_array()?.iter().find(|d| d["type"] == "web")?.clone();
        web["samples"].as_array().cloned()
    };
    eventually(WAIT, "a second after the window to be sampled", || async {
        let (_, later) = metrics(wharf, app, &format!("?from={}&to={}", rfc3339(to), rfc3339(to + 60))).await;
        web(later)?.first()?;
        let (status, body) = metrics(wharf, app, &format!("?from={}&to={}", rfc3339(from), rfc3339(to))).await;
        assert_eq!(status, 200, "{body}");
        let samples = web(body)?;
        let sum = |key: &str| samples.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>();
        Some((sum("read_bytes_per_second"), sum("write_bytes_per_second")))
    })
    .await
}

/// Issue 21's "filesystem I/O" through `GET /apps/{app}/metrics`: a dyno that writes 24 MiB
/// shows about 24 MiB written over those seconds, and about as much read when it reads the file
/// back from storage, whether its own process does it or a child it waits for (whose counts
/// reach the parent's when it is reaped, and must not be counted twice). And the router's part:
/// 20 requests of which 5 are answered 500 move the counts and the 5xx class by exactly that,
/// and a slow endpoint moves the latency's p99 and max past its delay.
#[tokio::test]
async fn the_api_shows_a_dyno_s_storage_bytes_and_the_router_s_errors_and_latency() {
    let dir = TempDir::new("metrics-io");
    let wharf = start(&dir).await;
    std::fs::write(dir.path().join("io.py"), IO_DYNO).unwrap();
    let app = "io-default";
    wharf.api.create_app(app, &[]).await;
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let command = format!("cd {} && exec python3 {}", files.display(), dir.path().join("io.py").display());
    let web = json!({"type": "web", "quantity": 1, "command": command});
    wharf.api.expect("PATCH", &format!("/apps/{app}/formation"), json!({ "updates": [web] }), 200).await;
    let host = "io-default.localhost";
    let statuses = std::cell::RefCell::new(Vec::new());
    eventually(WAIT, "the web dyno to serve", || async {
        let r = client::send(wharf.http, None, &Req::get(host, "/")).await.ok()?;
        statuses.borrow_mut().push(r.status.as_u16());
        (r.status == 200).then_some(())
    })
    .await;
    let waited = statuses.into_inner();

    const MIB: u64 = 1 << 20;
    const N: u64 = 24;
    // (request, bytes it should read, bytes it should write)
    let rows = [
        (format!("/write?name=own&mb={N}&child=0"), 0, N * MIB),
        (format!("/write?name=child&mb={N}&child=1"), 0, N * MIB),
        ("/read?name=own&child=0".to_owned(), N * MIB, 0),
        ("/read?name=child&child=1".to_owned(), N * MIB, 0),
    ];
    for (path, read, written) in rows {
        let from = next_second().await - 1;
        let r = client::send(wharf.http, None, &Req::get(host, &path)).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        let to = next_second().await + 2;
        let (got_read, got_written) = io_bytes(&wharf, app, from, to).await;
        eprintln!("{path}: read {got_read} B, written {got_written} B over {}s", to - from);
        // About the bytes asked for: the interpreter's own reads and writes are small beside
        // 24 MiB, and a count of a child's bytes twice would be twice as much.
        let near = |got: u64, want: u64| {
            if want == 0 { got < MIB } else { got >= want * 9 / 10 && got <= want * 5 / 4 }
        };
        assert!(near(got_read, read), "{path}: {got_read} bytes read, {read} expected");
        assert!(near(got_written, written), "{path}: {got_written} bytes written, {written} expected");
    }

    // The router: 20 requests, 5 answered 500 by the dyno; then two slow ones.
    for i in 0..20 {
        let path = if i % 4 == 0 { "/fail" } else { "/" };
        let status = client::send(wharf.http, None, &Req::get(host, path)).await.unwrap().status;
        assert_eq!(status, if i % 4 == 0 { 500 } else { 200 }, "{path}");
    }
    for _ in 0..2 {
        assert_eq!(client::send(wharf.http, None, &Req::get(host, "/slow")).await.unwrap().status, 200);
    }
    let sent = waited.len() as u64 + 4 + 20 + 2;
    let errors = 5 + waited.iter().filter(|s| (500..600).contains(*s)).count() as u64;
    let steps = eventually(WAIT, "the router's seconds to include every request", || async {
        let (_, body) = metrics(&wharf, app, "?resolution=3600").await;
        let steps = body["requests"].as_array()?.clone();
        let sum = |key: &str| steps.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>();
        (sum("requests") == sent).then_some(steps)
    })
    .await;
    let sum = |key: &str| steps.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("status_5xx"), errors, "{steps:?}");
    let slowest = |key: &str| steps.iter().filter_map(|s| s["latency_ms"][key].as_u64()).max().unwrap_or(0);
    assert!(slowest("p99") >= 2500 && slowest("max") >= 2500, "two requests took 2.5 s: {steps:?}");
}
