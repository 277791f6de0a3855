//! The router's conformance to HTTP/1.1 and HTTP/2 as a proxy (docs/http.md, issue 17), as
//! tables: raw requests with the status the client must get and the exact bytes the dyno must
//! receive (or none), and raw dyno responses with what the client must get, each on plain HTTP
//! and over TLS, against `wharf serve` and a raw TCP dyno that records every byte it is sent.
//! A differential check runs the same requests, and mutations of them, through `h11`, an
//! independent strict parser (`scripts/h11_frames.py`), when it is installed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_testkit::client::{self, Req};
use wharf_testkit::eventually;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(30);
const APP: &str = "conf-default.localhost";
const SITE: &str = "www.example.com";

/// Every request a [`RawDyno`] received, as the exact bytes of its head and body.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// A dyno that speaks raw HTTP/1.1: it records each request's bytes as they came, and answers
/// `/respond/N` with the N-th scripted response (then closes), `/early` with a 413 before
/// reading the body (then closes), `/continue` with `100 Continue` before it reads the body and
/// `200 ok` after, and anything else with `200 ok`.
struct RawDyno {
    port: u16,
    received: Received,
}

impl RawDyno {
    async fn start(responses: Vec<Vec<u8>>) -> RawDyno {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Received = Arc::default();
        let (log, responses) = (received.clone(), Arc::new(responses));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve_raw(stream, log.clone(), responses.clone()));
            }
        });
        RawDyno { port, received }
    }

    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

async fn serve_raw(mut s: TcpStream, log: Received, responses: Arc<Vec<Vec<u8>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_until_found(&mut s, &mut buf, b"\r\n\r\n").await else { return };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        if path == "/early" {
            log.lock().unwrap().push(buf[..head_end].to_vec());
            let _ =
                s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            return;
        }
        if path == "/hold" {
            // Part of a long body, then nothing, until the router closes the connection: what
            // the router does with a dyno's body its client no longer wants.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst").await;
            while read_more(&mut s, &mut buf).await > 0 {}
            log.lock().unwrap().push(HOLD_CLOSED.to_vec());
            return;
        }
        if path == "/continue" && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            return;
        }
        let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")?.trim().parse::<usize>().ok());
        let chunked = head.lines().any(|l| l == "transfer-encoding: chunked");
        let mut end = head_end + length.unwrap_or(0);
        if chunked {
            loop {
                let Some(line_end) = find_from(&mut s, &mut buf, end, b"\r\n").await else { return };
                let size = usize::from_str_radix(String::from_utf8_lossy(&buf[end..line_end]).trim(), 16).unwrap_or(0);
                end = line_end + 2 + size;
                if size == 0 {
                    let Some(trailers_end) = find_from(&mut s, &mut buf, line_end, b"\r\n\r\n").await else { return };
                    end = trailers_end;
                    break;
                }
                end += 2;
            }
        }
        while buf.len() < end {
            if read_more(&mut s, &mut buf).await == 0 {
                return;
            }
        }
        log.lock().unwrap().push(buf[..end].to_vec());
        buf.drain(..end);
        let scripted = path.strip_prefix("/respond/").and_then(|n| responses.get(n.parse::<usize>().ok()?));
        match scripted {
            Some(answer) => {
                let _ = s.write_all(answer).await;
                return;
            }
            None => {
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What the raw dyno records when the router closes a `/hold` connection.
const HOLD_CLOSED: &[u8] = b"/hold: the router closed the connection";

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    buf.reserve(16 * 1024);
    s.read_buf(buf).await.unwrap_or(0)
}

/// Reads until `needle` is in `buf`; the index just past it.
async fn read_until_found(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> Option<usize> {
    find_from(s, buf, 0, needle).await
}

/// Reads until `needle` is in `buf` at or after `from`; the index of its start for CRLF, or
/// just past it for the empty line that ends a head.
async fn find_from(s: &mut TcpStream, buf: &mut Vec<u8>, from: usize, needle: &[u8]) -> Option<usize> {
    loop {
        if buf.len() >= from
            && let Some(i) = buf[from..].windows(needle.len()).position(|w| w == needle)
        {
            return Some(if needle == b"\r\n" { from + i } else { from + i + needle.len() });
        }
        if read_more(s, buf).await == 0 {
            return None;
        }
    }
}

/// Wharf with an app (`conf`) on the raw dyno, and a site whose routes are `/ → /` and
/// `/docs → /public`, both to the same app.
struct Setup {
    wharf: Wharf,
    dyno: RawDyno,
    tls: Arc<rustls::ClientConfig>,
}

async fn setup(responses: Vec<Vec<u8>>, env: &[(&str, &str)]) -> Setup {
    let dir = wharf_testkit::TempDir::new("conformance");
    let mut all = vec![("WHARF_ROUTER__HTTP_REDIRECT", "false")];
    all.extend_from_slice(env);
    let wharf = Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &all).await;
    std::mem::forget(dir);
    let tls = client::tls_config(&wharf.ca, &[b"http/1.1"]);
    let dyno = RawDyno::start(responses).await;
    let api = &wharf.api;
    api.expect("POST", "/apps", json!({"name": "conf", "space": "default"}), 201).await;
    let body = json!({"type": "web", "host": "127.0.0.1", "port": dyno.port});
    api.expect("PUT", "/apps/conf-default/dynos/web.1", body, 201).await;
    api.expect("POST", "/sites", json!({"domain": SITE}), 201).await;
    for (source, target) in [("/", "/"), ("/docs", "/public")] {
        let body = json!({"app": "conf-default", "source_path": source, "target_path": target});
        api.expect("POST", &format!("/sites/{SITE}/routes"), body, 201).await;
    }
    // Each host is served once the dyno gets what its routes make of `/docs/ready`: on the site
    // that is `/public/ready`, so the `/docs` route is live too (its `/` route alone would answer
    // 200 with `/docs/ready`, and a row run before `/docs` lands would see the wrong target).
    for (host, reaches) in [(APP, "GET /docs/ready "), (SITE, "GET /public/ready ")] {
        eventually(WAIT, &format!("{host} to be served"), || async {
            let r = client::send(wharf.http, None, &Req::get(host, "/docs/ready")).await.ok()?;
            let seen = dyno.take();
            (r.status == 200 && seen.iter().any(|head| head.starts_with(reaches.as_bytes()))).then_some(())
        })
        .await;
    }
    dyno.take();
    Setup { wharf, dyno, tls }
}

/// Writes `bytes`, half-closes, and reads everything until the router closes.
async fn exchange(mut s: impl AsyncRead + AsyncWrite + Unpin, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if s.write_all(bytes).await.is_ok() {
        let _ = s.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    }
    out
}

/// Sends raw bytes on plain HTTP, or over TLS naming `host`.
async fn send(setup: &Setup, tls: bool, host: &str, bytes: &[u8]) -> Vec<u8> {
    let addr: SocketAddr = if tls { setup.wharf.https } else { setup.wharf.http };
    let tcp = TcpStream::connect(addr).await.unwrap();
    if !tls {
        return exchange(tcp, bytes).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(setup.tls.clone()).connect(name, tcp).await.unwrap();
    exchange(stream, bytes).await
}

/// The status of every response in `out`, in order, interim ones included.
fn statuses(out: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(out);
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// A request's bytes as the dyno got them, with the values that change from run to run (the
/// request id and start) masked as `*`.
fn masked(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let lines: Vec<String> = head
        .split("\r\n")
        .map(|line| match line.split_once(": ") {
            Some((name, _)) if name == "x-request-id" || name == "x-request-start" => format!("{name}: *"),
            _ => line.to_owned(),
        })
        .collect();
    format!("{}\r\n\r\n{body}", lines.join("\r\n"))
}

/// What the dyno gets for a request: its line, the client's fields that pass, the platform's
/// fields for `host` and `target` (with `xff` as `X-Forwarded-For` and `prefix` as the route's
/// `X-Orig-Path`), then `tail` (framing, upgrade) and the body.
struct Forwarded<'a> {
    line: &'a str,
    client: &'a [&'a str],
    host: &'a str,
    target: &'a str,
    xff: &'a str,
    prefix: &'a str,
    upgrade: &'a [&'a str],
    tail: &'a [&'a str],
    body: &'a str,
}

impl Forwarded<'_> {
    fn bytes(&self, tls: bool, port: u16) -> String {
        let proto = if tls { "https" } else { "http" };
        let mut s = format!("{}\r\n", self.line);
        for f in self.client {
            s += &format!("{f}\r\n");
        }
        s += &format!(
            "host: {h}\r\nx-orig-host: {h}\r\nx-forwarded-for: {xff}\r\nx-request-id: *\r\nx-request-start: *\r\n\
             x-forwarded-path: {t}\r\nx-orig-path: {p}\r\n",
            h = self.host,
            xff = self.xff,
            t = self.target,
            p = self.prefix
        );
        for f in self.upgrade {
            s += &format!("{f}\r\n");
        }
        s += &format!(
            "x-forwarded-proto: {proto}\r\nx-forwarded-port: {port}\r\nvia: 1.1 wharf\r\nx-orig-proto: {proto}\r\nx-orig-port: {port}\r\n"
        );
        for f in self.tail {
            s += &format!("{f}\r\n");
        }
        s + "\r\n" + self.body
    }
}

/// A plain GET of `target` on `host` as the dyno gets it, when it reaches it as `line`.
fn get<'a>(line: &'a str, host: &'a str, target: &'a str, prefix: &'a str) -> Forwarded<'a> {
    Forwarded { line, client: &[], host, target, xff: "127.0.0.1", prefix, upgrade: &[], tail: &[], body: "" }
}

/// One row: a raw request (`{app}` and `{site}` stand for the hosts), the status the client
/// gets, and what the dyno gets (nothing when it is refused).
struct Row<'a> {
    name: &'a str,
    host: &'a str,
    request: String,
    status: u16,
    at_dyno: Option<Forwarded<'a>>,
}

async fn check(setup: &Setup, rows: &[Row<'_>]) {
    let mut failures = Vec::new();
    for tls in [false, true] {
        let port = if tls { setup.wharf.https.port() } else { setup.wharf.http.port() };
        for row in rows {
            let out = send(setup, tls, row.host, row.request.as_bytes()).await;
            let got = statuses(&out);
            let at_dyno: Vec<String> = setup.dyno.take().iter().map(|b| masked(b)).collect();
            let want_dyno: Vec<String> = row.at_dyno.iter().map(|f| f.bytes(tls, port)).collect();
            if got.last() != Some(&row.status) || at_dyno != want_dyno {
                failures.push(format!(
                    "{} ({}): status {:?}, want {}\n  dyno got  {:?}\n  dyno want {:?}\n  client got {:?}",
                    row.name,
                    if tls { "tls" } else { "plain" },
                    got,
                    row.status,
                    at_dyno,
                    want_dyno,
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

fn req(line: &str, host: &str, fields: &[&str], body: &str) -> String {
    let mut s = format!("{line}\r\nHost: {host}\r\n");
    for f in fields {
        s += &format!("{f}\r\n");
    }
    s + "\r\n" + body
}

#[tokio::test]
async fn requests_are_refused_rewritten_and_forwarded_by_the_rules() {
    let s = setup(vec![], &[]).await;
    check(&s, &request_rows()).await;
}

/// The request table: every example of issue 17 and the variants of its kind.
fn request_rows() -> Vec<Row<'static>> {
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: conf-default.localhost\r\nX: 123456\r\n\r\n";
    let length = format!("Content-Length: {}", smuggled.len());
    let ok_app = |line, target| get(line, APP, target, "/");
    let mut rows = vec![Row {
        name: "plain GET",
        host: APP,
        request: req("GET /a HTTP/1.1", APP, &[], ""),
        status: 200,
        at_dyno: Some(ok_app("GET /a HTTP/1.1", "/a")),
    }];
    // 1. A field the router acts on, named in Connection: refused, whatever its spelling.
    for named in [
        "Content-Length",
        "content-length",
        "Host",
        "Expect",
        "X-Forwarded-For",
        "X-Request-Id",
        "X-Request-Start",
        "X-Forwarded-Proto",
        "X-Orig-Host",
        "keep-alive, HOST",
    ] {
        let request = req("POST / HTTP/1.1", APP, &[&format!("Connection: {named}"), &length], smuggled);
        rows.push(Row {
            name: "Connection names a field the router acts on",
            host: APP,
            request,
            status: 400,
            at_dyno: None,
        });
    }
    // ... while one that names a field of its own has it dropped.
    rows.push(Row {
        name: "Connection names a private field",
        host: APP,
        request: req("GET /p HTTP/1.1", APP, &["Connection: X-Secret", "X-Secret: 1", "X-Kept: 2"], ""),
        status: 200,
        at_dyno: Some(Forwarded { client: &["X-Kept: 2"], ..ok_app("GET /p HTTP/1.1", "/p") }),
    });
    // 2. Upgrades: WebSocket is forwarded as one; h2c and unknown protocols are not.
    for (upgrade, connection) in [
        ("h2c", "Upgrade, HTTP2-Settings"),
        ("h2c", "Upgrade"),
        ("H2C", "upgrade, http2-settings"),
        ("websocket, h2c", "Upgrade"),
        ("foo/1", "Upgrade"),
    ] {
        let request = req(
            "GET /up HTTP/1.1",
            APP,
            &[
                &format!("Connection: {connection}"),
                &format!("Upgrade: {upgrade}"),
                "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
            ],
            "",
        );
        rows.push(Row {
            name: "an upgrade the router does not vouch for",
            host: APP,
            request,
            status: 200,
            at_dyno: Some(ok_app("GET /up HTTP/1.1", "/up")),
        });
    }
    rows.push(Row {
        name: "a WebSocket upgrade",
        host: APP,
        request: req(
            "GET /ws HTTP/1.1",
            APP,
            &["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13"],
            "",
        ),
        status: 200,
        at_dyno: Some(Forwarded {
            client: &["Sec-WebSocket-Version: 13"],
            upgrade: &["upgrade: websocket", "connection: upgrade"],
            ..ok_app("GET /ws HTTP/1.1", "/ws")
        }),
    });
    // 3. Dot segments go before routing, in every spelling; encoded separators are refused
    // where a route rewrites the path, and opaque where it does not.
    for (target, line, prefix) in [
        ("/docs/../private", "GET /private HTTP/1.1", "/"),
        ("/docs/%2e%2e/private", "GET /private HTTP/1.1", "/"),
        ("/docs/%2E./private", "GET /private HTTP/1.1", "/"),
        ("/docs/.%2e/private?q=1", "GET /private?q=1 HTTP/1.1", "/"),
        ("/docs/./a", "GET /public/a HTTP/1.1", "/docs"),
        ("/docs/a/../b", "GET /public/b HTTP/1.1", "/docs"),
        ("/x/../docs/c", "GET /public/c HTTP/1.1", "/docs"),
        ("/docs/../../../etc/passwd", "GET /etc/passwd HTTP/1.1", "/"),
    ] {
        let request = req(&format!("GET {target} HTTP/1.1"), SITE, &[], "");
        rows.push(Row {
            name: "dot segments on a site",
            host: SITE,
            request,
            status: 200,
            at_dyno: Some(get(line, SITE, target, prefix)),
        });
    }
    for target in ["/docs/..%2fprivate", "/docs/..%2Fprivate", "/docs/..%5cprivate", "/docs/..\\private"] {
        let request = req(&format!("GET {target} HTTP/1.1"), SITE, &[], "");
        rows.push(Row {
            name: "an encoded separator on a rewriting route",
            host: SITE,
            request,
            status: 400,
            at_dyno: None,
        });
    }
    rows.push(Row {
        name: "dot segments on an app's default domain",
        host: APP,
        request: req("GET /a/%2e%2e/b HTTP/1.1", APP, &[], ""),
        status: 200,
        at_dyno: Some(ok_app("GET /b HTTP/1.1", "/a/%2e%2e/b")),
    });
    rows.push(Row {
        name: "an encoded slash on an app's default domain",
        host: APP,
        request: req("GET /a%2fb HTTP/1.1", APP, &[], ""),
        status: 200,
        at_dyno: Some(ok_app("GET /a%2fb HTTP/1.1", "/a%2fb")),
    });
    // 4. Underscore spellings of fields the platform sets or acts on are dropped; others pass.
    rows.push(Row {
        name: "underscore spoofs",
        host: APP,
        request: req(
            "GET /u HTTP/1.1",
            APP,
            &[
                "X_Forwarded_For: 6.6.6.6",
                "x_request_id: abcdefghijklmnopqrstuvwxyz",
                "Content_Length: 5",
                "X_ORIG_HOST: evil",
                "X_Custom: 1",
            ],
            "",
        ),
        status: 200,
        at_dyno: Some(Forwarded { client: &["X_Custom: 1"], ..ok_app("GET /u HTTP/1.1", "/u") }),
    });
    // 6. A second Host, the same or another.
    for second in ["b.localhost", APP] {
        let request = req("GET / HTTP/1.1", APP, &[&format!("Host: {second}")], "");
        rows.push(Row { name: "two Host fields", host: APP, request, status: 400, at_dyno: None });
    }
    // 7. Chunk-size lines: hex digits from the first byte, no bare CR or LF anywhere.
    for body in [
        "5;a\nb\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5\r;\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        "5 ;a\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "5\t;a\r\nhello\r\n0\r\n\r\n",
        "5   ;a\r\nhello\r\n0\r\n\r\n",
        "5\t\r\nhello\r\n0\r\n\r\n",
        "0000000000000005\r\nhello\r\n0\r\n\r\n",
        "1000000000000000\r\nhello\r\n0\r\n\r\n",
    ] {
        let request = req("POST /c HTTP/1.1", APP, &["Transfer-Encoding: chunked"], body);
        rows.push(Row { name: "a malformed chunk-size line", host: APP, request, status: 400, at_dyno: None });
    }
    for body in ["A\r\n0123456789\r\n0\r\n\r\n", "000a\r\n0123456789\r\n00\r\n\r\n"] {
        rows.push(Row {
            name: "an uppercase chunk size, leading zeros",
            host: APP,
            request: req("POST /c HTTP/1.1", APP, &["Transfer-Encoding: chunked"], body),
            status: 200,
            at_dyno: Some(Forwarded {
                tail: &["transfer-encoding: chunked"],
                body: "a\r\n0123456789\r\n0\r\n\r\n",
                ..ok_app("POST /c HTTP/1.1", "/c")
            }),
        });
    }
    rows.push(Row {
        name: "a chunk extension",
        host: APP,
        request: req("POST /c HTTP/1.1", APP, &["Transfer-Encoding: chunked"], "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"),
        status: 200,
        at_dyno: Some(Forwarded {
            tail: &["transfer-encoding: chunked"],
            body: "5\r\nhello\r\n0\r\n\r\n",
            ..ok_app("POST /c HTTP/1.1", "/c")
        }),
    });
    // 8. X-Forwarded-For on several lines is one list.
    rows.push(Row {
        name: "X-Forwarded-For on two lines",
        host: APP,
        request: req(
            "GET /x HTTP/1.1",
            APP,
            &["X-Forwarded-For: 203.0.113.7", "x-forwarded-for: 198.51.100.9, 192.0.2.1"],
            "",
        ),
        status: 200,
        at_dyno: Some(Forwarded {
            xff: "203.0.113.7, 198.51.100.9, 192.0.2.1, 127.0.0.1",
            ..ok_app("GET /x HTTP/1.1", "/x")
        }),
    });
    // 9. Content-Length: one value however often it is repeated; different ones are refused.
    rows.push(Row {
        name: "Content-Length twice, the same",
        host: APP,
        request: req("POST /l HTTP/1.1", APP, &["Content-Length: 5", "content-length: 5"], "hello"),
        status: 200,
        at_dyno: Some(Forwarded { client: &["Content-Length: 5"], body: "hello", ..ok_app("POST /l HTTP/1.1", "/l") }),
    });
    for lengths in
        [["Content-Length: 5", "Content-Length: 6"], ["Content-Length: 5, 5", "X: y"], ["Content-Length: 05x", "X: y"]]
    {
        let request = req("POST /l HTTP/1.1", APP, &lengths, "hello!");
        rows.push(Row { name: "bad Content-Length", host: APP, request, status: 400, at_dyno: None });
    }
    // 10. Transfer codings: chunked alone is forwarded; others are not implemented.
    for coding in [
        &["Transfer-Encoding: gzip, chunked"][..],
        &["Transfer-Encoding: chunked, chunked"],
        &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
    ] {
        let request = req("POST /t HTTP/1.1", APP, coding, "5\r\nhello\r\n0\r\n\r\n");
        rows.push(Row { name: "a transfer coding besides chunked", host: APP, request, status: 501, at_dyno: None });
    }
    for coding in ["Transfer-Encoding: chunked, gzip", "Transfer-Encoding: identity"] {
        let request = req("POST /t HTTP/1.1", APP, &[coding], "5\r\nhello\r\n0\r\n\r\n");
        rows.push(Row { name: "chunked not last", host: APP, request, status: 400, at_dyno: None });
    }
    // 15. A target that is not ASCII, on a default domain and on a site route alike.
    for (host, target) in [(APP, "/café"), (SITE, "/docs/café"), (SITE, "/café")] {
        let request = req(&format!("GET {target} HTTP/1.1"), host, &[], "");
        rows.push(Row { name: "a raw UTF-8 target", host, request, status: 400, at_dyno: None });
    }
    rows
}

/// A scripted response row: its name, the dyno's bytes, the statuses the client gets (interim
/// ones first), and text the client's bytes must and must not hold.
type ResponseRow = (&'static str, Vec<u8>, Vec<u16>, &'static [&'static str], &'static [&'static str]);

/// The scripted responses of [`dyno_responses_are_relayed_by_the_rules`].
fn response_rows() -> Vec<ResponseRow> {
    let big =
        |n: usize| format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok", "a".repeat(n)).into_bytes();
    let mut rows: Vec<ResponseRow> = vec![
        ("a 600", b"HTTP/1.1 600 Weird\r\nContent-Length: 0\r\n\r\n".to_vec(), vec![502], &[], &["Weird"]),
        ("a 099", b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n".to_vec(), vec![502], &[], &[]),
        ("a 1000", b"HTTP/1.1 1000 High\r\nContent-Length: 0\r\n\r\n".to_vec(), vec![502], &[], &[]),
        ("a two-digit status", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), vec![502], &[], &[]),
        ("no status", b"HTTP/1.1 abc\r\n\r\n".to_vec(), vec![502], &[], &[]),
        ("HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), vec![502], &[], &[]),
        ("a 599", b"HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n".to_vec(), vec![599], &[], &[]),
        ("a 70 KiB field", big(70 * 1024), vec![502], &[], &["X-Big"]),
        ("a 60 KiB field", big(60 * 1024), vec![200], &["X-Big"], &[]),
        (
            "103 Early Hints",
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            vec![103, 200],
            &["Link: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK"],
            &[],
        ),
        (
            "102 and 103, one with a hop-by-hop field",
            b"HTTP/1.1 102 Processing\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            vec![102, 103, 200],
            &["Link: </b.js>; rel=preload\r\n"],
            &["X-Hop"],
        ),
        (
            "100 Continue is the router's own",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            vec![200],
            &[],
            &["100 Continue"],
        ),
        ("two lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok".to_vec(), vec![502], &[], &[]),
        ("a 101 unasked", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n".to_vec(), vec![502], &[], &[]),
        // RFC 9110 §6.6.1: every final response gets a `Date` when the dyno sent none (checked
        // for every row by `dates_are_by_the_rules`), and a dyno's own goes on unchanged.
        ("a 200 without Date", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), vec![200], &[], &[]),
        (
            "a dyno's own Date",
            format!("HTTP/1.1 200 OK\r\nDate: {DYNO_DATE}\r\nContent-Length: 2\r\n\r\nok").into_bytes(),
            vec![200],
            &[],
            &[],
        ),
        (
            "a dyno's own Date on a 304",
            format!("HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\nDate: {DYNO_DATE}\r\n\r\n").into_bytes(),
            vec![304],
            &[],
            &[],
        ),
        ("a 304 without Date", b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n".to_vec(), vec![304], &[], &[]),
        ("a 204 without Date", b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), vec![204], &[], &[]),
        (
            "a 102 and a chunked 200 without Date",
            b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
            vec![102, 200],
            &[],
            &[],
        ),
        (
            "a bare LF in a chunk line",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n".to_vec(),
            vec![200],
            &[],
            &["hello", "0\r\n\r\n"],
        ),
    ];
    // A dyno's chunk-size lines: whitespace after the size is removed (RFC 9112's BWS), and
    // the client gets a clean chunked body; what cannot be read is cut off, with H17 logged.
    for line in ["5 ;ext", "5\t;ext", "5   ;a=b", "5 \t;", "5 ", "5\t", "0005", "00000000000000000005"] {
        let dyno = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nhello\r\n0 \r\n\r\n");
        rows.push((
            "a dyno's chunk-size line the router reads",
            dyno.into_bytes(),
            vec![200],
            &["\r\n5\r\nhello\r\n", "0\r\n\r\n"],
            &[";"],
        ));
    }
    rows.push((
        "an uppercase chunk size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n".to_vec(),
        vec![200],
        &["\r\na\r\n0123456789\r\n0\r\n\r\n"],
        &[],
    ));
    for line in ["5 x", "x5", "1000000000000000", "5\x0b"] {
        let dyno =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n{line}\r\nhello\r\n0\r\n\r\n");
        rows.push((CUT, dyno.into_bytes(), vec![200], &["ok"], &["hello", "0\r\n\r\n"]));
    }
    rows
}

/// A `Date` a dyno sends, which must reach the client unchanged (RFC 9110 §5.6.7's example).
const DYNO_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// The `Date` values of each response head in `out` (HTTP/1.1 bytes), interim ones first.
fn dates_of_heads(out: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8_lossy(out);
    let mut heads = Vec::new();
    let mut rest = &text[..];
    while let Some((head, after)) = rest.split_once("\r\n\r\n") {
        let dates = head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(": "))
            .filter(|(name, _)| name.eq_ignore_ascii_case("date"))
            .map(|(_, value)| value.to_owned())
            .collect();
        heads.push(dates);
        if !head.starts_with("HTTP/1.1 1") {
            break;
        }
        rest = after;
    }
    heads
}

/// Whether the `Date` values of a response's heads (`heads`, interim ones first) follow RFC 9110
/// §6.6.1 for a dyno that sent `dyno`: interim heads carry none (the dyno sent none there), the
/// final head exactly one, the dyno's own when it sent one, else an IMF-fixdate (29 bytes
/// ending " GMT") the router added.
fn dates_are_by_the_rules(heads: &[Vec<String>], dyno: &[u8]) -> bool {
    let dyno = String::from_utf8_lossy(dyno);
    let dyno_date = dyno.contains(&format!("Date: {DYNO_DATE}"));
    let Some((last, interim)) = heads.split_last() else { return false };
    interim.iter().all(|d| d.is_empty())
        && match &last[..] {
            [date] if dyno_date => date == DYNO_DATE,
            [date] => date.len() == 29 && date.ends_with(" GMT") && date != DYNO_DATE,
            _ => false,
        }
}

/// The name of the response rows whose body is cut off, with H17 in the access line.
const CUT: &str = "a dyno's chunk-size line the router cannot read";

#[tokio::test]
async fn dyno_responses_are_relayed_by_the_rules() {
    let rows = response_rows();
    let s = setup(rows.iter().map(|r| r.1.clone()).collect(), &[]).await;
    let drain = wharf_testkit::syslog::SyslogReceiver::tcp().await;
    s.wharf.api.expect("POST", "/apps/conf-default/log-drains", json!({"url": drain.url()}), 201).await;
    let mut failures = Vec::new();
    for tls in [false, true] {
        for (i, (name, dyno, want, must, must_not)) in rows.iter().enumerate() {
            let request = req(&format!("GET /respond/{i} HTTP/1.1"), APP, &[], "");
            let out = send(&s, tls, APP, request.as_bytes()).await;
            let text = String::from_utf8_lossy(&out);
            let got = statuses(&out);
            if !dates_are_by_the_rules(&dates_of_heads(&out), dyno) {
                failures.push(format!("{name} (tls {tls}): Date not by the rules: {:?}", &text[..text.len().min(400)]));
            }
            let ok =
                got == *want && must.iter().all(|m| text.contains(m)) && !must_not.iter().any(|m| text.contains(m));
            if !ok {
                failures.push(format!(
                    "{name} (tls {tls}): statuses {got:?}, want {want:?}: {:?}",
                    &text[..text.len().min(400)]
                ));
            }
        }
    }
    // A body cut off is never cut without a word: the access line says H17.
    for (i, _) in rows.iter().enumerate().filter(|(_, r)| r.0 == CUT) {
        let path = format!(" path=/respond/{i} ");
        let logged = eventually(WAIT, &format!("the access line of {path}"), || async {
            let lines: Vec<String> = drain.messages().iter().map(|m| m.text()).filter(|t| t.contains(&path)).collect();
            (lines.len() == 2).then_some(lines)
        })
        .await;
        if !logged.iter().all(|l| l.starts_with("at=error code=H17 ")) {
            failures.push(format!("{path}: {logged:?}"));
        }
    }
    // An HTTP/1.0 client gets no interim response.
    let early = rows.iter().position(|r| r.0 == "103 Early Hints").unwrap();
    // Over HTTP/2 the same rows give the same statuses, interim ones included (RFC 9113 §8.1:
    // HEADERS frames ahead of the final one), and a body cut off is a reset stream, not an end.
    let h2 = client::tls_config(&s.wharf.ca, &[b"h2"]);
    for (i, (name, dyno, want, _, must_not)) in rows.iter().enumerate() {
        let got = h2_get(&s, &h2, &format!("/respond/{i}")).await;
        let statuses: Vec<u16> = got.heads.iter().map(|h| h.0).collect();
        let dates: Vec<Vec<String>> =
            got.heads.iter().map(|(_, f)| f.iter().filter(|f| f.0 == "date").map(|f| f.1.clone()).collect()).collect();
        if !dates_are_by_the_rules(&dates, dyno) {
            failures.push(format!("{name} (HTTP/2): Date not by the rules: {:?}", got.heads));
        }
        // The fields but HSTS (whose value has a `;`, which one row must not see in a body),
        // and the body; HTTP/2's field names are lowercase.
        let shown: Vec<_> = got
            .heads
            .iter()
            .map(|(_, f)| f.iter().filter(|f| f.0 != "strict-transport-security").collect::<Vec<_>>())
            .collect();
        let text = format!("{shown:?} {}", String::from_utf8_lossy(&got.body)).to_lowercase();
        let cut = *name == CUT || *name == "a bare LF in a chunk line";
        if statuses != *want || got.cut != cut || must_not.iter().any(|m| text.contains(&m.to_lowercase())) {
            failures.push(format!("{name} (HTTP/2): {statuses:?}, want {want:?}, cut {}: {text}", got.cut));
        }
    }
    let early_h2 = h2_get(&s, &h2, &format!("/respond/{early}")).await;
    let link = early_h2.heads[0].1.iter().find(|(n, _)| n == "link").map(|(_, v)| v.as_str());
    if link != Some("</s.css>; rel=preload") || early_h2.body != b"ok" {
        failures.push(format!("103 over HTTP/2: {:?}", early_h2.heads));
    }
    let out = send(&s, false, APP, format!("GET /respond/{early} HTTP/1.0\r\nHost: {APP}\r\n\r\n").as_bytes()).await;
    if statuses(&out) != [200] || !dates_are_by_the_rules(&dates_of_heads(&out), &rows[early].1) {
        failures.push(format!("103 to HTTP/1.0: {:?}", String::from_utf8_lossy(&out)));
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

/// 12: a dyno that answers an upload before reading it is relayed at once, while the client
/// still holds its body back, with or without `Expect: 100-continue`; no `100 Continue` goes
/// out for a request the dyno already answered.
#[tokio::test]
async fn an_early_answer_reaches_a_client_that_paused_its_upload() {
    let s = setup(vec![], &[("WHARF_ROUTER__FIRST_BYTE_TIMEOUT", "20s")]).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut tcp = TcpStream::connect(s.wharf.http).await.unwrap();
        let head = format!("POST /early HTTP/1.1\r\nHost: {APP}\r\n{expect}Content-Length: 100000\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 413"), "{expect:?}: {text:?}");
        assert!(!text.contains("100 Continue"), "{expect:?}: {text:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{expect:?}: answered after {:?}", started.elapsed());
    }
}

/// 3 (of the remaining items) and 12: with `Expect: 100-continue`, the client is told to send
/// its body only when the dyno says `100 Continue`, or when the dyno said nothing for a second,
/// and never when the dyno has answered; the same for a length and a chunked body. A chunked
/// body's first chunk-size line, read only after `100 Continue`, is still checked before any of
/// the body reaches the dyno.
#[tokio::test]
async fn continue_is_sent_only_when_the_dyno_asks_for_the_body() {
    let s = setup(vec![], &[("WHARF_ROUTER__FIRST_BYTE_TIMEOUT", "20s")]).await;
    let length = ("Content-Length: 5", "hello");
    let chunked = ("Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n");
    // (path, framing and body, the statuses the client gets, whether the dyno gets the body)
    let rows = [
        ("/continue", length, &[100, 200][..], true),
        ("/continue", chunked, &[100, 200], true),
        ("/silent", length, &[100, 200], true),
        ("/silent", chunked, &[100, 200], true),
        ("/early", length, &[413], false),
        ("/early", chunked, &[413], false),
        ("/continue", ("Transfer-Encoding: chunked", "5 x\r\nhello\r\n0\r\n\r\n"), &[100, 400], false),
        ("/continue", ("Transfer-Encoding: chunked", "0x5\r\nhello\r\n0\r\n\r\n"), &[100, 400], false),
    ];
    let mut failures = Vec::new();
    for (path, (framing, body), want, forwarded) in rows {
        let mut tcp = TcpStream::connect(s.wharf.http).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: {APP}\r\nExpect: 100-continue\r\n{framing}\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        // The body goes only after `100 Continue`, as a client that waits for it sends it.
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
                Ok(Ok(n @ 1..)) => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
            if out.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n") {
                if tcp.write_all(body.as_bytes()).await.is_err() {
                    break;
                }
                let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
                break;
            }
            if out.windows(4).any(|w| w == b"\r\n\r\n") {
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
                break;
            }
        }
        let got = statuses(&out);
        let at_dyno = s.dyno.take();
        let body_at_dyno =
            at_dyno.iter().any(|r| String::from_utf8_lossy(r).ends_with("hello\r\n0\r\n\r\n") || r.ends_with(b"hello"));
        if got != want || body_at_dyno != forwarded {
            failures.push(format!(
                "{path} {framing:?} {body:?}: statuses {got:?}, want {want:?}; body at dyno {body_at_dyno}: {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

/// 5: an HTTP/2 connection that sends its preface and then nothing, or nothing at all, is ended
/// within the header timeout, with GOAWAY once it has spoken.
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let s = setup(vec![], &[("WHARF_ROUTER__HEADER_TIMEOUT", "2s")]).await;
    let h2 = client::tls_config(&s.wharf.ca, &[b"h2"]);
    for preface in [true, false] {
        let tcp = TcpStream::connect(s.wharf.https).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(APP.to_owned()).unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(h2.clone()).connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        if preface {
            // The preface and an empty SETTINGS frame.
            tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        }
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "preface {preface}: still open after 15 s");
        assert!(started.elapsed() < Duration::from_secs(8), "preface {preface}: {:?}", started.elapsed());
        if preface {
            // Frame type 7 is GOAWAY (RFC 9113, section 6.8).
            let goaway = out.windows(4).any(|w| w[3] == 7 && w[0] == 0 && w[1] == 0);
            assert!(goaway, "no GOAWAY in {out:?}");
        }
    }
    // A request in flight keeps its connection; the same request over HTTP/2 is served.
    let r = client::send(s.wharf.https, Some(&h2), &Req::get(APP, "/h2")).await.unwrap();
    assert_eq!((r.version, r.status.as_u16()), (http::Version::HTTP_2, 200));
}

/// The router's own answers over HTTP/1.1, plain and TLS, carry one `Date` (RFC 9110 §6.6.1: the
/// router answers as an origin server): a routing miss, its HEAD, a request refused before
/// routing, a method the router refuses, and a dyno's response to HEAD; a dyno's 101 gets none.
#[tokio::test]
async fn router_answers_have_a_date() {
    let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let s = setup(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec(), switching.to_vec()], &[]).await;
    // Over TLS the handshake names the app; the `Host` field decides the route.
    let upgrade = ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13"];
    let rows: [(&str, String, u16); 6] = [
        ("a routing miss", req("GET /x HTTP/1.1", "nowhere.localhost", &[], ""), 404),
        ("HEAD of a routing miss", req("HEAD /x HTTP/1.1", "nowhere.localhost", &[], ""), 404),
        ("two Host fields", req("GET / HTTP/1.1", APP, &["Host: b.localhost"], ""), 400),
        ("CONNECT", format!("CONNECT {APP}:443 HTTP/1.1\r\nHost: {APP}:443\r\n\r\n"), 400),
        ("HEAD the dyno answers", req("HEAD /respond/0 HTTP/1.1", APP, &[], ""), 200),
        // A 101 is interim (RFC 9110 §6.6.1 makes Date optional there): it goes as the dyno sent it.
        ("a WebSocket 101", req("GET /respond/1 HTTP/1.1", APP, &upgrade, ""), 101),
    ];
    let mut failures = Vec::new();
    for tls in [false, true] {
        for (name, request, status) in &rows {
            let out = send(&s, tls, APP, request.as_bytes()).await;
            let dates = dates_of_heads(&out);
            let by_the_rules =
                if *status == 101 { dates == [Vec::<String>::new()] } else { dates_are_by_the_rules(&dates, b"") };
            if statuses(&out) != [*status] || !by_the_rules {
                failures.push(format!("{name} (tls {tls}): {:?}", String::from_utf8_lossy(&out)));
            }
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

/// The router's own answers over HTTP/2 are HTTP/1.1's: `HEAD` gets the length `GET` gets and
/// no content (RFC 9110 §9.3.2), every response has a `Date` (RFC 9110 §6.6.1), a dyno's
/// included, and CONNECT, whose target is an authority (RFC 9113 §8.5), is 400 as on HTTP/1.1.
#[tokio::test]
async fn http2_router_answers_are_http1s() {
    let s = setup(vec![], &[]).await;
    let h2 = client::tls_config(&s.wharf.ca, &[b"h2"]);
    let field = |got: &H2Got, name: &str| got.heads.last().unwrap().1.iter().find(|f| f.0 == name).map(|f| f.1.clone());
    let get = h2_request(&s, &h2, http::Method::GET, "https://nowhere.localhost/x").await;
    let head = h2_request(&s, &h2, http::Method::HEAD, "https://nowhere.localhost/x").await;
    assert_eq!(get.heads.last().unwrap().0, 404, "{get:?}");
    assert!(!get.body.is_empty() && !get.cut, "{get:?}");
    assert_eq!(field(&get, "content-length"), Some(get.body.len().to_string()), "{get:?}");
    assert_eq!((head.heads.last().unwrap().0, &head.body[..], head.cut), (404, &b""[..], false), "{head:?}");
    assert_eq!(field(&head, "content-length"), field(&get, "content-length"), "{head:?}");
    let dyno = h2_get(&s, &h2, "/dated").await;
    for got in [&get, &head, &dyno] {
        let date = field(got, "date").unwrap_or_default();
        assert!(date.ends_with(" GMT") && date.len() == 29, "{got:?}");
    }
    let connect = h2_request(&s, &h2, http::Method::CONNECT, &format!("{APP}:443")).await;
    assert_eq!(connect.heads.last().unwrap().0, 400, "{connect:?}");
    let received = s.dyno.take();
    assert_eq!(received.len(), 1, "only the GET reaches the dyno: {received:?}");
}

/// A client that resets an HTTP/2 stream (RST_STREAM, RFC 9113 §6.4) while its response body
/// is on the way no longer wants the rest: the router stops reading it and closes the dyno's
/// connection (which a body left half-read cannot serve again), and the client's connection
/// goes on serving.
#[tokio::test]
async fn a_reset_stream_ends_its_dynos_exchange() {
    let s = setup(vec![], &[]).await;
    let tls = client::tls_config(&s.wharf.ca, &[b"h2"]);
    let tcp = TcpStream::connect(s.wharf.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(APP.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.unwrap();
    let (mut sender, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("https://{APP}/hold")).body(()).unwrap();
    let (response, mut send) = sender.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert_eq!(body.data().await.unwrap().unwrap(), &b"first"[..]);
    send.send_reset(h2::Reason::CANCEL);
    eventually(WAIT, "the dyno's connection to close", || async {
        s.dyno.take().iter().any(|r| r == HOLD_CLOSED).then_some(())
    })
    .await;
    let mut sender = sender.ready().await.unwrap();
    let (response, _) =
        sender.send_request(http::Request::get(format!("https://{APP}/")).body(()).unwrap(), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200, "the connection serves on");
}

/// The rules that apply to HTTP/2 requests too: dot segments, underscore spoofs, several
/// `X-Forwarded-For` fields, and h2c never offered.
#[tokio::test]
async fn http2_requests_follow_the_same_rules() {
    let s = setup(vec![], &[]).await;
    let h2 = client::tls_config(&s.wharf.ca, &[b"h2"]);
    let send = |req: Req| {
        let h2 = h2.clone();
        let addr = s.wharf.https;
        async move { client::send(addr, Some(&h2), &req).await.unwrap() }
    };
    let r = send(Req::get(SITE, "/docs/%2e%2e/private")).await;
    assert_eq!((r.version, r.status.as_u16()), (http::Version::HTTP_2, 200));
    let r = send(Req::get(SITE, "/docs/a/../b")).await;
    assert_eq!(r.status, 200);
    let r = send(Req::get(SITE, "/docs/..%2fprivate")).await;
    assert_eq!(r.status, 400);
    let r = send(
        Req::get(APP, "/h")
            .header("x_forwarded_for", "6.6.6.6")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-for", "198.51.100.9")
            .header("x_custom", "1"),
    )
    .await;
    assert_eq!(r.status, 200);
    let got: Vec<String> = s.dyno.take().iter().map(|b| masked(b)).collect();
    assert_eq!(got.len(), 3, "the refused one is not forwarded: {got:?}");
    assert!(got[0].starts_with("GET /private HTTP/1.1\r\n") && got[0].contains("x-orig-path: /\r\n"), "{}", got[0]);
    assert!(got[1].starts_with("GET /public/b HTTP/1.1\r\n"), "{}", got[1]);
    assert!(got[2].starts_with("GET /h HTTP/1.1\r\n"), "{}", got[2]);
    assert!(got[2].contains("x-forwarded-for: 203.0.113.7, 198.51.100.9, 127.0.0.1\r\n"), "{}", got[2]);
    assert!(!got[2].contains("6.6.6.6") && got[2].contains("x_custom: 1\r\n"), "{}", got[2]);
}

/// Requests on one connection that frame a body or several requests, to mutate.
const BASES: [&str; 5] = [
    "GET /a HTTP/1.1\r\nHost: {app}\r\nX-A: 1\r\n\r\n",
    "POST /b HTTP/1.1\r\nHost: {app}\r\nContent-Length: 5\r\n\r\nhello",
    "POST /c HTTP/1.1\r\nHost: {app}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;e=1\r\n world\r\n0\r\nT: 1\r\n\r\n",
    "GET /d HTTP/1.1\r\nHost: {app}\r\n\r\nPOST /e HTTP/1.1\r\nHost: {app}\r\nContent-Length: 3\r\n\r\nabc",
    "POST /f HTTP/1.1\r\nHost: {app}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /g HTTP/1.1\r\nHost: {app}\r\n\r\n",
];

/// Lines a mutation inserts into a head.
const INSERTED: [&str; 14] = [
    "Transfer-Encoding: chunked",
    "Content-Length: 3",
    "Content-Length: 0",
    "Transfer-Encoding: gzip, chunked",
    " folded",
    "Host: other.localhost",
    "Connection: content-length",
    "Transfer-Encoding : chunked",
    "Content-Length : 5",
    "Transfer-Encoding: \x0bchunked",
    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    "Content-Length: 5\r\nContent-Length: 5",
    "Transfer-Encoding: identity",
    "X_Forwarded_For: 6.6.6.6",
];

/// One to three random mutations of `base`: line ends, bytes, fields and lengths changed.
fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rng.usize(1..=3) {
        let crlfs: Vec<usize> = b.windows(2).enumerate().filter(|(_, w)| *w == b"\r\n").map(|(i, _)| i).collect();
        let at = rng.usize(..=b.len());
        match rng.u8(..8) {
            0 if !crlfs.is_empty() => {
                b.remove(crlfs[rng.usize(..crlfs.len())]);
            }
            1 if !crlfs.is_empty() => {
                b.remove(crlfs[rng.usize(..crlfs.len())] + 1);
            }
            2 => {
                let bytes = [0u8, b'\t', b' ', b'\r', b'\n', 0x7f, 0x80, b',', b';', b'"', b':', b'0', b'a'];
                b.insert(at, bytes[rng.usize(..bytes.len())]);
            }
            3 if !b.is_empty() => {
                b.remove(at.min(b.len() - 1));
            }
            4 | 5 if !crlfs.is_empty() => {
                // After the request line, or after some other line.
                let after = crlfs[rng.usize(..crlfs.len().min(3))] + 2;
                let line = format!("{}\r\n", INSERTED[rng.usize(..INSERTED.len())]);
                b.splice(after..after, line.into_bytes());
            }
            6 => {
                let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_hexdigit()).collect();
                if !digits.is_empty() {
                    let i = digits[rng.usize(..digits.len())];
                    b[i] = b"0123456789abcdefG"[rng.usize(..17)];
                }
            }
            _ => b.truncate(at),
        }
    }
    b
}

/// What h11 made of one input: the requests it read whole (method, target, body) and whether it
/// stopped on an error.
type H11Frames = (Vec<(String, String, Vec<u8>)>, Option<String>);

/// Runs `scripts/h11_frames.py` over `corpus` with the Python that has h11: `WHARF_H11_PYTHON`,
/// else the venv scripts/test makes under target/, else `python3`. `None` when none has it.
fn h11_frames(corpus: &[Vec<u8>]) -> Option<Vec<H11Frames>> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let unhex =
        |t: &str| (0..t.len()).step_by(2).map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/h11-venv/bin/python3");
    let candidates = [std::env::var("WHARF_H11_PYTHON").ok(), Some(venv.display().to_string()), Some("python3".into())];
    let python = candidates.into_iter().flatten().find(|p| {
        std::process::Command::new(p).args(["-c", "import h11"]).output().is_ok_and(|o| o.status.success())
    })?;
    let input: String =
        corpus.iter().enumerate().map(|(id, data)| format!("{}\n", json!({"id": id, "data": hex(data)}))).collect();
    let mut child = std::process::Command::new(python)
        .arg(root.join("scripts/h11_frames.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the h11 script starts");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, input.as_bytes()));
    let out = child.wait_with_output().expect("the h11 script runs");
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "the h11 script failed");
    let frames = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let requests = v["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let body = unhex(r["body"].as_str().unwrap());
                    (r["method"].as_str().unwrap().to_owned(), r["target"].as_str().unwrap().to_owned(), body)
                })
                .collect();
            (requests, v["error"].as_str().map(str::to_owned))
        })
        .collect();
    Some(frames)
}

/// A request as the dyno got it: its method, target and body (unchunked).
fn at_dyno(bytes: &[u8]) -> (String, String, Vec<u8>) {
    let text = String::from_utf8_lossy(bytes);
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let body_at = head.len() + 4;
    let mut words = head.split(' ');
    let (method, target) = (words.next().unwrap().to_owned(), words.next().unwrap().to_owned());
    let chunked = head.to_ascii_lowercase().contains("\r\ntransfer-encoding: chunked");
    if !chunked {
        return (method, target, bytes[body_at..].to_vec());
    }
    let (mut body, mut at) = (Vec::new(), body_at);
    loop {
        let end = at + bytes[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&bytes[at..end]).unwrap(), 16).unwrap();
        if size == 0 {
            return (method, target, body);
        }
        body.extend_from_slice(&bytes[end + 2..end + 2 + size]);
        at = end + 4 + size;
    }
}

/// `router.underscore_fields = "drop-all"` drops every client field with `_` in its name.
#[tokio::test]
async fn every_underscore_field_is_dropped_when_configured() {
    let s = setup(vec![], &[("WHARF_ROUTER__UNDERSCORE_FIELDS", "drop-all")]).await;
    let request = req("GET /u HTTP/1.1", APP, &["X_Custom: 1", "X-Kept: 2", "x_forwarded_for: 6.6.6.6"], "");
    let row = Row {
        name: "drop-all",
        host: APP,
        request,
        status: 200,
        at_dyno: Some(Forwarded { client: &["X-Kept: 2"], ..get("GET /u HTTP/1.1", APP, "/u", "/") }),
    };
    check(&s, &[row]).await;
}

/// The differential test: the table's requests and mutations of requests that frame bodies and
/// pipelines, through Wharf and through h11. Whatever Wharf forwards, h11 reads as the same
/// requests (method, target, body) in the same order; what h11 refuses or cannot read whole,
/// Wharf does not forward. Skipped (with a note) where h11 is not installed; scripts/test
/// installs it and sets `WHARF_REQUIRE_H11`.
#[tokio::test]
async fn what_wharf_forwards_h11_frames_the_same_way() {
    let mut corpus: Vec<Vec<u8>> =
        request_rows().into_iter().filter(|r| r.host == APP).map(|r| r.request.into_bytes()).collect();
    let bases: Vec<Vec<u8>> = BASES.iter().map(|b| b.replace("{app}", APP).into_bytes()).collect();
    corpus.extend(bases.iter().cloned());
    let mut rng = fastrand::Rng::with_seed(17);
    for i in 0..300 {
        corpus.push(mutate(&mut rng, &bases[i % bases.len()]));
    }
    let Some(h11) = h11_frames(&corpus) else {
        assert!(std::env::var_os("WHARF_REQUIRE_H11").is_none(), "h11 is required but not installed");
        eprintln!("h11 is not installed (scripts/test installs it): the differential test is skipped");
        return;
    };
    let s = setup(vec![], &[]).await;
    let mut failures = Vec::new();
    let mut forwarded_total = 0;
    for (data, (h11_requests, h11_error)) in corpus.iter().zip(&h11) {
        let out = send(&s, false, APP, data).await;
        let forwarded: Vec<_> = s.dyno.take().iter().map(|b| at_dyno(b)).collect();
        forwarded_total += forwarded.len();
        // Wharf forwards a subsequence of what h11 reads (it answers some requests itself: 404
        // for a host it does not serve, say), each framed alike: the same method and body, and
        // the same target but for dot segments removed and absolute forms made origin forms.
        let matches = |w: &(String, String, Vec<u8>), h: &(String, String, Vec<u8>)| {
            let target_ok =
                w.1 == h.1 || h.1.contains('.') || h.1.to_ascii_lowercase().contains("%2e") || !h.1.starts_with('/');
            w.0 == h.0 && target_ok && w.2 == h.2
        };
        let mut h11_left = h11_requests.iter();
        let same = forwarded.iter().all(|w| h11_left.any(|h| matches(w, h)));
        if !same {
            failures.push(format!(
                "{:?}\n  wharf forwarded {forwarded:?}\n  h11 read {h11_requests:?}, error {h11_error:?}\n  client got {:?}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(&out)
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} inputs differ:\n{}", failures.len(), corpus.len(), failures.join("\n"));
    // Most mutations break a request; enough must survive for the comparison to mean something.
    assert!(forwarded_total >= 50, "only {forwarded_total} requests reached the dyno");
}

/// An HTTP/2 frame's bytes (RFC 9113 §4.1): its length, `kind`, `flags`, `stream` and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// What an HTTP/2 client got for one request: every response head in order (interim ones,
/// then the final one) as its status and fields, the body, and whether the stream was reset
/// before its end.
#[derive(Debug)]
struct H2Got {
    heads: Vec<(u16, Vec<(String, String)>)>,
    body: Vec<u8>,
    cut: bool,
}

/// Sends `GET path` to [`APP`] over HTTP/2 with the `h2` crate's client, which reads interim
/// responses (hyper's client does not).
async fn h2_get(s: &Setup, tls: &Arc<rustls::ClientConfig>, path: &str) -> H2Got {
    h2_request(s, tls, http::Method::GET, &format!("https://{APP}{path}")).await
}

/// Sends a request without a body over HTTP/2 (the TLS server name is [`APP`]; `uri` gives
/// `:authority`, and `:path` unless the method is CONNECT) and reads all of its answer.
async fn h2_request(s: &Setup, tls: &Arc<rustls::ClientConfig>, method: http::Method, uri: &str) -> H2Got {
    let tcp = TcpStream::connect(s.wharf.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(APP.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.unwrap();
    let (mut sender, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder().method(method).uri(uri).body(()).unwrap();
    let (mut response, _) = sender.send_request(request, true).unwrap();
    let fields = |h: &http::HeaderMap| {
        h.iter().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
    };
    let mut heads = Vec::new();
    let failed = |mut heads: Vec<(u16, Vec<(String, String)>)>, e: h2::Error| {
        heads.push((0, vec![("error".to_owned(), e.to_string())]));
        H2Got { heads, body: Vec::new(), cut: true }
    };
    while let Some(interim) = std::future::poll_fn(|cx| response.poll_informational(cx)).await {
        match interim {
            Ok(interim) => heads.push((interim.status().as_u16(), fields(interim.headers()))),
            Err(e) => return failed(heads, e),
        }
    }
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return failed(heads, e),
    };
    heads.push((response.status().as_u16(), fields(response.headers())));
    let mut recv = response.into_body();
    let (mut body, mut cut) = (Vec::new(), false);
    loop {
        match recv.data().await {
            Some(Ok(data)) => {
                let _ = recv.flow_control().release_capacity(data.len());
                body.extend_from_slice(&data);
            }
            Some(Err(_)) => {
                cut = true;
                break;
            }
            None => break,
        }
    }
    H2Got { heads, body, cut }
}

/// The payloads of the HEADERS frames on `stream` in `bytes` (the router neither pads nor
/// prioritises them).
fn h2_header_blocks(bytes: &[u8], stream: u32) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16 | usize::from(bytes[at + 1]) << 8 | usize::from(bytes[at + 2]);
        if bytes[at + 3] == 1 && bytes[at + 5..at + 9] == stream.to_be_bytes() && at + 9 + len <= bytes.len() {
            blocks.push(bytes[at + 9..at + 9 + len].to_vec());
        }
        at += 9 + len;
    }
    blocks
}

/// The frames in `bytes` as (type, flags, stream), for failure messages.
fn h2_frames(bytes: &[u8]) -> Vec<(u8, u8, u32)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16 | usize::from(bytes[at + 1]) << 8 | usize::from(bytes[at + 2]);
        let stream = u32::from_be_bytes(bytes[at + 5..at + 9].try_into().unwrap());
        frames.push((bytes[at + 3], bytes[at + 4], stream));
        at += 9 + len;
    }
    frames
}

/// A request's header block in HPACK (RFC 7541): `:method` from the static table (`0x82` GET,
/// `0x83` POST), `:scheme https`, `:path /`, and `:authority` as a literal.
fn h2_head(method: u8) -> Vec<u8> {
    h2_head_for(method, "/")
}

/// [`h2_head`] with `:path` as a literal (under 127 bytes).
fn h2_head_for(method: u8, path: &str) -> Vec<u8> {
    let mut block = vec![method, 0x87, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, u8::try_from(APP.len()).unwrap()]);
    block.extend_from_slice(APP.as_bytes());
    block
}

/// What a raw HTTP/2 client does after its preface and SETTINGS.
enum H2Step {
    /// Writes these bytes at once.
    Write(Vec<u8>),
    /// Writes these bytes one at a time, 100 ms apart, stopping if the router closes.
    Trickle(Vec<u8>),
    /// Waits this long (a client that is slow but in time).
    Pause(Duration),
}

/// What the client must see.
#[derive(Debug, PartialEq)]
enum H2Outcome {
    /// The router ended the connection before the client was done.
    Closed,
    /// The router ended the connection, without an answer, after the client was done.
    Ended,
    /// The router answered each stream waited for (stream 1 unless told) with a 200 and kept
    /// the connection.
    Answered,
    /// Neither, 30 s after the client was done.
    Open,
}

/// Runs `steps` on a new HTTP/2 connection over TLS and tells what the client saw.
async fn raw_h2(s: &Setup, steps: &[H2Step]) -> (H2Outcome, Vec<u8>) {
    raw_h2_answering(s, steps, &[1]).await
}

/// [`raw_h2`], the client done once each of `streams` was answered with a 200.
async fn raw_h2_answering(s: &Setup, steps: &[H2Step], streams: &[u32]) -> (H2Outcome, Vec<u8>) {
    let h2 = client::tls_config(&s.wharf.ca, &[b"h2"]);
    let tcp = TcpStream::connect(s.wharf.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(APP.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(h2).connect(name, tcp).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (log, ended) = (received.clone(), closed.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = rd.read(&mut buf).await {
            log.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        ended.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let is_closed = || closed.load(std::sync::atomic::Ordering::SeqCst);
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(h2_frame(4, 0, 0, &[]));
    wr.write_all(&start).await.unwrap();
    for step in steps {
        match step {
            H2Step::Write(bytes) => {
                if wr.write_all(bytes).await.is_err() {
                    return (H2Outcome::Closed, received.lock().unwrap().clone());
                }
            }
            H2Step::Trickle(bytes) => {
                for b in bytes {
                    if is_closed() || wr.write_all(&[*b]).await.is_err() {
                        return (H2Outcome::Closed, received.lock().unwrap().clone());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            H2Step::Pause(d) => tokio::time::sleep(*d).await,
        }
    }
    // The client is done: it was answered on each stream (a HEADERS frame whose block starts
    // with `:status 200` from the static table), or the router closed first.
    let answered = || {
        let got = received.lock().unwrap();
        streams.iter().all(|&stream| h2_header_blocks(&got, stream).iter().any(|b| b.first() == Some(&0x88)))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !answered() && !is_closed() {
        if tokio::time::Instant::now() > deadline {
            return (H2Outcome::Open, received.lock().unwrap().clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcome = if answered() && !is_closed() { H2Outcome::Answered } else { H2Outcome::Ended };
    (outcome, received.lock().unwrap().clone())
}

/// 5 (cont.): every state of an HTTP/2 connection has a deadline. A header block (HEADERS and
/// its CONTINUATION frames) must arrive whole within the header timeout, even while another
/// request is in flight, and a connection on which the client sends anything but requests (a
/// head a byte at a time, PINGs, a SETTINGS frame a byte at a time) is ended within the header
/// timeout too. Each trickle below lasts far longer than the header timeout (a byte every
/// 100 ms) if nothing stops it. Heads that arrive slowly but whole in time are served.
#[tokio::test]
async fn http2_heads_and_idle_connections_have_deadlines() {
    use H2Outcome::{Answered, Closed, Ended};
    use H2Step::{Pause, Trickle, Write};
    let s =
        setup(vec![], &[("WHARF_ROUTER__HEADER_TIMEOUT", "2s"), ("WHARF_ROUTER__FIRST_BYTE_TIMEOUT", "120s")]).await;
    let head = h2_head(0x82);
    let (first, rest) = head.split_at(4);
    // HEADERS with END_STREAM and END_HEADERS on `stream`, padded (PADDED, RFC 9113 §6.2) to
    // take long to trickle.
    let padded = |stream: u32| {
        let mut payload = vec![200];
        payload.extend_from_slice(&head);
        payload.extend_from_slice(&[0; 200]);
        h2_frame(1, 0x1 | 0x4 | 0x8, stream, &payload)
    };
    // A request whose body the client never sends: it stays in flight at the router.
    let pending_upload = || Write(h2_frame(1, 0x4, 1, &h2_head(0x83)));
    let repeated = |frame: Vec<u8>| frame.repeat(200 / frame.len() + 1);
    let rows: Vec<(&str, Vec<H2Step>, H2Outcome)> = vec![
        (
            "HEADERS without END_HEADERS, then a CONTINUATION frame a byte at a time",
            vec![Write(h2_frame(1, 0x1, 1, first)), Trickle(h2_frame(9, 0, 1, &[0; 200]))],
            Closed,
        ),
        (
            "more CONTINUATION frames than a full header list needs (the h2 crate's flood limit)",
            vec![Write(h2_frame(1, 0x1, 1, first)), Write(h2_frame(9, 0, 1, &rest[..1]).repeat(8))],
            Ended,
        ),
        ("a HEADERS frame a byte at a time", vec![Trickle(padded(1))], Closed),
        (
            "a HEADERS frame a byte at a time while a request is in flight",
            vec![pending_upload(), Trickle(padded(3))],
            Closed,
        ),
        (
            "a CONTINUATION frame a byte at a time while a request is in flight",
            vec![pending_upload(), Write(h2_frame(1, 0x1, 3, first)), Trickle(h2_frame(9, 0, 3, &[0; 200]))],
            Closed,
        ),
        ("PING frames and no request", vec![Trickle(repeated(h2_frame(6, 0, 0, &[0; 8])))], Closed),
        ("SETTINGS frames a byte at a time", vec![Trickle(repeated(h2_frame(4, 0, 0, &[0, 3, 0, 0, 0, 100])))], Closed),
        ("a request at once", vec![Write(h2_frame(1, 0x5, 1, &head))], Answered),
        (
            "a header block in two frames a second apart, within the header timeout",
            vec![Write(h2_frame(1, 0x1, 1, first)), Pause(Duration::from_secs(1)), Write(h2_frame(9, 0x4, 1, rest))],
            Answered,
        ),
    ];
    let mut failures = Vec::new();
    for (name, steps, want) in rows {
        let (got, bytes) = raw_h2(&s, &steps).await;
        if got != want {
            failures
                .push(format!("{name}: {got:?}, want {want:?}; frames (type, flags, stream) {:?}", h2_frames(&bytes)));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

/// HTTP/2 responses' fields are HPACK literals against the static table only, as HAProxy sends
/// them (vendor/h2/WHARF.md, issue 17's CPU target): two responses on one connection each carry
/// every field's value as plain bytes (not Huffman-coded), the second again in full (no dynamic
/// table entry stands for it), and `:status 200` is the static table's index.
#[tokio::test]
async fn http2_response_fields_are_static_table_literals() {
    let dyno_response =
        b"HTTP/1.1 200 OK\r\nServer: raw-dyno/1.0\r\nX-Custom: spelled-out-value\r\nContent-Length: 2\r\n\r\nok";
    let s = setup(vec![dyno_response.to_vec()], &[]).await;
    let head = h2_head_for(0x82, "/respond/0");
    let mut requests = h2_frame(1, 0x5, 1, &head);
    requests.extend(h2_frame(1, 0x5, 3, &head));
    let (outcome, bytes) = raw_h2_answering(&s, &[H2Step::Write(requests)], &[1, 3]).await;
    assert_eq!(outcome, H2Outcome::Answered, "frames (type, flags, stream) {:?}", h2_frames(&bytes));
    for stream in [1, 3] {
        let blocks = h2_header_blocks(&bytes, stream);
        assert_eq!(blocks.len(), 1, "stream {stream}: {blocks:?}");
        let block = &blocks[0];
        assert_eq!(block[0], 0x88, "stream {stream}: `:status 200` is static entry 8");
        // Each field a literal not indexed (RFC 7541 §6.2.2, `0000` and a 4-bit name index:
        // `server` is static entry 54, `via` 60) or with a new name (`00`), each string's length
        // with H = 0 (§5.2) and its bytes as they are.
        for (field, want) in [
            ("server", &b"\x0f\x27\x0craw-dyno/1.0"[..]),
            ("x-custom", &b"\x00\x08x-custom\x11spelled-out-value"[..]),
            ("via", &b"\x0f\x2d\x091.1 wharf"[..]),
        ] {
            assert!(
                block.windows(want.len()).any(|w| w == want),
                "stream {stream}: {field} is not a plain literal {want:02x?} in the header block {block:02x?}"
            );
        }
    }
}
