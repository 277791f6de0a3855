//! The local supervisor, `wharf serve`'s own runtime, with real processes: a formation's command
//! runs as web dynos the router serves once they are healthy, with the app's config vars; their
//! output reaches the app's drains; a change rolls to new dynos under load without one failed
//! request; a crashing command is restarted and its crashes logged; a worker is listed and
//! restarted by name; a release that fails its
//! health check leaves the old dynos serving; and stopping Wharf stops the dynos.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use wharf_testkit::client::{self, Req};
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
const HOST: &str = "api-default.localhost";

/// A small web app: answers `GET /` with `$GREETING` and `GET /NAME` with `$NAME`, and says
/// where it listens.
const SERVER: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        name = self.path[1:] or "GREETING"
        body = os.environ.get(name, "none").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
port = int(os.environ["PORT"])
print("listening on", port, "as", os.environ["DYNO"], flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

async fn answer(wharf: &Wharf) -> Option<String> {
    let r = client::send(wharf.http, None, &Req::get(HOST, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// The app's web dynos' names.
async fn dyno_names(wharf: &Wharf) -> Vec<String> {
    dynos_of_type(wharf, "web").await.into_iter().map(|(name, _)| name).collect()
}

/// The app's dynos of one type, with their states, as `GET /apps/{app}/dynos` lists them.
async fn dynos_of_type(wharf: &Wharf, dyno_type: &str) -> Vec<(String, String)> {
    let (_, dynos) = wharf.api.call("GET", "/apps/api-default/dynos", None).await;
    let of_type = dynos.as_array().into_iter().flatten().filter(|d| d["type"] == dyno_type);
    of_type.filter_map(|d| Some((d["name"].as_str()?.to_owned(), d["state"].as_str()?.to_owned()))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_runs_rolls_and_restarts_real_processes() {
    let dir = TempDir::new("supervisor");
    let script = dir.path().join("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let env = [
        ("WHARF_ROUTER__HTTP_REDIRECT", "false"),
        ("WHARF_SUPERVISOR__RESTART_MIN", "200ms"),
        ("WHARF_SUPERVISOR__CONNECTION_GRACE", "500ms"),
        ("WHARF_SUPERVISOR__STOP_GRACE", "2s"),
        ("WHARF_SUPERVISOR__HEALTH_TIMEOUT", "20s"),
    ];
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &env).await;
    let api = &wharf.api;
    api.create_app("api-default", &[]).await;
    let receiver = SyslogReceiver::tcp().await;
    let drain = api.expect("POST", "/apps/api-default/log-drains", json!({"url": receiver.url()}), 201).await;
    let label = format!("drain=\"{}\"", drain["id"].as_str().unwrap());
    eventually(WAIT, "the logshuttle to run the drain", || async {
        let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
        r.text().contains(&label).then_some(())
    })
    .await;

    api.expect("PATCH", "/apps/api-default/config-vars", json!({"GREETING": "hello"}), 200).await;
    let command = format!("exec python3 {}", script.display());
    let web = json!({"updates": [{"type": "web", "quantity": 2, "command": command}]});
    api.expect("PATCH", "/apps/api-default/formation", web, 200).await;
    eventually(WAIT, "the app to answer through the router", || async {
        (answer(&wharf).await.as_deref() == Some("hello")).then_some(())
    })
    .await;
    let first = eventually(WAIT, "both dynos to be healthy", || async {
        let names = dyno_names(&wharf).await;
        (names.len() == 2).then_some(names)
    })
    .await;
    assert!(first.iter().all(|n| n.starts_with("web.1-") && n.len() == "web.1-".len() + 5), "{first:?}");
    let said = eventually(WAIT, "the dynos' output at the drain", || async {
        let msgs: Vec<_> = receiver.messages().into_iter().filter(|m| m.text().starts_with("listening on")).collect();
        (msgs.len() >= 2).then_some(msgs)
    })
    .await;
    for m in &said {
        assert_eq!(m.app_name, "app");
        assert!(first.contains(&m.procid), "{} is one of {first:?}", m.procid);
    }

    // A config change rolls to new dynos while requests keep coming: none of them fails.
    let done = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (done, http) = (done.clone(), wharf.http);
        async move {
            let mut answers = Vec::new();
            while !done.load(Ordering::Relaxed) {
                answers.extend(client::load(http, HOST, "/", 100, 4).await?);
            }
            Ok::<_, String>(answers)
        }
    });
    api.expect("PATCH", "/apps/api-default/config-vars", json!({"GREETING": "bonjour"}), 200).await;
    eventually(WAIT, "the new release to serve alone", || async {
        let names = dyno_names(&wharf).await;
        let rolled = names.len() == 2 && names.iter().all(|n| n.starts_with("web.2-"));
        (rolled && answer(&wharf).await.as_deref() == Some("bonjour")).then_some(())
    })
    .await;
    // Keep the load on until the old dynos have stopped.
    tokio::time::timeout(WAIT, async {
        while !first.iter().all(|n| std::net::TcpStream::connect(port_of(&said, n)).is_err()) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the old dynos stop");

    // Restarting one dyno replaces it; restarting them all rolls a new release; still under load.
    let second = dyno_names(&wharf).await;
    let one = &second[0];
    let (status, _) = api.call("DELETE", &format!("/apps/api-default/dynos/{one}"), None).await;
    assert_eq!(status, 202);
    eventually(WAIT, "the dyno to be replaced", || async {
        let names = dyno_names(&wharf).await;
        let replaced = names.len() == 2 && !names.contains(one) && names.contains(&second[1]);
        (replaced && names.iter().all(|n| n.starts_with("web.2-"))).then_some(())
    })
    .await;
    let (status, _) = api.call("DELETE", "/apps/api-default/dynos", None).await;
    assert_eq!(status, 202);
    eventually(WAIT, "every dyno to be restarted", || async {
        let names = dyno_names(&wharf).await;
        (names.len() == 2 && names.iter().all(|n| n.starts_with("web.3-"))).then_some(())
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let answers = load.await.unwrap().expect("no request failed outright");
    assert!(answers.len() >= 100);
    let bad: Vec<_> = answers.iter().filter(|a| a.status != 200).map(|a| a.status).collect();
    assert!(bad.is_empty(), "{} of {} requests failed during the rolls: {bad:?}", bad.len(), answers.len());

    // Apps in one space find each other at NAME_SERVICE_HOST:NAME_SERVICE_PORT, a stable port
    // in front of the other app's dynos; the first app rolls to get it.
    api.expect("POST", "/apps", json!({"name": "other", "space": "default"}), 201).await;
    api.expect("PATCH", "/apps/other-default/config-vars", json!({"GREETING": "from other"}), 200).await;
    let other = json!({"updates": [{"type": "web", "quantity": 1, "command": command}]});
    api.expect("PATCH", "/apps/other-default/formation", other, 200).await;
    let (host, port) = eventually(WAIT, "the app to learn the other's service", || async {
        let get =
            |path| async move { client::send(wharf.http, None, &Req::get(HOST, path)).await.ok().map(|r| r.text()) };
        let host = get("/OTHER_SERVICE_HOST").await.filter(|h| h != "none")?;
        let port: u16 = get("/OTHER_SERVICE_PORT").await?.parse().ok()?;
        Some((host, port))
    })
    .await;
    let via_service =
        client::send(format!("{host}:{port}").parse().unwrap(), None, &Req::get("other", "/")).await.unwrap();
    assert_eq!(via_service.text(), "from other");
    eventually(WAIT, "the new variables to roll the app", || async {
        let names = dyno_names(&wharf).await;
        (names.len() == 2 && names.iter().all(|n| n.starts_with("web.4-"))).then_some(())
    })
    .await;

    api.expect("POST", "/apps", json!({"name": "external", "space": "default"}), 201).await;
    let (status, out) = api.call("DELETE", "/apps/external-default/dynos", None).await;
    assert_eq!(status, 422, "{out}");
    assert!(out["message"].as_str().unwrap().contains("external runtime"), "{out}");
    assert!(answers.iter().all(|a| a.body == "hello" || a.body == "bonjour"));

    // A crashing command is restarted, and each crash is logged.
    let worker = json!({"updates": [{"type": "worker", "quantity": 1, "command": "echo boom; exit 3"}]});
    api.expect("PATCH", "/apps/api-default/formation", worker, 200).await;
    eventually(WAIT, "the worker to crash and restart", || async {
        let msgs = receiver.messages();
        let booms = msgs.iter().filter(|m| m.text() == "boom").count();
        let crashes = msgs
            .iter()
            .filter(|m| m.text().starts_with("at=error code=H10 desc=\"App crashed\" dyno=worker.1-"))
            .count();
        (booms >= 3 && crashes >= 2).then_some(())
    })
    .await;
    eventually(WAIT, "the crashed worker to be listed as crashed", || async {
        let workers = dynos_of_type(&wharf, "worker").await;
        (workers.len() == 1 && workers[0].1 == "crashed").then_some(())
    })
    .await;

    // A worker is listed, and restarted by name: a new one replaces it, and the old process ends.
    let sleeper = json!({"updates": [{"type": "worker", "command": "echo worker $$ is $DYNO; exec sleep 600"}]});
    api.expect("PATCH", "/apps/api-default/formation", sleeper, 200).await;
    let said = |name: &str| {
        let msgs = receiver.messages();
        let m = msgs.iter().find(|m| m.procid == name && m.text().starts_with("worker "))?;
        m.text().split_whitespace().nth(1)?.parse::<u32>().ok()
    };
    let (first, first_pid) = eventually(WAIT, "a worker to be up", || async {
        let workers = dynos_of_type(&wharf, "worker").await;
        let [(name, state)] = &workers[..] else { return None };
        let pid = said(name)?;
        (state == "up").then(|| (name.clone(), pid))
    })
    .await;
    let (_, listed) = api.call("GET", &format!("/apps/api-default/dynos/{first}"), None).await;
    assert_eq!((&listed["type"], &listed["state"], &listed["port"]), (&json!("worker"), &json!("up"), &json!(null)));
    let restarted = api.expect("DELETE", &format!("/apps/api-default/dynos/{first}"), json!(null), 202).await;
    assert_eq!(restarted["name"], json!(first));
    eventually(WAIT, "another worker to replace the restarted one", || async {
        let workers = dynos_of_type(&wharf, "worker").await;
        let [(name, state)] = &workers[..] else { return None };
        let gone = !std::path::Path::new(&format!("/proc/{first_pid}")).exists();
        (name != &first && state == "up" && gone).then_some(())
    })
    .await;
    api.expect("PATCH", "/apps/api-default/formation/worker", json!({"quantity": 0}), 200).await;

    // A release that never becomes healthy leaves the running one serving.
    let broken = json!({"updates": [{"type": "web", "command": "exit 1"}]});
    api.expect("PATCH", "/apps/api-default/formation", broken, 200).await;
    eventually(WAIT, "the failed release to be reported", || async {
        receiver.messages().iter().any(|m| m.text().contains("code=R10")).then_some(())
    })
    .await;
    assert_eq!(answer(&wharf).await.as_deref(), Some("bonjour"), "the old release still serves");
    let serving = dyno_names(&wharf).await;
    assert!(serving.len() == 2 && serving.iter().all(|n| n.starts_with("web.4-")), "{serving:?}");

    // Stopping Wharf stops its dynos.
    let last = eventually(WAIT, "the serving dynos' output at the drain", || async {
        let msgs: Vec<_> = receiver.messages().into_iter().filter(|m| m.text().starts_with("listening on")).collect();
        serving.iter().all(|n| msgs.iter().any(|m| &m.procid == n)).then_some(msgs)
    })
    .await;
    let (ok, _) = wharf.terminate().await;
    assert!(ok);
    for name in &serving {
        assert!(std::net::TcpStream::connect(port_of(&last, name)).is_err(), "{name} stopped with Wharf");
    }
}

/// The address dyno `name` said it listens on.
fn port_of(said: &[wharf_testkit::rfc5424::SyslogMessage], name: &str) -> std::net::SocketAddr {
    let m = said.iter().find(|m| m.procid == name).unwrap_or_else(|| panic!("{name} said where it listens"));
    let port: u16 = m.text().split_whitespace().nth(2).and_then(|p| p.parse().ok()).expect("a port");
    ([127, 0, 0, 1], port).into()
}
