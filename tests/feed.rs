//! The security of the data planes' feed, through real processes: each data-plane role's token
//! reads only its role's part of `/v1/snapshot` and calls nothing but its role's endpoints; the
//! retired data-plane token stops start-up; a remote data plane refuses a plain-HTTP control API
//! that is not on this machine; an HTTPS control API feeds a remote router that trusts its CA
//! (`[feed] control_api_ca`, or the system's trust store through `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`) and none that does not; and the copy a data plane keeps on disk is
//! owner-only and holds only its role's part, older copies included.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use wharf_control_api::http::{endpoints, role_may};
use wharf_domain::DataPlaneRole;
use wharf_testkit::certs::TestCa;
use wharf_testkit::client::{self, Api, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::wharf::{FREE_PORTS, Wharf, WharfRouter};
use wharf_testkit::{TempDir, eventually, free_port};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
/// The password in a drain's URL, and a drain's token: a router must never receive either.
const DRAIN_PASSWORD: &str = "drain-s3cret-password";

/// What a remote router answers for `host` over HTTPS, if it answers 200.
async fn body(router: &WharfRouter, host: &str) -> Option<String> {
    let tls = client::tls_config(&router.ca, &[b"http/1.1"]);
    let r = client::send(router.https, Some(&tls), &Req::get(host, "/")).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// A token file `wharf serve` wrote in its data directory.
fn token(data_dir: &Path, file: &str) -> String {
    std::fs::read_to_string(data_dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}")).trim().to_owned()
}

/// Apps with a dyno and a canary, a site, an uploaded certificate with its key, and drains
/// with a password and their own CA: something of every kind the snapshot carries. Returns
/// the certificate's private key and the dynos, which serve as long as they are kept.
async fn populate(api: &Api) -> (String, [DynoServer; 2]) {
    let (one, two) = (DynoServer::start("one").await, DynoServer::start("two").await);
    api.create_app("one-default", &[&one]).await;
    api.create_app("two-default", &[&two]).await;
    api.expect("PUT", "/apps/one-default/canary", json!({"canary_app": "two-default", "weight": 10}), 201).await;
    api.expect("POST", "/sites", json!({"domain": "www.example.com"}), 201).await;
    let route = json!({"app": "one-default", "source_path": "/", "target_path": "/"});
    api.expect("POST", "/sites/www.example.com/routes", route, 201).await;
    let ca = TestCa::new("uploaded");
    let issued = ca.issue(&["www.example.com"], -1, 30);
    let cert = json!({"certificate_chain": issued.chain_pem, "private_key": issued.key_pem});
    api.expect("POST", "/certs", cert, 201).await;
    let https = format!("https://user:{DRAIN_PASSWORD}@127.0.0.1:9/logs");
    api.expect("POST", "/apps/one-default/log-drains", json!({"url": https}), 201).await;
    let tls = json!({"url": "syslog+tls://127.0.0.1:9", "ca": ca.pem()});
    api.expect("POST", "/apps/one-default/log-drains", tls, 201).await;
    (issued.key_pem, [one, two])
}

/// The first snapshot of the watch stream, read as `token`.
async fn first_watched(addr: std::net::SocketAddr, token: &str) -> Value {
    let req = Req::get(&addr.to_string(), "/v1/snapshot/watch").header("authorization", &format!("Bearer {token}"));
    let resp = client::send_streaming(addr, None, &req).await.expect("watch");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    while !seen.contains(&b'\n') {
        let frame = tokio::time::timeout(WAIT, body.frame()).await.expect("a line").expect("more").expect("frame");
        seen.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..]));
    }
    let end = seen.iter().position(|&b| b == b'\n').unwrap();
    serde_json::from_slice(&seen[..end]).expect("a snapshot per line")
}

/// How many entries the snapshot's `field` list holds.
fn count(snapshot: &Value, field: &str) -> usize {
    snapshot[field].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn each_data_plane_token_reads_only_its_role_s_part_and_calls_only_its_endpoints() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let (private_key, _dynos) = populate(&wharf.api).await;
    let key_line = private_key.lines().nth(1).expect("a key's first base64 line").to_owned();
    let tokens = [
        ("admin", wharf.api.token.clone().unwrap()),
        ("router", token(&wharf.data_dir, "router-token")),
        ("logshuttle", token(&wharf.data_dir, "logshuttle-token")),
    ];
    for file in ["admin-token", "router-token", "logshuttle-token"] {
        assert_eq!(mode(&wharf.data_dir.join(file)), 0o600, "{file} is its owner's only");
    }
    assert!(!wharf.data_dir.join("data-plane-token").exists(), "no token for every role any more");

    // Per caller: which lists it receives filled, and which secrets it must (not) see.
    // (caller, apps, drains, sites, certs, canaries, sees the drain password, sees the key)
    let table = [
        ("admin", true, true, true, true, true, true, true),
        ("router", true, false, true, true, true, false, true),
        ("logshuttle", false, true, false, false, false, true, false),
    ];
    let (_, whole) = wharf.api.call("GET", "/v1/snapshot", None).await;
    for (caller, apps, drains, sites, certs, canaries, password, key) in table {
        let token = &tokens.iter().find(|(c, _)| *c == caller).unwrap().1;
        let api = Api { addr: wharf.api.addr, token: Some(token.clone()) };
        let (status, got) = api.call("GET", "/v1/snapshot", None).await;
        assert_eq!(status, 200, "{caller}: {got}");
        let watched = first_watched(wharf.api.addr, token).await;
        for (how, snapshot) in [("GET /v1/snapshot", &got), ("the watch stream", &watched)] {
            let text = snapshot.to_string();
            let what = format!("{caller} through {how}");
            assert_eq!(snapshot["version"], whole["version"], "{what}: the same version");
            for (field, filled) in
                [("apps", apps), ("drains", drains), ("sites", sites), ("certs", certs), ("canaries", canaries)]
            {
                let want = if filled { count(&whole, field) } else { 0 };
                assert!(want > 0 || !filled, "the whole snapshot has {field}");
                assert_eq!(count(snapshot, field), want, "{what}: {field}");
            }
            assert_eq!(text.contains(DRAIN_PASSWORD), password, "{what}: drain password");
            assert_eq!(text.contains(&key_line), key, "{what}: the certificate's private key");
        }
    }

    // A token nobody was given, and none at all: 401 on the feed.
    for token in [Some("not-a-token-anyone-was-given".to_owned()), None] {
        let api = Api { addr: wharf.api.addr, token: token.clone() };
        for path in ["/v1/snapshot", "/v1/snapshot/watch"] {
            let (status, out) = api.call("GET", path, None).await;
            assert_eq!((status, out["id"].as_str()), (401, Some("unauthorized")), "{token:?} GET {path}: {out}");
        }
    }

    // Every endpoint behind the admin token that a role may not call is 403 for its token, and
    // nothing changes; the ones it may call are not refused.
    // The open routes: no token, the three whose URL is the capability (a slug's blob URL, a
    // build's and a release's output stream), which answer for the URL, not for a token, and GitHub's
    // pull-request webhook, authenticated by its signature.
    let open = [
        "/healthz",
        "/openapi.json",
        "/slugs/{slug}/blob",
        "/builds/{build}/output",
        "/releases/{release}/output",
        "/apps/{app}/previews/webhook",
    ];
    for (role, caller) in [(DataPlaneRole::Router, "router"), (DataPlaneRole::Logshuttle, "logshuttle")] {
        let token = tokens.iter().find(|(c, _)| *c == caller).unwrap().1.clone();
        let api = Api { addr: wharf.api.addr, token: Some(token) };
        let mut refused = 0;
        for endpoint in endpoints().filter(|e| !open.contains(&e.path)) {
            let path = fill(endpoint.path);
            let body = (endpoint.method != "GET" && endpoint.method != "DELETE").then(|| json!({}));
            if role_may(role).contains(&(endpoint.method, endpoint.path)) {
                if endpoint.path.ends_with("/watch") {
                    continue; // A stream that does not end; read above.
                }
                let (status, out) = api.call(endpoint.method, &path, body).await;
                assert!(status != 401 && status != 403, "{caller} {} {path}: {status} {out}", endpoint.method);
                continue;
            }
            let (status, out) = api.call(endpoint.method, &path, body).await;
            assert_eq!(
                (status, out["id"].as_str()),
                (403, Some("forbidden")),
                "{caller} {} {path}: {out}",
                endpoint.method
            );
            refused += 1;
        }
        assert!(refused > 50, "{caller}: {refused} endpoints refused; the table is the API's");
    }
    let (_, after) = wharf.api.call("GET", "/v1/snapshot", None).await;
    assert_eq!(after, whole, "the refused calls changed nothing");
}

/// A path template with every `{param}` filled in: the token is checked before the parameters.
fn fill(template: &str) -> String {
    template.split('/').map(|seg| if seg.starts_with('{') { "one-default" } else { seg }).collect::<Vec<_>>().join("/")
}

/// Runs `wharf ARGS` in a fresh data directory with `env` and waits for it to exit: it must
/// fail at once, before listening or connecting; returns what it wrote to standard error.
async fn refused_at_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = TempDir::new("refused");
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(WHARF)
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("WHARF_ADMIN_TOKEN")
            .env_remove("WHARF_DATA_PLANE_TOKEN")
            .env_remove("WHARF_ROUTER_TOKEN")
            .env_remove("WHARF_LOGSHUTTLE_TOKEN")
            .env_remove("WHARF_SESSION_SECRET")
            .envs(FREE_PORTS)
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("wharf {args:?} was not refused at start"))
    .expect("wharf runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "wharf {args:?} started: {stderr}");
    assert!(!dir.path().join("data/addresses.json").exists(), "wharf {args:?} became ready: {stderr}");
    stderr
}

#[tokio::test]
async fn the_retired_data_plane_token_stops_every_command_at_start() {
    let env = [("WHARF_DATA_PLANE_TOKEN", "an-old-data-plane-token-0123456789")];
    for args in [
        &["serve"][..],
        &["router", "--control-api", "http://127.0.0.1:5000"],
        &["logshuttle", "--control-api", "http://127.0.0.1:5000", "--kafka", "127.0.0.1:9092"],
    ] {
        let stderr = refused_at_start(args, &env).await;
        for named in ["WHARF_DATA_PLANE_TOKEN", "WHARF_ROUTER_TOKEN", "WHARF_LOGSHUTTLE_TOKEN"] {
            assert!(stderr.contains(named), "wharf {args:?} should name {named}: {stderr}");
        }
    }
}

#[tokio::test]
async fn a_remote_data_plane_refuses_cleartext_to_another_machine() {
    const RULE: &str = "plain http:// only on a loopback address";
    let tokens =
        [("WHARF_ROUTER_TOKEN", "router-token-0123456789"), ("WHARF_LOGSHUTTLE_TOKEN", "shuttle-token-0123456789")];
    let refused = [
        ("router", "http://10.0.0.1:5000", RULE),
        ("router", "http://control.example.com:5000", RULE),
        ("router", "http://[::ffff:10.0.0.1]:5000", RULE),
        ("router", "http://[2001:db8::1]:5000", RULE),
        ("router", "http://127.0.0.1.example.com", RULE),
        ("logshuttle", "http://10.0.0.1:5000", RULE),
        ("router", "ftp://127.0.0.1:5000", "must look like https://host:port"),
        ("router", "http://127.0.0.1:5000/v1", "must look like https://host:port"),
        ("router", "https://127.0.0.1:0", "must look like https://host:port"),
    ];
    for (command, url, want) in refused {
        let args = [command, "--control-api", url, "--kafka", "127.0.0.1:9092"];
        let args = if command == "router" { &args[..3] } else { &args[..] };
        let stderr = refused_at_start(args, &tokens).await;
        assert!(stderr.contains(want), "wharf {command} --control-api {url}: {stderr}");
    }

    // A missing role token is refused too, naming the variable and the file.
    let stderr = refused_at_start(&["router", "--control-api", "http://127.0.0.1:5000"], &[]).await;
    assert!(stderr.contains("WHARF_ROUTER_TOKEN") && stderr.contains("router-token"), "{stderr}");
    // So is a logshuttle's missing (or short) session secret: with a key of its own it would
    // refuse every log session URL the control APIs sign.
    let shuttle = ["logshuttle", "--control-api", "http://127.0.0.1:5000", "--kafka", "127.0.0.1:9092"];
    for secret in [None, Some("short")] {
        let env: Vec<(&str, &str)> = tokens.into_iter().chain(secret.map(|s| ("WHARF_SESSION_SECRET", s))).collect();
        let stderr = refused_at_start(&shuttle, &env).await;
        assert!(stderr.contains("WHARF_SESSION_SECRET"), "{secret:?}: {stderr}");
    }

    // Loopback in every spelling starts (the control API need not be there), and so does
    // another machine when the operator allows cleartext.
    let dir = TempDir::new("cleartext");
    let port = free_port();
    let allowed = [
        (format!("http://127.0.0.1:{port}"), None),
        (format!("http://127.1.2.3:{port}/"), None),
        (format!("http://[::1]:{port}"), None),
        (format!("http://localhost:{port}"), None),
        ("http://10.0.0.1:5000".to_owned(), Some(("WHARF_FEED__ALLOW_CLEARTEXT", "true"))),
    ];
    for (i, (url, extra)) in allowed.iter().enumerate() {
        let env: Vec<(&str, &str)> = extra.iter().copied().collect();
        let router =
            WharfRouter::start_with(WHARF, url, "router-token-0123456789", &dir.path().join(i.to_string()), &env).await;
        router.kill().await;
    }
}

/// Calls the HTTPS control API at `addr` (name `host`) as `token`.
async fn https_call(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Result<(u16, Value), String> {
    let mut req = Req::get("127.0.0.1", path).header("authorization", &format!("Bearer {token}"));
    req.method = method.parse().expect("method");
    if !body.is_null() {
        req = req.header("content-type", "application/json");
        req.body = Bytes::from(body.to_string());
    }
    let r = client::send(addr, Some(tls), &req).await?;
    Ok((r.status.as_u16(), if r.body.is_empty() { Value::Null } else { r.json() }))
}

/// `wharf serve` with its control API on HTTPS at `listen`, with a certificate for `127.0.0.1`
/// and `localhost` issued by a test CA; returns it and the CA's file.
async fn https_control_api(dir: &Path, listen: &str) -> (Wharf, std::path::PathBuf) {
    let ca = TestCa::new("control api");
    let issued = ca.issue(&["127.0.0.1", "localhost"], -1, 30);
    let (cert, key, ca_file) = (dir.join("api.pem"), dir.join("api.key"), dir.join("ca.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let env = [
        ("WHARF_CONTROL_API__LISTEN", listen),
        ("WHARF_CONTROL_API__TLS_CERT", cert_s.as_str()),
        ("WHARF_CONTROL_API__TLS_KEY", key_s.as_str()),
    ];
    (Wharf::serve_with(WHARF, &[], &dir.join("control"), &env).await, ca_file)
}

#[tokio::test]
async fn an_https_control_api_feeds_a_remote_logshuttle_its_part_only() {
    use wharf_testkit::tansu::Tansu;
    use wharf_testkit::wharf::WharfLogshuttle;

    let broker = Tansu::start().await;
    let dir = TempDir::new("https-logshuttle");
    let listen = format!("127.0.0.1:{}", free_port());
    let (wharf, ca_file) = https_control_api(dir.path(), &listen).await;
    let tls = client::tls_config(&ca_file, &[b"http/1.1"]);
    let admin = wharf.api.token.clone().unwrap();
    let call = |method: &'static str, path: &'static str, body: Value| {
        let (tls, admin) = (tls.clone(), admin.clone());
        async move { https_call(wharf.api.addr, &tls, &admin, method, path, body).await.unwrap() }
    };
    assert_eq!(call("POST", "/apps", json!({"name": "api", "space": "default"})).await.0, 201);
    let url = format!("https://user:{DRAIN_PASSWORD}@127.0.0.1:9/logs");
    let (status, drain) = call("POST", "/apps/api-default/log-drains", json!({"url": url})).await;
    assert_eq!(status, 201, "{drain}");
    let uploaded = TestCa::new("uploaded").issue(&["www.example.com"], -1, 30);
    let cert = json!({"certificate_chain": uploaded.chain_pem, "private_key": uploaded.key_pem});
    assert_eq!(call("POST", "/certs", cert).await.0, 201);

    let secret = token(&wharf.data_dir, "session-secret");
    let (token, ca) = (token(&wharf.data_dir, "logshuttle-token"), ca_file.display().to_string());
    let env = [
        ("WHARF_LOGSHUTTLE_TOKEN", token.as_str()),
        ("WHARF_SESSION_SECRET", secret.as_str()),
        ("WHARF_FEED__CONTROL_API_CA", ca.as_str()),
        ("WHARF_LOGSHUTTLE__LISTEN", "127.0.0.1:0"),
    ];
    let remote_dir = dir.path().join("remote");
    let remote =
        WharfLogshuttle::start(WHARF, &format!("https://{listen}"), &broker.brokers(), &remote_dir, &env).await;
    let label = format!("drain=\"{}\"", drain["id"].as_str().unwrap());
    eventually(WAIT, "the remote logshuttle to run the drain it follows over HTTPS", || async {
        let r = client::send(remote.addr, None, &Req::get("localhost", "/metrics")).await.ok()?;
        r.text().contains(&label).then_some(())
    })
    .await;
    let kept = remote_dir.join("feed/snapshot.json");
    assert_eq!((mode(&remote_dir.join("feed")), mode(&kept)), (0o700, 0o600));
    let text = std::fs::read_to_string(&kept).unwrap();
    let key_line = uploaded.key_pem.lines().nth(1).unwrap();
    assert!(text.contains(DRAIN_PASSWORD), "the logshuttle keeps its drains' credentials");
    assert!(!text.contains(key_line) && text.contains("\"certs\":[]"), "and no certificate: {text}");
}

#[tokio::test]
async fn an_https_control_api_feeds_a_remote_router_that_trusts_its_ca_and_no_other() {
    let dir = TempDir::new("https-feed");
    let wrong_ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, TestCa::new("another").pem()).unwrap();

    let listen = format!("127.0.0.1:{}", free_port());
    let (wharf, ca_file) = https_control_api(dir.path(), &listen).await;
    let control = wharf.data_dir.clone();
    let admin = wharf.api.token.clone().unwrap();
    let tls = client::tls_config(&ca_file, &[b"http/1.1"]);

    // The API answers over HTTPS only.
    let plain = client::send(wharf.api.addr, None, &Req::get("127.0.0.1", "/healthz")).await;
    assert!(plain.is_err(), "plain HTTP to the HTTPS API: {:?}", plain.map(|r| r.status));
    let one = DynoServer::start("one").await;
    let app = json!({"name": "one", "space": "default"});
    assert_eq!(https_call(wharf.api.addr, &tls, &admin, "POST", "/apps", app).await.unwrap().0, 201);
    let dyno = json!({"type": "web", "host": "127.0.0.1", "port": one.port()});
    let put = https_call(wharf.api.addr, &tls, &admin, "PUT", "/apps/one-default/dynos/web.1", dyno).await;
    assert_eq!(put.unwrap().0, 201);
    let (status, session) =
        https_call(wharf.api.addr, &tls, &admin, "POST", "/apps/one-default/log-sessions", json!({"lines": 1}))
            .await
            .unwrap();
    assert_eq!(status, 201, "{session}");
    assert!(session["logplex_url"].as_str().unwrap().starts_with("https://"), "sessions on the HTTPS API: {session}");

    // A router trusting the API's CA follows it, by address or by name, whether the CA is its
    // `[feed] control_api_ca` or in the system's trust store as OpenSSL (and rustls-native-certs)
    // finds it: `SSL_CERT_FILE`, or a file in `SSL_CERT_DIR`. One trusting another CA in any of
    // these, or only the machine's own store, refuses the API's certificate, says where its
    // trust comes from, and never receives the feed.
    let router_token = token(&control, "router-token");
    let (ca_dir, wrong_dir) = (dir.path().join("ca-dir"), dir.path().join("wrong-dir"));
    for (d, from) in [(&ca_dir, &ca_file), (&wrong_dir, &wrong_ca)] {
        std::fs::create_dir(d).unwrap();
        std::fs::copy(from, d.join("a-ca.pem")).unwrap();
    }
    let path = |p: &Path| p.display().to_string();
    let empty_dir = dir.path().join("empty-dir");
    std::fs::create_dir(&empty_dir).unwrap();
    let nothing = vec![("SSL_CERT_FILE", path(&dir.path().join("missing.pem"))), ("SSL_CERT_DIR", path(&empty_dir))];
    let by_name = format!("https://localhost:{}", wharf.api.addr.port());
    let by_address = format!("https://{listen}");
    // (case, URL, environment, followed)
    let cases = [
        ("control_api_ca", &by_address, vec![("WHARF_FEED__CONTROL_API_CA", path(&ca_file))], true),
        ("control_api_ca, by name", &by_name, vec![("WHARF_FEED__CONTROL_API_CA", path(&ca_file))], true),
        ("SSL_CERT_FILE", &by_address, vec![("SSL_CERT_FILE", path(&ca_file))], true),
        ("SSL_CERT_DIR", &by_name, vec![("SSL_CERT_DIR", path(&ca_dir))], true),
        ("another control_api_ca", &by_address, vec![("WHARF_FEED__CONTROL_API_CA", path(&wrong_ca))], false),
        ("the machine's own store", &by_address, vec![], false),
        ("another CA in SSL_CERT_FILE", &by_address, vec![("SSL_CERT_FILE", path(&wrong_ca))], false),
        ("another CA in SSL_CERT_DIR", &by_name, vec![("SSL_CERT_DIR", path(&wrong_dir))], false),
        // Variables naming no certificate (a typo, an empty directory) trust nothing of the
        // system, not the compiled-in roots (FE39).
        ("a missing SSL_CERT_FILE and an empty SSL_CERT_DIR", &by_address, nothing.clone(), false),
    ];
    for (i, (case, url, env, followed)) in cases.iter().enumerate() {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let data = dir.path().join(format!("router{i}"));
        let router = WharfRouter::start_with(WHARF, url, &router_token, &data, &env).await;
        if *followed {
            eventually(WAIT, &format!("{case}: the router following the HTTPS API to serve the app"), || async {
                (body(&router, "one-default.localhost").await.as_deref() == Some("one")).then_some(())
            })
            .await;
        } else {
            eventually(WAIT, "the router to refuse the API's certificate", || async {
                router.stderr().contains("invalid peer certificate: UnknownIssuer").then_some(())
            })
            .await;
            let log = router.stderr();
            assert!(log.contains("signed by no CA trusted here (the system's trust store"), "{case}: {log}");
            let named_nothing = log.contains("SSL_CERT_FILE/SSL_CERT_DIR name no usable certificate");
            assert_eq!(named_nothing, case.starts_with("a missing"), "{case}: {log}");
            assert_eq!(body(&router, "one-default.localhost").await, None, "{case}: nothing served");
            assert!(!data.join("feed/snapshot.json").exists(), "{case}: no snapshot kept");
        }
        router.kill().await;
    }
}

#[tokio::test]
async fn a_control_api_with_an_unusable_certificate_does_not_start() {
    let dir = TempDir::new("bad-api-cert");
    let ca = TestCa::new("control api");
    let (a, b) = (ca.issue(&["127.0.0.1"], -1, 30), ca.issue(&["127.0.0.1"], -1, 30));
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert_a, key_b, empty) = (file("a.pem", &a.chain_pem), file("b.key", &b.key_pem), file("empty.pem", ""));
    let missing = dir.path().join("missing.pem").display().to_string();
    // (tls_cert, tls_key, what the error says)
    for (cert, key, want) in [
        (cert_a.as_str(), key_b.as_str(), "not usable with"),
        (empty.as_str(), key_b.as_str(), "holds no PEM certificate"),
        (cert_a.as_str(), empty.as_str(), "not a PEM private key"),
        (missing.as_str(), key_b.as_str(), "cannot read"),
        (key_b.as_str(), cert_a.as_str(), "holds no PEM certificate"),
    ] {
        let env = [("WHARF_CONTROL_API__TLS_CERT", cert), ("WHARF_CONTROL_API__TLS_KEY", key)];
        let stderr = refused_at_start(&["serve"], &env).await;
        assert!(
            stderr.contains("cannot serve the control API over HTTPS") && stderr.contains(want),
            "{cert} {key}: {stderr}"
        );
    }
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn the_kept_copy_is_owner_only_and_holds_only_the_role_s_part_older_copies_too() {
    let wharf = Wharf::serve(WHARF, &[]).await;
    let _dynos = populate(&wharf.api).await;
    let (_, whole) = wharf.api.call("GET", "/v1/snapshot", None).await;
    assert!(whole.to_string().contains(DRAIN_PASSWORD));
    let router_token = token(&wharf.data_dir, "router-token");
    // A control API that is not there: whatever the router keeps comes from its own copy.
    let away = format!("http://127.0.0.1:{}", free_port());
    let dir = TempDir::new("kept");
    let set_mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();

    // An older Wharf kept the whole snapshot in the data directory itself, readable by all; or
    // a copy in feed/ was loosened by hand.
    let old_place = dir.path().join("old");
    std::fs::create_dir_all(&old_place).unwrap();
    std::fs::write(old_place.join("snapshot.json"), whole.to_string()).unwrap();
    set_mode(&old_place.join("snapshot.json"), 0o644);
    let loosened = dir.path().join("loosened");
    std::fs::create_dir_all(loosened.join("feed")).unwrap();
    std::fs::write(loosened.join("feed/snapshot.json"), whole.to_string()).unwrap();
    set_mode(&loosened.join("feed"), 0o755);
    set_mode(&loosened.join("feed/snapshot.json"), 0o644);

    for data_dir in [&old_place, &loosened] {
        let router = WharfRouter::start(WHARF, &away, &router_token, data_dir).await;
        let kept = data_dir.join("feed/snapshot.json");
        assert_eq!(mode(&data_dir.join("feed")), 0o700, "{}", data_dir.display());
        assert_eq!(mode(&kept), 0o600, "{}", kept.display());
        assert!(!data_dir.join("snapshot.json").exists(), "the copy left the data directory");
        let text = std::fs::read_to_string(&kept).unwrap();
        assert!(
            !text.contains(DRAIN_PASSWORD) && !text.contains("drains\":[{"),
            "a router's copy has no drain: {text}"
        );
        let copy: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(copy["version"], whole["version"]);
        assert_eq!(count(&copy, "certs"), count(&whole, "certs"), "the router's own part is kept");
        // And it serves from it: the copy was cut, not thrown away.
        let tls = client::tls_config(&router.ca, &[b"http/1.1"]);
        let r = client::send(router.https, Some(&tls), &Req::get("one-default.localhost", "/")).await.unwrap();
        assert_eq!(r.status, 200, "served from the kept copy");
        router.kill().await;
    }

    // A fresh copy, taken from the live feed, is owner-only in an owner-only directory too.
    let url = format!("http://{}", wharf.api.addr);
    let fresh = dir.path().join("fresh");
    let router = WharfRouter::start(WHARF, &url, &router_token, &fresh).await;
    let kept = fresh.join("feed/snapshot.json");
    eventually(WAIT, "the router to keep the feed's snapshot", || async { kept.exists().then_some(()) }).await;
    assert_eq!((mode(&fresh.join("feed")), mode(&kept)), (0o700, 0o600));
    router.kill().await;
}
