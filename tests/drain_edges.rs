//! Drains at the edges of real receivers (issue 18): every example there, end to end through
//! `wharf serve` (embedded bus) to receivers on loopback, nginx among them.
//!
//! - Hosts go on the wire as URLs write them: an HTTPS drain on `[::1]` through nginx, and
//!   every drain kind on IPv6.
//! - HTTPS batches are capped in bytes, and a 413 splits a batch down to one line.
//! - A 3xx is retried, not refused.
//! - A long line arrives whole, in chunks of at most 10,000 bytes cut on character boundaries.
//! - Refused lines are announced in the drain's own stream (L13).
//! - A UDP datagram is never cut inside a character.
//! - The same receiver under another spelling is a duplicate (409).
//! - The outbound policy refuses link-local, multicast, broadcast and unspecified addresses at
//!   once, and loopback when configured, by IP literal (422) and by name (at connect time).
//! - A drain's CA comes as PEM through the API; `ca=` in a URL is refused.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::certs::TestCa;
use wharf_testkit::client::{self, Req};
use wharf_testkit::logplex::{LogplexPost, LogplexReceiver};
use wharf_testkit::nginx::Nginx;
use wharf_testkit::rfc5424::SyslogMessage;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
const APP: &str = "api-default";

/// `wharf serve` on the embedded bus with quick reconnections and `env` on top.
async fn start(dir: &TempDir, env: &[(&str, &str)]) -> Wharf {
    let mut all = vec![("WHARF_LOGSHUTTLE__RECONNECT_MIN", "20ms"), ("WHARF_LOGSHUTTLE__RECONNECT_MAX", "200ms")];
    all.extend_from_slice(env);
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &all).await;
    wharf.api.create_app(APP, &[]).await;
    wharf
}

/// Adds a drain with `body` and waits until the logshuttle runs it; returns its id.
async fn add_drain(wharf: &Wharf, body: Value) -> String {
    let out = wharf.api.expect("POST", &format!("/apps/{APP}/log-drains"), body, 201).await;
    let id = out["id"].as_str().expect("drain id").to_owned();
    let label = format!("drain=\"{id}\"");
    eventually(WAIT, "the logshuttle to run the drain", || async {
        metric(wharf, "wharf_drain_lines_pushed_total", &[&label]).await
    })
    .await;
    id
}

/// Posts `messages` to `/log-events`, 100 to a request (the API takes bodies up to 1 MiB).
async fn ingest(wharf: &Wharf, messages: &[String]) {
    for chunk in messages.chunks(100) {
        let events: Vec<Value> =
            chunk.iter().map(|m| json!({"app": APP, "source": "app", "process": "web.1", "message": m})).collect();
        let out = wharf.api.expect("POST", "/log-events", Value::Array(events), 202).await;
        assert_eq!(out["accepted"], chunk.len());
    }
}

/// The value of the metric `name` whose labels include each of `labels`.
async fn metric(wharf: &Wharf, name: &str, labels: &[&str]) -> Option<u64> {
    let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
    r.text()
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// The drain's last error, as `/metrics` shows it.
async fn last_error(wharf: &Wharf, id: &str) -> Option<String> {
    let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
    let label = format!("drain=\"{id}\"");
    r.text().lines().find(|l| l.starts_with("wharf_drain_last_error_info") && l.contains(&label)).map(str::to_owned)
}

/// Messages delivered (in 2xx answers) to a logplex receiver.
fn delivered(posts: &[LogplexPost]) -> Vec<SyslogMessage> {
    posts.iter().filter(|p| p.status < 300).flat_map(|p| p.messages.clone()).collect()
}

/// Waits until the receiver holds `n` delivered app lines (not notices), and returns every
/// delivered message.
async fn logplex_lines(receiver: &LogplexReceiver, n: usize, what: &str) -> Vec<SyslogMessage> {
    eventually(WAIT, what, || async {
        let msgs = delivered(&receiver.posts());
        (msgs.iter().filter(|m| m.app_name == "app").count() >= n).then_some(msgs)
    })
    .await
}

async fn syslog_lines(receiver: &SyslogReceiver, n: usize, what: &str) -> Vec<SyslogMessage> {
    eventually(WAIT, what, || async {
        let msgs = receiver.messages();
        (msgs.len() >= n).then_some(msgs)
    })
    .await
}

fn loopback6(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
}

#[tokio::test]
async fn drains_on_ipv6_get_every_line_with_hosts_written_as_urls_write_them() {
    let dir = TempDir::new("ipv6-drains");
    let wharf = start(&dir, &[]).await;
    let ca = TestCa::new("IPv6 receivers' CA");
    // nginx refuses `Host: ::1:PORT` with 400; behind it, a plain receiver.
    let backend = LogplexReceiver::plain(&[]).await;
    let nginx = Nginx::https_proxy(&ca, loopback6(0), &["::1"], backend.addr).await;
    let direct = LogplexReceiver::start_at(&ca, loopback6(0), &["::1"], &[]).await;
    let (tcp, tls, udp) = (
        SyslogReceiver::tcp_at(loopback6(0)).await,
        SyslogReceiver::tls_at(&ca, loopback6(0), &["::1"]).await,
        SyslogReceiver::udp_at(loopback6(0)).await,
    );
    let nginx_url = format!("https://[::1]:{}/logs", nginx.addr.port());
    let direct_url = format!("https://[::1]:{}/logs", direct.addr.port());
    for body in [
        json!({"url": nginx_url, "ca": ca.pem()}),
        json!({"url": direct_url, "ca": ca.pem()}),
        json!({"url": tcp.url()}),
        json!({"url": tls.url(), "ca": ca.pem()}),
        json!({"url": udp.url()}),
    ] {
        assert!(body["url"].as_str().unwrap().contains("[::1]"), "{body}");
        add_drain(&wharf, body).await;
    }
    let messages: Vec<String> = (0..3).map(|i| format!("ipv6 line {i}")).collect();
    ingest(&wharf, &messages).await;
    for (name, r) in [("nginx", &backend), ("direct", &direct)] {
        let got = logplex_lines(r, 3, &format!("every line through {name}")).await;
        assert_eq!(got.iter().map(|m| m.text()).collect::<Vec<_>>(), messages, "{name}");
    }
    assert!(!nginx.access_log().contains("\" 400 "), "nginx refused nothing: {}", nginx.access_log());
    for p in direct.posts() {
        assert_eq!(p.header("host"), format!("[::1]:{}", direct.addr.port()), "RFC 3986 §3.2.2 brackets");
    }
    for (name, r) in [("tcp", &tcp), ("tls", &tls), ("udp", &udp)] {
        let got = syslog_lines(r, 3, &format!("every line over {name} on ::1")).await;
        assert_eq!(got.iter().map(|m| m.text()).collect::<Vec<_>>(), messages, "{name}");
        assert_eq!(r.errors(), Vec::<String>::new(), "{name}");
    }
}

/// Waits until a drain to `addr` has lines queued, by checking the drain's pushed counter.
async fn pushed(wharf: &Wharf, id: &str, n: u64) {
    let label = format!("drain=\"{id}\"");
    eventually(WAIT, "the lines to reach the drain's buffer", || async {
        (metric(wharf, "wharf_drain_lines_pushed_total", &[&label]).await? >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn https_batches_fit_nginx_and_a_413_splits_a_batch_down_to_one_line() {
    let ca = TestCa::new("nginx's CA");
    // 300 lines of ~4 KB, all queued before the receiver comes up: 1.2 MB at once.
    let messages: Vec<String> = (0..300).map(|i| format!("big {i:03} {}", "x".repeat(4000))).collect();

    // The default cap (100 KB a POST) fits nginx's default 1 MiB body limit.
    let dir = TempDir::new("https-batch-cap");
    let wharf = start(&dir, &[]).await;
    let backend = LogplexReceiver::plain(&[]).await;
    let addr: SocketAddr = ([127, 0, 0, 1], wharf_testkit::free_port()).into();
    let id = add_drain(&wharf, json!({"url": format!("https://{addr}/logs"), "ca": ca.pem()})).await;
    ingest(&wharf, &messages).await;
    pushed(&wharf, &id, 300).await;
    let nginx = Nginx::https_proxy(&ca, addr, &["127.0.0.1"], backend.addr).await;
    let got = logplex_lines(&backend, 300, "every big line through nginx").await;
    assert_eq!(got.iter().map(|m| m.text()).collect::<Vec<_>>(), messages);
    let posts = backend.posts();
    assert!(posts.len() >= 12, "1.2 MB goes out in POSTs of about 100 KB: {}", posts.len());
    assert!(posts.iter().all(|p| p.bytes <= 110_000), "{:?}", posts.iter().map(|p| p.bytes).collect::<Vec<_>>());
    assert!(!nginx.access_log().contains("\" 413 "), "{}", nginx.access_log());
    drop((wharf, nginx));

    // With a cap above nginx's limit, the 413 is answered by sending halves until they fit.
    let dir = TempDir::new("https-413");
    let wharf = start(&dir, &[("WHARF_LOGSHUTTLE__HTTPS_BATCH_BYTES", "8MiB")]).await;
    let backend = LogplexReceiver::plain(&[]).await;
    let addr: SocketAddr = ([127, 0, 0, 1], wharf_testkit::free_port()).into();
    let id = add_drain(&wharf, json!({"url": format!("https://{addr}/logs"), "ca": ca.pem()})).await;
    ingest(&wharf, &messages).await;
    pushed(&wharf, &id, 300).await;
    let nginx = Nginx::https_proxy(&ca, addr, &["127.0.0.1"], backend.addr).await;
    let got = logplex_lines(&backend, 300, "every big line after a 413").await;
    assert_eq!(got.iter().map(|m| m.text()).collect::<Vec<_>>(), messages, "in order, none lost");
    assert!(nginx.access_log().contains("\" 413 "), "the first POST was too large: {}", nginx.access_log());
    let label = format!("drain=\"{id}\"");
    assert_eq!(metric(&wharf, "wharf_drain_lines_dropped_total", &[&label, "reason=\"refused\""]).await, Some(0));

    // A receiver that refuses even one line: only that line is dropped, counted and announced.
    let strict = LogplexReceiver::start(&ca, &[413, 413, 413]).await;
    let id = add_drain(&wharf, json!({"url": strict.url("", "/"), "ca": ca.pem()})).await;
    let label = format!("drain=\"{id}\"");
    ingest(&wharf, &["a".into(), "b".into()]).await;
    eventually(WAIT, "both single lines to be refused", || async {
        let n = metric(&wharf, "wharf_drain_lines_dropped_total", &[&label, "reason=\"refused\""]).await?;
        (n == 2).then_some(())
    })
    .await;
    ingest(&wharf, &["c".into()]).await;
    let got = logplex_lines(&strict, 1, "the line after the refusals").await;
    assert_eq!(got.last().unwrap().text(), "c");
    assert!(got[0].text().starts_with("Error L13 (drain refused): 2 messages refused by the receiver since "));
}

#[tokio::test]
async fn a_redirect_is_retried_not_refused() {
    let dir = TempDir::new("https-redirect");
    let wharf = start(&dir, &[]).await;
    let ca = TestCa::new("redirecting receiver's CA");
    let receiver = LogplexReceiver::start(&ca, &[307, 308, 301]).await;
    let id = add_drain(&wharf, json!({"url": receiver.url("", "/logs"), "ca": ca.pem()})).await;
    let messages: Vec<String> = (0..2).map(|i| format!("redirected {i}")).collect();
    ingest(&wharf, &messages).await;
    let got = logplex_lines(&receiver, 2, "both lines after the redirects").await;
    assert_eq!(got.iter().map(|m| m.text()).collect::<Vec<_>>(), messages);
    let statuses: Vec<u16> = receiver.posts().iter().map(|p| p.status).collect();
    assert_eq!(statuses[..3], [307, 308, 301]);
    let label = format!("drain=\"{id}\"");
    assert_eq!(metric(&wharf, "wharf_drain_lines_dropped_total", &[&label, "reason=\"refused\""]).await, Some(0));
    assert_eq!(metric(&wharf, "wharf_drain_retries_total", &[&label]).await, Some(3));
}

#[tokio::test]
async fn a_long_line_arrives_whole_in_chunks_on_every_drain_kind() {
    let dir = TempDir::new("long-lines");
    let wharf = start(&dir, &[]).await;
    let ca = TestCa::new("long lines' CA");
    let (tcp, tls, https) =
        (SyslogReceiver::tcp().await, SyslogReceiver::tls(&ca).await, LogplexReceiver::start(&ca, &[]).await);
    add_drain(&wharf, json!({"url": tcp.url()})).await;
    add_drain(&wharf, json!({"url": tls.url(), "ca": ca.pem()})).await;
    add_drain(&wharf, json!({"url": https.url("", "/"), "ca": ca.pem()})).await;
    // 60,000 bytes of two-byte characters with an ASCII mark in front: no 10,000-byte cut may
    // fall inside a character.
    let long = format!("L{}", "\u{e9}".repeat(30_000));
    ingest(&wharf, &[long.clone(), "after".into()]).await;
    let https_got = logplex_lines(&https, 8, "the chunks over https").await;
    for (name, got) in [
        ("tcp", syslog_lines(&tcp, 8, "the chunks over tcp").await),
        ("tls", syslog_lines(&tls, 8, "the chunks over tls").await),
        ("https", https_got),
    ] {
        assert_eq!(got.len(), 8, "{name}: seven chunks and the next line");
        let chunks: Vec<&[u8]> = got[..7].iter().map(|m| m.msg.as_slice()).collect();
        assert!(chunks.iter().all(|c| c.len() <= 10_000 && std::str::from_utf8(c).is_ok()), "{name}");
        assert_eq!(chunks.concat(), long.as_bytes(), "{name}: the chunks join to the line, in order");
        assert_eq!(got[7].text(), "after", "{name}");
    }
}

#[tokio::test]
async fn refused_lines_are_announced_in_the_drains_stream() {
    let dir = TempDir::new("refused-notice");
    let wharf = start(&dir, &[]).await;
    let ca = TestCa::new("refusing receiver's CA");
    // The receiver comes up only once the three lines wait, so they go out as one batch.
    let addr: SocketAddr = ([127, 0, 0, 1], wharf_testkit::free_port()).into();
    let id = add_drain(&wharf, json!({"url": format!("https://{addr}/"), "ca": ca.pem()})).await;
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"app": APP, "source": "app", "time": format!("2026-01-01T00:00:0{i}Z"), "message": format!("r{i}")}))
        .collect();
    wharf.api.expect("POST", "/log-events", Value::Array(events), 202).await;
    pushed(&wharf, &id, 3).await;
    let receiver = LogplexReceiver::start_at(&ca, addr, &["127.0.0.1"], &[400]).await;
    let label = format!("drain=\"{id}\"");
    eventually(WAIT, "the batch to be refused", || async {
        let n = metric(&wharf, "wharf_drain_lines_dropped_total", &[&label, "reason=\"refused\""]).await?;
        (n == 3).then_some(())
    })
    .await;
    ingest(&wharf, &["next".into()]).await;
    let got = logplex_lines(&receiver, 1, "the next batch").await;
    assert_eq!(
        got.iter().map(|m| (m.app_name.as_str(), m.text())).collect::<Vec<_>>(),
        [
            (
                "akkeris/logshuttle",
                "Error L13 (drain refused): 3 messages refused by the receiver since 2026-01-01T00:00:00.000000Z."
                    .to_owned()
            ),
            ("app", "next".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_udp_datagram_is_never_cut_inside_a_character() {
    let dir = TempDir::new("udp-utf8");
    let wharf = start(&dir, &[]).await;
    let (udp, small) = (SyslogReceiver::udp().await, SyslogReceiver::udp().await);
    let id = add_drain(&wharf, json!({"url": udp.url()})).await;
    add_drain(&wharf, json!({"url": format!("{}?max_size=481", small.url())})).await;
    ingest(&wharf, &["\u{e9}".repeat(3000)]).await;
    for (name, r, max) in [("2048", &udp, 2048), ("481", &small, 481)] {
        let got = syslog_lines(r, 1, "the datagram").await;
        assert!(std::str::from_utf8(&got[0].msg).is_ok(), "{name}: valid UTF-8");
        assert!(got[0].msg.len() > max - 100, "{name}: cut near the limit, not far before it");
    }
    let label = format!("drain=\"{id}\"");
    assert_eq!(metric(&wharf, "wharf_drain_messages_truncated_total", &[&label]).await, Some(1), "the cut is counted");
}

#[tokio::test]
async fn the_same_receiver_under_another_spelling_is_a_duplicate() {
    let dir = TempDir::new("duplicate-drains");
    let wharf = start(&dir, &[]).await;
    let tcp = SyslogReceiver::tcp().await;
    let port = tcp.addr.port();
    add_drain(&wharf, json!({"url": format!("syslog+tcp://127.0.0.1:{port}")})).await;
    for url in [
        format!("syslog+tcp://127.0.0.1:{port}"),
        format!("SYSLOG+TCP://127.0.0.1:{port}"),
        format!("syslog://127.0.0.1:{port}"),
        format!("syslog+tcp://127.0.0.1:{port}?framing=octet-counting"),
    ] {
        let (status, out) = wharf.api.call("POST", &format!("/apps/{APP}/log-drains"), Some(json!({"url": url}))).await;
        assert_eq!(status, 409, "{url}: {out}");
    }
    // Nothing listens there: the drain is only added, never reached.
    let free = wharf_testkit::free_port();
    wharf.api.expect("POST", &format!("/apps/{APP}/log-drains"), json!({"url": "https://localhost/p"}), 201).await;
    for url in ["HTTPS://LocalHost/p".to_owned(), "https://localhost:443/p".to_owned()] {
        let (status, out) = wharf.api.call("POST", &format!("/apps/{APP}/log-drains"), Some(json!({"url": url}))).await;
        assert_eq!(status, 409, "{url}: {out}");
    }
    let other = format!("https://localhost:{free}/p");
    wharf.api.expect("POST", &format!("/apps/{APP}/log-drains"), json!({"url": other}), 201).await;
    ingest(&wharf, &["once".into()]).await;
    syslog_lines(&tcp, 1, "the line").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tcp.messages().len(), 1, "delivered once");
}

#[tokio::test]
async fn the_outbound_policy_refuses_what_it_must_at_once_and_at_connect_time() {
    let dir = TempDir::new("outbound-default");
    let wharf = start(&dir, &[]).await;
    for url in [
        "https://169.254.169.254/latest",
        "syslog+udp://255.255.255.255:514",
        "syslog+tcp://0.0.0.0:514",
        "syslog+tcp://[::]:514",
        "syslog+tls://[fe80::1]:6514",
        "syslog+udp://224.0.0.1:514",
        "syslog+udp://[ff02::1]:514",
        "https://[::ffff:169.254.169.254]/latest",
    ] {
        let (status, out) = wharf.api.call("POST", &format!("/apps/{APP}/log-drains"), Some(json!({"url": url}))).await;
        assert_eq!(status, 422, "{url}: {out}");
        assert!(out.to_string().contains("outbound policy refuses"), "{url}: {out}");
    }
    drop(wharf);

    // With loopback refused, an IP literal is refused at once, and a name that resolves to
    // loopback is refused at connect time: counted, and the drain's last error.
    let dir = TempDir::new("outbound-no-loopback");
    let wharf = start(&dir, &[("WHARF_OUTBOUND__ALLOW_LOOPBACK", "false")]).await;
    let ca = TestCa::new("loopback receivers' CA");
    let (tcp, tls, udp, https) = (
        SyslogReceiver::tcp().await,
        SyslogReceiver::tls(&ca).await,
        SyslogReceiver::udp().await,
        LogplexReceiver::start(&ca, &[]).await,
    );
    let (status, out) =
        wharf.api.call("POST", &format!("/apps/{APP}/log-drains"), Some(json!({"url": tcp.url()}))).await;
    assert_eq!(status, 422, "{out}");
    assert!(out.to_string().contains("allow_loopback"), "{out}");
    let by_name = |scheme: &str, addr: SocketAddr| format!("{scheme}://localhost:{}", addr.port());
    let mut ids = Vec::new();
    for body in [
        json!({"url": by_name("syslog+tcp", tcp.addr)}),
        json!({"url": by_name("syslog+tls", tls.addr), "ca": ca.pem()}),
        json!({"url": by_name("syslog+udp", udp.addr)}),
        json!({"url": format!("{}/", by_name("https", https.addr)), "ca": ca.pem()}),
    ] {
        ids.push(add_drain(&wharf, body).await);
    }
    ingest(&wharf, &["must not leave".into()]).await;
    for id in &ids {
        let label = format!("drain=\"{id}\"");
        eventually(WAIT, "the connection to be refused", || async {
            (metric(&wharf, "wharf_drain_destinations_refused_total", &[&label]).await? > 0).then_some(())
        })
        .await;
        let error = last_error(&wharf, id).await.unwrap_or_default();
        assert!(error.contains("destination refused") && error.contains("loopback"), "{error}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((tcp.connections(), tls.connections()), (0, 0), "no connection was made");
    assert!(udp.messages().is_empty() && https.posts().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_drains_ca_comes_as_pem_never_as_a_server_path() {
    let dir = TempDir::new("drain-ca");
    let wharf = start(&dir, &[]).await;
    let ca = TestCa::new("a drain's own CA");
    let tls = SyslogReceiver::tls(&ca).await;
    let path = format!("/apps/{APP}/log-drains");
    for (body, want) in [
        (json!({"url": format!("{}?ca=/etc/shadow", tls.url())}), "not a file on the server"),
        (json!({"url": format!("syslog+tcp://127.0.0.1:1?ca=/etc/shadow")}), "not a file on the server"),
        (json!({"url": tls.url(), "ca": "root:x:0:0:root:/root:/bin/bash"}), "no PEM certificate"),
        (json!({"url": "syslog+tcp://127.0.0.1:1", "ca": ca.pem()}), "syslog+tls and https drains only"),
    ] {
        let (status, out) = wharf.api.call("POST", &path, Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {out}");
        assert!(out.to_string().contains(want), "{body}: {out}");
        assert!(!out.to_string().contains("root:x"), "the error never quotes what was given: {out}");
    }
    let out = wharf.api.expect("POST", &path, json!({"url": tls.url(), "ca": ca.pem()}), 201).await;
    assert_eq!(out["ca"], true, "the drain shows it has its own CA");
    assert!(!out.to_string().contains("BEGIN CERTIFICATE"), "the PEM is not echoed: {out}");
    ingest(&wharf, &["trusted".into()]).await;
    let got = syslog_lines(&tls, 1, "the line over TLS verified with the drain's CA").await;
    assert_eq!(got[0].text(), "trusted");
}

/// A drain whose server presents a certificate no trusted CA signed is never sent a line, and
/// the logshuttle's warning says where trust comes from, in the words every outbound TLS
/// connection uses (`wharf_domain::trust::handshake_error`; the feed's, PostgreSQL's and build
/// sources' are checked in tests/feed.rs, tests/control_api.rs and tests/deploy_edges.rs):
/// both TLS drain kinds. Mutation-checked: without the call in logshuttle/src/transport.rs the
/// warning has rustls' words only and the first row times out.
#[tokio::test]
async fn a_drain_signed_by_an_unknown_ca_is_refused_saying_where_trust_comes_from() {
    let dir = TempDir::new("drain-unknown-ca");
    let wharf = start(&dir, &[]).await;
    let stranger = TestCa::new("a CA nobody trusts");
    let tls = SyslogReceiver::tls(&stranger).await;
    let https = LogplexReceiver::start(&stranger, &[200]).await;
    let rows = [("syslog+tls", tls.url(), tls.addr), ("https", https.url("", "/logs"), https.addr)];
    for (kind, url, addr) in &rows {
        wharf.api.expect("POST", &format!("/apps/{APP}/log-drains"), json!({ "url": url }), 201).await;
        let want = format!(
            "TLS with the drain at {addr}: invalid peer certificate: UnknownIssuer: its certificate is signed by no CA \
             trusted here (the system's trust store: SSL_CERT_FILE, SSL_CERT_DIR or the distribution's bundle; and \
             logshuttle.trusted_ca or the drain's own CA)"
        );
        ingest(&wharf, &[format!("for the {kind} drain")]).await;
        eventually(WAIT, &format!("the {kind} drain's handshake error in the log"), || {
            let log = wharf.stderr();
            let found = log.lines().any(|l| l.contains("drain unreachable") && l.contains(&want));
            async move { found.then_some(()) }
        })
        .await;
    }
    assert!(tls.messages().is_empty() && https.posts().is_empty(), "nothing was sent");
}
