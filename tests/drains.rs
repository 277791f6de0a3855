//! Every syslog drain kind end to end through Kafka (a tansu broker the test starts): router
//! lines produced by real requests, consumed by the logshuttle, and delivered over TCP, TLS
//! (verified, with the drain's own CA given as PEM through the API) and UDP to real receivers that check every message with
//! a strict RFC 5424 parser; and rsyslog, the receiver most operators run, taking octet-counted
//! frames over TCP and TLS.

use std::time::Duration;

use serde_json::json;
use wharf_testkit::certs::TestCa;
use wharf_testkit::client::{self, Req};
use wharf_testkit::dyno_server::DynoServer;
use wharf_testkit::eventually;
use wharf_testkit::rfc5424::SyslogMessage;
use wharf_testkit::rsyslog::Rsyslog;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const HOST: &str = "api-default.localhost";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn tcp_tls_and_udp_drains_receive_every_line_as_rfc_5424() {
    let broker = Tansu::start().await;
    let wharf = Wharf::serve(WHARF, &["--kafka", &broker.brokers()]).await;
    let api = &wharf.api;
    let backend = DynoServer::start("ok").await;
    let (status, out) = api.call("POST", "/apps", Some(json!({"name": "api", "space": "default"}))).await;
    assert_eq!(status, 201, "{out}");
    let body = json!({"type": "web", "host": "127.0.0.1", "port": backend.port()});
    let (status, out) = api.call("PUT", "/apps/api-default/dynos/web.1", Some(body)).await;
    assert_eq!(status, 201, "{out}");

    let ca = TestCa::new("Drain receivers' CA");
    let (tcp, tls, udp, small_udp, untrusted) = (
        SyslogReceiver::tcp().await,
        SyslogReceiver::tls(&ca).await,
        SyslogReceiver::udp().await,
        SyslogReceiver::udp().await,
        SyslogReceiver::tls(&ca).await,
    );
    let drains = [
        json!({"url": tcp.url()}),
        json!({"url": tls.url(), "ca": ca.pem()}),
        json!({"url": udp.url()}),
        json!({"url": format!("{}?max_size=480", small_udp.url())}),
        // Verification is on: without the CA, the receiver's certificate is not trusted.
        json!({"url": untrusted.url()}),
    ];
    for body in drains {
        let (status, out) = api.call("POST", "/apps/api-default/log-drains", Some(body.clone())).await;
        assert_eq!(status, 201, "{body}: {out}");
    }

    let tls_client = client::tls_config(&wharf.ca, &[b"http/1.1"]);
    eventually(WAIT, "the app to answer", || async {
        let r = client::send(wharf.https, Some(&tls_client), &Req::get(HOST, "/")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    // Some paths are long enough that their lines do not fit a 480-byte datagram.
    let ids: Vec<String> = (0..20).map(|i| format!("drain-kinds-request-{i:04}")).collect();
    let long = "x".repeat(400);
    for (i, id) in ids.iter().enumerate() {
        let path = if i % 2 == 0 { format!("/short/{i}") } else { format!("/long/{i}/{long}") };
        let r = client::send(wharf.https, Some(&tls_client), &Req::get(HOST, &path).header("x-request-id", id))
            .await
            .expect("request through the router");
        assert_eq!(r.status, 200);
    }

    let full = all_lines(&tcp, "tcp", &ids).await;
    for (name, receiver) in [("tls", &tls), ("udp", &udp)] {
        let got = all_lines(receiver, name, &ids).await;
        for (a, b) in got.iter().zip(&full) {
            assert_eq!((&a.hostname, &a.app_name, &a.msg), (&b.hostname, &b.app_name, &b.msg), "{name}");
        }
    }
    // A 480-byte datagram holds the short lines whole and the start of the long ones.
    let markers: Vec<String> = (0..ids.len())
        .map(|i| if i % 2 == 0 { format!("path=/short/{i} ") } else { format!("path=/long/{i}/") })
        .collect();
    let msgs = eventually(WAIT, "every request's datagram at the small udp drain", || async {
        let msgs = small_udp.messages();
        markers.iter().all(|mark| msgs.iter().any(|m| m.text().contains(mark))).then_some(msgs)
    })
    .await;
    for (mark, line) in markers.iter().zip(&full) {
        let got = msgs.iter().find(|m| m.text().contains(mark)).expect("the datagram for a line");
        assert!(line.text().contains(mark), "lines are in request order");
        if mark.contains("/long/") {
            assert!(got.msg.len() < line.msg.len() && line.msg.starts_with(&got.msg), "cut: {}", got.text());
        } else {
            assert_eq!(got.msg, line.msg);
        }
    }
    for (name, receiver) in [("tcp", &tcp), ("tls", &tls), ("udp", &udp), ("small udp", &small_udp)] {
        assert_eq!(receiver.errors(), Vec::<String>::new(), "{name}: every message parses as RFC 5424");
    }
    let refused = eventually(WAIT, "the untrusted receiver to see a refused handshake", || async {
        let errors = untrusted.errors();
        (!errors.is_empty()).then_some(errors)
    })
    .await;
    assert!(refused[0].contains("tls handshake"), "{refused:?}");
    assert!(untrusted.messages().is_empty(), "nothing is sent to a receiver that is not trusted");
}

/// Waits for the line of every request id at a receiver, and returns them in id order.
async fn all_lines(receiver: &SyslogReceiver, name: &str, ids: &[String]) -> Vec<SyslogMessage> {
    eventually(WAIT, &format!("every request's line at the {name} drain"), || async {
        let msgs = receiver.messages();
        let found: Vec<_> = ids
            .iter()
            .filter_map(|id| msgs.iter().find(|m| m.text().contains(&format!("request_id={id} "))).cloned())
            .collect();
        (found.len() == ids.len()).then_some(found)
    })
    .await
}

#[tokio::test]
async fn rsyslog_receives_every_line_over_tcp_and_tls() {
    let broker = Tansu::start().await;
    let wharf = Wharf::serve(WHARF, &["--kafka", &broker.brokers()]).await;
    let api = &wharf.api;
    api.create_app("api-default", &[]).await;
    let ca = TestCa::new("rsyslog's CA");
    let issued = ca.issue(&["127.0.0.1"], -1, 30);
    let (tcp_port, tls_port) = (wharf_testkit::free_port(), wharf_testkit::free_port());
    let rsyslog = Rsyslog::start(
        |dir| {
            for (name, pem) in [("ca.pem", ca.pem()), ("cert.pem", &issued.chain_pem), ("key.pem", &issued.key_pem)] {
                std::fs::write(dir.join(name), pem).unwrap();
            }
            let dir = dir.display();
            format!(
                r#"global(workDirectory="{dir}" DefaultNetstreamDriverCAFile="{dir}/ca.pem"
       DefaultNetstreamDriverCertFile="{dir}/cert.pem" DefaultNetstreamDriverKeyFile="{dir}/key.pem")
template(name="fields" type="string" string="%hostname% %app-name% %procid% %msg%\n")
module(load="imtcp")
ruleset(name="tcp") {{ action(type="omfile" file="{dir}/tcp.log" template="fields") }}
ruleset(name="tls") {{ action(type="omfile" file="{dir}/tls.log" template="fields") }}
input(type="imtcp" port="{tcp_port}" address="127.0.0.1" ruleset="tcp")
input(type="imtcp" port="{tls_port}" address="127.0.0.1" ruleset="tls"
      StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
"#
            )
        },
        &[tcp_port, tls_port],
    )
    .await;
    for body in [
        json!({"url": format!("syslog+tcp://127.0.0.1:{tcp_port}")}),
        json!({"url": format!("syslog+tls://127.0.0.1:{tls_port}"), "ca": ca.pem()}),
    ] {
        api.expect("POST", "/apps/api-default/log-drains", body, 201).await;
    }
    // Let the logshuttle pick the drains up before the lines arrive.
    eventually(WAIT, "the logshuttle to run both drains", || async {
        let r = client::send(wharf.admin, None, &Req::get("localhost", "/metrics")).await.ok()?;
        (r.text().matches("wharf_drain_lines_pushed_total{").count() == 2).then_some(())
    })
    .await;

    // Octet counting carries a newline inside a message as part of it; UTF-8 passes through.
    let messages: Vec<String> = (0..200)
        .map(|i| if i == 7 { format!("line {i} spans\ntwo rows") } else { format!("line {i} h\u{e9}llo") })
        .collect();
    let events: Vec<_> = messages
        .iter()
        .map(|m| json!({"app": "api-default", "source": "app", "process": "web.1", "stream": "stdout", "message": m}))
        .collect();
    api.expect("POST", "/log-events", json!(events), 202).await;
    // rsyslog writes control characters as #ooo, in octal.
    let want: Vec<String> =
        messages.iter().map(|m| format!("api-default app web.1 {}", m.replace('\n', "#012"))).collect();
    for file in ["tcp.log", "tls.log"] {
        let path = rsyslog.dir().join(file);
        let got = eventually(WAIT, &format!("every line in rsyslog's {file}"), || async {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            (lines.len() >= want.len()).then_some(lines)
        })
        .await;
        assert_eq!(got, want, "{file}; rsyslog said: {}", rsyslog.stderr());
    }
}
